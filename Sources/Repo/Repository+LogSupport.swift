import Delta
import Foundation

/// One file of a commit's `--stat`: what changed against the first parent and what it cost to store.
public struct CommitFileStat: Sendable, Equatable {
    public enum Status: String, Sendable { case added, removed, modified }
    public var path: String
    public var status: Status
    /// Tensors added, removed or changed (safetensors files).
    public var tensorsChanged: Int
    public var tensorCount: Int
    /// Stored bytes of the objects of this file that the parent's tree does not have.
    public var storedBytes: Int
    public var byteCount: Int
}

extension Repository {
    /// Commits reachable from `starts` and not in `excluded`, children always before their parents
    /// (newest first among commits that are ready), as `log --graph` needs them.
    public func topologicalLog(from starts: [ObjectID], excluded: Set<ObjectID> = [], firstParent: Bool = false) throws -> [Commit] {
        var all: [ObjectID: Commit] = [:]
        var stack = starts.filter { !excluded.contains($0) }
        while let id = stack.popLast() {
            guard all[id] == nil else { continue }
            let c = try commit(id)
            all[id] = c
            for p in firstParent ? Array(c.parents.prefix(1)) : c.parents where !excluded.contains(p) && all[p] == nil { stack.append(p) }
        }
        var pendingChildren: [ObjectID: Int] = [:]
        for c in all.values {
            for p in firstParent ? Array(c.parents.prefix(1)) : c.parents where all[p] != nil { pendingChildren[p, default: 0] += 1 }
        }
        var ready = all.values.filter { pendingChildren[$0.id, default: 0] == 0 }
        var out: [Commit] = []
        while !ready.isEmpty {
            let i = ready.indices.max { a, b in
                (ready[a].timestamp, ready[a].generation, ready[b].id.hex) < (ready[b].timestamp, ready[b].generation, ready[a].id.hex)
            }!
            let c = ready.remove(at: i)
            out.append(c)
            for p in firstParent ? Array(c.parents.prefix(1)) : c.parents {
                guard let pc = all[p] else { continue }
                pendingChildren[p, default: 0] -= 1
                if pendingChildren[p] == 0 { ready.append(pc) }
            }
        }
        return out
    }

    /// Whether a commit changed what the specs name: files (a path, a folder, or a glob over
    /// paths) or tensors (a name or a glob over names), as git's pathspec does. A commit counts
    /// when it differs from every parent there (a merge that took one side unchanged does not).
    public func touches(_ c: Commit, specs: [String]) throws -> Bool {
        let mine = Repository.signature(try tree(of: c.id), specs: specs)
        if c.parents.isEmpty { return !mine.isEmpty }
        for p in c.parents where Repository.signature(try tree(of: p), specs: specs) == mine { return false }
        return true
    }

    static func signature(_ tree: Tree, specs: [String]) -> [String: String] {
        var out: [String: String] = [:]
        let specs = specs.map(normalizedPathSpec)
        for f in tree.files {
            if specs.contains(where: { PathSpec.matches($0, file: f.path) }) { out["file " + f.path] = f.identity }
            for t in f.tensors where specs.contains(where: { $0 == t.name || PathSpec.glob($0, t.name) }) {
                out["tensor " + t.name] = "\(t.dtype.rawValue) \(t.shape) \(t.objectID.hex)"
            }
        }
        return out
    }

    /// Per file, what a commit changed against its first parent (everything, for a root commit).
    public func fileStats(of c: Commit) throws -> [CommitFileStat] {
        let mine = try tree(of: c.id)
        let parent = try c.parents.first.map { try tree(of: $0) } ?? .empty
        let parentObjects = parent.objectIDs
        var out: [CommitFileStat] = []
        for path in Set(mine.files.map(\.path)).union(parent.files.map(\.path)).sorted() {
            let a = parent.file(at: path), b = mine.file(at: path)
            if a?.identity == b?.identity { continue }
            let status: CommitFileStat.Status = a == nil ? .added : (b == nil ? .removed : .modified)
            var changed = 0
            let before = Dictionary((a?.tensors ?? []).map { ($0.name, $0.objectID) }, uniquingKeysWith: { x, _ in x })
            let after = Dictionary((b?.tensors ?? []).map { ($0.name, $0.objectID) }, uniquingKeysWith: { x, _ in x })
            changed = Set(before.keys).union(after.keys).filter { before[$0] != after[$0] }.count
            var stored = 0
            if let b {
                for id in Set([b.objectID] + b.tensors.map(\.objectID)) where !parentObjects.contains(id) {
                    stored += try history.objectInfo(id)?.storedByteCount ?? 0
                }
            }
            out.append(CommitFileStat(path: path, status: status, tensorsChanged: changed, tensorCount: (b ?? a)?.tensors.count ?? 0,
                                      storedBytes: stored, byteCount: b?.byteCount ?? 0))
        }
        return out
    }
}
