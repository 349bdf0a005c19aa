import ArgumentParser
import Delta
import Foundation
import Repo

struct BisectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bisect",
        abstract: "Find the commit that introduced a regression, by binary search over the history.",
        discussion: """
            Mark a commit whose model is bad (it has the regression: a lower eval score, NaN losses, a broken \
            export) and one that is good; mrepo checks out the commit halfway between them, with HEAD detached, \
            for you to test. Mark it with 'bisect good' or 'bisect bad' (or 'bisect skip' when it cannot be \
            tested), and so on, until one commit is left: the first bad one. 'bisect run CMD...' does the \
            testing for you with your own evaluation (exit 0 good, 125 skip, 1-127 bad). 'bisect reset' goes \
            back to where you started. Merges are followed through every parent, as in git. \
            The bisection lives in the history database, per working tree, and keeps its commits from gc.
            """,
        subcommands: [Start.self, Mark.self, MarkGood.self, Skip.self, Reset.self, Log.self, View.self, Run.self])

    /// The text of where a bisection stands (after start, a mark, or each test of `run`).
    static func describe(_ outcome: BisectOutcome, repo: Repository) throws -> [String] {
        guard let state = outcome.state else { return [] }
        guard let step = outcome.step else {
            var missing: [String] = []
            if state.bad == nil { missing.append("a bad commit ('mrepo bisect bad [REV]')") }
            if state.good.isEmpty { missing.append("a good commit ('mrepo bisect good [REV]')") }
            return ["Bisecting: waiting for " + missing.joined(separator: " and ")]
        }
        if let first = step.firstBad {
            let c = try repo.commit(first)
            return ["\(first.hex) is the first bad commit", "  \(c.subject)"]
        }
        if step.onlySkippedLeft {
            var lines = ["There are only skipped commits left to test. The first bad commit could be any of:"]
            for id in step.suspects { lines.append("  \(id.short)  \(try repo.commit(id).subject)") }
            lines.append("We cannot bisect more: mark one of them good or bad, or 'mrepo bisect reset'.")
            return lines
        }
        guard let next = step.next else { return [] }
        if step.testsMergeBase {
            return ["Bisecting: a merge base must be tested (a good commit is not in the bad one's history)",
                    "[\(next.short)] \(try repo.commit(next).subject)"]
        }
        let left = step.leftAfterNext
        return ["Bisecting: \(left) commit\(left == 1 ? "" : "s") left to test after this (roughly \(step.stepsLeft) step\(step.stepsLeft == 1 ? "" : "s"))",
                "[\(next.short)] \(try repo.commit(next).subject)"]
    }

    static func output(_ outcome: BisectOutcome, repo: Repository, json: Bool, quiet: Bool) throws {
        if json {
            try printJSON(BisectDocument(outcome))
        } else if !quiet {
            for line in try describe(outcome, repo: repo) { print(line) }
        }
    }

    struct Start: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "start",
            abstract: "Start a bisection, optionally naming the bad commit and good ones.",
            discussion: """
                With BAD and at least one GOOD, the commit halfway between them is checked out at once. HEAD's \
                branch is remembered for 'bisect reset'. Local changes stop a checkout only where it writes, as \
                with 'mrepo switch'.
                """)

        @OptionGroup var repository: RepositoryOptions
        @OptionGroup var lock: LockOptions

        @Argument(help: ArgumentHelp("A commit whose model is bad (has the regression).", valueName: "bad"), completion: CompletionNames.revisions)
        var bad: String?

        @Argument(help: ArgumentHelp("Commits whose models are good (before the regression).", valueName: "good"), completion: CompletionNames.revisions)
        var good: [String] = []

        @Flag(help: "Print where the bisection stands as JSON.")
        var json = false

        func run() throws {
            let repo = try repository.open()
            let outcome = try repo.bisect(.start(bad: bad, good: good), wait: lock.wait)
            try BisectCommand.output(outcome, repo: repo, json: json, quiet: repository.quiet)
        }
    }

    /// What `bisect bad`, `good` and `skip` take: the commits (default HEAD), and the shared options.
    struct MarkArguments: ParsableArguments {
        @OptionGroup var repository: RepositoryOptions
        @OptionGroup var lock: LockOptions

        @Argument(help: ArgumentHelp("The commits (default HEAD; bad takes one).", valueName: "rev"), completion: CompletionNames.revisions)
        var revisions: [String] = []

        @Flag(help: "Print where the bisection stands as JSON.")
        var json = false

        func mark(_ term: BisectState.Term) throws {
            let repo = try repository.open()
            let outcome = try repo.bisect(.mark(term, revisions), wait: lock.wait)
            try BisectCommand.output(outcome, repo: repo, json: json, quiet: repository.quiet)
        }
    }

    /// `bisect bad` (alias `new`).
    struct Mark: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "bad",
            abstract: "Mark a commit bad (it has the regression): HEAD, or the revision named.",
            aliases: ["new"])

        @OptionGroup var arguments: MarkArguments

        func run() throws { try arguments.mark(.bad) }
    }

    /// `bisect good` (alias `old`).
    struct MarkGood: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "good",
            abstract: "Mark commits good (before the regression): HEAD, or the revisions named.",
            aliases: ["old"])

        @OptionGroup var arguments: MarkArguments

        func run() throws { try arguments.mark(.good) }
    }

    struct Skip: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "skip",
            abstract: "Mark commits that cannot be tested (a run that crashed, a model that does not load): HEAD, or the revisions named.",
            discussion: "A commit next to a skipped one is tested instead. When only skipped commits are left, the answer is a list.")

        @OptionGroup var arguments: MarkArguments

        func run() throws { try arguments.mark(.skip) }
    }

    struct Reset: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "reset",
            abstract: "End the bisection: HEAD goes back to the branch (or commit) it started from, or to REV.",
            discussion: "Local changes stop it only where the checkout writes. A damaged bisection record is discarded, HEAD left as it is.")

        @OptionGroup var repository: RepositoryOptions
        @OptionGroup var lock: LockOptions

        @Argument(help: ArgumentHelp("Where to go instead: a branch or any revision.", valueName: "rev"), completion: CompletionNames.revisions)
        var revision: String?

        @Flag(help: "Print where HEAD went as JSON.")
        var json = false

        /// `bisect reset --json`.
        struct Document: Encodable {
            /// Whether a bisection was ended (false: there was none, or only a damaged record).
            var ended: Bool
            var head: OrNull<String>
            var branch: OrNull<String>
            var startBranchGone: OrNull<String>
            var discardedDamagedRecord: Bool

            enum CodingKeys: String, CodingKey {
                case ended, head, branch, startBranchGone = "start_branch_gone", discardedDamagedRecord = "discarded_damaged_record"
            }
        }

        func run() throws {
            let repo = try repository.open()
            let outcome = try repo.bisect(.reset(to: revision), wait: lock.wait)
            if json {
                let head = try repo.head()
                return try printJSON(Document(ended: outcome.checkout != nil, head: OrNull(head.commit?.hex), branch: OrNull(head.branchName),
                                              startBranchGone: OrNull(outcome.startBranchGone), discardedDamagedRecord: outcome.discardedDamagedRecord))
            }
            if repository.quiet { return }
            if let checkout = outcome.checkout {
                if let gone = outcome.startBranchGone { print("The branch '\(gone)' the bisection started on is gone.") }
                switch checkout.head {
                case let .branch(name, _): print("Switched to branch '\(name)'")
                case let .detached(id): print("HEAD is now at \(id.short)")
                }
            } else if outcome.discardedDamagedRecord {
                print("Discarded the damaged bisection record; HEAD stays where it is.")
            } else {
                print("Not bisecting; nothing to reset.")
            }
        }
    }

    struct Log: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "log",
            abstract: "Show the marks of the bisection in progress, oldest first.")

        @OptionGroup var repository: RepositoryOptions

        @Flag(help: "Print the marks and where the bisection stands as JSON.")
        var json = false

        func run() throws {
            let repo = try repository.open(access: .readOnly)
            guard let outcome = try repo.bisectInProgress(), let state = outcome.state else { throw RepoError.invalidArgument("not bisecting") }
            if json {
                try printJSON(BisectDocument(outcome))
                return
            }
            let step = outcome.step
            // The mrepo lines replay the bisection (sh FILE), as git's bisect log does.
            print("# started on \(state.startBranch ?? state.startCommit?.short ?? "?")")
            print("mrepo bisect start")
            for mark in state.marks {
                print("# \(mark.term.rawValue): [\(mark.commit.short)] \((try? repo.commit(mark.commit).subject) ?? "")")
                print("mrepo bisect \(mark.term.rawValue) \(mark.commit.hex)")
            }
            if let first = step?.firstBad { print("# first bad commit: [\(first.short)] \(try repo.commit(first).subject)") }
        }
    }

    struct View: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "view",
            abstract: "List the commits that may still be the first bad one, newest first, with their marks and metrics.",
            aliases: ["visualize"])

        @OptionGroup var repository: RepositoryOptions

        @Flag(help: "Print the suspects as JSON.")
        var json = false

        func run() throws {
            let repo = try repository.open(access: .readOnly)
            guard let outcome = try repo.bisectInProgress(), let state = outcome.state else { throw RepoError.invalidArgument("not bisecting") }
            guard let step = outcome.step else {
                throw RepoError.invalidArgument("no suspects yet: mark a bad and a good commit ('mrepo bisect bad', 'mrepo bisect good')")
            }
            let skipped = Set(state.skipped)
            var rows: [BisectSuspectDocument] = []
            for id in step.suspects {
                let c = try repo.commit(id)
                let mark = id == state.bad ? "bad" : skipped.contains(id) ? "skip" : id == step.next ? "next" : nil
                let metrics = try repo.metrics(of: c).map { "\($0.name)=\(Format.metric($0.value))" }
                rows.append(BisectSuspectDocument(commit: id.hex, subject: c.subject, mark: OrNull(mark), metrics: metrics))
            }
            if json {
                try printJSON(rows)
                return
            }
            for r in rows {
                let mark = r.mark.value.map { "  [\($0)]" } ?? ""
                let metrics = r.metrics.isEmpty ? "" : "  (\(r.metrics.joined(separator: ", ")))"
                print("\(r.commit.prefix(12))  \(r.subject)\(metrics)\(mark)")
            }
        }
    }

    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "run",
            abstract: "Test each commit with a command of yours until the first bad one is found.",
            discussion: """
                The command runs in the current folder with the commit's model in the working tree, and decides by \
                its exit status: 0 good, 125 skip (cannot be tested), 1-127 otherwise bad. Above 127, or killed by a \
                signal, it stops the run (the marks so far are kept). It sees the commit under test in \
                MREPO_BISECT_COMMIT, the working tree in MREPO_ROOT and the mrepo binary in MREPO_EXE, and may run \
                mrepo itself (no lock is held while it runs). Example, with a held-out eval that exits 1 below a \
                threshold: mrepo bisect run python eval.py --min-accuracy 0.82
                """)

        @OptionGroup var repository: RepositoryOptions
        @OptionGroup var lock: LockOptions

        @Flag(help: "Print the tests and the answer as JSON (the command's output goes to standard error).")
        var json = false

        @Argument(parsing: .captureForPassthrough, help: ArgumentHelp("The command and its arguments.", valueName: "command"))
        var command: [String] = []

        /// The command as typed, after a `--` that ends mrepo's own options (`bisect run -- CMD`).
        var testCommand: [String] { command.first == "--" ? Array(command.dropFirst()) : command }

        func validate() throws {
            // The command is captured as it is typed, so help asked for before it is taken here.
            if let first = command.first, first == "--help" || first == "-h" { throw CleanExit.helpRequest(self) }
            if testCommand.isEmpty { throw ValidationError("name the command to run: mrepo bisect run CMD [ARG...]") }
        }

        func run() throws {
            let repo = try repository.open()
            var tests: [BisectRunTestDocument] = []
            let outcome = try repo.bisectRun(testCommand, workingDirectory: FileManager.default.currentDirectoryPath,
                                             outputToStandardError: json, wait: lock.wait) { test, after in
                tests.append(BisectRunTestDocument(commit: test.commit.hex, exitStatus: Int(test.exitStatus), mark: test.term.rawValue))
                if !json, !repository.quiet {
                    print("\(test.commit.short): exit \(test.exitStatus), marked \(test.term.rawValue)")
                    for line in (try? BisectCommand.describe(after, repo: repo)) ?? [] { print(line) }
                }
            }
            if json {
                var document = BisectDocument(outcome)
                document.tests = tests
                try printJSON(document)
            } else if tests.isEmpty, !repository.quiet {
                // Nothing was left to test: where the bisection stands is the answer.
                for line in try BisectCommand.describe(outcome, repo: repo) { print(line) }
            }
            // Only untestable commits left: no single answer, which a script must be able to tell.
            if outcome.step?.onlySkippedLeft == true { throw ExitCode(1) }
        }
    }
}

/// `bisect ... --json`: where the bisection stands.
struct BisectDocument: Encodable {
    var bisecting: Bool
    var head: OrNull<String>
    var bad: OrNull<String>
    var good: [String]
    var skipped: [String]
    /// How many commits may still be the first bad one (the bad commit included); null until a bad
    /// and a good commit are marked.
    var suspects: OrNull<Int>
    var stepsLeft: OrNull<Int>
    var next: OrNull<String>
    var firstBad: OrNull<String>
    /// When only skipped commits are left: every commit that may be the first bad one.
    var candidates: [String]
    /// `next` is the merge base of the bad commit and a good one it does not contain, tested first.
    var testsMergeBase: Bool
    /// The branch HEAD was on at `bisect start` (null: it was detached).
    var startBranch: OrNull<String>
    /// Every mark, oldest first.
    var marks: [Mark]
    /// `bisect run`: each test, in order.
    var tests: [BisectRunTestDocument]?

    struct Mark: Encodable {
        var term: String
        var commit: String
    }

    init(_ o: BisectOutcome) {
        bisecting = o.state != nil
        startBranch = OrNull(o.state?.startBranch)
        marks = o.state?.marks.map { Mark(term: $0.term.rawValue, commit: $0.commit.hex) } ?? []
        head = OrNull(o.head.commit?.hex)
        bad = OrNull(o.state?.bad?.hex)
        good = o.state?.good.map(\.hex) ?? []
        skipped = o.state?.skipped.map(\.hex) ?? []
        suspects = OrNull(o.step?.suspects.count)
        stepsLeft = OrNull(o.step?.stepsLeft)
        next = OrNull(o.step?.next?.hex)
        firstBad = OrNull(o.step?.firstBad?.hex)
        candidates = o.step?.onlySkippedLeft == true ? o.step!.suspects.map(\.hex) : []
        testsMergeBase = o.step?.testsMergeBase ?? false
    }

    enum CodingKeys: String, CodingKey {
        case bisecting, head, startBranch = "start_branch", bad, good, skipped, suspects, stepsLeft = "steps_left", next
        case firstBad = "first_bad", candidates, testsMergeBase = "tests_merge_base", marks, tests
    }
}

struct BisectRunTestDocument: Encodable {
    var commit: String
    var exitStatus: Int
    var mark: String

    enum CodingKeys: String, CodingKey {
        case commit, exitStatus = "exit_status", mark
    }
}

/// One line of `bisect view --json`.
struct BisectSuspectDocument: Encodable {
    var commit: String
    var subject: String
    /// "bad" (the bad commit), "skip", "next" (checked out to test), or null.
    var mark: OrNull<String>
    /// The commit's metrics, `name=value` (recorded with it, or added with `metric add`).
    var metrics: [String]
}
