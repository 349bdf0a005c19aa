import Delta
import Foundation
import Synchronization

/// An mrepo repository: a working tree with a `.mrepo` directory holding the object store and the
/// history database.
///
/// Every command is one method (in `Repository+<Command>.swift`). Commands that write take the
/// repository's write lock for their whole run; readers never take it.
///
/// A linked working tree (`mrepo worktree add`) is a folder whose `.mrepo` is a file naming the
/// main working tree's `.mrepo` directory ("store") and its own key: objects, refs, commits, the
/// reflog, hooks and the locks are the store's, HEAD, the stat cache, a merge in progress and a
/// view are the working tree's (``HistoryDatabase/worktree``).
public final class Repository: Sendable {
    /// The working tree: the folder that holds `.mrepo` (a directory, or a linked working tree's file).
    public let root: String
    /// The store: `<main working tree>/.mrepo`, shared by every working tree.
    public let metaDirectory: String
    /// '' for the main working tree, else the key of this linked working tree.
    public let worktreeID: String
    public let history: HistoryDatabase
    public let objects: ObjectStore

    /// What the caller may set after opening; commands read it from worker threads.
    private struct Settings {
        var transportEnvironment: [String: String] = ProcessInfo.processInfo.environment
        var progress: (any ProgressSink)?
        var codecOptions = CodecOptions.default
        var waitNotice: (@Sendable (String) -> Void)?
        var pendingCheckouts = PendingCheckoutPolicy.finish
    }

    private let settings = Mutex(Settings())

    /// Receives progress of long operations (nil: silent).
    public var progress: (any ProgressSink)? {
        get { settings.withLock { $0.progress } }
        set { settings.withLock { $0.progress = newValue } }
    }

    /// Codec parameters for new objects.
    public var codecOptions: CodecOptions {
        get { settings.withLock { $0.codecOptions } }
        set { settings.withLock { $0.codecOptions = newValue } }
    }

    /// What this object's writers do with a checkout an interrupted command left, when a command
    /// does not say (``PendingCheckout``): `mrepo serve` sets ``PendingCheckoutPolicy/leave``.
    public var pendingCheckouts: PendingCheckoutPolicy {
        get { settings.withLock { $0.pendingCheckouts } }
        set { settings.withLock { $0.pendingCheckouts = newValue } }
    }

    /// Told when a command has to wait for another (gc for readers, a reader for gc).
    public var waitNotice: (@Sendable (String) -> Void)? {
        get { settings.withLock { $0.waitNotice } }
        set { settings.withLock { $0.waitNotice = newValue } }
    }
    /// Where remotes read credentials and endpoints (S3's `AWS_*` variables): the process's
    /// environment unless set.
    public var transportEnvironment: [String: String] {
        get { settings.withLock { $0.transportEnvironment } }
        set { settings.withLock { $0.transportEnvironment = newValue } }
    }
    /// The folders this process writes temporary files into (docs/format.md §7.4).
    let journal: WriteJournal
    /// How many write and read locks this object holds: a reader called inside a writer, or
    /// inside another reader, takes no further lock.
    private let writeLocks = Atomic<Int>(0)
    /// Post hooks (`post-commit`, `post-merge`) asked for while this thread holds the write lock:
    /// run once it is released, as git does, so that a hook may call mrepo to write (`metric add`,
    /// `tag`). Per thread: `mrepo serve` shares one object among concurrent requests.
    final class PostHookQueue {
        var depth = 0
        var hooks: [(name: String, environment: [String: String])] = []
        /// What those hooks' failures said, for the command's result (``takePostHookWarnings()``).
        var warnings: [String] = []
    }

    /// This thread's queue for this repository.
    private var postHookQueue: PostHookQueue {
        let key = "mrepo.postHooks.\(ObjectIdentifier(self).hashValue)"
        let dictionary = Thread.current.threadDictionary
        if let queue = dictionary[key] as? PostHookQueue { return queue }
        let queue = PostHookQueue()
        dictionary[key] = queue
        return queue
    }
    private let readLocks = Atomic<Int>(0)
    /// Whether this object deletes the journal when released (not a view of another's).
    private let ownsJournal: Bool

    /// Name of the metadata directory inside the working tree.
    public static let directoryName = ".mrepo"

    /// - Parameters:
    ///   - store: the `.mrepo` directory (default `<root>/.mrepo`).
    ///   - worktree: the working tree's key ('' for the main one).
    ///   - access: whether the command writes history (``HistoryAccess``).
    init(root: String, store: String? = nil, worktree: String = "", access: HistoryAccess = .readWrite) throws {
        self.root = root
        metaDirectory = store ?? root + "/" + Repository.directoryName
        worktreeID = worktree
        history = try HistoryDatabase(path: metaDirectory + "/mrepo.db", create: false, worktree: worktree, access: access)
        journal = WriteJournal(metaDirectory: metaDirectory)
        objects = ObjectStore(root: metaDirectory + "/objects", journal: journal)
        ownsJournal = true
        if (try? history.remotes().contains { $0.lazy }) == true { readMissingObjectsLazily() }
    }

    /// Makes reads of a missing object file fetch it from the lazy remote (a lazy clone).
    func readMissingObjectsLazily() {
        objects.missingFileHandler.withLock {
            $0 = { [weak self] id in try self?.ensureObjectFiles([id]) }
        }
    }

    /// The same repository seen from another of its working trees, sharing this object's
    /// database connections, object store and journal; used within one of this object's
    /// commands (it takes no lock of its own).
    init(viewing other: Repository, root: String, worktree: String) {
        self.root = root
        metaDirectory = other.metaDirectory
        worktreeID = worktree
        history = HistoryDatabase(sharing: other.history, worktree: worktree)
        journal = other.journal
        objects = other.objects
        ownsJournal = false
        codecOptions = other.codecOptions
        progress = other.progress
    }

    deinit {
        if ownsJournal { journal.close() }
    }

    /// The main working tree: the folder holding the store.
    public var mainRoot: String { splitPath(metaDirectory).dir }

    /// Deletes this process's write journal (a long-running server at shutdown; a command's goes
    /// with the repository object). Call it only when no write of this process is under way.
    public func closeJournal() { journal.close() }

    /// Whether this is a linked working tree (`mrepo worktree add`).
    public var isLinkedWorktree: Bool { !worktreeID.isEmpty }

    /// Why a folder cannot be created, in the system's words, naming the part of the path at fault
    /// (Foundation's error says only "The operation could not be completed").
    static func whyNoDirectory(_ path: String) -> String {
        var prefix = ""
        var created: [String] = []
        // Folders made while probing go again: the command writes nothing.
        defer { for dir in created.reversed() { rmdir(dir) } }
        for part in path.split(separator: "/", omittingEmptySubsequences: true) {
            prefix += "/" + part
            if let st = FileStat.of(prefix, followLinks: true) {
                if !st.isDirectory { return "\(prefix) is not a folder" }
                continue
            }
            guard mkdir(prefix, 0o755) == 0 else { return "\(prefix): \(String(cString: strerror(errno)))" }
            created.append(prefix)
        }
        return "the file system refused it"
    }

    /// Creates a repository in `path` (which is created if missing).
    ///
    /// - Parameters:
    ///   - installSampleHooks: install the sample hooks (`pre-commit` refusing NaN/Inf, ...) as active hooks.
    ///   - initialBranch: the name of the first branch; the default is `main`.
    ///   - bare: a repository that others push to: pushes may move the branch HEAD names, whose
    ///     files the working tree then no longer holds (nobody works in it).
    @discardableResult
    public static func initialize(at path: String, installSampleHooks: Bool = false, initialBranch: String = "main",
                                  bare: Bool = false) throws -> Repository {
        let root = absolutePath(path)
        try RefNames.validateNew(initialBranch)
        let meta = root + "/" + directoryName
        if FileManager.default.fileExists(atPath: meta) { throw RepoError.alreadyARepository(path: root) }
        // The folders this creates, deepest last: removed again if it fails (it writes nothing then).
        var missing: [String] = []
        var folder = meta
        while !folder.isEmpty, folder != "/", FileStat.of(folder, followLinks: true) == nil {
            missing.append(folder)
            folder = (folder as NSString).deletingLastPathComponent
        }
        do {
            try FileManager.default.createDirectory(atPath: meta + "/objects", withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: meta + "/hooks", withIntermediateDirectories: true)
        } catch {
            for dir in [meta + "/objects", meta + "/hooks"] + missing { rmdir(dir) }
            throw RepoError.io(path: meta, reason: "cannot create the repository directory: \(Repository.whyNoDirectory(meta + "/objects"))")
        }
        _ = try HistoryDatabase(path: meta + "/mrepo.db", create: true)
        let repo = try Repository(root: root)
        repo.journal.note(directory: meta + "/hooks")
        if bare { try repo.history.setMeta("bare", "1") }
        if initialBranch != "main" {
            try repo.history.setHead(.branch(initialBranch, commit: nil), expected: nil, message: "init")
        }
        for sample in HookSamples.all {
            let target = meta + "/hooks/" + sample.name + (installSampleHooks ? "" : ".sample")
            try AtomicFileWriter.write(Array(sample.script.utf8), to: target, permissions: 0o755)
        }
        try AtomicFileWriter.syncDirectory(root)
        return repo
    }

    /// Opens the repository that contains `path` (searching parent folders, as git does), and
    /// deletes the temporary files that crashed commands left (``LeftoverSweeper``). A `.mrepo`
    /// file, not a directory, makes the folder a linked working tree of the store it names.
    /// - Parameter access: ``HistoryAccess/readOnly`` for a command that records no history.
    public static func open(at path: String = FileManager.default.currentDirectoryPath, access: HistoryAccess = .readWrite) throws -> Repository {
        var dir = absolutePath(path)
        while true {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: dir + "/" + directoryName, isDirectory: &isDir) {
                let repo = isDir.boolValue ? try Repository(root: dir, access: access) : try openLinked(root: dir, access: access)
                LeftoverSweeper.sweep(metaDirectory: repo.metaDirectory)
                return repo
            }
            if dir == "/" || dir.isEmpty { break }
            dir = splitPath(dir).dir
        }
        throw RepoError.notARepository(path: absolutePath(path))
    }

    /// Whether this process holds this repository's write lock (through any `Repository` object
    /// of it: a remote that names the repository's own folder is another object).
    var holdsWriteLockHere: Bool { WriteLock.isHeldHere(path: metaDirectory + "/lock") }

    /// Takes the write lock for the duration of `body`, after finishing (or, as `pending` says,
    /// dropping or leaving) the checkout of a command killed after its record (``PendingCheckout``).
    ///
    /// - Parameter wait: wait for another writer to finish instead of failing.
    public func withWriteLock<T>(wait: Bool = false, pending: PendingCheckoutPolicy? = nil, _ body: () throws -> T) throws -> T {
        let lock = try WriteLock(path: metaDirectory + "/lock", wait: wait)
        writeLocks.add(1, ordering: .relaxed)
        let queue = postHookQueue
        queue.depth += 1
        defer {
            writeLocks.subtract(1, ordering: .relaxed)
            lock.release()
            queue.depth -= 1
            if queue.depth == 0 { runDeferredPostHooks(queue) }
        }
        defer { objects.releaseMappings() }
        if let done = try finishPendingCheckout(pending ?? pendingCheckouts) { waitNotice?(done) }
        return try body()
    }

    /// Takes the write lock for the duration of an asynchronous `body` (fetch, clone, pull).
    public func withWriteLock<T>(wait: Bool = false, pending: PendingCheckoutPolicy? = nil, async body: () async throws -> T) async throws -> T {
        let lock = try WriteLock(path: metaDirectory + "/lock", wait: wait)
        writeLocks.add(1, ordering: .relaxed)
        defer {
            writeLocks.subtract(1, ordering: .relaxed)
            lock.release()
            objects.releaseMappings()
        }
        if let done = try finishPendingCheckout(pending ?? pendingCheckouts) { waitNotice?(done) }
        return try await body()
    }

    /// Holds the read lock (gc waits) for an asynchronous reader (push).
    func withReadLock<T>(async body: () async throws -> T) async throws -> T {
        if writeLocks.load(ordering: .relaxed) > 0 || readLocks.load(ordering: .relaxed) > 0 { return try await body() }
        let lock = ReaderBarrier.shared(path: gcLockPath, notice: waitNotice)
        readLocks.add(1, ordering: .relaxed)
        defer {
            readLocks.subtract(1, ordering: .relaxed)
            lock?.release()
        }
        return try await body()
    }

    /// `.mrepo/gc.lock`: readers share it, gc holds it exclusively.
    var gcLockPath: String { metaDirectory + "/gc.lock" }

    /// Runs a reader that needs the objects it reads to stay (export, diff, status, a merge's
    /// report): it holds `.mrepo/gc.lock` shared, so `gc` waits for it, and it waits for a `gc`
    /// that runs. Inside a writer (which excludes gc already) it takes no lock.
    func withReadLock<T>(_ body: () throws -> T) throws -> T {
        if writeLocks.load(ordering: .relaxed) > 0 || readLocks.load(ordering: .relaxed) > 0 { return try body() }
        let lock = ReaderBarrier.shared(path: gcLockPath, notice: waitNotice)
        readLocks.add(1, ordering: .relaxed)
        defer {
            readLocks.subtract(1, ordering: .relaxed)
            lock?.release()
        }
        return try body()
    }

    /// Whether an absolute path is this repository's store or lies inside it, as spelled or
    /// however symbolic links lead there (export folders, `commit --from`, report files).
    func isInsideStore(_ absolute: String) -> Bool {
        let store = Repository.resolvingLinks(metaDirectory), real = Repository.resolvingLinks(absolute)
        return [(absolute, metaDirectory), (real, store)].contains { path, meta in path == meta || path.hasPrefix(meta + "/") }
    }

    /// Refuses a destination for a file the user asked for (an HTML report) that would replace
    /// something of the repository's: anything inside `.mrepo` (its history database, however
    /// links lead there), a folder, or a file of the working tree that HEAD tracks (a report
    /// written over `model.safetensors`), or one of `alsoWritten` (what the command itself is
    /// about to write there, such as a merge's `merge_recipe.yml`). Checked before the command
    /// writes anything, so that a refusal leaves everything as it was.
    public func checkOutputFile(_ path: String, option: String, alsoWritten: [String] = []) throws {
        let full = Repository.absolutePath(path)
        let parent = Repository.resolvingLinks(splitPath(full).dir)
        let real = parent + "/" + splitPath(full).name
        if isInsideStore(full) || isInsideStore(real) {
            throw RepoError.invalidArgument("\(option) \(path): the file would be inside the repository's own store (\(Repository.directoryName)); write it elsewhere")
        }
        // A repository's own entry anywhere (a linked working tree's `.mrepo` is a file naming
        // its store; a nested repository's, a `.git`).
        let worktreeRoot = Repository.resolvingLinks(root)
        let inside = real.hasPrefix(worktreeRoot + "/") ? real.dropFirst(worktreeRoot.count + 1).split(separator: "/") : []
        if PathPolicy.isReserved(splitPath(full).name) || inside.contains(where: { PathPolicy.isReserved($0) }) {
            throw RepoError.invalidArgument("\(option) \(path): would write into a repository's own .mrepo or .git; write it elsewhere")
        }
        if let st = FileStat.of(full, followLinks: true), st.isDirectory {
            throw RepoError.invalidArgument("\(option) \(path): is a folder; name a file (report.html)")
        }
        guard real.hasPrefix(worktreeRoot + "/") else { return }
        let relative = String(real.dropFirst(worktreeRoot.count + 1))
        if let head = try headCommit(), try tree(of: head).files.contains(where: { $0.path == relative }) {
            throw RepoError.invalidArgument("\(option) \(path): would replace \(relative), a file of the working tree the repository tracks; write it elsewhere")
        }
        if alsoWritten.contains(relative) {
            throw RepoError.invalidArgument("\(option) \(path): would replace \(relative), which this command writes; write it elsewhere")
        }
    }

    /// Writes a file atomically (a report the user asked for), noting its folder in the journal
    /// so a crash leaves no temporary file behind. Never into `.mrepo` (``checkOutputFile(_:option:alsoWritten:)``
    /// is the whole check, made before the command writes anything).
    public func writeFile(_ bytes: [UInt8], to path: String, permissions: mode_t = 0o644) throws {
        let full = Repository.absolutePath(path)
        if isInsideStore(Repository.resolvingLinks(splitPath(full).dir) + "/" + splitPath(full).name) || isInsideStore(full) {
            throw RepoError.invalidArgument("\(path): the file would be inside the repository's own store (\(Repository.directoryName)); write it elsewhere")
        }
        journal.note(directory: splitPath(full).dir)
        try AtomicFileWriter.write(bytes, to: full, permissions: permissions)
    }

    // MARK: - Revisions

    /// The commit a revision names: `HEAD`, a branch, a tag, a full or unique-prefix (≥ 4 digits)
    /// commit id, each followed by any number of `~N` (N-th first-parent ancestor) and `^N`
    /// (N-th parent).
    public func resolve(_ revision: String) throws -> ObjectID {
        // `REV^{}` and `REV^{commit}` peel a tag; mrepo's tags name commits directly.
        let revision = revision.replacingOccurrences(of: "^{commit}", with: "").replacingOccurrences(of: "^{}", with: "")
        var (base, suffix) = splitRevision(revision)
        var id = try resolveBase(base, whole: revision)
        while !suffix.isEmpty {
            let op = suffix.removeFirst()
            // Anything else after the name (`HEAD~x`, `HEAD^{tree}`, `HEAD~ 1`) names nothing; it
            // must not be read as one more step back.
            guard op == "~" || op == "^" else { throw RepoError.unknownRevision(revision) }
            var digits = ""
            while let c = suffix.first, c.isASCII, c.isNumber {
                digits.append(c)
                suffix.removeFirst()
            }
            let n = digits.isEmpty ? 1 : (Int(digits) ?? -1)
            guard n >= 0 else { throw RepoError.unknownRevision(revision) }
            base = ""
            if op == "~" {
                for _ in 0..<n {
                    guard let parent = try history.parents(of: id).first else {
                        try refuseBeyondShallowBoundary(revision, at: id)
                        throw RepoError.missingParent(revision: revision, commit: id.short, parents: 0)
                    }
                    id = parent
                }
            } else {
                if n == 0 { continue }
                let parents = try history.parents(of: id)
                if parents.isEmpty { try refuseBeyondShallowBoundary(revision, at: id) }
                guard n <= parents.count else {
                    throw RepoError.missingParent(revision: revision, commit: id.short, parents: parents.count)
                }
                id = parents[n - 1]
            }
        }
        return id
    }

    private func splitRevision(_ rev: String) -> (String, String) {
        guard let i = rev.firstIndex(where: { $0 == "~" || $0 == "^" }) else { return (rev, "") }
        return (String(rev[..<i]), String(rev[i...]))
    }

    private func resolveBase(_ base: String, whole: String) throws -> ObjectID {
        if let id = try resolveSpecial(base, whole: whole) { return id }
        if base == "HEAD" || base == "@" {
            guard let id = try history.head().commit else {
                throw RepoError.unbornBranch(try history.head().branchName ?? "")
            }
            return id
        }
        let lower = base.lowercased()
        // A full commit id (as HF clients send it, 40 digits, or all 64) names that commit, whatever
        // ref is spelled the same, as in git: a pinned revision cannot be redirected by a branch.
        if lower.count >= 40, lower.count <= 64, lower.allSatisfy({ $0.isHexDigit }) {
            let matches = try history.commitIDs(withPrefix: lower)
            if matches.count == 1 { return matches[0] }
        }
        if let ref = try history.ref(named: base) { return ref.target }
        // git's full names of branches and tags (new names may not start with `refs/`).
        for (prefix, kind) in [("refs/heads/", Ref.Kind.branch), ("refs/tags/", .tag)] where base.hasPrefix(prefix) {
            if let ref = try history.ref(named: String(base.dropFirst(prefix.count))), ref.kind == kind { return ref.target }
        }
        // `origin/main`: a remote-tracking ref (a local branch of that name wins, as in git).
        if let tracking = try remoteRef(spelled: base) { return tracking.target }
        if lower.count >= 4, lower.allSatisfy({ $0.isHexDigit }) {
            let matches = try history.commitIDs(withPrefix: lower)
            if matches.count == 1 { return matches[0] }
            if matches.count > 1 { throw RepoError.ambiguousRevision(whole, candidates: matches.map(\.short)) }
        }
        throw RepoError.unknownRevision(whole)
    }

    /// The commit HEAD points at, or nil on an unborn branch.
    public func headCommit() throws -> ObjectID? {
        try history.head().commit
    }

    /// The commit record for an id that must exist.
    public func commit(_ id: ObjectID) throws -> Commit {
        guard let c = try history.commit(id) else { throw RepoError.unknownRevision(id.hex) }
        return c
    }

    /// The tree of a commit.
    public func tree(of commit: ObjectID) throws -> Tree {
        try history.tree(try self.commit(commit).treeID)
    }

    /// The tree of a commit, checked against its id first: a cheap guard, before files are written
    /// from it, against rows that were altered (fsck checks every tree this way).
    func verifiedTree(of commit: ObjectID) throws -> Tree {
        let c = try self.commit(commit)
        let tree = try history.tree(c.treeID)
        guard tree.id == c.treeID else {
            throw RepoError.corruptTree("tree \(c.treeID.short) of commit \(commit.short)",
                                        problem: "its rows do not hash to its id (the history database was altered)")
        }
        return tree
    }

    /// How the objects of a tree are stored (encoding, reference, stored bytes), by id.
    public func objectInfos(of tree: Tree) throws -> [ObjectID: ObjectInfo] {
        try history.objectInfos(tree.objectIDs)
    }

    // MARK: - Hooks

    /// Runs `.mrepo/hooks/<name>` if it exists and is executable.
    /// - Throws: ``RepoError/hookRejected(hook:status:)`` when it exits non-zero.
    public func runHook(_ name: String, environment: [String: String]) throws {
        // MREPO_DIR: the store, where a hook keeps its logs (a linked working tree's .mrepo is a file).
        let env = environment.merging(["MREPO_DIR": metaDirectory]) { given, _ in given }
        try HookRunner.run(path: metaDirectory + "/hooks/" + name, name: name, workingDirectory: root, environment: env)
    }

    /// Whether the hook would run (an executable file in the hooks folder).
    func hookExists(_ name: String) -> Bool {
        let path = metaDirectory + "/hooks/" + name
        if FileManager.default.isExecutableFile(atPath: path) { return true }
        HookRunner.hintIfNotExecutable(path, name: name)
        return false
    }

    /// Runs a hook after the fact: a failure cannot undo anything, so it becomes a warning.
    /// Under the write lock the hook waits for its release (``withWriteLock(wait:pending:_:)``) and
    /// this returns nil; its failure is then in ``takePostHookWarnings()``.
    func runPostHook(_ name: String, environment: [String: String]) -> String? {
        let queue = postHookQueue
        if queue.depth > 0 {
            queue.hooks.append((name, environment))
            return nil
        }
        return runPostHookNow(name, environment: environment)
    }

    private func runPostHookNow(_ name: String, environment: [String: String]) -> String? {
        do {
            try runHook(name, environment: environment)
            return nil
        } catch let RepoError.hookRejected(hook, status) {
            return "\(hook) hook failed (exit status \(status))"
        } catch let RepoError.hookKilled(hook, signal) {
            return "\(hook) hook was ended by signal \(signal)\(RepoError.signalName(signal).map { " (\($0))" } ?? "")"
        } catch {
            return RepoError.wrap(error).description
        }
    }

    /// Runs the post hooks this thread's command asked for while it held the write lock, now
    /// released.
    private func runDeferredPostHooks(_ queue: PostHookQueue) {
        let hooks = queue.hooks
        queue.hooks.removeAll()
        for hook in hooks {
            if let warning = runPostHookNow(hook.name, environment: hook.environment) { queue.warnings.append(warning) }
        }
    }

    /// The failures of the post hooks this thread ran since the last call (a command's warnings:
    /// the commit or merge stands).
    public func takePostHookWarnings() -> [String] {
        let queue = postHookQueue
        defer { queue.warnings.removeAll() }
        return queue.warnings
    }

    static func absolutePath(_ path: String) -> String {
        let full = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        return URL(fileURLWithPath: full).standardizedFileURL.path
    }
}

/// Branch and tag name rules (a subset of git's `check-ref-format`).
public enum RefNames {
    public static func validate(_ name: String) throws {
        func bad(_ reason: String) -> RepoError { .invalidRefName(name, reason: reason) }
        if name.isEmpty { throw bad("empty") }
        if name == "HEAD" || name == "@" { throw bad("reserved") }
        if name.hasPrefix("-") { throw bad("must not start with '-'") }
        if name.hasPrefix(".") || name.hasSuffix(".") || name.hasSuffix("/") || name.hasPrefix("/") {
            throw bad("must not start or end with '.' or '/'")
        }
        if name.contains("..") || name.contains("//") || name.contains("@{") { throw bad("must not contain '..', '//' or '@{'") }
        for c in name.unicodeScalars where c.value < 0x21 || c.value == 0x7F || "~^:?*[\\".unicodeScalars.contains(c) {
            throw bad("must not contain spaces, control characters or any of ~^:?*[\\")
        }
        if name.hasSuffix(".lock") { throw bad("must not end with '.lock'") }
    }

    /// ``validateNew(_:)`` when no ref of that name exists yet, else ``validate(_:)``: a ref of an
    /// older mrepo may still move (`branch -f`, `tag -f`, `commit --branch`).
    static func validate(_ name: String, existing: Bool) throws {
        if existing { try validate(name) } else { try validateNew(name) }
    }

    /// ``validate(_:)``, and for a ref being created here (a branch, a tag, a rename): not 40 hex
    /// digits or more, which read as a commit id (what HF clients pin), so the ref would stand for
    /// a commit it is not. Revisions of that length name the commit first anyway; refs spelled so
    /// by an older mrepo can still be pushed, fetched and deleted.
    public static func validateNew(_ name: String) throws {
        try validate(name)
        // The Hub's revision paths, S3 keys and file systems all stop somewhere: one limit for all.
        if name.utf8.count > 255 {
            throw RepoError.invalidRefName(name.count > 40 ? String(name.prefix(40)) + "..." : name,
                                           reason: "is \(name.utf8.count) bytes long; a branch or tag name holds at most 255")
        }
        // git's full names: `push R main:refs/remotes/x` made a branch of that name, which no
        // revision reads as one (`refs/remotes/R/B` is a remote-tracking ref).
        if name.hasPrefix("refs/") {
            throw RepoError.invalidRefName(name, reason: "must not start with 'refs/': a branch is named B (refs/heads/B in git), a tag T")
        }
        // What a name whose bytes were not UTF-8 became on the way in: two such names would be one.
        if name.unicodeScalars.contains("\u{FFFD}") {
            throw RepoError.invalidRefName(name, reason: "must be valid UTF-8 (it holds U+FFFD, the replacement for bytes that are not)")
        }
        if name.count >= 40, name.allSatisfy(\.isHexDigit) {
            throw RepoError.invalidRefName(name, reason: "must not look like a commit id (40 or more hex digits)")
        }
    }
}

/// Receives the progress of a long operation. Calls may come from any thread.
public protocol ProgressSink: AnyObject, Sendable {
    /// A phase starts; `total` is in bytes (or items when `unit` says so).
    func start(_ title: String, total: Int, unit: ProgressUnit)
    /// `done` units of the current phase are complete.
    func update(_ done: Int)
    /// The phase ended.
    func finish()
}

public enum ProgressUnit: Sendable {
    case bytes, items
}

/// Adds up progress from worker threads and forwards it.
final class ProgressCounter: Sendable {
    private let sink: (any ProgressSink)?
    private let done = Mutex(0)

    init(_ sink: (any ProgressSink)?, title: String, total: Int, unit: ProgressUnit = .bytes) {
        self.sink = sink
        sink?.start(title, total: total, unit: unit)
    }

    func add(_ n: Int) {
        guard let sink else { return }
        let value = done.withLock { total in
            total += n
            return total
        }
        sink.update(value)
    }

    func finish() {
        sink?.finish()
    }
}
