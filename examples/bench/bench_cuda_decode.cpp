// Recurrent decoding on the GPU: nn::Decoder (fused kernels, one CUDA graph per step), one token per row
// per step, dense and MoM, float32 and bf16 weights, for the 130M-class and 1.4B-class shapes
// (examples/bench/decode.h), at batch 1 and 64.
//
//   bench_cuda_decode [steps]      (default 20)
//
// Prints the median ms per step (host clock around the step and a device synchronisation: decoding
// feeds each step's token to the next, so a step's latency is what a user waits for), ms per token,
// tokens/s, and the floor (examples/bench/decode.h): the larger of the bytes the step moves over the
// device-to-device copy rate and its FLOPs over cuBLAS's rate for the weights' type (float32, or bf16
// with float32 sums) at 8192 x 8192 x 8192, both measured in the same run. Targets: the 130M model at
// batch 1 <= 0.35 ms per token; the 1.4B model in bf16 within 1.5x of its floor at batch 1 and >= 22k
// tokens/s at batch 64; MoM within 1.1x of dense. At batch 1 each row uses one expert of each split
// projection and MoM moves the bytes dense moves, so MoM / dense compares times; at batch 64 the rows
// use every expert and MoM must read three times the projections' bytes, so MoM / dense compares the
// fractions of each one's floor.
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
constexpr double k1_4BFloorTarget = 1.5;
constexpr double k1_4BBatchTarget = 22000;  // tokens/s

}  // namespace

int main(int argc, char** argv) {
  const int steps = argc > 1 ? std::atoi(argv[1]) : 20;
  if (steps < 1) {
    std::fprintf(stderr, "usage: bench_cuda_decode [steps >= 1]\n");
    return 2;
  }
  const Device gpu = Device::cuda(0);
  const bench::Rate copy = bench::copy_rate(10);
  const bench::Rate f32 = bench::gemm_rate(8192, 8192, 8192, bench::GemmType::f32, 5);
  const bench::Rate b16 = bench::gemm_rate(8192, 8192, 8192, bench::GemmType::bf16, 5);
  std::printf("bench_cuda_decode: nn::Decoder (CUDA graph), vocabulary %lld, median of %d steps\n",
              static_cast<long long>(bench::kDecodeVocab), steps);
  std::printf("GPU: %s\n", bench::device_name().c_str());
  std::printf("floor = max(bytes a step moves / device-to-device copy rate %.0f GB/s (512 MiB), FLOPs / cuBLAS rate "
              "at 8192^3: float32 %.1f, bf16 %.1f TFLOP/s)\n",
              copy.per_s * 1e-9, f32.per_s * 1e-12, b16.per_s * 1e-12);
  std::printf("%-6s %-6s %-5s %6s %10s %10s %10s %10s %8s\n", "shape", "model", "wts", "batch", "ms/step", "ms/token",
              "tokens/s", "floor ms", "x floor");
  bool t130 = true, ratio = true, t14_floor = true, t14_batch = true;
  for (const bench::DecodeShape& shape : {bench::kDecode130M, bench::kDecode1_4B}) {
    double dense_ms[2][2] = {}, dense_x[2][2] = {};
    for (bool mom : {false, true}) {
      Generator gen(7);
      nn::MambaLM model(bench::decode_config(shape, mom), gen);
      model.to(gpu);
      for (int w = 0; w < 2; ++w) {
        const DType wdt = w == 0 ? DType::f32 : DType::bf16;
        for (int i = 0; i < 2; ++i) {
          const int64_t batch = i == 0 ? 1 : 64;
          double med = 0;
          {
            nn::Decoder decoder(model, batch, wdt);
            const std::vector<double> ms = bench::time_decode(decoder, model.config().mixer.n_modalities, steps, 3, gpu,
                                                              [] { cuda::synchronize(0); }, 11);
            med = ms[ms.size() / 2];
          }
          const double floor_ms =
              std::max(copy.floor_ms(bench::decode_step_bytes(model, batch, w == 0 ? 4.0 : 2.0, 4.0)),
                       (w == 0 ? f32 : b16).floor_ms(bench::decode_step_flops(model, batch)));
          const double tps = 1e3 * static_cast<double>(batch) / med, x = med / floor_ms;
          std::printf("%-6s %-6s %-5s %6lld %10.3f %10.4f %10.0f %10.3f %8.2f", shape.name, mom ? "MoM" : "dense",
                      w == 0 ? "f32" : "bf16", static_cast<long long>(batch), med, med / static_cast<double>(batch), tps,
                      floor_ms, x);
          if (!mom) {
            dense_ms[w][i] = med;
            dense_x[w][i] = x;
          } else if (batch == 1) {
            const bool met = med <= kMomOverDense * dense_ms[w][i];
            ratio = ratio && met;
            std::printf("   MoM / dense %.2fx %s", med / dense_ms[w][i], met ? "" : "MISSED");
          } else {
            const bool met = x <= kMomOverDense * dense_x[w][i];
            ratio = ratio && met;
            std::printf("   MoM / dense %.2fx time, %.2fx of floor %s", med / dense_ms[w][i], x / dense_x[w][i],
                        met ? "" : "MISSED");
          }
          if (shape.d_model == bench::kDecode130M.d_model && batch == 1) {
            const bool met = med <= k130MTargetMs;
            t130 = t130 && met;
            std::printf("   <= %.2f ms %s", k130MTargetMs, bench::verdict(med, k130MTargetMs));
          }
          if (shape.d_model == bench::kDecode1_4B.d_model && w == 1 && batch == 1) {
            const bool met = x <= k1_4BFloorTarget;
            t14_floor = t14_floor && met;
            std::printf("   <= %.1fx floor %s", k1_4BFloorTarget, met ? "met" : "MISSED");
          }
          if (shape.d_model == bench::kDecode1_4B.d_model && w == 1 && batch == 64) {
            const bool met = tps >= k1_4BBatchTarget;
            t14_batch = t14_batch && met;
            std::printf("   >= %.0fk tokens/s %s", k1_4BBatchTarget * 1e-3, met ? "met" : "MISSED");
          }
          std::printf("\n");
        }
      }
    }
  }
  std::printf("targets: 130M batch 1 <= %.2f ms per token %s; 1.4B bf16 batch 1 <= %.1fx floor %s; 1.4B bf16 batch 64 "
              ">= %.0fk tokens/s %s; MoM <= %.2fx dense %s\n",
              k130MTargetMs, t130 ? "met" : "MISSED", k1_4BFloorTarget, t14_floor ? "met" : "MISSED",
              k1_4BBatchTarget * 1e-3, t14_batch ? "met" : "MISSED", kMomOverDense, ratio ? "met" : "MISSED");
  return 0;
}

#endif
