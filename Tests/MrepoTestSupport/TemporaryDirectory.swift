import Foundation

/// Test repositories are scratch: in-process code does not wait for the disk (`MREPO_FSYNC=0`,
/// docs/format.md §7.5), unless the environment already says otherwise. Set once, before the first
/// temporary folder; durability is the crash campaign's subject (CLITests/CrashSafetyTests runs
/// the binary with syncing on).
private let scratchWrites: Void = {
    _ = setenv("MREPO_FSYNC", "0", 0)
}()

/// A fresh, empty folder under the system's temporary directory, deleted with everything in it
/// when the instance goes away.
///
/// This is the fixture of a suite that is a `final class`: Swift Testing makes one instance of
/// the suite per test and releases it when the test ends, so a folder held in a stored property
/// lives exactly as long as the test.
public final class TemporaryDirectory {
    /// The folder's absolute path (no trailing slash).
    public let path: String

    public init() throws {
        _ = scratchWrites
        path = NSTemporaryDirectory() + "mrepo-tests-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit {
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// Runs `body` with a fresh, empty folder that is deleted afterwards, however `body` ends.
public func withTemporaryDirectory<T>(_ body: (String) throws -> T) throws -> T {
    let folder = try TemporaryDirectory()
    return try withExtendedLifetime(folder) { try body(folder.path) }
}
