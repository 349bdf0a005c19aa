/// The element types of the safetensors format.
///
/// The raw value is the spelling in a safetensors header. ``code`` is the stable one-byte code
/// used in mrepo's object files (see docs/format.md, "Dtype codes").
public enum DType: String, CaseIterable, Sendable, Codable, Hashable {
    case f64 = "F64"
    case f32 = "F32"
    case f16 = "F16"
    case bf16 = "BF16"
    case f8e4m3 = "F8_E4M3"
    case f8e5m2 = "F8_E5M2"
    case i64 = "I64"
    case i32 = "I32"
    case i16 = "I16"
    case i8 = "I8"
    case u64 = "U64"
    case u32 = "U32"
    case u16 = "U16"
    case u8 = "U8"
    case bool = "BOOL"

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .f64, .i64, .u64: return 8
        case .f32, .i32, .u32: return 4
        case .f16, .bf16, .i16, .u16: return 2
        case .f8e4m3, .f8e5m2, .i8, .u8, .bool: return 1
        }
    }

    /// Whether elements are IEEE-style floating-point numbers (sign, exponent, mantissa).
    public var isFloatingPoint: Bool {
        switch self {
        case .f64, .f32, .f16, .bf16, .f8e4m3, .f8e5m2: return true
        default: return false
        }
    }

    /// Whether elements are two's-complement signed integers.
    public var isSignedInteger: Bool {
        switch self {
        case .i64, .i32, .i16, .i8: return true
        default: return false
        }
    }

    /// Width of the exponent field of a floating-point dtype (0 for the others).
    public var exponentBits: Int {
        switch self {
        case .f64: return 11
        case .f32, .bf16: return 8
        case .f16, .f8e5m2: return 5
        case .f8e4m3: return 4
        default: return 0
        }
    }

    /// The stable on-disk code of this dtype.
    public var code: UInt8 {
        switch self {
        case .f64: return 1
        case .f32: return 2
        case .f16: return 3
        case .bf16: return 4
        case .f8e4m3: return 5
        case .f8e5m2: return 6
        case .i64: return 7
        case .i32: return 8
        case .i16: return 9
        case .i8: return 10
        case .u64: return 11
        case .u32: return 12
        case .u16: return 13
        case .u8: return 14
        case .bool: return 15
        }
    }

    /// The dtype with the given on-disk code, or nil for an unknown code.
    public init?(code: UInt8) {
        guard let match = DType.allCases.first(where: { $0.code == code }) else { return nil }
        self = match
    }

    /// Lower-case name as PyTorch users know it (`float32`, `bfloat16`, ...), accepted on the command line.
    public var torchName: String {
        switch self {
        case .f64: return "float64"
        case .f32: return "float32"
        case .f16: return "float16"
        case .bf16: return "bfloat16"
        case .f8e4m3: return "float8_e4m3fn"
        case .f8e5m2: return "float8_e5m2"
        case .i64: return "int64"
        case .i32: return "int32"
        case .i16: return "int16"
        case .i8: return "int8"
        case .u64: return "uint64"
        case .u32: return "uint32"
        case .u16: return "uint16"
        case .u8: return "uint8"
        case .bool: return "bool"
        }
    }

    /// Parses either the safetensors spelling (`BF16`) or the PyTorch name (`bfloat16`, `bf16`).
    public init?(parsing text: String) {
        if let exact = DType(rawValue: text) { self = exact; return }
        let lower = text.lowercased()
        if let match = DType.allCases.first(where: { $0.torchName == lower || $0.rawValue.lowercased() == lower }) {
            self = match
            return
        }
        switch lower {
        case "float", "fp32": self = .f32
        case "half", "fp16": self = .f16
        case "double", "fp64": self = .f64
        default: return nil
        }
    }
}

/// A tensor shape: the extent of each dimension, outermost first. `[]` is a scalar.
public typealias Shape = [Int]

extension Array where Element == Int {
    /// The number of elements of a tensor with this shape, or nil when it overflows `Int`.
    public var elementCount: Int? {
        var count = 1
        for dim in self {
            guard dim >= 0 else { return nil }
            let (product, overflow) = count.multipliedReportingOverflow(by: dim)
            if overflow { return nil }
            count = product
        }
        return count
    }

    /// `[4096, 11008]` as text: `4096×11008`, or `scalar` for `[]`.
    public var shapeDescription: String {
        isEmpty ? "scalar" : map(String.init).joined(separator: "×")
    }
}
