import Delta
import Foundation

/// A revision range as git writes it: `A..B` (reachable from B, not from A), `A...B` (from
/// either, not from both), `^A B`.
public struct RevisionRange: Sendable, Equatable {
    public var include: [ObjectID]
    public var exclude: [ObjectID]
    /// `A...B`: the two sides (diff compares their merge base with B).
    public var symmetric: (ObjectID, ObjectID)?

    public static func == (a: RevisionRange, b: RevisionRange) -> Bool {
        a.include == b.include && a.exclude == b.exclude && a.symmetric?.0 == b.symmetric?.0 && a.symmetric?.1 == b.symmetric?.1
    }
}

extension Repository {
    /// The forms of `resolve` beyond names and ids: `ORIG_HEAD`, `-` and `@{-N}` (the N-th
    /// previous branch), `stash` and `stash@{N}` (stash entries), `REF@{N}` and `@{N}` (where REF
    /// or HEAD pointed N moves ago, from the reflog). Nil when `base` is none of them.
    func resolveSpecial(_ base: String, whole: String) throws -> ObjectID? {
        if base == "ORIG_HEAD" {
            guard let id = try history.origHead() else {
                throw RepoError.invalidArgument("ORIG_HEAD is not set (reset, commit --amend, revert, cherry-pick and stash set it)")
            }
            return id
        }
        if base == "-" || (base.hasPrefix("@{-") && base.hasSuffix("}")) {
            let n = base == "-" ? 1 : Int(base.dropFirst(3).dropLast()) ?? 0
            guard n >= 1 else { throw RepoError.unknownRevision(whole) }
            let name = try previousBranch(n)
            if let ref = try history.ref(named: name) { return ref.target }
            if let id = ObjectID(hex: name) { return id }
            return try resolve(name)
        }
        // `stash` and `stash@{N}` name stash entries, as git's refs/stash, unless a branch or tag
        // is named stash.
        if base == "stash", try history.ref(named: "stash") == nil { return try stashEntry(0, whole: whole) }
        guard let at = base.range(of: "@{"), base.hasSuffix("}") else { return nil }
        let refName = String(base[..<at.lowerBound])
        let inner = base[at.upperBound..<base.index(before: base.endIndex)]
        if inner == "u" || inner == "upstream" || inner == "push" {
            // git's `@{u}`, `BRANCH@{upstream}` (and `@{push}`, which is the upstream here): the
            // remote-tracking branch the branch tracks.
            let branch: String
            if refName.isEmpty || refName == "@" || refName == "HEAD" {
                guard let current = try history.head().branchName else { throw RepoError.invalidArgument("'\(whole)': HEAD is detached, so it has no upstream") }
                branch = current
            } else {
                guard try history.ref(named: refName)?.kind == .branch else { throw RepoError.invalidArgument("'\(whole)': no branch named '\(refName)'") }
                branch = refName
            }
            guard let upstream = try upstreamName(of: branch) else {
                throw RepoError.invalidArgument("'\(whole)': branch '\(branch)' has no upstream ('mrepo branch -u REMOTE/BRANCH' sets one)")
            }
            return try resolve(upstream)
        }
        guard let n = Int(inner), n >= 0 else {
            throw RepoError.invalidArgument("'\(whole)': expected REF@{N} with a number N of moves back (dates are not supported)")
        }
        if refName == "stash", try history.ref(named: "stash") == nil { return try stashEntry(n, whole: whole) }
        let ref = refName.isEmpty || refName == "@" ? "HEAD" : refName
        // A branch or tag, or a remote-tracking branch (`origin/main@{1}`: where it was before the
        // last fetch moved it), whose reflog is kept under the same name.
        var current: ObjectID?
        if ref != "HEAD" {
            guard let target = try history.ref(named: ref)?.target ?? remoteRef(spelled: ref)?.target else { throw RepoError.unknownRef(ref) }
            current = target
        }
        let entries = try history.reflog(ref: ref, limit: n + 1)
        if n == 0 {
            if let current { return current }
            return try resolve("HEAD")
        }
        if n < entries.count, let id = entries[n].new { return id }
        if n < entries.count {
            // The entry records a deletion: the ref was kept in its log, but named nothing then.
            throw RepoError.invalidArgument("'\(whole)': \(ref) did not exist then (entry \(n) of its reflog, 'mrepo reflog \(ref)', is its deletion; \(refName)@{\(n + 1)} is where it was before)")
        }
        if n == entries.count, let id = entries.last?.old { return id }
        throw RepoError.invalidArgument("'\(whole)': the reflog of \(ref) has only \(entries.count) entr\(entries.count == 1 ? "y" : "ies")")
    }

    /// Stash entry `n` (0, the newest) as `stash@{n}`, for the revision `whole`.
    private func stashEntry(_ n: Int, whole: String) throws -> ObjectID {
        let entries = try history.stashes()
        guard n < entries.count else {
            throw RepoError.invalidArgument("'\(whole)': " + (entries.isEmpty ? "there are no stash entries" : "the stash has only \(entries.count) entr\(entries.count == 1 ? "y" : "ies")"))
        }
        return entries[n].commit
    }

    /// The branch `-` or `@{-N}` stands for (what ``previousBranch(_:)`` gives); nil for any other spelling.
    func previousBranchName(spelled text: String) throws -> String? {
        guard text == "-" || (text.hasPrefix("@{-") && text.hasSuffix("}")), let n = text == "-" ? 1 : Int(text.dropFirst(3).dropLast()), n >= 1 else {
            return nil
        }
        return try previousBranch(n)
    }

    /// The branch (or detached commit) HEAD was on before the N-th last `switch` or `checkout`.
    public func previousBranch(_ n: Int = 1) throws -> String {
        var found = 0
        for e in try history.reflog(ref: "HEAD", limit: Int.max) {
            guard let from = Repository.movedFrom(e.message) else { continue }
            found += 1
            if found == n { return from }
        }
        throw RepoError.invalidArgument(n == 1 ? "no previous branch: HEAD has not been switched yet" : "no \(n)-th previous branch in the reflog")
    }

    /// `X` of a reflog message `switch: moving from X to Y` or `checkout: moving from X to Y`.
    static func movedFrom(_ message: String) -> String? {
        for prefix in ["switch: moving from ", "checkout: moving from "] where message.hasPrefix(prefix) {
            let rest = message.dropFirst(prefix.count)
            guard let space = rest.firstIndex(of: " ") else { return nil }
            return String(rest[..<space])
        }
        return nil
    }

    /// Parses `A..B`, `A...B` (either side may be empty: HEAD), or nil for a single revision.
    public func resolveRange(_ spec: String) throws -> RevisionRange? {
        if let r = spec.range(of: "...") {
            let a = try resolve(spec[..<r.lowerBound].isEmpty ? "HEAD" : String(spec[..<r.lowerBound]))
            let b = try resolve(spec[r.upperBound...].isEmpty ? "HEAD" : String(spec[r.upperBound...]))
            return RevisionRange(include: [a, b], exclude: try mergeBases([a, b]), symmetric: (a, b))
        }
        if let r = spec.range(of: "..") {
            let a = try resolve(spec[..<r.lowerBound].isEmpty ? "HEAD" : String(spec[..<r.lowerBound]))
            let b = try resolve(spec[r.upperBound...].isEmpty ? "HEAD" : String(spec[r.upperBound...]))
            return RevisionRange(include: [b], exclude: [a], symmetric: nil)
        }
        return nil
    }

    /// The commits `log` walks from a list of revisions: ranges, `^REV` exclusions and plain
    /// revisions (default HEAD), as (starts, excluded commits with their ancestors).
    public func logStarts(_ revisions: [String]) throws -> (starts: [ObjectID], excluded: Set<ObjectID>) {
        var starts: [ObjectID] = []
        var hidden: [ObjectID] = []
        for rev in revisions {
            if let range = try resolveRange(rev) {
                starts += range.include
                hidden += range.exclude
            } else if rev.hasPrefix("^"), rev.count > 1 {
                hidden.append(try resolve(String(rev.dropFirst())))
            } else {
                starts.append(try resolve(rev))
            }
        }
        var excluded = Set<ObjectID>()
        for h in hidden { excluded.formUnion(try ancestors(of: h)) }
        return (starts, excluded)
    }

    /// Splits `REV:path` into the revision and the path (`:path` alone means HEAD). Nil when the
    /// text has no colon; ref names cannot hold one.
    public static func splitPathRevision(_ text: String) -> (revision: String, path: String)? {
        guard let colon = text.firstIndex(of: ":") else { return nil }
        let rev = String(text[..<colon])
        let path = String(text[text.index(after: colon)...])
        return (rev.isEmpty ? "HEAD" : rev, path)
    }

    /// The file at `path` in a revision's tree; the error names the revision and the path.
    public func file(at path: String, in revision: String) throws -> (commit: ObjectID, file: TreeFile) {
        let id = try resolve(revision)
        let normalized = path.hasPrefix("./") ? String(path.dropFirst(2)) : path
        guard let file = try tree(of: id).file(at: normalized) else {
            throw RepoError.invalidArgument("path '\(path)' does not exist in \(revision) (\(id.short))")
        }
        return (id, file)
    }

    /// The bytes of one file of a revision, streamed to `sink` (a blob as stored, a safetensors
    /// file rebuilt from its header and tensors).
    public func readFile(_ file: TreeFile, sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        try withReadLock {
            try objects.decode(file.objectID, sink: sink)
            if file.kind == .safetensors {
                for t in file.tensors.inDataOrder() {
                    try objects.decode(t.objectID, sink: sink)
                }
            }
            objects.releaseMappings()
        }
    }
}
