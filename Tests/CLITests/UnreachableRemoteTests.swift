import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Remotes whose endpoint refuses connections: every command that talks to one ends by itself
/// with one plain line naming the remote and what happened (it used to wait for the HTTP
/// client's ten-minute request deadline, once per retry).
@Suite struct UnreachableRemoteTests {
    /// A loopback port nothing listens on: bound to port 0 (the kernel picks a free one), then closed.
    static func closedPort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw CLIError("socket failed") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw CLIError("bind failed") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    enum Kind: String, CaseIterable, Sendable { case s3, http }
    enum Command: String, CaseIterable, Sendable { case clone, fetch, push, pull, lsRemote = "ls-remote" }

    static let cases: [(Kind, Command)] = Kind.allCases.flatMap { k in Command.allCases.map { (k, $0) } }

    @Test(arguments: cases)
    func refusedConnectionIsOneLine(kind: Kind, command: Command) throws {
        let s = try CLISandbox()
        let port = try UnreachableRemoteTests.closedPort()
        let url = kind == .s3 ? "s3://bucket/prefix/name" : "http://127.0.0.1:\(port)/team/name"
        let env = ["AWS_ENDPOINT_URL": "http://127.0.0.1:\(port)", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y",
                   "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent"]
        try s.writeModel("model", [("w", [2, 2], [1, 2, 3, 4])])
        try s.ok(["init", "-q", "repo"])
        try s.ok(["commit", "-q", "--from", "../model", "-m", "one"], in: "repo")
        try s.ok(["remote", "add", "origin", url], in: "repo")
        let log = try s.ok(["log", "--oneline"], in: "repo").stdout
        let r: CLIResult
        switch command {
        case .clone: r = try s.run(["clone", url, "copy"], environment: env)
        case .fetch: r = try s.run(["fetch", "origin"], in: "repo", environment: env)
        case .push: r = try s.run(["push", "origin", "main"], in: "repo", environment: env)
        case .pull: r = try s.run(["pull"], in: "repo", environment: env)
        case .lsRemote: r = try s.run(["ls-remote", "origin"], in: "repo", environment: env)
        }
        expectOneLineError(r, contains: "connection refused")
        #expect(r.stderr.hasPrefix("mrepo: error: \(url): cannot connect to "), "names the remote first: \(r.stderr)")
        #expect(r.stderr.contains("127.0.0.1:\(port)"), "names the endpoint: \(r.stderr)")
        for word in ["NIO", "HTTPClientError", "IOError", "errno"] {
            #expect(!r.stderr.contains(word), "no error dumps: \(r.stderr)")
        }
        // Nothing was changed or left behind.
        #expect(!FileManager.default.fileExists(atPath: s.path("copy")))
        #expect(try FileManager.default.contentsOfDirectory(atPath: s.root).filter { $0.contains("mrepo-clone") }.isEmpty)
        #expect(try s.ok(["log", "--oneline"], in: "repo").stdout == log)
        #expect(try s.run(["rev-parse", "origin/main"], in: "repo").status != 0, "no remote-tracking ref appeared")
    }

    /// A remote's name that does not exist is said to be one (it was taken for a folder: "origin:
    /// not an mrepo repository"), in a repository and outside one, as fetch and push say it.
    @Test(arguments: [["ls-remote"], ["ls-remote", "origin"], ["ls-remote", "upstream"]])
    func lsRemoteOfNoSuchRemote(arguments: [String]) throws {
        let s = try CLISandbox()
        try s.ok(["init", "-q", "repo"])
        let name = arguments.last == "upstream" ? "upstream" : "origin"
        let r = try s.run(arguments, in: "repo")
        expectOneLineError(r, contains: "no remote named '\(name)'")
        if arguments.count == 2, name == "upstream" {
            expectOneLineError(try s.run(arguments), contains: "no remote named 'upstream'")
        }
    }
}
