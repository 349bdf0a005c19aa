import Delta
import Foundation
import Testing

/// `merge --reversible --squash`: the basis replaces the experts. The squashed commit has one
/// parent; after the experts' branches are deleted, `gc --prune-reflog` drops their factors, and
/// every expert (and the fold, and the views) is still rebuilt bit for bit as from an ordinary
/// reversible merge; `fsck` stays clean.
@Suite struct ReversibleSquashCLITests {
    func objectBytes(_ s: CLISandbox) -> Int {
        let root = s.path("repo/.mrepo/objects")
        let files = FileManager.default.enumerator(atPath: root)?.compactMap { $0 as? String } ?? []
        return files.reduce(0) { sum, f in
            sum + ((try? FileManager.default.attributesOfItem(atPath: root + "/" + f)[.size] as? Int) ?? 0)
        }
    }

    func parents(_ s: CLISandbox, _ rev: String) throws -> [String] {
        let log = try #require(try s.json(try s.ok(["log", "--json", "-n", "1", rev], in: "repo")) as? [[String: Any]])
        return log.first?["parents"] as? [String] ?? []
    }

    /// Merges `experts` both ways (branch `full`, then branch `sq` squashed), exports every expert
    /// rebuilt from the ordinary merge, deletes every branch but `sq` and main, collects garbage, and
    /// checks the squashed merge rebuilds the same bytes.
    func squashRoundTrip(_ s: CLISandbox, experts: [String], merge: [String], outputs: [[String]]) throws {
        try s.ok(["switch", "-q", "-c", "full", "main"], in: "repo")
        try s.ok(["merge", "-q"] + experts + merge, in: "repo")
        for name in experts {
            for (i, extra) in outputs.enumerated() { try s.ok(["export", "full", "../ref-\(name)-\(i)", "--expert", name] + extra, in: "repo") }
        }
        try s.ok(["export", "full", "../ref-mean", "--view", "mean"], in: "repo")
        let expertCommits = try experts.map { try s.ok(["rev-parse", $0], in: "repo").stdout.trimmingCharacters(in: .whitespacesAndNewlines) }
        try s.ok(["switch", "-q", "-c", "sq", "main"], in: "repo")
        try s.ok(["branch", "-D", "full"], in: "repo")
        try s.ok(["gc", "--prune-reflog"], in: "repo")
        let r = try s.ok(["merge"] + experts + merge + ["--squash"], in: "repo")
        #expect(r.stdout.contains("squashed"), "\(r.stdout)")
        #expect(try parents(s, "sq").count == 1)
        let before = objectBytes(s)
        for branch in experts { try s.ok(["branch", "-D", branch], in: "repo") }
        try s.ok(["gc", "--prune-reflog"], in: "repo")
        let after = objectBytes(s)
        // The experts' commits and the weights the basis replaces are gone.
        #expect(after < before, "objects: \(before) bytes before gc, \(after) after")
        for id in expertCommits { #expect(try s.run(["show", id], in: "repo").status != 0, "\(id) survived gc") }
        print("squash (\(merge.joined(separator: " "))): objects \(before) bytes with the experts, \(after) after deleting them and gc")
        try s.ok(["fsck"], in: "repo")
        for name in experts {
            for (i, extra) in outputs.enumerated() {
                try s.ok(["export", "sq", "../sq-\(name)-\(i)", "--expert", name] + extra, in: "repo")
                #expect(s.sameFiles("sq-\(name)-\(i)", "ref-\(name)-\(i)"), "\(name) \(extra)")
            }
        }
        try s.ok(["export", "sq", "../sq-mean", "--view", "mean"], in: "repo")
        #expect(s.sameFiles("sq-mean", "ref-mean"))
        // checkout --expert writes the same files as export.
        try s.ok(["checkout", "-q", "sq", "--expert", experts[0]], in: "repo")
        for f in s.files(under: "ref-\(experts[0])-0") { #expect(s.read("repo/" + f) == s.read("ref-\(experts[0])-0/" + f), "\(f)") }
        try s.ok(["switch", "-q", "sq"], in: "repo")
        try s.ok(["fsck"], in: "repo")
    }

    @Test func squashedAdapterMergeRebuildsEveryExpertAfterGC() throws {
        let s = try CLISandbox()
        try s.synth("fam", ["--size", "tiny", "--adapters", "3", "--lora-rank", "4"])
        try s.ok(["init", "-q", "repo"])
        try s.ok(["commit", "-q", "--from", "../fam/base", "-m", "base"], in: "repo")
        for name in ["math", "code", "chat"] {
            try s.ok(["switch", "-q", "-c", name, "main"], in: "repo")
            try s.ok(["commit", "-q", "--from", "../fam/lora-\(name)", "-m", "lora \(name)"], in: "repo")
        }
        try s.ok(["switch", "-q", "main"], in: "repo")
        try squashRoundTrip(s, experts: ["math", "code", "chat"], merge: ["--reversible", "--basis", "1"], outputs: [[], ["--fold"]])
        // The rebuilt adapter is the committed one's layout (exact at K = N − 1 is covered elsewhere).
        #expect(s.files(under: "sq-math-0") == s.files(under: "fam/lora-math"))
    }

    @Test func squashedFullFineTuneMergeRebuildsEveryExpertAfterGC() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.repository(of: "family", branches: ["math", "code", "chat"])
        try squashRoundTrip(s, experts: ["math", "code", "chat"], merge: ["--method", "rmm", "--basis", "2", "--set", "rank=4"], outputs: [[]])
    }

    @Test func squashNeedsAReversibleMerge() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.repository(of: "family", branches: ["math", "code"])
        expectOneLineError(try s.run(["merge", "math", "code", "--method", "ties", "--squash"], in: "repo"), contains: "--squash")
        expectOneLineError(try s.run(["merge", "math", "code", "--method", "ties", "--reversible"], in: "repo"), status: 64, contains: "--reversible")
        try s.ok(["fsck"], in: "repo")
    }
}
