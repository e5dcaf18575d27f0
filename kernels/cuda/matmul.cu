// CUDA versions of kernels/matmul.h, called after the public functions' checks (kernels/cpu/matmul.cpp),
// and the per-device cuBLAS handle of kernels/cuda/blas.cuh.
//
// Forward: a batched a times a 2-D b (a not transposed) is one GEMM over all batch * M rows, as on the
// CPU. Otherwise the output's batch is walked in runs over which both operands' matrix indices advance
// by a constant step (0 for a broadcast operand), one strided-batched GEMM per run: a single call when
// each operand's batch is either complete or entirely broadcast, one per outer index for a mixed
// broadcast such as (3, 1) against (1, 4). No operand is copied or expanded.
// Backward: da = dc @ op(b)^T and db = op(a)^T @ dc (or their transposes, in the stored layouts) are
// products of the same kind. The weight gradient of a 2-D b (a not transposed) folds the batch into
// the K dim: one GEMM a^T (K, batch*M) @ dc (batch*M, N) sums over every row. Any other sum over
// broadcast batch dims takes the full per-batch product and sums it with sum_to_shape (fixed order, in
// double).
//
// bf16: a, b and dc bf16, the bias float32; cuBLAS GEMMs on bf16 operands with float32 accumulation,
// each bf16 output rounded once from its float32 value (the bias added before: blas.cuh). A gradient
// summed over broadcast batch dims is the float32 product (the same GEMMs with a float32 output), summed
// by sum_to_shape and then rounded once to bf16, never a sum of rounded products.
//
// Parallel decomposition and accumulation are cuBLAS's (float32 accumulators for float and bf16, TF32
// inputs when allow_tf32() for float, float64 for double). Deterministic: cuBLAS on one stream with a
// fixed workspace and atomics disallowed, and sum_to_shape's fixed summation order.
#include <cublasLt.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "core/cuda/memory.h"
#include "kernels/cuda/blas.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/elementwise.h"
#include "kernels/matmul.h"

namespace mom::kernels::cuda {

namespace {

constexpr size_t kWorkspaceBytes = size_t(32) << 20;
constexpr size_t kWorkspaceAlign = 256;  // cublasSetWorkspace's requirement
constexpr size_t kScratchBytes = size_t(4) << 20;
constexpr int64_t kScratchFloats = static_cast<int64_t>(kScratchBytes / sizeof(float));

// One handle, its workspace and scratch; lanes also own their stream and the event that marks their
// last work.
struct Handle {
  cublasHandle_t handle = nullptr;
  Tensor workspace;          // (kWorkspaceBytes + kScratchBytes + kWorkspaceAlign) u8 on the device
  void* work = nullptr;      // its first kWorkspaceAlign-aligned byte: cuBLAS's workspace
  float* scratch = nullptr;  // kScratchFloats floats after it: a bf16 GEMM's float32 tiles (gemm_rounded)
  cudaStream_t stream = nullptr;
  cudaEvent_t done = nullptr;
};

// A cuBLASLt algorithm per GEMM configuration (lt_algo below); none: cuBLASLt has none for it.
using AlgoKey = std::vector<int64_t>;

struct BlasState {
  std::once_flag init, lanes_init;
  cublasLtHandle_t lt = nullptr;
  std::mutex algos_mutex;
  std::map<AlgoKey, std::optional<cublasLtMatmulAlgo_t>> algos;
  Handle main;
  Handle lanes[kGemmLanes - 1];  // lanes 1 .. kGemmLanes-1; lane 0 is `main`
  cudaEvent_t fork = nullptr;
};

BlasState& blas_state(int device) {
  // Never destroyed, like the streams: a static destructor could run after the CUDA runtime is gone.
  static BlasState* all = new BlasState[std::max(::mom::cuda::device_count(), 1)];
  return all[device];
}

// A handle bound to `st`, with its own workspace from the pool (allocated on the device's stream).
void create_handle(Handle& h, cudaStream_t st, int device) {
  MOM_CUBLAS_CHECK(cublasCreate(&h.handle));
  MOM_CUBLAS_CHECK(cublasSetStream(h.handle, st));
  h.stream = st;
  h.workspace = empty({static_cast<int64_t>(kWorkspaceBytes + kScratchBytes + kWorkspaceAlign)}, DType::u8,
                      Device::cuda(device));
  const uintptr_t at = reinterpret_cast<uintptr_t>(h.workspace.raw_data());
  h.work = reinterpret_cast<void*>((at + kWorkspaceAlign - 1) / kWorkspaceAlign * kWorkspaceAlign);
  h.scratch = reinterpret_cast<float*>(static_cast<char*>(h.work) + kWorkspaceBytes);
  MOM_CUBLAS_CHECK(cublasSetWorkspace(h.handle, h.work, kWorkspaceBytes));
  MOM_CUBLAS_CHECK(cublasSetAtomicsMode(h.handle, CUBLAS_ATOMICS_NOT_ALLOWED));
  MOM_CUBLAS_CHECK(cublasSetMathMode(h.handle, CUBLAS_DEFAULT_MATH));
}

// The device's lanes, created on first use (their workspaces are allocated before any fork that
// follows, so the lanes may use them).
BlasState& lanes_state(int device) {
  cublas_handle(device);
  BlasState& s = blas_state(device);
  std::call_once(s.lanes_init, [&] {
    ::mom::cuda::DeviceGuard guard(device);
    MOM_CUDA_CHECK(cudaEventCreateWithFlags(&s.fork, cudaEventDisableTiming));
    for (Handle& lane : s.lanes) {
      MOM_CUDA_CHECK(cudaStreamCreateWithFlags(&lane.stream, cudaStreamNonBlocking));
      MOM_CUDA_CHECK(cudaEventCreateWithFlags(&lane.done, cudaEventDisableTiming));
      create_handle(lane, lane.stream, device);
    }
    ::mom::cuda::synchronize(device);  // the workspaces exist before any lane runs
  });
  return s;
}

// A run of `count` consecutive output batch indices from `first` over which the matrix indices of a
// and b advance by step_a and step_b.
struct Run {
  int64_t first, count, step_a, step_b;
};

// Splits the output batch into maximal runs (greedy, in order); steps are never negative.
std::vector<Run> batch_runs(const std::vector<int64_t>& ia, const std::vector<int64_t>& ib) {
  std::vector<Run> runs;
  const int64_t n = static_cast<int64_t>(ia.size());
  for (int64_t i = 0; i < n;) {
    Run r{i, 1, 0, 0};
    if (i + 1 < n && ia[i + 1] >= ia[i] && ib[i + 1] >= ib[i]) {
      r.step_a = ia[i + 1] - ia[i];
      r.step_b = ib[i + 1] - ib[i];
      while (i + r.count < n && ia[i + r.count] - ia[i + r.count - 1] == r.step_a &&
             ib[i + r.count] - ib[i + r.count - 1] == r.step_b)
        ++r.count;
    }
    if (r.count == 1) r.step_a = r.step_b = 0;
    runs.push_back(r);
    i += r.count;
  }
  return runs;
}

Shape batch_of(const Tensor& t) { return Shape(t.shape().begin(), t.shape().end() - 2); }

// A gradient computed over the output's batch, back to its operand's shape: a view when no batch dim
// was expanded, else summed over the expanded dims.
Tensor to_operand_shape(const Tensor& full, const Shape& shape) {
  if (full.numel() == shape_numel(shape)) return full.view(shape);
  return sum_to_shape(full, shape);  // cuda::sum_to_shape: full is a fresh contiguous CUDA tensor
}

}  // namespace

cublasHandle_t cublas_handle(int device) {
  cudaStream_t st = ::mom::cuda::stream(device);  // checks the device index
  BlasState& s = blas_state(device);
  std::call_once(s.init, [&] {
    ::mom::cuda::DeviceGuard guard(device);
    create_handle(s.main, st, device);
    MOM_CUBLAS_CHECK(cublasLtCreate(&s.lt));
  });
  return s.main.handle;
}

GemmLanes::GemmLanes(int device, bool active) : device_(device), active_(active) {
  if (!active_) return;
  BlasState& s = lanes_state(device);
  ::mom::cuda::DeviceGuard guard(device);
  MOM_CUDA_CHECK(cudaEventRecord(s.fork, ::mom::cuda::stream(device)));
}

int GemmLanes::use(int i) {
  const int lane = i % kGemmLanes;
  if (!active_ || lane == 0) return 0;
  if (!used_[lane]) {
    MOM_CUDA_CHECK(cudaStreamWaitEvent(blas_state(device_).lanes[lane - 1].stream, blas_state(device_).fork, 0));
    used_[lane] = true;
  }
  return lane;
}

cublasHandle_t GemmLanes::handle(int i) {
  const int lane = use(i);
  return lane == 0 ? cublas_handle(device_) : blas_state(device_).lanes[lane - 1].handle;
}

cudaStream_t GemmLanes::stream(int i) {
  const int lane = use(i);
  return lane == 0 ? ::mom::cuda::stream(device_) : blas_state(device_).lanes[lane - 1].stream;
}

void GemmLanes::join() {
  if (!active_) return;
  BlasState& s = blas_state(device_);
  ::mom::cuda::DeviceGuard guard(device_);
  for (int lane = 1; lane < kGemmLanes; ++lane) {
    if (!used_[lane]) continue;
    used_[lane] = false;
    Handle& h = s.lanes[lane - 1];
    MOM_CUDA_CHECK(cudaEventRecord(h.done, h.stream));
    MOM_CUDA_CHECK(cudaStreamWaitEvent(::mom::cuda::stream(device_), h.done, 0));
  }
}

GemmLanes::~GemmLanes() {
  try {
    join();
  } catch (...) {  // a destructor must not throw; the error was (or will be) reported by the work itself
  }
}

namespace {

// c[i, j] += bias[j] for the (m, n) row-major C: the bias of a GEMM that cuBLASLt does not fuse.
template <typename T>
__global__ void add_bias_kernel(T* __restrict__ c, int64_t m, int64_t n, int64_t ldc, const T* __restrict__ bias) {
  const int64_t step = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < m * n; i += step) {
    const int64_t r = i / n, j = i - r * n;
    c[r * ldc + j] += bias[j];
  }
}

// c[i, j] = bf16(s[i, j] + beta * c[i, j] + bias[j]) for the (m, n) float32 tile s (rows of n) and the
// row-major bf16 C: the whole float32 value rounded once. C is read only when beta != 0 (beta 0 must
// not turn a NaN of uninitialised memory into the result).
__global__ void round_bias_kernel(const float* __restrict__ s, int64_t m, int64_t n, const float* __restrict__ bias,
                                  float beta, bf16* __restrict__ c, int64_t ldc) {
  const int64_t step = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < m * n; i += step) {
    const int64_t r = i / n, j = i - r * n;
    float v = s[i];
    if (beta != 0.0f) v += beta * static_cast<float>(c[r * ldc + j]);
    c[r * ldc + j] = bf16(v + bias[j]);
  }
}

// The largest power of two <= 256 that divides the address: cuBLASLt's alignment preferences.
int64_t alignment(const void* p) {
  const uintptr_t at = reinterpret_cast<uintptr_t>(p);
  int64_t a = 256;
  while (a > 1 && at % a != 0) a /= 2;
  return a;
}

// The cuBLASLt description of a row-major GEMM of this shape, as the column-major C^T (n, m) =
// op(B)^T (n, k) op(A)^T (k, m): cuBLASLt's A is our b, its B our a (blas.cuh's header).
class LtGemm {
 public:
  // Operands of T's data type, C and D of C's, the scalars of the accumulation type; a bias of the
  // accumulation type too (cuBLASLt's default bias type is D's: a bf16 D is told its bias is float32).
  // Delegates to the default constructor, so that a create call that throws part way still runs the
  // destructor on the descriptors already made.
  template <typename T, typename C>
  LtGemm(const Gemm<T, C>& g, int64_t m, int64_t k, bool bias) : LtGemm() {
    const cublasComputeType_t compute = BlasTraits<T>::compute();
    const cudaDataType_t type = BlasTraits<T>::type, type_c = BlasTraits<C>::type,
                         type_acc = BlasTraits<gemm_acc_t<T>>::type;
    const cublasOperation_t op_a = g.tb ? CUBLAS_OP_T : CUBLAS_OP_N, op_b = g.ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasLtEpilogue_t epilogue = bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
    const int64_t n = g.n;
    MOM_CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc, compute, type_acc));
    MOM_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof(op_a)));
    MOM_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof(op_b)));
    MOM_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)));
    if (bias && type_acc != type_c) {
      const int32_t bias_type = type_acc;  // the attribute is an int32_t holding a cudaDataType
      MOM_CUBLAS_CHECK(
          cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof(bias_type)));
    }
    MOM_CUBLAS_CHECK(g.tb ? cublasLtMatrixLayoutCreate(&la, type, k, n, g.ldb)
                          : cublasLtMatrixLayoutCreate(&la, type, n, k, g.ldb));
    MOM_CUBLAS_CHECK(g.ta ? cublasLtMatrixLayoutCreate(&lb, type, m, k, g.lda)
                          : cublasLtMatrixLayoutCreate(&lb, type, k, m, g.lda));
    MOM_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&lc, type_c, n, m, g.ldc));
  }
  ~LtGemm() {
    if (lc) cublasLtMatrixLayoutDestroy(lc);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (desc) cublasLtMatmulDescDestroy(desc);
  }
  LtGemm(const LtGemm&) = delete;
  LtGemm& operator=(const LtGemm&) = delete;

  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;

 private:
  LtGemm() = default;
};

// cuBLASLt's first choice for `shape` under the pointers' alignments, or none. A narrow (bf16) output
// admits no split-K algorithm that reduces its partial sums in the output type (in place or in the
// workspace): each would be rounded to bf16 before the final sum. Split-K in the compute type stays.
std::optional<cublasLtMatmulAlgo_t> lt_heuristic(cublasLtHandle_t lt, const LtGemm& shape, int64_t align_a,
                                                 int64_t align_b, int64_t align_c, bool narrow_output) {
  cublasLtMatmulPreference_t pref = nullptr;
  MOM_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t workspace = kWorkspaceBytes;
  const uint32_t a = static_cast<uint32_t>(align_a), b = static_cast<uint32_t>(align_b),
                 c = static_cast<uint32_t>(align_c);
  cublasStatus_t status = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                               &workspace, sizeof(workspace));
  if (status == CUBLAS_STATUS_SUCCESS)
    status = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &a, sizeof(a));
  if (status == CUBLAS_STATUS_SUCCESS)
    status = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &b, sizeof(b));
  if (status == CUBLAS_STATUS_SUCCESS)
    status = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &c, sizeof(c));
  if (status == CUBLAS_STATUS_SUCCESS)
    status = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &c, sizeof(c));
  const uint32_t reductions = CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;  // and none (no split-K)
  if (status == CUBLAS_STATUS_SUCCESS && narrow_output)
    status = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &reductions,
                                                  sizeof(reductions));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  if (status == CUBLAS_STATUS_SUCCESS)
    status = cublasLtMatmulAlgoGetHeuristic(lt, shape.desc, shape.la, shape.lb, shape.lc, shape.lc, pref, 1, &result,
                                            &found);
  cublasLtMatmulPreferenceDestroy(pref);
  // A configuration cuBLASLt does not take (NOT_SUPPORTED; for a bf16 output also INVALID_VALUE, which
  // it answers for type combinations it lacks, such as a float32 bias beside a bf16 output) has no
  // algorithm: gemm() falls back to cublasGemmEx.
  if (status == CUBLAS_STATUS_NOT_SUPPORTED || (narrow_output && status == CUBLAS_STATUS_INVALID_VALUE))
    return std::nullopt;
  MOM_CUBLAS_CHECK(status);
  if (status != CUBLAS_STATUS_SUCCESS || found == 0 || result.state != CUBLAS_STATUS_SUCCESS) return std::nullopt;
  return result.algo;
}

// The algorithm of one configuration, chosen once per device: the plan shape's (when it differs and
// cuBLASLt accepts it for this shape), else this shape's own, else none.
template <typename T, typename C>
std::optional<cublasLtMatmulAlgo_t> lt_algo(BlasState& s, const Gemm<T, C>& g, const LtGemm& actual, bool bias) {
  const int64_t plan_m = g.plan_m > 0 ? g.plan_m : g.m, plan_k = g.plan_k > 0 ? g.plan_k : g.k;
  const int64_t align_a = alignment(g.b), align_b = alignment(g.a), align_c = alignment(g.c);
  const bool narrow = std::is_same_v<C, bf16>;
  // The operand type with its compute setting, and the output type: the same shape of another type is
  // another configuration.
  const AlgoKey key{BlasTraits<T>::key(), static_cast<int64_t>(dtype_of<C>()), g.ta, g.tb, g.m, g.n, g.k, g.lda,
                    g.ldb, g.ldc, plan_m, plan_k, align_a, align_b, align_c, bias};
  std::lock_guard<std::mutex> lock(s.algos_mutex);
  auto found = s.algos.find(key);
  if (found != s.algos.end()) return found->second;
  std::optional<cublasLtMatmulAlgo_t> algo;
  if (plan_m != g.m || plan_k != g.k) {
    const LtGemm plan(g, plan_m, plan_k, bias);
    algo = lt_heuristic(s.lt, plan, align_a, align_b, align_c, narrow);
    cublasLtMatmulHeuristicResult_t check{};
    if (algo && cublasLtMatmulAlgoCheck(s.lt, actual.desc, actual.la, actual.lb, actual.lc, actual.lc, &*algo,
                                        &check) != CUBLAS_STATUS_SUCCESS)
      algo.reset();
    if (algo && check.workspaceSize > kWorkspaceBytes) algo.reset();
  }
  if (!algo) algo = lt_heuristic(s.lt, actual, align_a, align_b, align_c, narrow);
  s.algos.emplace(key, algo);
  return algo;
}

// A bf16 C with a bias that cuBLASLt does not add: tiles of C computed in float32 into the handle's
// scratch (cublasGemmEx, beta 0), each finished by round_bias_kernel (beta * C and the bias added, one
// rounding). The tiles run one after another on the handle's stream, which orders the scratch's reuse.
void gemm_rounded(int device, const Gemm<bf16, bf16>& g, const Handle& h) {
  const int64_t cols = std::min(g.n, kScratchFloats);
  const int64_t rows = std::min(g.m, std::max<int64_t>(1, kScratchFloats / cols));
  const float alpha = 1.0f, zero = 0.0f;
  for (int64_t r0 = 0; r0 < g.m; r0 += rows)
    for (int64_t c0 = 0; c0 < g.n; c0 += cols) {
      const int64_t mr = std::min(rows, g.m - r0), nc = std::min(cols, g.n - c0);
      // rows [r0, r0 + mr) of op(A) and columns [c0, c0 + nc) of op(B), where they are stored
      const bf16* a = g.a + (g.ta ? r0 : r0 * g.lda);
      const bf16* b = g.b + (g.tb ? c0 * g.ldb : c0);
      MOM_CUBLAS_CHECK(cublasGemmEx_64(h.handle, g.tb ? CUBLAS_OP_T : CUBLAS_OP_N, g.ta ? CUBLAS_OP_T : CUBLAS_OP_N, nc,
                                       mr, g.k, &alpha, b, CUDA_R_16BF, g.ldb, a, CUDA_R_16BF, g.lda, &zero, h.scratch,
                                       CUDA_R_32F, nc, BlasTraits<bf16>::compute(), CUBLAS_GEMM_DEFAULT));
      round_bias_kernel<<<grid_for(mr * nc, device), kThreads, 0, h.stream>>>(h.scratch, mr, nc, g.bias + c0, g.beta,
                                                                             g.c + r0 * g.ldc + c0, g.ldc);
      MOM_CUDA_CHECK_LAUNCH();
    }
}

}  // namespace

template <typename T, typename C> void gemm(int device, const Gemm<T, C>& g, cublasHandle_t handle) {
  static_assert(kGemmTypes<T, C>, "gemm: float, double or bf16 operands; C of their type, or float beside bf16");
  constexpr bool rounds = std::is_same_v<C, bf16>;  // a bias must join the float32 value before the rounding
  ::mom::cuda::DeviceGuard guard(device);
  if (handle == nullptr) handle = cublas_handle(device);
  BlasState& s = blas_state(device);
  const Handle* h = &s.main;
  for (const Handle& lane : s.lanes)
    if (lane.handle == handle) h = &lane;
  MOM_CHECK(h->handle == handle, "gemm", "the cuBLAS handle is not one of device " << device << "'s");
  // The bias is fused when cuBLASLt can read it as vectors (16-byte aligned); else added after (to a
  // bf16 C: by gemm_rounded, before the rounding).
  const bool fuse_bias = g.bias != nullptr && alignment(g.bias) >= 16;
  if constexpr (rounds) {
    if (g.bias != nullptr && !fuse_bias) {
      gemm_rounded(device, g, *h);
      return;
    }
  }
  const LtGemm actual(g, g.m, g.k, fuse_bias);
  const std::optional<cublasLtMatmulAlgo_t> algo = lt_algo(s, g, actual, fuse_bias);
  if constexpr (rounds) {
    if (g.bias != nullptr && !algo) {
      gemm_rounded(device, g, *h);
      return;
    }
  }
  const gemm_acc_t<T> alpha = gemm_acc_t<T>(1);
  if (algo) {
    if (fuse_bias)
      MOM_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(actual.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g.bias,
                                                      sizeof(g.bias)));
    MOM_CUBLAS_CHECK(cublasLtMatmul(s.lt, actual.desc, &alpha, g.b, actual.la, g.a, actual.lb, &g.beta, g.c, actual.lc,
                                    g.c, actual.lc, &*algo, h->work, kWorkspaceBytes, h->stream));
  } else {  // cuBLASLt has no algorithm for this configuration: cuBLAS's own choice, the bias after
    const cudaDataType_t type = BlasTraits<T>::type, type_c = BlasTraits<C>::type;
    MOM_CUBLAS_CHECK(cublasGemmEx_64(handle, g.tb ? CUBLAS_OP_T : CUBLAS_OP_N, g.ta ? CUBLAS_OP_T : CUBLAS_OP_N, g.n,
                                     g.m, g.k, &alpha, g.b, type, g.ldb, g.a, type, g.lda, &g.beta, g.c, type_c, g.ldc,
                                     BlasTraits<T>::compute(), CUBLAS_GEMM_DEFAULT));
  }
  if constexpr (!rounds) {  // C is of the bias's type here
    if (g.bias != nullptr && !(algo && fuse_bias)) {
      add_bias_kernel<C><<<grid_for(g.m * g.n, device), kThreads, 0, h->stream>>>(g.c, g.m, g.n, g.ldc, g.bias);
      MOM_CUDA_CHECK_LAUNCH();
    }
  }
}

template void gemm<float, float>(int, const Gemm<float, float>&, cublasHandle_t);
template void gemm<double, double>(int, const Gemm<double, double>&, cublasHandle_t);
template void gemm<bf16, bf16>(int, const Gemm<bf16, bf16>&, cublasHandle_t);
template void gemm<bf16, float>(int, const Gemm<bf16, float>&, cublasHandle_t);

namespace {

// c = op(a) @ op(b) (+ bias) with operands of type T and c (allocated, of the output's shape) of type C.
template <typename T, typename C>
void product_into(const Tensor& a, const Tensor& b, bool transpose_a, bool transpose_b, const Tensor& bias,
                  Tensor& c) {
  const Shape& out_shape = c.shape();
  const int64_t m = out_shape[out_shape.size() - 2], n = out_shape.back();
  const int64_t k = transpose_a ? a.size(-2) : a.size(-1);
  const int64_t lda = a.size(-1), ldb = b.size(-1);  // stored row lengths
  const int device = a.device().index;
  const Shape ba = batch_of(a), bb = batch_of(b), batch(out_shape.begin(), out_shape.end() - 2);
  const T* ap = a.data<T>();
  const T* bp = b.data<T>();
  C* cp = c.data<C>();
  if (bb.empty() && !transpose_a) {
    // Every matrix of a times the one b: the batch dims fold into the rows of one GEMM.
    Gemm<T, C> g(false, transpose_b, shape_numel(ba) * m, n, k, ap, lda, bp, ldb, cp, n);
    g.bias = bias.defined() ? bias.data<gemm_acc_t<T>>() : nullptr;
    gemm(device, g);
    return;
  }
  const std::vector<int64_t> ia = matmul_batch_index_map(ba, batch), ib = matmul_batch_index_map(bb, batch);
  const int64_t size_a = a.size(-2) * a.size(-1), size_b = b.size(-2) * b.size(-1), size_c = m * n;
  for (const Run& r : batch_runs(ia, ib))
    gemm_strided_batched(device, transpose_a, transpose_b, m, n, k, ap + ia[r.first] * size_a, lda, r.step_a * size_a,
                         bp + ib[r.first] * size_b, ldb, r.step_b * size_b, cp + r.first * size_c, n, size_c, r.count);
}

// The product of cuda::matmul with an output of dtype `out`: a's dtype, or float32 beside bf16 operands
// (the product before its rounding). K >= 1 and a non-empty output.
Tensor product(const Tensor& a, const Tensor& b, bool transpose_a, bool transpose_b, const Tensor& bias, DType out) {
  Tensor c = empty(matmul_output_shape(a, b, transpose_a, transpose_b), out, a.device());
  dispatch_gemm(a.dtype(), "matmul", [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    if constexpr (std::is_same_v<scalar_t, bf16>) {
      if (out == DType::f32) {
        product_into<bf16, float>(a, b, transpose_a, transpose_b, bias, c);
        return;
      }
    }
    MOM_CHECK(out == a.dtype(), "matmul", "no " << dtype_name(out) << " product of " << dtype_name(a.dtype()));
    product_into<scalar_t, scalar_t>(a, b, transpose_a, transpose_b, bias, c);
  });
  return c;
}

// The gradient op(x) @ op(y) of an operand of shape `shape`: the product over the output's batch, summed
// over the batch dims that broadcasting expanded. A bf16 product that must be summed stays float32
// until the sum is done, then rounds once.
Tensor grad_product(const Tensor& x, const Tensor& y, bool tx, bool ty, const Shape& shape) {
  const Shape full_shape = matmul_output_shape(x, y, tx, ty);
  if (x.dtype() != DType::bf16 || shape_numel(full_shape) == shape_numel(shape))
    return to_operand_shape(kernels::matmul(x, y, tx, ty), shape);  // the public matmul: any K, any size
  const int64_t k = tx ? x.size(-2) : x.size(-1);
  if (shape_numel(full_shape) == 0 || k == 0) return zeros(shape, x.dtype(), x.device());
  return sum_to_shape(product(x, y, tx, ty, Tensor(), DType::f32), shape).to(DType::bf16);
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b, bool transpose_a, bool transpose_b, const Tensor& bias) {
  return product(a, b, transpose_a, transpose_b, bias, a.dtype());
}

MatmulGrads matmul_backward(const Tensor& dc, const Tensor& a, const Tensor& b, bool transpose_a, bool transpose_b,
                            bool need_a, bool need_b) {
  // The products go through the public matmul, which handles the empty and K = 0 cases (a bf16
  // product summed over broadcast dims: grad_product).
  MatmulGrads g;
  if (need_a) {
    // stored da = dc @ op(b)^T, or its transpose op(b) @ dc^T when a is read transposed.
    g.da = transpose_a ? grad_product(b, dc, transpose_b, true, a.shape())
                       : grad_product(dc, b, false, !transpose_b, a.shape());
  }
  if (need_b) {
    // stored db = op(a)^T @ dc, or its transpose dc^T @ op(a) when b is read transposed.
    Tensor a_use = a.detach(), dc_use = dc.detach();
    if (b.dim() == 2 && !transpose_a) {
      // The batch folds into K: one GEMM sums over every row.
      a_use = a_use.view({-1, a.size(-1)});
      dc_use = dc_use.view({-1, dc.size(-1)});
    }
    g.db = transpose_b ? grad_product(dc_use, a_use, true, transpose_a, b.shape())
                       : grad_product(a_use, dc_use, !transpose_a, false, b.shape());
  }
  return g;
}

}  // namespace mom::kernels::cuda
