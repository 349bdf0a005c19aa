import CLinux

/// Process-wide memory settings for commands that stream large tensors.
public enum MemoryPolicy {
    /// Serves every allocation of 1 MiB or more with its own mapping, returned to the system when
    /// freed. glibc's default raises this threshold after the first large free, and tensor-sized
    /// buffers then come from heap arenas that keep their pages: resident memory would grow with
    /// the number of tensors a command touches instead of staying at the largest one.
    public static func configure() {
        _ = mallopt(MREPO_M_MMAP_THRESHOLD, 1 << 20)
        _ = mallopt(MREPO_M_TRIM_THRESHOLD, 4 << 20)
    }
}
