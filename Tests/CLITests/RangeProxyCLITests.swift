import Foundation
import Testing

/// An HTTP proxy on 127.0.0.1 in front of `mrepo serve` that mishandles `Range` as some servers do:
/// `ignore` drops the header (the answer is 200 with the whole object), `wrong` answers a ranged GET
/// with the whole object as a 206 from byte 0. Stopped with SIGTERM.
final class RangeProxy {
    let process = Process()
    let url: String
    private let output = Pipe()

    static let script = """
        import http.client, sys, urllib.parse
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        upstream = urllib.parse.urlparse(sys.argv[1]); mode = sys.argv[2]
        class Proxy(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            def log_message(self, *args): pass
            def relay(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                asked = self.headers.get("Range")
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "range", "connection")}
                if mode in ("ignore", "wrong"):
                    asked = None
                conn = http.client.HTTPConnection(upstream.hostname, upstream.port)
                if asked: headers["Range"] = asked
                conn.request(self.command, self.path, body=body, headers=headers)
                answer = conn.getresponse(); data = answer.read(); conn.close()
                status = answer.status
                out = [(k, v) for k, v in answer.getheaders() if k.lower() not in ("content-length", "connection", "transfer-encoding")]
                if self.headers.get("Range") and mode == "wrong" and status == 200:
                    status = 206
                    out.append(("Content-Range", "bytes 0-%d/%d" % (len(data) - 1, len(data))))
                self.send_response(status)
                for k, v in out: self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers(); self.wfile.write(data)
            do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = relay
        server = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
        print("http://127.0.0.1:%d" % server.server_address[1], flush=True)
        server.serve_forever()
        """

    init(upstream: String, mode: String) throws {
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", RangeProxy.script, upstream, mode]
        process.standardOutput = output
        process.standardError = FileHandle.standardError
        process.standardInput = FileHandle.nullDevice
        try process.run()
        url = try ServerProcess.announcedURL(process, output, what: "the proxy")
    }

    /// Stops the proxy (before the server it talks to, whose shutdown waits for open connections).
    /// SIGKILL: a child of the test runner may inherit SIGTERM blocked.
    func stop() {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    deinit { stop() }
}

/// A clone cut short inside an object, continued through servers that mishandle ranges: the answer
/// is never taken for what it is not, and the clone ends whole.
@Suite struct RangeProxyCLITests {
    /// One repository of a 12 MiB object that does not compress, served, and a clone of it killed
    /// after some 2 MB of that object arrived.
    func killedClone(_ s: CLISandbox, via url: String, into folder: String) throws {
        let killed = try s.run(["clone", url, folder], environment: ["MREPO_KILL_AT": "transfer.object-partial:40"])
        #expect(killed.status == -9, "the kill point was not reached: \(killed.stderr)")
    }

    /// A sandbox with ``CLISandbox/servedIncompressibleModel()`` served, reached through a proxy
    /// in `mode`; both are stopped when it goes.
    final class Proxied {
        let sandbox: CLISandbox
        let server: ServerProcess
        let proxy: RangeProxy
        /// The repository's URL through the proxy.
        var url: String { proxy.url + "/team/big" }

        init(mode: String) throws {
            sandbox = try CLISandbox()
            try sandbox.servedIncompressibleModel()
            server = try ServerProcess(sandbox, ["served"])
            do {
                proxy = try RangeProxy(upstream: server.url, mode: mode)
            } catch {
                _ = server.stop()
                throw error
            }
        }

        deinit {
            proxy.stop()
            _ = server.stop()
        }
    }

    /// A server that ignores `Range` sends the whole object (200): it replaces the kept bytes.
    @Test func aServerThatIgnoresRangesSendsTheWholeObject() throws {
        let proxied = try Proxied(mode: "ignore")
        let s = proxied.sandbox, url = proxied.url
        let whole = try #require(try s.json(try s.ok(["clone", "--json", url, "whole"])) as? [String: Any])
        try killedClone(s, via: url, into: "copy")
        let resumed = try #require(try s.json(try s.ok(["clone", "--json", url, "copy"])) as? [String: Any])
        // The large object came whole again (small objects the killed clone had whole are kept).
        let all = try #require(whole["bytes_received"] as? Int), received = try #require(resumed["bytes_received"] as? Int)
        #expect(received <= all && received > all - 50_000, "received \(received) of \(all)")
        try s.ok(["fsck"], in: "copy")
        #expect(s.sameFiles("copy", "big"))
    }

    /// A server that answers a ranged GET with a 206 of other bytes: refused in one line, the kept
    /// bytes dropped, and the next clone downloads the object whole.
    @Test func aWrongPartialAnswerIsRefusedThenTheObjectComesWhole() throws {
        let proxied = try Proxied(mode: "wrong")
        let s = proxied.sandbox, url = proxied.url
        try killedClone(s, via: url, into: "copy")
        expectOneLineError(try s.run(["clone", url, "copy"]), contains: "for its bytes from")
        #expect(!FileManager.default.fileExists(atPath: s.path("copy")))
        try s.ok(["clone", "-q", url, "copy"])
        try s.ok(["fsck"], in: "copy")
        #expect(s.sameFiles("copy", "big"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: s.root).filter { $0.contains(".mrepo-clone-") }.isEmpty)
    }
}

extension CLISandbox {
    /// `served/team/big`: one commit of one tensor of 3 Mi floats that do not compress (an object of
    /// about 12 MiB, which a folder remote copies a MiB at a time and a server sends in pieces of
    /// tens of KiB), its files in `big`.
    func servedIncompressibleModel() throws {
        var state: UInt32 = 12345
        let values = (0..<(3 << 20)).map { _ -> Float in
            state = state &* 1_664_525 &+ 1_013_904_223
            return Float(bitPattern: (state >> 9) | 0x3f80_0000) - 1
        }
        try writeModel("big", [("w", [3 << 20], values)])
        try FileManager.default.createDirectory(atPath: path("served/team"), withIntermediateDirectories: true)
        try ok(["init", "-q", "served/team/big"])
        try ok(["commit", "-q", "--from", path("big"), "-m", "big"], in: "served/team/big")
    }
}
