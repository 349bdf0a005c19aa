import COpenBLAS
import Delta
import Foundation
import Synchronization

/// LAPACK and BLAS from OpenBLAS, loaded on first use.
///
/// mrepo does not link libopenblas: the library starts worker threads when it loads, which would
/// cost every command a spinning core. It is opened here, with `OPENBLAS_NUM_THREADS=1` unless the
/// user chose a count (mrepo runs many small problems on its own threads), and only by commands
/// that need it: low-rank commits, reversible merges, adapter diffs.
public enum LinearAlgebra {
    fileprivate struct Library: Sendable {
        let dsyevd: mrepo_dsyevd_fn
        let dgesdd: mrepo_dgesdd_fn
        let sgemm: mrepo_cblas_sgemm_fn
    }

    private static let loaded: Result<Library, MergeError> = {
        setenv("OPENBLAS_NUM_THREADS", "1", 0)
        let names = ["libopenblas.so.0", "libopenblas.so", "libopenblasp.so.0"]
        guard let handle = names.lazy.compactMap({ dlopen($0, RTLD_NOW | RTLD_LOCAL) }).first else {
            return .failure(.invalidInputs(method: "linear algebra", problem: "OpenBLAS (libopenblas.so.0) is not installed; install it with 'apt-get install libopenblas-dev' (scripts/setup.sh does)"))
        }
        func symbol<T>(_ name: String, _: T.Type) -> T? {
            guard let p = dlsym(handle, name) else { return nil }
            return unsafeBitCast(p, to: T.self)
        }
        guard let dsyevd = symbol("dsyevd_", mrepo_dsyevd_fn.self), let dgesdd = symbol("dgesdd_", mrepo_dgesdd_fn.self),
              let sgemm = symbol("cblas_sgemm", mrepo_cblas_sgemm_fn.self)
        else {
            return .failure(.invalidInputs(method: "linear algebra", problem: "the OpenBLAS library found lacks LAPACK (dsyevd_, dgesdd_); install libopenblas-dev"))
        }
        return .success(Library(dsyevd: dsyevd, dgesdd: dgesdd, sgemm: sgemm))
    }()

    fileprivate static func library() throws -> Library { try loaded.get() }

    /// Eigenvalues (ascending) and eigenvectors (columns, column-major) of a symmetric n×n matrix
    /// given in column-major order (row-major is the same for a symmetric matrix).
    public static func symmetricEigen(_ matrix: [Double], n: Int) throws -> (values: [Double], vectors: [Double]) {
        precondition(matrix.count == n * n, "an n×n matrix")
        if n == 0 { return ([], []) }
        let solver = SymmetricEigenSolver(n: n)
        var a = matrix
        try a.withUnsafeMutableBufferPointer { try solver.solve($0.baseAddress!) }
        return (solver.values, a)
    }

    /// Thin SVD of a row-major m×n matrix: A = U·diag(s)·Vᵀ with U m×p and Vᵀ p×n (p = min(m, n)),
    /// both row-major, singular values descending. Computed in Double.
    public static func svd(_ a: [Float], rows m: Int, columns n: Int) throws -> (u: [Float], s: [Double], vt: [Float]) {
        precondition(a.count == m * n, "an m×n matrix")
        let p = min(m, n)
        if p == 0 { return ([], [], []) }
        let lib = try library()
        // Row-major A is column-major Aᵀ (n×m): decompose Aᵀ = U'·S·V'ᵀ, so A = V'·S·U'ᵀ.
        var at = a.map(Double.init)
        var mm = Int32(n), nn = Int32(m), lda = Int32(n), ldu = Int32(n), ldvt = Int32(p), info: Int32 = 0
        var s = [Double](repeating: 0, count: p)
        var up = [Double](repeating: 0, count: n * p)
        var vtp = [Double](repeating: 0, count: p * m)
        var iwork = [Int32](repeating: 0, count: 8 * p)
        var lwork: Int32 = -1
        var query = 0.0
        func call(_ work: UnsafeMutablePointer<Double>) {
            at.withUnsafeMutableBufferPointer { pa in
                s.withUnsafeMutableBufferPointer { ps in
                    up.withUnsafeMutableBufferPointer { pu in
                        vtp.withUnsafeMutableBufferPointer { pv in
                            iwork.withUnsafeMutableBufferPointer { pi in
                                lib.dgesdd("S", &mm, &nn, pa.baseAddress, &lda, ps.baseAddress, pu.baseAddress, &ldu,
                                           pv.baseAddress, &ldvt, work, &lwork, pi.baseAddress, &info, 1)
                            }
                        }
                    }
                }
            }
        }
        call(&query)
        lwork = Int32(query)
        var work = [Double](repeating: 0, count: Int(max(lwork, 1)))
        work.withUnsafeMutableBufferPointer { call($0.baseAddress!) }
        guard info == 0 else {
            throw MergeError.invalidInputs(method: "linear algebra", problem: "dgesdd failed to converge (info \(info))")
        }
        // U' is column-major n×p: as row-major it is p×n, which is Vᵀ of A. V'ᵀ is column-major p×m:
        // as row-major it is m×p, which is U of A.
        return (vtp.map(Float.init), s, up.map(Float.init))
    }

    /// C = op(A)·op(B) for row-major matrices through OpenBLAS's sgemm, where op(A) is m×k and
    /// op(B) is k×n (op transposes when asked). Fast, but the bits may differ between machines:
    /// never for bytes that are hashed (``LowRankProduct`` is for those).
    public static func multiply(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, m: Int, n: Int, k: Int,
                                transposeA: Bool = false, transposeB: Bool = false,
                                into c: UnsafeMutablePointer<Float>, accumulate: Bool = false) throws {
        guard m > 0, n > 0 else { return }
        guard k > 0 else {
            if !accumulate { c.update(repeating: 0, count: m * n) }
            return
        }
        let lib = try library()
        let trans = Int32(MREPO_CBLAS_TRANS), none = Int32(MREPO_CBLAS_NO_TRANS)
        lib.sgemm(Int32(MREPO_CBLAS_ROW_MAJOR), transposeA ? trans : none, transposeB ? trans : none, Int32(m), Int32(n), Int32(k),
                  1, a, Int32(transposeA ? m : k), b, Int32(transposeB ? k : n), accumulate ? 1 : 0, c, Int32(n))
    }

    /// C = op(A)·op(B) as a new array (see the pointer version).
    public static func multiply(_ a: [Float], _ b: [Float], m: Int, n: Int, k: Int,
                                transposeA: Bool = false, transposeB: Bool = false) throws -> [Float] {
        var c = [Float](repeating: 0, count: m * n)
        try a.withUnsafeBufferPointer { pa in
            try b.withUnsafeBufferPointer { pb in
                try c.withUnsafeMutableBufferPointer { pc in
                    guard let ab = pa.baseAddress, let bb = pb.baseAddress, let cb = pc.baseAddress else { return }
                    try multiply(ab, bb, m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB, into: cb)
                }
            }
        }
        return c
    }
}

/// A symmetric eigensolver for many small problems of one size (LAPACK dsyevd), with its
/// workspace allocated once. Not thread-safe: one per thread.
public final class SymmetricEigenSolver {
    public let n: Int
    private var work: [Double]
    private var iwork: [Int32]
    /// Eigenvalues of the last problem, ascending.
    public private(set) var values: [Double]

    public init(n: Int) {
        self.n = n
        work = [Double](repeating: 0, count: max(1, 1 + 6 * n + 2 * n * n))
        iwork = [Int32](repeating: 0, count: max(1, 3 + 5 * n))
        values = [Double](repeating: 0, count: n)
    }

    /// Replaces the symmetric n×n matrix at `a` with its eigenvectors (column-major: vector j is
    /// a[j·n ..< (j+1)·n]) and sets ``values`` (ascending).
    public func solve(_ a: UnsafeMutablePointer<Double>) throws {
        guard n > 0 else { return }
        let lib = try LinearAlgebra.library()
        var nn = Int32(n), lda = Int32(n), info: Int32 = 0
        var lwork = Int32(work.count), liwork = Int32(iwork.count)
        values.withUnsafeMutableBufferPointer { w in
            work.withUnsafeMutableBufferPointer { pw in
                iwork.withUnsafeMutableBufferPointer { pi in
                    lib.dsyevd("V", "U", &nn, a, &lda, w.baseAddress, pw.baseAddress, &lwork, pi.baseAddress, &liwork, &info, 1, 1)
                }
            }
        }
        guard info == 0 else {
            throw MergeError.invalidInputs(method: "linear algebra", problem: "dsyevd failed to converge (info \(info))")
        }
    }
}
