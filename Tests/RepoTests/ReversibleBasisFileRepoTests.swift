import Delta
import Foundation
import Merge
import ModelFactory
import Testing

@testable import Repo

/// The `rmm.safetensors` a reversible merge commits, read back through ``RMMBasisFile``: the
/// stored header is exactly what the reader would write again, its tensors are the tree's, and
/// the merge's refusals and rebuilds go through the one reader.
@Suite struct ReversibleBasisFileRepoTests {
    /// The committed basis file: its tree entry and its header, parsed.
    func basisFile(_ repo: Repository, _ commit: Commit) throws -> (file: TreeFile, header: [UInt8], basis: RMMBasisFile) {
        let file = try #require(try repo.history.tree(commit.treeID).file(at: RMMBasisFile.fileName))
        let header = try repo.objects.read(file.objectID)
        return (file, header, try RMMBasisFile(header: header))
    }

    @Test func adapterMergeStoresTheHeaderItsReaderWrites() throws {
        let fixture = try AdapterRepository(standardAdapters())
        let (repo, base) = (fixture.repo, fixture.base)
        let (commit, report) = try repo.reversibleMerge(["lora-math", "lora-code", "lora-chat"], ["basis": .number(2)])
        let (file, header, basis) = try basisFile(repo, commit)
        #expect(try basis.header().bytes == header)
        #expect(basis.kind == .adapter && basis.variant == .position && basis.basis == 2 && basis.center)
        #expect(basis.experts == ["lora-math", "lora-code", "lora-chat"])
        #expect(basis.layout.map(\.name) == file.tensors.map(\.name) && basis.layout.map(\.shape) == file.tensors.map(\.shape))
        #expect(file.tensors.allSatisfy { $0.dtype == .f32 })
        #expect(basis.modules.map(\.baseTensor) == report.modules.map(\.baseTensor))
        // rank 4, alpha 8: every adapter's scale is 2; the module metadata records it.
        #expect(basis.modules.allSatisfy { $0.scales == [2, 2, 2] && $0.transposed == false && $0.rank == 4 && $0.k == 2 })
        let record = try #require(try commit.record(ReversibleMergeRecord.self))
        #expect(record.expertKind == .adapter && record.kind == "adapter" && record.base == base)
        // The loader reads the same file, and every stored module comes back with the report's shape.
        let loaded = try repo.loadReversible(commit.id)
        #expect(loaded.basis == basis)
        for meta in loaded.modules {
            let module = try repo.storedModule(loaded, meta: meta)
            #expect(module.rows == meta.rows && module.k == meta.k && module.expertCount == 3 && module.variant == meta.variant)
        }
    }

    @Test func fullFineTuneMergeStoresTheHeaderItsReaderWrites() throws {
        let fixture = try FineTuneRepository()
        let repo = fixture.repo
        let (commit, report) = try repo.reversibleMerge(["math", "code", "chat"], ["basis": .number(1), "variant": .text("layer"), "rank": .number(2)])
        let (file, header, basis) = try basisFile(repo, commit)
        #expect(try basis.header().bytes == header)
        #expect(basis.kind == .full && basis.variant == .layer && basis.basis == 1)
        #expect(basis.layout.map(\.name) == file.tensors.map(\.name))
        #expect(basis.modules.map(\.module) == report.modules.map(\.name))
        #expect(basis.modules.allSatisfy { $0.module == $0.baseTensor && $0.scales == nil && $0.transposed == nil && $0.rank == 2 })
        #expect(try commit.record(ReversibleMergeRecord.self)?.expertKind == .full)
    }

    @Test func aBasisFileThatDoesNotMatchItsRecordIsCorrupt() throws {
        let fixture = try AdapterRepository(standardAdapters())
        let repo = fixture.repo
        let (commit, _) = try repo.reversibleMerge(["lora-math", "lora-code", "lora-chat"], ["basis": .number(1)])
        // Rewrite the commit's rmm record with one expert fewer than the file names.
        var record = try #require(try commit.record(ReversibleMergeRecord.self))
        record.experts.removeLast()
        var forged = commit
        forged.extra = .object((commit.extra.objectValue ?? []).map { $0.key == "rmm" ? (try? record.jsonMember()) ?? $0 : $0 })
        #expect(try repo.loadReversible(commit: commit).modules.count == 4)
        expectThrows(RepoError.corruptObject(object: commit.id.short, problem: "rmm.safetensors does not match the commit's rmm record (experts, center)")) {
            _ = try repo.loadReversible(commit: forged)
        }
    }
}
