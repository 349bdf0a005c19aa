/// Wraps a value handed to other threads that the caller keeps safe: used by one thread at a
/// time, or (pointers) only read, or written at indices no other thread touches.
///
/// One of the two `@unchecked Sendable` declarations in Delta (the other is ``MappedFile``; the
/// codec's jobs and views, ``EncodedTensor`` among them, hold their pointers in this wrapper). Why the compiler cannot see the safety here: the
/// wrapped values are raw buffer pointers into arrays that a data-parallel loop
/// (``Parallel/forEach(_:_:)``) fills at disjoint indices, zstd contexts handed from a pool to one
/// thread at a time, and the loop body itself, which runs while the caller waits. Disjointness and
/// hand-over are properties of the algorithm, not of the types. Every use site says which holds.
public struct UnsafeSendable<Value>: @unchecked Sendable {
    public var value: Value
    public init(_ value: Value) { self.value = value }
}
