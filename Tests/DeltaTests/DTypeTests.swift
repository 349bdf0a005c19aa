import Delta
import Testing

@Suite struct DTypeTests {
    @Test func codesAreStableAndUnique() {
        let codes = DType.allCases.map(\.code)
        #expect(codes == Array(1...15))
        for dtype in DType.allCases {
            #expect(DType(code: dtype.code) == dtype)
        }
        #expect(DType(code: 0) == nil)
        #expect(DType(code: 16) == nil)
    }

    @Test func byteSizesAndKinds() {
        let sizes = Dictionary(uniqueKeysWithValues: DType.allCases.map { ($0.rawValue, $0.byteSize) })
        #expect(sizes == ["F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8, "I32": 4,
                          "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1])
        #expect(DType.allCases.filter(\.isFloatingPoint) == [.f64, .f32, .f16, .bf16, .f8e4m3, .f8e5m2])
        #expect(DType.allCases.filter(\.isSignedInteger) == [.i64, .i32, .i16, .i8])
        #expect(DType.allCases.filter(\.isFloatingPoint).map(\.exponentBits) == [11, 8, 5, 8, 4, 5])
        #expect(DType.u8.exponentBits == 0)
    }

    @Test(arguments: [("BF16", DType.bf16), ("bfloat16", .bf16), ("bf16", .bf16), ("float32", .f32), ("fp16", .f16),
                      ("half", .f16), ("double", .f64), ("float8_e4m3fn", .f8e4m3), ("f8_e5m2", .f8e5m2), ("Int8", .i8), ("bool", .bool)])
    func parsingAcceptsHeaderAndTorchSpellings(text: String, dtype: DType) {
        #expect(DType(parsing: text) == dtype)
    }

    @Test func parsingRejectsUnknownNames() {
        #expect(DType(parsing: "float128") == nil)
        #expect(DType(parsing: "") == nil)
    }

    @Test func shapes() {
        #expect(([] as Shape).elementCount == 1)
        #expect([2, 3, 4].elementCount == 24)
        #expect([5, 0].elementCount == 0)
        #expect([-1].elementCount == nil)
        #expect([Int.max, 2].elementCount == nil)
        #expect([4096, 11008].shapeDescription == "4096×11008")
        #expect(([] as Shape).shapeDescription == "scalar")
    }
}
