import Foundation
import Repo

/// The text of what fetch, clone, push and pull moved (`TransferDocument` is the JSON).
enum TransferOutput {
    /// One line per ref that moved, as git prints them.
    static func printRefs(_ r: TransferResult) {
        for c in r.refs {
            switch (c.old, c.new) {
            case (nil, let new?): print(" * [new \(c.kind.rawValue)]  \(c.name) -> \(new.short)")
            case (let old?, nil): print(" - [deleted]     \(c.name) (was \(old.short))")
            case let (old?, new?): print("   \(old.short)\(c.forced ? "..." : "..")\(new.short)  \(c.name)\(c.forced ? " (forced update)" : "")")
            default: break
            }
        }
    }

    static func summary(_ r: TransferResult, verb: String) -> String {
        "\(verb) \(r.commits) commit\(r.commits == 1 ? "" : "s"), \(r.objects) object\(r.objects == 1 ? "" : "s") (\(Format.bytes(r.bytes)))"
            + (r.skippedObjects > 0 ? ", \(r.skippedObjects) already there" : "")
    }
}
