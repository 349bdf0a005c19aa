import Foundation
import Testing
@testable import Serve

@Suite("mrepo serve: tokens, request paths, ranges")
struct ServeUnitTests {
    @Test("tokens grant their access; unknown, empty and near-miss tokens grant nothing")
    func tokens() throws {
        let store = TokenStore(entries: [("read-token-1", .read), ("write-token-1", .write)])
        #expect(store.access(for: "read-token-1") == .read)
        #expect(store.access(for: "write-token-1") == .write)
        #expect(store.access(for: "write-token-2") == nil)
        #expect(store.access(for: "") == nil)
        #expect(store.access(for: "read-token-1 ") == nil)
    }

    @Test("a tokens file: comments and blank lines; a bad line names the file and line, never the token")
    func tokensFile() throws {
        let path = NSTemporaryDirectory() + "mrepo-tokens-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try "# team\n\nabcdefgh-1 read\nabcdefgh-2\twrite\n".write(toFile: path, atomically: true, encoding: .utf8)
        let store = try TokenStore.load(path: path)
        #expect(store.count == 2 && store.access(for: "abcdefgh-2") == .write)
        try "abcdefgh-secret admin\n".write(toFile: path, atomically: true, encoding: .utf8)
        do {
            _ = try TokenStore.load(path: path)
            Issue.record("a bad access was accepted")
        } catch let error as ServeError {
            #expect(error.description.contains(":1:") && !error.description.contains("secret"))
        }
        // CR LF line ends (a file from Windows) read as lines.
        try "abcdefgh-1 read\r\nabcdefgh-2 write\r\n".write(toFile: path, atomically: true, encoding: .utf8)
        #expect(try TokenStore.load(path: path).access(for: "abcdefgh-2") == .write)
        // A token listed twice would get the greater access: refused, naming both lines.
        try "abcdefgh-secret read\nabcdefgh-other read\nabcdefgh-secret write\n".write(toFile: path, atomically: true, encoding: .utf8)
        do {
            _ = try TokenStore.load(path: path)
            Issue.record("a token listed twice was accepted")
        } catch let error as ServeError {
            #expect(error.description.contains(":3: this token is listed already on line 1") && !error.description.contains("secret"))
        }
    }

    @Test("paths: encoded slashes stay in their component; '..' and '.' are refused, encoded or not")
    func paths() throws {
        let p = try RequestPath(rawPath: "/api/models/ns/m/revision/feature%2Fx", rawQuery: "recursive=true&expand=1")
        #expect(p.components == ["api", "models", "ns", "m", "revision", "feature/x"])
        #expect(p.query["recursive"] == "true")
        for bad in ["/ns/m/resolve/main/../x", "/ns/m/resolve/main/%2e%2E/x", "/ns/./m", "/ns//m", "/ns/m/%00", "/ns/m/%zz"] {
            #expect(throws: HubError.self) { try RequestPath(rawPath: bad, rawQuery: nil) }
        }
        #expect(throws: HubError.self) { try RequestPath.repoPath(["a%2F..%2Fb".removingPercentEncoding!][...]) }
        #expect(try RequestPath.repoPath(["1_Pooling", "config.json"][...]) == "1_Pooling/config.json")
        #expect(throws: HubError.self) { try RequestPath.revision("a..b") }
        #expect(try RequestPath.revision("feature/x") == "feature/x")
    }

    @Test("repository ids are two plain names inside the root")
    func ids() {
        #expect(RepoRegistry.isValidName("minilm-L6_v2.1"))
        for bad in ["", ".", "..", ".hidden", "-x", "a..b", "a/b", "x.git", String(repeating: "a", count: 97), "é"] {
            #expect(!RepoRegistry.isValidName(bad), "\(bad)")
        }
    }

    @Test("Range headers: open, closed and suffix ranges; past the end is 416; several ranges get the whole file")
    func ranges() throws {
        #expect(try FileBody.parseRange(nil, size: 100) == nil)
        #expect(try FileBody.parseRange("bytes=10-", size: 100) == 10..<100)
        #expect(try FileBody.parseRange("bytes=10-19", size: 100) == 10..<20)
        #expect(try FileBody.parseRange("bytes=90-500", size: 100) == 90..<100)
        #expect(try FileBody.parseRange("bytes=-5", size: 100) == 95..<100)
        #expect(try FileBody.parseRange("bytes=0-1,5-6", size: 100) == nil)
        #expect(try FileBody.parseRange("bytes=20-10", size: 100) == nil)
        #expect(throws: FileBody.RangeNotSatisfiable.self) { try FileBody.parseRange("bytes=100-", size: 100) }
        // The last zero bytes are no bytes (it was answered with the whole file).
        #expect(throws: FileBody.RangeNotSatisfiable.self) { try FileBody.parseRange("bytes=-0", size: 100) }
    }

    @Test("git blob ids and LFS pointers are git's")
    func gitIDs() {
        // `printf 'hello\n' | git hash-object --stdin`
        #expect(GitHash.blobID(Array("hello\n".utf8)) == "ce013625030ba8dba906f756967f9e9ca394464a")
        #expect(GitHash.isLFS(path: "model.safetensors", size: 10))
        #expect(!GitHash.isLFS(path: "config.json", size: 1000))
        #expect(GitHash.isLFS(path: "vocab.txt", size: 10 << 20))
    }
}
