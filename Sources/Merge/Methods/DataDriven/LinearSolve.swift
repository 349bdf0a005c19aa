import Foundation

/// Symmetric positive-definite solves through LAPACK's dposv (OpenBLAS, opened on first use as
/// ``LinearAlgebra`` does, with one BLAS thread unless the user chose more).
enum LinearSolve {
    /// LAPACK's Fortran ABI: arguments by pointer, one trailing length per CHARACTER argument.
    typealias DPOSV = @convention(c) (UnsafePointer<CChar>?, UnsafePointer<Int32>?, UnsafePointer<Int32>?, UnsafeMutablePointer<Double>?,
                                      UnsafePointer<Int32>?, UnsafeMutablePointer<Double>?, UnsafePointer<Int32>?, UnsafeMutablePointer<Int32>?, Int) -> Void

    private struct Entry: Sendable {
        let dposv: DPOSV
    }

    private static let loaded: Result<Entry, MergeError> = {
        setenv("OPENBLAS_NUM_THREADS", "1", 0)
        let names = ["libopenblas.so.0", "libopenblas.so", "libopenblasp.so.0"]
        guard let handle = names.lazy.compactMap({ dlopen($0, RTLD_NOW | RTLD_LOCAL) }).first else {
            return .failure(.invalidInputs(method: "linear algebra", problem: "OpenBLAS (libopenblas.so.0) is not installed; install it with 'apt-get install libopenblas-dev' (scripts/setup.sh does)"))
        }
        guard let p = dlsym(handle, "dposv_") else {
            return .failure(.invalidInputs(method: "linear algebra", problem: "the OpenBLAS library found lacks LAPACK (dposv_); install libopenblas-dev"))
        }
        return .success(Entry(dposv: unsafeBitCast(p, to: DPOSV.self)))
    }()

    /// Solves A·X = B for symmetric positive-definite A (n × n) and `rhsCount` right-hand sides
    /// (B column-major, n × rhsCount). On success `rhs` holds X and `a` its Cholesky factor;
    /// false when A is not positive definite (both are then overwritten with partial results).
    static func choleskySolve(_ a: inout [Double], n: Int, rhs: inout [Double], rhsCount: Int) throws -> Bool {
        precondition(a.count == n * n && rhs.count == n * rhsCount, "an n×n matrix and n×k right-hand sides")
        guard n > 0, rhsCount > 0 else { return true }
        let f = try loaded.get().dposv
        var nn = Int32(n), nrhs = Int32(rhsCount), lda = Int32(n), ldb = Int32(n), info: Int32 = 0
        a.withUnsafeMutableBufferPointer { pa in
            rhs.withUnsafeMutableBufferPointer { pb in
                f("U", &nn, &nrhs, pa.baseAddress, &lda, pb.baseAddress, &ldb, &info, 1)
            }
        }
        if info < 0 { throw MergeError.invalidInputs(method: "linear algebra", problem: "dposv rejected argument \(-info)") }
        return info == 0
    }
}
