// bench_cuda_scan: the CUDA selective scan, float32, with z, D, delta_bias and softplus (mamba_ssm's
// training configuration), at B=8, E=1536, N=16 and L = 512, 2048, 8192.
//
// Prints per shape the median time (CUDA events on the framework's stream, after a warm-up) of the
// forward and of forward + backward, each against its floor and against mamba_ssm's selective_scan on
// the same GPU model (issue 7's numbers, two runs each: forward / forward+backward 0.28 / 1.07 ms at
// L=512, 0.91-0.95 / 3.23-3.28 ms at L=2048, 3.77 / 12.93 ms at L=8192).
// Floor of a pass = max(bytes it must move / the device-to-device copy bandwidth measured in this run,
// exponentials it must compute / 4.1e12 per second, the H200's exp2 rate). Forward: reads u, delta, z,
// B, C and writes out; B*L*E*N exps. Backward: reads u, delta, z, dout, B, C, writes du, ddelta, dz, dB,
// dC; the exps once more (a backward that stored every state would still need dA = exp(dt A)).
//
// Usage: bench_cuda_scan [runs]   (default 30)
#include <cstdio>
#include <cstdlib>

#ifndef MOM_WITH_CUDA

int main() {
  std::printf("bench_cuda_scan: built without CUDA\n");
  return 0;
}

#else

#include <cuda_runtime.h>

#include <algorithm>
#include <functional>
#include <vector>

#include "core/cuda/memory.h"
#include "core/cuda/stream.h"
#include "kernels/selective_scan.h"
#include "examples/bench/cuda_timing.h"

using namespace mom;
using bench::median_ms;

namespace {

const Device kGpu = Device::cuda(0);
constexpr double kExpRate = 4.1e12;

struct Reference {
  int64_t L;
  double fwd_ms, fwdbwd_ms;  // mamba_ssm on the H200 (the faster of the two runs)
};

}  // namespace

int main(int argc, char** argv) {
  const int runs = argc > 1 ? std::atoi(argv[1]) : 30;
  Generator gen(7);

  // Copy bandwidth: bytes read + written per second by a 1 GiB device-to-device copy.
  const int64_t copy_n = int64_t(1) << 28;
  Tensor a = rand({int64_t(1) << 20}, gen).to(kGpu).view({1, int64_t(1) << 20}).expand({256, int64_t(1) << 20}).contiguous();
  Tensor b = empty(a.shape(), DType::f32, kGpu);
  const double copy_ms = median_ms(runs, [&] { b.copy_(a); });
  const double copy_bw = 2.0 * copy_n * 4 / (copy_ms * 1e-3);
  a = Tensor();
  b = Tensor();
  std::printf("device-to-device copy: %.1f GB/s (1 GiB, %.3f ms)\n\n", copy_bw / 1e9, copy_ms);

  const int64_t B = 8, E = 1536, N = 16;
  const Reference refs[] = {{512, 0.28, 1.07}, {2048, 0.91, 3.23}, {8192, 3.77, 12.93}};
  std::printf("%-22s %-8s %9s %9s %9s %12s %10s\n", "shape", "pass", "ms", "floor ms", "x floor", "mamba_ssm ms",
              "speed-up");
  for (const Reference& ref : refs) {
    const int64_t L = ref.L;
    kernels::SelectiveScanParams p;
    p.u = randn({B, L, E}, gen).to(kGpu);
    p.delta = randn({B, L, E}, gen, DType::f32, -1.0, 1.0).to(kGpu);
    p.A = rand({E, N}, gen, DType::f32, -4.0, -0.1).to(kGpu);
    p.B_ssm = randn({B, L, N}, gen).to(kGpu);
    p.C_ssm = randn({B, L, N}, gen).to(kGpu);
    p.D = randn({E}, gen).to(kGpu);
    p.z = randn({B, L, E}, gen).to(kGpu);
    p.delta_bias = rand({E}, gen, DType::f32, -0.5, 0.5).to(kGpu);
    p.delta_softplus = true;
    Tensor dout = randn({B, L, E}, gen).to(kGpu);

    const double ble = double(B) * L * E, bln = double(B) * L * N, exps = ble * N;
    const double fwd_bytes = 4.0 * (4 * ble + 2 * bln);
    const double bwd_bytes = 4.0 * (7 * ble + 4 * bln);
    const double fwd_floor = std::max(fwd_bytes / copy_bw, exps / kExpRate) * 1e3;
    const double bwd_floor = std::max(bwd_bytes / copy_bw, exps / kExpRate) * 1e3;

    // fwd: inference (no checkpoints). fwd+bwd: training, as the autograd function runs it (the forward
    // keeps its chunk-start states, the backward uses them).
    const double fwd = median_ms(runs, [&] { kernels::selective_scan_forward(p); });
    const double both = median_ms(runs, [&] {
      kernels::SelectiveScanResult r = kernels::selective_scan_forward(p, true);
      kernels::selective_scan_backward(p, dout, Tensor(), r.checkpoints);
    });
    char shape[64];
    std::snprintf(shape, sizeof shape, "B%lld L%lld E%lld N%lld", static_cast<long long>(B), static_cast<long long>(L),
                  static_cast<long long>(E), static_cast<long long>(N));
    std::printf("%-22s %-8s %9.3f %9.3f %9.2f %12.2f %9.2fx\n", shape, "fwd", fwd, fwd_floor, fwd / fwd_floor,
                ref.fwd_ms, ref.fwd_ms / fwd);
    std::printf("%-22s %-8s %9.3f %9.3f %9.2f %12.2f %9.2fx\n", shape, "fwd+bwd", both, fwd_floor + bwd_floor,
                both / (fwd_floor + bwd_floor), ref.fwdbwd_ms, ref.fwdbwd_ms / both);
  }
  std::printf("\ntargets (issue 7, L=2048): forward <= 0.45 ms, forward+backward <= 1.6 ms\n");
  return 0;
}

#endif
