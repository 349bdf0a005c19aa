import Foundation
import Testing

/// `mrepo serve` while `gc` runs on one of its repositories: reads of that repository wait for gc
/// without holding the server's threads, so the server goes on answering everything else; past
/// `--gc-wait` they are answered 503 `GCRunning` with `Retry-After`, which the mrepo client
/// honours for as long as gc runs.
@Suite struct ServeGCWaitTests {
    /// `served/team/a` and `served/team/b`, each with the tiny base committed.
    func served() throws -> CLISandbox {
        let s = try CLISandbox()
        try s.makeFamily()
        for name in ["a", "b"] {
            try FileManager.default.createDirectory(atPath: s.path("served/team"), withIntermediateDirectories: true)
            try s.ok(["init", "-q", "served/team/\(name)"])
            try s.ok(["commit", "-q", "--from", s.path("family/base"), "-m", "base"], in: "served/team/\(name)")
        }
        return s
    }

    /// GETs `paths` of the server concurrently (one connection each, all sent before any answer is
    /// read); prints each answer's status, `X-Error-Code` (or `-`) and `Retry-After` (or `-`).
    static let client = """
        import http.client, sys, threading
        host, port = sys.argv[1].split("//")[1].split(":")
        conns = []
        for path in sys.argv[2:]:
            c = http.client.HTTPConnection(host, int(port), timeout=300)
            c.request("GET", path)
            conns.append(c)
        out = [None] * len(conns)
        def read(i):
            r = conns[i].getresponse(); r.read()
            out[i] = "%d %s %s" % (r.status, r.getheader("X-Error-Code") or "-", r.getheader("Retry-After") or "-")
        threads = [threading.Thread(target=read, args=(i,)) for i in range(len(conns))]
        for t in threads: t.start()
        for t in threads: t.join()
        print("\\n".join(out), flush=True)
        """

    func get(_ server: ServerProcess, _ paths: [String]) throws -> [String] {
        let (status, out) = try runProgram("/usr/bin/env", ["python3", "-c", ServeGCWaitTests.client, server.url] + paths)
        #expect(status == 0)
        return out.split(separator: "\n").map(String.init)
    }

    /// More waiting downloads than the server has threads: before, each held a thread in a
    /// blocking wait for gc's lock, and the server answered nothing else until gc ended.
    @Test func readsWaitingForGCDoNotStallTheServer() throws {
        let s = try served()
        let server = try ServerProcess(s, ["served"])
        defer { _ = server.stop() }
        let gc = try RunningCommand(s, ["gc"], in: "served/team/a", environment: ["MREPO_PAUSE_AT": "gc.recorded"])
        #expect(gc.waitUntilPaused(at: "gc.recorded"))

        let count = 4 * ProcessInfo.processInfo.activeProcessorCount + 4
        let waiting = Process()
        waiting.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        waiting.arguments = ["python3", "-c", ServeGCWaitTests.client, server.url]
            + (0..<count).map { $0 % 2 == 0 ? "/api/models/team/a" : "/team/a/resolve/main/config.json" }
        let output = Pipe()
        waiting.standardOutput = output
        try waiting.run()
        defer { if waiting.isRunning { waiting.terminate() } }

        // Answered while the reads of team/a wait: another repository, and team/a's refs.
        #expect(try get(server, ["/api/models/team/b", "/team/b/resolve/main/config.json", "/api/models/team/a/refs"])
                == ["200 - -", "200 - -", "200 - -"])
        gc.resume()
        #expect(gc.finish().status == 0)
        let answers = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        waiting.waitUntilExit()
        #expect(answers.split(separator: "\n").map(String.init) == Array(repeating: "200 - -", count: count),
                "the waiting reads are answered once gc has finished")
    }

    /// With `--gc-wait 0` a read during gc is answered 503 at once; `mrepo clone` says it waits for
    /// the server's gc, asks again after `Retry-After`, and clones once gc has finished.
    @Test func aCloneWaitsForTheServersGC() throws {
        let s = try served()
        let server = try ServerProcess(s, ["served", "--gc-wait", "0"])
        defer { _ = server.stop() }
        let gc = try RunningCommand(s, ["gc"], in: "served/team/a", environment: ["MREPO_PAUSE_AT": "gc.recorded"])
        #expect(gc.waitUntilPaused(at: "gc.recorded"))
        #expect(try get(server, ["/team/a/resolve/main/config.json", "/api/models/team/b"]) == ["503 GCRunning 2", "200 - -"])

        let clone = try RunningCommand(s, ["clone", server.url + "/team/a", "copy"], in: "", environment: ["MREPO_PAUSE_AT": "remote.wait-gc"])
        #expect(clone.waitUntilPaused(at: "remote.wait-gc"), "the clone did not wait for gc")
        gc.resume()
        #expect(gc.finish().status == 0)
        clone.resume()
        let cloned = clone.finish()
        #expect(cloned.status == 0, "\(cloned.stderr)")
        #expect(cloned.stderr.contains("waiting for gc (pid "), "\(cloned.stderr)")
        #expect(s.sameFiles("copy", "family/base"))
        try s.ok(["fsck"], in: "copy")
    }

    /// `push --dry-run` asks for a push session to learn whether the token may write; a server in
    /// gc answers 503, after checking the token, so the dry run does not wait for gc.
    @Test func aDryRunPushDoesNotWaitForTheServersGC() throws {
        let s = try served()
        try "reader-0123456789 read\nwriter-0123456789 write\n".write(toFile: s.path("tokens"), atomically: true, encoding: .utf8)
        let server = try ServerProcess(s, ["served", "--tokens", "tokens", "--gc-wait", "0"])
        defer { _ = server.stop() }
        let read = ["MREPO_TOKEN": "reader-0123456789"], write = ["MREPO_TOKEN": "writer-0123456789"]
        try s.ok(["clone", "-q", server.url + "/team/a", "work"], environment: read)
        try s.ok(["switch", "-q", "-c", "feature"], in: "work")
        try s.ok(["commit", "-q", "--allow-empty", "-m", "more"], in: "work")
        let gc = try RunningCommand(s, ["gc"], in: "served/team/a", environment: ["MREPO_PAUSE_AT": "gc.recorded"])
        #expect(gc.waitUntilPaused(at: "gc.recorded"))
        let dry = try s.ok(["push", "-n", "origin", "feature"], in: "work", environment: write)
        #expect(dry.stdout.contains("Would send 1 commit"), "\(dry.stdout)")
        expectOneLineError(try s.run(["push", "-n", "origin", "feature"], in: "work", environment: read), contains: "write token")
        gc.resume()
        #expect(gc.finish().status == 0)
        #expect(!(try s.ok(["branch"], in: "served/team/a").stdout.contains("feature")), "the dry run moved nothing")
    }
}
