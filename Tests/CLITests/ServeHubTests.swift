import Foundation
import Testing

/// A running `mrepo serve` on 127.0.0.1 with a port the kernel picked, stopped with SIGTERM.
final class ServerProcess {
    let process = Process()
    /// `http://127.0.0.1:PORT`, as the server printed it.
    let url: String
    private let output = Pipe()

    init(_ sandbox: CLISandbox, _ args: [String]) throws {
        process.executableURL = URL(fileURLWithPath: CLISandbox.binary)
        process.arguments = ["serve", "--port", "0"] + args
        process.currentDirectoryURL = URL(fileURLWithPath: sandbox.root)
        var env = ProcessInfo.processInfo.environment
        for (k, v) in sandbox.environment { env[k] = v }
        process.environment = env
        process.standardOutput = output
        process.standardError = FileHandle.standardError
        process.standardInput = FileHandle.nullDevice
        try process.run()
        url = try ServerProcess.announcedURL(process, output, what: "mrepo serve")
    }

    /// The `http://127.0.0.1:PORT` a server prints on its first line; end of file means it did not
    /// start (it is then stopped, and the error says what it printed).
    static func announcedURL(_ process: Process, _ output: Pipe, what: String) throws -> String {
        var line = Data()
        while !line.contains(0x0A) {
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            line.append(chunk)
        }
        let text = String(decoding: line, as: UTF8.self)
        guard let range = text.range(of: "http://127.0.0.1:[0-9]+", options: .regularExpression) else {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            throw CLIError("\(what) did not start: \(text)")
        }
        return String(text[range])
    }

    /// SIGTERM (or another signal), then the exit status.
    func stop(_ signal: Int32 = SIGTERM) -> Int32 {
        if process.isRunning { kill(process.processIdentifier, signal) }
        process.waitUntilExit()
        return process.terminationStatus
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
}

struct CLIError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// The Python of the venv `scripts/setup.sh` makes (with huggingface_hub), or `MREPO_HF_PYTHON`.
func hubPython() -> String {
    ProcessInfo.processInfo.environment["MREPO_HF_PYTHON"] ?? (NSHomeDirectory() + "/.cache/mrepo-venv/bin/python")
}

/// Runs a program, returning its status and standard output (standard error passes through).
func runProgram(_ path: String, _ args: [String], environment: [String: String] = [:]) throws -> (Int32, String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = args
    var env = ProcessInfo.processInfo.environment
    for (k, v) in environment { env[k] = v }
    p.environment = env
    let out = FileManager.default.temporaryDirectory.path + "/mrepo-hub-out-\(UUID().uuidString)"
    _ = FileManager.default.createFile(atPath: out, contents: nil)
    defer { try? FileManager.default.removeItem(atPath: out) }
    let handle = FileHandle(forWritingAtPath: out)!
    p.standardOutput = handle
    p.standardError = FileHandle.standardError
    p.standardInput = FileHandle.nullDevice
    try p.run()
    p.waitUntilExit()
    try handle.close()
    return (p.terminationStatus, String(decoding: FileManager.default.contents(atPath: out) ?? Data(), as: UTF8.self))
}

@Suite("mrepo serve with the real huggingface_hub client")
struct ServeHubTests {
    @Test("downloads (branch, tag, commit, ranges, resume) equal mrepo export; create_branch, create_tag and upload_folder commit; bad and read tokens change nothing")
    func huggingFaceClientRoundTrip() throws {
        let python = hubPython()
        try #require(FileManager.default.isExecutableFile(atPath: python),
                     "no Python with huggingface_hub at \(python): run scripts/setup.sh (or set MREPO_HF_PYTHON)")
        let s = try CLISandbox()
        try s.makeFamily()
        let repo = "served/team/minilm"
        try FileManager.default.createDirectory(atPath: s.path("served/team"), withIntermediateDirectories: true)
        try s.ok(["init", repo])
        try s.ok(["commit", "--from", s.path("family/base"), "-m", "base"], in: repo)
        try s.ok(["tag", "v1"], in: repo)
        try s.ok(["switch", "-c", "math"], in: repo)
        try s.ok(["commit", "--from", s.path("family/math"), "-m", "math"], in: repo)
        let mathCommit = try s.ok(["log", "-n", "1", "--json", "math"], in: repo).stdout
        let mathID = try #require(mathCommit.range(of: "[0-9a-f]{64}", options: .regularExpression).map { String(mathCommit[$0]) })
        try s.ok(["export", "main", s.path("exp/main")], in: repo)
        try s.ok(["export", "v1", s.path("exp/v1")], in: repo)
        try s.ok(["export", mathID, s.path("exp/commit")], in: repo)
        try "readtoken-0123456789 read\n# a comment\nwritetoken-0123456789 write\n".write(toFile: s.path("tokens"), atomically: true, encoding: .utf8)
        let weights = try #require(s.files(under: "family/base").first { $0.hasSuffix(".safetensors") })

        let server = try ServerProcess(s, ["served", "--tokens", "tokens"])
        let config: [String: Any] = [
            "endpoint": server.url, "repo": "team/minilm",
            "read_token": "readtoken-0123456789", "write_token": "writetoken-0123456789",
            "downloads": [["revision": "main", "export": s.path("exp/main")], ["revision": "v1", "export": s.path("exp/v1")],
                          ["revision": String(mathID.prefix(40)), "export": s.path("exp/commit")]],
            "weights": weights, "upload": s.path("family/code"),
        ]
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: s.path("hub.json")))
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("scripts/hub_client_check.py").path
        let (status, out) = try runProgram(python, [script, s.path("hub.json")], environment: ["NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"])
        #expect(server.stop() == 0, "SIGTERM stops the server cleanly")
        try #require(status == 0, "the huggingface_hub checks failed (see the output above)")
        let result = try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: String])

        // The upload is a commit of the delta store on hub-branch, holding the uploaded folder over main's files.
        let upload = try #require(result["upload_commit"])
        let log = try s.ok(["log", "--oneline", "hub-branch"], in: repo).stdout
        #expect(log.split(separator: "\n").first?.hasPrefix(String(upload.prefix(12))) == true, "\(log)")
        try s.ok(["export", "hub-branch", s.path("exp/hub")], in: repo)
        #expect(s.sameFiles("exp/hub", "family/code"))
        #expect(try s.ok(["tag"], in: repo).stdout.contains("hub-tag"))
        let branches = try s.ok(["branch"], in: repo).stdout
        #expect(branches.contains("hub-branch") && !branches.contains("refused"))
        try s.ok(["fsck"], in: repo)
        // The repository created over the API holds one commit of the uploaded folder.
        let created = "served/team/created-over-hub"
        #expect(try s.ok(["log", "--oneline"], in: created).stdout.hasPrefix(String(try #require(result["created_commit"]).prefix(12))))
        try s.ok(["export", "main", s.path("exp/created")], in: created)
        #expect(s.sameFiles("exp/created", "family/code"))
        try s.ok(["fsck"], in: created)
        // The staging folder of uploads went with the server.
        let meta = (try? FileManager.default.contentsOfDirectory(atPath: s.path(repo + "/.mrepo"))) ?? []
        #expect(!meta.contains { $0.hasSuffix("-uploads") }, "\(meta)")
    }

    @Test("without --tokens the server is read-only: downloads work, every write is refused")
    func readOnlyWithoutTokens() throws {
        let s = try CLISandbox()
        try s.writeModel("model", [("w", [2, 3], [1, 2, 3, 4, 5, 6])])
        try FileManager.default.createDirectory(atPath: s.path("served/ns"), withIntermediateDirectories: true)
        try s.ok(["init", "served/ns/m"])
        try s.ok(["commit", "--from", s.path("model"), "-m", "one"], in: "served/ns/m")
        let server = try ServerProcess(s, ["served"])
        let (status, out) = try runProgram("/usr/bin/env", ["python3", "-c", """
            import http.client, sys
            host, port = sys.argv[1].split("//")[1].split(":")
            def req(method, path, body=None, headers={}):
                c = http.client.HTTPConnection(host, int(port), timeout=60)
                c.request(method, path, body=body, headers=headers)
                r = c.getresponse(); data = r.read(); return r.status, r.getheader("ETag"), len(data)
            status, etag, _ = req("GET", "/ns/m/resolve/main/model.safetensors")
            # A client holding this version gets 304 and no body; another version's tag gets the file.
            same = req("GET", "/ns/m/resolve/main/model.safetensors", headers={"If-None-Match": etag})
            other = req("GET", "/ns/m/resolve/main/model.safetensors", headers={"If-None-Match": '"0000"'})
            print(status, same[0], same[2], other[0],
                  req("GET", "/ns/m/resolve/main/model.safetensors", headers={"Range": "bytes=-0"})[0],
                  req("POST", "/api/models/ns/m/branch/x", b"{}", {"Authorization": "Bearer anything"})[0],
                  req("POST", "/api/repos/create", b'{"name":"n","organization":"ns"}')[0])
            """, server.url])
        #expect(server.stop(SIGINT) == 0, "SIGINT stops the server cleanly")
        #expect(status == 0)
        #expect(out.trimmingCharacters(in: .whitespacesAndNewlines) == "200 304 0 200 416 403 403")
        #expect(!FileManager.default.fileExists(atPath: s.path("served/ns/n")))
        let branchLines = try s.ok(["branch"], in: "served/ns/m").stdout.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        #expect(!branchLines.contains("x") && !branchLines.contains("* x"), "\(branchLines)")
    }

    @Test("clients that disconnect mid-transfer, then 32 concurrent downloads: all complete and exact, bounded memory, read locks released")
    func concurrentAndBrokenDownloads() throws {
        let s = try CLISandbox()
        // 6 MB: 32 whole copies held at once would take the server well past the bound the script checks.
        try s.ok(["synth", "family", "--size", "small", "--fine-tunes", "none"])
        try FileManager.default.createDirectory(atPath: s.path("served/ns"), withIntermediateDirectories: true)
        try s.ok(["init", "served/ns/big"])
        try s.ok(["commit", "--from", s.path("family/base"), "-m", "base"], in: "served/ns/big")
        let weights = try #require(s.files(under: "family/base").first { $0.hasSuffix(".safetensors") })
        let digest = try #require(try runProgram("/usr/bin/env", ["sha256sum", s.path("family/base/" + weights)]).1.split(separator: " ").first)
        let server = try ServerProcess(s, ["served"])
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("scripts/serve_stress_check.py").path
        let (status, out) = try runProgram("/usr/bin/env", ["python3", script, server.url, "/ns/big/resolve/main/" + weights, String(digest),
                                                           String(server.process.processIdentifier), CLISandbox.binary, s.path("served/ns/big"),
                                                           // Resident memory of an idle server is about 90 MiB (debug build).
                                                           "256"])
        #expect(status == 0, "\(out)")
        #expect(server.stop() == 0, "the server survived and stops cleanly")
    }

    @Test("a tree of 1,100 files is listed in pages of 1,000 that huggingface_hub follows through the Link header")
    func treePaging() throws {
        let python = hubPython()
        try #require(FileManager.default.isExecutableFile(atPath: python), "no Python with huggingface_hub at \(python): run scripts/setup.sh")
        let s = try CLISandbox()
        for i in 0..<1100 {
            let dir = s.path("files/part\(i % 3)")
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try "\(i)\n".write(toFile: dir + "/f\(i).txt", atomically: false, encoding: .utf8)
        }
        try FileManager.default.createDirectory(atPath: s.path("served/ns"), withIntermediateDirectories: true)
        try s.ok(["init", "served/ns/many"])
        try s.ok(["commit", "--from", s.path("files"), "-m", "many files"], in: "served/ns/many")
        let server = try ServerProcess(s, ["served"])
        let (status, out) = try runProgram(python, ["-c", """
            import os, sys
            os.environ["HF_ENDPOINT"] = sys.argv[1]
            os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
            from huggingface_hub import HfApi
            api = HfApi(endpoint=sys.argv[1])
            entries = list(api.list_repo_tree("ns/many", recursive=True))
            files = [e.path for e in entries if type(e).__name__ == "RepoFile"]
            folders = [e.path for e in entries if type(e).__name__ == "RepoFolder"]
            top = [e.path for e in api.list_repo_tree("ns/many")]
            sub = [e.path for e in api.list_repo_tree("ns/many", path_in_repo="part1")]
            print(len(files), len(set(files)), sorted(folders), sorted(top), len(sub))
            """, server.url])
        #expect(server.stop() == 0)
        #expect(status == 0)
        #expect(out.trimmingCharacters(in: .whitespacesAndNewlines)
            == "1100 1100 ['part0', 'part1', 'part2'] ['part0', 'part1', 'part2'] 367")
    }
    @Test("list_repo_commits lists a revision's history newest first, in pages of 50 the client follows, with titles, bodies and authors")
    func commitListing() throws {
        let python = hubPython()
        try #require(FileManager.default.isExecutableFile(atPath: python), "no Python with huggingface_hub at \(python): run scripts/setup.sh")
        let s = try CLISandbox()
        try FileManager.default.createDirectory(atPath: s.path("served/ns"), withIntermediateDirectories: true)
        try s.ok(["init", "-q", "served/ns/long"])
        for i in 0..<61 {
            try "\(i)\n".write(toFile: s.path("served/ns/long/step.txt"), atomically: false, encoding: .utf8)
            let message = i == 60 ? "last <step>\n\nwhat changed\nand why" : "step \(i)"
            try s.ok(["commit", "-q", "-m", message, "--author", "Ann Lee <ann@example.org>"], in: "served/ns/long")
        }
        try s.ok(["branch", "early", "HEAD~50"], in: "served/ns/long")
        try s.ok(["init", "-q", "--bare", "served/ns/empty"])
        let log = try #require(try s.json(try s.ok(["log", "--json"], in: "served/ns/long")) as? [[String: Any]])
        let ids = log.compactMap { ($0["id"] as? String).map { String($0.prefix(40)) } }
        let server = try ServerProcess(s, ["served"])
        let (status, out) = try runProgram(python, ["-c", """
            import json, os, sys
            os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
            from huggingface_hub import HfApi
            api = HfApi(endpoint=sys.argv[1])
            main = api.list_repo_commits("ns/long")
            early = api.list_repo_commits("ns/long", revision="early", formatted=True)
            import urllib.error, urllib.request
            with urllib.request.urlopen(sys.argv[1] + "/api/models/ns/long/commits/main?cursor=9223372036854775807") as far:
                assert far.status == 200 and json.load(far) == [], "a cursor past the end"
            try:
                urllib.request.urlopen(sys.argv[1] + "/api/models/ns/long/commits/main?cursor=abc")
                raise AssertionError("a cursor that is not a number was accepted")
            except urllib.error.HTTPError as e:
                assert e.code == 400, e.code
            assert api.list_repo_commits("ns/empty") == [], "a repository with no commit yet"
            print(json.dumps({"ids": [c.commit_id for c in main], "titles": [c.title for c in main[:2]],
                              "message": main[0].message, "authors": sorted({a for c in main for a in c.authors}),
                              "formatted": early[0].formatted_title, "early": [c.commit_id for c in early],
                              "dated": all(c.created_at.tzinfo is not None for c in main)}))
            """, server.url])
        #expect(server.stop() == 0)
        try #require(status == 0)
        let listed = try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])
        #expect(listed["ids"] as? [String] == ids)
        #expect(listed["titles"] as? [String] == ["last <step>", "step 59"])
        #expect(listed["message"] as? String == "what changed\nand why")
        #expect(listed["authors"] as? [String] == ["Ann Lee"])
        #expect(listed["formatted"] as? String == "step 10")
        #expect(listed["early"] as? [String] == Array(ids.suffix(11)))
        #expect(listed["dated"] as? Bool == true)
    }
}
