// bench_cuda_masked_linear: the four projections of one MoM block on the GPU, masked_linear forward +
// backward against the same GEMMs done densely on rows already sorted by modality. Target: masked
// within 1.15x of dense-sorted for the four projections together, with TF32 off (a ratio of two times
// of the same run, so the same on every GPU); with TF32 on the ratio is printed without a target.
//
// Block: D = 768, E = 1536 (expand 2), N = 16, R = 48; T = 8 x 2048 = 16384 tokens; M = 3 modalities in
// contiguous spans of 64-512 tokens (lengths from a seeded generator; each span's modality drawn at
// random among the other two). Projections (Out x In, FLOPs 6 T In Out for forward, dx and dweight):
//     in_proj 768 -> 3072, x_proj 1536 -> 80, dt_proj 48 -> 1536 with bias, out_proj 1536 -> 768.
// Masked: masked_linear_forward + masked_linear_backward (dx and the expert gradients, and the bias
// gradient for dt_proj) with the routing built once; Routing::from_modalities is timed apart (it
// includes its one host wait). Dense-sorted: for each modality, on its contiguous block of rows, the
// forward, dx and dweight GEMMs through kernels::matmul (cuBLAS), no gather, no scatter, no bias.
// Both allocate their outputs from the pool.
// Floor: the FLOPs over cuBLAS's float32 GEMM rate measured in this run at in_proj's forward shape
// (T x 768 -> 3072), full float32 with TF32 off and TF32 with it on (examples/bench/cuda_timing.h);
// each row prints masked and dense-sorted as multiples of it (x floor). Skinny shapes (x_proj,
// dt_proj) cannot reach that rate: their x floor is high for both.
//
// Times are medians of `runs` timed runs (CUDA events on the framework's stream) after a warm-up.
// Usage: bench_cuda_masked_linear [runs]   (default 20, at least 20)
#include <cstdio>
#include <cstdlib>

#ifndef MOM_WITH_CUDA

int main() {
  std::printf("bench_cuda_masked_linear: built without CUDA\n");
  return 0;
}

#else

#include <cuda_runtime.h>

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "core/cuda/memory.h"
#include "core/cuda/stream.h"
#include "kernels/masked_linear.h"
#include "kernels/matmul.h"
#include "examples/bench/cuda_timing.h"

using namespace mom;
using bench::median_ms;

namespace {

const Device kGpu = Device::cuda(0);
constexpr int64_t kBlock = int64_t(1) << 20;
constexpr double kRatioTarget = 1.15;  // masked / dense-sorted, TF32 off

// Random float32 values on the GPU: a random block of up to 1 M values, tiled.
Tensor random_gpu(const Shape& shape, Generator& gen, double scale) {
  const int64_t n = shape_numel(shape);
  Tensor out = empty({n}, DType::f32, kGpu);
  Tensor block = randn({std::min(n, kBlock)}, gen, DType::f32, 0.0, scale).to(kGpu);
  for (int64_t off = 0; off < n; off += kBlock) {
    const int64_t len = std::min(kBlock, n - off);
    out.narrow(0, off, len).copy_(block.narrow(0, 0, len));
  }
  return out.view(shape);
}

// Modality ids in contiguous spans of 64-512 tokens, each span's modality differing from the last.
std::vector<int32_t> span_ids(int64_t T, int64_t M, Generator& gen, int64_t& spans) {
  std::vector<int32_t> ids;
  ids.reserve(T);
  int32_t m = static_cast<int32_t>(gen.randint(M));
  spans = 0;
  while (static_cast<int64_t>(ids.size()) < T) {
    const int64_t len = std::min<int64_t>(64 + static_cast<int64_t>(gen.randint(512 - 64 + 1)), T - ids.size());
    ids.insert(ids.end(), len, m);
    ++spans;
    m = static_cast<int32_t>((m + 1 + gen.randint(M - 1)) % M);
  }
  return ids;
}

struct Projection {
  const char* name;
  int64_t In, Out;
  bool bias;
};

struct Timing {
  double masked_ms, dense_ms, flops;
};

Timing time_projection(const Projection& p, const kernels::Routing& routing, int64_t T, int64_t M, int runs,
                       Generator& gen) {
  Tensor x = random_gpu({T, p.In}, gen, 1.0), dy = random_gpu({T, p.Out}, gen, 1.0);
  std::vector<Tensor> weight, bias;
  for (int64_t m = 0; m < M; ++m) {
    weight.push_back(random_gpu({p.Out, p.In}, gen, 0.02));
    if (p.bias) bias.push_back(random_gpu({p.Out}, gen, 0.1));
  }
  Timing t;
  t.flops = 6.0 * double(T) * double(p.In) * double(p.Out);
  t.masked_ms = median_ms(runs, [&] {
    kernels::masked_linear_forward(x, routing, weight, bias);
    kernels::masked_linear_backward(dy, x, routing, weight, p.bias, true, true);
  });
  // x and dy stand for rows already in modality order: modality m's block is rows [offsets[m], offsets[m+1]).
  t.dense_ms = median_ms(runs, [&] {
    for (int64_t m = 0; m < M; ++m) {
      const int64_t off = routing.offsets[m], n = routing.counts[m];
      if (n == 0) continue;
      Tensor x_m = x.narrow(0, off, n), dy_m = dy.narrow(0, off, n);
      kernels::matmul(x_m, weight[m], false, true);   // y_m (n, Out)
      kernels::matmul(dy_m, weight[m], false, false);  // dx_m (n, In)
      kernels::matmul(dy_m, x_m, true, false);         // dweight[m] (Out, In)
    }
  });
  return t;
}

void print_row(const char* name, const Projection* p, const Timing& t, const bench::Rate& gemm) {
  const double floor_ms = gemm.floor_ms(t.flops);
  if (p)
    std::printf("%-10s %5lld %5lld %4s", name, (long long)p->In, (long long)p->Out, p->bias ? "yes" : "no");
  else
    std::printf("%-10s %5s %5s %4s", name, "", "", "");
  std::printf(" %10.3f %10.3f %6.3fx %9.3f %14.2f %13.2f\n", t.masked_ms, t.dense_ms, t.masked_ms / t.dense_ms, floor_ms,
              t.masked_ms / floor_ms, t.dense_ms / floor_ms);
}

}  // namespace

int main(int argc, char** argv) {
  const int runs = std::max(20, argc > 1 ? std::atoi(argv[1]) : 20);
  if (!cuda_available()) {
    std::printf("bench_cuda_masked_linear: no CUDA device visible\n");
    return 1;
  }
  const int64_t D = 768, E = 2 * D, N = 16, R = 48, T = 8 * 2048, M = 3;
  // The floor's GEMM rates, in_proj's forward shape; raw buffers, freed before the projections run.
  const bench::Rate gemm[2] = {bench::gemm_rate(T, 2 * E, D, bench::GemmType::f32, runs),
                               bench::gemm_rate(T, 2 * E, D, bench::GemmType::tf32, runs)};
  Generator gen(2024);
  int64_t spans = 0;
  Tensor ids = from_vector<int32_t>(span_ids(T, M, gen, spans), {T}).to(kGpu);
  kernels::Routing routing = kernels::Routing::from_modalities(ids, M);
  const double routing_ms = median_ms(runs, [&] { kernels::Routing::from_modalities(ids, M); });
  const Projection projections[] = {
      {"in_proj", D, 2 * E, false},
      {"x_proj", E, R + 2 * N, false},
      {"dt_proj", R, E, true},
      {"out_proj", E, D, false}};

  std::printf("bench_cuda_masked_linear: T = %lld (8 x 2048), M = %lld (tokens %lld / %lld / %lld in %lld spans), "
              "D = %lld, E = %lld, R = %lld, N = %lld; float32, median of %d runs\n",
              (long long)T, (long long)M, (long long)routing.counts[0], (long long)routing.counts[1],
              (long long)routing.counts[2], (long long)spans, (long long)D, (long long)E, (long long)R, (long long)N,
              runs);
  std::printf("GPU: %s\n", bench::device_name().c_str());
  std::printf("Routing::from_modalities (3 kernels + one host wait): %.3f ms\n", routing_ms);
  const bool saved_tf32 = kernels::allow_tf32();
  double total_ratio[2] = {0, 0};
  for (int tf32 = 0; tf32 < 2; ++tf32) {
    kernels::set_allow_tf32(tf32 == 1);
    std::printf("\nTF32 %s; forward + dx + dweight = 6 T In Out FLOPs; floor = FLOPs / cuBLAS's %s rate at "
                "%lld x %lld -> %lld: %.1f TFLOP/s (%.3f ms)\n",
                tf32 ? "on" : "off", tf32 ? "TF32" : "float32", (long long)T, (long long)D, (long long)(2 * E),
                gemm[tf32].per_s / 1e12, gemm[tf32].ms);
    std::printf("%-10s %5s %5s %4s %10s %10s %7s %9s %14s %13s\n", "projection", "In", "Out", "bias", "masked ms",
                "dense ms", "ratio", "floor ms", "masked x floor", "dense x floor");
    Timing total{0, 0, 0};
    for (const Projection& p : projections) {
      Timing t = time_projection(p, routing, T, M, runs, gen);
      print_row(p.name, &p, t, gemm[tf32]);
      total.masked_ms += t.masked_ms;
      total.dense_ms += t.dense_ms;
      total.flops += t.flops;
    }
    print_row("total", nullptr, total, gemm[tf32]);
    total_ratio[tf32] = total.masked_ms / total.dense_ms;
  }
  kernels::set_allow_tf32(saved_tf32);
  std::printf("\nmasked / dense-sorted, four projections: %.3fx with TF32 off (target <= %.2fx: %s), "
              "%.3fx with TF32 on (no target)\n",
              total_ratio[0], kRatioTarget, bench::verdict(total_ratio[0], kRatioTarget), total_ratio[1]);
  std::printf("peak device memory %.2f GiB\n", cuda::memory_stats(0).peak / double(1 << 30));
  return 0;
}

#endif
