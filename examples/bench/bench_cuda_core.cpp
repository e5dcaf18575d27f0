// bench_cuda_core: the elementwise, reduction and AdamW kernels, float32, against their memory floor
// measured in the same run.
//
// Floor: every row here is memory-bound; its floor is the bytes it must move (each input read once,
// each output written once) over the device-to-device copy rate (bytes read + written per second by a
// 512 MiB cudaMemcpyAsync, examples/bench/cuda_timing.h). Rows print the median time over timed runs
// (CUDA events on the framework's stream, after a warm-up), the floor, and the time as a multiple of it
// (x floor). Inputs are random (a random block of 1 M values tiled on the device), never zeros.
//
// Usage: bench_cuda_core [runs]   (default 20)
#include <cstdio>
#include <cstdlib>

#ifndef MOM_WITH_CUDA

int main() {
  std::printf("bench_cuda_core: built without CUDA\n");
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
#include "kernels/elementwise.h"
#include "kernels/optimizer.h"
#include "kernels/reduce.h"
#include "examples/bench/cuda_timing.h"

using namespace mom;
using bench::median_ms;

namespace {

const Device kGpu = Device::cuda(0);
constexpr int64_t kBlock = int64_t(1) << 20;

// n (a multiple of kBlock) random float32 values on the GPU.
Tensor random_gpu(int64_t n, Generator& gen, double lo, double hi) {
  Tensor block = rand({kBlock}, gen, DType::f32, lo, hi).to(kGpu);
  Tensor out = empty({n}, DType::f32, kGpu);
  out.view({n / kBlock, kBlock}).copy_(block.unsqueeze(0).expand({n / kBlock, kBlock}));
  return out;
}

struct Row {
  std::string name;
  int64_t elements;
  double bytes;
  double ms;
};

}  // namespace

int main(int argc, char** argv) {
  const int runs = argc > 1 ? std::atoi(argv[1]) : 20;
  if (!cuda_available()) {
    std::printf("bench_cuda_core: no CUDA device visible\n");
    return 1;
  }
  const bench::Rate copy = bench::copy_rate(runs);
  Generator gen(1234);
  const int64_t n = int64_t(128) << 20;  // 128 M float32 = 512 MiB per tensor
  const double tensor_bytes = double(n) * 4;
  std::vector<Row> rows;
  {
    Tensor src = random_gpu(n, gen, -1, 1), dst = empty({n}, DType::f32, kGpu);
    rows.push_back({"copy (Tensor::copy_)", n, 2 * tensor_bytes, median_ms(runs, [&] { dst.copy_(src); })});
  }
  {
    Tensor a = random_gpu(n, gen, -1, 1), b = random_gpu(n, gen, -1, 1);
    rows.push_back({"add", n, 3 * tensor_bytes, median_ms(runs, [&] { kernels::add(a, b); })});
    rows.push_back({"mul (x) by 1-elem", n, 2 * tensor_bytes,
                    median_ms(runs, [&] { kernels::mul(a, b.narrow(0, 5, 1)); })});
  }
  {
    Tensor x = random_gpu(n, gen, -6, 6), dy = random_gpu(n, gen, -1, 1);
    Tensor y = kernels::unary(kernels::UnaryOp::silu, x);
    rows.push_back({"silu forward", n, 2 * tensor_bytes,
                    median_ms(runs, [&] { kernels::unary(kernels::UnaryOp::silu, x); })});
    rows.push_back({"silu backward", n, 3 * tensor_bytes,
                    median_ms(runs, [&] { kernels::unary_backward(kernels::UnaryOp::silu, dy, x, y); })});
  }
  {
    Tensor p = random_gpu(n, gen, -1, 1), g = random_gpu(n, gen, -1, 1);
    Tensor m = random_gpu(n, gen, -0.1, 0.1), v = random_gpu(n, gen, 1e-4, 0.5);
    kernels::AdamWHyper h;
    int64_t step = 1;
    rows.push_back({"adamw step", n, 7 * tensor_bytes,
                    median_ms(runs, [&] { kernels::adamw_step(p, g, m, v, step++, h); })});
    rows.push_back({"sum_of_squares", n, tensor_bytes, median_ms(runs, [&] { kernels::sum_of_squares(g); })});
    Tensor g2 = g.view({n / 1024, 1024});
    rows.push_back({"sum_to_shape (T,1024)->(1024)", n, tensor_bytes,
                    median_ms(runs, [&] { kernels::sum_to_shape(g2, {1024}); })});
    Tensor g3 = g.view({1024, n / 1024});
    rows.push_back({"sum_to_shape (1024,T)->(1,T)", n, tensor_bytes,
                    median_ms(runs, [&] { kernels::sum_to_shape(g3, {1, n / 1024}); })});
    // Reductions: rows (the last dim), columns (a leading dim over a contiguous inner run), everything,
    // and max with its int64 argmax. Bytes: the input once plus the outputs.
    const int64_t t = n / 1024;
    rows.push_back({"sum (T,1024) dim 1 (rows)", n, tensor_bytes + t * 4.0,
                    median_ms(runs, [&] { kernels::sum(g2, {1}, false); })});
    rows.push_back({"sum (T,64) dim 0 (columns)", n, tensor_bytes + 64 * 4.0,
                    median_ms(runs, [&] { kernels::sum(g.view({n / 64, 64}), {0}, false); })});
    rows.push_back({"sum (1024,T) dim 0 (columns)", n, tensor_bytes + t * 4.0,
                    median_ms(runs, [&] { kernels::sum(g3, {0}, false); })});
    rows.push_back({"sum all", n, tensor_bytes, median_ms(runs, [&] { kernels::sum(g, {0}, false); })});
    rows.push_back({"max (T,1024) dim 1 (rows)", n, tensor_bytes + t * 12.0,
                    median_ms(runs, [&] { kernels::max(g2, 1, false); })});
    rows.push_back({"max (1024,T) dim 0 (columns)", n, tensor_bytes + t * 12.0,
                    median_ms(runs, [&] { kernels::max(g3, 0, false); })});
  }
  cuda::MemoryStats stats = cuda::memory_stats(0);
  std::printf("bench_cuda_core: float32, %d timed runs each, median; peak device memory %.2f GiB\n", runs,
              stats.peak / double(1 << 30));
  std::printf("GPU: %s\n", bench::device_name().c_str());
  std::printf("floor = bytes / device-to-device copy rate %.0f GB/s (512 MiB, %.3f ms)\n", copy.per_s / 1e9, copy.ms);
  std::printf("%-32s %12s %10s %10s %10s %8s\n", "op", "elements", "MB moved", "ms", "floor ms", "x floor");
  for (const Row& r : rows) {
    const double floor_ms = copy.floor_ms(r.bytes);
    std::printf("%-32s %12lld %10.0f %10.3f %10.3f %8.2f\n", r.name.c_str(), static_cast<long long>(r.elements),
                r.bytes / 1e6, r.ms, floor_ms, r.ms / floor_ms);
  }
  return 0;
}

#endif
