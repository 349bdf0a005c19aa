import Foundation
import Testing

/// `export` decodes a file's objects on several threads ahead of its writes and its SHA-256
/// (TensorBatch+Stream.swift). Whatever the number of threads and the tensors' order in the
/// file, what it writes is what one thread writes, and what was committed.
@Suite struct StreamedExportCLITests {
    @Test(arguments: [["--order", "state-dict", "--fine-tune-order", "state-dict"], ["--order", "state-dict", "--fine-tune-order", "save-file"]])
    func anExportOnManyThreadsWritesWhatOneThreadWrites(order: [String]) throws {
        let s = try CLISandbox()
        for dtype in ["F32", "BF16"] {
            let family = "fam-\(dtype)"
            try s.synth(family, ["--size", "tiny", "--dtype", dtype, "--fine-tunes", "chat"] + order)
            let repo = "repo-\(dtype)"
            try s.ok(["init", "-q", repo])
            try s.ok(["commit", "-q", "--from", s.path(family + "/base"), "-m", "base"], in: repo)
            try s.ok(["switch", "-q", "-c", "chat"], in: repo)
            try s.ok(["commit", "-q", "--from", s.path(family + "/chat"), "-m", "chat"], in: repo)
            for threads in ["1", "2", "5"] {
                let out = "out-\(dtype)-\(threads)"
                try s.ok(["export", "-q", "chat", s.path(out)], in: repo, environment: ["MREPO_THREADS": threads])
                #expect(s.read(out + "/model.safetensors") == s.read(family + "/chat/model.safetensors"), "\(dtype), \(threads) threads")
            }
            #expect(s.sameFiles("out-\(dtype)-1", "out-\(dtype)-5"))
        }
    }
}
