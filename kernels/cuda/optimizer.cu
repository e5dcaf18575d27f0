// CUDA versions of kernels/optimizer.h, called after the public functions' checks
// (kernels/cpu/optimizer.cpp).
//
// Multi-tensor launches (PyTorch's multi_tensor_apply, simplified). A list of up to kMaxTensors
// tensors of one dtype travels in the kernel's argument struct (kept under the classic 4 KB
// parameter limit): per tensor its pointers, length, per-tensor scalars, whether every pointer is
// 16-byte aligned, and first_block, the prefix sum of its chunk counts. The grid has one block of
// kThreads = 256 threads per (tensor, chunk of kChunk = 16384 elements); block b finds its tensor by
// scanning first_block (the same scan for every thread of the block, from the constant bank). A
// longer list takes several launches; a tensor is never split between launches. Per chunk each thread
// handles 64 elements (16 float4 / 32 double2 vectors when aligned; a scalar tail < W elements in a
// tensor's last chunk). Indices are 64-bit.
//
// adamw: per element reads p, g, m, v and writes p, m, v (28 bytes per f32 parameter, 56 per f64):
// memory-bound, floor = bytes / HBM bandwidth (~0.6 ms per 100 M f32 parameters on an H200). The
// update is computed in double with explicitly rounded operations (__dmul_rn, __dadd_rn, ...: no FMA
// contraction) in the CPU reference's order, so both devices give the same bits. The single-tensor
// adamw_step is the list path with one tensor.
//
// sum_of_squares_multi: pass 1 writes one double partial per (tensor, chunk) at a fixed index (chunks
// numbered over the whole list in list order, whatever the dtype grouping of the launches); a thread
// sums groups of W = 16 / sizeof(T) elements (one vector load when aligned, W scalar loads otherwise:
// the same order either way), then block_sum's fixed tree. Pass 2: one block sums the partials in
// index order. The partition depends only on the tensors' sizes, so the result repeats bit for bit.
// Nothing is read back: the result stays on the device. The single-tensor sum_of_squares is the list
// path with one tensor followed by a read of the result (a host synchronisation; it returns a value).
//
// clip_by_total_norm: every block reads total_sq from device memory and takes the decision itself;
// when the norm is within the limit the kernel writes nothing. g <- T(double(g) * coef) as the CPU.
// scale_inplace: g <- T(double(g) * s), through map_kernel.
#include <cmath>
#include <cstdint>
#include <limits>

#include "kernels/cuda/launch.cuh"
#include "kernels/optimizer.h"

namespace mom::kernels::cuda {

namespace {

constexpr int64_t kChunk = 16384;  // elements per block; a multiple of every vector width
constexpr int64_t kMaxGrid = std::numeric_limits<int32_t>::max();
constexpr int kMaxAdamWTensors = 48;  // 4 pointers + 3 scalars each: ~2.9 KB of arguments
constexpr int kMaxListTensors = 96;   // 1 pointer + 2 scalars each: ~2.8 KB

static_assert(kChunk % 4 == 0 && kChunk % (int64_t(kThreads) * 4) == 0, "chunks hold whole vectors per thread");

template <typename T> struct AdamWList {
  static constexpr int kCapacity = kMaxAdamWTensors;
  T* p[kCapacity];
  const T* g[kCapacity];
  T* m[kCapacity];
  T* v[kCapacity];
  int64_t n[kCapacity];
  double step_size[kCapacity];   // lr / (1 - beta1^t)
  double bias2_sqrt[kCapacity];  // sqrt(1 - beta2^t)
  unsigned first_block[kCapacity + 1];
  uint8_t aligned[kCapacity];
  int count;
};

// The gradients of a clipping pass. partial_base: the global number of the tensor's first chunk
// (sum of squares only).
template <typename T> struct GradList {
  static constexpr int kCapacity = kMaxListTensors;
  T* g[kCapacity];
  int64_t n[kCapacity];
  int64_t partial_base[kCapacity];
  unsigned first_block[kCapacity + 1];
  uint8_t aligned[kCapacity];
  int count;
};

struct AdamWScalars {
  double beta1, beta2, one_minus_beta1, one_minus_beta2, eps, decay;
};

static_assert(sizeof(AdamWList<double>) + sizeof(AdamWScalars) < 4000, "kernel arguments over 4 KB");
static_assert(sizeof(GradList<double>) + 2 * sizeof(double) < 4000, "kernel arguments over 4 KB");

// The tensor of this block: the last t with first_block[t] <= blockIdx.x.
__device__ inline int block_tensor(const unsigned* first_block, int count) {
  int t = 0;
  while (t + 1 < count && blockIdx.x >= first_block[t + 1]) ++t;
  return t;
}

// The CPU reference's update, one rounded double operation at a time (no contraction into FMAs).
template <typename T>
__device__ inline void adamw_element(T& p, T g, T& m, T& v, const AdamWScalars& s, double step_size, double bias2_sqrt) {
  const double gi = g;
  const double mi = __dadd_rn(__dmul_rn(s.beta1, double(m)), __dmul_rn(s.one_minus_beta1, gi));
  const double vi = __dadd_rn(__dmul_rn(s.beta2, double(v)), __dmul_rn(__dmul_rn(s.one_minus_beta2, gi), gi));
  const double denom = __dadd_rn(__ddiv_rn(__dsqrt_rn(vi), bias2_sqrt), s.eps);
  const double pi = __dsub_rn(__dmul_rn(double(p), s.decay), __ddiv_rn(__dmul_rn(step_size, mi), denom));
  m = static_cast<T>(mi);
  v = static_cast<T>(vi);
  p = static_cast<T>(pi);
}

template <typename T> __global__ void __launch_bounds__(kThreads) adamw_multi_kernel(AdamWList<T> list, AdamWScalars s) {
  constexpr int W = Vec<T>::width;
  const int t = block_tensor(list.first_block, list.count);
  const int64_t n = list.n[t];
  const int64_t begin = (int64_t(blockIdx.x) - list.first_block[t]) * kChunk;
  const int64_t end = begin + kChunk < n ? begin + kChunk : n;
  T* p = list.p[t];
  const T* g = list.g[t];
  T* m = list.m[t];
  T* v = list.v[t];
  const double step_size = list.step_size[t], bias2_sqrt = list.bias2_sqrt[t];
  int64_t scalar_begin = begin;
  if (list.aligned[t]) {
    const int64_t vend = end / W;  // begin is a multiple of W
    for (int64_t i = begin / W + threadIdx.x; i < vend; i += blockDim.x) {
      Vec<T> pv = reinterpret_cast<const Vec<T>*>(p)[i];
      Vec<T> gv = reinterpret_cast<const Vec<T>*>(g)[i];
      Vec<T> mv = reinterpret_cast<const Vec<T>*>(m)[i];
      Vec<T> vv = reinterpret_cast<const Vec<T>*>(v)[i];
#pragma unroll
      for (int j = 0; j < W; ++j) adamw_element(pv.v[j], gv.v[j], mv.v[j], vv.v[j], s, step_size, bias2_sqrt);
      reinterpret_cast<Vec<T>*>(p)[i] = pv;
      reinterpret_cast<Vec<T>*>(m)[i] = mv;
      reinterpret_cast<Vec<T>*>(v)[i] = vv;
    }
    scalar_begin = vend * W;
  }
  for (int64_t i = scalar_begin + threadIdx.x; i < end; i += blockDim.x)
    adamw_element(p[i], g[i], m[i], v[i], s, step_size, bias2_sqrt);
}

// Pass 1: the partial of one (tensor, chunk).
template <typename T> __global__ void __launch_bounds__(kThreads) sum_squares_multi_kernel(GradList<T> list, double* partial) {
  constexpr int W = Vec<T>::width;
  const int t = block_tensor(list.first_block, list.count);
  const int64_t n = list.n[t];
  const int64_t chunk = int64_t(blockIdx.x) - list.first_block[t];
  const int64_t begin = chunk * kChunk;
  const int64_t end = begin + kChunk < n ? begin + kChunk : n;
  const T* g = list.g[t];
  const bool vectorised = list.aligned[t];
  double acc = 0;
  int64_t k = begin / W + threadIdx.x;
  if (vectorised && end - begin == kChunk) {
    // A whole aligned chunk: the same groups in the same order as the loop below, with the loads of
    // kBatch groups issued before their sums (memory-level parallelism; the bits do not change).
    constexpr int kGroups = int(kChunk / W / kThreads), kBatch = 8;
    static_assert(kGroups % kBatch == 0, "whole batches per chunk");
    const Vec<T>* gv = reinterpret_cast<const Vec<T>*>(g);
#pragma unroll
    for (int b = 0; b < kGroups; b += kBatch) {
      Vec<T> x[kBatch];
#pragma unroll
      for (int i = 0; i < kBatch; ++i) x[i] = gv[k + int64_t(b + i) * kThreads];
#pragma unroll
      for (int i = 0; i < kBatch; ++i)
#pragma unroll
        for (int j = 0; j < W; ++j) acc += double(x[i].v[j]) * double(x[i].v[j]);
    }
    k = end / W;  // nothing left for the loop below
  }
  for (; k * W < end; k += blockDim.x) {
    if (vectorised && (k + 1) * W <= end) {
      Vec<T> x = reinterpret_cast<const Vec<T>*>(g)[k];
#pragma unroll
      for (int j = 0; j < W; ++j) acc += double(x.v[j]) * double(x.v[j]);
    } else {
      for (int64_t i = k * W; i < (k + 1) * W && i < end; ++i) acc += double(g[i]) * double(g[i]);
    }
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) partial[list.partial_base[t] + chunk] = acc;
}

// Pass 2: thread j sums partials j, j + kThreads, ... in order, then block_sum's fixed tree.
__global__ void __launch_bounds__(kThreads) sum_partials_kernel(const double* partial, int64_t count, double* out) {
  double acc = 0;
  for (int64_t b = threadIdx.x; b < count; b += blockDim.x) acc += partial[b];
  acc = block_sum(acc);
  if (threadIdx.x == 0) *out = acc;
}

template <typename T>
__global__ void __launch_bounds__(kThreads) clip_multi_kernel(GradList<T> list, const double* total_sq, double max_norm) {
  constexpr int W = Vec<T>::width;
  const double norm = __dsqrt_rn(*total_sq);
  if (!(norm > max_norm)) return;  // within the limit (or NaN): nothing is written, as on the CPU
  const double coef = __ddiv_rn(max_norm, __dadd_rn(norm, 1e-6));
  const int t = block_tensor(list.first_block, list.count);
  const int64_t n = list.n[t];
  const int64_t begin = (int64_t(blockIdx.x) - list.first_block[t]) * kChunk;
  const int64_t end = begin + kChunk < n ? begin + kChunk : n;
  T* g = list.g[t];
  int64_t scalar_begin = begin;
  if (list.aligned[t]) {
    const int64_t vend = end / W;
    for (int64_t i = begin / W + threadIdx.x; i < vend; i += blockDim.x) {
      Vec<T> x = reinterpret_cast<const Vec<T>*>(g)[i];
#pragma unroll
      for (int j = 0; j < W; ++j) x.v[j] = static_cast<T>(double(x.v[j]) * coef);
      reinterpret_cast<Vec<T>*>(g)[i] = x;
    }
    scalar_begin = vend * W;
  }
  for (int64_t i = scalar_begin + threadIdx.x; i < end; i += blockDim.x) g[i] = static_cast<T>(double(g[i]) * coef);
}

int64_t chunks_of(int64_t n) { return (n + kChunk - 1) / kChunk; }

// Packs the tensors `order` (indices into the caller's lists; empty tensors skipped) into lists of at
// most List::kCapacity, filling each slot with fill(list, slot, index), and launches each full list
// and the last one with launch(list, blocks).
template <typename List, typename Fill, typename Launch>
void pack_and_launch(const std::vector<size_t>& order, const std::vector<int64_t>& numel, Fill fill, Launch launch) {
  List list{};
  int64_t blocks = 0;
  auto flush = [&] {
    if (list.count == 0) return;
    list.first_block[list.count] = static_cast<unsigned>(blocks);
    launch(list, static_cast<unsigned>(blocks));
    list = List{};
    blocks = 0;
  };
  for (size_t i : order) {
    const int64_t chunks = chunks_of(numel[i]);
    if (chunks == 0) continue;
    if (list.count == List::kCapacity || blocks + chunks > kMaxGrid) flush();
    const int slot = list.count++;
    list.first_block[slot] = static_cast<unsigned>(blocks);
    list.n[slot] = numel[i];
    fill(list, slot, i);
    blocks += chunks;
  }
  flush();
}

// Indices of the tensors of each dtype, in list order.
template <typename T> std::vector<size_t> of_dtype(const std::vector<Tensor>& ts) {
  std::vector<size_t> out;
  for (size_t i = 0; i < ts.size(); ++i)
    if (ts[i].dtype() == dtype_of<T>()) out.push_back(i);
  return out;
}

std::vector<int64_t> numels(const std::vector<Tensor>& ts) {
  std::vector<int64_t> out;
  for (const Tensor& t : ts) out.push_back(t.numel());
  return out;
}

template <typename T> void launch_sum_squares(const std::vector<Tensor>& gs, const std::vector<int64_t>& numel,
                                              const std::vector<int64_t>& base, double* partial, cudaStream_t st) {
  pack_and_launch<GradList<T>>(
      of_dtype<T>(gs), numel,
      [&](GradList<T>& list, int slot, size_t i) {
        list.g[slot] = gs[i].data<T>();
        list.partial_base[slot] = base[i];
        list.aligned[slot] = aligned16(list.g[slot]);
      },
      [&](const GradList<T>& list, unsigned blocks) {
        sum_squares_multi_kernel<T><<<blocks, kThreads, 0, st>>>(list, partial);
        MOM_CUDA_CHECK_LAUNCH();
      });
}

template <typename T>
void launch_clip(const std::vector<Tensor>& gs, const std::vector<int64_t>& numel, const double* total_sq,
                 double max_norm, cudaStream_t st) {
  pack_and_launch<GradList<T>>(
      of_dtype<T>(gs), numel,
      [&](GradList<T>& list, int slot, size_t i) {
        list.g[slot] = gs[i].data<T>();
        list.partial_base[slot] = 0;
        list.aligned[slot] = aligned16(list.g[slot]);
      },
      [&](const GradList<T>& list, unsigned blocks) {
        clip_multi_kernel<T><<<blocks, kThreads, 0, st>>>(list, total_sq, max_norm);
        MOM_CUDA_CHECK_LAUNCH();
      });
}

template <typename T>
void launch_adamw(const std::vector<Tensor>& p, const std::vector<Tensor>& g, const std::vector<Tensor>& m,
                  const std::vector<Tensor>& v, const std::vector<int64_t>& steps, const AdamWHyper& h,
                  cudaStream_t st) {
  AdamWScalars s;
  s.beta1 = h.beta1;
  s.beta2 = h.beta2;
  s.one_minus_beta1 = 1.0 - h.beta1;
  s.one_minus_beta2 = 1.0 - h.beta2;
  s.eps = h.eps;
  s.decay = 1.0 - h.lr * h.weight_decay;
  pack_and_launch<AdamWList<T>>(
      of_dtype<T>(p), numels(p),
      [&](AdamWList<T>& list, int slot, size_t i) {
        list.p[slot] = p[i].data<T>();
        list.g[slot] = g[i].data<T>();
        list.m[slot] = m[i].data<T>();
        list.v[slot] = v[i].data<T>();
        // As the CPU reference computes them (host libm, double).
        list.step_size[slot] = h.lr / (1.0 - std::pow(h.beta1, static_cast<double>(steps[i])));
        list.bias2_sqrt[slot] = std::sqrt(1.0 - std::pow(h.beta2, static_cast<double>(steps[i])));
        list.aligned[slot] = aligned16(list.p[slot]) && aligned16(list.g[slot]) && aligned16(list.m[slot]) &&
                             aligned16(list.v[slot]);
      },
      [&](const AdamWList<T>& list, unsigned blocks) {
        adamw_multi_kernel<T><<<blocks, kThreads, 0, st>>>(list, s);
        MOM_CUDA_CHECK_LAUNCH();
      });
}

template <typename T> struct ScaleInPlaceF {
  double s;
  __device__ T operator()(const T (&x)[1]) const { return static_cast<T>(x[0] * s); }
};

}  // namespace

void adamw_step_multi(const std::vector<Tensor>& p, const std::vector<Tensor>& g, const std::vector<Tensor>& m,
                      const std::vector<Tensor>& v, const std::vector<int64_t>& steps, const AdamWHyper& h) {
  const int device = p[0].device().index;
  ::mom::cuda::DeviceGuard guard(device);
  cudaStream_t st = ::mom::cuda::stream(device);
  launch_adamw<float>(p, g, m, v, steps, h, st);
  launch_adamw<double>(p, g, m, v, steps, h, st);
}

void adamw_step(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v, int64_t step, const AdamWHyper& h) {
  cuda::adamw_step_multi({p}, {g}, {m}, {v}, {step}, h);
}

Tensor sum_of_squares_multi(const std::vector<Tensor>& gs) {
  const Device device = gs[0].device();
  const std::vector<int64_t> numel = numels(gs);
  std::vector<int64_t> base(gs.size());
  int64_t total_chunks = 0;
  for (size_t i = 0; i < gs.size(); ++i) {
    base[i] = total_chunks;
    total_chunks += chunks_of(numel[i]);
  }
  if (total_chunks == 0) return zeros({}, DType::f64, device);
  Tensor partial = empty({total_chunks}, DType::f64, device);
  Tensor out = empty({}, DType::f64, device);
  ::mom::cuda::DeviceGuard guard(device.index);
  cudaStream_t st = ::mom::cuda::stream(device.index);
  launch_sum_squares<float>(gs, numel, base, partial.data<double>(), st);
  launch_sum_squares<double>(gs, numel, base, partial.data<double>(), st);
  sum_partials_kernel<<<1, kThreads, 0, st>>>(partial.data<double>(), total_chunks, out.data<double>());
  MOM_CUDA_CHECK_LAUNCH();
  return out;
}

double sum_of_squares(const Tensor& g) {
  return cuda::sum_of_squares_multi({g}).item();  // a host synchronisation: the caller wants the value
}

void clip_by_total_norm(const std::vector<Tensor>& gs, const Tensor& total_sq, double max_norm) {
  const int device = gs[0].device().index;
  const std::vector<int64_t> numel = numels(gs);
  ::mom::cuda::DeviceGuard guard(device);
  cudaStream_t st = ::mom::cuda::stream(device);
  launch_clip<float>(gs, numel, total_sq.data<double>(), max_norm, st);
  launch_clip<double>(gs, numel, total_sq.data<double>(), max_norm, st);
}

void scale_inplace(const Tensor& g, double s) {
  dispatch_float(g.dtype(), "clip_grad_norm", [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    scalar_t* gp = g.data<scalar_t>();
    launch_map(Inputs<scalar_t, 1>{{gp}}, gp, g.numel(), g.device().index, ScaleInPlaceF<scalar_t>{s});
  });
}

}  // namespace mom::kernels::cuda
