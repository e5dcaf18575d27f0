// Timing shared by the CUDA benchmarks (CUDA builds only): the median of `runs` timed calls of f, each
// timed with CUDA events on device 0's framework stream, after `warmup` untimed calls (cuBLAS
// heuristics, pool growth and first launches happen there) and a synchronisation.
//
// Each timed call starts on a busy GPU: a 256 MiB memset (about 70 us on an H200) is queued before
// the start event, so the host's work of queueing f (argument checks, allocations, launches) overlaps
// it instead of being timed as GPU idle time, and the L2 cache starts cold, as triton's do_bench
// (which flushes it the same way) measures the published kernels the benchmarks compare with. The
// buffer is raw device memory outside the framework's pool: it shows in no peak.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <functional>
#include <vector>

#include "core/cuda/memory.h"
#include "core/cuda/stream.h"

namespace mom::bench {

constexpr size_t kBusyBytes = size_t(256) << 20;

inline void* busy_buffer() {
  static void* buffer = [] {  // never freed: the process ends with the benchmark
    void* p = nullptr;
    MOM_CUDA_CHECK(cudaMalloc(&p, kBusyBytes));
    return p;
  }();
  return buffer;
}

inline double median_ms(int runs, const std::function<void()>& f, int warmup = 3) {
  cudaStream_t st = cuda::stream(0);
  void* busy = busy_buffer();
  cudaEvent_t start, stop;
  MOM_CUDA_CHECK(cudaEventCreate(&start));
  MOM_CUDA_CHECK(cudaEventCreate(&stop));
  for (int i = 0; i < warmup; ++i) f();
  cuda::synchronize(0);
  std::vector<double> times;
  for (int i = 0; i < runs; ++i) {
    MOM_CUDA_CHECK(cudaMemsetAsync(busy, 0, kBusyBytes, st));
    MOM_CUDA_CHECK(cudaEventRecord(start, st));
    f();
    MOM_CUDA_CHECK(cudaEventRecord(stop, st));
    MOM_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    MOM_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    times.push_back(ms);
  }
  MOM_CUDA_CHECK(cudaEventDestroy(start));
  MOM_CUDA_CHECK(cudaEventDestroy(stop));
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

}  // namespace mom::bench
