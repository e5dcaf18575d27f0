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
// Parallel decomposition and accumulation are cuBLAS's (float32 accumulators for float, TF32 inputs
// when allow_tf32(), float64 for double). Deterministic: cuBLAS on one stream with a fixed workspace
// and atomics disallowed, and sum_to_shape's fixed summation order.
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

// One handle and its workspace; lanes also own their stream and the event that marks their last work.
struct Handle {
  cublasHandle_t handle = nullptr;
  Tensor workspace;      // (kWorkspaceBytes + kWorkspaceAlign) u8 on the device
  void* work = nullptr;  // its first kWorkspaceAlign-aligned byte
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
  h.workspace = empty({static_cast<int64_t>(kWorkspaceBytes + kWorkspaceAlign)}, DType::u8, Device::cuda(device));
  const uintptr_t at = reinterpret_cast<uintptr_t>(h.workspace.raw_data());
  h.work = reinterpret_cast<void*>((at + kWorkspaceAlign - 1) / kWorkspaceAlign * kWorkspaceAlign);
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
  // Delegates to the default constructor, so that a create call that throws part way still runs the
  // destructor on the descriptors already made.
  template <typename T>
  LtGemm(const Gemm<T>& g, int64_t m, int64_t k, bool bias) : LtGemm() {
    constexpr bool is_float = std::is_same_v<T, float>;
    const cublasComputeType_t compute =
        is_float ? (allow_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F) : CUBLAS_COMPUTE_64F;
    const cudaDataType_t type = is_float ? CUDA_R_32F : CUDA_R_64F;
    const cublasOperation_t op_a = g.tb ? CUBLAS_OP_T : CUBLAS_OP_N, op_b = g.ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasLtEpilogue_t epilogue = bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
    const int64_t n = g.n;
    MOM_CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc, compute, type));
    MOM_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof(op_a)));
    MOM_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof(op_b)));
    MOM_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)));
    MOM_CUBLAS_CHECK(g.tb ? cublasLtMatrixLayoutCreate(&la, type, k, n, g.ldb)
                          : cublasLtMatrixLayoutCreate(&la, type, n, k, g.ldb));
    MOM_CUBLAS_CHECK(g.ta ? cublasLtMatrixLayoutCreate(&lb, type, m, k, g.lda)
                          : cublasLtMatrixLayoutCreate(&lb, type, k, m, g.lda));
    MOM_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&lc, type, n, m, g.ldc));
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

// cuBLASLt's first choice for `shape` under the pointers' alignments, or none.
std::optional<cublasLtMatmulAlgo_t> lt_heuristic(cublasLtHandle_t lt, const LtGemm& shape, int64_t align_a,
                                                 int64_t align_b, int64_t align_c) {
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
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  if (status == CUBLAS_STATUS_SUCCESS)
    status = cublasLtMatmulAlgoGetHeuristic(lt, shape.desc, shape.la, shape.lb, shape.lc, shape.lc, pref, 1, &result,
                                            &found);
  cublasLtMatmulPreferenceDestroy(pref);
  MOM_CUBLAS_CHECK(status == CUBLAS_STATUS_NOT_SUPPORTED ? CUBLAS_STATUS_SUCCESS : status);
  if (status != CUBLAS_STATUS_SUCCESS || found == 0 || result.state != CUBLAS_STATUS_SUCCESS) return std::nullopt;
  return result.algo;
}

// The algorithm of one configuration, chosen once per device: the plan shape's (when it differs and
// cuBLASLt accepts it for this shape), else this shape's own, else none.
template <typename T>
std::optional<cublasLtMatmulAlgo_t> lt_algo(BlasState& s, const Gemm<T>& g, const LtGemm& actual, bool bias) {
  const int64_t plan_m = g.plan_m > 0 ? g.plan_m : g.m, plan_k = g.plan_k > 0 ? g.plan_k : g.k;
  const int64_t align_a = alignment(g.b), align_b = alignment(g.a), align_c = alignment(g.c);
  const AlgoKey key{std::is_same_v<T, float> ? (allow_tf32() ? 1 : 0) : 2, g.ta, g.tb, g.m, g.n, g.k, g.lda, g.ldb,
                    g.ldc, plan_m, plan_k, align_a, align_b, align_c, bias};
  std::lock_guard<std::mutex> lock(s.algos_mutex);
  auto found = s.algos.find(key);
  if (found != s.algos.end()) return found->second;
  std::optional<cublasLtMatmulAlgo_t> algo;
  if (plan_m != g.m || plan_k != g.k) {
    const LtGemm plan(g, plan_m, plan_k, bias);
    algo = lt_heuristic(s.lt, plan, align_a, align_b, align_c);
    cublasLtMatmulHeuristicResult_t check{};
    if (algo && cublasLtMatmulAlgoCheck(s.lt, actual.desc, actual.la, actual.lb, actual.lc, actual.lc, &*algo,
                                        &check) != CUBLAS_STATUS_SUCCESS)
      algo.reset();
    if (algo && check.workspaceSize > kWorkspaceBytes) algo.reset();
  }
  if (!algo) algo = lt_heuristic(s.lt, actual, align_a, align_b, align_c);
  s.algos.emplace(key, algo);
  return algo;
}

}  // namespace

template <typename T> void gemm(int device, const Gemm<T>& g, cublasHandle_t handle) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "gemm: float or double");
  ::mom::cuda::DeviceGuard guard(device);
  if (handle == nullptr) handle = cublas_handle(device);
  BlasState& s = blas_state(device);
  const Handle* h = &s.main;
  for (const Handle& lane : s.lanes)
    if (lane.handle == handle) h = &lane;
  MOM_CHECK(h->handle == handle, "gemm", "the cuBLAS handle is not one of device " << device << "'s");
  // The bias is fused when cuBLASLt can read it as vectors (16-byte aligned); else added after.
  const bool fuse_bias = g.bias != nullptr && alignment(g.bias) >= 16;
  const LtGemm actual(g, g.m, g.k, fuse_bias);
  const std::optional<cublasLtMatmulAlgo_t> algo = lt_algo(s, g, actual, fuse_bias);
  const T alpha = T(1);
  if (algo) {
    if (fuse_bias)
      MOM_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(actual.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g.bias,
                                                      sizeof(g.bias)));
    MOM_CUBLAS_CHECK(cublasLtMatmul(s.lt, actual.desc, &alpha, g.b, actual.la, g.a, actual.lb, &g.beta, g.c, actual.lc,
                                    g.c, actual.lc, &*algo, h->work, kWorkspaceBytes, h->stream));
  } else {  // cuBLASLt has no algorithm for this configuration: cuBLAS's own choice, the bias after
    constexpr bool is_float = std::is_same_v<T, float>;
    const cudaDataType_t type = is_float ? CUDA_R_32F : CUDA_R_64F;
    const cublasComputeType_t compute =
        is_float ? (allow_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F) : CUBLAS_COMPUTE_64F;
    MOM_CUBLAS_CHECK(cublasGemmEx_64(handle, g.tb ? CUBLAS_OP_T : CUBLAS_OP_N, g.ta ? CUBLAS_OP_T : CUBLAS_OP_N, g.n,
                                     g.m, g.k, &alpha, g.b, type, g.ldb, g.a, type, g.lda, &g.beta, g.c, type, g.ldc,
                                     compute, CUBLAS_GEMM_DEFAULT));
  }
  if (g.bias != nullptr && !(algo && fuse_bias)) {
    add_bias_kernel<T><<<grid_for(g.m * g.n, device), kThreads, 0, h->stream>>>(g.c, g.m, g.n, g.ldc, g.bias);
    MOM_CUDA_CHECK_LAUNCH();
  }
}

template void gemm<float>(int, const Gemm<float>&, cublasHandle_t);
template void gemm<double>(int, const Gemm<double>&, cublasHandle_t);

Tensor matmul(const Tensor& a, const Tensor& b, bool transpose_a, bool transpose_b, const Tensor& bias) {
  const Shape out_shape = matmul_output_shape(a, b, transpose_a, transpose_b);
  const int64_t m = out_shape[out_shape.size() - 2], n = out_shape.back();
  const int64_t k = transpose_a ? a.size(-2) : a.size(-1);
  const int64_t lda = a.size(-1), ldb = b.size(-1);  // stored row lengths
  const int device = a.device().index;
  Tensor c = empty(out_shape, a.dtype(), a.device());
  const Shape ba = batch_of(a), bb = batch_of(b), batch(out_shape.begin(), out_shape.end() - 2);
  dispatch_float(a.dtype(), "matmul", [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    const scalar_t* ap = a.data<scalar_t>();
    const scalar_t* bp = b.data<scalar_t>();
    scalar_t* cp = c.data<scalar_t>();
    if (bb.empty() && !transpose_a) {
      // Every matrix of a times the one b: the batch dims fold into the rows of one GEMM.
      Gemm<scalar_t> g(false, transpose_b, shape_numel(ba) * m, n, k, ap, lda, bp, ldb, cp, n);
      g.bias = bias.defined() ? bias.data<scalar_t>() : nullptr;
      gemm(device, g);
      return;
    }
    const std::vector<int64_t> ia = matmul_batch_index_map(ba, batch), ib = matmul_batch_index_map(bb, batch);
    const int64_t size_a = a.size(-2) * a.size(-1), size_b = b.size(-2) * b.size(-1), size_c = m * n;
    for (const Run& r : batch_runs(ia, ib))
      gemm_strided_batched(device, transpose_a, transpose_b, m, n, k, ap + ia[r.first] * size_a, lda,
                           r.step_a * size_a, bp + ib[r.first] * size_b, ldb, r.step_b * size_b, cp + r.first * size_c,
                           n, size_c, r.count);
  });
  return c;
}

MatmulGrads matmul_backward(const Tensor& dc, const Tensor& a, const Tensor& b, bool transpose_a, bool transpose_b,
                            bool need_a, bool need_b) {
  // The products go through the public matmul, which handles the empty and K = 0 cases.
  MatmulGrads g;
  if (need_a) {
    // stored da = dc @ op(b)^T, or its transpose op(b) @ dc^T when a is read transposed.
    Tensor full = transpose_a ? kernels::matmul(b, dc, transpose_b, true) : kernels::matmul(dc, b, false, !transpose_b);
    g.da = to_operand_shape(full, a.shape());
  }
  if (need_b) {
    // stored db = op(a)^T @ dc, or its transpose dc^T @ op(a) when b is read transposed.
    Tensor a_use = a.detach(), dc_use = dc.detach();
    if (b.dim() == 2 && !transpose_a) {
      // The batch folds into K: one GEMM sums over every row of every batch matrix.
      a_use = a_use.view({-1, a.size(-1)});
      dc_use = dc_use.view({-1, dc.size(-1)});
    }
    Tensor full = transpose_b ? kernels::matmul(dc_use, a_use, true, transpose_a)
                              : kernels::matmul(a_use, dc_use, !transpose_a, false);
    g.db = to_operand_shape(full, b.shape());
  }
  return g;
}

}  // namespace mom::kernels::cuda
