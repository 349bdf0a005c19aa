import Foundation
import Testing

/// Through the binary: a corrupt object makes `switch`, `checkout` and `export` fail with one line
/// naming the object and the file, and leaves the working tree, HEAD and the export folder as they
/// were.
@Suite struct AllOrNothingCLITests {
    /// Every entry under a folder but `.mrepo` and its content, temporary files and folders
    /// included: a file maps to its bytes, a folder to nil.
    func listing(_ s: CLISandbox, _ relative: String) -> [String: Data?] {
        let base = s.path(relative)
        var out: [String: Data?] = [:]
        for name in FileManager.default.enumerator(atPath: base)?.compactMap({ $0 as? String }) ?? []
        where name != ".mrepo" && !name.hasPrefix(".mrepo/") {
            var isDir: ObjCBool = false
            _ = FileManager.default.fileExists(atPath: base + "/" + name, isDirectory: &isDir)
            out[name] = isDir.boolValue ? .some(nil) : .some(FileManager.default.contents(atPath: base + "/" + name))
        }
        return out
    }

    /// Object files in the store, by path relative to `.mrepo/objects`.
    func objectFiles(_ s: CLISandbox) -> Set<String> {
        let base = s.path("repo/.mrepo/objects")
        let all = FileManager.default.enumerator(atPath: base)?.compactMap { $0 as? String } ?? []
        return Set(all.filter { $0.count == 65 && $0.dropFirst(2).first == "/" })
    }

    @Test func corruptObjectFailsSwitchCheckoutAndExportWritingNothing() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.ok(["init", "-q", "repo"])
        try s.ok(["commit", "-q", "--from", "../family/base", "-m", "base"], in: "repo")
        let baseObjects = objectFiles(s)
        try s.ok(["switch", "-q", "-c", "math"], in: "repo")
        try s.ok(["commit", "-q", "--from", "../family/math", "-m", "math"], in: "repo")
        try s.ok(["switch", "-q", "main"], in: "repo")
        // The largest object math added is one of its model's tensors; flip the last byte of its payload.
        let sizes = objectFiles(s).subtracting(baseObjects).map { name -> (String, Int) in
            let size = (try? FileManager.default.attributesOfItem(atPath: s.path("repo/.mrepo/objects/" + name))[.size] as? Int) ?? 0
            return (name, size)
        }
        let (victim, size) = try #require(sizes.max { $0.1 < $1.1 })
        let objectPath = s.path("repo/.mrepo/objects/" + victim)
        var bytes = try #require(FileManager.default.contents(atPath: objectPath))
        bytes[size - 1] ^= 0x01
        try bytes.write(to: URL(fileURLWithPath: objectPath))
        let short = String(victim.replacingOccurrences(of: "/", with: "").prefix(12))

        let worktree = listing(s, "repo")
        #expect(worktree.count == 5 && worktree["model.safetensors"] != nil, "\(worktree.keys.sorted())")
        let head = try s.ok(["log", "--oneline", "-n", "1"], in: "repo").stdout
        for args in [["switch", "math"], ["checkout", "math"], ["checkout", "--force", "math~0"], ["switch", "-c", "other", "math"]] {
            let r = try s.run(args, in: "repo")
            expectOneLineError(r, contains: "object \(short): model.safetensors: ")
            #expect(r.stderr.contains("nothing was written"), "\(args): \(r.stderr)")
            #expect(listing(s, "repo") == worktree, "mrepo \(args.joined(separator: " ")) changed the working tree")
        }
        #expect(try s.ok(["log", "--oneline", "-n", "1"], in: "repo").stdout == head)
        let status = try s.ok(["status"], in: "repo").stdout
        #expect(status.hasPrefix("On branch main"), "\(status)")
        #expect(status.contains("nothing to commit, working tree clean"), "\(status)")
        #expect(try s.run(["branch"], in: "repo").stdout.contains("other") == false)

        // An export into a new folder leaves no folder.
        let fresh = try s.run(["export", "math", "../out/model"], in: "repo")
        expectOneLineError(fresh, contains: "object \(short): model.safetensors: ")
        #expect(!FileManager.default.fileExists(atPath: s.path("out")))

        // An export into a folder with files leaves those files and nothing else.
        try FileManager.default.createDirectory(atPath: s.path("deploy/sub"), withIntermediateDirectories: true)
        try Data("mine\n".utf8).write(to: URL(fileURLWithPath: s.path("deploy/README.md")))
        try Data("keep\n".utf8).write(to: URL(fileURLWithPath: s.path("deploy/sub/keep.txt")))
        let deploy = listing(s, "deploy")
        let existing = try s.run(["export", "math", "../deploy"], in: "repo")
        expectOneLineError(existing, contains: "object \(short): model.safetensors: ")
        #expect(listing(s, "deploy") == deploy)

        // The commit that verifies still checks out and exports.
        try s.ok(["export", "-q", "main", "../deploy"], in: "repo")
        #expect(s.read("deploy/README.md") == s.read("family/base/README.md"))
        #expect(s.read("deploy/sub/keep.txt") == Data("keep\n".utf8))
    }

    @Test func successfulSwitchWritesExactlyTheTargetTree() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.repository(branches: ["math"])
        #expect(listing(s, "repo") == listing(s, "family/base"))
        try s.ok(["switch", "math"], in: "repo")
        #expect(listing(s, "repo") == listing(s, "family/math"))
        #expect(try s.ok(["status"], in: "repo").stdout.contains("nothing to commit, working tree clean"))
    }
}
