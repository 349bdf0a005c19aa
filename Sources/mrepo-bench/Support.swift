import Delta
import Foundation

// Helpers shared by the sections: formatting, files, the binaries, warm caches.

func mb(_ bytes: Int) -> String { String(format: "%.1f MB", Double(bytes) / 1e6) }
func gb(_ bytes: Int) -> String { String(format: "%.2f GB", Double(bytes) / 1e9) }
func mbps(_ bytes: Int, _ seconds: Double) -> String { String(format: "%.0f MB/s", Double(bytes) / 1e6 / seconds) }
func secs(_ seconds: Double) -> String { String(format: "%.2f s", seconds) }
func mib(_ bytes: Int) -> String { "\(bytes / 1_048_576) MiB" }
func fileSize(_ path: String) -> Int { (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0 }

/// One Markdown table row.
func row(_ cells: [String]) { print("| " + cells.joined(separator: " | ") + " |") }

/// A Markdown table header and its rule.
func header(_ cells: [String]) {
    row(cells)
    print("|" + String(repeating: "---|", count: cells.count))
}

/// "met" or "missed" against a target.
func verdict(_ met: Bool) -> String { met ? "met" : "missed" }

/// Progress on standard error (standard output is the Markdown report).
func progress(_ line: String) { FileHandle.standardError.write(Data((line + "\n").utf8)) }

/// The mrepo binary built beside this one.
func mrepoBinary() throws -> String {
    let candidate = ownDirectory().appendingPathComponent("mrepo").path
    guard FileManager.default.isExecutableFile(atPath: candidate) else {
        throw BenchError("no mrepo binary beside mrepo-bench (\(candidate)); run `swift build -c release --product mrepo` first, or scripts/bench.sh")
    }
    return candidate
}

func ownDirectory() -> URL {
    URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
}

/// The repository's `scripts/` folder: beside the build folder (.build/release/mrepo-bench), else under the current folder.
func scriptsDirectory() throws -> String {
    let candidates = [ownDirectory().appendingPathComponent("../../../scripts").standardizedFileURL.path,
                      ownDirectory().appendingPathComponent("../../scripts").standardizedFileURL.path,
                      FileManager.default.currentDirectoryPath + "/scripts"]
    guard let dir = candidates.first(where: { FileManager.default.fileExists(atPath: $0 + "/mergekit_parity.py") }) else {
        throw BenchError("cannot find mrepo's scripts/ folder (run mrepo-bench from the repository's root)")
    }
    return dir
}

func machineLine() -> String {
    let cpu = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?
        .split(separator: "\n").first { $0.hasPrefix("model name") }?
        .split(separator: ":").last?.trimmingCharacters(in: .whitespaces) ?? "unknown CPU"
    let mem = (try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8))?
        .split(separator: "\n").first?.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
    return "\(cpu), \(ProcessInfo.processInfo.activeProcessorCount) cores, \(mem / 1_048_576) GiB RAM"
}

/// The first line a tool prints about its version, or "not found".
func toolVersion(_ command: [String]) -> String {
    guard let m = try? Subprocess.run(command, captureOutput: true), m.status == 0 else { return "not found" }
    return m.output.split(separator: "\n").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? "?"
}

/// Free bytes on the file system holding `path`.
func freeBytes(_ path: String) -> Int {
    var s = statvfs()
    guard statvfs(path, &s) == 0 else { return 0 }
    return Int(s.f_bavail) * Int(s.f_frsize)
}

/// Writes generated inputs into `folder` unless a complete earlier run left them there.
func generateOnce(_ folder: String, what: String, _ write: () throws -> Void) throws {
    guard !FileManager.default.fileExists(atPath: folder + "/.complete") else { return }
    progress("generating the \(what) in \(folder)")
    try? FileManager.default.removeItem(atPath: folder)
    try write()
    _ = FileManager.default.createFile(atPath: folder + "/.complete", contents: nil)
}

/// Syncs (no dirty pages left for the next command to wait on) and reads `warm` (files or folders) once.
func settle(warm: [String]) throws {
    _ = try Subprocess.run(["sync"])
    for path in warm {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else { continue }
        if isDir.boolValue {
            _ = try Subprocess.run(["sh", "-c", "find '\(path)' -type f -exec cat {} + > /dev/null"])
        } else {
            _ = try Subprocess.run(["cat", path])
        }
    }
}

/// Replaces the checkpoint files of a working tree with hard links to `source`'s files (no copy).
func linkCheckpoint(from source: String, into repo: String) throws {
    for name in try FileManager.default.contentsOfDirectory(atPath: source) where !name.hasPrefix(".") {
        unlink(repo + "/" + name)
        guard link(source + "/" + name, repo + "/" + name) == 0 else {
            throw BenchError("cannot link \(source)/\(name) into \(repo): \(String(cString: strerror(errno)))")
        }
    }
}

/// The safetensors files of a checkpoint folder (one file or shards), sorted.
func safetensorsFiles(_ folder: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).filter { $0.hasSuffix(".safetensors") }.sorted().map { folder + "/" + $0 }
}

/// The newest commit's new stored bytes from `mrepo du --json`.
func lastNewStored(_ json: String) throws -> Int {
    guard let v = try? JSONValue.parse(Array(json.utf8)), let commits = v["commits"]?.arrayValue,
          let last = commits.last, let n = last["new_stored_bytes"]?.intValue
    else { throw BenchError("cannot read `mrepo du --json`") }
    return n
}

/// Runs an mrepo command that must succeed, timed, in `o`'s environment.
func timedMrepo(_ arguments: [String], _ o: Options, what: String, captureOutput: Bool = false,
                extraEnvironment: [String: String] = [:]) throws -> Measured {
    let m = try Subprocess.run(arguments, captureOutput: captureOutput, environment: o.mrepoEnvironment.merging(extraEnvironment) { $1 })
    guard m.status == 0 else { throw BenchError("\(what) failed (exit \(m.status))") }
    return m
}

func zstdSize(_ path: String, level: Int = 3) throws -> Int {
    let out = NSTemporaryDirectory() + "/mrepo-bench-\(getpid()).zst"
    try Subprocess.check(["zstd", "-\(level)", "-f", "-q", path, "-o", out])
    defer { unlink(out) }
    return fileSize(out)
}
