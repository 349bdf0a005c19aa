import Delta
import Foundation

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
        guard let current = try history.bisectState() else {
            throw RepoError.invalidArgument("not bisecting; start with 'mrepo bisect start BAD GOOD'")
        }
        guard current.bad != nil, !current.good.isEmpty else {
            throw RepoError.invalidArgument("bisect run needs a bad and a good commit first ('mrepo bisect bad REV', 'mrepo bisect good REV')")
        }
        // A command that cannot start says nothing about any commit: refused before the first test.
        let found = executable.contains("/")
            ? FileManager.default.isExecutableFile(atPath: URL(fileURLWithPath: executable, relativeTo: URL(fileURLWithPath: workingDirectory, isDirectory: true)).path)
            : Self.which(executable) != nil
        if !found { throw RepoError.invalidArgument("bisect run: \(executable): no such executable command") }
        var outcome = BisectOutcome(state: current, step: try bisectStep(current), head: try history.head(), checkout: nil)
        while let step = outcome.step, step.next != nil {
            guard let commit = outcome.head.commit else { throw RepoError.invalidArgument("HEAD has no commits") }
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
            let commits = try revisions.isEmpty ? [head.commit.orThrow("HEAD has no commits")] : revisions.map { try resolve($0) }
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
                return BisectOutcome(state: nil, step: nil, head: head, checkout: nil)
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
            let checkout = try moveHeadBisecting(to: target.commit, newHead: target.head, from: head, state: nil,
                                                 message: "bisect reset: moving from \(head.displayName) to \(target.head.displayName)")
            return BisectOutcome(state: nil, step: nil, head: target.head, checkout: checkout)
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

    private func moveHeadBisecting(to target: ObjectID, newHead: Head, from head: Head, state: BisectState?, message: String) throws -> CheckoutResult {
        let oldTree = try worktreeBaseline(head: head).tree
        let newTree = try verifiedTree(of: target)
        let checkout = try stageCheckout(newTree, over: oldTree, force: false, operation: "bisect")
        do {
            try history.setHead(newHead, expected: head, message: message, statEntries: [], bisect: state)
        } catch {
            checkout.rollback()
            throw error
        }
        let entries = try finishCheckout(checkout)
        let stats = checkout.stats
        history.saveStatCacheOpportunistically(entries, removing: [])
        return CheckoutResult(head: newHead, writtenFiles: stats.written, removedFiles: stats.removed, unchangedFiles: stats.unchanged)
    }

    /// Where `state` stands; nil until it has a bad and a good commit. Throws when the marks
    /// contradict each other (a good commit that contains the bad one).
    func bisectStep(_ state: BisectState) throws -> BisectStep? {
        guard let bad = state.bad, !state.good.isEmpty else { return nil }
        let step = try BisectPlanner.step(bad: bad, good: state.good, skipped: Set(state.skipped)) { id in
            try history.commit(id).map { BisectPlanner.Node(parents: $0.parents, generation: $0.generation) }
        }
        if step.suspects.isEmpty {
            let good = state.good.first { (try? isAncestor(bad, of: $0)) == true } ?? state.good[0]
            throw RepoError.invalidArgument("\(bad.short) is marked bad, but \(good.short), which contains it, is marked good; "
                + "the marks contradict each other (see 'mrepo bisect log')")
        }
        return step
    }

    /// Runs the test command of `bisect run`, returning its exit status (0–127).
    private func runBisectCommand(_ command: [String], commit: ObjectID, workingDirectory: String, outputToStandardError: Bool) throws -> Int32 {
        let process = Process()
        let executable = command[0]
        if executable.contains("/") {
            process.executableURL = URL(fileURLWithPath: executable, relativeTo: URL(fileURLWithPath: workingDirectory, isDirectory: true))
            process.arguments = Array(command.dropFirst())
        } else {
            // Looked up in PATH, as a shell would.
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = command
        }
        process.currentDirectoryURL = URL(fileURLWithPath: workingDirectory)
        var env = ProcessInfo.processInfo.environment
        env["MREPO_BISECT_COMMIT"] = commit.hex
        env["MREPO_ROOT"] = root
        env["MREPO_EXE"] = HookRunner.executablePath
        process.environment = env
        if outputToStandardError { process.standardOutput = FileHandle.standardError }
        do {
            try process.run()
        } catch {
            throw RepoError.invalidArgument("bisect run: cannot run \(executable): \(error.localizedDescription)")
        }
        process.waitUntilExit()
        let status = process.terminationStatus
        if process.terminationReason == .uncaughtSignal {
            throw RepoError.failed("bisect run: \(executable) was killed by signal \(status) at \(commit.short); the marks so far are kept ('mrepo bisect log')")
        }
        if status > 127 {
            throw RepoError.failed("bisect run: \(executable) exited with status \(status) at \(commit.short) (above 127 stops a bisect run, as in git); the marks so far are kept")
        }
        return status
    }

    private static func which(_ name: String) -> String? {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let path = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return nil
    }
}

private extension Optional {
    func orThrow(_ message: String) throws -> Wrapped {
        guard let self else { throw RepoError.invalidArgument(message) }
        return self
    }
}
