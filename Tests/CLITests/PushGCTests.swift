import Foundation
import Testing

/// A push into a repository holds that repository's read lock from its first question to its last
/// ref update, so a `gc` run there meanwhile waits instead of removing what the push sent (objects
/// without a row, commits no ref reaches yet) or what the remote said it had. Each test holds the
/// push at a named point, starts `gc` on the receiving side, and sees it wait.
@Suite struct PushGCTests {
    /// A sandbox with `repo` (base on main) pushed to a bare `hub`, and math committed on top.
    func published() throws -> CLISandbox {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.ok(["init", "-q", "--bare", "hub"])
        try s.ok(["init", "-q", "repo"])
        try s.ok(["commit", "-q", "--from", "../family/base", "-m", "base"], in: "repo")
        try s.ok(["remote", "add", "origin", "../hub"], in: "repo")
        try s.ok(["push", "-q", "-u", "origin", "main"], in: "repo")
        try s.ok(["commit", "-q", "--from", "../family/math", "-m", "math"], in: "repo")
        return s
    }

    /// Runs `gc` in `directory` and requires that it finds a reader holding the lock and waits
    /// (it pauses there; the caller lets it go on).
    func gcWaits(_ s: CLISandbox, in directory: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> RunningCommand {
        let gc = try RunningCommand(s, ["gc", "--prune-reflog"], in: directory, environment: ["MREPO_PAUSE_AT": "gc.wait-readers"])
        #expect(gc.waitUntilPaused(at: "gc.wait-readers"), "gc did not wait for the push", sourceLocation: sourceLocation)
        return gc
    }

    /// Lets the paused push and gc go on (the gc waiting for the push), then requires that the
    /// push succeeded, the gc removed nothing of it, and `directory` holds math's files exactly.
    func finishBoth(_ push: RunningCommand, _ gc: RunningCommand, _ s: CLISandbox, in directory: String,
                    sourceLocation: SourceLocation = #_sourceLocation) throws {
        gc.resume()
        push.resume()
        let pushed = push.finish()
        #expect(pushed.status == 0, "the push failed: \(pushed.stderr)", sourceLocation: sourceLocation)
        let collected = gc.finish()
        #expect(collected.status == 0, "gc failed: \(collected.stderr)", sourceLocation: sourceLocation)
        #expect(collected.stdout.contains("removed 0 commits"), "gc ran after the push and kept it: \(collected.stdout)", sourceLocation: sourceLocation)
        try s.ok(["fsck"], in: directory)
        try s.ok(["export", "main", s.path("out")], in: directory)
        #expect(s.sameFiles("out", "family/math"), sourceLocation: sourceLocation)
    }

    /// Objects arrived and verified, no row names them yet: gc would delete them as unrecorded.
    @Test func gcWaitsForAPushBetweenItsObjects() throws {
        let s = try published()
        let push = try RunningCommand(s, ["push", "-q"], in: "repo", environment: ["MREPO_PAUSE_AT": "transfer.object-sent"])
        #expect(push.waitUntilPaused(at: "transfer.object-sent"))
        let gc = try gcWaits(s, in: "hub")
        try finishBoth(push, gc, s, in: "hub")
    }

    /// The hub holds math's commit and objects, but no ref reaches them (a branch deleted there):
    /// the push asks, learns that nothing is missing, sends nothing and moves the ref. A gc between
    /// the question and the ref update would delete what the answer counted on.
    @Test func gcWaitsForAPushThatCountsOnWhatTheRemoteHas() throws {
        let s = try published()
        try s.ok(["push", "-q", "origin", "main:math"], in: "repo")
        try s.ok(["branch", "-q", "-D", "math"], in: "hub")
        let push = try RunningCommand(s, ["push", "-q", "origin", "main:math"], in: "repo", environment: ["MREPO_PAUSE_AT": "push.refs"])
        #expect(push.waitUntilPaused(at: "push.refs"))
        let gc = try gcWaits(s, in: "hub")
        gc.resume()
        push.resume()
        let pushed = push.finish()
        #expect(pushed.status == 0, "the push failed: \(pushed.stderr)")
        #expect(gc.finish().status == 0)
        try s.ok(["fsck"], in: "hub")
        try s.ok(["export", "math", s.path("out")], in: "hub")
        #expect(s.sameFiles("out", "family/math"))
    }

    /// A fetch from a folder holds the other repository's read lock too, until its objects are here.
    @Test func gcWaitsForAFetchFromAFolder() throws {
        let s = try published()
        try s.ok(["clone", "-q", "hub", "copy"])
        try s.ok(["push", "-q"], in: "repo")
        let fetch = try RunningCommand(s, ["fetch", "-q"], in: "copy", environment: ["MREPO_PAUSE_AT": "transfer.object-received"])
        #expect(fetch.waitUntilPaused(at: "transfer.object-received"))
        // Now nothing but the fetch reaches the commit it is fetching.
        try s.ok(["push", "-q", "--force", "origin", "main~1:main"], in: "repo")
        let gc = try gcWaits(s, in: "hub")
        gc.resume()
        fetch.resume()
        let fetched = fetch.finish()
        #expect(fetched.status == 0, "the fetch failed: \(fetched.stderr)")
        #expect(gc.finish().status == 0)
        try s.ok(["fsck"], in: "copy")
    }

    /// Over `mrepo serve`: the push's session holds the served repository's read lock.
    @Test func gcWaitsForAPushOverHTTP() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try FileManager.default.createDirectory(atPath: s.path("served/team"), withIntermediateDirectories: true)
        try s.ok(["init", "-q", "--bare", "served/team/minilm"])
        try s.ok(["init", "-q", "seed"])
        try s.ok(["commit", "-q", "--from", "../family/base", "-m", "base"], in: "seed")
        try s.ok(["remote", "add", "origin", s.path("served/team/minilm")], in: "seed")
        try s.ok(["push", "-q", "origin", "main"], in: "seed")
        try "reader-0123456789 read\nwriter-0123456789 write\n".write(toFile: s.path("tokens"), atomically: true, encoding: .utf8)
        let server = try ServerProcess(s, ["served", "--tokens", "tokens"])
        defer { _ = server.stop() }
        let write = ["MREPO_TOKEN": "writer-0123456789"]
        try s.ok(["clone", "-q", server.url + "/team/minilm", "clone"], environment: write)
        try s.ok(["commit", "-q", "--from", "../family/math", "-m", "math"], in: "clone")

        // Objects and commit records are there, the branch does not reach them yet.
        var environment = write
        environment["MREPO_PAUSE_AT"] = "push.refs"
        let push = try RunningCommand(s, ["push", "-q"], in: "clone", environment: environment)
        #expect(push.waitUntilPaused(at: "push.refs"))
        let gc = try gcWaits(s, in: "served/team/minilm")
        try finishBoth(push, gc, s, in: "served/team/minilm")
        // A token that may not push gets no session; a push with nothing to send still succeeds.
        #expect(try s.ok(["push"], in: "clone", environment: ["MREPO_TOKEN": "reader-0123456789"]).stdout.contains("Everything up-to-date"))
    }
}

/// `mrepo serve`'s push sessions, request by request (docs/serving.md, "Push sessions").
@Suite struct PushSessionTests {
    /// One request to the server: the status, then `X-Error-Code` (or `-`), one per line.
    func request(_ server: ServerProcess, _ method: String, _ path: String, token: String?, session: String? = nil) throws -> String {
        let (status, out) = try runProgram("/usr/bin/env", ["python3", "-c", """
            import http.client, sys
            url, method, path, token, session = sys.argv[1:6]
            host, port = url.split("//")[1].split(":")
            c = http.client.HTTPConnection(host, int(port), timeout=120)
            headers = {}
            if token != "-": headers["Authorization"] = "Bearer " + token
            if session != "-": headers["X-Mrepo-Push-Session"] = session
            body = b'{"ids":[]}' if path.endswith("/missing") else None
            c.request(method, path, body=body, headers=headers)
            r = c.getresponse(); r.read()
            print(r.status, r.getheader("X-Error-Code") or "-")
            """, server.url, method, path, token ?? "-", session ?? "-"])
        #expect(status == 0)
        return out.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test func aSessionHoldsGCUntilItIsClosedAndOnlyAsManyAreOpen() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try FileManager.default.createDirectory(atPath: s.path("served/team"), withIntermediateDirectories: true)
        try s.ok(["init", "-q", "--bare", "served/team/minilm"])
        try "reader-0123456789 read\nwriter-0123456789 write\n".write(toFile: s.path("tokens"), atomically: true, encoding: .utf8)
        let server = try ServerProcess(s, ["served", "--tokens", "tokens", "--max-push-sessions", "1"])
        defer { _ = server.stop() }
        let repo = "/team/minilm/mrepo/v1"
        let one = "0f3c2a8e-5d1b-4c7a-9e6f-2b8d4a1c3e5f", two = "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"

        // Sessions are for pushes: a read token may not open one, nor name one.
        #expect(try request(server, "POST", "\(repo)/push-sessions/\(one)", token: "reader-0123456789") == "403 -")
        #expect(try request(server, "POST", "\(repo)/objects/missing", token: "reader-0123456789", session: one) == "403 -")
        // A request naming a session that is not open is refused: the push must start again.
        #expect(try request(server, "POST", "\(repo)/objects/missing", token: "writer-0123456789", session: one) == "410 PushSessionExpired")
        #expect(try request(server, "POST", "\(repo)/push-sessions/not-an-id!", token: "writer-0123456789") == "400 -")

        #expect(try request(server, "POST", "\(repo)/push-sessions/\(one)", token: "writer-0123456789") == "200 -")
        #expect(try request(server, "POST", "\(repo)/objects/missing", token: "writer-0123456789", session: one) == "200 -")
        // One session at most on this server.
        #expect(try request(server, "POST", "\(repo)/push-sessions/\(two)", token: "writer-0123456789") == "503 TooManyPushSessions")
        // A request without a session (an older client) is answered as before.
        #expect(try request(server, "POST", "\(repo)/objects/missing", token: "reader-0123456789") == "200 -")

        // gc waits for the open session, and goes on once it is closed.
        let gc = try RunningCommand(s, ["gc"], in: "served/team/minilm", environment: ["MREPO_PAUSE_AT": "gc.wait-readers"])
        #expect(gc.waitUntilPaused(at: "gc.wait-readers"), "gc did not wait for the push session")
        gc.resume()
        #expect(try request(server, "DELETE", "\(repo)/push-sessions/\(one)", token: "writer-0123456789") == "200 -")
        #expect(gc.finish().status == 0)
        #expect(try request(server, "POST", "\(repo)/objects/missing", token: "writer-0123456789", session: one) == "410 PushSessionExpired")

        // While gc runs, a session is refused at once (the client retries), not left waiting.
        let running = try RunningCommand(s, ["gc"], in: "served/team/minilm", environment: ["MREPO_PAUSE_AT": "gc.recorded"])
        #expect(running.waitUntilPaused(at: "gc.recorded"))
        #expect(try request(server, "POST", "\(repo)/push-sessions/\(two)", token: "writer-0123456789") == "503 GCRunning")
        running.resume()
        #expect(running.finish().status == 0)
        #expect(try request(server, "POST", "\(repo)/push-sessions/\(two)", token: "writer-0123456789") == "200 -")
        #expect(try request(server, "DELETE", "\(repo)/push-sessions/\(two)", token: "writer-0123456789") == "200 -")
        // Without sessions left open, gc does not wait.
        let free = try s.run(["gc"], in: "served/team/minilm", environment: ["MREPO_PAUSE_AT": "gc.wait-readers"])
        #expect(free.status == 0 && !free.stderr.contains("paused"), "gc waited for a closed session: \(free.stderr)")
    }

    /// An empty bare `served/team/minilm`, `repo` with the tiny base committed, and `tokens` with one
    /// write token.
    func servedAndBase() throws -> CLISandbox {
        let s = try CLISandbox()
        try s.makeFamily()
        try FileManager.default.createDirectory(atPath: s.path("served/team"), withIntermediateDirectories: true)
        try s.ok(["init", "-q", "--bare", "served/team/minilm"])
        try s.ok(["init", "-q", "repo"])
        try s.ok(["commit", "-q", "--from", "../family/base", "-m", "base"], in: "repo")
        try "writer-0123456789 write\n".write(toFile: s.path("tokens"), atomically: true, encoding: .utf8)
        return s
    }

    /// A push that ends without recording what it sent (it failed, or its client gave up) leaves
    /// nothing in the server's store: closing its session removes the objects it installed that no
    /// row records, as a failed push into a folder does. Before, they stayed until a gc.
    @Test func aClosedSessionRemovesWhatItLeftUnrecorded() throws {
        let s = try servedAndBase()
        let server = try ServerProcess(s, ["served", "--tokens", "tokens"])
        defer { _ = server.stop() }
        // Three objects of the first commit (stored whole: no reference is needed on the server).
        var sent: [String] = []
        for folder in try FileManager.default.contentsOfDirectory(atPath: s.path("repo/.mrepo/objects")).sorted() where folder.count == 2 {
            for rest in try FileManager.default.contentsOfDirectory(atPath: s.path("repo/.mrepo/objects/\(folder)")).sorted() where sent.count < 3 {
                sent.append(folder + rest)
            }
        }
        #expect(sent.count == 3)
        let (status, out) = try runProgram("/usr/bin/env", ["python3", "-c", """
            import http.client, sys
            url, objects = sys.argv[1], sys.argv[2]
            host, port = url.split("//")[1].split(":")
            repo, session = "/team/minilm/mrepo/v1", "5e6f7a8b-1c2d-4e3f-9a0b-c1d2e3f4a5b6"
            auth = {"Authorization": "Bearer writer-0123456789"}
            def ask(method, path, body=None, headers={}):
                c = http.client.HTTPConnection(host, int(port), timeout=120)
                c.request(method, repo + path, body=body, headers={**auth, **headers})
                r = c.getresponse(); r.read()
                return r.status
            said = [ask("POST", "/push-sessions/" + session, b"{}")]
            for hex in sys.argv[3:]:
                with open(objects + "/" + hex[:2] + "/" + hex[2:], "rb") as f:
                    said.append(ask("PUT", "/objects/" + hex, f.read(), {"X-Mrepo-Push-Session": session}))
            said.append(ask("DELETE", "/push-sessions/" + session))
            print(" ".join(map(str, said)))
            """, server.url, s.path("repo/.mrepo/objects")] + sent)
        #expect(status == 0)
        #expect(out.trimmingCharacters(in: .whitespacesAndNewlines) == "200 200 200 200 200", "\(out)")
        for hex in sent {
            let path = s.path("served/team/minilm/.mrepo/objects/\(hex.prefix(2))/\(hex.dropFirst(2))")
            #expect(!FileManager.default.fileExists(atPath: path), "object \(hex.prefix(12)) stayed unrecorded")
        }
        let fsck = try s.ok(["fsck"], in: "served/team/minilm")
        #expect(!fsck.stdout.contains("unreferenced") && !fsck.stderr.contains("unreferenced"), "\(fsck.stdout)\(fsck.stderr)")
        // A push that records what it sends keeps it.
        try s.ok(["remote", "add", "origin", server.url + "/team/minilm"], in: "repo")
        try s.ok(["push", "-q", "origin", "main"], in: "repo", environment: ["MREPO_TOKEN": "writer-0123456789"])
        try s.ok(["fsck"], in: "served/team/minilm")
        try s.ok(["export", "-q", "main", s.path("out")], in: "served/team/minilm")
        #expect(s.sameFiles("out", "family/base"))
    }

    /// A session that closes leaves the objects another open session counts on: here a push was
    /// told an object is there (another session had installed it, unrecorded) and sends no copy.
    /// Before, the other session's close removed it, and the push failed at its commit records.
    /// Also when the push names the repository by another id (a link below the server's root).
    @Test(arguments: ["minilm", "alias"])
    func aClosingSessionLeavesWhatAnotherPushCountsOn(pushedAs name: String) throws {
        let s = try servedAndBase()
        try FileManager.default.createSymbolicLink(atPath: s.path("served/team/alias"), withDestinationPath: "minilm")
        let server = try ServerProcess(s, ["served", "--tokens", "tokens"])
        defer { _ = server.stop() }
        let folder = try #require(try FileManager.default.contentsOfDirectory(atPath: s.path("repo/.mrepo/objects")).sorted().first { $0.count == 2 })
        let rest = try #require(try FileManager.default.contentsOfDirectory(atPath: s.path("repo/.mrepo/objects/\(folder)")).sorted().first)
        let session = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
        func ask(_ method: String, _ path: String, object: String? = nil) throws -> String {
            let (status, out) = try runProgram("/usr/bin/env", ["python3", "-c", """
                import http.client, sys
                url, method, path, session, body = sys.argv[1:6]
                host, port = url.split("//")[1].split(":")
                c = http.client.HTTPConnection(host, int(port), timeout=120)
                data = open(body, "rb").read() if body != "-" else (b"{}" if method == "POST" else None)
                c.request(method, "/team/minilm/mrepo/v1" + path, body=data,
                          headers={"Authorization": "Bearer writer-0123456789", "X-Mrepo-Push-Session": session})
                r = c.getresponse(); r.read(); print(r.status)
                """, server.url, method, path, session, object ?? "-"])
            #expect(status == 0)
            return out.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        // Session A installs one object of the commit and stays open.
        #expect(try ask("POST", "/push-sessions/\(session)") == "200")
        #expect(try ask("PUT", "/objects/\(folder + rest)", object: s.path("repo/.mrepo/objects/\(folder)/\(rest)")) == "200")
        // The push asks what is missing (that object is not), sends the rest, and waits.
        try s.ok(["remote", "add", "origin", server.url + "/team/" + name], in: "repo")
        let push = try RunningCommand(s, ["push", "-q", "origin", "main"], in: "repo",
                                      environment: ["MREPO_TOKEN": "writer-0123456789", "MREPO_PAUSE_AT": "transfer.object-sent"])
        #expect(push.waitUntilPaused(at: "transfer.object-sent"))
        // Session A closes unrecorded: the object the push counts on stays.
        #expect(try ask("DELETE", "/push-sessions/\(session)") == "200")
        #expect(FileManager.default.fileExists(atPath: s.path("served/team/minilm/.mrepo/objects/\(folder)/\(rest)")))
        push.resume()
        let pushed = push.finish()
        #expect(pushed.status == 0, "\(pushed.stderr)")
        try s.ok(["fsck"], in: "served/team/minilm")
        try s.ok(["export", "-q", "main", s.path("out")], in: "served/team/minilm")
        #expect(s.sameFiles("out", "family/base"))
    }

    /// A download whose client stops reading (and keeps the connection) is cut off after the send
    /// timeout, which releases the read lock its transfer holds: gc, which waits for it, finishes.
    @Test func aStalledDownloadDoesNotHoldGCForEver() throws {
        let s = try CLISandbox()
        try FileManager.default.createDirectory(atPath: s.path("served/team/big"), withIntermediateDirectories: true)
        try s.ok(["init", "-q", "served/team/big"])
        // Larger than what the kernel buffers on both ends of a loopback connection (4 MiB a side).
        try Data(count: 24 << 20).write(to: URL(fileURLWithPath: s.path("served/team/big/data.bin")))
        try s.ok(["commit", "-q", "-m", "big"], in: "served/team/big")
        let server = try ServerProcess(s, ["served", "--send-timeout", "1"])
        defer { _ = server.stop() }

        // The client reads the answer's head, then nothing, until told (its own limit only ends a
        // test that fails: a lock held for ever).
        let client = Process()
        client.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        client.arguments = ["python3", "-c", """
            import socket, sys, select
            host, port = sys.argv[1].split("//")[1].split(":")
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect((host, int(port)))
            s.sendall(b"GET /team/big/resolve/main/data.bin HTTP/1.1\\r\\nHost: test\\r\\n\\r\\n")
            head = b""
            while b"\\r\\n\\r\\n" not in head:
                b = s.recv(1)
                if not b: break
                head += b
            print(head.split(b"\\r\\n")[0].decode(), flush=True)
            ready, _, _ = select.select([sys.stdin], [], [], 300)
            print("held" if ready else "gave up", flush=True)
            """, server.url]
        let input = Pipe(), output = Pipe()
        client.standardInput = input
        client.standardOutput = output
        client.standardError = FileHandle.standardError
        try client.run()
        defer { if client.isRunning { kill(client.processIdentifier, SIGKILL) } }
        var said = ""
        while !said.contains("\n") {
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            said += String(decoding: chunk, as: UTF8.self)
        }
        #expect(said.hasPrefix("HTTP/1.1 200"), "the download did not start: \(said)")

        let gc = try s.run(["gc"], in: "served/team/big")
        #expect(gc.status == 0, "gc failed: \(gc.stderr)")
        try input.fileHandleForWriting.close()
        let rest = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        client.waitUntilExit()
        #expect(rest == "held\n", "gc finished only once the client gave up: the stalled download held the lock")
        // The server still answers.
        try s.ok(["clone", "-q", server.url + "/team/big", "copy"])
    }
}
