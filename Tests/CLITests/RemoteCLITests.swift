import Foundation
import Testing

/// End-to-end: remotes, clone, fetch, push and pull between folders, through the built binary.
@Suite struct RemoteCLITests {
    /// A sandbox with `repo` (base, then math on main) pushed to a bare `hub`.
    func published() throws -> CLISandbox {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.ok(["init", "-q", "--bare", "hub"])
        try s.ok(["init", "-q", "repo"])
        try s.ok(["commit", "--from", "../family/base", "-m", "base"], in: "repo")
        try s.ok(["remote", "add", "origin", "../hub"], in: "repo")
        try s.ok(["push", "-q", "-u", "origin", "main"], in: "repo")
        return s
    }

    /// A tag's message travels with it: a lightweight tag forced over an annotated one clears it
    /// on the remote (it was kept there, on another commit); a message past 64 KiB is left out of
    /// the push with a warning (the tag was refused).
    @Test func tagMessagesFollowTheTag() throws {
        let s = try published()
        func message(_ tag: String, in repo: String) throws -> String? {
            let tags = try #require(try s.json(try s.ok(["tag", "-l", "--json"], in: repo)) as? [[String: Any]])
            return tags.first { $0["name"] as? String == tag }?["message"] as? String
        }
        try s.ok(["tag", "-m", "first", "v1"], in: "repo")
        try s.ok(["push", "-q", "origin", "v1"], in: "repo")
        #expect(try message("v1", in: "hub") == "first")
        try s.ok(["commit", "-q", "--from", "../family/math", "-m", "math"], in: "repo")
        try s.ok(["tag", "-f", "v1"], in: "repo")
        #expect(try message("v1", in: "repo") == nil)
        try s.ok(["push", "-q", "--force", "origin", "v1"], in: "repo")
        #expect(try message("v1", in: "hub") == nil)
        // On the same commit, a new message goes with --force only (it said "Everything up-to-date").
        try s.ok(["tag", "-f", "-m", "again", "v1"], in: "repo")
        let unforced = try s.ok(["push", "-q", "origin", "v1"], in: "repo")
        #expect(unforced.stderr.contains("tag 'v1' has another message there; it is left as it is (pass --force to replace it)"), "\(unforced.stderr)")
        #expect(try message("v1", in: "hub") == nil)
        try s.ok(["push", "-q", "--force", "origin", "v1"], in: "repo")
        #expect(try message("v1", in: "hub") == "again")
        let long = String(repeating: "x", count: 70_000)
        try s.ok(["tag", "-m", long, "v2"], in: "repo")
        let pushed = try s.ok(["push", "origin", "v2"], in: "repo")
        #expect(pushed.stderr.contains("the message of tag 'v2' is longer than 64 KiB: the tag is pushed without it"), "\(pushed.stderr)")
        #expect(try s.ok(["tag", "-l"], in: "hub").stdout.contains("v2"))
        #expect(try message("v2", in: "hub") == nil)
        // Pushed again, nothing moves and nothing is said.
        #expect(try s.ok(["push", "origin", "v2"], in: "repo").stderr.isEmpty)
    }

    /// A clone's branch that only the remote has: created by `switch`, logged so `switch -` goes
    /// back; and refused before any file is written while another working tree holds it unborn.
    @Test func remoteBranchesCreatedBySwitch() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.repository(branches: ["math"])
        try s.ok(["clone", "-q", "repo", "copy"])
        // A clone leaves no file of its own behind (its journal stayed in .mrepo).
        #expect(try FileManager.default.contentsOfDirectory(atPath: s.path("copy/.mrepo")).filter { $0.hasPrefix(".mrepo-tmp-") }.isEmpty)
        try s.ok(["worktree", "add", "-q", "../wt"], in: "copy")
        try s.ok(["switch", "-q", "--orphan", "math"], in: "wt")
        expectOneLineError(try s.run(["switch", "math"], in: "copy"), contains: "already checked out")
        #expect(try s.ok(["status", "--porcelain"], in: "copy").stdout.isEmpty, "nothing was written")
        #expect(s.sameFiles("copy", "family/base"))
        try s.ok(["switch", "-q", "--orphan", "scratch"], in: "wt")
        try s.ok(["switch", "-q", "math"], in: "copy")
        #expect(s.sameFiles("copy", "family/math"))
        try s.ok(["switch", "-q", "-"], in: "copy")
        #expect(try s.ok(["rev-parse", "--abbrev-ref", "HEAD"], in: "copy").stdout == "main\n")
        #expect(s.sameFiles("copy", "family/base"))
    }

    /// A new repository whose only branch is on a remote: `switch main`, `checkout main` and
    /// `checkout HEAD` create main tracking origin/main (the creation had made HEAD look moved, so
    /// the command failed after writing the files).
    @Test(arguments: [["switch", "main"], ["checkout", "main"], ["checkout", "HEAD"]])
    func aBranchOnlyTheRemoteHasIsCheckedOutInANewRepository(_ command: [String]) throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.ok(["init", "-q", "hub"])
        try s.ok(["commit", "-q", "--from", "../family/base", "-m", "base"], in: "hub")
        try s.ok(["init", "-q", "fresh"])
        try s.ok(["remote", "add", "origin", "../hub"], in: "fresh")
        try s.ok(["fetch", "-q", "origin"], in: "fresh")
        try s.ok(command + ["-q"], in: "fresh")
        #expect(try s.ok(["rev-parse", "--abbrev-ref", "HEAD"], in: "fresh").stdout == "main\n")
        #expect(try s.ok(["rev-parse", "main"], in: "fresh").stdout == (try s.ok(["rev-parse", "origin/main"], in: "fresh").stdout))
        #expect(try s.ok(["status"], in: "fresh").stdout.contains("up to date with 'origin/main'"))
        #expect(s.sameFiles("fresh", "family/base"))
    }

    /// Fetch and push name each ref as git does, `source -> ref`: a fetched branch lands on
    /// `origin/B`, a fetched tag is the local tag it gives (it had printed `origin/v1 -> id`).
    @Test func transferLinesNameTheSourceAndTheRef() throws {
        let s = try published()
        try s.ok(["clone", "-q", "hub", "copy"])
        try s.ok(["tag", "v1"], in: "repo")
        try s.ok(["branch", "feat"], in: "repo")
        try s.ok(["push", "-q", "origin", "feat", "--tags"], in: "repo")
        let fetched = try s.ok(["fetch"], in: "copy").stdout
        #expect(fetched.contains(" * [new branch]  feat -> origin/feat\n"), "got: \(fetched)")
        #expect(fetched.contains(" * [new tag]     v1   -> v1\n"), "got: \(fetched)")
        try s.ok(["branch", "feat2"], in: "repo")
        try s.ok(["push", "-q", "origin", "feat2"], in: "repo")
        let json = try #require(try s.json(try s.ok(["fetch", "--json"], in: "copy")) as? [String: Any])
        let change = try #require((json["refs"] as? [[String: Any]])?.first)
        #expect(change["name"] as? String == "origin/feat2" && change["source"] as? String == "feat2", "got: \(change)")
        // git's word order too: --delete is a flag.
        try s.ok(["push", "-q", "--delete", "origin", "feat"], in: "repo")
        let pruned = try s.ok(["fetch", "--prune"], in: "copy").stdout
        #expect(pruned.contains(" - [deleted]  (none) -> origin/feat (was "), "got: \(pruned)")
        try s.ok(["switch", "-q", "-c", "mine"], in: "copy")
        let pushed = try s.ok(["push", "origin", "mine"], in: "copy").stdout
        #expect(pushed.contains(" * [new branch]  mine -> mine\n"), "got: \(pushed)")
        // LOCAL:REMOTE names both (it had printed 'theirs -> theirs').
        let renamed = try s.ok(["push", "origin", "mine:theirs"], in: "copy").stdout
        #expect(renamed.contains(" * [new branch]  mine -> theirs\n"), "got: \(renamed)")
        // A fetched tag that finds the local tag there already moves only origin/TAG, and says so.
        try s.ok(["tag", "v2"], in: "copy")
        try s.ok(["tag", "v2"], in: "repo")
        try s.ok(["push", "-q", "origin", "--tags"], in: "repo")
        let kept = try s.ok(["fetch"], in: "copy").stdout
        #expect(kept.contains(" * [new tag]  v2 -> origin/v2\n"), "got: \(kept)")
        // A local tag deleted here comes back with the next fetch, and is listed (it came back silently).
        try s.ok(["tag", "-d", "v2"], in: "copy")
        let again = try #require(try s.json(try s.ok(["fetch", "--json"], in: "copy")) as? [String: Any])
        let recreated = try #require((again["refs"] as? [[String: Any]])?.first)
        #expect(recreated["source"] as? String == "v2" && recreated["created_local_tag"] as? Bool == true, "\(again)")
    }

    @Test func cloneCommitPushPullRoundTrip() throws {
        let s = try published()
        let clone = try #require(try s.json(try s.ok(["clone", "--json", "hub", "copy"])) as? [String: Any])
        #expect((clone["bytes_received"] as? Int ?? 0) > 0)
        #expect((clone["objects"] as? Int ?? 0) > 0)
        #expect(clone["branch"] as? String == "main")
        #expect(s.sameFiles("copy", "family/base"))
        #expect(try s.ok(["remote", "-v"], in: "copy").stdout.contains("origin\t\(s.path("hub"))"))

        try s.ok(["commit", "--from", "../family/math", "-m", "math"], in: "copy")
        #expect(try s.ok(["status"], in: "copy").stdout.contains("ahead of 'origin/main' by 1 commit"))
        let push = try #require(try s.json(try s.ok(["push", "--json"], in: "copy")) as? [String: Any])
        #expect((push["bytes_sent"] as? Int ?? 0) > 0)
        #expect(push["commits"] as? Int == 1)
        #expect((push["objects_skipped"] as? Int ?? 0) > 0, "objects the hub holds already are not sent")
        #expect(try s.ok(["status"], in: "copy").stdout.contains("up to date with 'origin/main'"))

        // The first repository: fetch shows it behind, pull fast-forwards it and its files.
        try s.ok(["fetch", "-q"], in: "repo")
        #expect(try s.ok(["status"], in: "repo").stdout.contains("behind 'origin/main' by 1 commit"))
        #expect(try s.ok(["log", "--oneline", "origin/main"], in: "repo").stdout.split(separator: "\n").count == 2)
        // An edit to a file the fast-forward rewrites stops it, in the pull's own words.
        let model = try #require(s.read("repo/model.safetensors"))
        try Data("edited".utf8).write(to: URL(fileURLWithPath: s.path("repo/model.safetensors")))
        expectOneLineError(try s.run(["pull"], in: "repo"), contains: "pull would overwrite uncommitted changes in model.safetensors")
        try model.write(to: URL(fileURLWithPath: s.path("repo/model.safetensors")))
        #expect(try s.ok(["pull"], in: "repo").stdout.contains("Fast-forward"))
        #expect(s.sameFiles("repo", "family/math"))
        #expect(try s.ok(["pull"], in: "repo").stdout.contains("Already up to date"))
        try s.ok(["fsck"], in: "repo")
        try s.ok(["fsck"], in: "hub")
    }

    @Test func nonFastForwardPushIsRefusedAndTheRemoteIsUnchanged() throws {
        let s = try published()
        try s.ok(["clone", "-q", "hub", "copy"])
        try s.ok(["commit", "--from", "../family/math", "-m", "math"], in: "copy")
        try s.ok(["push", "-q"], in: "copy")
        try s.ok(["commit", "--from", "../family/chat", "-m", "chat"], in: "repo")
        let hubBefore = try s.ok(["log", "--oneline", "main"], in: "hub").stdout
        let r = try s.run(["push"], in: "repo")
        expectOneLineError(r, contains: "push of 'main' refused: not a fast-forward")
        #expect(try s.ok(["log", "--oneline", "main"], in: "hub").stdout == hubBefore)
        // Pull stops at the divergence and names the merge to run.
        let pull = try s.run(["pull"], in: "repo")
        expectOneLineError(pull, contains: "mrepo merge origin/main")
        // --force wins (a compare-and-swap against what the hub holds now).
        try s.ok(["push", "-q", "--force"], in: "repo")
        #expect(try s.ok(["log", "--oneline", "-n", "1", "main"], in: "hub").stdout.contains("chat"))
    }

    /// A push the remote partly refuses lists what moved and what was refused (`! [rejected]`, and
    /// `rejected` in JSON), and fails. The refused branch is spelled like a commit id, as an older
    /// mrepo could make one (planted in the database).
    @Test func aPartlyRefusedPushListsBothAndFails() throws {
        let s = try published()
        try s.ok(["commit", "--from", "../family/math", "-m", "math"], in: "repo")
        let head = try s.ok(["rev-parse", "HEAD"], in: "repo").stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let pinned = String(head.prefix(40))
        let plant = Process()
        plant.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        plant.arguments = ["python3", "-c", "import sqlite3,sys,time; c=sqlite3.connect(sys.argv[1]); "
            + "c.execute('INSERT INTO ref(name, kind, commitID, timestamp) VALUES (?, ?, ?, ?)', (sys.argv[2], 'branch', sys.argv[3], time.time())); c.commit()",
            s.path("repo/.mrepo/mrepo.db"), pinned, head]
        try plant.run()
        plant.waitUntilExit()
        #expect(plant.terminationStatus == 0)
        let r = try s.run(["push", "--all"], in: "repo")
        #expect(r.status == 2)
        #expect(r.stdout.contains("main"), "the branch that moved is listed: \(r.stdout)")
        #expect(r.stdout.contains("! [rejected]    \(pinned)"), "\(r.stdout)")
        #expect(r.stderr.contains("must not look like a commit id"))
        #expect(try s.ok(["rev-parse", "main"], in: "hub").stdout.trimmingCharacters(in: .whitespacesAndNewlines) == head)
        try s.ok(["commit", "--allow-empty", "-q", "-m", "more"], in: "repo")
        let j = try s.run(["push", "--all", "--json"], in: "repo")
        #expect(j.status == 2)
        let doc = try s.json(j) as? [String: Any]
        #expect((doc?["refs"] as? [[String: Any]])?.map { $0["name"] as? String } == ["main"])
        #expect((doc?["rejected"] as? [[String: Any]])?.map { $0["name"] as? String } == [pinned])
    }

    /// A push or fetch that fails on a damaged object leaves no object behind on the receiving
    /// side (a failed command writes nothing): the ones it had installed before the failure went
    /// unrecorded, and fsck warned about them until a gc.
    @Test func aTransferThatFailsOnADamagedObjectLeavesNoObjectBehind() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.ok(["init", "-q", "repo"])
        try s.ok(["commit", "-q", "--from", "../family/base", "-m", "base"], in: "repo")
        func objectFiles(_ repo: String) -> Set<String> {
            Set((FileManager.default.enumerator(atPath: s.path(repo + "/.mrepo/objects"))?.allObjects as? [String] ?? [])
                .filter { $0.split(separator: "/").count == 2 && !$0.contains("incoming") })
        }
        let baseObjects = objectFiles("repo")
        try s.ok(["commit", "-q", "--from", "../family/math", "--branch", "math", "-m", "math"], in: "repo")
        // Damage the largest object only math has, in the middle of its coded bytes.
        let mathOnly = objectFiles("repo").subtracting(baseObjects)
        let size = { (name: String) in (try? FileManager.default.attributesOfItem(atPath: s.path("repo/.mrepo/objects/" + name))[.size] as? Int) ?? 0 }
        let largest = try #require(mathOnly.max { size($0) < size($1) })
        let path = s.path("repo/.mrepo/objects/" + largest)
        chmod(path, 0o644)
        var bytes = try readFile(path)
        bytes[bytes.count / 2] ^= 0x5A
        try writeFile(bytes, to: path)

        try s.ok(["init", "-q", "--bare", "hub"])
        try s.ok(["remote", "add", "hub", "../hub"], in: "repo")
        try s.ok(["push", "-q", "hub", "main"], in: "repo")
        let hubBefore = objectFiles("hub")
        let push = try s.run(["push", "hub", "math"], in: "repo")
        #expect(push.status != 0)
        #expect(objectFiles("hub") == hubBefore, "the failed push left objects behind")
        #expect(!(try s.ok(["fsck"], in: "hub").stderr.contains("warning")))

        try s.ok(["init", "-q", "copy"])
        try s.ok(["remote", "add", "origin", "../repo"], in: "copy")
        let fetch = try s.run(["fetch", "origin"], in: "copy")
        #expect(fetch.status != 0)
        #expect(objectFiles("copy").isEmpty, "the failed fetch left objects behind")
        // So does a lazy clone's 'fetch --objects' of the damaged object: no partial file is kept.
        try s.ok(["clone", "-q", "--lazy", "repo", "lazy"])
        let read = try s.run(["fetch", "--objects", "origin/math"], in: "lazy")
        #expect(read.status != 0)
        let partials = objectFiles("lazy").filter { $0.hasPrefix("partial/") }
        #expect(partials.isEmpty, "the failed read kept \(partials.count) partial files")
        #expect(!(try s.ok(["fsck"], in: "copy").stderr.contains("warning")))
    }

    @Test func pushKilledMidwayResumesWithoutResending() throws {
        let s = try published()
        try s.ok(["commit", "--from", "../family/math", "-m", "math"], in: "repo")
        let killed = try s.run(["push"], in: "repo", environment: ["MREPO_KILL_AT": "transfer.object-sent:3"])
        #expect(killed.status == -9, "the kill point was not reached: \(killed.stderr)")
        #expect(try s.ok(["log", "--oneline", "main"], in: "hub").stdout.split(separator: "\n").count == 1)
        try s.ok(["fsck"], in: "hub")
        let push = try #require(try s.json(try s.ok(["push", "--json"], in: "repo")) as? [String: Any])
        #expect((push["objects_skipped"] as? Int ?? 0) >= 3, "the objects that arrived before the kill are not sent again")
        #expect(try s.ok(["log", "--oneline", "main"], in: "hub").stdout.split(separator: "\n").count == 2)
        try s.ok(["fsck"], in: "hub")
    }

    @Test func fetchKilledMidwayResumes() throws {
        let s = try published()
        try s.ok(["clone", "-q", "hub", "copy"])
        try s.ok(["commit", "--from", "../family/math", "-m", "math"], in: "repo")
        try s.ok(["push", "-q"], in: "repo")
        let killed = try s.run(["fetch"], in: "copy", environment: ["MREPO_KILL_AT": "transfer.object-received:2"])
        #expect(killed.status == -9, "the kill point was not reached: \(killed.stderr)")
        try s.ok(["fsck"], in: "copy")
        let fetch = try #require(try s.json(try s.ok(["fetch", "--json"], in: "copy")) as? [String: Any])
        #expect(fetch["commits"] as? Int == 1)
        try s.ok(["pull", "-q"], in: "copy")
        #expect(s.sameFiles("copy", "family/math"))
    }

    /// `fetch --all` fetches every remote it can reach, as git's does: one that fails is named,
    /// the others are fetched, and the command fails at the end.
    @Test func fetchAllGoesPastAnUnreachableRemote() throws {
        let s = try published()
        try s.ok(["init", "-q", "other"])
        try s.ok(["remote", "add", "gone", s.path("no-such-folder")], in: "other")
        try s.ok(["remote", "add", "origin", s.path("hub")], in: "other")
        let r = try s.run(["fetch", "--all"], in: "other")
        #expect(r.status == 2)
        #expect(r.stderr.contains("could not fetch 'gone'"), "\(r.stderr)")
        #expect(try s.ok(["branch", "-r"], in: "other").stdout.contains("origin/main"))
        // With --json, the failed remote is in the list, with its error (it was on stderr only).
        try s.ok(["remote", "add", "more", s.path("no-such-folder-either")], in: "other")
        let json = try s.run(["fetch", "--all", "--json"], in: "other")
        #expect(json.status == 2)
        let documents = try #require(try s.json(json) as? [[String: Any]])
        #expect(documents.map { $0["remote"] as? String } == ["gone", "more", "origin"])
        #expect((documents[0]["error"] as? String)?.contains("no-such-folder") == true, "\(documents[0])")
        #expect(documents[0]["bytes_received"] as? Int == 0 && (documents[0]["refs"] as? [Any])?.isEmpty == true)
        #expect(documents[2]["error"] == nil && documents[2]["commits"] as? Int == 0)
    }

    @Test func remoteConfiguration() throws {
        let s = try published()
        try s.ok(["remote", "add", "backup", "file://\(s.path("hub"))"], in: "repo")
        #expect(try s.ok(["remote"], in: "repo").stdout == "backup\norigin\n")
        try s.ok(["fetch", "-q", "backup"], in: "repo")
        try s.ok(["log", "-n", "1", "backup/main"], in: "repo")
        try s.ok(["remote", "rename", "backup", "mirror"], in: "repo")
        try s.ok(["log", "-n", "1", "mirror/main"], in: "repo")
        try s.ok(["remote", "set-url", "mirror", "../hub"], in: "repo")
        #expect(try s.ok(["remote", "-v"], in: "repo").stdout.contains("mirror\t\(s.path("hub")) (fetch)"))
        try s.ok(["remote", "remove", "mirror"], in: "repo")
        expectOneLineError(try s.run(["log", "mirror/main"], in: "repo"), contains: "unknown revision")
        // A malformed URL is a usage error (64), found with the command line, before anything is written.
        expectOneLineError(try s.run(["remote", "add", "bad", "ftp://x/y"], in: "repo"), status: 64, contains: "unknown remote scheme")
        // An http URL that no `mrepo serve` could answer is refused when added, not at the first transfer.
        for url in ["http://127.0.0.1:9/onlyone", "http://127.0.0.1:9/a/b/c", "https://h/a/b?x=1"] {
            expectOneLineError(try s.run(["remote", "add", "bad", url], in: "repo"), status: 64, contains: "HOST:PORT/NAMESPACE/NAME")
        }
        expectOneLineError(try s.run(["remote", "set-url", "origin", "s3://bucket"], in: "repo"), status: 64, contains: "s3://BUCKET/NAME")
        // A port past 65535 crashed the HTTP client (SIGILL and a stack trace), for clone, fetch,
        // ls-remote and an S3 endpoint alike; credentials in the URL were ignored without a word.
        expectOneLineError(try s.run(["remote", "add", "bad", "http://127.0.0.1:99999/a/b"], in: "repo"), status: 64, contains: "the port must be from 1 to 65535")
        expectOneLineError(try s.run(["ls-remote", "http://127.0.0.1:65536/a/b"], in: "repo"), contains: "the port must be from 1 to 65535")
        expectOneLineError(try s.run(["ls-remote", "s3://bkt/x"], in: "repo",
                                     environment: ["AWS_ENDPOINT_URL": "http://127.0.0.1:99999", "AWS_ACCESS_KEY_ID": "K", "AWS_SECRET_ACCESS_KEY": "S"]),
                           contains: "the port must be from 1 to 65535 (AWS_ENDPOINT_URL)")
        expectOneLineError(try s.run(["remote", "add", "bad", "http://u:p@127.0.0.1:9/a/b"], in: "repo"), status: 64, contains: "credentials in the URL are not used")
        // Schemes are case-insensitive.
        try s.ok(["remote", "add", "upper", "HTTP://127.0.0.1:9/a/b"], in: "repo")
        try s.ok(["remote", "remove", "upper"], in: "repo")
        // The usage error points at the subcommand's own help.
        expectOneLineError(try s.run(["remote", "set-url", "origin", "s3://bucket"], in: "repo"), status: 64,
                           contains: "(see 'mrepo remote set-url --help')")
        expectOneLineError(try s.run(["clone", "http://127.0.0.1:9/onlyone", "y"]), status: 64, contains: "HOST:PORT/NAMESPACE/NAME")
        #expect(!FileManager.default.fileExists(atPath: s.path("y")))
        #expect(try s.ok(["remote", "-v"], in: "repo").stdout.contains("origin\t\(s.path("hub")) (fetch)"))
        #expect(try s.ok(["remote"], in: "repo").stdout == "origin\n")
        expectOneLineError(try s.run(["fetch", "nowhere"], in: "repo"), contains: "no remote named 'nowhere'")
        // A URL or folder in place of a remote name is told how to add it, as git users type it.
        for args in [["fetch", s.path("hub")], ["push", s.path("hub"), "main"], ["pull", "http://127.0.0.1:9/ns/name", "main"]] {
            expectOneLineError(try s.run(args, in: "repo"), contains: "is not a remote name: add it first ('mrepo remote add NAME \(args[1])')")
        }
        expectOneLineError(try s.run(["clone", "no-such-folder", "x"]), contains: "not an mrepo repository")
        #expect(!FileManager.default.fileExists(atPath: s.path("x")))
    }

    @Test func lazyCloneFetchesObjectsOnFirstRead() throws {
        let s = try published()
        try s.ok(["commit", "--from", "../family/math", "-m", "math"], in: "repo")
        try s.ok(["commit", "--from", "../family/chat", "-m", "chat"], in: "repo")
        try s.ok(["push", "-q"], in: "repo")
        let clone = try #require(try s.json(try s.ok(["clone", "--lazy", "--json", "hub", "lazy"])) as? [String: Any])
        #expect(clone["lazy"] as? Bool == true)
        // What the checkout read counts as received: every object file the clone holds came with
        // it (only the commits' file blobs were counted, a fraction of what came).
        let held = s.files(under: "lazy/.mrepo/objects").filter { !$0.contains("tmp") }
        let heldBytes = held.reduce(0) { $0 + (s.read("lazy/.mrepo/objects/" + $1)?.count ?? 0) }
        #expect(clone["objects"] as? Int == held.count, "\(clone), \(held.count) object files")
        #expect((clone["bytes_received"] as? Int ?? 0) >= heldBytes, "\(clone), \(heldBytes) bytes held")
        #expect(try s.ok(["fsck"], in: "lazy").stdout.contains("not fetched yet"))
        try s.ok(["export", "main~1", "../math-out"], in: "lazy")
        #expect(s.sameFiles("math-out", "family/math"))
        let fill = try #require(try s.json(try s.ok(["fetch", "--objects", "main~2", "--json"], in: "lazy")) as? [String: Any])
        #expect(fill["objects"] as? Int ?? -1 >= 0)
        try s.ok(["switch", "-q", "-c", "old", "main~2"], in: "lazy")
        #expect(s.sameFiles("lazy", "family/base"))
    }

    /// `fetch --lazy` into a full clone makes its remote lazy, so the files it left out are fetched
    /// on first use; the only lazy remote is not removed while files are missing (unless --force),
    /// and a remote added again and fetched with --lazy reads them once more.
    @Test func lazyFetchMakesTheRemoteLazyAndRemovingItIsGuarded() throws {
        let s = try published()
        try s.ok(["clone", "-q", "hub", "full"])
        try s.ok(["commit", "--from", "../family/math", "-m", "math"], in: "repo")
        try s.ok(["push", "-q"], in: "repo")
        try s.ok(["fetch", "-q", "--lazy"], in: "full")
        #expect(try s.ok(["remote", "-v"], in: "full").stdout.contains("(fetch) (lazy)"))
        #expect(try s.ok(["fsck"], in: "full").stdout.contains("not fetched yet"))
        expectOneLineError(try s.run(["remote", "remove", "origin"], in: "full"), contains: "missing object file")
        try s.ok(["export", "origin/main", "../math-out"], in: "full")
        #expect(s.sameFiles("math-out", "family/math"))
        try s.ok(["remote", "remove", "origin"], in: "full")  // nothing missing any more
        // A lazy fetch that leaves nothing out (and finds nothing missing) does not make a remote lazy.
        try s.ok(["remote", "add", "origin", "../hub"], in: "full")
        try s.ok(["fetch", "-q", "--lazy"], in: "full")
        #expect(!(try s.ok(["remote", "-v"], in: "full").stdout.contains("(lazy)")))

        // A lazy clone reads its checked-out branch at once; chat's files stay on the remote.
        try s.ok(["switch", "-q", "-c", "chat"], in: "repo")
        try s.ok(["commit", "--from", "../family/chat", "-m", "chat"], in: "repo")
        try s.ok(["push", "-q", "origin", "chat"], in: "repo")
        try s.ok(["clone", "-q", "--lazy", "hub", "lazy"])
        let chat = try s.ok(["rev-parse", "origin/chat"], in: "lazy").stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        expectOneLineError(try s.run(["remote", "remove", "origin"], in: "lazy"), contains: "mrepo remote remove --force origin")
        #expect(try s.ok(["remote"], in: "lazy").stdout == "origin\n", "nothing removed")
        try s.ok(["remote", "remove", "--force", "origin"], in: "lazy")
        expectOneLineError(try s.run(["export", chat, "../lost"], in: "lazy"), contains: "missing object file")
        try s.ok(["remote", "add", "origin", "../hub"], in: "lazy")
        try s.ok(["fetch", "-q", "--lazy"], in: "lazy")
        try s.ok(["export", chat, "../chat-out"], in: "lazy")
        #expect(s.sameFiles("chat-out", "family/chat"))
    }

    /// A push to the branch checked out in a repository with a working tree (unborn there too) is
    /// refused before anything is sent: no object or commit arrives; another branch is accepted.
    @Test func aPushToACheckedOutBranchSendsNothing() throws {
        let s = try published()
        try s.ok(["init", "-q", "work"])
        try s.ok(["remote", "add", "work", "../work"], in: "repo")
        func storedFiles() -> [String] {
            (FileManager.default.enumerator(atPath: s.path("work/.mrepo/objects"))?.allObjects as? [String] ?? []).sorted()
        }
        let before = storedFiles()
        let refused = try s.run(["push", "work", "main"], in: "repo")
        expectOneLineError(refused, contains: "'main' is the checked-out branch of that repository")
        #expect(refused.stderr.contains("nothing was sent"))
        #expect(storedFiles() == before, "no object was sent")
        #expect(try s.ok(["fsck"], in: "work").stdout.contains("0 commits"), "no commit was recorded")
        try s.ok(["push", "-q", "work", "main:incoming"], in: "repo")
        #expect(try s.ok(["rev-parse", "incoming"], in: "work").stdout == (try s.ok(["rev-parse", "main"], in: "repo").stdout))
    }

    /// Push sources as git takes them: `HEAD` is the current branch (`push -u origin HEAD` records
    /// its upstream), and with a destination any revision (a commit id, a remote-tracking branch,
    /// `main~1`) goes to a branch, or to a tag with `refs/tags/`; without one such a source is
    /// refused, naming the form to use.
    @Test func pushTakesHEADAndAnyRevisionWithADestination() throws {
        let s = try published()
        try s.ok(["switch", "-q", "-c", "feature"], in: "repo")
        try s.ok(["commit", "--from", "../family/math", "-m", "math"], in: "repo")
        try s.ok(["push", "-q", "-u", "origin", "HEAD"], in: "repo")
        func hub(_ rev: String) throws -> String { try s.ok(["rev-parse", rev], in: "hub").stdout }
        func here(_ rev: String) throws -> String { try s.ok(["rev-parse", rev], in: "repo").stdout }
        #expect(try hub("feature") == (try here("feature")))
        #expect(try s.ok(["status"], in: "repo").stdout.contains("up to date with 'origin/feature'"))
        try s.ok(["push", "-q", "origin", "HEAD~1:older"], in: "repo")
        #expect(try hub("older") == (try here("main")))
        try s.ok(["push", "-q", "origin", "origin/feature:copy"], in: "repo")
        #expect(try hub("copy") == (try here("feature")))
        let id = try here("main").trimmingCharacters(in: .whitespacesAndNewlines)
        try s.ok(["push", "-q", "origin", "\(id):refs/tags/v-base"], in: "repo")
        #expect(try s.ok(["tag"], in: "hub").stdout.contains("v-base"))
        // Moving `copy` back is not a fast-forward: refused unless forced, from a commit id too.
        expectOneLineError(try s.run(["push", "origin", "\(id):copy"], in: "repo"), contains: "not a fast-forward")
        try s.ok(["push", "-q", "--force", "origin", "\(id):copy"], in: "repo")
        #expect(try hub("copy") == (try here("main")))
        expectOneLineError(try s.run(["push", "origin", "HEAD~1"], in: "repo"), contains: "'mrepo push origin HEAD~1:NAME'")
        expectOneLineError(try s.run(["push", "origin", "no-such-rev:x"], in: "repo"), contains: "no-such-rev")
        // A remote ref named like a commit id is not made: it would stand for another commit
        // there, and in every clone (`switch <id>` would make a branch of it).
        let featureID = try here("feature").trimmingCharacters(in: .whitespacesAndNewlines)
        expectOneLineError(try s.run(["push", "origin", "\(id):\(featureID)"], in: "repo"), contains: "must not look like a commit id")
        expectOneLineError(try s.run(["push", "origin", "HEAD:refs/tags/\(id)"], in: "repo"), contains: "must not look like a commit id")
        #expect(!(try s.ok(["branch"], in: "hub").stdout.contains(featureID)))
    }

    /// `log` names remote-tracking branches beside local ones (HEAD's branch first, tags last), and
    /// `log --all` starts from them too, as git's does: a fetched commit no local branch has is listed.
    @Test func logShowsAndWalksRemoteTrackingBranches() throws {
        let s = try published()
        try s.ok(["clone", "-q", "hub", "copy"])
        try s.ok(["tag", "v1"], in: "copy")
        #expect(try s.ok(["log", "--oneline", "-n", "1"], in: "copy").stdout.contains("(HEAD -> main, origin/main, tag: v1) base"))
        try s.ok(["commit", "--from", "../family/math", "-m", "math"], in: "repo")
        try s.ok(["push", "-q"], in: "repo")
        try s.ok(["fetch", "-q"], in: "copy")
        let all = try s.ok(["log", "--all", "--oneline"], in: "copy").stdout
        #expect(all.contains("(origin/main) math"), "\(all)")
        #expect(!(try s.ok(["log", "--oneline"], in: "copy").stdout.contains("math")), "HEAD alone does not reach it")
    }

    /// A remote branch moved back shows as a forced update in the push and in the next fetch (not
    /// as a fast-forward); a forced push that is a fast-forward does not; a tag moved on the remote
    /// leaves the local tag where it is, with a warning naming the way to take theirs.
    @Test func forcedUpdatesAndMovedTagsAreShown() throws {
        let s = try published()
        try s.ok(["commit", "--from", "../family/math", "-m", "math"], in: "repo")
        #expect(!(try s.ok(["push", "--force"], in: "repo").stdout.contains("forced")), "a fast-forward, though forced")
        try s.ok(["tag", "v1"], in: "repo")
        try s.ok(["push", "-q", "--tags"], in: "repo")
        try s.ok(["clone", "-q", "hub", "copy"])
        let back = try s.ok(["push", "--force", "origin", "main~1:main"], in: "repo").stdout
        #expect(back.contains("...") && back.contains("main (forced update)"), "\(back)")
        try s.ok(["tag", "-f", "v1", "main~1"], in: "repo")
        // A tag does not move without --force, and the refusal says so (not "not a fast-forward").
        expectOneLineError(try s.run(["push", "origin", "v1"], in: "repo"), contains: "tag 'v1' already exists there")
        try s.ok(["push", "-q", "--force", "origin", "v1"], in: "repo")
        let before = try s.ok(["rev-parse", "origin/main"], in: "copy").stdout
        let fetch = try s.ok(["fetch"], in: "copy")
        #expect(fetch.stdout.contains("origin/main (forced update)"), "\(fetch.stdout)")
        // Where the remote-tracking branch was before that fetch, as git's origin/main@{1}.
        #expect(try s.ok(["rev-parse", "origin/main@{1}"], in: "copy").stdout == before)
        #expect(try s.ok(["rev-parse", "origin/main@{0}"], in: "copy").stdout == (try s.ok(["rev-parse", "origin/main"], in: "copy").stdout))
        #expect(fetch.stderr.contains("tag 'v1' names"), "\(fetch.stderr)")
        #expect(fetch.stderr.contains("'mrepo tag -f v1 origin/v1' takes theirs"))
        #expect(try s.ok(["rev-parse", "v1"], in: "copy").stdout == (try s.ok(["rev-parse", "main"], in: "copy").stdout), "kept")
        try s.ok(["tag", "-f", "v1", "origin/v1"], in: "copy")
        #expect(try s.ok(["rev-parse", "v1"], in: "copy").stdout == (try s.ok(["rev-parse", "origin/main"], in: "copy").stdout))
        #expect(!(try s.ok(["fetch"], in: "copy").stderr.contains("tag 'v1'")))

        // A shallow fetch cannot see below its boundary: a fast-forward there is not called forced.
        try s.ok(["clone", "-q", "--depth", "1", "hub", "thin"])  // main at base
        try s.ok(["commit", "--from", "../family/chat", "-m", "chat"], in: "repo")  // math, then chat, on base
        try s.ok(["push", "-q"], in: "repo")
        let thin = try s.ok(["fetch", "--depth", "1"], in: "thin").stdout
        #expect(thin.contains("origin/main") && !thin.contains("forced"), "\(thin)")
    }

    /// `clone --branch TAG` checks out the tag's commit with HEAD detached, as git does; a name that
    /// is neither a branch nor a tag there is refused and leaves no folder.
    @Test func cloneOfATagDetachesHEAD() throws {
        let s = try published()
        try s.ok(["tag", "v1"], in: "repo")
        try s.ok(["commit", "--from", "../family/math", "-m", "math"], in: "repo")
        try s.ok(["push", "-q"], in: "repo")
        try s.ok(["push", "-q", "--tags"], in: "repo")
        let clone = try #require(try s.json(try s.ok(["clone", "--json", "--branch", "v1", "hub", "at-v1"])) as? [String: Any])
        #expect(clone["branch"] is NSNull)
        let v1 = try s.ok(["rev-parse", "v1"], in: "repo").stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(clone["head"] as? String == v1)
        #expect(s.sameFiles("at-v1", "family/base"))
        #expect(try s.ok(["status"], in: "at-v1").stdout.contains("HEAD detached at"))
        #expect(try s.ok(["rev-parse", "origin/main"], in: "at-v1").stdout == (try s.ok(["rev-parse", "main"], in: "repo").stdout))
        expectOneLineError(try s.run(["clone", "--branch", "nope", "hub", "none"]), contains: "remote branch or tag 'nope' not found")
        #expect(!FileManager.default.fileExists(atPath: s.path("none")))
        // A shallow clone of a tag below its depth fetches the tag's commit all the same.
        try s.ok(["clone", "-q", "--depth", "1", "--branch", "v1", "hub", "shallow-v1"])
        #expect(s.sameFiles("shallow-v1", "family/base"))
        #expect(try s.ok(["rev-parse", "HEAD"], in: "shallow-v1").stdout.trimmingCharacters(in: .whitespacesAndNewlines) == v1)
    }

    /// A pid that no process has now: a child that ran and was reaped.
    func deadPID() throws -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/true")
        try p.run()
        p.waitUntilExit()
        return p.processIdentifier
    }

    @Test func cloneRemovesStagingFoldersOfDeadClonesInItsParent() throws {
        let s = try published()
        let dead = try deadPID()
        // What killed clones leave: one into the same destination, one into another, each with files.
        let stale = [".copy.mrepo-clone-\(dead)", ".elsewhere.mrepo-clone-\(dead)"]
        for name in stale {
            try FileManager.default.createDirectory(atPath: s.path(name + "/.mrepo/objects"), withIntermediateDirectories: true)
            try Data("partial".utf8).write(to: URL(fileURLWithPath: s.path(name + "/.mrepo/objects/partial")))
        }
        // Kept: a clone that is still running (this test process stands in for it), and a plain
        // file that only looks like a staging folder.
        let live = ".other.mrepo-clone-\(getpid())"
        try FileManager.default.createDirectory(atPath: s.path(live), withIntermediateDirectories: true)
        let file = ".note.mrepo-clone-\(dead)"
        try Data("not a folder".utf8).write(to: URL(fileURLWithPath: s.path(file)))

        try s.ok(["clone", "-q", "hub", "copy"])
        let left = try FileManager.default.contentsOfDirectory(atPath: s.root).filter { $0.contains(".mrepo-clone-") }.sorted()
        #expect(left == [live, file].sorted())
        try s.ok(["fsck"], in: "copy")

        // A clone that fails (no repository at the URL) also clears what dead clones left.
        try FileManager.default.createDirectory(atPath: s.path(stale[1]), withIntermediateDirectories: true)
        expectOneLineError(try s.run(["clone", "no-such-hub", "again"]), contains: "no-such-hub")
        #expect(!FileManager.default.fileExists(atPath: s.path(stale[1])))
        #expect(FileManager.default.fileExists(atPath: s.path(live)))
    }
}
