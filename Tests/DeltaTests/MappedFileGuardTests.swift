import Delta
import Foundation
import Testing

/// A mapped file that shrinks while it is read: the pages past its new end read as zeros and the
/// mapping says it shrank, instead of SIGBUS ending the process (mapguard.c).
@Suite struct MappedFileGuardTests {
    @Test func pagesPastTheNewEndReadAsZerosAndTheMappingSaysSo() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/shrinking.bin"
            let page = Int(sysconf(Int32(_SC_PAGESIZE)))
            try writeFile([UInt8](repeating: 0xAB, count: 4 * page), to: path)
            let mapped = try MappedFile(path: path)
            #expect(mapped.bytes[0] == 0xAB && !mapped.shrank)
            #expect(truncate(path, off_t(page)) == 0)
            // The first page is still the file's; the third is past the end: zeros, not a crash.
            #expect(mapped.bytes[page - 1] == 0xAB)
            #expect(mapped.bytes[2 * page + 17] == 0)
            #expect(mapped.shrank)
            // Another mapping is not marked by this one's fault.
            let other = try MappedFile(path: path)
            #expect(!other.shrank && other.count == page)
        }
    }
}
