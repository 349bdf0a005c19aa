import Delta
import Foundation
@testable import Repo
import Testing

/// Commits `config.json` holding `{"step": N}` (and nothing else changed): a history whose
/// "evaluation" is a number in a file.
@discardableResult
func commitStep(_ repo: Repository, _ step: Int) throws -> ObjectID {
    try "{\"step\": \(step)}\n".write(toFile: repo.root + "/config.json", atomically: true, encoding: .utf8)
    return try repo.commitAll("step \(step)").commit.id
}

/// The step the working tree's config.json holds.
func worktreeStep(_ repo: Repository) throws -> Int {
    let text = try String(contentsOfFile: repo.root + "/config.json", encoding: .utf8)
    return Int(text.filter(\.isNumber))!
}

/// Marks HEAD by `isBad` until the answer is known; returns the first bad commit and the tests made.
private func bisectByHand(_ repo: Repository, _ start: BisectOutcome, isBad: (Int) -> Bool) throws -> (ObjectID?, Int) {
    var outcome = start
    var tests = 0
    while let step = outcome.step, let next = step.next {
        #expect(outcome.head == .detached(next), "the commit to test is checked out")
        tests += 1
        outcome = try repo.bisect(.mark(isBad(try worktreeStep(repo)) ? .bad : .good, []))
        #expect(tests < 64)
    }
    return (outcome.step?.firstBad, tests)
}

@Suite struct BisectTests {
    @Test func findsTheFirstBadCommitOfAStraightHistoryInLogarithmicTests() throws {
        try withRepository { repo, _ in
            let ids = try (0..<32).map { try commitStep(repo, $0) }
            let start = try repo.bisect(.start(bad: "HEAD", good: [ids[0].hex]))
            #expect(start.step?.suspects.count == 31)
            let (first, tests) = try bisectByHand(repo, start) { $0 >= 19 }
            #expect(first == ids[19])
            #expect(tests <= 5, "31 suspects need at most 5 tests")
            let log = try #require(try repo.bisectInProgress()?.state)
            #expect(log.marks.first == .init(term: .bad, commit: ids[31]) && log.marks.count == 2 + tests)
            // Reset: back on main at its tip, the state gone.
            let reset = try repo.bisect(.reset(to: nil))
            #expect(reset.head == .branch("main", commit: ids[31]))
            #expect(try repo.history.head() == .branch("main", commit: ids[31]))
            #expect(try worktreeStep(repo) == 31)
            #expect(try repo.bisectInProgress() == nil)
            #expect(try repo.status().isClean)
            #expect(try repo.bisect(.reset(to: nil)).checkout == nil, "reset without a bisection does nothing")
        }
    }

    @Test func followsEveryParentOfAMerge() throws {
        try withRepository { repo, _ in
            let root = try commitStep(repo, 0)
            _ = try repo.switchBranch("side", create: true)
            let side = try (1...6).map { try commitStep(repo, 100 + $0) }
            _ = try repo.switchBranch("main")
            _ = try (1...6).map { try commitStep(repo, $0) }
            try "{\"step\": 200}\n".write(toFile: repo.root + "/config.json", atomically: true, encoding: .utf8)
            let merge = try repo.commitAll("merge side", extraParents: [side.last!]).commit.id
            // The regression came in on the side branch, at its fourth commit (step 104).
            let start = try repo.bisect(.start(bad: merge.hex, good: [root.hex]))
            #expect(start.step?.suspects.count == 13)
            let (first, _) = try bisectByHand(repo, start) { $0 >= 104 && $0 < 200 || $0 == 200 }
            #expect(first == side[3])
        }
    }

    @Test func skippedCommitsAreSteppedAroundAndCanLeaveAList() throws {
        try withRepository { repo, _ in
            let ids = try (0..<8).map { try commitStep(repo, $0) }
            var outcome = try repo.bisect(.start(bad: ids[7].hex, good: [ids[0].hex]))
            // Every commit from 3 to 6 cannot be tested; 7 is bad, 2 good.
            while let next = outcome.step?.next {
                let step = try worktreeStep(repo)
                #expect(outcome.head.commit == next)
                outcome = try repo.bisect(.mark(step >= 3 ? .skip : .good, []))
            }
            let step = try #require(outcome.step)
            #expect(step.firstBad == nil && step.onlySkippedLeft)
            #expect(Set(step.suspects) == Set(ids[3...7]))
            // Marking one of them settles it.
            outcome = try repo.bisect(.mark(.bad, [ids[3].hex]))
            #expect(outcome.step?.firstBad == ids[3])
        }
    }

    @Test func contradictoryMarksAndLocalChangesWriteNothing() throws {
        try withRepository { repo, _ in
            let ids = try (0..<8).map { try commitStep(repo, $0) }
            let start = try repo.bisect(.start(bad: ids[3].hex, good: []))
            #expect(start.step == nil && start.head == .branch("main", commit: ids[7]), "nothing to test yet: HEAD stays")
            expectThrows(RepoError.self) { _ = try repo.bisect(.mark(.good, [ids[5].hex])) }
            #expect(try repo.bisectInProgress()?.state?.marks.count == 1, "the contradicting mark is not recorded")
            // A local change to a file the checkout writes stops the mark, which is not recorded.
            try "{\"step\": 99}\n".write(toFile: repo.root + "/config.json", atomically: true, encoding: .utf8)
            expectThrows(RepoError.dirtyWorktree(operation: "bisect", paths: ["config.json"])) { _ = try repo.bisect(.mark(.good, [ids[0].hex])) }
            #expect(try repo.bisectInProgress()?.state?.marks.count == 1)
            #expect(try repo.history.head() == .branch("main", commit: ids[7]))
            #expect(try worktreeStep(repo) == 99)
            // An untracked file is no obstacle, and stays.
            _ = try repo.restore(paths: ["config.json"], source: nil)
            try Data([1, 2, 3]).write(to: URL(fileURLWithPath: repo.root + "/eval_results.json"))
            let marked = try repo.bisect(.mark(.good, [ids[0].hex]))
            #expect(marked.head.commit == marked.step?.next && marked.head.commit != nil)
            #expect(FileManager.default.contents(atPath: repo.root + "/eval_results.json") == Data([1, 2, 3]))
            expectThrows(RepoError.invalidArgument("a bisection is in progress; 'mrepo bisect reset' ends it")) {
                _ = try repo.bisect(.start(bad: nil, good: []))
            }
        }
    }

    @Test func aGoodCommitOffTheBadOnesHistoryHasItsMergeBaseTestedFirst() throws {
        try withRepository { repo, _ in
            // main: 0 1 2 3, then fix (from 3, step 100), main goes on 4 … 8.
            let ids = try (0...3).map { try commitStep(repo, $0) }
            _ = try repo.switchBranch("fix", create: true)
            let fix = try commitStep(repo, 100)
            _ = try repo.switchBranch("main")
            let later = try (4...8).map { try commitStep(repo, $0) }
            // The regression came in at 5: the merge base 3 is good, then 4 … 8 are bisected.
            var outcome = try repo.bisect(.start(bad: later.last!.hex, good: [fix.hex]))
            #expect(outcome.step?.testsMergeBase == true && outcome.step?.next == ids[3])
            let (first, _) = try bisectByHand(repo, outcome) { $0 >= 5 && $0 < 100 }
            #expect(first == later[1])
            _ = try repo.bisect(.reset(to: nil))

            // The regression came in at 2 (before the fix branched, which undid it): the merge base
            // is bad, and marking it so is refused with the explanation, nothing recorded.
            outcome = try repo.bisect(.start(bad: later.last!.hex, good: [fix.hex]))
            #expect(outcome.head.commit == ids[3])
            expectThrows(RepoError.self) { _ = try repo.bisect(.mark(.bad, [])) }
            #expect(try repo.bisectInProgress()?.state?.marks.count == 2)
            _ = try repo.bisect(.reset(to: nil))
            // Without the check, everything the fix reaches would count as good, 2 included.
        }
    }

    @Test func aMarkOfHeadNeedsTheWorkingTreeToHoldHeadsFiles() throws {
        try withRepository { repo, _ in
            let ids = try (0..<8).map { try commitStep(repo, $0) }
            let start = try repo.bisect(.start(bad: ids[7].hex, good: [ids[0].hex]))
            let tested = try #require(start.head.commit)
            try "{\"step\": 42}\n".write(toFile: repo.root + "/config.json", atomically: true, encoding: .utf8)
            expectThrows(RepoError.self) { _ = try repo.bisect(.mark(.good, [])) }
            #expect(try repo.bisectInProgress()?.state?.marks.count == 2, "nothing recorded")
            // Named explicitly, the mark is the user's call.
            _ = try repo.restore(paths: ["config.json"], source: nil)
            let next = try repo.bisect(.mark(.good, [tested.hex]))
            #expect(next.head.commit != tested)
        }
    }

    @Test func gcKeepsTheCommitsABisectionNames() throws {
        try withRepository { repo, _ in
            _ = try commitStep(repo, 0)
            _ = try repo.switchBranch("experiment", create: true)
            let tip = try commitStep(repo, 1)
            _ = try repo.switchBranch("main")
            _ = try repo.bisect(.start(bad: tip.hex, good: []))
            _ = try repo.deleteBranch("experiment", force: true)
            _ = try repo.gc(pruneReflog: true)
            #expect(try repo.history.commit(tip) != nil, "the bad commit outlives its branch while the bisection runs")
            _ = try repo.bisect(.reset(to: nil))
            _ = try repo.gc(pruneReflog: true)
            #expect(try repo.history.commit(tip) == nil, "without the bisection, gc removes it")
            // fsck reports a bisection that names a commit the repository lacks.
            #expect(try repo.fsck().errors.isEmpty)
            let missing = ObjectID(hex: String(repeating: "ab", count: 32))!
            try repo.history.setBisectState(BisectState(startBranch: "main", startCommit: missing))
            #expect(try repo.fsck().errors == ["bisection: names missing commit \(missing.short) ('mrepo bisect reset' ends it)"])
        }
    }

    @Test func thePlannerSplitsTheSuspectsEvenly() throws {
        // A straight history 0 ← 1 ← … ← 16: with 0 good and 16 bad, commit 8 splits 16 suspects in two.
        let ids = (0...16).map { ObjectID(hex: String(repeating: String(format: "%02x", $0), count: 32))! }
        let nodes = Dictionary(uniqueKeysWithValues: ids.enumerated().map { i, id in
            (id, BisectPlanner.Node(parents: i == 0 ? [] : [ids[i - 1]], generation: i))
        })
        let step = try BisectPlanner.step(bad: ids[16], good: [ids[0]], skipped: []) { nodes[$0] }
        #expect(step.suspects.count == 16 && step.suspects.first == ids[16])
        #expect(step.next == ids[8] && step.nextWeight == 8)
        // A skipped midpoint: a neighbour is tested instead.
        let skipping = try BisectPlanner.step(bad: ids[16], good: [ids[0]], skipped: [ids[8]]) { nodes[$0] }
        #expect(skipping.next == ids[9] || skipping.next == ids[7])
        // Good and bad adjacent: the answer.
        let done = try BisectPlanner.step(bad: ids[5], good: [ids[4]], skipped: []) { nodes[$0] }
        #expect(done.firstBad == ids[5] && done.next == nil)
    }
}
