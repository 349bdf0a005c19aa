import Delta
import Foundation
import Merge
import ModelFactory
import Repo
import Testing

// Fixtures for the adapter, low-rank commit and reversible-merge tests: folders of checkpoints and
// adapters committed on branches. Results are checked with `Checkpoint` and `Numbers`
// (Tests/MrepoTestSupport), independently of the code under test.

extension Repository {
    /// Commits a folder (`commit --from`) with a fixed author.
    @discardableResult
    func commitFolder(_ path: String, _ message: String, adapterOf: String? = nil, lowRank: LowRankPolicy? = nil) throws -> CommitResult {
        try commit(CommitOptions(message: message, sourceDirectory: path, author: testAuthor, adapterOf: adapterOf, lowRank: lowRank))
    }

    /// `merge --method rmm` of `branches` with `parameters`, which must commit: the merge commit and its report.
    func reversibleMerge(_ branches: [String], _ parameters: [String: ParameterValue]) throws -> (commit: Commit, report: ReversibleMergeReport) {
        let outcome = try merge(MergeOptions(branches: branches, recipe: MergeRecipe(method: "rmm", parameters: parameters, experts: [])))
        guard case let .committed(commit) = outcome.status else {
            Issue.record("the merge did not commit: \(outcome.status)")
            throw RepoError.failed("no commit")
        }
        return (commit, try #require(outcome.reversible))
    }

    /// Everything `log`, `fsck` and the store would show: commits, refs, HEAD and object files.
    func state() throws -> String {
        let commits = try history.allCommits().map(\.id.hex).sorted()
        let refs = try history.refs().map { "\($0.name)=\($0.target.hex)" }.sorted()
        let objects = objectFiles.map(\.hex).sorted()
        return "\(try history.head()) \(commits) \(refs) \(objects)"
    }
}

/// A repository with the base model (`factory`'s) committed on `main` from `<dir>/base`, and each
/// adapter written to `<dir>/<adapter name>` and committed on a branch of its name (from `main`);
/// HEAD is back on `main`. The folder goes when the instance does.
final class AdapterRepository {
    let repo: Repository
    /// The folder that holds the repository (`<dir>/repo`), the base and the adapters.
    let dir: String
    /// The base model's commit.
    let base: ObjectID
    let factory: ModelFactory
    private let fixture: TemporaryRepository

    init(_ specs: [LoRASpec], factory: ModelFactory = tinyFactory) throws {
        fixture = try TemporaryRepository()
        (repo, dir, self.factory) = (fixture.repo, fixture.dir, factory)
        try factory.writeCheckpoint(to: dir + "/base")
        base = try repo.commitFolder(dir + "/base", "base").commit.id
        for spec in specs { try commitOnItsBranch(spec) }
        _ = try repo.switchBranch("main")
    }

    /// Writes and commits one more adapter the same way; HEAD is back on `main`.
    func commitAdapter(_ spec: LoRASpec) throws {
        try commitOnItsBranch(spec)
        _ = try repo.switchBranch("main")
    }

    private func commitOnItsBranch(_ spec: LoRASpec) throws {
        try factory.writeAdapter(spec, to: dir + "/" + spec.name)
        _ = try repo.switchBranch(spec.name, create: true, startPoint: "main")
        let result = try repo.commitFolder(dir + "/" + spec.name, spec.name)
        #expect(result.adapter?.base == base, "\(spec.name) is an adapter of the base")
    }
}

/// A repository with the tiny base committed on `main` from `<dir>/base`, and each full fine-tune of
/// the standard family (math, code, chat) written to `<dir>/<name>` and committed on a branch of its
/// name; HEAD is back on `main`. The folder goes when the instance does.
final class FineTuneRepository {
    let repo: Repository
    let dir: String
    private let fixture: TemporaryRepository

    init() throws {
        fixture = try TemporaryRepository()
        (repo, dir) = (fixture.repo, fixture.dir)
        try tinyFactory.writeCheckpoint(to: dir + "/base")
        try repo.commitFolder(dir + "/base", "base")
        for ft in FineTune.standardFamily {
            try tinyFactory.writeCheckpoint(to: dir + "/" + ft.name, fineTune: ft)
            _ = try repo.switchBranch(ft.name, create: true, startPoint: "main")
            try repo.commitFolder(dir + "/" + ft.name, ft.name)
        }
        _ = try repo.switchBranch("main")
    }
}

/// The three standard adapters at a small rank (fast).
func standardAdapters(rank: Int = 4, targets: [String] = ["query", "value"]) -> [LoRASpec] {
    LoRASpec.standardAdapters.map { LoRASpec(name: $0.name, seed: $0.seed, rank: rank, alpha: Double(2 * rank), targets: targets) }
}
