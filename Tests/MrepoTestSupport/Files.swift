import Foundation

// Plain file access for tests. Not atomic on purpose: tests build damaged and hostile files as
// they are, and read back what the code under test wrote.

/// Writes bytes to a file, creating its folder; mode 0644, or 0755 when `executable`.
public func writeFile(_ bytes: [UInt8], to path: String, executable: Bool = false) throws {
    try FileManager.default.createDirectory(atPath: URL(fileURLWithPath: path).deletingLastPathComponent().path,
                                            withIntermediateDirectories: true)
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    try FileManager.default.setAttributes([.posixPermissions: executable ? 0o755 : 0o644], ofItemAtPath: path)
}

/// Writes UTF-8 text to a file, creating its folder.
public func writeFile(_ text: String, to path: String, executable: Bool = false) throws {
    try writeFile(Array(text.utf8), to: path, executable: executable)
}

/// A file's bytes.
public func readFile(_ path: String) throws -> [UInt8] {
    Array(try Data(contentsOf: URL(fileURLWithPath: path)))
}

/// Flips the lowest bit of one byte of a file in place.
public func flipByte(at offset: Int, of path: String) throws {
    var bytes = try readFile(path)
    bytes[offset] ^= 0x01
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}
