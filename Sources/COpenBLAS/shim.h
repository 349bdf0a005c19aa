/* OpenBLAS (BLAS + LAPACK), loaded at run time.
 *
 * mrepo does not link libopenblas: the pthread build starts its worker threads when it is
 * loaded, and they spin for a while on every start, stealing a core from commands that never
 * touch BLAS. The Merge module loads libopenblas.so.0 with dlopen on first use (after setting
 * OPENBLAS_NUM_THREADS, since mrepo parallelises across tensors itself) and binds the entry
 * points below. These typedefs are the C ABI of those entry points (cblas.h; LAPACK's Fortran
 * ABI: arguments by pointer, 32-bit integers, one hidden trailing size_t length per CHARACTER
 * argument). */
#include <stddef.h>

enum { MREPO_CBLAS_ROW_MAJOR = 101, MREPO_CBLAS_NO_TRANS = 111, MREPO_CBLAS_TRANS = 112 };

typedef void (*mrepo_cblas_sgemm_fn)(int order, int transA, int transB, int m, int n, int k, float alpha,
                                     const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);
typedef void (*mrepo_cblas_dgemm_fn)(int order, int transA, int transB, int m, int n, int k, double alpha,
                                     const double *a, int lda, const double *b, int ldb, double beta, double *c, int ldc);
typedef void (*mrepo_ssyevd_fn)(const char *jobz, const char *uplo, const int *n, float *a, const int *lda, float *w,
                                float *work, const int *lwork, int *iwork, const int *liwork, int *info,
                                size_t jobz_len, size_t uplo_len);
typedef void (*mrepo_dsyevd_fn)(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w,
                                double *work, const int *lwork, int *iwork, const int *liwork, int *info,
                                size_t jobz_len, size_t uplo_len);
typedef void (*mrepo_sgesdd_fn)(const char *jobz, const int *m, const int *n, float *a, const int *lda, float *s,
                                float *u, const int *ldu, float *vt, const int *ldvt, float *work, const int *lwork,
                                int *iwork, int *info, size_t jobz_len);
typedef void (*mrepo_dgesdd_fn)(const char *jobz, const int *m, const int *n, double *a, const int *lda, double *s,
                                double *u, const int *ldu, double *vt, const int *ldvt, double *work, const int *lwork,
                                int *iwork, int *info, size_t jobz_len);
typedef void (*mrepo_openblas_set_num_threads_fn)(int n);
