// Recurrent decoding on the CPU: nn::Decoder, one token per row per step, dense and MoM, float32 weights
// (the CPU's bf16 weights widen to float32 at every call: a reference, not a faster path).
//
//   bench_decode_cpu [130m|1.4b] [steps]     (defaults 130m 8; the 1.4B MoM model needs about 16 GB)
//
// Prints per model and batch (1 and 64) the median ms per step, ms per token at batch 1 and tokens/s,
// and the floor (examples/bench/decode.h): the larger of the bytes a step moves over the rate of a 512
// MiB memcpy and its FLOPs over cblas_sgemm's rate at in_proj's shape, both measured in the same run.
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "examples/bench/decode.h"

namespace {

using namespace mom;

// Bytes read + written per second by memcpy of 512 MiB, the best of 5 (the first touches the pages).
double copy_rate() {
  const size_t bytes = size_t(512) << 20;
  std::vector<char> a(bytes, 1), b(bytes, 0);
  double best = 1e30;
  for (int i = 0; i < 5; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    std::memcpy(b.data(), a.data(), bytes);
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return 2.0 * static_cast<double>(bytes) / best;
}

// FLOPs per second of cblas_sgemm at in_proj's shape for `rows` tokens: x (rows, D) @ W^T, W (2E, D);
// the best of 5 after one untimed call.
double gemm_rate(int64_t rows, int64_t D) {
  const int64_t N = 4 * D;
  std::vector<float> x(rows * D, 0.5f), w(N * D, 0.25f), y(rows * N);
  double best = 1e30;
  for (int i = 0; i < 6; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows), static_cast<int>(N),
                static_cast<int>(D), 1.0f, x.data(), static_cast<int>(D), w.data(), static_cast<int>(D), 0.0f,
                y.data(), static_cast<int>(N));
    if (i > 0) best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return 2.0 * static_cast<double>(rows * N * D) / best;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string which = argc > 1 ? argv[1] : "130m";
  const int steps = argc > 2 ? std::atoi(argv[2]) : 8;
  if ((which != "130m" && which != "1.4b") || steps < 1) {
    std::fprintf(stderr, "usage: bench_decode_cpu [130m|1.4b] [steps >= 1]\n");
    return 2;
  }
  const bench::DecodeShape shape = which == "130m" ? bench::kDecode130M : bench::kDecode1_4B;
  const double rate = copy_rate();
  const double flops_1 = gemm_rate(1, shape.d_model), flops_64 = gemm_rate(64, shape.d_model);
  std::printf("bench_decode_cpu: nn::Decoder, %s-class (d_model %lld, %lld layers, vocabulary %lld), float32, "
              "median of %d steps\n",
              shape.name, static_cast<long long>(shape.d_model), static_cast<long long>(shape.n_layers),
              static_cast<long long>(bench::kDecodeVocab), steps);
  std::printf("floor = max(bytes a step moves / memcpy rate %.1f GB/s (512 MiB), FLOPs / sgemm rate at in_proj's "
              "shape: batch 1 %.1f, batch 64 %.1f GFLOP/s)\n",
              rate * 1e-9, flops_1 * 1e-9, flops_64 * 1e-9);
  std::printf("%-6s %6s %12s %12s %10s %10s %8s\n", "model", "batch", "ms/step", "ms/token", "tokens/s", "floor ms",
              "x floor");
  for (bool mom : {false, true}) {
    Generator gen(7);
    nn::MambaLM model(bench::decode_config(shape, mom), gen);
    for (int64_t batch : {int64_t(1), int64_t(64)}) {
      nn::Decoder decoder(model, batch);
      const std::vector<double> ms =
          bench::time_decode(decoder, model.config().mixer.n_modalities, steps, 2, Device::cpu(), [] {}, 11);
      const double med = ms[ms.size() / 2];
      const double floor_ms = 1e3 * std::max(bench::decode_step_bytes(model, batch, 4.0, 4.0) / rate,
                                             bench::decode_step_flops(model, batch) / (batch == 1 ? flops_1 : flops_64));
      std::printf("%-6s %6lld %12.2f %12.3f %10.0f %10.2f %8.2f\n", mom ? "MoM" : "dense", static_cast<long long>(batch),
                  med, med / static_cast<double>(batch), 1e3 * static_cast<double>(batch) / med, floor_ms,
                  med / floor_ms);
    }
  }
  return 0;
}
