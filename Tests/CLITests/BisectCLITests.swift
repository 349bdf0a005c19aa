import Foundation
import Testing

/// `mrepo bisect`, through the built binary: a history of twelve commits whose `config.json`
/// holds the step, and an "evaluation" script that reads it.
@Suite struct BisectCLITests {
    /// A repository `repo` with commits step 0 … step 11, and `eval.sh` beside it: exit 0 below
    /// step 7 (good), 125 at step 4 (it cannot be tested), 1 from step 7 on (bad).
    func history() throws -> CLISandbox {
        let s = try CLISandbox()
        try FileManager.default.createDirectory(atPath: s.path("repo"), withIntermediateDirectories: true)
        try s.ok(["init", "-q"], in: "repo")
        for step in 0..<12 {
            try "{\"step\": \(step)}\n".write(toFile: s.path("repo/config.json"), atomically: true, encoding: .utf8)
            try s.ok(["commit", "-q", "-m", "step \(step)"], in: "repo")
        }
        let script = """
            #!/bin/sh
            step=$(tr -dc 0-9 < "$MREPO_ROOT/config.json")
            echo "evaluating step $step at $MREPO_BISECT_COMMIT"
            echo "$(cut -d' ' -f5 /proc/$$/stat) $(cut -d' ' -f5 /proc/$PPID/stat)" >> "$MREPO_ROOT/../groups.txt"
            [ "$step" -eq 4 ] && exit 125
            [ "$step" -lt 7 ]
            """
        try script.write(toFile: s.path("eval.sh"), atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: s.path("eval.sh"))
        return s
    }

    func revParse(_ s: CLISandbox, _ rev: String) throws -> String {
        try s.ok(["rev-parse", rev], in: "repo").stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test func runFindsTheFirstBadCommitWithTheUsersEvaluation() throws {
        let s = try history()
        let seven = try revParse(s, "HEAD~4")
        let start = try s.ok(["bisect", "start", "HEAD", "HEAD~11"], in: "repo")
        #expect(start.stdout.hasPrefix("Bisecting: "))
        #expect(try s.ok(["status"], in: "repo").stdout.contains("You are bisecting, started from branch 'main'"))
        let run = try s.ok(["bisect", "run", "--json", "../eval.sh"], in: "repo")
        let doc = try #require(try s.json(run) as? [String: Any])
        #expect(doc["first_bad"] as? String == seven)
        let tests = try #require(doc["tests"] as? [[String: Any]])
        #expect(!tests.isEmpty && tests.count <= 5)
        #expect(tests.allSatisfy { ($0["exit_status"] as? Int == 0) == ($0["mark"] as? String == "good") })
        // The script's own output went to standard error: standard output is one JSON document.
        #expect(run.stderr.contains("evaluating step"))
        // It ran in mrepo's process group, so the terminal's Ctrl-C reaches it too.
        let groups = String(decoding: try #require(s.read("groups.txt")), as: UTF8.self).split(separator: "\n")
        #expect(groups.count == tests.count && groups.allSatisfy { $0.split(separator: " ").count == 2 && Set($0.split(separator: " ")).count == 1 })
        let log = try s.ok(["bisect", "log"], in: "repo").stdout
        #expect(log.contains("# first bad commit: [\(seven.prefix(12))] step 7"))
        #expect(log.contains("mrepo bisect bad \(seven)"))
        try s.ok(["bisect", "reset", "-q"], in: "repo")
        #expect(try revParse(s, "HEAD") == revParse(s, "main"))
        #expect(try s.ok(["status", "--porcelain"], in: "repo").stdout.isEmpty)
        expectOneLineError(try s.run(["bisect", "log"], in: "repo"), contains: "not bisecting")
        try s.ok(["fsck"], in: "repo")
    }

    /// The test command keeps a -C of its own (`make -C build test`, here `env -C DIR`): mrepo had
    /// taken it as its own "run in this folder", and `--` before the command had been run as the
    /// command.
    @Test func theTestCommandKeepsItsOwnOptions() throws {
        for separator in [[], ["--"]] {
            let s = try history()
            let seven = try revParse(s, "HEAD~4")
            try s.ok(["bisect", "start", "HEAD", "HEAD~11"], in: "repo")
            let run = try s.ok(["bisect", "run", "--json"] + separator + ["env", "-C", s.root, "./eval.sh"], in: "repo")
            #expect((try s.json(run) as? [String: Any])?["first_bad"] as? String == seven, "\(separator): \(run.stderr)")
        }
        // Its --no-color and --json are its own too (mrepo had taken them out, or turned its own
        // errors into JSON).
        let s = try history()
        try s.ok(["bisect", "start", "HEAD", "HEAD~11"], in: "repo")
        try s.ok(["bisect", "run", "sh", "-c", "echo \"$@\" > \"$MREPO_ROOT/../args.txt\"; ../eval.sh", "x", "--no-color", "--json"], in: "repo")
        #expect(s.read("args.txt") == Data("--no-color --json\n".utf8))
    }

    @Test func markingByHandAndSkipping() throws {
        let s = try history()
        try s.ok(["bisect", "start"], in: "repo")
        let waiting = try s.ok(["bisect", "bad"], in: "repo").stdout
        #expect(waiting.contains("waiting for a good commit"))
        var doc = try #require(try s.json(try s.ok(["bisect", "good", "HEAD~11", "--json"], in: "repo")) as? [String: Any])
        // view: the eleven suspects, newest first, the bad one and the one checked out marked.
        let view = try #require(try s.json(try s.ok(["bisect", "view", "--json"], in: "repo")) as? [[String: Any]])
        #expect(view.count == 11 && view.count == doc["suspects"] as? Int)
        #expect(view.first?["mark"] as? String == "bad" && view.first?["subject"] as? String == "step 11")
        #expect(view.filter { $0["mark"] as? String == "next" }.map { $0["commit"] as? String } == [doc["next"] as? String])
        // Mark each commit checked out as the script would, skipping step 4, until the answer.
        var rounds = 0
        while doc["first_bad"] is NSNull, let next = doc["next"] as? String {
            #expect(try revParse(s, "HEAD") == next)
            let data = try #require(s.read("repo/config.json"))
            let step = Int(String(decoding: data, as: UTF8.self).filter(\.isNumber))!
            let term = step == 4 ? "skip" : step < 7 ? "good" : "bad"
            doc = try #require(try s.json(try s.ok(["bisect", term, "--json"], in: "repo")) as? [String: Any])
            rounds += 1
            #expect(rounds < 12)
        }
        #expect(doc["first_bad"] as? String == (try revParse(s, "main~4")))
        // The log replays the bisection: its mrepo lines, run after a reset, give the same answer.
        let log = try s.ok(["bisect", "log"], in: "repo").stdout
        let lines = log.split(separator: "\n").filter { $0.hasPrefix("mrepo bisect ") }.map { $0.split(separator: " ").dropFirst().map(String.init) }
        #expect(lines.first == ["bisect", "start"] && lines.count == rounds + 3)
        try s.ok(["bisect", "reset", "-q"], in: "repo")
        for args in lines { try s.ok(args + ["-q"], in: "repo") }
        let replayed = try #require(try s.json(try s.ok(["bisect", "log", "--json"], in: "repo")) as? [String: Any])
        #expect(replayed["first_bad"] as? String == doc["first_bad"] as? String)
        // git's aliases for the terms.
        try s.ok(["bisect", "reset", "-q"], in: "repo")
        try s.ok(["bisect", "start", "-q", "main", "main~11"], in: "repo")
        try s.ok(["bisect", "old", "-q"], in: "repo")
        try s.ok(["bisect", "new", "-q", "main~1"], in: "repo")
        try s.ok(["bisect", "reset", "-q"], in: "repo")
    }

    /// `bisect reset` to a branch another working tree has checked out is refused before any file
    /// is written (it had renamed the branch's files into place, then failed to move HEAD).
    @Test func resetToABranchCheckedOutElsewhereWritesNothing() throws {
        let s = try history()
        try s.ok(["branch", "-q", "side", "HEAD~10"], in: "repo")
        try s.ok(["worktree", "add", "-q", "../wt", "side"], in: "repo")
        try s.ok(["bisect", "start", "-q", "HEAD", "HEAD~11"], in: "repo")
        let head = try revParse(s, "HEAD")
        let files = s.read("repo/config.json")
        expectOneLineError(try s.run(["bisect", "reset", "side"], in: "repo"), contains: "checked out in another working tree")
        #expect(try revParse(s, "HEAD") == head)
        #expect(s.read("repo/config.json") == files)
        #expect(try s.ok(["status", "--porcelain"], in: "repo").stdout.isEmpty)
        try s.ok(["bisect", "reset", "-q"], in: "repo")
        #expect(try revParse(s, "HEAD") == revParse(s, "main"))
    }

    @Test func refusalsAreOneLineAndChangeNothing() throws {
        let s = try history()
        expectOneLineError(try s.run(["bisect", "good"], in: "repo"), contains: "not bisecting")
        try s.ok(["bisect", "start", "-q", "HEAD", "HEAD~11"], in: "repo")
        let head = try revParse(s, "HEAD")
        expectOneLineError(try s.run(["bisect", "start"], in: "repo"), contains: "a bisection is in progress")
        expectOneLineError(try s.run(["bisect", "run", "./no-such-eval"], in: "repo"), contains: "no-such-eval")
        expectOneLineError(try s.run(["bisect", "good", "nope"], in: "repo"), contains: "nope")
        expectOneLineError(try s.run(["bisect", "bad", "HEAD", "HEAD~1"], in: "repo"), contains: "bisect bad takes one revision")
        // The bad commit marked good, or a good commit above the bad one, contradicts it.
        expectOneLineError(try s.run(["bisect", "good", "main"], in: "repo"), contains: "cannot be both bad and good")
        try s.ok(["bisect", "bad", "-q", "main~2"], in: "repo")
        expectOneLineError(try s.run(["bisect", "good", "main~1"], in: "repo"), contains: "the regression was undone between them")
        try s.ok(["bisect", "reset", "-q"], in: "repo")
        try s.ok(["bisect", "start", "-q", "HEAD", "HEAD~11"], in: "repo")
        #expect(try revParse(s, "HEAD") == head)
        #expect(try revParse(s, "HEAD") == head)
        // An evaluation that dies stops the run and keeps the marks.
        try "#!/bin/sh\nexit 200\n".write(toFile: s.path("die.sh"), atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: s.path("die.sh"))
        expectOneLineError(try s.run(["bisect", "run", "../die.sh"], in: "repo"), contains: "exited with status 200")
        #expect(try revParse(s, "HEAD") == head)
        // A working tree that does not hold HEAD's files is not tested.
        try "{\"step\": 99}\n".write(toFile: s.path("repo/config.json"), atomically: true, encoding: .utf8)
        expectOneLineError(try s.run(["bisect", "run", "../eval.sh"], in: "repo"), contains: "does not hold HEAD's files")
        expectOneLineError(try s.run(["bisect", "good"], in: "repo"), contains: "does not hold HEAD's files")
        try s.ok(["checkout", "-q", "--force", "HEAD"], in: "repo")
        #expect(try revParse(s, "HEAD") == head)
        // Everything untestable: the answer is a list, and the run exits 1.
        try "#!/bin/sh\nexit 125\n".write(toFile: s.path("skip.sh"), atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: s.path("skip.sh"))
        let skipped = try s.run(["bisect", "run", "--json", "../skip.sh"], in: "repo")
        #expect(skipped.status == 1, "\(skipped.stderr)")
        let doc = try #require(try JSONSerialization.jsonObject(with: Data(skipped.stdout.utf8)) as? [String: Any])
        #expect((doc["candidates"] as? [String])?.count == 11 && doc["first_bad"] is NSNull)
        try s.ok(["bisect", "reset", "-q"], in: "repo")
    }
}
