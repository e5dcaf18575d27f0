// bench_cuda_rows: the CUDA row kernels (softmax, log_softmax, cross_entropy, rms_norm), float32,
// against their memory floor measured in the same run.
//
// Floor: each row is memory-bound; its floor is the minimal bytes it must move (each input read once,
// each output written once: softmax forward x + y, backward dy + y + dx; cross_entropy forward the
// logits (+ targets, lse), backward logits + dlogits; rms_norm forward x + y (+ rstd), backward
// x + dy + dx (+ rstd)) over the device-to-device copy rate (bytes read + written per second by a
// 512 MiB cudaMemcpyAsync, examples/bench/cuda_timing.h). Rows print the median time over timed runs
// (CUDA events on the framework's stream, after a warm-up), the floor, and the time as a multiple of
// it (x floor). Inputs are random (a random block of 1 M values tiled on the device), never zeros.
// Each cross_entropy call includes its one host synchronisation (the read-back of the first invalid
// target) and the launch of its small token-sum kernels: some 40 us, which dominate at V = 2048.
//
// Usage: bench_cuda_rows [runs]   (default 20)
#include <cstdio>
#include <cstdlib>

#ifndef MOM_WITH_CUDA

int main() {
  std::printf("bench_cuda_rows: built without CUDA\n");
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
#include "kernels/cross_entropy.h"
#include "kernels/rms_norm.h"
#include "kernels/softmax.h"
#include "examples/bench/cuda_timing.h"

using namespace mom;
using bench::median_ms;

namespace {

const Device kGpu = Device::cuda(0);
constexpr int64_t kBlock = int64_t(1) << 20;

// A float32 tensor of `shape` (numel a multiple of kBlock) on the GPU: one random block, tiled.
Tensor random_gpu(const Shape& shape, Generator& gen, double mean, double std) {
  const int64_t n = shape_numel(shape);
  Tensor block = randn({kBlock}, gen, DType::f32, mean, std).to(kGpu);
  Tensor out = empty(shape, DType::f32, kGpu);
  out.view({n / kBlock, kBlock}).copy_(block.unsqueeze(0).expand({n / kBlock, kBlock}));
  return out;
}

struct Row {
  std::string name;
  std::string shape;
  double bytes;
  double ms;
};

std::string dims(int64_t a, int64_t b) { return "(" + std::to_string(a) + ", " + std::to_string(b) + ")"; }

}  // namespace

int main(int argc, char** argv) {
  const int runs = argc > 1 ? std::atoi(argv[1]) : 20;
  if (!cuda_available()) {
    std::printf("bench_cuda_rows: no CUDA device visible\n");
    return 1;
  }
  const bench::Rate copy = bench::copy_rate(runs);
  Generator gen(1234);
  std::vector<Row> rows;
  {
    const int64_t n = int64_t(64) << 20;  // 256 MiB, the size of the larger tensors below
    Tensor src = random_gpu({n}, gen, 0, 1), dst = empty({n}, DType::f32, kGpu);
    rows.push_back({"copy (Tensor::copy_)", dims(65536, 1024), 2.0 * n * 4, median_ms(runs, [&] { dst.copy_(src); })});
  }
  for (auto [R, n] : std::vector<std::pair<int64_t, int64_t>>{{32768, 1024}, {4096, 8192}, {1280, 50257}}) {
    const int64_t numel = R * n - (R * n) % kBlock;  // the random block tiles the first whole blocks
    Tensor x = empty({R, n}, DType::f32, kGpu), dy = empty({R, n}, DType::f32, kGpu);
    x.view({R * n}).narrow(0, 0, numel).copy_(random_gpu({numel}, gen, 0, 8));
    x.view({R * n}).narrow(0, numel, R * n - numel).fill_(0.5);
    dy.view({R * n}).narrow(0, 0, numel).copy_(random_gpu({numel}, gen, 0, 1));
    dy.view({R * n}).narrow(0, numel, R * n - numel).fill_(-0.5);
    const double t = double(R) * n * 4;
    Tensor y = kernels::softmax_forward(x, 1), ly = kernels::log_softmax_forward(x, 1);
    rows.push_back({"softmax forward", dims(R, n), 2 * t, median_ms(runs, [&] { kernels::softmax_forward(x, 1); })});
    rows.push_back({"softmax backward", dims(R, n), 3 * t,
                    median_ms(runs, [&] { kernels::softmax_backward(dy, y, 1); })});
    rows.push_back({"log_softmax forward", dims(R, n), 2 * t,
                    median_ms(runs, [&] { kernels::log_softmax_forward(x, 1); })});
    rows.push_back({"log_softmax backward", dims(R, n), 3 * t,
                    median_ms(runs, [&] { kernels::log_softmax_backward(dy, ly, 1); })});
  }
  for (int64_t V : {2048, 32768}) {
    const int64_t T = 16384;
    Tensor logits = random_gpu({T, V}, gen, 0, 8);
    Tensor targets = randint({T}, 0, V, gen).to(kGpu);
    const double t = double(T) * V * 4;
    kernels::CrossEntropyForward f = kernels::cross_entropy_forward(logits, targets, -100, Tensor());
    Tensor dloss = full({}, 1.0, DType::f32, kGpu);
    rows.push_back({"cross_entropy forward", dims(T, V), t + T * 12.0,
                    median_ms(runs, [&] { kernels::cross_entropy_forward(logits, targets, -100, Tensor()); })});
    rows.push_back({"cross_entropy backward", dims(T, V), 2 * t + T * 12.0, median_ms(runs, [&] {
                      kernels::cross_entropy_backward(dloss, logits, targets, f.lse, -100, Tensor());
                    })});
  }
  {
    const int64_t R = 16384, D = 2048;
    Tensor x = random_gpu({R, D}, gen, 0, 1), dy = random_gpu({R, D}, gen, 0, 1);
    Tensor w = randn({D}, gen, DType::f32, 1.0, 0.2).to(kGpu);
    kernels::RmsNormForward f = kernels::rms_norm_forward(x, w, 1e-5);
    const double t = double(R) * D * 4;
    rows.push_back({"rms_norm forward", dims(R, D), 2 * t + R * 4.0,
                    median_ms(runs, [&] { kernels::rms_norm_forward(x, w, 1e-5); })});
    rows.push_back({"rms_norm backward", dims(R, D), 3 * t + R * 4.0,
                    median_ms(runs, [&] { kernels::rms_norm_backward(dy, x, w, f.rstd); })});
    rows.push_back({"rms_norm forward + backward", dims(R, D), 5 * t + R * 8.0, median_ms(runs, [&] {
                      kernels::RmsNormForward g = kernels::rms_norm_forward(x, w, 1e-5);
                      kernels::rms_norm_backward(dy, x, w, g.rstd);
                    })});
  }
  cuda::MemoryStats stats = cuda::memory_stats(0);
  std::printf("bench_cuda_rows: float32, %d timed runs each, median; peak device memory %.2f GiB\n", runs,
              stats.peak / double(1 << 30));
  std::printf("GPU: %s\n", bench::device_name().c_str());
  std::printf("floor = bytes / device-to-device copy rate %.0f GB/s (512 MiB, %.3f ms)\n", copy.per_s / 1e9, copy.ms);
  std::printf("%-30s %-16s %10s %10s %10s %8s\n", "op", "shape", "MB moved", "ms", "floor ms", "x floor");
  for (const Row& r : rows) {
    const double floor_ms = copy.floor_ms(r.bytes);
    std::printf("%-30s %-16s %10.0f %10.3f %10.3f %8.2f\n", r.name.c_str(), r.shape.c_str(), r.bytes / 1e6, r.ms,
                floor_ms, r.ms / floor_ms);
  }
  return 0;
}

#endif
