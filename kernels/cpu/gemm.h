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

}  // namespace mom::kernels::cpu
