import Delta
import Testing

@testable import Repo

/// A file's identity as the stat cache and `worktreeView.files` keep it: the text earlier
/// versions wrote, and text that does not decode is a cache miss (nil), never a crash.
extension CorruptRecordTests {
    @Test func aFileIdentityKeepsItsTextAndADamagedOneReadsAsNothing() throws {
        let h = someID.hex
        let tensor = TreeTensor(name: "w", dtype: .f32, shape: [2, 3], dataOffsets: 0..<24, objectID: someID)
        let file = TreeFile(path: "m.safetensors", kind: .safetensors, objectID: someID, byteCount: 100, executable: false,
                            tensors: [tensor], sha256: someID)
        let text = FileIdentityCoding.encode(file)
        #expect(text == #"{"kind":"safetensors","object":"\#(h)","size":100,"exec":false,"tensors":[["w","F32",[2,3],0,24,"\#(h)"]],"sha256":"\#(h)"}"#)
        #expect(FileIdentityCoding.decode(text, path: "m.safetensors") == file)
        let blob = TreeFile(path: "a.txt", kind: .blob, objectID: someID, byteCount: 3, executable: true)
        #expect(FileIdentityCoding.encode(blob) == #"{"kind":"blob","object":"\#(h)","size":3,"exec":true}"#)
        for bad in [#"{"kind":"blob"}"#, #"{"kind":"tape","object":"\#(h)","size":3,"exec":true}"#,
                    #"{"kind":"safetensors","object":"\#(h)","size":1,"exec":false,"tensors":[["w","F32",[2],24,0,"\#(h)"]]}"#,
                    #"{"kind":"safetensors","object":"\#(h)","size":1,"exec":false,"tensors":[["w","F32",[2],0,8]]}"#, "not json"] {
            #expect(FileIdentityCoding.decode(bad, path: "x") == nil, "\(bad)")
        }
    }
}
