/// A small dense row-major matrix in Double: the working type of the subspace methods (tsv, iso_c,
/// iso_cts, wudi, cart, knots). One tensor's matrices at a time, so memory stays bounded by a few
/// copies of the largest tensor.
///
/// Products are written out here, accumulated in Double in a fixed order, rather than through
/// sgemm: merged tensors are hashed, and sgemm's bits may differ between machines. The SVD is
/// LAPACK's (``LinearAlgebra/svd(_:rows:columns:)``), deterministic on one machine.
struct DenseMatrix: Sendable {
    let rows: Int
    let cols: Int
    var data: [Double]

    init(rows: Int, cols: Int) {
        self.rows = rows
        self.cols = cols
        data = [Double](repeating: 0, count: rows * cols)
    }

    init(rows: Int, cols: Int, data: [Double]) {
        precondition(data.count == rows * cols, "a rows×cols matrix")
        self.rows = rows
        self.cols = cols
        self.data = data
    }

    init(rows: Int, cols: Int, floats: [Float]) {
        self.init(rows: rows, cols: cols, data: floats.map(Double.init))
    }

    subscript(i: Int, j: Int) -> Double {
        get { data[i * cols + j] }
        set { data[i * cols + j] = newValue }
    }

    var floats: [Float] { data.map(Float.init) }

    var transposed: DenseMatrix {
        var t = DenseMatrix(rows: cols, cols: rows)
        for i in 0..<rows { for j in 0..<cols { t.data[j * rows + i] = data[i * cols + j] } }
        return t
    }

    /// Columns `range` (a rows×range.count matrix).
    func columns(_ range: Range<Int>) -> DenseMatrix {
        var out = DenseMatrix(rows: rows, cols: range.count)
        for i in 0..<rows { for (jj, j) in range.enumerated() { out.data[i * range.count + jj] = data[i * cols + j] } }
        return out
    }

    /// Rows `range`.
    func rowRange(_ range: Range<Int>) -> DenseMatrix {
        DenseMatrix(rows: range.count, cols: cols, data: Array(data[(range.lowerBound * cols)..<(range.upperBound * cols)]))
    }

    /// Each column j multiplied by `scale[j]`.
    func scalingColumns(_ scale: [Double]) -> DenseMatrix {
        var out = self
        for i in 0..<rows { for j in 0..<cols { out.data[i * cols + j] *= scale[j] } }
        return out
    }

    /// a·b, accumulated in Double in i-k-j order (the same order whatever the machine).
    static func * (a: DenseMatrix, b: DenseMatrix) -> DenseMatrix {
        precondition(a.cols == b.rows, "inner dimensions agree")
        var c = DenseMatrix(rows: a.rows, cols: b.cols)
        let n = b.cols
        a.data.withUnsafeBufferPointer { pa in
            b.data.withUnsafeBufferPointer { pb in
                c.data.withUnsafeMutableBufferPointer { pc in
                    for i in 0..<a.rows {
                        let row = pc.baseAddress! + i * n
                        for k in 0..<a.cols {
                            let x = pa[i * a.cols + k]
                            if x == 0 { continue }
                            let bk = pb.baseAddress! + k * n
                            for j in 0..<n { row[j] += x * bk[j] }
                        }
                    }
                }
            }
        }
        return c
    }

    static func + (a: DenseMatrix, b: DenseMatrix) -> DenseMatrix {
        var c = a
        for i in 0..<c.data.count { c.data[i] += b.data[i] }
        return c
    }

    static func - (a: DenseMatrix, b: DenseMatrix) -> DenseMatrix {
        var c = a
        for i in 0..<c.data.count { c.data[i] -= b.data[i] }
        return c
    }

    /// Thin SVD: U (rows×p), singular values descending, Vᵀ (p×cols), p = min(rows, cols).
    func svd() throws -> (u: DenseMatrix, s: [Double], vt: DenseMatrix) {
        let p = min(rows, cols)
        if p == 0 { return (DenseMatrix(rows: rows, cols: 0), [], DenseMatrix(rows: 0, cols: cols)) }
        let (u, s, vt) = try LinearAlgebra.svd(floats, rows: rows, columns: cols)
        return (DenseMatrix(rows: rows, cols: p, floats: u), s, DenseMatrix(rows: p, cols: cols, floats: vt))
    }

    /// The orthogonal polar factor P·Qᵀ of this matrix's SVD P·S·Qᵀ: the nearest matrix with
    /// orthonormal columns (or rows, when wider than tall). TSV and Iso-CTS orthogonalise with it.
    func polar() throws -> DenseMatrix {
        let (u, _, vt) = try svd()
        return u * vt
    }

    /// The squared Frobenius norm.
    var squaredNorm: Double { data.reduce(0) { $0 + $1 * $1 } }
}

/// What the subspace methods share: task vectors, the shape test, the fallback for tensors that
/// are not matrices, and θ₀ + λ·Δ.
enum Subspace {
    /// The subspace methods hold one matrix's task vectors and their SVD factors in float64.
    static func workingMemory(elements n: Int, experts k: Int) -> (bytes: Int, formula: String) {
        (2 * (k + 3) * n * 8, "2 × (experts + 3) × the largest matrix in float64: its task vectors and SVD factors")
    }

    /// The task vectors τᵢ = θᵢ − θ₀ in Double.
    static func taskVectors(_ input: TensorMergeInput, method: String) throws -> (base: [Float], tau: [[Double]]) {
        guard let base = input.base else { throw MergeError.invalidInputs(method: method, problem: "needs the merge base") }
        return (base, input.experts.map { e in zip(e, base).map { Double($0) - Double($1) } })
    }

    /// rows × columns for a 2-D tensor with both sides ≥ 1; nil for every other shape (the
    /// papers' code treats only weight matrices with the SVD).
    static func matrixShape(_ ctx: TensorContext, count: Int) -> (rows: Int, cols: Int)? {
        guard ctx.shape.count == 2, ctx.shape[0] > 0, ctx.shape[1] > 0, ctx.shape[0] * ctx.shape[1] == count else { return nil }
        return (ctx.shape[0], ctx.shape[1])
    }

    /// Σᵢ τᵢ, or the mean when `mean`.
    static func sum(_ tau: [[Double]], mean: Bool = false) -> [Double] {
        var s = [Double](repeating: 0, count: tau.first?.count ?? 0)
        for t in tau { for j in 0..<s.count { s[j] += t[j] } }
        if mean, !tau.isEmpty { let k = Double(tau.count); for j in 0..<s.count { s[j] /= k } }
        return s
    }

    /// θ₀ + λ·Δ, rounded once to Float32.
    static func finish(base: [Float], delta: [Double], lambda: Double) -> [Float] {
        var out = [Float](repeating: 0, count: base.count)
        for j in 0..<base.count { out[j] = Float(Double(base[j]) + lambda * delta[j]) }
        return out
    }

    /// The λ parameter every subspace method shares.
    static func lambdaSpec(_ help: String = "Scale of the merged task vector before it is added to the base (λ).") -> ParameterSpec {
        ParameterSpec("lambda", .number(range: -.infinity...(.infinity)), default: .number(1), help: help)
    }
}
