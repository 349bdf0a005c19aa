import Foundation
import Testing

/// `mrepo clone`, `fetch` and `push` against `mrepo serve` (mrepo's own protocol over HTTP).
@Suite("mrepo serve with the mrepo client")
struct ServeRemoteTests {
    @Test("clone, push with a write token, refusals for read and bad tokens and non-fast-forward pushes, a tampered object rejected")
    func cloneAndPushOverHTTP() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try FileManager.default.createDirectory(atPath: s.path("served/team"), withIntermediateDirectories: true)
        try s.ok(["init", "--bare", "served/team/minilm"])
        try s.ok(["init", "seed"])
        try s.ok(["commit", "--from", s.path("family/base"), "-m", "base"], in: "seed")
        try s.ok(["tag", "-m", "release one", "v1"], in: "seed")
        try s.ok(["remote", "add", "origin", s.path("served/team/minilm")], in: "seed")
        try s.ok(["push", "origin", "main", "--tags"], in: "seed")
        try "reader-0123456789 read\nwriter-0123456789 write\n".write(toFile: s.path("tokens"), atomically: true, encoding: .utf8)
        let server = try ServerProcess(s, ["served", "--tokens", "tokens"])
        defer { _ = server.stop() }
        let url = server.url + "/team/minilm"
        let read = ["MREPO_TOKEN": "reader-0123456789"], write = ["MREPO_TOKEN": "writer-0123456789"]

        // Clone with a read token: the same history and files as the served repository.
        try s.ok(["clone", url, "clone"], environment: read)
        try s.ok(["export", "main", s.path("exp/clone")], in: "clone")
        try s.ok(["export", "main", s.path("exp/seed")], in: "seed")
        #expect(s.sameFiles("exp/clone", "exp/seed"))
        #expect(try s.ok(["tag"], in: "clone").stdout.contains("v1"))
        // Annotated tags keep their messages through a folder push and an HTTP clone, and an HTTP
        // push (they arrived without them).
        func tagMessage(_ name: String, in repo: String) throws -> String? {
            let tags = try #require(try s.json(try s.ok(["tag", "-l", "--json"], in: repo)) as? [[String: Any]])
            return tags.first { $0["name"] as? String == name }?["message"] as? String
        }
        #expect(try tagMessage("v1", in: "served/team/minilm") == "release one")
        #expect(try tagMessage("v1", in: "clone") == "release one")
        try s.ok(["tag", "-m", "second", "v2"], in: "clone")
        try s.ok(["push", "-q", "origin", "v2"], in: "clone", environment: write)
        #expect(try tagMessage("v2", in: "served/team/minilm") == "second")

        // A new branch: refused with the read token and with a bad one, accepted with the write token.
        try s.ok(["switch", "-c", "math"], in: "clone")
        try s.ok(["commit", "--from", s.path("family/math"), "-m", "math"], in: "clone")
        let refused = try s.run(["push", "origin", "math"], in: "clone", environment: read)
        expectOneLineError(refused, contains: "write token")
        // A dry run says so too (it asks for a push session, which a read token is refused), and
        // passes with the write token; neither moves anything.
        expectOneLineError(try s.run(["push", "-n", "origin", "math"], in: "clone", environment: read), contains: "write token")
        try s.ok(["push", "-n", "origin", "math"], in: "clone", environment: write)
        let bad = try s.run(["push", "origin", "math"], in: "clone", environment: ["MREPO_TOKEN": "wrong-0123456789"])
        expectOneLineError(bad, contains: "refused the credentials")
        // A server started without --tokens takes no pushes: said as such, not blamed on a token
        // that was never set.
        let open = try ServerProcess(s, ["served"])
        defer { _ = open.stop() }
        try s.ok(["remote", "add", "open", open.url + "/team/minilm"], in: "clone")
        let readOnly = try s.run(["push", "open", "math"], in: "clone")
        expectOneLineError(readOnly, contains: "it takes no pushes; start it with --tokens FILE")
        expectOneLineError(try s.run(["push", "--dry-run", "open", "math"], in: "clone"), contains: "it takes no pushes")
        #expect(!readOnly.stderr.contains("MREPO_TOKEN"))
        try s.ok(["remote", "remove", "open"], in: "clone")
        #expect(!(try s.ok(["branch"], in: "served/team/minilm").stdout.contains("math")))
        try s.ok(["push", "origin", "math"], in: "clone", environment: write)
        // Nothing left to send or move: the dry run, as the push, needs no write token.
        #expect(try s.ok(["push", "-n", "origin", "math"], in: "clone", environment: read).stdout.contains("Everything up-to-date"))
        try s.ok(["export", "math", s.path("exp/served-math")], in: "served/team/minilm")
        #expect(s.sameFiles("exp/served-math", "family/math"))
        try s.ok(["fsck"], in: "served/team/minilm")

        // A push that is not a fast-forward is refused and leaves the remote branch where it was.
        try s.ok(["clone", url, "other"], environment: read)
        try s.ok(["switch", "math"], in: "other", environment: read)
        try s.ok(["commit", "--from", s.path("family/code"), "-m", "code on math"], in: "other")
        try s.ok(["push", "origin", "math"], in: "other", environment: write)
        try s.ok(["commit", "--from", s.path("family/chat"), "-m", "chat on the old math"], in: "clone")
        let behind = try s.run(["push", "origin", "math"], in: "clone", environment: write)
        expectOneLineError(behind, contains: "not a fast-forward")
        try s.ok(["fetch", "origin"], in: "clone", environment: read)
        #expect(try s.ok(["log", "--oneline", "-n", "1", "origin/math"], in: "clone").stdout.contains("code on math"))

        // An object whose bytes do not hash to its id is rejected before it is stored.
        let (status, out) = try runProgram("/usr/bin/env", ["python3", "-c", """
            import http.client, sys
            host, port = sys.argv[1].split("//")[1].split(":")
            c = http.client.HTTPConnection(host, int(port), timeout=60)
            oid = "ab" * 32
            c.request("PUT", "/team/minilm/mrepo/v1/objects/" + oid, body=b"MROB\\x01\\x02\\x00\\x00garbage",
                      headers={"Authorization": "Bearer writer-0123456789"})
            r = c.getresponse(); r.read(); print(r.status)
            """, server.url])
        #expect(status == 0 && out.trimmingCharacters(in: .whitespacesAndNewlines) == "400")
        #expect(!FileManager.default.fileExists(atPath: s.path("served/team/minilm/.mrepo/objects/ab/" + String(repeating: "ab", count: 31))))

        // The checked-out branch of a served repository with a working tree (unborn) is refused
        // before anything is sent, as over a folder.
        try s.ok(["init", "-q", "served/team/work"])
        try s.ok(["remote", "add", "work", server.url + "/team/work"], in: "clone")
        let checkedOut = try s.run(["push", "work", "math:main"], in: "clone", environment: write)
        expectOneLineError(checkedOut, contains: "'main' is the checked-out branch of that repository")
        #expect(checkedOut.stderr.contains("nothing was sent"))
        #expect(try s.ok(["fsck"], in: "served/team/work").stdout.contains("0 commits, 0 objects"))

        // A server stopped gracefully leaves no write journal in the repositories it wrote to.
        #expect(server.stop() == 0)
        let leftovers = (try FileManager.default.contentsOfDirectory(atPath: s.path("served/team/minilm/.mrepo"))).filter { $0.hasSuffix("-journal") }
        #expect(leftovers.isEmpty, "\(leftovers)")
    }

    @Test("clone failures say what is wrong in one plain line and leave nothing behind")
    func cloneFailuresAreOneLine() throws {
        let s = try CLISandbox()
        try s.writeModel("model", [("w", [2, 2], [1, 2, 3, 4])])
        try FileManager.default.createDirectory(atPath: s.path("served/team"), withIntermediateDirectories: true)
        try s.ok(["init", "-q", "served/team/hub"])
        try s.ok(["commit", "-q", "--from", "../../../model", "-m", "one"], in: "served/team/hub")
        try "reader-0123456789 read\n".write(toFile: s.path("tokens"), atomically: true, encoding: .utf8)
        let server = try ServerProcess(s, ["served", "--tokens", "tokens"])
        defer { _ = server.stop() }
        let read = ["MREPO_TOKEN": "reader-0123456789"]

        let cases: [(url: String, env: [String: String], says: String)] = [
            (server.url + "/team/nope", read, "/team/nope: no repository there"),
            (server.url + "/team/hub", [:], "/team/hub: the server needs a token; set MREPO_TOKEN"),
            (server.url + "/team/hub", ["MREPO_TOKEN": "wrong-0123456789"], "/team/hub: the server refused the credentials"),
        ]
        for c in cases {
            let r = try s.run(["clone", c.url, "copy"], environment: c.env)
            expectOneLineError(r, contains: c.says)
            #expect(!r.stderr.contains("HTTPClient") && !r.stderr.contains("Authorization: Bearer"), "plain words: \(r.stderr)")
            #expect(!FileManager.default.fileExists(atPath: s.path("copy")))
        }

        // A web server that is not mrepo serve: its 404 says so.
        let web = Process()
        web.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        web.arguments = ["python3", "-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory", s.root]
        let out = Pipe()
        web.standardOutput = out
        web.standardError = FileHandle.nullDevice
        try web.run()
        defer {
            // SIGKILL: the test process runs with SIGTERM blocked, and children inherit the mask.
            kill(web.processIdentifier, SIGKILL)
            web.waitUntilExit()
        }
        var banner = ""
        while !banner.contains("\n") {
            let chunk = out.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            banner += String(decoding: chunk, as: UTF8.self)
        }
        let port = try #require(banner.range(of: "port [0-9]+", options: .regularExpression).map { banner[$0].dropFirst(5) })
        let r = try s.run(["clone", "http://127.0.0.1:\(port)/team/hub", "copy"])
        expectOneLineError(r, contains: "no mrepo repository there")
        #expect(!FileManager.default.fileExists(atPath: s.path("copy")))
        #expect(try FileManager.default.contentsOfDirectory(atPath: s.root).filter { $0.contains("mrepo-clone") }.isEmpty)
    }
}
