// bench_cuda_conv: the CUDA causal_conv1d, float32, at B=8, L=2048, E=1536, W=4 with bias and SiLU
// (Mamba's d_conv = 4 on d_inner = 1536), against its memory floor measured in the same run.
//
// Floor of a pass = the bytes it must move / the device-to-device copy rate (bytes read + written per
// second by a 512 MiB cudaMemcpyAsync, examples/bench/cuda_timing.h):
//   forward:  reads x (B*L*E), weight (E*W), bias (E); writes y (B*L*E) and the final window
//             (B*(W-1)*E): the bytes of a copy of x, and under 0.1% more;
//   backward: reads x, dy (B*L*E each), weight, bias; writes dx (B*L*E), dweight, dbias (pre is
//             recomputed from x, not stored);
//   forward + backward (training, as the autograd function runs them): the sum of the two.
// A row "copy of x" times a cudaMemcpyAsync of x itself, on the same floor: the fixed costs of a pass
// of this size, beside those of the kernels.
// Targets: the forward within 1.10x of its floor (a copy of x), forward + backward within 1.15x.
// The same in bf16 (mixed precision: x, y, dy, dx and the window bf16, 2 bytes each; weight, bias and
// their gradients float32): the forward within 1.15x of its floor, forward + backward within 1.3x.
// Rows print the median over the timed runs (CUDA events on the framework's stream, after a warm-up).
// Inputs are random, never zeros.
//
// Usage: bench_cuda_conv [runs]   (default 100, at least 50)
#include <cstdio>
#include <cstdlib>

#ifndef MOM_WITH_CUDA

int main() {
  std::printf("bench_cuda_conv: built without CUDA\n");
  return 0;
}

#else

#include <cuda_runtime.h>

#include <algorithm>
#include <functional>
#include <vector>

#include "core/cuda/memory.h"
#include "core/cuda/stream.h"
#include "kernels/causal_conv1d.h"
#include "examples/bench/cuda_timing.h"
#include "examples/bench/documents.h"

using namespace mom;
using bench::median_ms;

namespace {

const Device kGpu = Device::cuda(0);
constexpr double kForwardTarget = 1.10, kBothTarget = 1.15;  // x floor
constexpr double kBf16ForwardTarget = 1.15, kBf16BothTarget = 1.30;

struct Row {
  const char* name;
  double ms, bytes;
  double target;  // x floor (0: none)
};

}  // namespace

int main(int argc, char** argv) {
  const int runs = std::max(50, argc > 1 ? std::atoi(argv[1]) : 100);
  if (!cuda_available()) {
    std::printf("bench_cuda_conv: no CUDA device visible\n");
    return 1;
  }
  const bench::Rate copy = bench::copy_rate(runs);
  const int64_t B = 8, L = 2048, E = 1536, W = 4;
  const double x_bytes = double(B) * L * E * 4;
  const bench::Rate copy_x = bench::copy_rate(runs, static_cast<size_t>(x_bytes));

  Generator gen(8);
  Tensor x = randn({B, L, E}, gen).to(kGpu);
  Tensor dy = randn({B, L, E}, gen).to(kGpu);
  Tensor weight = randn({E, W}, gen, DType::f32, 0.0, 0.5).to(kGpu);
  Tensor bias = randn({E}, gen).to(kGpu);
  const double param_bytes = double(E) * (W + 1) * 4;  // weight and bias, or their gradients
  const double fwd_bytes = 2 * x_bytes + param_bytes + double(B) * (W - 1) * E * 4;
  const double bwd_bytes = 3 * x_bytes + 2 * param_bytes;

  const double fwd_ms =
      median_ms(runs, [&] { kernels::causal_conv1d_forward({x, weight, bias, Tensor(), Tensor(), true}); });
  const double bwd_ms = median_ms(
      runs, [&] { kernels::causal_conv1d_backward({x, weight, bias, Tensor(), Tensor(), true}, dy, Tensor()); });
  // Training: the forward, then the backward (which recomputes pre from x), as the autograd function runs them.
  const double both_ms = median_ms(runs, [&] {
    kernels::causal_conv1d_forward({x, weight, bias, Tensor(), Tensor(), true});
    kernels::causal_conv1d_backward({x, weight, bias, Tensor(), Tensor(), true}, dy, Tensor());
  });

  // The same tokens as packed documents of 64-512 tokens (doc_start).
  const Tensor docs = bench::packed_documents(B, L, gen).to(kGpu);
  const double both_docs_ms = median_ms(runs, [&] {
    kernels::causal_conv1d_forward({x, weight, bias, Tensor(), docs, true});
    kernels::causal_conv1d_backward({x, weight, bias, Tensor(), docs, true}, dy, Tensor());
  });

  // bf16: the sequence tensors half the bytes, the parameters as they are.
  const Tensor xh = x.to(DType::bf16), dyh = dy.to(DType::bf16);
  const double fwd_bytes_h = x_bytes + param_bytes + double(B) * (W - 1) * E * 2;
  const double bwd_bytes_h = 1.5 * x_bytes + 2 * param_bytes;
  const double fwd_h =
      median_ms(runs, [&] { kernels::causal_conv1d_forward({xh, weight, bias, Tensor(), Tensor(), true}); });
  const double both_h = median_ms(runs, [&] {
    kernels::causal_conv1d_forward({xh, weight, bias, Tensor(), Tensor(), true});
    kernels::causal_conv1d_backward({xh, weight, bias, Tensor(), Tensor(), true}, dyh, Tensor());
  });

  const Row rows[] = {
      {"copy of x", copy_x.ms, 2 * x_bytes, 0},
      {"forward", fwd_ms, fwd_bytes, kForwardTarget},
      {"backward", bwd_ms, bwd_bytes, 0},
      {"forward+backward", both_ms, fwd_bytes + bwd_bytes, kBothTarget},
      {"  docs 64-512", both_docs_ms, fwd_bytes + bwd_bytes, 0},
      {"bf16 forward", fwd_h, fwd_bytes_h, kBf16ForwardTarget},
      {"bf16 fwd+bwd", both_h, fwd_bytes_h + bwd_bytes_h, kBf16BothTarget},
  };
  cuda::MemoryStats stats = cuda::memory_stats(0);
  std::printf("bench_cuda_conv: float32 and bf16, B=%lld L=%lld E=%lld W=%lld, bias, SiLU; median of %d runs; "
              "peak device memory %.2f GiB\n",
              static_cast<long long>(B), static_cast<long long>(L), static_cast<long long>(E),
              static_cast<long long>(W), runs, stats.peak / double(1 << 30));
  std::printf("GPU: %s\n", bench::device_name().c_str());
  std::printf("floor = bytes / device-to-device copy rate %.0f GB/s (512 MiB, %.3f ms)\n", copy.per_s / 1e9, copy.ms);
  std::printf("%-18s %9s %9s %10s %8s   %s\n", "pass", "ms", "MB moved", "floor ms", "x floor", "target");
  for (const Row& r : rows) {
    const double floor_ms = copy.floor_ms(r.bytes), x = r.ms / floor_ms;
    std::printf("%-18s %9.4f %9.0f %10.4f %8.2f", r.name, r.ms, r.bytes / 1e6, floor_ms, x);
    if (r.target > 0)
      std::printf("   <= %.2fx %s\n", r.target, bench::verdict(x, r.target));
    else
      std::printf("   -\n");
  }
  std::printf("targets (x floor): forward <= %.2fx %s, forward+backward <= %.2fx %s\n", kForwardTarget,
              bench::verdict(rows[1].ms / copy.floor_ms(rows[1].bytes), kForwardTarget), kBothTarget,
              bench::verdict(rows[3].ms / copy.floor_ms(rows[3].bytes), kBothTarget));
  std::printf("bf16 targets (x floor): forward <= %.2fx %s, forward+backward <= %.2fx %s\n", kBf16ForwardTarget,
              bench::verdict(rows[5].ms / copy.floor_ms(rows[5].bytes), kBf16ForwardTarget), kBf16BothTarget,
              bench::verdict(rows[6].ms / copy.floor_ms(rows[6].bytes), kBf16BothTarget));
  std::printf("documents of 64-512 tokens (%lld): forward+backward %.3fx the plain rows, <= %.2fx %s\n",
              static_cast<long long>(bench::count_documents(docs)), both_docs_ms / both_ms, bench::kDocumentsTarget,
              both_docs_ms / both_ms <= bench::kDocumentsTarget ? "met" : "MISSED");
  return 0;
}

#endif
