import Delta
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes a scratch file in place, without syncing: Foundation's `Data.write` syncs every file,
/// which would cost a disk flush per input.
func writeScratch(_ bytes: [UInt8], to path: String) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw FuzzSetupError("cannot open \(path): \(errnoDescription())") }
    defer { close(fd) }
    var done = 0
    while done < bytes.count {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + done, $0.count - done) }
        guard n > 0 else { throw FuzzSetupError("cannot write \(path): \(errnoDescription())") }
        done += n
    }
}

/// The fuzz harness itself failed (not the code under test).
struct FuzzSetupError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
