import Delta
import Foundation
import Repo

/// Text and JSON for what fetch, clone, push and pull moved.
enum TransferOutput {
    /// `--json`: objects and bytes moved (`bytes_sent` for a push, `bytes_received` otherwise).
    static func json(_ r: TransferResult, sent: Bool, extra: KeyValuePairs<String, JSONValue> = [:]) -> JSONValue {
        var members: [JSONMember] = [
            JSONMember("remote", .string(r.remote)),
            JSONMember("commits", .int(r.commits)),
            JSONMember("objects", .int(r.objects)),
            JSONMember("objects_skipped", .int(r.skippedObjects)),
            JSONMember(sent ? "bytes_sent" : "bytes_received", .int(r.bytes)),
            JSONMember("refs", .array(r.refs.map { c in
                .obj(["name": .string(c.name), "kind": .string(c.kind.rawValue), "old": .opt(c.old?.hex), "new": .opt(c.new?.hex),
                      "forced": .bool(c.forced)])
            })),
        ]
        for (k, v) in extra { members.append(JSONMember(k, v)) }
        return .object(members)
    }

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
