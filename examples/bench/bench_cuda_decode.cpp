// Recurrent decoding on the GPU: MambaLM::step, one token per row per step, dense and MoM, float32
// weights, for the 130M-class and 1.4B-class shapes (examples/bench/decode.h), at batch 1 and 64.
//
//   bench_cuda_decode [steps]      (default 20)
//
// Prints the median ms per step (host clock around the step and a device synchronisation: decoding
// feeds each step's token to the next, so a step's latency is what a user waits for), ms per token at
// batch 1, tokens/s, and the floor (examples/bench/decode.h): the larger of the bytes the step moves over
// the device-to-device copy rate and its FLOPs over cuBLAS's float32 rate at in_proj's shape, both
// measured in the same run. Target (ms per token of the 130M model at batch 1): <= 0.35 ms; MoM within
// 1.1x of dense at every shape and batch.
#include <cstdio>
#include <cstdlib>

#ifndef MOM_WITH_CUDA

int main() {
  std::printf("bench_cuda_decode: built without CUDA\n");
  return 0;
}

#else

#include <algorithm>
#include <vector>

#include "core/cuda/memory.h"
#include "examples/bench/cuda_timing.h"
#include "examples/bench/decode.h"

namespace {

using namespace mom;

constexpr double k130MTargetMs = 0.35;
constexpr double kMomOverDense = 1.10;

}  // namespace

int main(int argc, char** argv) {
  const int steps = argc > 1 ? std::atoi(argv[1]) : 20;
  if (steps < 1) {
    std::fprintf(stderr, "usage: bench_cuda_decode [steps >= 1]\n");
    return 2;
  }
  const Device gpu = Device::cuda(0);
  const bench::Rate copy = bench::copy_rate(10);
  // The FLOPs floor's rate per shape and batch: cuBLAS float32 at in_proj's shape (batch, 4D, D).
  auto gemm = [](const bench::DecodeShape& s, int64_t batch) {
    return bench::gemm_rate(batch, 4 * s.d_model, s.d_model, bench::GemmType::f32, 10);
  };
  std::printf("bench_cuda_decode: MambaLM::step, float32 weights, vocabulary %lld, median of %d steps\n",
              static_cast<long long>(bench::kDecodeVocab), steps);
  std::printf("GPU: %s\n", bench::device_name().c_str());
  std::printf("floor = max(bytes a step moves / device-to-device copy rate %.0f GB/s (512 MiB), FLOPs / cuBLAS float32 "
              "rate at in_proj's shape for the batch)\n",
              copy.per_s * 1e-9);
  std::printf("%-6s %-6s %6s %10s %10s %10s %10s %8s\n", "shape", "model", "batch", "ms/step", "ms/token", "tokens/s",
              "floor ms", "x floor");
  bool target_met = true, ratio_met = true;
  for (const bench::DecodeShape& shape : {bench::kDecode130M, bench::kDecode1_4B}) {
    double dense_ms[2] = {0, 0};
    const bench::Rate rate[2] = {gemm(shape, 1), gemm(shape, 64)};
    for (bool mom : {false, true}) {
      Generator gen(7);
      nn::MambaLM model(bench::decode_config(shape, mom), gen);
      model.to(gpu);
      for (int i = 0; i < 2; ++i) {
        const int64_t batch = i == 0 ? 1 : 64;
        const std::vector<double> ms = bench::time_decode(model, batch, steps, 3, gpu, [] { cuda::synchronize(0); }, 11);
        const double med = ms[ms.size() / 2];
        const double floor_ms = std::max(copy.floor_ms(bench::decode_step_bytes(model, batch, 4.0, 4.0)),
                                         rate[i].floor_ms(bench::decode_step_flops(model, batch)));
        std::printf("%-6s %-6s %6lld %10.3f %10.4f %10.0f %10.3f %8.2f", shape.name, mom ? "MoM" : "dense",
                    static_cast<long long>(batch), med, med / static_cast<double>(batch),
                    1e3 * static_cast<double>(batch) / med, floor_ms, med / floor_ms);
        if (!mom) {
          dense_ms[i] = med;
        } else {
          const bool met = med <= kMomOverDense * dense_ms[i];
          ratio_met = ratio_met && met;
          std::printf("   MoM / dense %.2fx", med / dense_ms[i]);
        }
        if (shape.d_model == bench::kDecode130M.d_model && batch == 1) {
          const bool met = med <= k130MTargetMs;
          target_met = target_met && met;
          std::printf("   <= %.2f ms %s", k130MTargetMs, bench::verdict(med, k130MTargetMs));
        }
        std::printf("\n");
      }
    }
  }
  std::printf("targets: 130M batch 1 <= %.2f ms per token %s; MoM <= %.2fx dense %s\n", k130MTargetMs,
              target_met ? "met" : "MISSED", kMomOverDense, ratio_met ? "met" : "MISSED");
  return 0;
}

#endif
