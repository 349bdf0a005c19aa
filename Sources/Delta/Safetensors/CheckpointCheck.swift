import Foundation

/// Validates checkpoint files: safetensors headers, shard indexes, and (optionally) that every
/// floating-point element is finite. Used by `mrepo check` and the sample pre-commit hook.
public enum CheckpointCheck {
    /// One problem found.
    public struct Finding: Sendable, Equatable, CustomStringConvertible {
        public var file: String
        public var tensor: String?
        public var problem: String
        /// One line, whatever the names in it hold.
        public var description: String {
            (tensor.map { "\(file): tensor '\($0)': \(problem)" } ?? "\(file): \(problem)").escapingControlCharacters
        }
    }

    /// What was checked.
    public struct Report: Sendable {
        public var files = 0
        public var tensors = 0
        public var bytes = 0
        public var findings: [Finding] = []
    }

    /// Checks files, or every file under folders.
    /// - Parameter finite: also scan floating-point tensors for NaN and ±Inf.
    public static func check(paths: [String], finite: Bool) -> Report {
        var report = Report()
        for path in paths {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
                report.findings.append(Finding(file: path, tensor: nil, problem: "no such file or directory"))
                continue
            }
            if isDir.boolValue {
                let files = (FileManager.default.enumerator(atPath: path)?.compactMap { $0 as? String } ?? [])
                    .filter { !$0.hasPrefix(".mrepo/") && !$0.hasPrefix(".git/") }.sorted()
                // Files are named inside their folder, and after it (as given) when several paths
                // are checked: `check a b` says which one holds a broken `model.safetensors`.
                var shown = path
                while shown.count > 1, shown.hasSuffix("/") { shown.removeLast() }
                shown = paths.count == 1 || shown == "." ? "" : shown.hasSuffix("/") ? shown : shown + "/"
                for f in files where f.hasSuffix(".safetensors") {
                    checkFile(path + "/" + f, name: shown + f, finite: finite, into: &report)
                }
                for f in files where ShardIndex.isIndexFile(f) {
                    checkIndex(folder: path, indexName: f, shownFolder: shown, into: &report)
                }
            } else if ShardIndex.isIndexFile(path) {
                let (dir, name) = splitPath(path)
                checkIndex(folder: dir.isEmpty ? "." : dir, indexName: name, into: &report)
            } else {
                checkFile(path, name: path, finite: finite, into: &report)
            }
        }
        return report
    }

    static func checkFile(_ path: String, name: String, finite: Bool, into report: inout Report) {
        report.files += 1
        let file: SafetensorsFile
        do {
            file = try SafetensorsFile(path: path, displayName: name)
        } catch {
            report.findings.append(Finding(file: name, tensor: nil, problem: "\(error)".replacingOccurrences(of: "\(name): ", with: "")))
            return
        }
        report.tensors += file.tensors.count
        report.bytes += file.map.count
        guard finite else { return }
        for t in file.tensors where t.dtype.isFloatingPoint {
            let (nan, inf) = countNonFinite(t.dtype, file.data(of: t))
            file.release(t)
            if nan + inf > 0 {
                report.findings.append(Finding(file: name, tensor: t.name, problem: "\(nan) NaN and \(inf) infinite values of \(t.elementCount)"))
            }
        }
    }

    /// - Parameter shownFolder: what findings put before `indexName` and its shards' names.
    static func checkIndex(folder: String, indexName: String, shownFolder: String = "", into report: inout Report) {
        let first = report.findings.count
        defer {
            for i in first..<report.findings.count { report.findings[i].file = shownFolder + report.findings[i].file }
        }
        guard let data = FileManager.default.contents(atPath: folder + "/" + indexName) else {
            report.findings.append(Finding(file: indexName, tensor: nil, problem: "cannot read"))
            return
        }
        let index: ShardIndex
        do {
            index = try ShardIndex.parse(Array(data), file: indexName)
        } catch {
            report.findings.append(Finding(file: indexName, tensor: nil, problem: "\(error)".replacingOccurrences(of: "\(indexName): ", with: "")))
            return
        }
        let dir = splitPath(indexName).dir
        let prefix = dir.isEmpty ? "" : dir + "/"
        var listed: [String: Set<String>] = [:]
        for (tensor, shard) in index.weightMap { listed[shard, default: []].insert(tensor) }
        for shard in index.shardFiles {
            guard let file = try? SafetensorsFile(path: folder + "/" + prefix + shard, displayName: shard) else {
                report.findings.append(Finding(file: indexName, tensor: nil, problem: "shard '\(shard)' is missing or invalid"))
                continue
            }
            let present = Set(file.tensors.map(\.name))
            for t in listed[shard, default: []].subtracting(present).sorted() {
                report.findings.append(Finding(file: indexName, tensor: t, problem: "listed in shard '\(shard)', which does not hold it"))
            }
            for t in present.subtracting(listed[shard, default: []]).sorted() {
                // A tensor the index puts in another shard is in two files (commit says so too).
                let elsewhere = index.weightMap.first { $0.tensor == t }.map { " for this shard (it lists it in '\($0.file)')" } ?? ""
                report.findings.append(Finding(file: prefix + shard, tensor: t, problem: "not listed in \(indexName)\(elsewhere)"))
            }
        }
    }

    /// Counts NaN and infinite elements by their bit patterns.
    public static func countNonFinite(_ dtype: DType, _ bytes: UnsafeRawBufferPointer) -> (nan: Int, inf: Int) {
        var nan = 0, inf = 0
        func scan<W: FixedWidthInteger & UnsignedInteger>(_: W.Type, exponent: W, mantissa: W) {
            let n = bytes.count / MemoryLayout<W>.size
            for i in 0..<n {
                let u = bytes.loadUnaligned(fromByteOffset: i * MemoryLayout<W>.size, as: W.self)
                if u & exponent == exponent {
                    if u & mantissa != 0 { nan += 1 } else { inf += 1 }
                }
            }
        }
        switch dtype {
        case .f32: scan(UInt32.self, exponent: 0x7F80_0000, mantissa: 0x007F_FFFF)
        case .bf16: scan(UInt16.self, exponent: 0x7F80, mantissa: 0x007F)
        case .f16: scan(UInt16.self, exponent: 0x7C00, mantissa: 0x03FF)
        case .f64: scan(UInt64.self, exponent: 0x7FF0_0000_0000_0000, mantissa: 0x000F_FFFF_FFFF_FFFF)
        case .f8e5m2: scan(UInt8.self, exponent: 0x7C, mantissa: 0x03)
        case .f8e4m3:
            for b in bytes where b & 0x7F == 0x7F { nan += 1 }
        default: break
        }
        return (nan, inf)
    }
}
