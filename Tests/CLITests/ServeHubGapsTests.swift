import Foundation
import Testing

/// The Hub API as the Hub answers: tree listings of a file path and of an empty repository, and
/// commits through the API held to what `mrepo commit` applies (hooks, shard-index checks), with the
/// real huggingface_hub client.
@Suite("mrepo serve: Hub API tree answers, hooks and checks on API commits")
struct ServeHubGapsTests {
    @Test("a file path is no tree (EntryNotFound, HfFileSystem.ls still finds the file); an empty repository lists []; a refusing pre-commit hook and a broken shard index refuse an upload and change nothing")
    func hubGaps() throws {
        let python = hubPython()
        try #require(FileManager.default.isExecutableFile(atPath: python), "no Python with huggingface_hub at \(python): run scripts/setup.sh")
        let s = try CLISandbox()
        try s.makeFamily()
        let repo = "served/ns/gaps"
        try FileManager.default.createDirectory(atPath: s.path("served/ns"), withIntermediateDirectories: true)
        try s.ok(["init", "--bare", repo])
        try s.ok(["init", "seed"])
        try s.ok(["commit", "--from", s.path("family/base"), "-m", "base"], in: "seed")
        try s.ok(["remote", "add", "origin", s.path(repo)], in: "seed")
        try s.ok(["push", "-q", "origin", "main"], in: "seed")
        let hooks = s.path(repo + "/.mrepo/hooks")
        try """
            #!/bin/sh
            echo "pre via=$MREPO_VIA branch=$MREPO_BRANCH message=$MREPO_MESSAGE files=$(cd "$MREPO_SOURCE" && find . -type f | sort | tr '\\n' ' ')" >> "$MREPO_DIR/hook.log"
            if [ -e "$MREPO_SOURCE/refuse.txt" ]; then echo "refused by policy" >&2; exit 1; fi
            exit 0

            """.write(toFile: hooks + "/pre-commit", atomically: true, encoding: .utf8)
        try "#!/bin/sh\necho \"post commit=$MREPO_COMMIT\" >> \"$MREPO_DIR/hook.log\"\n".write(toFile: hooks + "/post-commit", atomically: true, encoding: .utf8)
        chmod(hooks + "/pre-commit", 0o755)
        chmod(hooks + "/post-commit", 0o755)
        for (dir, files) in [("bad", ["refuse.txt": "no", "a.txt": "a"]), ("good", ["note.txt": "hello"]),
                             ("badindex", ["model.safetensors.index.json": #"{"metadata":{},"weight_map":{"w":"model-00001-of-00002.safetensors"}}"#]),
                             // A weight map naming a tensor the (unchanged) shard does not hold, as commit refuses it.
                             ("ghostindex", ["model.safetensors.index.json": #"{"metadata":{},"weight_map":{"ghost.weight":"model.safetensors"}}"#])] {
            try FileManager.default.createDirectory(atPath: s.path("up/" + dir), withIntermediateDirectories: true)
            for (name, text) in files { try text.write(toFile: s.path("up/\(dir)/\(name)"), atomically: true, encoding: .utf8) }
        }
        let configPath = try #require(s.files(under: "family/base").first { $0.hasSuffix("config.json") })
        try "writer-0123456789 write\n".write(toFile: s.path("tokens"), atomically: true, encoding: .utf8)
        let before = try s.ok(["log", "--oneline", "main"], in: repo).stdout

        let server = try ServerProcess(s, ["served", "--tokens", "tokens"])
        let (status, out) = try runProgram(python, ["-c", """
            import json, os, sys
            ep, work, config = sys.argv[1], sys.argv[2], sys.argv[3]
            os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
            from huggingface_hub import HfApi, HfFileSystem
            from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError
            api = HfApi(endpoint=ep, token="writer-0123456789")
            out = {}
            try:
                list(api.list_repo_tree("ns/gaps", path_in_repo=config)); out["file_tree"] = "listed"
            except EntryNotFoundError as e:
                out["file_tree"] = "EntryNotFound: " + str(e).splitlines()[-1]
            fs = HfFileSystem(endpoint=ep, token="writer-0123456789")
            out["ls_file"] = [e["name"] for e in fs.ls("ns/gaps/" + config)]
            api.create_repo("ns/empty")
            out["empty_tree"] = [e.path for e in api.list_repo_tree("ns/empty")]
            try:
                list(api.list_repo_tree("ns/empty", path_in_repo="sub")); out["empty_sub"] = "listed"
            except EntryNotFoundError:
                out["empty_sub"] = "EntryNotFound"
            def upload(folder, message):
                try:
                    return "ok " + api.upload_folder(repo_id="ns/gaps", folder_path=work + "/" + folder, commit_message=message).oid
                except HfHubHTTPError as e:
                    return "%d %s" % (e.response.status_code, str(e).replace("\\n", " "))
            out["refused"] = upload("bad", "refused")
            out["badindex"] = upload("badindex", "broken index")
            out["ghostindex"] = upload("ghostindex", "ghost index")
            out["accepted"] = upload("good", "accepted")
            print(json.dumps(out))
            """, server.url, s.path("up"), configPath], environment: ["HF_HUB_DISABLE_XET": "1", "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"])
        #expect(server.stop() == 0)
        try #require(status == 0, "the huggingface_hub script failed (see the output above)")
        let result = try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])
        // Tree listings, as the Hub answers them.
        let fileTree = result["file_tree"] as? String ?? ""
        #expect(fileTree.hasPrefix("EntryNotFound") && fileTree.contains("does not exist on \"main\""), "\(fileTree)")
        #expect(result["ls_file"] as? [String] == ["ns/gaps/" + configPath])
        #expect(result["empty_tree"] as? [String] == [])
        #expect(result["empty_sub"] as? String == "EntryNotFound")
        // A refusing pre-commit hook: a clear client error, and nothing changed.
        let refused = result["refused"] as? String ?? ""
        #expect(refused.hasPrefix("422") && refused.contains("pre-commit hook rejected"), "\(refused)")
        let badIndex = result["badindex"] as? String ?? ""
        #expect(badIndex.hasPrefix("400") && badIndex.contains("not in the folder"), "\(badIndex)")
        let ghostIndex = result["ghostindex"] as? String ?? ""
        #expect(ghostIndex.hasPrefix("400") && ghostIndex.contains("weight_map lists tensor 'ghost.weight' in shard 'model.safetensors'"), "\(ghostIndex)")
        // The accepted upload is a commit; the hooks saw it as they see `mrepo commit`.
        let accepted = result["accepted"] as? String ?? ""
        #expect(accepted.hasPrefix("ok "), "\(accepted)")
        let log = try s.ok(["log", "--oneline", "main"], in: repo).stdout
        #expect(log.split(separator: "\n").count == before.split(separator: "\n").count + 1)
        #expect(log.split(separator: "\n").first?.contains("accepted") == true)
        let hookLog = try String(contentsOfFile: s.path(repo + "/.mrepo/hook.log"), encoding: .utf8)
        #expect(hookLog.contains("pre via=hub branch=main message=refused files=./a.txt ./refuse.txt"), "\(hookLog)")
        #expect(hookLog.contains("pre via=hub branch=main message=accepted files=./note.txt"), "\(hookLog)")
        #expect(!hookLog.contains("broken index") && !hookLog.contains("ghost index"), "the index is checked before the hook runs")
        let head = try s.ok(["rev-parse", "main"], in: repo).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(hookLog.contains("post commit=\(head)"), "\(hookLog)")
        try s.ok(["fsck"], in: repo)
    }

    @Test("delete_branch and delete_tag work; create_pr, a branch named like a commit id and a path inside a nested .mrepo are refused and change nothing")
    func refsAndRefusedWrites() throws {
        let python = hubPython()
        try #require(FileManager.default.isExecutableFile(atPath: python), "no Python with huggingface_hub at \(python): run scripts/setup.sh")
        let s = try CLISandbox()
        let repo = "served/ns/refs"
        try FileManager.default.createDirectory(atPath: s.path("served/ns"), withIntermediateDirectories: true)
        try s.ok(["init", "-q", repo])
        try "hello\n".write(toFile: s.path(repo + "/note.txt"), atomically: true, encoding: .utf8)
        try s.writeModel(repo, [("w", [2, 3], [1, 2, 3, 4, 5, 6]), ("b", [2], [1, 2])], dtype: .bf16)
        try s.ok(["commit", "-q", "-m", "first"], in: repo)
        try s.ok(["branch", "-q", "exp"], in: repo)
        try s.ok(["worktree", "add", "-q", s.path("wt"), "exp"], in: repo)
        try FileManager.default.createDirectory(atPath: s.path("up/x"), withIntermediateDirectories: true)
        try "planted\n".write(toFile: s.path("up/x/config"), atomically: true, encoding: .utf8)
        let head = try s.ok(["rev-parse", "main"], in: repo).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        try "writer-0123456789 write\n".write(toFile: s.path("tokens"), atomically: true, encoding: .utf8)

        let server = try ServerProcess(s, ["served", "--tokens", "tokens"])
        let (status, out) = try runProgram(python, ["-c", """
            import json, os, sys
            ep, work, head = sys.argv[1], sys.argv[2], sys.argv[3]
            os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
            from huggingface_hub import HfApi
            from huggingface_hub.errors import HfHubHTTPError
            api = HfApi(endpoint=ep, token="writer-0123456789")
            out = {}
            def attempt(name, call):
                try:
                    call(); out[name] = "ok"
                except HfHubHTTPError as e:
                    out[name] = "%d %s" % (e.response.status_code, str(e).replace("\\n", " "))
            api.create_branch("ns/refs", branch="gone", revision="main")
            api.create_tag("ns/refs", tag="t1", revision="main")
            attempt("delete_branch", lambda: api.delete_branch("ns/refs", branch="gone"))
            attempt("delete_tag", lambda: api.delete_tag("ns/refs", tag="t1"))
            attempt("delete_missing", lambda: api.delete_branch("ns/refs", branch="never"))
            attempt("delete_checked_out", lambda: api.delete_branch("ns/refs", branch="main"))
            attempt("delete_linked", lambda: api.delete_branch("ns/refs", branch="exp"))
            info = api.model_info("ns/refs")
            out["safetensors"] = {"parameters": info.safetensors.parameters, "total": info.safetensors.total}
            refs = api.list_repo_refs("ns/refs")
            out["branches"] = sorted(b.name for b in refs.branches)
            out["tags"] = sorted(t.name for t in refs.tags)
            attempt("id_branch", lambda: api.create_branch("ns/refs", branch=head[:40], revision="exp"))
            attempt("create_pr", lambda: api.upload_file(path_or_fileobj=b"zz", path_in_repo="z.txt", repo_id="ns/refs",
                                                          revision="exp", create_pr=True))
            attempt("nested", lambda: api.upload_folder(folder_path=work + "/x", path_in_repo="evil/.mrepo", repo_id="ns/refs", revision="exp"))
            attempt("private", lambda: api.create_repo("ns/secret", private=True))
            print(json.dumps(out))
            """, server.url, s.path("up"), head], environment: ["HF_HUB_DISABLE_XET": "1", "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"])
        #expect(server.stop() == 0)
        try #require(status == 0, "the huggingface_hub script failed (see the output above)")
        let result = try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])
        // model_info's safetensors summary: parameters by dtype.
        let summary = result["safetensors"] as? [String: Any]
        #expect(summary?["parameters"] as? [String: Int] == ["BF16": 8] && summary?["total"] as? Int == 8, "\(result["safetensors"] ?? "")")
        #expect(result["delete_branch"] as? String == "ok")
        #expect(result["delete_tag"] as? String == "ok")
        #expect((result["delete_missing"] as? String)?.hasPrefix("404") == true, "\(result["delete_missing"] ?? "")")
        // Refused, with the reason and without the server's folders (the linked working tree's
        // path was in the message).
        let checkedOut = result["delete_checked_out"] as? String ?? ""
        #expect(checkedOut.hasPrefix("409") && checkedOut.contains("it is the current branch"), "\(checkedOut)")
        let linked = result["delete_linked"] as? String ?? ""
        #expect(linked.hasPrefix("409") && linked.contains("checked out in a working tree of the repository on the server")
                && !linked.contains(s.path("wt")), "\(linked)")
        #expect(result["branches"] as? [String] == ["exp", "main"])
        #expect(result["tags"] as? [String] == [])
        for (key, expected) in [("id_branch", "must not look like a commit id"), ("create_pr", "pull requests are not supported"),
                                ("nested", "'.mrepo' is reserved"), ("private", "private repositories are not supported")] {
            let text = result[key] as? String ?? ""
            #expect(text.hasPrefix("4") && text.contains(expected), "\(key): \(text)")
        }
        // Nothing landed on exp, and no branch was made.
        #expect(try s.ok(["rev-parse", "exp"], in: repo).stdout.trimmingCharacters(in: .whitespacesAndNewlines) == head)
        #expect(try s.ok(["branch"], in: repo).stdout.split(separator: "\n").count == 2)
        #expect(!FileManager.default.fileExists(atPath: s.path("served/ns/secret")))
        try s.ok(["fsck"], in: repo)
    }

    /// A port another server holds is named in one line (it printed NIO's "bind(descriptor:ptr:bytes:):
    /// Address already in use) (errno: 98)").
    @Test("a busy port is said to be busy, in one line")
    func aBusyPortIsNamed() throws {
        let s = try CLISandbox()
        try FileManager.default.createDirectory(atPath: s.path("served"), withIntermediateDirectories: true)
        let server = try ServerProcess(s, ["served"])
        let port = try #require(URL(string: server.url)?.port)
        expectOneLineError(try s.run(["serve", "served", "--port", "\(port)"]),
                           contains: "cannot listen on 127.0.0.1:\(port): Address already in use (another server holds the port; choose another with --port)")
        #expect(server.stop() == 0)
    }
}
