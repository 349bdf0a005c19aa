import Delta
import Foundation
import Synchronization

/// Temporary names: `.mrepo-tmp-<pid>[.<owner>]-<random>-<name>` (``AtomicFileWriter/temporaryPath(for:)``).
enum TemporaryName {
    /// The writer's pid in a temporary name, or nil when `name` is not one.
    static func pid(of name: String) -> pid_t? { writer(of: name)?.pid }

    /// The writer's pid and, when the name has one, its owner (``AtomicFileWriter/processOwner``).
    static func writer(of name: String) -> (pid: pid_t, owner: Substring?)? {
        guard name.hasPrefix(AtomicFileWriter.temporaryPrefix) else { return nil }
        let rest = name.dropFirst(AtomicFileWriter.temporaryPrefix.count)
        guard let dash = rest.firstIndex(of: "-") else { return nil }
        return writer(tag: rest[..<dash])
    }

    /// A process tag `<pid>[.<owner>]` (``AtomicFileWriter/processTag``) read back; nil when it is none.
    static func writer(tag: Substring) -> (pid: pid_t, owner: Substring?)? {
        let dot = tag.firstIndex(of: ".")
        guard let pid = pid_t(tag[..<(dot ?? tag.endIndex)]), pid > 0 else { return nil }
        return (pid, dot.map { tag[tag.index(after: $0)...] })
    }

    /// Whether a writer's pid can be asked about here: its owner is this process's, or it has none
    /// (a name written by an older mrepo).
    static func isLocal(owner: Substring?) -> Bool {
        owner.map { $0 == AtomicFileWriter.processOwner ?? "" } ?? true
    }

    /// A fresh temporary path for this process in `directory`, ending in `-<name>`.
    static func path(in directory: String, name: String) -> String {
        AtomicFileWriter.temporaryPath(for: directory + "/" + name)
    }
}

/// Which processes are gone, asked once per pid.
struct ProcessLiveness {
    private var known: [pid_t: Bool] = [:]
    /// gc's rule for a file of another owner: a leftover once unchanged this long.
    private let othersAfter: TimeInterval?

    /// `othersAfter`: nil (every command) leaves other owners' files alone; gc passes
    /// ``othersGrace``.
    init(othersAfter: TimeInterval? = nil) {
        self.othersAfter = othersAfter
    }

    /// How long gc leaves a temporary file of another container or machine alone (by its
    /// modification time): no write of mrepo's runs a day without touching its files.
    static let othersGrace: TimeInterval = 24 * 3600

    /// Whether `name` (in `folder`) is a temporary file of a process that no longer runs. Never
    /// true for this process's files; a pid that exists, whoever owns it (EPERM), counts as
    /// running. A name of another owner (another pid namespace or machine, whose pids cannot be
    /// asked about) is a leftover only for gc, and only once unchanged for ``othersGrace``.
    mutating func isLeftover(_ name: String, in folder: String) -> Bool {
        guard let (pid, owner) = TemporaryName.writer(of: name) else { return false }
        if !TemporaryName.isLocal(owner: owner) {
            guard let othersAfter, let newest = Self.newestChange(folder + "/" + name) else { return false }
            return Double(newest) / 1e9 < Date().timeIntervalSince1970 - othersAfter
        }
        guard pid != getpid() else { return false }
        if let dead = known[pid] { return dead }
        let dead = Self.isGone(pid)
        known[pid] = dead
        return dead
    }

    /// The latest modification time (ns) of `path` and, for a folder, of everything in it (a
    /// merge's prepared folder changes only in its files); nil when it is gone.
    static func newestChange(_ path: String) -> Int64? {
        guard let st = FileStat.of(path) else { return nil }
        guard st.isDirectory else { return st.mtimeNs }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        return names.reduce(st.mtimeNs) { max($0, newestChange(path + "/" + $1) ?? $0) }
    }

    /// Whether no process has this pid (the leftover rule of docs/format.md §7.4: a pid that
    /// exists, whoever owns it, counts as running), or only a zombie does: a process that has
    /// ended, closed its files and let go of its locks, which its parent has not reaped (a
    /// container's first process often reaps nothing).
    static func isGone(_ pid: pid_t) -> Bool {
        if kill(pid, 0) != 0 { return errno == ESRCH }
        return isZombie(pid)
    }

    /// Whether `pid` is a zombie, from the state in `/proc/PID/stat` (after the parenthesised name).
    static func isZombie(_ pid: pid_t) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.range(of: ") ", options: .backwards) else { return false }
        let state = stat[close.upperBound...].first
        return state == "Z" || state == "X"
    }
}

/// The folders this process writes temporary files into, so that a later command can delete what
/// a crash left there by listing those folders only (docs/format.md §7.4).
///
/// The journal is `.mrepo/.mrepo-tmp-<pid>-<random>-journal`, created at the first note, one line
/// per folder: `dir <JSON path>` (temporary files of this process may appear in it) or
/// `mkdir <JSON path>` (created for such files, deleted again if found empty). A line is written
/// before the first temporary file goes into its folder. The journal is deleted when the
/// repository object is released; one whose process is gone is itself a leftover.
final class WriteJournal: Sendable {
    let path: String
    /// The journal's descriptor (-1 until the first note) and the lines written to it.
    private let state = Mutex<(fd: Int32, noted: Set<String>)>((-1, []))

    init(metaDirectory: String) {
        path = TemporaryName.path(in: metaDirectory, name: "journal")
    }

    deinit { close() }

    /// Temporary files of this process may appear in `directory`.
    func note(directory: String) { append("dir", directory) }

    /// `directory` is about to be created for temporary files.
    func note(created directory: String) { append("mkdir", directory) }

    private func append(_ kind: String, _ directory: String) {
        let dir = directory.hasPrefix("/") ? directory : FileManager.default.currentDirectoryPath + "/" + directory
        state.withLock { s in
            guard s.noted.insert(kind + " " + dir).inserted else { return }
            if s.fd < 0 {
                s.fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
                // Without a journal (a read-only .mrepo) only gc finds what a crash leaves.
                guard s.fd >= 0 else { return }
            }
            let fd = s.fd
            // The path as a JSON string: no name can break the line-per-entry journal.
            let line = Array("\(kind) \(JSONValue.string(dir).serialized())\n".utf8)
            _ = line.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        }
    }

    /// Deletes the journal: every temporary file of this process is gone by now.
    func close() {
        state.withLock { s in
            guard s.fd >= 0 else { return }
            Glibc.close(s.fd)
            s.fd = -1
            unlink(path)
            s.noted.removeAll()
        }
    }
}

/// Deletes temporary files and folders that processes which are no longer running left behind.
enum LeftoverSweeper {
    /// What every command does when it opens the repository: lists `.mrepo`, deletes the
    /// temporary files and folders of dead processes there (a merge's prepared files and
    /// candidate, reports), and replays their journals, listing only the folders they name.
    /// - Returns: how many files and folders were deleted.
    @discardableResult
    static func sweep(metaDirectory: String) -> Int {
        sweep(metaDirectory: metaDirectory, liveness: ProcessLiveness())
    }

    private static func sweep(metaDirectory: String, liveness: ProcessLiveness) -> Int {
        var liveness = liveness
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: metaDirectory) else { return 0 }
        let leftovers = names.filter { liveness.isLeftover($0, in: metaDirectory) }.sorted()
        guard !leftovers.isEmpty else { return 0 }
        var removed = 0
        for name in leftovers where name.hasSuffix("-journal") {
            removed += replay(metaDirectory + "/" + name, &liveness)
        }
        for name in leftovers where !name.hasSuffix("-journal") {
            removed += remove(metaDirectory + "/" + name)
        }
        return removed
    }

    /// gc's sweep: ``sweep(metaDirectory:)``, then every folder of the object store and of every
    /// working tree, main and linked (not `.mrepo`, `.git`, folders `.mrepoignore` leaves out, or
    /// symbolic links).
    @discardableResult
    static func sweepAll(roots: [String], metaDirectory: String, objectsRoot: String) -> Int {
        var liveness = ProcessLiveness(othersAfter: ProcessLiveness.othersGrace)
        var removed = sweep(metaDirectory: metaDirectory, liveness: liveness)
        removed += sweepFolder(objectsRoot, &liveness)
        for sub in (try? FileManager.default.contentsOfDirectory(atPath: objectsRoot)) ?? [] where sub.count == 2 {
            removed += sweepFolder(objectsRoot + "/" + sub, &liveness)
        }
        for root in roots {
            removed += sweepTree(root: root, relative: "", ignore: IgnoreRules(file: root + "/.mrepoignore"), &liveness)
        }
        return removed
    }

    /// Deletes a dead process's temporary files in the folders its journal names, then the
    /// folders it created that are now empty, then the journal.
    private static func replay(_ journal: String, _ liveness: inout ProcessLiveness) -> Int {
        var removed = 0
        let text = (try? String(contentsOfFile: journal, encoding: .utf8)) ?? ""
        var created: [String] = []
        for line in text.split(separator: "\n") {
            guard let space = line.firstIndex(of: " "),
                  let dir = (try? JSONValue.parse(Array(line[line.index(after: space)...].utf8)))?.stringValue else { continue }
            switch line[..<space] {
            case "dir": removed += sweepFolder(dir, &liveness)
            case "mkdir": created.append(dir)
            default: break
            }
        }
        for dir in created.reversed() where rmdir(dir) == 0 { removed += 1 }
        unlink(journal)
        return removed
    }

    /// Deletes the leftovers directly in one folder.
    private static func sweepFolder(_ dir: String, _ liveness: inout ProcessLiveness) -> Int {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return 0 }
        var removed = 0
        for name in names where liveness.isLeftover(name, in: dir) {
            removed += remove(dir + "/" + name)
        }
        return removed
    }

    private static func sweepTree(root: String, relative: String, ignore: IgnoreRules, _ liveness: inout ProcessLiveness) -> Int {
        let dir = relative.isEmpty ? root : root + "/" + relative
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return 0 }
        var removed = 0
        for name in names {
            if liveness.isLeftover(name, in: dir) {
                removed += remove(dir + "/" + name)
                continue
            }
            let rel = relative.isEmpty ? name : relative + "/" + name
            guard let st = FileStat.of(dir + "/" + name), st.isDirectory, !ignore.ignores(rel, isDirectory: true) else { continue }
            removed += sweepTree(root: root, relative: rel, ignore: ignore, &liveness)
        }
        return removed
    }

    /// Deletes a file, or a folder with its content (never following a symbolic link).
    private static func remove(_ path: String) -> Int {
        guard let st = FileStat.of(path) else { return 0 }
        if st.isDirectory {
            return (try? FileManager.default.removeItem(atPath: path)) == nil ? 0 : 1
        }
        return unlink(path) == 0 ? 1 : 0
    }
}
