// Timing and floors shared by the CUDA benchmarks (CUDA builds only).
//
// Timing: the median of `runs` timed calls of f, each timed with CUDA events on device 0's framework
// stream, after `warmup` untimed calls (cuBLAS heuristics, pool growth and first launches happen there)
// and a synchronisation.
//
// Each timed call starts on a busy GPU: a 256 MiB memset (about 70 us on an H200) is queued before
// the start event, so the host's work of queueing f (argument checks, allocations, launches) overlaps
// it instead of being timed as GPU idle time, and the L2 cache starts cold, as triton's do_bench
// (which flushes it the same way) measures kernels. The buffer is raw device memory outside the
// framework's pool: it shows in no peak.
//
// Floors: every benchmark prints, beside each time, the floor of that work measured in the same process
// on the same GPU, and `x floor` = time / floor: 1.00x is the floor, 1.50x takes half as long again.
// A target is a bound on `x floor` (e.g. <= 1.10x), so it means the same on every GPU model. A floor is
// work over a rate measured here with median_ms, the same warm-up, busy start and cold L2 as the kernels:
//   - bytes (each input read once, each output written once) over copy_rate(): bytes read + written per
//     second by a cudaMemcpyAsync device-to-device copy of 512 MiB;
//   - FLOPs over gemm_rate(): one cuBLAS GEMM at a shape the benchmark names, full float32
//     (CUBLAS_COMPUTE_32F), TF32 allowed (CUBLAS_COMPUTE_32F_FAST_TF32) or bf16 operands with float32
//     accumulation;
//   - exponentials over exp2_rate(): a kernel of nothing but MUFU.EX2 (ex2.approx.ftz.f32, the
//     instruction each float32 exponential of the selective scan is), 8 independent chains per thread.
// Their buffers are raw device memory too, freed before they return.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "core/bf16.h"
#include "core/cuda/memory.h"
#include "core/cuda/stream.h"
#include "core/error.h"

#define MOM_BENCH_CUBLAS_CHECK(call)                                                                     \
  do {                                                                                                   \
    cublasStatus_t mom_bench_status_ = (call);                                                           \
    if (mom_bench_status_ != CUBLAS_STATUS_SUCCESS)                                                      \
      MOM_THROW("cublas", cublasGetStatusString(mom_bench_status_) << " at " << __FILE__ << ":" << __LINE__); \
  } while (0)

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

// A measured rate: work per second, and the median time of the call it was measured on (0 for a rate
// computed from the device's attributes instead: exp2_rate below a CUDA 12 runtime).
struct Rate {
  double per_s = 0;
  double ms = 0;
  double floor_ms(double work) const { return work / per_s * 1e3; }
};

// Device 0 as the benchmarks' first line names it: "NVIDIA H200, sm_90, 132 SMs".
inline std::string device_name() {
  cudaDeviceProp p;
  MOM_CUDA_CHECK(cudaGetDeviceProperties(&p, 0));
  char s[320];
  std::snprintf(s, sizeof s, "%s, sm_%d%d, %d SMs", p.name, p.major, p.minor, p.multiProcessorCount);
  return s;
}

constexpr size_t kCopyBytes = size_t(512) << 20;

// Bytes read + written per second by a device-to-device cudaMemcpyAsync of `bytes` (512 MiB: large
// enough that the launch and the ramp at its ends are a few percent of it).
inline Rate copy_rate(int runs, size_t bytes = kCopyBytes) {
  void *src = nullptr, *dst = nullptr;
  MOM_CUDA_CHECK(cudaMalloc(&src, bytes));
  MOM_CUDA_CHECK(cudaMalloc(&dst, bytes));
  cudaStream_t st = cuda::stream(0);
  MOM_CUDA_CHECK(cudaMemsetAsync(src, 0x5a, bytes, st));
  const double ms =
      median_ms(runs, [&] { MOM_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, st)); });
  cuda::synchronize(0);
  MOM_CUDA_CHECK(cudaFree(src));
  MOM_CUDA_CHECK(cudaFree(dst));
  return {2.0 * double(bytes) / (ms * 1e-3), ms};
}

// The operand types of a GEMM rate: float32 (CUBLAS_COMPUTE_32F), float32 with TF32 allowed
// (CUBLAS_COMPUTE_32F_FAST_TF32), and bf16 operands and output with float32 accumulation.
enum class GemmType { f32, tf32, bf16 };

// FLOPs (multiply-add = 2) per second of cuBLAS's GEMM y (m, n) = x (m, k) @ w^T, x and w row-major with
// w (n, k): nn::Linear's projection of m tokens, on random inputs in [-1, 1).
inline Rate gemm_rate(int64_t m, int64_t n, int64_t k, GemmType type, int runs) {
  const bool narrow = type == GemmType::bf16;
  const size_t elem = narrow ? sizeof(bf16) : sizeof(float);
  std::vector<float> host(static_cast<size_t>(std::max(m, n) * k));
  std::mt19937 rng(12345);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  for (float& v : host) v = uniform(rng);
  std::vector<bf16> host_bf16;
  for (float v : host) host_bf16.push_back(bf16(v));
  const void* src = narrow ? static_cast<const void*>(host_bf16.data()) : static_cast<const void*>(host.data());
  constexpr size_t kWorkspaceBytes = size_t(32) << 20;  // cuBLAS's recommended workspace for Hopper
  void *x = nullptr, *w = nullptr, *y = nullptr, *workspace = nullptr;
  MOM_CUDA_CHECK(cudaMalloc(&x, elem * m * k));
  MOM_CUDA_CHECK(cudaMalloc(&w, elem * n * k));
  MOM_CUDA_CHECK(cudaMalloc(&y, elem * m * n));
  MOM_CUDA_CHECK(cudaMalloc(&workspace, kWorkspaceBytes));
  MOM_CUDA_CHECK(cudaMemcpy(x, src, elem * m * k, cudaMemcpyHostToDevice));
  MOM_CUDA_CHECK(cudaMemcpy(w, src, elem * n * k, cudaMemcpyHostToDevice));
  MOM_CUDA_CHECK(cudaDeviceSynchronize());  // the copies from pageable memory, before the framework's stream reads
  cublasHandle_t handle;
  MOM_BENCH_CUBLAS_CHECK(cublasCreate(&handle));
  MOM_BENCH_CUBLAS_CHECK(cublasSetStream(handle, cuda::stream(0)));
  MOM_BENCH_CUBLAS_CHECK(cublasSetWorkspace(handle, workspace, kWorkspaceBytes));  // after the stream, which resets it
  const float alpha = 1.0f, beta = 0.0f;
  const cudaDataType_t data = narrow ? CUDA_R_16BF : CUDA_R_32F;
  const cublasComputeType_t compute = type == GemmType::tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  // Row-major y = x w^T is column-major y^T = w x^T: w transposed first, (n, m) out, k the reduction.
  const double ms = median_ms(runs, [&] {
    MOM_BENCH_CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(m),
                                        static_cast<int>(k), &alpha, w, data, static_cast<int>(k), x, data,
                                        static_cast<int>(k), &beta, y, data, static_cast<int>(n), compute,
                                        CUBLAS_GEMM_DEFAULT));
  });
  cuda::synchronize(0);
  MOM_BENCH_CUBLAS_CHECK(cublasDestroy(handle));
  MOM_CUDA_CHECK(cudaFree(x));
  MOM_CUDA_CHECK(cudaFree(w));
  MOM_CUDA_CHECK(cudaFree(y));
  MOM_CUDA_CHECK(cudaFree(workspace));
  return {2.0 * double(m) * double(n) * double(k) / (ms * 1e-3), ms};
}

// The exponential kernel, as PTX (JIT-compiled by the driver for the GPU at hand): each thread runs 8
// independent chains x <- -0.5 * 2^x (x stays in [-1, 0)), `iters` steps each, and writes their sum so
// that nothing is optimised away. The multiply runs on the FMA pipe, beside MUFU, and does not limit it.
constexpr const char* kExp2Ptx = R"(
.version 7.0
.target sm_80
.address_size 64

.visible .entry mom_bench_exp2(.param .u64 out, .param .u32 iters)
{
  .reg .pred %p;
  .reg .f32 %x<8>;
  .reg .b32 %r<5>;
  .reg .b64 %rd<3>;
  mov.u32 %r0, %tid.x;
  and.b32 %r1, %r0, 31;
  cvt.rn.f32.u32 %x0, %r1;
  mul.f32 %x0, %x0, 0fBA83126F;
  add.f32 %x1, %x0, 0fBDCCCCCD;
  add.f32 %x2, %x0, 0fBE4CCCCD;
  add.f32 %x3, %x0, 0fBE99999A;
  add.f32 %x4, %x0, 0fBECCCCCD;
  add.f32 %x5, %x0, 0fBF000000;
  add.f32 %x6, %x0, 0fBF19999A;
  add.f32 %x7, %x0, 0fBF333333;
  ld.param.u32 %r2, [iters];
LOOP:
  ex2.approx.ftz.f32 %x0, %x0;
  ex2.approx.ftz.f32 %x1, %x1;
  ex2.approx.ftz.f32 %x2, %x2;
  ex2.approx.ftz.f32 %x3, %x3;
  ex2.approx.ftz.f32 %x4, %x4;
  ex2.approx.ftz.f32 %x5, %x5;
  ex2.approx.ftz.f32 %x6, %x6;
  ex2.approx.ftz.f32 %x7, %x7;
  mul.f32 %x0, %x0, 0fBF000000;
  mul.f32 %x1, %x1, 0fBF000000;
  mul.f32 %x2, %x2, 0fBF000000;
  mul.f32 %x3, %x3, 0fBF000000;
  mul.f32 %x4, %x4, 0fBF000000;
  mul.f32 %x5, %x5, 0fBF000000;
  mul.f32 %x6, %x6, 0fBF000000;
  mul.f32 %x7, %x7, 0fBF000000;
  sub.s32 %r2, %r2, 1;
  setp.gt.s32 %p, %r2, 0;
  @%p bra LOOP;
  add.f32 %x0, %x0, %x1;
  add.f32 %x2, %x2, %x3;
  add.f32 %x4, %x4, %x5;
  add.f32 %x6, %x6, %x7;
  add.f32 %x0, %x0, %x2;
  add.f32 %x4, %x4, %x6;
  add.f32 %x0, %x0, %x4;
  mov.u32 %r3, %ctaid.x;
  mov.u32 %r4, %ntid.x;
  mad.lo.s32 %r3, %r3, %r4, %r0;
  ld.param.u64 %rd0, [out];
  cvta.to.global.u64 %rd0, %rd0;
  mul.wide.u32 %rd1, %r3, 4;
  add.s64 %rd2, %rd0, %rd1;
  st.global.f32 [%rd2], %x0;
  ret;
}
)";

// Exponentials (MUFU.EX2) per second: 16 blocks of 256 threads per SM (two full waves), 1024 steps of 8
// chains each, about 1 ms on an H100 or H200. The kernel is loaded with cudaLibraryLoadData (CUDA 12);
// below CUDA 12 the rate is computed instead: SMs x 16 per clock (sm_80 and sm_90) x the SM clock.
inline Rate exp2_rate(int runs) {
#if CUDART_VERSION < 12000
  (void)runs;
  int clock_khz = 0;
  MOM_CUDA_CHECK(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, 0));
  return {16.0 * cuda::multiprocessor_count(0) * clock_khz * 1e3, 0};
#else
  cudaLibrary_t library;
  MOM_CUDA_CHECK(cudaLibraryLoadData(&library, kExp2Ptx, nullptr, nullptr, 0, nullptr, nullptr, 0));
  cudaKernel_t kernel;
  MOM_CUDA_CHECK(cudaLibraryGetKernel(&kernel, library, "mom_bench_exp2"));
  const int threads = 256, blocks = 16 * cuda::multiprocessor_count(0);
  int iters = 1024;
  float* out = nullptr;
  MOM_CUDA_CHECK(cudaMalloc(&out, sizeof(float) * blocks * threads));
  void* args[] = {&out, &iters};
  cudaStream_t st = cuda::stream(0);
  const double ms = median_ms(runs, [&] {
    MOM_CUDA_CHECK(
        cudaLaunchKernel(reinterpret_cast<const void*>(kernel), dim3(blocks), dim3(threads), args, 0, st));
  });
  cuda::synchronize(0);
  MOM_CUDA_CHECK(cudaFree(out));
  MOM_CUDA_CHECK(cudaLibraryUnload(library));
  return {8.0 * iters * double(blocks) * threads / (ms * 1e-3), ms};
#endif
}

// "met" or "MISSED" for a time `x` times its floor against a target of `target` times the floor.
inline const char* verdict(double x, double target) { return x <= target ? "met" : "MISSED"; }

}  // namespace mom::bench
