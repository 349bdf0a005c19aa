import Delta
import Foundation
import HTTPTypes
import Hummingbird
import Repo

/// Streams a committed file (or a range of it) as a response body, decoding one chunk at a time
/// from the object store: nothing is written to disk, and each transfer holds about one chunk in
/// memory while it waits for the client (the writer applies back-pressure).
///
/// A client that disconnects makes the next write throw, which ends the transfer and releases the
/// repository's read lock. An object that does not verify ends the transfer without its last
/// bytes, so the client sees a short body (its Content-Length check fails), never a wrong file
/// that looks complete.
enum FileBody {
    /// Bytes handed to the writer at once: small enough that a slow client pins little memory.
    static let pieceByteCount = 1 << 20

    static func body(repo: Repository, file: TreeFile, range: Range<Int>, lease: ReaderLease) throws -> ResponseBody {
        let reader = try FileReader(store: repo.objects, file: file)
        let length = range.count
        return ResponseBody(contentLength: length) { writer in
            defer { lease.release() }
            let cursor = reader.cursor(range)
            var pending: [ByteBuffer] = []
            while true {
                pending.removeAll(keepingCapacity: true)
                let more = try cursor.next { piece in
                    var offset = 0
                    while offset < piece.count {
                        let n = min(pieceByteCount, piece.count - offset)
                        pending.append(ByteBuffer(bytes: UnsafeRawBufferPointer(rebasing: piece[offset..<(offset + n)])))
                        offset += n
                    }
                }
                // Write one slice at a time: each write waits until the client takes it.
                while !pending.isEmpty {
                    try await writer.write(pending.removeFirst())
                }
                if !more { break }
                await Task.yield()
            }
            try await writer.finish(nil)
        }
    }

    /// The range a `Range` header asks for: nil for the whole file (no header, or one this server
    /// does not answer partially, such as several ranges); throws 416 when it lies past the end.
    static func parseRange(_ header: String?, size: Int) throws -> Range<Int>? {
        guard let header = header?.trimmingCharacters(in: .whitespaces), header.hasPrefix("bytes=") else { return nil }
        let spec = header.dropFirst(6)
        if spec.contains(",") { return nil }
        let parts = spec.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2 else { return nil }
        let first = parts[0].trimmingCharacters(in: .whitespaces), last = parts[1].trimmingCharacters(in: .whitespaces)
        if first.isEmpty {
            // bytes=-N: the last N bytes.
            guard let n = Int(last), n >= 0 else { return nil }
            // The last zero bytes, or any bytes of an empty file: nothing to send (RFC 9110 §14.1.2).
            guard n > 0, size > 0 else { throw RangeNotSatisfiable(size: size) }
            return max(0, size - n)..<size
        }
        guard let start = Int(first), start >= 0 else { return nil }
        guard start < size else { throw RangeNotSatisfiable(size: size) }
        if last.isEmpty { return start..<size }
        guard let end = Int(last), end >= start else { return nil }
        return start..<min(size, end + 1)
    }

    struct RangeNotSatisfiable: Error { var size: Int }
}
