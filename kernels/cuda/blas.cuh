// cuBLAS for the CUDA kernels (matmul.cu, masked_linear.cu): the per-device handle, the status check,
// and row-major GEMMs.
//
// One cublasHandle_t per device, created on first use and never destroyed (like the device's stream:
// at exit the runtime may already be gone). It is bound once to mom::cuda::stream(device), so every
// GEMM is ordered with the framework's other work; its workspace is a 32 MiB Tensor from the stream-
// ordered pool (cuBLAS's recommended size for Hopper; setting it after the stream keeps
// cublasSetStream from resetting it), so cuBLAS allocates nothing itself. Atomics stay disallowed
// (CUBLAS_ATOMICS_NOT_ALLOWED, set explicitly): with one stream and a fixed workspace, cuBLAS gives the
// same bits on every run on one GPU model. The handle's configuration never changes after creation;
// TF32 is chosen per call through the compute type, not by changing the handle's math mode.
//
// GEMM lanes: the device's stream and kGemmLanes - 1 extra streams, each extra one with its own handle
// and 32 MiB workspace, configured like the device's handle. masked_linear runs its per-modality GEMMs
// on them side by side (GemmLanes below), so that three GEMMs of a third of the rows each fill the GPU
// as one GEMM of all the rows does (at the MoM layer's shapes on an H200, cuBLAS timed alone: 8.49 ms in
// a row, 8.18 ms side by side, 7.73 ms for the dense GEMMs, TF32 off; docs/architecture.md). Each
// GEMM's algorithm and bits depend only on its shape and its handle's fixed configuration, so results
// still repeat bit for bit.
//
// Row-major on top of column-major cuBLAS: a row-major (r, c) matrix with leading dimension ld is the
// column-major (c, r) matrix with the same ld, its transpose. So C = op(A) op(B) (row-major) is computed
// as C^T = op(B)^T op(A)^T (column-major): cuBLAS gets B first, A second, m and n swapped, and the same
// transpose flags. No data is copied.
#pragma once

#include <cublas_v2.h>

#include <cstdint>
#include <type_traits>

#include "core/cuda/stream.h"
#include "core/error.h"
#include "kernels/matmul.h"

#define MOM_CUBLAS_CHECK(call)                                                                              \
  do {                                                                                                      \
    cublasStatus_t mom_cublas_status_ = (call);                                                             \
    if (mom_cublas_status_ != CUBLAS_STATUS_SUCCESS)                                                        \
      MOM_THROW("cublas", cublasGetStatusName(mom_cublas_status_) << " (" << cublasGetStatusString(mom_cublas_status_) \
                                                                  << ") at " << __FILE__ << ":" << __LINE__);   \
  } while (0)

namespace mom::kernels::cuda {

// The device's handle (defined in matmul.cu). The caller makes `device` current (DeviceGuard).
cublasHandle_t cublas_handle(int device);

// Row-major strided-batched GEMM on the device's stream:
//   C_i (m, n) = op(A_i) (m, k) @ op(B_i) (k, n) + beta * C_i,   i in [0, count)
// A_i = a + i * stride_a (elements; 0 repeats one matrix for every product), likewise B_i, C_i;
// lda, ldb, ldc are the stored row lengths. op transposes when the flag is set. float: TF32 when
// allow_tf32() is on, full float32 otherwise; double: always float64. m, n, k >= 1.
// The same on a given handle (one of the device's: its own or a lane's), whose device is current.
template <typename T>
void gemm_strided_batched_on(cublasHandle_t handle, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const T* a,
                             int64_t lda, int64_t stride_a, const T* b, int64_t ldb, int64_t stride_b, T* c,
                             int64_t ldc, int64_t stride_c, int64_t count, T beta = T(0)) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "gemm: float or double");
  constexpr bool is_float = std::is_same_v<T, float>;
  const cudaDataType_t type = is_float ? CUDA_R_32F : CUDA_R_64F;
  const cublasComputeType_t compute =
      is_float ? (allow_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F) : CUBLAS_COMPUTE_64F;
  const cublasOperation_t op_a = ta ? CUBLAS_OP_T : CUBLAS_OP_N, op_b = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  const T alpha = T(1);
  if (count == 1) {
    MOM_CUBLAS_CHECK(cublasGemmEx_64(handle, op_b, op_a, n, m, k, &alpha, b, type, ldb, a, type, lda, &beta, c, type,
                                     ldc, compute, CUBLAS_GEMM_DEFAULT));
  } else {
    MOM_CUBLAS_CHECK(cublasGemmStridedBatchedEx_64(handle, op_b, op_a, n, m, k, &alpha, b, type, ldb, stride_b, a,
                                                   type, lda, stride_a, &beta, c, type, ldc, stride_c, count, compute,
                                                   CUBLAS_GEMM_DEFAULT));
  }
}

template <typename T>
void gemm_strided_batched(int device, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda,
                          int64_t stride_a, const T* b, int64_t ldb, int64_t stride_b, T* c, int64_t ldc,
                          int64_t stride_c, int64_t count, T beta = T(0)) {
  ::mom::cuda::DeviceGuard guard(device);
  gemm_strided_batched_on(cublas_handle(device), ta, tb, m, n, k, a, lda, stride_a, b, ldb, stride_b, c, ldc,
                          stride_c, count, beta);
}

// One row-major GEMM: C (m, n) = op(A) (m, k) @ op(B) (k, n), on the device's handle or on `handle`.
template <typename T>
void gemm(int device, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b,
          int64_t ldb, T* c, int64_t ldc, cublasHandle_t handle = nullptr) {
  if (handle == nullptr) {
    gemm_strided_batched(device, ta, tb, m, n, k, a, lda, 0, b, ldb, 0, c, ldc, 0, 1);
    return;
  }
  ::mom::cuda::DeviceGuard guard(device);
  gemm_strided_batched_on(handle, ta, tb, m, n, k, a, lda, 0, b, ldb, 0, c, ldc, 0, 1);
}

constexpr int kGemmLanes = 3;  // the device's stream and two more

// Fork and join of the device's GEMM lanes, for GEMMs that are independent of each other:
//   GemmLanes lanes(device, active);          // allocate every output first: the fork is recorded here
//   gemm(device, ..., lanes.handle(i));       // lane i % kGemmLanes (lane 0: the device's own handle,
//                                             // as every lane when !active)
//   lanes.join();                             // the device's stream waits for every lane used
// The lanes wait for all work issued before the fork, and the device's stream continues only after
// join() (the destructor joins too, so an exception cannot leave a lane writing into freed memory).
// Memory allocated after the fork must not be handed to a lane: the pool orders it on the device's
// stream only.
class GemmLanes {
 public:
  GemmLanes(int device, bool active);
  ~GemmLanes();
  GemmLanes(const GemmLanes&) = delete;
  GemmLanes& operator=(const GemmLanes&) = delete;
  cublasHandle_t handle(int i);
  void join();

 private:
  int device_;
  bool active_;
  bool used_[kGemmLanes] = {};
};

}  // namespace mom::kernels::cuda
