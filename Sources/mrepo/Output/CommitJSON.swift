import Delta
import Foundation
import Merge
import Repo

enum CommitJSON {
    static func make(_ c: Commit, names: [String]) -> JSONValue {
        .obj([
            "id": .string(c.id.hex),
            "parents": .array(c.parents.map { .string($0.hex) }),
            "base": .opt(c.base?.hex),
            "tree": .string(c.treeID.hex),
            "author": .string(c.author),
            "date": .string(Format.iso(c.timestamp)),
            "timestamp": .double(c.timestamp),
            "message": .string(c.message),
            "metrics": .object(c.metrics.map { JSONMember($0.name, .double($0.value)) }),
            "refs": .array(names.map { .string($0) }),
            "extra": c.extra,
        ])
    }
}
