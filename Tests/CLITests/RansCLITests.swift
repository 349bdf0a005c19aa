import Foundation
import Testing

/// `MREPO_RANS=1`: commits store floating-point tensors with the rANS coder (coder 2); what is
/// stored changes, what is committed does not.
@Suite struct RansCLITests {
    @Test(arguments: ["F32", "BF16"])
    func commitsWithRANSExportByteForByteUnderTheSameIds(dtype: String) throws {
        let s = try CLISandbox()
        try s.makeFamily(extra: ["--dtype", dtype, "--fine-tunes", "math"])
        var trees: [String: [String]] = [:]
        var stored: [String: Int] = [:]
        for (repo, rans) in [("plain", "0"), ("rans", "1")] {
            let env = ["MREPO_RANS": rans]
            try s.ok(["init", repo])
            try s.ok(["commit", "--from", "../family/base", "-m", "base"], in: repo, environment: env)
            try s.ok(["switch", "-q", "-c", "math", "main"], in: repo, environment: env)
            try s.ok(["commit", "--from", "../family/math", "-m", "math"], in: repo, environment: env)
            let log = try #require(try s.json(try s.ok(["log", "--json"], in: repo)) as? [[String: Any]])
            trees[repo] = log.compactMap { $0["tree"] as? String }
            let du = try #require(try s.json(try s.ok(["du", "--json"], in: repo)) as? [String: Any])
            stored[repo] = try #require(du["object_bytes"] as? Int)
            // Read back by a process without the variable: readers need no setting.
            for rev in ["main", "math"] {
                try s.ok(["export", rev, "../out-\(repo)-\(rev)"], in: repo)
                #expect(s.sameFiles("out-\(repo)-\(rev)", "family/\(rev == "main" ? "base" : rev)"))
            }
            try s.ok(["fsck"], in: repo)
        }
        #expect(trees["plain"]?.count == 2)
        // Trees (and so commit ids, which add only the message, author and time) name tensors by
        // the digest of their bytes, not by how they are stored.
        #expect(trees["plain"] == trees["rans"])
        #expect(try #require(stored["rans"]) < (try #require(stored["plain"])))
    }
}
