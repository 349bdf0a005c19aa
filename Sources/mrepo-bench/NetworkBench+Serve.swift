import Delta
import Foundation

// The servers of the network section, huggingface_hub's snapshot_download, the 32-client memory
// run, and the tables.

extension NetBench {
    /// Starts `mrepo serve` over the served folder on a free port of 127.0.0.1; returns it and its URL.
    func startServe(folder: String, name: String) throws -> (service: Service, url: String) {
        let service = try Service(name: name, arguments: [mrepo, "serve", serveRoot, "--host", "127.0.0.1", "--port", "0",
                                                          "--tokens", work + "/tokens"], environment: o.mrepoEnvironment, folder: folder)
        var url = ""
        do {
            try service.waitUntil {
                let log = (try? String(contentsOfFile: service.log, encoding: .utf8)) ?? ""
                guard let r = log.range(of: "listening on ") else { return false }
                url = String(log[r.upperBound...].prefix { $0 != " " && $0 != "\n" })
                return true
            }
        } catch {
            service.stop()
            throw error
        }
        return (service, url)
    }

    /// Starts a fresh SeaweedFS (`weed mini`, loopback only, telemetry off, SigV4 enforced with the
    /// bench's key) with the bench's bucket; returns it, its S3 endpoint, its data folder and the
    /// gRPC sockets weed puts in /tmp whatever its options (named by port), for the caller to delete
    /// once it stopped.
    func startWeed(tag: String) throws -> (Service, String, String, [String]) {
        let ports = try freePorts(11)
        let data = work + "/weed-\(tag)"
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        let arguments = [
            // Logs and local sockets in the data folder, not in /tmp.
            tools.weed, "-logdir=\(data)", "mini", "-dir=\(data)", "-s3.localSocket=\(data)/s3.sock", "-filer.localSocket=\(data)/filer.sock", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false",
            "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-s3.port=\(ports[0])", "-s3.port.grpc=\(ports[1])", "-master.port=\(ports[2])", "-master.port.grpc=\(ports[3])",
            "-volume.port=\(ports[4])", "-volume.port.grpc=\(ports[5])", "-filer.port=\(ports[6])", "-filer.port.grpc=\(ports[7])",
            "-admin.port=\(ports[8])", "-admin.port.grpc=\(ports[9])", "-debug.port=\(ports[10])",
            "-bucket=\(NetBench.bucket)",
        ]
        let service = try Service(name: "weed-\(tag)", arguments: arguments,
                                  environment: ["AWS_ACCESS_KEY_ID": NetBench.s3Key, "AWS_SECRET_ACCESS_KEY": NetBench.s3Secret], folder: work)
        let sockets = [("master", ports[3]), ("volume", ports[5]), ("filer", ports[7]), ("admin", ports[9])]
            .map { "/tmp/seaweedfs-\($0.0)-grpc-\($0.1).sock" }
        let endpoint = "http://127.0.0.1:\(ports[0])"
        let sig = ["--aws-sigv4", "aws:amz:us-east-1:s3", "--user", "\(NetBench.s3Key):\(NetBench.s3Secret)"]
        do {
            try service.waitUntil(seconds: 120) { httpStatus(endpoint + "/" + NetBench.bucket + "/", sig) == 200 }
        } catch {
            service.stop()
            sockets.forEach { unlink($0) }
            throw error
        }
        return (service, endpoint, data, sockets)
    }

    /// snapshot_download from `mrepo serve` against curl of the exported files from a static
    /// server, then the server's peak RSS while 32 clients download the last fine-tune at once.
    func snapshotAndMemory() throws {
        let last = family.models.last!
        let exported = work + "/export"
        try mrepoRun(["-C", source, "export", "-q", last, exported], what: "mrepo export of \(last)")
        let files = (FileManager.default.subpaths(atPath: exported) ?? []).filter { rel in
            var isDir: ObjCBool = false
            return FileManager.default.fileExists(atPath: exported + "/" + rel, isDirectory: &isDir) && !isDir.boolValue && !rel.hasPrefix(".")
        }.sorted()
        let bytes = files.reduce(0) { $0 + fileSize(exported + "/" + $1) }
        let folder = work + "/services"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let server = try startServe(folder: folder, name: "serve-hf")
        defer { server.service.stop() }
        let port = try freePorts(1)[0]
        let staticServer = try Service(name: "static-export", arguments: ["python3", "-m", "http.server", "\(port)", "--bind", "127.0.0.1",
                                                                          "--directory", exported], folder: folder)
        defer { staticServer.stop() }
        let staticURL = "http://127.0.0.1:\(port)"
        try staticServer.waitUntil { httpStatus(staticURL + "/" + files[0]) == 200 }
        let workers = 8
        let script = """
            import sys, time
            from huggingface_hub import snapshot_download
            t = time.monotonic()
            p = snapshot_download(repo_id="bench/source", revision=sys.argv[1], cache_dir=sys.argv[2], max_workers=\(workers))
            print(f"{time.monotonic() - t:.6f}")
            print(p)
            """
        var hfEnv = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("HF_") }
        hfEnv["HF_ENDPOINT"] = server.url
        hfEnv["HF_TOKEN"] = token
        hfEnv["HF_HUB_DISABLE_TELEMETRY"] = "1"
        hfEnv["HF_HUB_DISABLE_XET"] = "1"
        hfEnv["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        var pairs: [NetPair] = []
        for r in 0..<o.repeats {
            progress("network: \(family.name): snapshot_download, run \(r + 1) of \(o.repeats)")
            let dir = work + "/plain-export-\(r)"
            _ = try Subprocess.run(["sync"])
            let ref = try CurlJob.download(files.map { (url: staticURL + "/" + $0, output: dir + "/" + $0) }, streams: workers, extra: ["--create-dirs"], folder: work)
            try? FileManager.default.removeItem(atPath: dir)
            let cache = work + "/hf-cache-\(r)"
            _ = try Subprocess.run(["sync"])
            var env = hfEnv
            env["HF_HOME"] = work + "/hf-home-\(r)"
            let m = try Subprocess.run([tools.python, "-c", script, last, cache], captureOutput: true, environment: env)
            let lines = m.output.split(separator: "\n").map(String.init)
            guard m.status == 0, lines.count >= 2, let seconds = Double(lines[0]) else {
                throw BenchError("snapshot_download from mrepo serve failed (exit \(m.status))")
            }
            if r == 0 {
                for file in files where file.hasSuffix(".safetensors") {
                    try Subprocess.check(["cmp", "-s", exported + "/" + file, lines[1] + "/" + file])
                }
            }
            pairs.append(NetPair(mrepoBytes: bytes, mrepoSeconds: seconds, refBytes: bytes, refSeconds: ref.seconds))
            try? FileManager.default.removeItem(atPath: cache)
            try? FileManager.default.removeItem(atPath: work + "/hf-home-\(r)")
        }
        print("`snapshot_download` of `\(last)` (\(files.count) files, \(mb(bytes)), huggingface_hub \(workers) workers) from `mrepo serve` "
            + "against curl ×\(workers) of the same files from `python3 -m http.server`, byte-exact (cmp):\n")
        printThroughput([("mrepo serve", "snapshot_download / curl ×\(workers) from a static server", pairs, nil)])
        server.service.stop()
        try memoryUnderLoad(file: exported + "/model.safetensors", revision: last)
        try? FileManager.default.removeItem(atPath: exported)
    }

    /// 32 concurrent downloads of one safetensors file from a fresh `mrepo serve`; its VmHWM after.
    func memoryUnderLoad(file: String, revision: String) throws {
        let clients = 32
        let folder = work + "/services"
        progress("network: \(family.name): \(clients) concurrent downloads")
        let server = try startServe(folder: folder, name: "serve-rss")
        defer { server.service.stop() }
        let url = server.url + "/bench/source/resolve/\(revision)/model.safetensors"
        let size = fileSize(file)
        let m = try CurlJob.download(Array(repeating: (url: url, output: "/dev/null"), count: clients), streams: clients,
                                     extra: ["-H", "Authorization: Bearer \(token)"], folder: work)
        guard let peak = server.service.peakRSS() else { throw BenchError("cannot read the server's VmHWM") }
        print("Peak RSS of `mrepo serve` (VmHWM of its process, started fresh) while \(clients) clients (curl --parallel, one connection "
            + "each) download `\(revision)`'s model.safetensors (\(mb(size))) at once:\n")
        header(["clients", "bytes served", "time", "aggregate", "server peak RSS", "target", ""])
        row(["\(clients)", mb(size * clients), secs(m.seconds), mbps(size * clients, m.seconds), mib(peak), "< \(mib(servePeakTarget))",
             verdict(peak < servePeakTarget)])
        print("")
    }

    /// The throughput table: medians of mrepo's and the reference's rates, and of their ratio.
    func printThroughput(_ rows: [(String, String, [NetPair], Double?)]) {
        let withFiles = rows.contains { $0.2.contains { $0.filesSeconds != nil } }
        header(["remote", "operation / plain reference", "mrepo", "reference", "ratio (median)", "runs", "target", ""]
            + (withFiles ? ["files (curl ×\(NetBench.streams))", "ratio to files (median)", "runs"] : []))
        for (remote, what, pairs, target) in rows {
            let ours = median(pairs.map { Double($0.mrepoBytes) / $0.mrepoSeconds })
            let theirs = median(pairs.map { Double($0.refBytes) / $0.refSeconds })
            let ratio = median(pairs.map(\.ratio))
            let runs = pairs.map { String(format: "%.2f", $0.ratio) }.joined(separator: ", ")
            var cells = [remote, what, String(format: "%.0f MB/s", ours / 1e6), String(format: "%.0f MB/s", theirs / 1e6), String(format: "%.2f", ratio), runs,
                         target.map { "≥ \($0)" } ?? "", target.map { verdict(ratio >= $0) } ?? ""]
            if withFiles {
                let seconds = pairs.compactMap(\.filesSeconds)
                let ratios = pairs.compactMap(\.filesRatio)
                cells += seconds.count == pairs.count
                    ? [String(format: "%.0f MB/s", median(seconds.map { Double(filesBytes) / $0 }) / 1e6), String(format: "%.2f", median(ratios)),
                       ratios.map { String(format: "%.2f", $0) }.joined(separator: ", ")]
                    : ["", "", ""]
            }
            row(cells)
        }
        print("")
    }
}
