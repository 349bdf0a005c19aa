import Glibc
import Synchronization

/// Named instants at which a test can make mrepo kill itself with SIGKILL, or pause.
///
/// `MREPO_KILL_AT=name` (or `name:N`, the N-th time the point is reached) makes the process send
/// itself SIGKILL there: no cleanup runs, exactly as when the machine loses power or the user
/// kills the process. The crash-safety tests use it to stop the real binary at chosen points of
/// `commit`, `switch`, `gc` and `export`, then check that `fsck` finds the repository intact.
///
/// `MREPO_PAUSE_AT=name` (or `name:N`) makes the process print `mrepo: paused at name` on standard
/// error when it reaches the point, then wait until a line (or end of file) arrives on standard
/// input. Tests use it to hold one command at a known instant while another runs (a reader in the
/// middle of an export while `gc` starts), without sleeping.
///
/// Without the variables, ``reach(_:)`` costs one comparison.
public enum CrashPoint {
    private static func parse(_ variable: String) -> (name: String, count: Int)? {
        guard let raw = getenv(variable) else { return nil }
        let text = String(cString: raw)
        let parts = text.split(separator: ":")
        guard let name = parts.first else { return nil }
        return (String(name), parts.count > 1 ? Int(parts[1]) ?? 1 : 1)
    }

    private static let killTarget = parse("MREPO_KILL_AT")
    private static let pauseTarget = parse("MREPO_PAUSE_AT")
    private static let enabled = killTarget != nil || pauseTarget != nil
    private static let killHits = Atomic<Int>(0)
    private static let pauseHits = Atomic<Int>(0)

    /// Kills or pauses the process if `name` is the requested point and this is the requested occurrence.
    @inline(__always)
    public static func reach(_ name: StaticString) {
        guard enabled else { return }
        check(name.description)
    }

    private static func check(_ name: String) {
        if let target = pauseTarget, name == target.name, pauseHits.add(1, ordering: .relaxed).newValue == target.count {
            pause(at: name)
        }
        if let target = killTarget, name == target.name, killHits.add(1, ordering: .relaxed).newValue == target.count {
            kill(getpid(), SIGKILL)
        }
    }

    private static func pause(at name: String) {
        let line = Array("mrepo: paused at \(name)\n".utf8)
        _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
        var byte: UInt8 = 0
        while true {
            let n = read(0, &byte, 1)
            if n < 0, errno == EINTR { continue }
            if n <= 0 || byte == 10 { return }
        }
    }
}
