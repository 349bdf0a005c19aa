import Delta
import Foundation
import Repo
import Testing

@Suite struct ObjectStoreTests {
    func withStore<T>(_ body: (ObjectStore) throws -> T) throws -> T {
        try withTemporaryDirectory { dir in
            try FileManager.default.createDirectory(atPath: dir + "/objects", withIntermediateDirectories: true)
            return try body(ObjectStore(root: dir + "/objects"))
        }
    }

    func writeTensor(_ store: ObjectStore, _ values: [Float], reference: ObjectStore.WriteResult? = nil,
                     batch: ObjectStore.Batch) throws -> ObjectStore.WriteResult {
        let bytes = bytesOf(values)
        let ref = try reference.map { ($0.info, try store.header(of: $0.info.id)) }
        let result = try bytes.withUnsafeBytes { raw in
            try store.write(kind: .tensor, dtype: .f32, shape: [values.count], source: raw, reference: ref, options: smallChunks, batch: batch)
        }
        // A delta reference must be in place under its final name.
        try batch.finish()
        return result
    }

    @Test func blobsAreContentAddressed() throws {
        try withStore { store in
            let batch = store.makeBatch()
            let bytes = Array("hello, objects".utf8)
            let result = try store.writeBlob(bytes, options: smallChunks, batch: batch)
            try batch.finish()
            let id = bytes.withUnsafeBytes { BlobHasher.hash($0) }
            #expect(result.isNew)
            #expect(result.info.id == id)
            #expect(result.info.kind == .blob)
            #expect(result.info.encoding == .whole)
            #expect(result.info.logicalByteCount == bytes.count)
            #expect(store.path(for: id) == store.root + "/" + id.hex.prefix(2) + "/" + id.hex.dropFirst(2))
            #expect(store.exists(id))
            #expect(result.info.storedByteCount == FileStat.of(store.path(for: id))?.size)
            #expect(try store.read(id) == bytes)
            #expect(batch.created == [id])
            // The file starts with the object header.
            let file = try readFile(store.path(for: id))
            #expect(Array(file[0..<8]) == Array("MROB".utf8) + [1, ObjectKind.blob.rawValue, 0, 0])

            let again = try store.writeBlob(bytes, options: smallChunks, batch: batch)
            #expect(!again.isNew)
            #expect(batch.created == [id])
            #expect(store.listFiles().objects == [id])
            #expect(store.listFiles().temporary.isEmpty)
        }
    }

    @Test func deltaChainsDecodeAndStopAtTheMaximumDepth() throws {
        try withStore { store in
            let batch = store.makeBatch()
            var values = (0..<300).map { Float($0) * 0.01 + 0.5 }
            var previous = try writeTensor(store, values, batch: batch)
            #expect(previous.info.depth == 0)
            for depth in 1...(ObjectStore.maxDepth + 1) {
                values = values.map { $0 * 1.0001 }
                let next = try writeTensor(store, values, reference: previous, batch: batch)
                if depth <= ObjectStore.maxDepth {
                    #expect(next.info.depth == depth)
                    #expect(next.info.reference == previous.info.id)
                    #expect(next.info.encoding == .integerDeltaByExponent)
                } else {
                    // Past the limit the tensor is stored whole.
                    #expect(next.info.depth == 0)
                    #expect(next.info.reference == nil)
                    #expect(next.info.encoding == .whole)
                }
                #expect(try store.read(next.info.id) == bytesOf(values))
                #expect(try store.inspect(next.info.id).reference == next.info.reference)
                previous = next
            }
        }
    }

    @Test func referenceOfAnotherShapeIsNotUsed() throws {
        try withStore { store in
            let batch = store.makeBatch()
            let a = try writeTensor(store, [1, 2, 3], batch: batch)
            let b = try writeTensor(store, [1, 2, 3, 4], reference: a, batch: batch)
            #expect(b.info.reference == nil)
            #expect(b.info.encoding == .whole)
        }
    }

    @Test func rollbackDeletesWhatTheBatchCreated() throws {
        try withStore { store in
            let keep = store.makeBatch()
            let kept = try store.writeBlob([1], options: smallChunks, batch: keep)
            try keep.finish()
            let batch = store.makeBatch()
            let a = try store.writeBlob([2], options: smallChunks, batch: batch)
            let b = try store.writeBlob([1], options: smallChunks, batch: batch)  // already stored: not created
            #expect(!b.isNew)
            batch.rollback()
            #expect(!store.exists(a.info.id))
            #expect(store.exists(kept.info.id))
            #expect(batch.created.isEmpty)
        }
    }

    @Test func damagedObjectFilesAreRejected() throws {
        try withStore { store in
            let batch = store.makeBatch()
            let id = try store.writeBlob(Array(repeating: 7, count: 1000), options: smallChunks, batch: batch).info.id
            try batch.finish()
            let path = store.path(for: id)
            let good = try readFile(path)
            func damaged(_ index: Int, _ value: UInt8) throws -> (any Error)? {
                var bytes = good
                bytes[index] = value
                try Data(bytes).write(to: URL(fileURLWithPath: path))
                return thrownError { _ = try store.read(id) }
            }
            #expect(try damaged(0, UInt8(ascii: "X")) as? RepoError == .corruptObject(object: id.short, problem: "not an mrepo object (bad magic)"))
            #expect(try damaged(4, 9) as? RepoError
                == .unsupportedFormat(path: path, problem: "object version 9 is newer than this mrepo understands"))
            #expect(try damaged(5, 9) as? RepoError == .corruptObject(object: id.short, problem: "unknown object kind 9"))
            // A blob read back as a tensor object (kind byte changed) does not verify.
            #expect(try damaged(5, ObjectKind.tensor.rawValue) is RepoError)
            #expect(try damaged(8, 0) as? RepoError == .delta(.corruptData(object: "object \(id.short)", problem: "not an encoded tensor (bad magic)")))
            try FileManager.default.removeItem(atPath: path)
            guard case let .corruptObject(object, problem)? = thrownError({ _ = try store.read(id) }) as? RepoError else {
                Issue.record("missing object file not reported")
                return
            }
            #expect(object == id.short)
            #expect(problem.hasPrefix("missing object file"))
        }
    }

    @Test func listFilesFindsObjectsAndTemporaryFiles() throws {
        try withStore { store in
            let batch = store.makeBatch()
            let a = try store.writeBlob([1], options: smallChunks, batch: batch).info.id
            let b = try store.writeBlob([2], options: smallChunks, batch: batch).info.id
            try batch.finish()
            try writeFile("t", to: store.root + "/" + AtomicFileWriter.temporaryPrefix + "top")
            try writeFile("t", to: store.root + "/ab/" + AtomicFileWriter.temporaryPrefix + "inner")
            try writeFile("n", to: store.root + "/ab/not-hex")
            try writeFile("n", to: store.root + "/notes.txt")
            let (objects, temporary) = store.listFiles()
            #expect(Set(objects) == [a, b])
            #expect(Set(temporary) == [store.root + "/" + AtomicFileWriter.temporaryPrefix + "top",
                                       store.root + "/ab/" + AtomicFileWriter.temporaryPrefix + "inner"])
            store.remove(a)
            #expect(store.listFiles().objects == [b])
        }
    }
}
