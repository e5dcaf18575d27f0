// bench_scan_cpu: the CPU selective scan, forward and backward, in nanoseconds per (token x channel x
// state) element at B=2, L=1024, E=512, N=16, float32 (median of several runs).
//
// Floor: the scan is compute-bound on the CPU (16 MB of inputs against 16.8 M exponentials), and every
// element needs at least one exp(dt * A[n]) in the forward and two in the backward (recompute and
// reverse walk). The floor printed is those exps alone, timed here with the same threads, so the ratio
// says how much the rest of the recurrence costs on top of them.
//
// Usage: bench_scan_cpu [runs]   (OMP_NUM_THREADS sets the threads)
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <vector>

#include "kernels/selective_scan.h"

using namespace mom;

namespace {

double median_seconds(int runs, const std::function<void()>& f) {
  f();  // warm-up
  std::vector<double> times;
  for (int i = 0; i < runs; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

// Time of `per_element` exps over `count` floats, all threads.
double exp_floor_seconds(int runs, int64_t count, int per_element) {
  std::vector<float> x(count), y(count);
  for (int64_t i = 0; i < count; ++i) x[i] = -1e-3f * static_cast<float>(i % 1000);
  return median_seconds(runs, [&] {
    for (int k = 0; k < per_element; ++k) {
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < count; ++i) y[i] = std::exp(x[i] + y[i] * 1e-30f);
    }
  });
}

}  // namespace

int main(int argc, char** argv) {
  const int runs = argc > 1 ? std::atoi(argv[1]) : 5;
  const int64_t B = 2, L = 1024, E = 512, N = 16;
  const DType dt = DType::f32;
  Generator gen(0);
  kernels::SelectiveScanParams p;
  p.u = randn({B, L, E}, gen, dt);
  p.delta = rand({B, L, E}, gen, dt, -4.0, -1.0);
  p.A = rand({E, N}, gen, dt, -16.0, -1.0);
  p.B_ssm = randn({B, L, N}, gen, dt);
  p.C_ssm = randn({B, L, N}, gen, dt);
  p.D = ones({E}, dt);
  p.z = randn({B, L, E}, gen, dt);
  p.delta_bias = rand({E}, gen, dt, -1.0, 1.0);
  p.delta_softplus = true;
  Tensor dout = randn({B, L, E}, gen, dt);
  Tensor dlast = randn({B, E, N}, gen, dt);

  const double elements = static_cast<double>(B * L * E * N);
  const double fwd = median_seconds(runs, [&] { kernels::selective_scan_forward(p); });
  const double bwd = median_seconds(runs, [&] { kernels::selective_scan_backward(p, dout, dlast); });
  const double fwd_floor = exp_floor_seconds(runs, B * L * E * N, 1);
  const double bwd_floor = exp_floor_seconds(runs, B * L * E * N, 2);

  std::printf("selective scan, CPU, float32, B=%lld L=%lld E=%lld N=%lld, D z delta_bias softplus, %d threads, "
              "median of %d runs\n",
              static_cast<long long>(B), static_cast<long long>(L), static_cast<long long>(E),
              static_cast<long long>(N), omp_get_max_threads(), runs);
  std::printf("%-9s %10s %14s %22s %8s\n", "pass", "ms", "ns/element", "floor (exps) ns/elem", "ratio");
  std::printf("%-9s %10.2f %14.3f %22.3f %8.2f\n", "forward", fwd * 1e3, fwd * 1e9 / elements,
              fwd_floor * 1e9 / elements, fwd / fwd_floor);
  std::printf("%-9s %10.2f %14.3f %22.3f %8.2f\n", "backward", bwd * 1e3, bwd * 1e9 / elements,
              bwd_floor * 1e9 / elements, bwd / bwd_floor);
  return 0;
}
