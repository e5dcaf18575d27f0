// bench_cuda_layer: one Mixture-of-Mamba block and one dense Mamba block, forward + backward on the
// GPU in float32, at d_model 768, expand 2 (E = 1536), N 16, W 4, B = 8, L = 2048 (T = 16384 tokens);
// the MoM block routes 3 modalities in contiguous spans of 64-512 tokens drawn from a seeded
// generator. Each block runs in float32 with TF32 off and with TF32 allowed, and in bf16 mixed precision
// (bf16 input and output gradient; the float32 weights multiplied as bf16 copies, nn::weight_for; the
// conv and the scan on bf16 sequences beside their float32 parameters).
//
// Time: median of the timed runs (CUDA events on the framework's stream, after a warm-up) of
// forward + backward (output gradient random, input x requiring grad, parameter gradients released
// between runs), and of the forward alone (graph recorded, then dropped). The Routing is built once per
// batch and shared by every layer, so it is timed apart.
// Memory: the device's peak during one forward + backward above what was held before it (the
// parameters, x, dy and the Routing): activations, saved tensors, scratch and the gradients.
//
// Floor: the GEMM FLOPs of forward + backward (in_proj, x_proj, dt_proj, out_proj; the backward twice
// the forward) over cuBLAS's GEMM rate measured in this run at in_proj's forward shape (T x 768 ->
// 3072, the block's largest GEMM): full float32 for the TF32-off rows, TF32 for the TF32 rows and bf16
// for the bf16 rows (examples/bench/cuda_timing.h). It counts every FLOP at the rate of the largest
// GEMM, while the skinny x_proj and dt_proj GEMMs run slower and the scan, the conv and the elementwise
// work come on top: `x floor` says how far the block is from its GEMMs alone, and has no target.
// Targets (the same on every GPU): the MoM block within 1.15x of the dense block's time in the same
// run, TF32 off and allowed, and at most 1000 MiB of peak memory beyond its inputs. The MoM block also
// runs its tokens as packed documents of 64-512 tokens (doc_start, TF32 allowed, where the scan and the
// conv weigh most): within 1.05x of the same block without documents. In bf16: the MoM block within
// 1.10x of the dense bf16 block, and at most 520 MiB of peak memory beyond its inputs.
//
// Usage: bench_cuda_layer [runs]   (default 20, at least 10)
//        bench_cuda_layer profile mom|dense 0|1   one step (TF32 off|allowed) between cudaProfilerStart and
//        cudaProfilerStop, after two warm-up steps, for `ncu --profile-from-start off`; prints the memory
//        held after the forward and the step's peak.
#include <cstdio>
#include <cstdlib>

#ifndef MOM_WITH_CUDA

int main() {
  std::printf("bench_cuda_layer: built without CUDA\n");
  return 0;
}

#else

#include <cuda_profiler_api.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "core/cuda/memory.h"
#include "core/cuda/stream.h"
#include "kernels/matmul.h"
#include "nn/mamba.h"
#include "examples/bench/cuda_timing.h"
#include "examples/bench/documents.h"

using namespace mom;
using bench::median_ms;

namespace {

const Device kGpu = Device::cuda(0);
constexpr int64_t kB = 8, kL = 2048, kD = 768, kModalities = 3;
constexpr double kRatioTarget = 1.15;     // MoM / dense time
constexpr double kPeakTargetMib = 1000;  // the MoM block's peak beyond its inputs
constexpr double kBf16RatioTarget = 1.10, kBf16PeakTargetMib = 520;  // the same in bf16

// Modality ids (B*L) int32: contiguous spans of 64..512 tokens, each of a random modality.
Tensor span_modalities(Generator& gen) {
  std::vector<int32_t> ids;
  while (static_cast<int64_t>(ids.size()) < kB * kL) {
    const int32_t m = static_cast<int32_t>(gen.randint(kModalities));
    const int64_t span = 64 + static_cast<int64_t>(gen.randint(512 - 64 + 1));
    for (int64_t i = 0; i < span && static_cast<int64_t>(ids.size()) < kB * kL; ++i) ids.push_back(m);
  }
  return from_vector<int32_t>(ids, {kB * kL});
}

// Forward GEMM FLOPs per token (multiply-add = 2) of the four projections.
double gemm_flops_per_token(const nn::MambaConfig& c) {
  const double D = c.d_model, E = c.d_inner(), N = c.d_state, R = c.rank();
  return 2 * D * 2 * E + 2 * E * (R + 2 * N) + 2 * R * E + 2 * E * D;
}

struct Result {
  double ms = 0, forward_ms = 0, peak_mib = 0, routing_ms = 0;
};

// One block on the GPU with its batch: modality ids, input x (requiring grad) and output gradient dy.
struct Setup {
  nn::MambaConfig c;
  std::unique_ptr<nn::MambaBlock> block;
  Tensor ids, x, dy, doc_start;
};

// compute: the dtype of x and dy (float32, or bf16 for mixed precision); the parameters are float32.
Setup make_setup(bool mom, uint64_t seed, bool documents = false, DType compute = DType::f32) {
  Setup s;
  s.c.d_model = kD;
  s.c.expand = 2;
  s.c.d_state = 16;
  s.c.d_conv = 4;
  s.c.n_modalities = mom ? kModalities : 1;
  s.c.split_in_proj = s.c.split_x_proj = s.c.split_dt_proj = s.c.split_out_proj = mom;
  Generator gen(seed);
  s.block = std::make_unique<nn::MambaBlock>(s.c, gen);
  s.block->to(kGpu);
  s.ids = (mom ? span_modalities(gen) : zeros({kB * kL}, DType::i32)).to(kGpu);
  s.x = randn({kB, kL, kD}, gen).to(compute).to(kGpu);
  s.x.set_requires_grad(true);
  s.dy = randn({kB, kL, kD}, gen, DType::f32, 0.0, 0.02).to(compute).to(kGpu);
  if (documents) s.doc_start = bench::packed_documents(kB, kL, gen).to(kGpu);
  return s;
}

Result bench_block(bool mom, bool tf32, int runs, uint64_t seed, bool documents = false,
                   DType compute = DType::f32) {
  Setup s = make_setup(mom, seed, documents, compute);
  const nn::MambaConfig& c = s.c;
  nn::MambaBlock& block = *s.block;
  Tensor &ids = s.ids, &x = s.x, &dy = s.dy;
  kernels::set_allow_tf32(tf32);

  Result r;
  r.routing_ms = median_ms(runs, [&] { kernels::Routing::from_modalities(ids, c.n_modalities); });
  const kernels::Routing routing = kernels::Routing::from_modalities(ids, c.n_modalities);
  const Tensor& docs = s.doc_start;
  auto step = [&] {
    Tensor out = block.forward(x, routing, nullptr, docs);
    backward(out, dy);
    block.zero_grad();
    x.zero_grad();
  };
  r.ms = median_ms(runs, step);
  r.forward_ms = median_ms(runs, [&] { block.forward(x, routing, nullptr, docs); });  // graph recorded, then dropped

  // Peak memory of one step above what it starts with; the gradients are kept until the peak is read.
  cuda::synchronize(0);
  const size_t before = cuda::memory_stats(0).current;
  cuda::reset_peak(0);
  {
    Tensor out = block.forward(x, routing, nullptr, docs);
    backward(out, dy);
    cuda::synchronize(0);
  }
  r.peak_mib = static_cast<double>(cuda::memory_stats(0).peak - before) / (1 << 20);
  block.zero_grad();
  x.zero_grad();
  kernels::set_allow_tf32(false);
  return r;
}

// One profiled step of one block (see Usage).
int profile_block(bool mom, bool tf32) {
  Setup s = make_setup(mom, 11);
  const nn::MambaConfig& c = s.c;
  nn::MambaBlock& block = *s.block;
  Tensor &ids = s.ids, &x = s.x, &dy = s.dy;
  kernels::set_allow_tf32(tf32);
  const kernels::Routing routing = kernels::Routing::from_modalities(ids, c.n_modalities);
  for (int i = 0; i < 3; ++i) {
    cuda::synchronize(0);
    const size_t before = cuda::memory_stats(0).current;
    cuda::reset_peak(0);
    if (i == 2) MOM_CUDA_CHECK(cudaProfilerStart());
    Tensor out = block.forward(x, routing);
    cuda::synchronize(0);
    const size_t after_forward = cuda::memory_stats(0).current;
    backward(out, dy);
    cuda::synchronize(0);
    if (i == 2) MOM_CUDA_CHECK(cudaProfilerStop());
    std::printf("step %d: held after forward %.1f MiB, peak %.1f MiB above the start\n", i,
                static_cast<double>(after_forward - before) / (1 << 20),
                static_cast<double>(cuda::memory_stats(0).peak - before) / (1 << 20));
    block.zero_grad();
    x.zero_grad();
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 4 && std::string(argv[1]) == "profile") {
    if (!cuda_available()) return 1;
    return profile_block(std::string(argv[2]) == "mom", std::atoi(argv[3]) != 0);
  }
  const int runs = std::max(10, argc > 1 ? std::atoi(argv[1]) : 20);
  if (!cuda_available()) {
    std::printf("bench_cuda_layer: no CUDA device visible\n");
    return 1;
  }
  // The floor's GEMM rates: x (T, 768) @ W^T with W (3072, 768), in_proj's forward.
  const bench::Rate gemm_f32 = bench::gemm_rate(kB * kL, 4 * kD, kD, bench::GemmType::f32, runs);
  const bench::Rate gemm_tf32 = bench::gemm_rate(kB * kL, 4 * kD, kD, bench::GemmType::tf32, runs);
  const bench::Rate gemm_bf16 = bench::gemm_rate(kB * kL, 4 * kD, kD, bench::GemmType::bf16, runs);
  nn::MambaConfig c;
  c.d_model = kD;
  const double flops = 3 * gemm_flops_per_token(c) * kB * kL;  // forward + backward
  const double floor_fp32 = gemm_f32.floor_ms(flops), floor_tf32 = gemm_tf32.floor_ms(flops),
               floor_bf16 = gemm_bf16.floor_ms(flops);

  Result mom_off = bench_block(true, false, runs, 11), mom_on = bench_block(true, true, runs, 11);
  Result dense_off = bench_block(false, false, runs, 11), dense_on = bench_block(false, true, runs, 11);
  Result mom_docs = bench_block(true, true, runs, 11, true);
  Result mom_bf16 = bench_block(true, false, runs, 11, false, DType::bf16);
  Result dense_bf16 = bench_block(false, false, runs, 11, false, DType::bf16);

  std::printf("bench_cuda_layer: one block, forward + backward, float32 and bf16, B=%lld L=%lld D=%lld E=%lld N=16, "
              "median of %d runs\n",
              static_cast<long long>(kB), static_cast<long long>(kL), static_cast<long long>(kD),
              static_cast<long long>(2 * kD), runs);
  std::printf("GPU: %s\n", bench::device_name().c_str());
  std::printf("GEMM floor: %.0f GFLOP / cuBLAS's rate at %lld x %lld -> %lld: float32 %.1f TFLOP/s (%.3f ms), "
              "TF32 %.1f TFLOP/s (%.3f ms), bf16 %.1f TFLOP/s (%.3f ms)\n",
              flops / 1e9, static_cast<long long>(kB * kL), static_cast<long long>(kD),
              static_cast<long long>(4 * kD), gemm_f32.per_s / 1e12, gemm_f32.ms, gemm_tf32.per_s / 1e12, gemm_tf32.ms,
              gemm_bf16.per_s / 1e12, gemm_bf16.ms);
  std::printf("%-22s %10s %10s %10s %8s %12s\n", "block", "ms", "forward ms", "floor ms", "x floor", "peak MiB");
  auto row = [&](const char* name, const Result& r, double floor) {
    std::printf("%-22s %10.2f %10.2f %10.2f %8.2f %12.0f\n", name, r.ms, r.forward_ms, floor, r.ms / floor,
                r.peak_mib);
  };
  row("MoM, TF32 off", mom_off, floor_fp32);
  row("MoM, TF32 allowed", mom_on, floor_tf32);
  row("dense, TF32 off", dense_off, floor_fp32);
  row("dense, TF32 allowed", dense_on, floor_tf32);
  row("MoM, TF32, docs", mom_docs, floor_tf32);
  row("MoM, bf16", mom_bf16, floor_bf16);
  row("dense, bf16", dense_bf16, floor_bf16);
  const double ratio_off = mom_off.ms / dense_off.ms, ratio_on = mom_on.ms / dense_on.ms;
  std::printf("MoM / dense: %.2fx (TF32 off), %.2fx (TF32 allowed); target <= %.2fx: %s, %s\n", ratio_off, ratio_on,
              kRatioTarget, bench::verdict(ratio_off, kRatioTarget), bench::verdict(ratio_on, kRatioTarget));
  std::printf("MoM peak beyond its inputs: %.0f MiB; target <= %.0f MiB: %s\n", mom_off.peak_mib, kPeakTargetMib,
              mom_off.peak_mib <= kPeakTargetMib ? "met" : "MISSED");
  const double ratio_docs = mom_docs.ms / mom_on.ms;
  std::printf("MoM with documents of 64-512 tokens / without: %.3fx (TF32 allowed); target <= %.2fx: %s\n", ratio_docs,
              bench::kDocumentsTarget, bench::verdict(ratio_docs, bench::kDocumentsTarget));
  const double ratio_bf16 = mom_bf16.ms / dense_bf16.ms;
  std::printf("bf16: MoM / dense %.2fx, target <= %.2fx: %s; MoM peak beyond its inputs %.0f MiB, target <= %.0f MiB: "
              "%s; MoM bf16 / MoM float32 (TF32 off) %.2fx faster\n",
              ratio_bf16, kBf16RatioTarget, bench::verdict(ratio_bf16, kBf16RatioTarget), mom_bf16.peak_mib,
              kBf16PeakTargetMib, mom_bf16.peak_mib <= kBf16PeakTargetMib ? "met" : "MISSED", mom_off.ms / mom_bf16.ms);
  std::printf("Routing::from_modalities (once per batch, shared by every layer): %.3f ms\n", mom_off.routing_ms);
  const bool ok = ratio_off <= kRatioTarget && ratio_on <= kRatioTarget && mom_off.peak_mib <= kPeakTargetMib &&
                  ratio_docs <= bench::kDocumentsTarget && ratio_bf16 <= kBf16RatioTarget &&
                  mom_bf16.peak_mib <= kBf16PeakTargetMib;
  std::printf("targets %s\n", ok ? "met" : "MISSED");
  return 0;
}

#endif
