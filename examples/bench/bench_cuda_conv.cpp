// bench_cuda_conv: the CUDA causal_conv1d, float32, at B=8, L=2048, E=1536, W=4 with bias and SiLU
// (Mamba's d_conv = 4 on d_inner = 1536), against its memory floor and against the causal-conv1d
// package on the same GPU model (issue 8's numbers, channel-last: forward 0.068-0.077 ms, forward +
// backward 0.285-0.321 ms).
//
// Floor of a pass = the bytes it must move / the bandwidth of a device-to-device copy of x measured in
// this run (bytes read + written per second). Forward: reads x, writes y (the weights, bias and the
// final window are negligible). Backward: reads x and dy, writes dx (pre is recomputed from x, not
// stored). Rows print the median over the timed runs (CUDA events on the framework's stream, after a
// warm-up). Inputs are random, never zeros.
//
// Usage: bench_cuda_conv [runs]   (default 100)
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

using namespace mom;
using bench::median_ms;

namespace {

const Device kGpu = Device::cuda(0);

struct Row {
  const char* name;
  double ms, bytes;
  double ref_lo, ref_hi;  // causal-conv1d's range, ms (0 where it has none)
  double target;          // issue 8's target, ms (0: none)
};

}  // namespace

int main(int argc, char** argv) {
  const int runs = std::max(50, argc > 1 ? std::atoi(argv[1]) : 100);
  if (!cuda_available()) {
    std::printf("bench_cuda_conv: no CUDA device visible\n");
    return 1;
  }
  const int64_t B = 8, L = 2048, E = 1536, W = 4;
  Generator gen(8);
  Tensor x = randn({B, L, E}, gen).to(kGpu);
  Tensor dy = randn({B, L, E}, gen).to(kGpu);
  Tensor weight = randn({E, W}, gen, DType::f32, 0.0, 0.5).to(kGpu);
  Tensor bias = randn({E}, gen).to(kGpu);
  const double tensor_bytes = double(B) * L * E * 4;

  Tensor copy = empty(x.shape(), DType::f32, kGpu);
  const double copy_ms = median_ms(runs, [&] { copy.copy_(x); });
  const double copy_bw = 2 * tensor_bytes / (copy_ms * 1e-3);  // bytes read + written per second
  copy = Tensor();

  const double fwd_ms = median_ms(runs, [&] { kernels::causal_conv1d_forward(x, weight, bias, Tensor(), true); });
  const double bwd_ms =
      median_ms(runs, [&] { kernels::causal_conv1d_backward(dy, Tensor(), x, weight, bias, Tensor(), true); });
  // Training: the forward, then the backward (which recomputes pre from x), as the autograd function runs them.
  const double both_ms = median_ms(runs, [&] {
    kernels::causal_conv1d_forward(x, weight, bias, Tensor(), true);
    kernels::causal_conv1d_backward(dy, Tensor(), x, weight, bias, Tensor(), true);
  });

  const Row rows[] = {
      {"copy d2d (x)", copy_ms, 2 * tensor_bytes, 0, 0, 0},
      {"forward", fwd_ms, 2 * tensor_bytes, 0.068, 0.077, 0.06},
      {"backward", bwd_ms, 3 * tensor_bytes, 0, 0, 0},
      {"forward+backward", both_ms, 5 * tensor_bytes, 0.285, 0.321, 0.2},
  };
  cuda::MemoryStats stats = cuda::memory_stats(0);
  std::printf("bench_cuda_conv: float32 B=%lld L=%lld E=%lld W=%lld, bias, SiLU; median of %d runs; copy %.0f GB/s; "
              "peak device memory %.2f GiB\n",
              static_cast<long long>(B), static_cast<long long>(L), static_cast<long long>(E),
              static_cast<long long>(W), runs, copy_bw / 1e9, stats.peak / double(1 << 30));
  std::printf("%-18s %9s %9s %10s %9s %8s %22s %10s\n", "pass", "ms", "MB moved", "floor ms", "x floor", "GB/s",
              "causal-conv1d ms (x)", "target ms");
  for (const Row& r : rows) {
    const double floor_ms = r.bytes / copy_bw * 1e3;
    std::printf("%-18s %9.4f %9.0f %10.4f %9.2f %8.0f", r.name, r.ms, r.bytes / 1e6, floor_ms, r.ms / floor_ms,
                r.bytes / (r.ms * 1e-3) / 1e9);
    if (r.ref_hi > 0)
      std::printf("   %.3f-%.3f (%.2f-%.2fx)", r.ref_lo, r.ref_hi, r.ref_lo / r.ms, r.ref_hi / r.ms);
    else
      std::printf("   %19s", "");
    if (r.target > 0)
      std::printf(" %6.2f %s\n", r.target, r.ms <= r.target ? "met" : "MISSED");
    else
      std::printf("\n");
  }
  return 0;
}

#endif
