import Glibc

/// The process's limit on open file descriptors. A fetch holds each received object's file open
/// (locked) until its batch is installed, so a download of many small objects needs hundreds of
/// descriptors at once, and the soft limit of a login shell is often 1024.
public enum OpenFileLimit {
    /// Raises the soft limit to the hard one (as Go's runtime and many servers do), capped
    /// at `cap` so that code looping over every descriptor stays cheap. Leaves it alone on error.
    public static func raise(cap: Int = 1 << 16) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
        let wanted = min(limit.rlim_max, rlim_t(cap))
        guard limit.rlim_cur < wanted else { return }
        limit.rlim_cur = wanted
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }

    /// At start: raises a soft limit below `usual` to the hard one or `usual`, whichever is lower
    /// (1024 is the usual soft limit, so the programs a command starts lose nothing by it), and
    /// says whether the process may then open at least `minimum` files. Below that, opening the
    /// history, its locks and a connection's event loop would fail at unforeseeable places.
    public static func prepare(usual: Int = 1024, minimum: Int = 32) -> Bool {
        if current < usual { raise(cap: usual) }
        return current >= minimum
    }

    /// How many descriptors the process has open now (from `/proc/self/fd`; 0 where it cannot tell).
    public static var inUse: Int {
        guard let dir = opendir("/proc/self/fd") else { return 0 }
        defer { closedir(dir) }
        var count = 0
        while let entry = readdir(dir) {
            if entry.pointee.d_name.0 != UInt8(ascii: ".") { count += 1 }
        }
        return max(0, count - 1)  // the folder's own descriptor
    }

    /// The current soft limit (an infinite or unreadable one as `Int.max`).
    public static var current: Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < rlim_t(Int.max) else { return Int.max }
        return Int(limit.rlim_cur)
    }
}
