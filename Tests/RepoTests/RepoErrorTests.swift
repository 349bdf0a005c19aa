import Delta
import Foundation
import Merge
import Testing

@testable import Repo

/// Tests assert refusals by their ``RepoError`` case; this suite pins the one-line text of the cases
/// added for that (and of ``WorktreeError``), which the CLI shows and the guide quotes.
@Suite struct RepoErrorTests {
    @Test(arguments: [
        (RepoError.unbornBranch("main"), "HEAD has no commits yet (branch 'main' is unborn)"),
        (.missingParent(revision: "HEAD~3", commit: "5cc3f769024d", parents: 0), "'HEAD~3': 5cc3f769024d has no parent"),
        (.missingParent(revision: "HEAD^2", commit: "2a642d3cbdae", parents: 1), "'HEAD^2': 2a642d3cbdae has 1 parent"),
        (.missingParent(revision: "HEAD^3", commit: "c2ace2019de5", parents: 2), "'HEAD^3': c2ace2019de5 has 2 parents"),
        (.deletingCurrentBranch("side"), "cannot delete branch 'side': it is the current branch; switch to another branch first"),
        (.branchNotMerged("side"), "branch 'side' is not fully merged into HEAD; use -D to delete it anyway"),
        (.switchToTag("v1"), "'v1' is a tag; use 'mrepo checkout v1' to look at it (detached HEAD)"),
        (.exportIntoWorktree, "export into the working tree itself; use 'mrepo checkout' instead"),
        (.exportIntoStore(directory: "out"), "export into out: the folder is inside the repository's own store (.mrepo); choose a folder outside it"),
        (.notAnAdapter(commit: "2483a4116122"),
         "commit 2483a4116122 was not committed as a LoRA adapter (a folder with adapter_config.json and adapter_model.safetensors is one; a DoRA adapter, which mrepo cannot fold or merge as an adapter, is stored as plain files)"),
        (.notAnAdapterFolder, "--adapter-of: the folder has no adapter_config.json and adapter_model.safetensors"),
        (.adapterWithoutBase(file: "adapter_model.safetensors"),
         "adapter_model.safetensors: an adapter needs its base model in the repository; commit the base first and name it with --adapter-of REV"),
        (.adapterBaseMismatch(file: "adapter_model.safetensors", base: "2483a4116122", problem: "module 'q': no tensor"),
         "adapter_model.safetensors is not an adapter of commit 2483a4116122: module 'q': no tensor; name its base model commit with --adapter-of REV"),
        (.invalidAdapterConfig(.invalidRecipe(file: "adapter_config.json", problem: "'r' must be a positive integer")),
         "adapter_config.json: 'r' must be a positive integer"),
        (.reversibleMergeNoCommit, "rmm: --no-commit is not supported for reversible merges; use --dry-run to plan"),
        (.adapterBasesDiffer(experts: ["a", "b"], bases: ["111111111111", "222222222222"]),
         "rmm: the adapters have different base models (a → 111111111111, b → 222222222222); a reversible merge needs one base"),
        (.mixedExpertKinds(experts: ["a", "b"], kinds: [.adapter, .full]), "rmm: the experts mix LoRA adapters and full models (a: adapter, b: full model)"),
        (.adapterModulesDiffer(expert: "b", adds: ["x", "y"], lacks: [], reference: "a"),
         "rmm: the adapters adapt different modules: b adds x, y compared with a; a reversible merge needs the same target modules"),
        (.adapterModulesDiffer(expert: "b", adds: ["x"], lacks: ["z"], reference: "a"),
         "rmm: the adapters adapt different modules: b adds x and lacks z compared with a; a reversible merge needs the same target modules"),
        (.notAReversibleMerge(commit: "2483a4116122", revision: "lora-math"),
         "lora-math (2483a4116122) is not a reversible merge (merge with --method rmm)"),
        (.notAReversibleMerge(commit: "2483a4116122", revision: nil),
         "commit 2483a4116122 is not a reversible merge; --expert and --view apply to merges made with --method rmm"),
        (.unknownExpert("nobody", merge: "bdb4edc16275", experts: ["a", "b"]), "'nobody' is not an expert of the merge bdb4edc16275 (experts: a, b)"),
        (.worktree(.branchCheckedOut(branch: "math", worktree: "/w/math-job", folderGone: false)),
         "branch 'math' is already checked out in the working tree at /w/math-job; work on it there, or use another branch"),
        (.worktree(.branchCheckedOut(branch: "math", worktree: "/w/math-job", folderGone: true)),
         "branch 'math' is already checked out in the working tree at /w/math-job (its folder is gone: 'mrepo worktree prune' forgets it); work on it there, or use another branch"),
        (.worktree(.uncommittedChanges("/w/job", paths: ["a", "b", "c", "d", "e"])),
         "/w/job: has uncommitted changes in a, b, c and 2 more; commit them, or pass --force to delete them too"),
        (.worktree(.untrackedFiles("/w/job", paths: ["optimizer.pt"])),
         "/w/job: holds files mrepo does not track (optimizer.pt); pass --force to delete them too"),
    ])
    func descriptionIsTheOneLineMessage(error: RepoError, message: String) {
        #expect(error.description == message)
    }

    /// A full disk names the user's file, or the repository's store, never mrepo's temporary names.
    @Test(arguments: [
        ("/w/.mrepo/.mrepo-tmp-25691.59eda791-1v285qrt1tzad-copies/3", "/w/.mrepo"),
        ("/w/.mrepo/objects/incoming", "/w/.mrepo"),
        ("/w/sub/.mrepo-tmp-25691.59eda791-1v285qrt1tzad-model-00001-of-00002.safetensors", "/w/sub/model-00001-of-00002.safetensors"),
        (".mrepo-tmp-7-abc-config.json", "config.json"),
        ("/w/model.safetensors", "/w/model.safetensors"),
    ])
    func aFullDiskIsNamedWhereTheUserCanActOnIt(written: String, shown: String) {
        let expected = RepoError.diskFull(path: shown)
        #expect(RepoError.fullDisk(DeltaError.io(path: written, reason: "write failed: \(errnoDescription(ENOSPC))")) == expected)
        #expect(RepoError.fullDisk(RepoError.io(path: written, reason: "cannot create file: \(errnoDescription(EDQUOT))")) == expected)
        #expect(RepoError.fullDisk(RepoError.delta(.io(path: written, reason: errnoDescription(ENOSPC)))) == expected)
        #expect(RepoError.fullDisk(RepoError.diskFull(path: written)) == expected)
        #expect(RepoError.fullDisk(DeltaError.io(path: written, reason: "write failed: \(errnoDescription(EACCES))")) == nil)
    }
}
