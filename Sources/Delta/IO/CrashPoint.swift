import Glibc
import Synchronization

/// Named instants at which a test can make mrepo kill itself with SIGKILL.
///
/// `MREPO_KILL_AT=name` (or `name:N`, the N-th time the point is reached) makes the process send
/// itself SIGKILL there: no cleanup runs, exactly as when the machine loses power or the user
/// kills the process. The crash-safety tests use it to stop the real binary at chosen points of
/// `commit`, `switch`, `gc` and `export`, then check that `fsck` finds the repository intact.
/// Without the variable, ``reach(_:)`` costs one comparison.
public enum CrashPoint {
    private static let target: (name: String, count: Int)? = {
        guard let raw = getenv("MREPO_KILL_AT") else { return nil }
        let text = String(cString: raw)
        let parts = text.split(separator: ":")
        guard let name = parts.first else { return nil }
        return (String(name), parts.count > 1 ? Int(parts[1]) ?? 1 : 1)
    }()
    private static let hits = Atomic<Int>(0)

    /// Kills the process if `name` is the requested point and this is the requested occurrence.
    @inline(__always)
    public static func reach(_ name: StaticString) {
        guard let target else { return }
        check(name.description, target)
    }

    private static func check(_ name: String, _ target: (name: String, count: Int)) {
        guard name == target.name else { return }
        if hits.add(1, ordering: .relaxed).newValue == target.count {
            kill(getpid(), SIGKILL)
        }
    }
}
