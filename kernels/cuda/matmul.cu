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
#include <algorithm>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "core/cuda/memory.h"
#include "kernels/cuda/blas.cuh"
#include "kernels/elementwise.h"
#include "kernels/matmul.h"

namespace mom::kernels::cuda {

namespace {

constexpr size_t kWorkspaceBytes = size_t(32) << 20;
constexpr size_t kWorkspaceAlign = 256;  // cublasSetWorkspace's requirement

// One handle and its workspace; lanes also own their stream and the event that marks their last work.
struct Handle {
  cublasHandle_t handle = nullptr;
  Tensor workspace;  // (kWorkspaceBytes + kWorkspaceAlign) u8 on the device
  cudaStream_t stream = nullptr;
  cudaEvent_t done = nullptr;
};

struct BlasState {
  std::once_flag init, lanes_init;
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
  h.workspace = empty({static_cast<int64_t>(kWorkspaceBytes + kWorkspaceAlign)}, DType::u8, Device::cuda(device));
  const uintptr_t at = reinterpret_cast<uintptr_t>(h.workspace.raw_data());
  void* aligned = reinterpret_cast<void*>((at + kWorkspaceAlign - 1) / kWorkspaceAlign * kWorkspaceAlign);
  MOM_CUBLAS_CHECK(cublasSetWorkspace(h.handle, aligned, kWorkspaceBytes));
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
  });
  return s.main.handle;
}

GemmLanes::GemmLanes(int device, bool active) : device_(device), active_(active) {
  if (!active_) return;
  BlasState& s = lanes_state(device);
  ::mom::cuda::DeviceGuard guard(device);
  MOM_CUDA_CHECK(cudaEventRecord(s.fork, ::mom::cuda::stream(device)));
}

cublasHandle_t GemmLanes::handle(int i) {
  const int lane = i % kGemmLanes;
  if (!active_ || lane == 0) return cublas_handle(device_);
  Handle& h = blas_state(device_).lanes[lane - 1];
  if (!used_[lane]) {
    MOM_CUDA_CHECK(cudaStreamWaitEvent(h.stream, blas_state(device_).fork, 0));
    used_[lane] = true;
  }
  return h.handle;
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

Tensor matmul(const Tensor& a, const Tensor& b, bool transpose_a, bool transpose_b) {
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
      gemm(device, false, transpose_b, shape_numel(ba) * m, n, k, ap, lda, bp, ldb, cp, n);
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
