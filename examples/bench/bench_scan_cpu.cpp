// bench_scan_cpu: the CPU selective scan, forward and backward, in nanoseconds per (token x channel x
// state) element at B=2, L=1024, E=512, N=16, float32 (median of several runs), and the CPU causal conv1d
// at the same tokens and channels (W=4, bias, SiLU), in nanoseconds per (token x channel).
//
// Each op runs on plain rows (no doc_start) and on packed rows of documents of random lengths in
// [64, 512] (doc_start, seeded), at equal tokens, the two timed alternately (plain, packed, plain, ...)
// so that the machine's drifts reach both alike; the last column is the packed time over the plain one,
// the cost of the document boundaries.
//
// Floors. The scan is compute-bound on the CPU (16 MB of inputs against 16.8 M exponentials), and every
// element needs at least one exp(dt * A[n]) in the forward and two in the backward (recompute and
// reverse walk): its floor is those exps alone. The conv's floor is its SiLU, one exp per (token x
// channel) in the forward and one in the backward (the sigmoid of the recomputed pre-activation): its W
// multiply-adds per element and the (B, L, E) tensors it moves cost far less. Floors are timed here with
// the same threads, so the ratio says how much the rest costs on top of them.
//
// Usage: bench_scan_cpu [runs]   (OMP_NUM_THREADS sets the threads)
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <utility>
#include <vector>

#include "examples/bench/documents.h"
#include "kernels/causal_conv1d.h"
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

// Medians of f and g timed alternately, after a warm-up of each.
std::pair<double, double> alternating_medians(int runs, const std::function<void()>& f,
                                              const std::function<void()>& g) {
  f();
  g();
  std::vector<double> tf, tg;
  auto time = [](const std::function<void()>& h) {
    auto t0 = std::chrono::steady_clock::now();
    h();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  for (int i = 0; i < runs; ++i) {
    tf.push_back(time(f));
    tg.push_back(time(g));
  }
  std::sort(tf.begin(), tf.end());
  std::sort(tg.begin(), tg.end());
  return {tf[tf.size() / 2], tg[tg.size() / 2]};
}

void print_row(const char* rows, const char* pass, double seconds, double elements, double floor, double plain) {
  std::printf("%-10s %-9s %10.2f %14.3f %14.3f %8.2f %10.3f\n", rows, pass, seconds * 1e3, seconds * 1e9 / elements,
              floor * 1e9 / elements, seconds / floor, seconds / plain);
}

void print_header() {
  std::printf("%-10s %-9s %10s %14s %14s %8s %10s\n", "rows", "pass", "ms", "ns/element", "floor ns/elem", "ratio",
              "vs plain");
}

}  // namespace

int main(int argc, char** argv) {
  const int runs = argc > 1 ? std::atoi(argv[1]) : 5;
  const int64_t B = 2, L = 1024, E = 512, N = 16, W = 4;
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
  const Tensor doc_start = bench::packed_documents(B, L, gen);
  kernels::SelectiveScanParams packed = p;
  packed.doc_start = doc_start;

  const double elements = static_cast<double>(B * L * E * N);
  const auto [fwd, fwd_docs] = alternating_medians(runs, [&] { kernels::selective_scan_forward(p); },
                                                    [&] { kernels::selective_scan_forward(packed); });
  const auto [bwd, bwd_docs] =
      alternating_medians(runs, [&] { kernels::selective_scan_backward(p, dout, dlast); },
                          [&] { kernels::selective_scan_backward(packed, dout, dlast); });
  const double fwd_floor = exp_floor_seconds(runs, B * L * E * N, 1);
  const double bwd_floor = exp_floor_seconds(runs, B * L * E * N, 2);

  std::printf("selective scan, CPU, float32, B=%lld L=%lld E=%lld N=%lld, D z delta_bias softplus, %d threads, "
              "median of %d runs; documents: %lld of 64-512 tokens\n",
              static_cast<long long>(B), static_cast<long long>(L), static_cast<long long>(E),
              static_cast<long long>(N), omp_get_max_threads(), runs,
              static_cast<long long>(bench::count_documents(doc_start)));
  print_header();
  print_row("plain", "forward", fwd, elements, fwd_floor, fwd);
  print_row("plain", "backward", bwd, elements, bwd_floor, bwd);
  print_row("documents", "forward", fwd_docs, elements, fwd_floor, fwd);
  print_row("documents", "backward", bwd_docs, elements, bwd_floor, bwd);

  Tensor x = randn({B, L, E}, gen, dt), weight = randn({E, W}, gen, dt, 0.0, 0.5), bias = randn({E}, gen, dt);
  Tensor dy = randn({B, L, E}, gen, dt);
  auto conv_forward = [&](const Tensor& starts) {
    return [&, starts] { kernels::causal_conv1d_forward({x, weight, bias, Tensor(), starts, true}); };
  };
  auto conv_backward = [&](const Tensor& starts) {
    return [&, starts] { kernels::causal_conv1d_backward({x, weight, bias, Tensor(), starts, true}, dy, Tensor()); };
  };
  const double conv_elements = static_cast<double>(B * L * E);
  const auto [cfwd, cfwd_docs] = alternating_medians(runs, conv_forward(Tensor()), conv_forward(doc_start));
  const auto [cbwd, cbwd_docs] = alternating_medians(runs, conv_backward(Tensor()), conv_backward(doc_start));
  const double cfwd_floor = exp_floor_seconds(runs, B * L * E, 1), cbwd_floor = exp_floor_seconds(runs, B * L * E, 1);
  std::printf("\ncausal conv1d, CPU, float32, B=%lld L=%lld E=%lld W=%lld, bias silu, the same documents\n",
              static_cast<long long>(B), static_cast<long long>(L), static_cast<long long>(E),
              static_cast<long long>(W));
  print_header();
  print_row("plain", "forward", cfwd, conv_elements, cfwd_floor, cfwd);
  print_row("plain", "backward", cbwd, conv_elements, cbwd_floor, cbwd);
  print_row("documents", "forward", cfwd_docs, conv_elements, cfwd_floor, cfwd);
  print_row("documents", "backward", cbwd_docs, conv_elements, cbwd_floor, cbwd);
  return 0;
}
