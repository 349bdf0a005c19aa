import Delta
import Foundation
import Merge

extension MergeContext {
    /// One tensor's inputs, decoded into the merge's buffers (``MergeBuffers``).
    struct LoadedInputs {
        var count: Int
        var base: UnsafeMutableBufferPointer<Float>
        /// The base's bytes in its own dtype: the reference the merged tensor is coded against.
        var baseBytes: UnsafeRawBufferPointer
        var baseHeader: EncodedTensorHeader
        var experts: [UnsafeMutableBufferPointer<Float>]
        /// An expert whose buffer no other input shares: the merged values may overwrite it.
        var writable: Int?
    }

    /// Decodes the merge base's tensor and every expert's into the buffers, all at once on every
    /// core: each expert's delta is decoded against the base's bytes as they arrive (no second
    /// decode of the base), and each input is verified against its identity. An expert that holds
    /// the base's tensor, or another expert's, shares its buffer.
    func loadInputs(_ name: String, base baseID: ObjectID) throws -> LoadedInputs {
        let store = repository.objects
        let baseTensor = try store.open(baseID).tensor
        let header = baseTensor.header
        let f32 = header.dtype == .f32
        let n = header.byteCount / header.dtype.byteSize
        let baseFloats = buffers.floats("base", count: n)
        let baseBytes = f32 ? UnsafeMutableRawBufferPointer(baseFloats) : buffers.bytes("base.raw", count: header.byteCount)
        var targets: [(id: ObjectID, target: TensorPipeline.DecodeTarget)] = []
        func widen(_ raw: UnsafeMutableRawBufferPointer, into floats: UnsafeMutableBufferPointer<Float>, dtype: DType) -> (@Sendable (Range<Int>) -> Void)? {
            guard !f32 else { return nil }
            let r = UnsafeSendable(raw), f = UnsafeSendable(floats)
            return { bytes in
                let size = dtype.byteSize
                FloatConversion.toFloat(dtype, UnsafeRawBufferPointer(rebasing: r.value[bytes]),
                                        into: UnsafeMutableBufferPointer(rebasing: f.value[(bytes.lowerBound / size)..<(bytes.upperBound / size)]))
            }
        }
        func reference(of tensor: EncodedTensor) throws -> TensorPipeline.DecodeTarget.Reference? {
            guard let ref = tensor.header.reference else { return nil }
            if ref == baseID, tensor.header.chunkByteCount == header.chunkByteCount, tensor.header.byteCount == header.byteCount {
                return .target(0)
            }
            return .chunks(try store.chunkSource(for: ref))
        }
        targets.append((baseID, TensorPipeline.DecodeTarget(tensor: baseTensor, destination: baseBytes, expected: baseID,
                                                            reference: try reference(of: baseTensor),
                                                            didDecode: widen(baseBytes, into: baseFloats, dtype: header.dtype))))
        var experts: [UnsafeMutableBufferPointer<Float>] = []
        /// Which input each expert's buffer is: -1 the base, else the first expert with that object.
        var owner: [Int] = []
        var byObject: [ObjectID: Int] = [baseID: -1]
        for (i, tensors) in expertTensors.enumerated() {
            let id = (tensors[name] ?? baseTensors[name])?.tensor.objectID ?? baseID
            if let j = byObject[id] {
                experts.append(j < 0 ? baseFloats : experts[j])
                owner.append(j)
                continue
            }
            let tensor = try store.open(id).tensor
            guard tensor.header.dtype == header.dtype, tensor.header.byteCount == header.byteCount else {
                throw RepoError.failed("tensor '\(name)' of \(self.experts[i].name) is \(tensor.header.dtype.rawValue) \(tensor.header.shape.shapeDescription), the merge base's \(header.dtype.rawValue) \(header.shape.shapeDescription); a method merges tensors of one dtype and shape: keep one side's instead ('mrepo resolve' with --ours, --theirs or --base)")
            }
            let floats = buffers.floats("expert\(i)", count: n)
            let raw = f32 ? UnsafeMutableRawBufferPointer(floats) : buffers.bytes("expert\(i).raw", count: header.byteCount)
            targets.append((id, TensorPipeline.DecodeTarget(tensor: tensor, destination: raw, expected: id, reference: try reference(of: tensor),
                                                            didDecode: widen(raw, into: floats, dtype: header.dtype))))
            byObject[id] = i
            experts.append(floats)
            owner.append(i)
        }
        try store.decode(into: targets)
        let writable = owner.indices.first { i in owner[i] == i && owner.filter { $0 == i }.count == 1 }
        return LoadedInputs(count: n, base: baseFloats, baseBytes: UnsafeRawBufferPointer(baseBytes), baseHeader: header,
                            experts: experts, writable: writable)
    }

    /// Merges one tensor with the plan (or the given one); stores the result unless it trips a threshold.
    ///
    /// The inputs are decoded into the merge's buffers; the merged values overwrite an expert's
    /// buffer block by block; they are written to the prepared checkout and coded against the base's
    /// bytes, which are still in memory. A vocabulary merge (rows differ) takes the array path.
    func mergeTensor(_ name: String, context: TensorContext, batch: ObjectStore.Batch, thresholds: ConflictThresholds,
                     plan override: MergePlan? = nil) throws -> (ObjectInfo?, ConflictMetrics?, [String]) {
        if case .vocabulary = decision(for: name) {
            return try mergeTensorArrays(name, context: context, batch: batch, thresholds: thresholds, plan: override)
        }
        let plan = override ?? self.plan
        guard let baseInput = baseTensors[name] else { throw RepoError.failed("tensor '\(name)' has no merge base") }
        let baseID = baseInput.tensor.objectID
        let t0 = timer.now()
        let inputs = try loadInputs(name, base: baseID)
        timer.add("decode", since: t0)
        let n = inputs.count
        let t1 = timer.now()
        let output = inputs.writable.map { inputs.experts[$0] } ?? buffers.floats("output", count: n)
        var mergedContext = context
        mergedContext.shape = baseInput.tensor.shape
        let metrics = try plan.merge(mergedContext, base: UnsafePointer(inputs.base.baseAddress!),
                                     experts: inputs.experts.map { UnsafePointer($0.baseAddress!) }, into: output)
        timer.add("merge+metrics", since: t1)
        if override == nil, thresholds.violation(metrics) != nil { return (nil, metrics, []) }
        let t2 = timer.now()
        defer { timer.add("encode", since: t2) }
        let dtype = options.outputDType ?? baseInput.tensor.dtype
        let written = try withOutputBytes(output, as: dtype, name: name) { bytes in
            if override == nil { prepared?.write(name, bytes) }
            return try writeMerged(bytes, dtype: dtype, shape: baseInput.tensor.shape, base: baseID, baseHeader: inputs.baseHeader,
                                   baseBytes: inputs.baseBytes, batch: batch)
        }
        return (written, metrics, [])
    }

    /// The merged values as bytes of `dtype`: the Float32 buffer itself, converted in place to a
    /// narrower dtype, or a buffer of their own for a wider one (F64).
    func withOutputBytes<T>(_ values: UnsafeMutableBufferPointer<Float>, as dtype: DType, name: String,
                            _ body: (UnsafeRawBufferPointer) throws -> T) throws -> T {
        let byteCount = values.count * dtype.byteSize
        if FloatConversion.narrowingOverflows(dtype, UnsafeBufferPointer(values)) {
            throw MergeContext.narrowingOverflow(name, dtype)
        }
        if dtype.byteSize > 4 {
            let wide = buffers.bytes("output.wide", count: byteCount)
            FloatConversion.fromFloat(dtype, UnsafeBufferPointer(values), into: wide)
            return try body(UnsafeRawBufferPointer(wide))
        }
        if dtype != .f32 {
            FloatConversion.fromFloatInPlace(dtype, count: values.count, UnsafeMutableRawBufferPointer(values))
        }
        return try body(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(values)[0..<byteCount]))
    }

    /// A merged tensor whose values lie beyond its dtype's range: written, they would be ±inf.
    static func narrowingOverflow(_ name: String, _ dtype: DType) -> MergeError {
        .tensor(name: name, problem: "the merge gives values beyond \(dtype.rawValue)'s range, which would be written as \(FloatConversion.overflowResult(dtype)): check the weights and λ (or merge into a wider dtype with --dtype); nothing was written")
    }

    /// Stores a merged tensor, coded against the merge base's tensor whose bytes the caller holds.
    func writeMerged(_ bytes: UnsafeRawBufferPointer, dtype: DType, shape: Shape, base baseID: ObjectID, baseHeader: EncodedTensorHeader,
                     baseBytes: UnsafeRawBufferPointer?, batch: ObjectStore.Batch) throws -> ObjectInfo {
        let reference = try repository.history.objectInfo(baseID).map { ($0, baseHeader) }
        let written = try repository.objects.write(kind: .tensor, dtype: dtype, shape: shape, source: bytes, reference: reference,
                                                   options: repository.codecOptions, batch: batch, referenceBytes: baseBytes,
                                                   window: Parallel.workerCount)
        var info = written.info
        if !written.isNew, let known = try repository.history.objectInfo(info.id) { info = known }
        return info
    }
}
