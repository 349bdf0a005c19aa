import Delta
import Foundation
import Merge
import Repo

enum CommitJSON {
    /// - Parameters:
    ///   - metrics: the commit's metrics with those added later (default: as recorded).
    ///   - notes: notes added later.
    static func make(_ c: Commit, names: [String], metrics: [Commit.Metric]? = nil, notes: [CommitNote] = []) -> JSONValue {
        .obj([
            "id": .string(c.id.hex),
            "parents": .array(c.parents.map { .string($0.hex) }),
            "base": .opt(c.base?.hex),
            "tree": .string(c.treeID.hex),
            "author": .string(c.author),
            "date": .string(Format.iso(c.timestamp)),
            "timestamp": .double(c.timestamp),
            "message": .string(c.message),
            "metrics": .object((metrics ?? c.metrics).map { JSONMember($0.name, .double($0.value)) }),
            "notes": .array(notes.map { .string($0.text) }),
            "refs": .array(names.map { .string($0) }),
            "extra": c.extra,
        ])
    }
}
