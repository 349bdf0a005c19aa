// Bytes built by hand: values as stored, and safetensors files exactly as given.

/// The bytes of an array of fixed-width values, as they lie in memory (little-endian here).
public func bytesOf<T>(_ values: [T]) -> [UInt8] {
    values.withUnsafeBytes { Array($0) }
}

/// The little-endian bytes of an integer.
public func littleEndianBytes<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
    withUnsafeBytes(of: value.littleEndian) { Array($0) }
}

/// A safetensors file built byte by byte: the 8-byte header length, the header text exactly as
/// given (no padding unless `padTo` asks for it), then the data bytes.
///
/// - Parameter declaredLength: the header length written in the first 8 bytes; defaults to the
///   true length of `json` (after padding).
public func safetensorsBytes(json: String, data: [UInt8] = [], padTo multiple: Int = 1, declaredLength: UInt64? = nil) -> [UInt8] {
    var text = Array(json.utf8)
    while (8 + text.count) % multiple != 0 { text.append(0x20) }
    return littleEndianBytes(declaredLength ?? UInt64(text.count)) + text + data
}
