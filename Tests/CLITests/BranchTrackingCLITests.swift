import Delta
import Foundation
import Testing

/// Forms git users type every day: `branch -vv` shows each branch's upstream and how far each side
/// is ahead, `-r` and `-a` list the remote-tracking branches; `--no-edit`, `tag -l`, `log
/// --decorate`, `diff --name-only`, `show --stat`, `checkout -- PATH`, `status --porcelain`,
/// `stash show`, `branch --merged`/`--contains` and `pull --ff-only` work as in git.
@Suite struct BranchTrackingCLITests {
    @Test func branchVeryVerboseShowsTheUpstreamAndCounts() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.ok(["init", "origin"])
        try s.ok(["commit", "--from", s.path("family/base"), "-m", "base"], in: "origin")
        try s.ok(["clone", s.path("origin"), "copy"])
        let fresh = try s.ok(["branch", "-vv"], in: "copy").stdout
        #expect(fresh.contains("[origin/main] base"), "got: \(fresh)")

        try s.ok(["commit", "--from", s.path("family/math"), "-m", "math"], in: "copy")
        try s.ok(["switch", "-c", "side"], in: "copy")
        let ahead = try s.ok(["branch", "-vv"], in: "copy").stdout
        #expect(ahead.contains("main") && ahead.contains("[origin/main: ahead 1] math"), "got: \(ahead)")
        // A branch without an upstream gets no bracket; plain -v stays as before.
        #expect(ahead.split(separator: "\n").contains { $0.contains("side") && !$0.contains("[") })
        #expect(!(try s.ok(["branch", "-v"], in: "copy").stdout.contains("[origin/main")))
    }

    @Test func remoteTrackingBranchesAreListedByDashRAndDashA() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.ok(["init", "origin"])
        try s.ok(["commit", "--from", s.path("family/base"), "-m", "base"], in: "origin")
        try s.ok(["branch", "math"], in: "origin")
        try s.ok(["clone", s.path("origin"), "copy"])
        try s.ok(["commit", "--from", s.path("family/code"), "-m", "code"], in: "copy")

        let local = try s.ok(["branch"], in: "copy").stdout
        #expect(!local.contains("origin/"), "got: \(local)")
        let remotes = try s.ok(["branch", "-r"], in: "copy").stdout.split(separator: "\n").map { $0.split(separator: " ").first.map(String.init) ?? "" }
        #expect(remotes == ["origin/main", "origin/math"])
        let all = try s.ok(["branch", "--all"], in: "copy").stdout.split(separator: "\n")
        #expect(all.count == 3 && all[0].hasPrefix("* main") && all[0].hasSuffix("code"), "got: \(all)")
        #expect(all[1].contains("remotes/origin/main") && all[1].hasSuffix("base") && all[2].contains("remotes/origin/math"))

        let docs = try #require(try s.json(try s.ok(["branch", "-a", "--json"], in: "copy")) as? [[String: Any]])
        #expect(docs.map { $0["name"] as? String } == ["main", "origin/main", "origin/math"])
        #expect(docs[0]["remote"] is NSNull && docs[1]["remote"] as? String == "origin" && docs[2]["current"] as? Bool == false)
        // A listing takes no name: `branch -r x` is not git's way to create a branch.
        expectOneLineError(try s.run(["branch", "-r", "x"], in: "copy"), status: 64, contains: "-r and -a list branches")
        #expect(try s.run(["rev-parse", "x"], in: "copy").status != 0)
    }

    @Test func noEditIsTakenWhereGitTakesIt() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.repository(branches: ["math", "code"])
        try s.ok(["commit", "-q", "--from", "../family/chat", "-m", "chat"], in: "repo")
        try s.ok(["revert", "--no-edit", "-q", "HEAD"], in: "repo")
        #expect(try s.ok(["log", "--oneline", "-1"], in: "repo").stdout.contains("Revert \"chat\""))
        try s.ok(["commit", "--amend", "--no-edit", "-q"], in: "repo")
        #expect(try s.ok(["log", "--oneline", "-1"], in: "repo").stdout.contains("Revert \"chat\""), "the amended commit keeps its message")
        try s.ok(["merge", "--no-edit", "-q", "--method", "linear", "math", "code"], in: "repo")
        #expect(try s.ok(["log", "--oneline", "-1"], in: "repo").stdout.contains("Merge math, code"))
    }

    @Test func commitAllIsAcceptedAsInGit() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.repository(branches: [])
        try writeFile("first\n", to: s.root + "/repo/notes.txt")
        // `git commit -am MESSAGE`: mrepo has no staging area, so -a changes nothing but is taken.
        try s.ok(["commit", "-q", "-am", "notes"], in: "repo")
        #expect(try s.ok(["log", "--oneline", "-1"], in: "repo").stdout.contains("notes"))
        #expect(try s.ok(["status", "--porcelain"], in: "repo").stdout.isEmpty, "every change was recorded")
        try writeFile("second\n", to: s.root + "/repo/notes.txt")
        try s.ok(["commit", "-q", "--all", "-m", "again"], in: "repo")
        #expect(try s.ok(["show", "HEAD:notes.txt"], in: "repo").stdout == "second\n")
    }

    @Test func moreOfGitsEverydayForms() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.repository(branches: ["math"])
        try s.ok(["tag", "v1"], in: "repo")
        try s.ok(["tag", "w2", "math"], in: "repo")
        // `tag -l` alone lists every tag; with a pattern, those that match.
        #expect(try s.ok(["tag", "-l"], in: "repo").stdout.split(separator: "\n").map { $0.split(separator: " ")[0] } == ["v1", "w2"])
        #expect(try s.ok(["tag", "--list", "-q"], in: "repo").stdout.contains("w2"))
        #expect(try s.ok(["tag", "-l", "w*"], in: "repo").stdout.split(separator: "\n").count == 1)
        // While listing, every name is a pattern, as in git (they had been refused as tag names).
        #expect(try s.ok(["tag", "-n1", "w2"], in: "repo").stdout == "w2             math\n")
        #expect(try s.ok(["tag", "-l", "-n1", "w*"], in: "repo").stdout == "w2             math\n")
        #expect(try s.ok(["tag", "-l", "v1", "w2"], in: "repo").stdout.split(separator: "\n").count == 2)
        // `config --get KEY`, `-C ''` (no change of folder), and describe naming its filter.
        try s.ok(["config", "merge.method", "ties"], in: "repo")
        #expect(try s.ok(["config", "--get", "merge.method"], in: "repo").stdout == "ties\n")
        expectOneLineError(try s.run(["config", "--get", "merge.method", "linear"], in: "repo"), status: 64, contains: "config --get takes one key")
        #expect(try s.ok(["config", "merge.method"], in: "repo").stdout == "ties\n", "--get never writes")
        #expect(try s.ok(["-C", "", "status", "--porcelain"], in: "repo").status == 0)
        try s.ok(["tag", "-a", "-m", "release", "r1"], in: "repo")
        expectOneLineError(try s.run(["describe", "--match", "x*"], in: "repo"), contains: "that --match/--exclude let through")
        // With --tags, an annotated tag wins over a newer lightweight one on the same commit, as in git.
        try s.ok(["tag", "zz-light"], in: "repo")
        #expect(try s.ok(["describe", "--tags"], in: "repo").stdout == "r1\n")
        // `log --decorate` is what log prints anyway.
        #expect(try s.ok(["log", "--oneline", "--decorate"], in: "repo").stdout == (try s.ok(["log", "--oneline"], in: "repo").stdout))
        // `diff --name-only`: the paths of the files that differ.
        let names = try s.ok(["diff", "--name-only", "main", "math"], in: "repo").stdout
        #expect(names.split(separator: "\n").contains("model.safetensors") && names.split(separator: "\n") == names.split(separator: "\n").sorted(), "got: \(names)")
        #expect(names == (try s.ok(["diff", "--stat", "main", "math"], in: "repo").stdout.split(separator: "\n").dropLast().map { $0.split(separator: " ")[0] + "\n" }.joined()))
        #expect(try s.ok(["diff", "--name-only", "main", "main"], in: "repo").stdout.isEmpty)
        expectOneLineError(try s.run(["diff", "--name-only", "--stat"], in: "repo"), status: 64, contains: "give one of them")
        // `show --stat REV` is `log --stat -1 REV`.
        let shown = try s.ok(["show", "--stat", "math"], in: "repo").stdout
        #expect(shown == (try s.ok(["log", "--stat", "-1", "math"], in: "repo").stdout))
        #expect(shown.contains("model.safetensors |") && shown.contains("tensors changed"))
        // `checkout [REV] -- PATH` puts files back, as restore does.
        try writeFile("junk", to: s.path("repo/config.json"))
        try s.ok(["checkout", "--", "config.json"], in: "repo")
        #expect(try s.ok(["status", "--porcelain"], in: "repo").stdout.isEmpty)
        try s.ok(["checkout", "-q", "math", "--", "model.safetensors"], in: "repo")
        #expect(try s.ok(["diff", "--name-only", "math", "--", "model.safetensors"], in: "repo").stdout.isEmpty, "the file is math's")
        #expect(try s.ok(["diff", "--name-only", "--", "model.safetensors"], in: "repo").stdout == "model.safetensors\n")
        #expect(try s.ok(["rev-parse", "--abbrev-ref", "HEAD"], in: "repo").stdout.hasPrefix("main"), "HEAD did not move")
        try s.ok(["checkout", "--", "model.safetensors"], in: "repo")
        // `diff --cached` (no index: the working tree is what a commit records) and log's %xNN.
        try writeFile("junk", to: s.path("repo/config.json"))
        #expect(try s.ok(["diff", "--cached", "--name-only"], in: "repo").stdout == "config.json\n")
        #expect(try s.ok(["diff", "--staged", "--stat"], in: "repo").stdout == (try s.ok(["diff", "--stat"], in: "repo").stdout))
        try s.ok(["checkout", "--", "config.json"], in: "repo")
        let tabbed = try s.ok(["log", "--format=%h%x09%s", "-1", "math"], in: "repo").stdout
        #expect(tabbed.split(separator: "\t").last == "math\n", "got: \(tabbed)")
        // `stash show [N]` and stash@{N} as a revision.
        expectOneLineError(try s.run(["stash", "show"], in: "repo"), contains: "there are no stash entries")
        try writeFile("junk", to: s.path("repo/config.json"))
        try s.ok(["stash", "-q"], in: "repo")
        let stashed = try s.ok(["stash", "show"], in: "repo").stdout
        let byNumber = try s.ok(["stash", "show", "0"], in: "repo").stdout
        #expect(stashed.contains("config.json | modified") && stashed == byNumber)
        // With --json: the entry's commit as `show --json` gives it (it failed naming options not typed).
        let shownJSON = try s.json(try s.ok(["stash", "show", "--json"], in: "repo")) as? [String: Any]
        #expect((shownJSON?["id"] as? String) == (try s.ok(["rev-parse", "stash@{0}"], in: "repo").stdout.trimmingCharacters(in: .whitespacesAndNewlines)))
        // A value that is none of the allowed ones lists them (the list was cut off).
        expectOneLineError(try s.run(["stash", "nosuch"], in: "repo"), status: 64, contains: "one of the following: 'push', 'save', 'pop'")
        #expect(try s.ok(["diff", "--name-only", "HEAD", "stash@{0}"], in: "repo").stdout == "config.json\n")
        expectOneLineError(try s.run(["show", "stash@{1}"], in: "repo"), contains: "the stash has only 1 entry")
        try s.ok(["stash", "pop", "-q"], in: "repo")
        try s.ok(["checkout", "--", "config.json"], in: "repo")
        // `branch --merged [REV]`, `--no-merged`, `--contains [REV]`.
        func listed(_ arguments: [String]) throws -> [String] {
            try s.ok(["branch"] + arguments, in: "repo").stdout.split(separator: "\n").map { String($0.dropFirst(2).split(separator: " ")[0]) }
        }
        #expect(try listed(["--merged"]) == ["main"], "HEAD (main, at base) does not contain math")
        #expect(try listed(["--no-merged"]) == ["math"])
        #expect(try listed(["--merged", "math"]) == ["main", "math"])
        #expect(try listed(["--contains", "main"]) == ["main", "math"])
        #expect(try listed(["--contains", "math"]) == ["math"])
        expectOneLineError(try s.run(["branch", "--merged", "--no-merged"], in: "repo"), status: 64, contains: "give one of them")
        // `pull --ff-only` is what pull does.
        try s.ok(["clone", "-q", s.path("repo"), "copy"])
        #expect(try s.ok(["pull", "--ff-only"], in: "copy").status == 0)
    }
}

/// `mrepo clean` as git's: it needs -f or -n, and -n lists what -f removes.
@Suite struct CleanCLITests {
    @Test func cleanNeedsForceOrDryRunAndRemovesUntrackedFiles() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.repository(branches: ["math"])
        try Data("opt".utf8).write(to: URL(fileURLWithPath: s.path("repo/optimizer.pt")))
        try FileManager.default.createDirectory(atPath: s.path("repo/runs/1"), withIntermediateDirectories: true)
        try Data("ev".utf8).write(to: URL(fileURLWithPath: s.path("repo/runs/1/events")))

        expectOneLineError(try s.run(["clean"], in: "repo"), status: 64, contains: "refusing to clean without -f")
        #expect(s.read("repo/optimizer.pt") != nil)
        #expect(try s.ok(["clean", "-n", "-d"], in: "repo").stdout == "Would remove optimizer.pt\nWould remove runs/\n")
        let doc = try #require(try s.json(try s.ok(["clean", "-fd", "--json"], in: "repo")) as? [String: Any])
        #expect(doc["removed"] as? [String] == ["optimizer.pt", "runs/"])
        #expect(doc["dry_run"] as? Bool == false)
        #expect(s.read("repo/optimizer.pt") == nil && s.read("repo/runs/1/events") == nil)
        #expect(try s.ok(["status", "--porcelain"], in: "repo").stdout.isEmpty)
        #expect(try s.ok(["clean", "-f"], in: "repo").stdout.isEmpty)
    }
}

/// `mrepo describe` names a commit after the nearest tag behind it, as git's.
@Suite struct DescribeCLITests {
    @Test func describeCountsCommitsSinceTheNearestTag() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.ok(["init", "repo"])
        try s.ok(["commit", "-q", "--from", s.path("family/base"), "-m", "base"], in: "repo")
        expectOneLineError(try s.run(["describe"], in: "repo"), status: 2, contains: "no tag with a message")
        let id = try s.ok(["rev-parse", "HEAD"], in: "repo").stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try s.ok(["describe", "--always"], in: "repo").stdout == String(id.prefix(12)) + "\n")
        try s.ok(["tag", "light"], in: "repo")
        #expect(try s.ok(["describe", "--tags"], in: "repo").stdout == "light\n")
        try s.ok(["tag", "-a", "-m", "first release", "v1"], in: "repo")
        try s.ok(["commit", "-q", "--from", s.path("family/math"), "-m", "math"], in: "repo")
        try s.ok(["commit", "-q", "--from", s.path("family/code"), "-m", "code"], in: "repo")
        let head = try s.ok(["rev-parse", "HEAD"], in: "repo").stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try s.ok(["describe"], in: "repo").stdout == "v1-2-g\(head.prefix(12))\n")
        #expect(try s.ok(["describe", "--abbrev", "7", "HEAD~2", "--long"], in: "repo").stdout == "v1-0-g\(id.prefix(7))\n")
        // A nearer tag wins; --match and --exclude choose among them.
        try s.ok(["tag", "-a", "-m", "math", "v2", "HEAD~1"], in: "repo")
        #expect(try s.ok(["describe"], in: "repo").stdout.hasPrefix("v2-1-g"))
        #expect(try s.ok(["describe", "--exclude", "v2"], in: "repo").stdout.hasPrefix("v1-2-g"))
        #expect(try s.ok(["describe", "--match", "v1*"], in: "repo").stdout.hasPrefix("v1-2-g"))
        // tag -n[N], as git lists tags with their messages.
        try s.ok(["tag", "-a", "-m", "three\nlines\nhere", "v3"], in: "repo")
        // A lightweight tag shows its commit's subject, as git's (it showed nothing).
        #expect(try s.ok(["tag", "-n"], in: "repo").stdout == "light          base\nv1             first release\nv2             math\nv3             three\n")
        #expect(try s.ok(["tag", "-n2", "-l", "v3"], in: "repo").stdout == "v3             three\n    lines\n")
        #expect(try s.ok(["tag"], in: "repo").stdout.split(separator: "\n").last?.hasSuffix("  three") == true)
        try s.ok(["tag", "-d", "v3"], in: "repo")
        // --dirty looks at the working tree.
        try s.writeModel("repo", [("extra", Shape([2]), [1, 2])])
        let doc = try #require(try s.json(try s.ok(["describe", "--dirty", "--json"], in: "repo")) as? [String: Any])
        #expect(doc["description"] as? String == "v2-1-g\(head.prefix(12))-dirty")
        #expect(doc["tag"] as? String == "v2" && doc["distance"] as? Int == 1 && doc["dirty"] as? Bool == true)
        expectOneLineError(try s.run(["describe", "--dirty", "HEAD~1"], in: "repo"), status: 64, contains: "--dirty describes the working tree")
        // git's --dirty=MARK.
        #expect(try s.ok(["describe", "--dirty=+wip"], in: "repo").stdout == "v2-1-g\(head.prefix(12))+wip\n")
        #expect(try s.ok(["describe", "--dirty=-mod"], in: "repo").stdout == "v2-1-g\(head.prefix(12))-mod\n")
        #expect(try s.ok(["describe", "--dirty="], in: "repo").stdout == "v2-1-g\(head.prefix(12))\n")
        // Untracked files do not make it dirty (as git); --abbrev=0 prints the nearest tag alone.
        try s.ok(["restore", "model.safetensors"], in: "repo")
        try Data("log".utf8).write(to: URL(fileURLWithPath: s.path("repo/train.log")))
        #expect(try s.ok(["describe", "--dirty"], in: "repo").stdout == "v2-1-g\(head.prefix(12))\n")
        #expect(try s.ok(["describe", "--abbrev=0"], in: "repo").stdout == "v2\n")
    }
}

/// `push --dry-run` asks the remote what it lacks and says what a push would send; nothing moves.
@Suite struct PushDryRunCLITests {
    @Test func aDryRunSendsNothingAndCountsWhatThePushThenSends() throws {
        let s = try CLISandbox.workWithBareOrigin()
        try s.ok(["push", "-q", "-u", "origin", "main"], in: "work")
        try s.ok(["commit", "-q", "--from", s.path("family/math"), "-m", "math"], in: "work")
        let before = try s.ok(["rev-parse", "main"], in: "origin").stdout

        let text = try s.ok(["push", "-n"], in: "work").stdout
        #expect(text.contains("main") && text.contains("Would send 1 commit") && text.contains("dry run"), "got: \(text)")
        let dry = try #require(try s.json(try s.ok(["push", "--dry-run", "--json"], in: "work")) as? [String: Any])
        #expect(dry["dry_run"] as? Bool == true)
        #expect(try s.ok(["rev-parse", "main"], in: "origin").stdout == before, "the remote's branch did not move")
        #expect(try s.ok(["status"], in: "work").stdout.contains("ahead of 'origin/main' by 1 commit"), "the remote-tracking branch did not move")

        let real = try #require(try s.json(try s.ok(["push", "--json"], in: "work")) as? [String: Any])
        #expect(real["dry_run"] == nil)
        for key in ["commits", "objects", "bytes_sent"] {
            #expect(real[key] as? Int == dry[key] as? Int, "\(key): the dry run counted what the push sent")
        }
        #expect((real["objects"] as? Int ?? 0) > 0)
        #expect(try s.ok(["push", "-n"], in: "work").stdout.contains("Everything up-to-date"))
    }
}

/// `mrepo remote show NAME`, as git's: the remote's branches (tracked, new, stale), the branches
/// that pull from it, and how each would push.
@Suite struct RemoteShowCLITests {
    @Test func remoteShowTellsHowEachBranchStands() throws {
        let s = try CLISandbox.workWithBareOrigin()
        try s.ok(["branch", "old"], in: "work")
        try s.ok(["branch", "behind"], in: "work")
        try s.ok(["push", "-q", "-u", "origin", "main", "old", "behind"], in: "work")
        // Another clone adds a branch and moves `behind`; `old` is deleted there.
        try s.ok(["clone", "-q", s.path("origin"), "other"])
        try s.ok(["switch", "-q", "-c", "fresh"], in: "other")
        try s.ok(["push", "-q", "origin", "fresh"], in: "other")
        try s.ok(["switch", "-q", "behind"], in: "other")
        try s.ok(["commit", "-q", "--from", s.path("family/code"), "-m", "code"], in: "other")
        try s.ok(["push", "-q", "origin", "behind", ":old"], in: "other")
        // Here, main moves ahead.
        try s.ok(["commit", "-q", "--from", s.path("family/math"), "-m", "math"], in: "work")

        let text = try s.ok(["remote", "show", "origin"], in: "work").stdout
        #expect(text.hasPrefix("* remote origin\n  Fetch URL: \(s.path("origin"))\n"), "got: \(text)")
        #expect(text.contains("    fresh  new (next fetch will store in origin/fresh)"), "got: \(text)")
        #expect(text.contains("    old    stale (use 'mrepo fetch --prune origin' to remove)"), "got: \(text)")
        #expect(text.contains("    main merges with remote main") || text.contains("    main   merges with remote main"), "got: \(text)")
        let doc = try #require(try s.json(try s.ok(["remote", "show", "origin", "--json"], in: "work")) as? [String: Any])
        let branches = try #require(doc["branches"] as? [[String: Any]])
        #expect(branches.map { $0["name"] as? String } == ["behind", "fresh", "main", "old"])
        #expect(branches.map { $0["state"] as? String } == ["tracked", "new", "tracked", "stale"])
        let pushes = Dictionary(uniqueKeysWithValues: try #require(doc["pushes"] as? [[String: Any]]).map { ($0["local"] as? String ?? "", $0["state"] as? String ?? "") })
        #expect(pushes["main"] == "fast-forwardable")
        #expect(pushes["behind"] == "local out of date")
        #expect(pushes["old"] == "create")

        // -n does not ask the remote: what this repository recorded, without states.
        let offline = try #require(try s.json(try s.ok(["remote", "show", "-n", "origin", "--json"], in: "work")) as? [String: Any])
        #expect(offline["queried"] as? Bool == false)
        #expect((offline["branches"] as? [[String: Any]])?.map { $0["name"] as? String } == ["behind", "main", "old"])
        expectOneLineError(try s.run(["remote", "show", "nope"], in: "work"), status: 2, contains: "no remote named 'nope'")
        // The listing keeps its flags.
        #expect(try s.ok(["remote", "-v"], in: "work").stdout.contains("origin\t\(s.path("origin")) (fetch)"))
    }
}

/// `mrepo diff --no-index A B` compares two checkpoint folders (or files) with no repository.
@Suite struct DiffNoIndexCLITests {
    @Test func twoFoldersCompareTensorByTensorOutsideAnyRepository() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.makeFamily("sharded", extra: ["--shards", "2"])
        let different = try s.run(["diff", "--no-index", "family/base", "family/math"])
        #expect(different.status == 1, "exit 1 when they differ, as git's --no-index")
        #expect(different.stdout.hasPrefix("diff family/base → family/math\n"), "got: \(different.stdout)")
        #expect(different.stdout.contains("M  encoder.layer.0.attention.output.dense.weight"))
        let doc = try #require(try s.json(try s.run(["diff", "--no-index", "--json", "family/base", "family/math"])) as? [String: Any])
        let tensors = try #require(doc["tensors"] as? [[String: Any]])
        #expect(!tensors.isEmpty && tensors.allSatisfy { ($0["relative_change"] as? Double ?? 0) > 0 })
        #expect(doc["old_commit"] is NSNull)

        // The same tensors in two shards: files differ, no tensor does.
        let resharded = try s.run(["diff", "--no-index", "family/base", "sharded/base"])
        #expect(resharded.stdout.contains("no tensor differs"), "got: \(resharded.stdout)")
        #expect(resharded.stdout.contains("file removed: model.safetensors"), "got: \(resharded.stdout)")
        // Two files, whatever their names, and a folder with itself.
        #expect(try s.run(["diff", "--no-index", "family/base/model.safetensors", "family/math/model.safetensors", "--stat"]).status == 1)
        try FileManager.default.copyItem(atPath: s.path("family/base/model.safetensors"), toPath: s.path("copy.safetensors"))
        #expect(try s.ok(["diff", "--no-index", "copy.safetensors", "family/base/model.safetensors"]).stdout.hasSuffix("no tensor differs\n"))
        // A checkpoint against another kind of file is refused (it said "no tensor differs").
        expectOneLineError(try s.run(["diff", "--no-index", "copy.safetensors", "family/base/config.json"]), status: 2,
                           contains: "copy.safetensors is a safetensors file, family/base/config.json is not")
        // A link that is not a file is compared as a link, never passed over.
        try FileManager.default.copyItem(atPath: s.path("family/base"), toPath: s.path("linked"))
        try FileManager.default.createSymbolicLink(atPath: s.path("linked/broken"), withDestinationPath: "nowhere")
        let broken = try s.run(["diff", "--no-index", "family/base", "linked"])
        #expect(broken.status == 1 && broken.stdout.contains("file added: broken"), "got: \(broken.stdout)")
        #expect(try s.ok(["diff", "--no-index", "family/base", "family/base"]).stdout.contains("no tensor differs"))
        expectOneLineError(try s.run(["diff", "--no-index", "family/base", "nowhere"]), status: 2, contains: "nowhere: no such file or folder")
        // Paths with .. are paths, not ranges.
        #expect(try s.run(["diff", "--no-index", "family/base", "family/math"], in: "sharded").status == 2)
        #expect(try s.run(["diff", "--no-index", "../family/base", "../family/math"], in: "sharded").status == 1)
        expectOneLineError(try s.run(["diff", "--no-index", "family/base"]), status: 64, contains: "--no-index compares two paths")
    }
}

/// Paths typed in a subfolder of the working tree are taken from there, as git takes pathspecs:
/// `restore config.json` in `sub/` puts back `sub/config.json`, never the root's.
@Suite struct SubfolderPathCLITests {
    @Test func restoreDiffAndCleanTakePathsFromTheCurrentFolder() throws {
        let s = try CLISandbox()
        try s.ok(["init", "-q", "repo"])
        try FileManager.default.createDirectory(atPath: s.path("repo/sub"), withIntermediateDirectories: true)
        for path in ["repo/config.json", "repo/sub/config.json"] { try Data("1".utf8).write(to: URL(fileURLWithPath: s.path(path))) }
        try s.ok(["commit", "-q", "-m", "one"], in: "repo")
        for path in ["repo/config.json", "repo/sub/config.json"] { try Data("2".utf8).write(to: URL(fileURLWithPath: s.path(path))) }

        #expect(try s.ok(["diff", "--name-only", "--", "config.json"], in: "repo/sub").stdout == "sub/config.json\n")
        #expect(try s.ok(["diff", "--name-only"], in: "repo/sub").stdout == "config.json\nsub/config.json\n", "no path: the whole tree, as git")
        // Without --, an argument that is no revision but a file on disk is a path, as in git.
        #expect(try s.ok(["diff", "--name-only", "config.json"], in: "repo/sub").stdout == "sub/config.json\n")
        #expect(try s.ok(["diff", "--name-only", "../config.json"], in: "repo/sub").stdout == "config.json\n")
        #expect(try s.ok(["diff", "--name-only", "HEAD", "config.json"], in: "repo/sub").stdout == "sub/config.json\n")
        expectOneLineError(try s.run(["diff", "no-such-thing"], in: "repo/sub"), status: 2, contains: "unknown revision 'no-such-thing'")
        try s.ok(["restore", "config.json"], in: "repo/sub")
        #expect(s.read("repo/sub/config.json") == Data("1".utf8))
        #expect(s.read("repo/config.json") == Data("2".utf8), "the root's file is not the one named")
        try s.ok(["checkout", "--", "../config.json"], in: "repo/sub")
        #expect(s.read("repo/config.json") == Data("1".utf8))
        expectOneLineError(try s.run(["restore", s.path("elsewhere.txt")], in: "repo/sub"), status: 2, contains: "is outside the working tree")
        // An absolute path spelled through a link to the working tree is inside it.
        try FileManager.default.createSymbolicLink(atPath: s.path("link"), withDestinationPath: s.path("repo"))
        try Data("3".utf8).write(to: URL(fileURLWithPath: s.path("repo/sub/config.json")))
        try s.ok(["restore", s.path("link/sub/config.json")], in: "repo/sub")
        #expect(s.read("repo/sub/config.json") == Data("1".utf8))
        // REV:./path is from the current folder, REV:path from the root (as git).
        try Data("4".utf8).write(to: URL(fileURLWithPath: s.path("repo/sub/config.json")))
        #expect(try s.ok(["diff", "--name-only", "HEAD:./config.json"], in: "repo/sub").stdout == "sub/config.json\n")
        #expect(try s.ok(["diff", "--name-only", "HEAD:../config.json", "HEAD:../config.json"], in: "repo/sub").stdout.isEmpty)
        expectOneLineError(try s.run(["diff", "HEAD..HEAD", "HEAD"], in: "repo/sub"), status: 64, contains: "a range A..B is one argument")

        try Data("x".utf8).write(to: URL(fileURLWithPath: s.path("repo/stray.txt")))
        try Data("x".utf8).write(to: URL(fileURLWithPath: s.path("repo/sub/stray.txt")))
        // Paths shown from the current folder, as git's (they were shown from the top).
        #expect(try s.ok(["clean", "-n"], in: "repo/sub").stdout == "Would remove stray.txt\n")
        #expect(try s.ok(["clean", "-n", ".."], in: "repo/sub").stdout == "Would remove ../stray.txt\nWould remove stray.txt\n")
        #expect(try s.ok(["status", "--short"], in: "repo/sub").stdout.contains("A ../stray.txt\n"))
        #expect(try s.ok(["status", "--porcelain"], in: "repo/sub").stdout.contains("A sub/stray.txt\n"), "porcelain: from the top")
        #expect(try s.ok(["status"], in: "repo/sub").stdout.contains("new file:  stray.txt\n"))
    }
}

extension CLISandbox {
    /// A family, a bare repository `origin`, and a repository `work` with the base committed and
    /// `origin` as its remote.
    static func workWithBareOrigin() throws -> CLISandbox {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.ok(["init", "--bare", "origin"])
        try s.ok(["init", "work"])
        try s.ok(["commit", "-q", "--from", s.path("family/base"), "-m", "base"], in: "work")
        try s.ok(["remote", "add", "origin", s.path("origin")], in: "work")
        return s
    }
}
