import CLinux
import Delta
import Foundation
import Glibc

/// What `mrepo bisect` is asked to do.
public enum BisectAction: Sendable {
    /// Start a bisection from HEAD, optionally marking a bad commit and good ones at once
    /// (`bisect start [BAD [GOOD...]]`).
    case start(bad: String?, good: [String])
    /// Mark commits (HEAD when none is named) bad, good or untestable.
    case mark(BisectState.Term, [String])
    /// End the bisection: HEAD goes back to where it started, or to the revision named.
    case reset(to: String?)
}

/// Where a bisection stands after an action.
public struct BisectOutcome: Sendable {
    /// The bisection (nil once reset, or when there was none to reset).
    public var state: BisectState?
    /// The suspects and the next commit to test; nil until a bad and a good commit are known.
    public var step: BisectStep?
    /// HEAD after the action.
    public var head: Head
    /// The working tree's update, when HEAD moved.
    public var checkout: CheckoutResult?
    /// `bisect reset` found a record it could not read and discarded it (HEAD stays).
    public var discardedDamagedRecord = false
    /// `bisect reset`: the branch the bisection started from no longer exists; HEAD went back to
    /// the commit it was at, detached.
    public var startBranchGone: String?
}

/// One test of `bisect run`: the commit tested, how the command exited, and the mark it gave.
public struct BisectRunTest: Sendable {
    public var commit: ObjectID
    public var exitStatus: Int32
    public var term: BisectState.Term
}

extension Repository {
    /// `mrepo bisect start|bad|good|skip|reset`: marks commits and checks out the next one to test
    /// (docs/guide.md, "Bisect"). The mark and the HEAD move are one transaction, after the working
    /// tree's files are staged: a refusal (a local change in the way, a contradiction between the
    /// marks) writes nothing.
    public func bisect(_ action: BisectAction, wait: Bool = false) throws -> BisectOutcome {
        try withWriteLock(wait: wait) { try bisectLocked(action) }
    }

    /// This working tree's bisection and where it stands, or nil (read-only: `bisect log`, `status`).
    public func bisectInProgress() throws -> BisectOutcome? {
        guard let state = try history.bisectState() else { return nil }
        return BisectOutcome(state: state, step: try bisectStep(state), head: try history.head(), checkout: nil)
    }

    /// `mrepo bisect run COMMAND...`: tests HEAD with the command and marks it by its exit status
    /// (0 good, 125 skip, 1–127 other than 125 bad), checks out the next commit, and again, until
    /// the first bad commit is known or only untestable commits are left. The command runs in
    /// `workingDirectory` without the write lock held, so it may call mrepo itself; it sees the
    /// commit under test in `MREPO_BISECT_COMMIT` and the working tree in `MREPO_ROOT`.
    ///
    /// - Parameters:
    ///   - outputToStandardError: send the command's standard output to standard error (`--json`).
    ///   - tested: called after each test, before the next checkout.
    /// - Throws: when the command cannot run, exits above 127 or dies of a signal; the marks made
    ///   so far are kept.
    public func bisectRun(_ command: [String], workingDirectory: String, outputToStandardError: Bool = false, wait: Bool = false,
                          tested: (BisectRunTest, BisectOutcome) -> Void = { _, _ in }) throws -> BisectOutcome {
        guard let executable = command.first, !executable.isEmpty else { throw RepoError.invalidArgument("bisect run: name the command to run") }
        // A step an earlier run was killed in is settled first (its note put HEAD's files back),
        // before the check that the working tree holds HEAD's files.
        if FileManager.default.fileExists(atPath: pendingCheckoutPath) { try withWriteLock(wait: wait) {} }
        guard let current = try history.bisectState() else {
            throw RepoError.invalidArgument("not bisecting; start with 'mrepo bisect start BAD GOOD'")
        }
        guard current.bad != nil, !current.good.isEmpty else {
            throw RepoError.invalidArgument("bisect run needs a bad and a good commit first ('mrepo bisect bad REV', 'mrepo bisect good REV')")
        }
        var outcome = BisectOutcome(state: current, step: try bisectStep(current), head: try history.head(), checkout: nil)
        while let step = outcome.step, step.next != nil {
            guard let commit = outcome.head.commit else { throw RepoError.invalidArgument("HEAD has no commits") }
            try requireHeadsFiles("bisect run", orNameTheCommit: false)
            let status = try runBisectCommand(command, commit: commit, workingDirectory: workingDirectory, outputToStandardError: outputToStandardError)
            let term: BisectState.Term = status == 0 ? .good : status == 125 ? .skip : .bad
            outcome = try bisect(.mark(term, [commit.hex]), wait: wait)
            tested(BisectRunTest(commit: commit, exitStatus: status, term: term), outcome)
        }
        return outcome
    }

    // MARK: - Steps

    private func bisectLocked(_ action: BisectAction) throws -> BisectOutcome {
        let head = try history.head()
        switch action {
        case let .start(bad, good):
            try refuseDuringMerge("bisect start")
            if try history.bisectState() != nil {
                throw RepoError.invalidArgument("a bisection is in progress; 'mrepo bisect reset' ends it")
            }
            guard let commit = head.commit else { throw RepoError.invalidArgument("HEAD has no commits yet; there is nothing to bisect") }
            var state = BisectState(startBranch: head.branchName, startCommit: commit)
            if let bad { state.marks.append(.init(term: .bad, commit: try resolve(bad))) }
            for g in good { state.marks.append(.init(term: .good, commit: try resolve(g))) }
            return try advance(to: state, from: head)
        case let .mark(term, revisions):
            guard var state = try history.bisectState() else {
                throw RepoError.invalidArgument("not bisecting; start with 'mrepo bisect start'")
            }
            try refuseDuringMerge("bisect \(term.rawValue)")
            if revisions.isEmpty { try requireHeadsFiles("bisect \(term.rawValue)", orNameTheCommit: true) }
            guard let headCommit = head.commit else { throw RepoError.invalidArgument("HEAD has no commits") }
            let commits = try revisions.isEmpty ? [headCommit] : revisions.map { try resolve($0) }
            if term == .bad, commits.count > 1 {
                throw RepoError.invalidArgument("bisect bad takes one revision: the search narrows down from a single bad commit")
            }
            for c in commits { state.marks.append(.init(term: term, commit: c)) }
            return try advance(to: state, from: head)
        case let .reset(revision):
            let stored: BisectState?
            do {
                stored = try history.bisectState()
            } catch RepoError.corruptRecord(_, _) {
                // A record that no longer decodes can only be discarded; HEAD stays where it is.
                try history.setBisectState(nil)
                return BisectOutcome(state: nil, step: nil, head: head, checkout: nil, discardedDamagedRecord: true)
            }
            guard let state = stored else {
                return BisectOutcome(state: nil, step: nil, head: head, checkout: nil)
            }
            try refuseDuringMerge("bisect reset")
            let target: (head: Head, commit: ObjectID)
            if let revision {
                if let ref = try history.ref(named: revision), ref.kind == .branch {
                    target = (.branch(revision, commit: ref.target), ref.target)
                } else {
                    let id = try resolve(revision)
                    target = (.detached(id), id)
                }
            } else if let name = state.startBranch, let ref = try history.ref(named: name), ref.kind == .branch {
                target = (.branch(name, commit: ref.target), ref.target)
            } else if let id = state.startCommit {
                target = (.detached(id), id)
            } else {
                throw RepoError.invalidArgument("the bisection's starting point is gone; name where to go: 'mrepo bisect reset REV'")
            }
            // A branch checked out in another working tree is refused before any file is written.
            if let name = target.head.branchName, name != head.branchName {
                do {
                    try refuseBranchCheckedOutElsewhere(name)
                } catch {
                    throw RepoError.invalidArgument("branch '\(name)' is checked out in another working tree; "
                        + "go elsewhere with 'mrepo bisect reset REV' (a commit, or another branch)")
                }
            }
            let checkout = try moveHeadBisecting(to: target.commit, newHead: target.head, from: head, state: nil,
                                                 message: "bisect reset: moving from \(head.displayName) to \(target.head.displayName)")
            let gone = revision == nil && target.head.branchName == nil ? state.startBranch : nil
            return BisectOutcome(state: nil, step: nil, head: target.head, checkout: checkout, startBranchGone: gone)
        }
    }

    /// Records `state` and, when it names a next commit to test, checks that commit out (HEAD
    /// detached), in one transaction after the files are staged.
    private func advance(to state: BisectState, from head: Head) throws -> BisectOutcome {
        let step = try bisectStep(state)
        if let next = step?.next, next != head.commit {
            let checkout = try moveHeadBisecting(to: next, newHead: .detached(next), from: head, state: state,
                                                 message: "bisect: checkout \(next.short)")
            return BisectOutcome(state: state, step: step, head: .detached(next), checkout: checkout)
        }
        try history.setBisectState(state)
        return BisectOutcome(state: state, step: step, head: head, checkout: nil)
    }

    /// Checks `target` out and moves HEAD to `newHead` with the bisection saved, as `switch` does:
    /// the files are staged and renamed into place first, then HEAD, its reflog entry, the stat
    /// cache and the bisection are one transaction. Interrupted in between, the working tree holds
    /// the target's files under the old HEAD and marks; the same command run again finds them in
    /// place (``stageCheckout(_:over:force:operation:carryUnchanged:prepared:)`` passes a file that
    /// already holds the target) and records what it did.
    private func moveHeadBisecting(to target: ObjectID, newHead: Head, from head: Head, state: BisectState?, message: String) throws -> CheckoutResult {
        let oldTree = try worktreeBaseline(head: head).tree
        let newTree = try verifiedTree(of: target)
        let stats = try checkOutThenMoveHead(newTree, over: oldTree, to: target, force: false, refusal: "bisect", operation: "bisect") { entries in
            try history.setHead(newHead, expected: head, message: message, statEntries: entries, bisect: state)
        }
        return CheckoutResult(head: newHead, writtenFiles: stats.written, removedFiles: stats.removed, unchangedFiles: stats.unchanged)
    }

    /// Refuses to judge HEAD by a working tree that does not hold HEAD's files: a tracked file
    /// changed or deleted (a test that edited it, a checkout interrupted before it was recorded).
    /// Untracked files (an evaluation's output) do not count.
    private func requireHeadsFiles(_ what: String, orNameTheCommit: Bool) throws {
        let remedy = "put them back ('mrepo restore PATH', or 'mrepo checkout --force HEAD')" + (orNameTheCommit ? " or name the commit" : "")
        if let view = try currentView() {
            throw RepoError.invalidArgument("\(what): the working tree holds \(view.description), not HEAD's files; "
                + "'mrepo checkout --force HEAD' puts them back")
        }
        let changed = try status().changes.filter { $0.kind != .added }.map(\.path)
        guard !changed.isEmpty else { return }
        let list = changed.prefix(3).map(DisplayText.escaping).joined(separator: ", ") + (changed.count > 3 ? " and \(changed.count - 3) more" : "")
        throw RepoError.invalidArgument("\(what): the working tree does not hold HEAD's files (\(list) changed), so a test of it says nothing "
            + "about HEAD; \(remedy)")
    }

    /// Where `state` stands; nil until it has a bad and a good commit. Throws when the marks
    /// contradict each other (a good commit that contains the bad one).
    ///
    /// As in git, a good commit the bad one does not contain (a fix branch, a release branch) says
    /// nothing about the history they share until their merge base is known good: that merge base
    /// is tested first. Found bad, it contradicts the good commit, and the bisection stops there
    /// (the regression was undone between them).
    func bisectStep(_ state: BisectState) throws -> BisectStep? {
        guard let bad = state.bad, !state.good.isEmpty else { return nil }
        var step = try BisectPlanner.step(bad: bad, good: state.good, skipped: Set(state.skipped)) { id in
            try history.commit(id).map { BisectPlanner.Node(parents: $0.parents, generation: $0.generation) }
        }
        if step.suspects.isEmpty {
            if state.good.contains(bad) { throw RepoError.invalidArgument("\(bad.short) cannot be both bad and good") }
            let good = state.good.first { (try? isAncestor(bad, of: $0)) == true } ?? state.good[0]
            throw RepoError.invalidArgument("\(bad.short) is bad, but \(good.short), which contains it, is good: the regression was undone "
                + "between them, or a mark is wrong; this bisection cannot go on ('mrepo bisect reset', then bisect from commits the bad one contains)")
        }
        let badAncestors = try ancestors(of: bad)
        let known = Set(state.good).union(state.skipped)
        let containedGood = state.good.filter { badAncestors.contains($0) }
        for g in state.good where !badAncestors.contains(g) {
            for base in try mergeBases([bad, g]) where !known.contains(base) {
                // Implied good: a good commit that the bad one contains reaches it.
                if try containedGood.contains(where: { try isAncestor(base, of: $0) }) { continue }
                step.next = base
                step.firstBad = nil
                step.testsMergeBase = true
                return step
            }
        }
        return step
    }

    /// Runs the test command of `bisect run` and returns its exit status (0–127). It runs in
    /// mrepo's own process group, so the terminal's Ctrl-C stops both; its standard input and
    /// error are mrepo's, its standard output too unless `outputToStandardError`.
    private func runBisectCommand(_ command: [String], commit: ObjectID, workingDirectory: String, outputToStandardError: Bool) throws -> Int32 {
        let executable = command[0]
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if outputToStandardError { posix_spawn_file_actions_adddup2(&actions, 2, 1) }
        posix_spawn_file_actions_addchdir_np(&actions, workingDirectory)
        // None of mrepo's own descriptors (the history, the repository's locks).
        posix_spawn_file_actions_addclosefrom_np(&actions, 3)
        var env = ProcessInfo.processInfo.environment
        env["MREPO_BISECT_COMMIT"] = commit.hex
        env["MREPO_ROOT"] = root
        env["MREPO_EXE"] = HookRunner.executablePath
        let argv = command.map { strdup($0) } + [nil]
        let envp = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for p in argv { free(p) }
            for p in envp { free(p) }
        }
        // A name without a slash is looked up in PATH (posix_spawnp), as a shell would; a path is
        // taken from the working directory (the command's, which is mrepo's).
        var pid: pid_t = 0
        let rc = executable.contains("/") ? posix_spawn(&pid, executable, &actions, nil, argv, envp)
            : posix_spawnp(&pid, executable, &actions, nil, argv, envp)
        guard rc == 0 else {
            throw RepoError.invalidArgument("bisect run: cannot run \(executable): \(String(cString: strerror(rc)))")
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else { throw RepoError.failed("bisect run: cannot wait for \(executable): \(String(cString: strerror(errno)))") }
        }
        if status & 0x7f != 0 {
            throw RepoError.failed("bisect run: \(executable) was killed by signal \(status & 0x7f) at \(commit.short); the marks so far are kept ('mrepo bisect log')")
        }
        let code = (status >> 8) & 0xff
        if code > 127 {
            throw RepoError.failed("bisect run: \(executable) exited with status \(code) at \(commit.short) (above 127 stops a bisect run, as in git); the marks so far are kept")
        }
        return code
    }
}
