// cuBLAS for the CUDA kernels (matmul.cu, masked_linear.cu): the per-device handles, the status
// check, and row-major GEMMs.
//
// One cublasHandle_t and one cublasLtHandle_t per device, created on first use and never destroyed
// (like the device's stream: at exit the runtime may already be gone). The cuBLAS handle is bound once
// to mom::cuda::stream(device), so every GEMM is ordered with the framework's other work; its
// workspace is a 32 MiB Tensor from the stream-ordered pool (cuBLAS's recommended size for Hopper;
// setting it after the stream keeps cublasSetStream from resetting it), so cuBLAS allocates nothing
// itself. The same allocation holds, after the workspace, a 4 MiB float32 scratch area of the handle's
// own (the bf16 fallback below; allocated with the handle, before any lane forks, so that a lane may
// use it). Atomics stay disallowed (CUBLAS_ATOMICS_NOT_ALLOWED, set explicitly). TF32 is chosen per
// call through the compute type, never by changing a handle's math mode.
//
// Single GEMMs (gemm() below) go through cuBLASLt, on the same stream and workspace as the handle
// they are given, for two things cublasGemmEx cannot do:
//   - the bias in the GEMM's epilogue (CUBLASLT_EPILOGUE_BIAS): y = x W^T + b writes y once, where a
//     separate add reads and writes it again;
//   - the choice of algorithm (plan_m, plan_k): a per-modality GEMM of a third of the rows gets the
//     tiles of the whole GEMM instead of the smaller ones cuBLAS picks for its own shape, which fill
//     the GPU better when the three run side by side on the lanes (measured: docs/architecture.md).
// The algorithm of each configuration (operand and output types, shape, plan, leading dims, the
// pointers' alignments, TF32, bias) is cuBLASLt's heuristic's first answer, looked up once per device
// and kept: the same GEMM always runs the same algorithm, so results repeat bit for bit on one GPU
// model. A configuration cuBLASLt has no algorithm for falls back to cublasGemmEx and a bias kernel
// (a bf16 output with a bias: the float32 scratch path below). Batched GEMMs stay on
// cublasGemmStridedBatchedEx.
//
// GEMM lanes: the device's stream and kGemmLanes - 1 extra streams, each extra one with its own handle
// and 32 MiB workspace, configured like the device's handle. masked_linear runs each modality's GEMMs,
// row moves and bias sums on its own lane, side by side (GemmLanes below), so that three GEMMs of a
// third of the rows each fill the GPU as one GEMM of all the rows does, and one modality's moves
// overlap the others' GEMMs (at the MoM layer's shapes on an H200, TF32 off: 8.49 ms one after
// another, 8.38 ms side by side with cuBLAS's own choices, 7.89 ms side by side with the whole GEMM's
// algorithms, 7.81 ms for the dense GEMMs; docs/architecture.md).
//
// Operand types (BlasTraits below): float (float32, or TF32 inputs when allow_tf32()), double, and bf16
// with float32 accumulation. A GEMM's output C is of the operands' type, or float32 beside bf16
// operands (the unrounded product, for a sum that rounds once after it). The scalars (alpha, beta) and
// the bias are of the accumulation type: float32 for bf16, so a bf16 output is the float32 accumulator
// plus the float32 bias, rounded once (cuBLASLt's algorithms for a bf16 output are held to split-K
// reductions in float32). cuBLASLt gets that bias type through CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE; a
// bf16 output whose bias cuBLASLt does not add (no algorithm for the configuration, or a bias off
// 16-byte alignment) is computed in float32 into a scratch area of the handle, in tiles, and one kernel
// adds the bias (and beta * C) and rounds: never a bias added to an already rounded value.
//
// Row-major on top of column-major cuBLAS: a row-major (r, c) matrix with leading dimension ld is the
// column-major (c, r) matrix with the same ld, its transpose. So C = op(A) op(B) (row-major) is computed
// as C^T = op(B)^T op(A)^T (column-major): cuBLAS gets B first, A second, m and n swapped, and the same
// transpose flags. No data is copied.
#pragma once

#include <cublas_v2.h>

#include <cstdint>
#include <type_traits>

#include "core/bf16.h"
#include "core/cuda/stream.h"
#include "core/dtype.h"
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

// What cuBLAS needs to know of an operand type T: its data type, the compute type of a GEMM on it, acc
// (the type of the accumulator, the scalars and the bias) and `key`, the compute setting's part of the
// algorithm cache's key (TF32 on or off for float).
template <typename T> struct BlasTraits;
template <> struct BlasTraits<float> {
  using acc = float;
  static constexpr cudaDataType_t type = CUDA_R_32F;
  static cublasComputeType_t compute() { return allow_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F; }
  static int64_t key() { return allow_tf32() ? 1 : 0; }
};
template <> struct BlasTraits<double> {
  using acc = double;
  static constexpr cudaDataType_t type = CUDA_R_64F;
  static cublasComputeType_t compute() { return CUBLAS_COMPUTE_64F; }
  static int64_t key() { return 2; }
};
template <> struct BlasTraits<bf16> {  // TF32 does not apply: the inputs are already narrower
  using acc = float;
  static constexpr cudaDataType_t type = CUDA_R_16BF;
  static cublasComputeType_t compute() { return CUBLAS_COMPUTE_32F; }
  static int64_t key() { return 3; }
};
template <typename T> using gemm_acc_t = typename BlasTraits<T>::acc;

// The (operand, output) type pairs a GEMM takes: the same type, or bf16 operands with a float32 output.
template <typename T, typename C> constexpr bool kGemmTypes =
    (std::is_same_v<T, C> && (std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, bf16>)) ||
    (std::is_same_v<T, bf16> && std::is_same_v<C, float>);

// f(TypeTag<T>{}) with T the operand type of a GEMM on tensors of dtype dt: float32, float64 or bfloat16.
template <typename F> decltype(auto) dispatch_gemm(DType dt, const char* op, F&& f) {
  switch (dt) {
    case DType::f32: return f(TypeTag<float>{});
    case DType::f64: return f(TypeTag<double>{});
    case DType::bf16: return f(TypeTag<bf16>{});
    default: MOM_THROW(op, "expects float32, float64 or bfloat16, got " << dtype_name(dt));
  }
}

// One row-major GEMM:
//   C (m, n) = op(A) (m, k) @ op(B) (k, n) + beta * C   (+ bias[j] on every row j-th column, when bias)
// lda, ldb, ldc are the stored row lengths; op transposes when the flag is set. float: TF32 when
// allow_tf32() is on, full float32 otherwise; double: float64; bf16: float32 accumulation, C (bf16, or
// float32 with C = float) the accumulator plus the bias rounded once. m, n, k >= 1.
// The algorithm is the one cuBLASLt's heuristic picks for a GEMM of plan_m rows of C and a reduction of
// plan_k (0: m and k themselves) when that algorithm also runs this shape: a per-modality GEMM that
// runs beside the others on the GEMM lanes then uses the tiles of the whole problem (see matmul.cu).
template <typename T, typename C = T> struct Gemm {
  static_assert(kGemmTypes<T, C>, "gemm: float, double or bf16 operands; C of their type, or float beside bf16");
  using Acc = gemm_acc_t<T>;
  Gemm(bool ta_, bool tb_, int64_t m_, int64_t n_, int64_t k_, const T* a_, int64_t lda_, const T* b_, int64_t ldb_,
       C* c_, int64_t ldc_)
      : ta(ta_), tb(tb_), m(m_), n(n_), k(k_), a(a_), lda(lda_), b(b_), ldb(ldb_), c(c_), ldc(ldc_) {}
  bool ta = false, tb = false;
  int64_t m = 0, n = 0, k = 0;
  const T* a = nullptr;
  int64_t lda = 0;
  const T* b = nullptr;
  int64_t ldb = 0;
  C* c = nullptr;
  int64_t ldc = 0;
  Acc beta = Acc(0);
  const Acc* bias = nullptr;  // (n) or none
  int64_t plan_m = 0, plan_k = 0;
};

// On the device's handle or on `handle` (one of the device's: a lane's); the device becomes current.
template <typename T, typename C> void gemm(int device, const Gemm<T, C>& g, cublasHandle_t handle = nullptr);

// Row-major strided-batched GEMM on the device's stream:
//   C_i (m, n) = op(A_i) (m, k) @ op(B_i) (k, n),   i in [0, count)
// A_i = a + i * stride_a (elements; 0 repeats one matrix for every product), likewise B_i, C_i. One
// product (count 1) is gemm() above. Types as gemm()'s.
template <typename T, typename C>
void gemm_strided_batched(int device, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda,
                          int64_t stride_a, const T* b, int64_t ldb, int64_t stride_b, C* c, int64_t ldc,
                          int64_t stride_c, int64_t count) {
  static_assert(kGemmTypes<T, C>, "gemm: float, double or bf16 operands; C of their type, or float beside bf16");
  if (count == 1) {
    gemm(device, Gemm<T, C>(ta, tb, m, n, k, a, lda, b, ldb, c, ldc));
    return;
  }
  const cublasOperation_t op_a = ta ? CUBLAS_OP_T : CUBLAS_OP_N, op_b = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  const gemm_acc_t<T> alpha = gemm_acc_t<T>(1), beta = gemm_acc_t<T>(0);
  ::mom::cuda::DeviceGuard guard(device);
  MOM_CUBLAS_CHECK(cublasGemmStridedBatchedEx_64(cublas_handle(device), op_b, op_a, n, m, k, &alpha, b,
                                                 BlasTraits<T>::type, ldb, stride_b, a, BlasTraits<T>::type, lda,
                                                 stride_a, &beta, c, BlasTraits<C>::type, ldc, stride_c, count,
                                                 BlasTraits<T>::compute(), CUBLAS_GEMM_DEFAULT));
}

constexpr int kGemmLanes = 3;  // the device's stream and two more

// Fork and join of the device's GEMM lanes, for GEMMs that are independent of each other:
//   GemmLanes lanes(device, active);          // allocate every output first: the fork is recorded here
//   gemm(device, g, lanes.handle(i));         // lane i % kGemmLanes (lane 0: the device's own handle,
//                                             // as every lane when !active)
//   kernel<<<grid, block, 0, lanes.stream(i)>>>(...);  // other work on lane i: its stream
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
  cudaStream_t stream(int i);
  void join();

 private:
  // Lane i % kGemmLanes, made to wait for the fork on its first use; 0 (the device's own) when !active.
  int use(int i);
  int device_;
  bool active_;
  bool used_[kGemmLanes] = {};
};

}  // namespace mom::kernels::cuda
