import Foundation
import Repo

/// The text of what fetch, clone, push and pull moved (`TransferDocument` is the JSON).
enum TransferOutput {
    /// One line per ref that moved, as git prints them: what moved, then `source -> ref` (a fetched
    /// tag that created the local tag is named as that tag, as git's `v1 -> v1`; otherwise the
    /// remote-tracking ref that moved), in aligned columns.
    static func printRefs(_ r: TransferResult) {
        let lines = r.refs.compactMap { c -> (String, String, String)? in
            let target = c.createdLocalTag ? c.source : c.name
            switch (c.old, c.new) {
            case (nil, _?): return (" * [new \(c.kind.rawValue)]", c.source, "-> \(target)")
            case let (old?, new?) where old == new && c.createdLocalTag: return (" * [new tag]", c.source, "-> \(target)")
            case (let old?, nil): return (" - [deleted]", c.source == c.name ? c.name : "(none)", c.source == c.name ? "(was \(old.short))" : "-> \(target) (was \(old.short))")
            case let (old?, new?):
                return ("\(c.forced ? " + " : "   ")\(old.short)\(c.forced ? "..." : "..")\(new.short)", c.source,
                        "-> \(target)\(c.forced ? " (forced update)" : "")")
            default: return nil
            }
        }
        let first = lines.map(\.0.count).max() ?? 0, second = lines.map(\.1.count).max() ?? 0
        for (what, source, rest) in lines {
            print(what.padding(toLength: first, withPad: " ", startingAt: 0) + "  "
                  + source.padding(toLength: second, withPad: " ", startingAt: 0) + " " + rest)
        }
    }

    static func summary(_ r: TransferResult, verb: String) -> String {
        "\(verb) \(r.commits) commit\(r.commits == 1 ? "" : "s"), \(r.objects) object\(r.objects == 1 ? "" : "s") (\(Format.bytes(r.bytes)))"
            + (r.skippedObjects > 0 ? ", \(r.skippedObjects) already there" : "")
    }
}
