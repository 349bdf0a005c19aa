import Delta
import Foundation

/// Rebuilding a file of a tree from its objects (docs/format.md §4.5), for checkouts and exports.
///
/// All of the file's objects are decoded as one sequence of chunks on every core
/// (``TensorBatch/decode(_:decoders:alongside:sink:)``), the bytes hashed (the file's SHA-256, on
/// a thread of its own) and written as they come. When the tree records the file's SHA-256, that digest checks every byte of the result,
/// the header and each tensor included, and the objects' own identities are not hashed as well:
/// one hash instead of two. Should the digest differ, the file is rebuilt again with every
/// object's identity checked, to name the object at fault (or the rows, when every object
/// verifies). A file without a recorded digest is rebuilt with every object checked.
extension Repository {
    /// The rebuilt file's SHA-256 differs from the recorded one (the objects were not checked).
    struct FileDigestMismatch: Error {}

    /// Writes `file`'s bytes to `writer`; returns their SHA-256.
    ///
    /// - Parameter verifyObjects: check each object's identity (always done when the tree records
    ///   no digest for the file).
    /// - Throws: ``FileDigestMismatch`` when the objects were not checked and the bytes hash to
    ///   something other than the recorded digest; ``RepoError/corruptObject(object:problem:)``
    ///   or ``RepoError/corruptTree(_:problem:)`` otherwise.
    func rebuild(_ file: TreeFile, into writer: AtomicFileWriter, verifyObjects: Bool, progress: ProgressCounter?) throws -> Digest {
        let verify = verifyObjects || file.sha256 == nil
        var jobs: [TensorDecodeJob] = []
        var ids: [ObjectID] = []
        func add(_ id: ObjectID) throws -> Int {
            let (job, _) = try objects.decodeJob(id, verify: verify)
            jobs.append(job)
            ids.append(id)
            return job.tensor.header.byteCount
        }
        // The layout is checked before anything is decoded: each tensor starts where the previous
        // one ended, the first at the end of the header, and the sizes add up to the file's.
        var offset = try add(file.objectID)
        if file.kind == .safetensors {
            let headerEnd = offset
            for t in file.tensors.inDataOrder() {
                guard headerEnd + t.dataOffsets.lowerBound == offset else {
                    throw RepoError.corruptObject(object: file.objectID.short, problem: "\(file.path): tensor '\(t.name)' does not follow the previous one")
                }
                offset += try add(t.objectID)
            }
        }
        guard offset == file.byteCount else {
            throw RepoError.corruptObject(object: file.objectID.short, problem: "\(file.path): rebuilt \(offset) bytes, the tree records \(file.byteCount)")
        }
        let sha = SHA256()
        do {
            // The file's hash on a thread of its own, beside the writes.
            try TensorBatch.decode(jobs, alongside: { sha.update($0) }) { _, bytes in
                try writer.write(bytes)
                progress?.add(bytes.count)
            }
        } catch let DeltaError.corruptData(object, problem) {
            throw RepoError.corruptObject(object: Repository.objectShort(in: object, among: ids), problem: problem)
        } catch let error as DeltaError {
            throw RepoError.delta(error)
        }
        let digest = sha.finalize()
        if let expected = file.sha256, digest != expected {
            guard verify else { throw FileDigestMismatch() }
            throw RepoError.corruptTree(file.path, problem: "the rebuilt file's SHA-256 is \(digest.short), the tree records \(expected.short) (the history database names the wrong objects)")
        }
        return digest
    }

    /// The short id in a codec error's object name (`object <short>` or `object <short> chunk N`).
    static func objectShort(in name: String, among ids: [ObjectID]) -> String {
        let words = name.split(separator: " ")
        if words.count >= 2, words[0] == "object" { return String(words[1]) }
        return ids.first.map(\.short) ?? name
    }
}
