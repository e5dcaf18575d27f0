// The CPU kernels' GEMMs: C (m, n) = op(A) @ op(B), row-major, through OpenBLAS's CBLAS (float and
// double); op transposes when its flag says so.
//
// OpenBLAS's OpenMP build splits a GEMM among the threads it asks the OpenMP runtime for and waits for
// every part. With the runtime's dynamic adjustment on (OMP_DYNAMIC=true, or omp_set_dynamic(1)) the
// runtime may hand it fewer threads, and the GEMM then waits forever (seen on the 2-core machine under
// load: a training step spinning in sgemm_thread_tn). Each call turns the adjustment off for the calling
// thread first; the framework's own parallel loops do not depend on the team's size.
#pragma once

#include <cblas.h>
#include <omp.h>

#include <cstdint>

namespace mom::kernels::cpu {

inline void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                 const float* b, int64_t ldb, float* c, int64_t ldc) {
  omp_set_dynamic(0);
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, m, n, k, 1.0f,
              a, lda, b, ldb, 0.0f, c, ldc);
}

inline void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const double* a, int64_t lda,
                 const double* b, int64_t ldb, double* c, int64_t ldc) {
  omp_set_dynamic(0);
  cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, m, n, k, 1.0,
              a, lda, b, ldb, 0.0, c, ldc);
}

// y (n) = W (n, k) @ x (k), W row-major with leading dimension ldw: one row's product, which OpenBLAS
// runs near the memory's rate, where its GEMM for one row takes about twice as long (a 50280 x 768
// float weight on the 2-core machine: 16 ms against 29).
inline void gemv(int64_t n, int64_t k, const float* w, int64_t ldw, const float* x, float* y) {
  omp_set_dynamic(0);
  cblas_sgemv(CblasRowMajor, CblasNoTrans, n, k, 1.0f, w, ldw, x, 1, 0.0f, y, 1);
}

inline void gemv(int64_t n, int64_t k, const double* w, int64_t ldw, const double* x, double* y) {
  omp_set_dynamic(0);
  cblas_dgemv(CblasRowMajor, CblasNoTrans, n, k, 1.0, w, ldw, x, 1, 0.0, y, 1);
}

}  // namespace mom::kernels::cpu
