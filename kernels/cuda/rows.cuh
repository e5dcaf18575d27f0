// What the row kernels (softmax.cu, cross_entropy.cu, rms_norm.cu) share: a "group" of threads that
// owns one row at a time (a warp, or the whole block), reductions over the group in a fixed order,
// the online softmax pair, and 16-byte chunks of a row with its unaligned edges peeled off.
//
// Reductions: a xor butterfly inside each warp, then (for a block) every thread combines the warps'
// values in warp order. Each combining step is commutative (sum, max, and the online pair written with
// products nvcc may not fuse into an FMA), so every thread of the group ends with the same bits, and the
// order depends only on the row length and the group size: results repeat bit for bit.
//
// Row split: a contiguous row of n elements at p is read as `pre` leading elements up to the first
// 16-byte boundary, `nvec` whole chunks of W = 16 / sizeof(T) elements (one vector load each), and
// `tail` trailing elements. The pre + tail <= 2 (W - 1) edge elements go to the group's first threads,
// one each. With W = 1 (the scalar variant) there are no edges. Tensors read and written together
// must have the same address modulo 16 for the vector variant (the hosts check it), so that one split
// serves them all.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/cuda/launch.cuh"

namespace mom::kernels::cuda::rows {

__device__ inline float exp_(float x) { return expf(x); }
__device__ inline double exp_(double x) { return exp(x); }
__device__ inline float log_(float x) { return logf(x); }
__device__ inline double log_(double x) { return log(x); }
__device__ inline float max_(float a, float b) { return fmaxf(a, b); }
__device__ inline double max_(double a, double b) { return fmax(a, b); }
// A product rounded on its own (never fused into an FMA with a neighbouring sum), so that a + b and
// b + a of such products round alike on the two lanes of a butterfly step.
__device__ inline float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ inline double mul_rn(double a, double b) { return __dmul_rn(a, b); }

template <typename T> __device__ inline T neg_inf() { return -static_cast<T>(INFINITY); }

struct SumOp {
  template <typename A> __device__ A operator()(A a, A b) const { return a + b; }
};
struct MaxOp {
  template <typename A> __device__ A operator()(A a, A b) const { return max_(a, b); }
};
struct MinOp {
  template <typename A> __device__ A operator()(A a, A b) const { return a < b ? a : b; }
};

// Running maximum m and sum s of exp(x - m) over the values seen so far (m = -inf: none finite yet).
template <typename A> struct Online {
  A m, s;
};

// exp(a - m) as the weight of a partial sum taken at maximum a, 0 for a partial that saw no finite value.
template <typename A> __device__ inline A rescale(A a, A m) { return a == neg_inf<A>() ? A(0) : exp_(a - m); }

struct OnlineOp {
  template <typename A> __device__ Online<A> operator()(Online<A> a, Online<A> b) const {
    const A m = max_(a.m, b.m);
    return {m, mul_rn(a.s, rescale(a.m, m)) + mul_rn(b.s, rescale(b.m, m))};
  }
};

template <typename A> __device__ inline A shfl_xor(A v, int o) { return __shfl_xor_sync(0xffffffffu, v, o); }
template <typename A> __device__ inline Online<A> shfl_xor(Online<A> v, int o) {
  return {__shfl_xor_sync(0xffffffffu, v.m, o), __shfl_xor_sync(0xffffffffu, v.s, o)};
}

// Every lane of the warp gets op over the 32 lanes' values (the same bits in every lane).
template <typename A, typename Op> __device__ inline A warp_reduce(A v, Op op) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = op(v, shfl_xor(v, o));
  return v;
}

// Every thread of the block gets op over all threads' values. blockDim.x is a multiple of 32, at most
// 1024; every thread of the block must call it (it synchronises twice).
template <typename A, typename Op> __device__ inline A block_reduce(A v, Op op) {
  __shared__ A partial[32];
  v = warp_reduce(v, op);
  if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = v;
  __syncthreads();
  A r = partial[0];
  const int warps = blockDim.x >> 5;
  for (int w = 1; w < warps; ++w) r = op(r, partial[w]);
  __syncthreads();  // `partial` is free for the next call
  return r;
}

// The threads that own one row: a warp (kWarp, blockDim.x / 32 rows per block) or the whole block.
// Rows are visited grid-stride, so any grid size covers any number of rows.
template <bool kWarp> struct Group {
  static __device__ int lane() { return kWarp ? int(threadIdx.x & 31) : int(threadIdx.x); }
  static __device__ int size() { return kWarp ? 32 : int(blockDim.x); }
  static __device__ int64_t first() {
    return kWarp ? int64_t(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5) : int64_t(blockIdx.x);
  }
  static __device__ int64_t stride() { return kWarp ? int64_t(gridDim.x) * (blockDim.x >> 5) : int64_t(gridDim.x); }
  template <typename A, typename Op> static __device__ A reduce(A v, Op op) {
    if constexpr (kWarp) return warp_reduce(v, op);
    else return block_reduce(v, op);
  }
};

template <typename T, int W> struct alignas(sizeof(T) * W) Chunk {
  T v[W];
};

template <typename T, int W> __device__ inline Chunk<T, W> load(const T* p) {
  return *reinterpret_cast<const Chunk<T, W>*>(p);
}
template <typename T, int W> __device__ inline void store(T* p, const Chunk<T, W>& c) {
  *reinterpret_cast<Chunk<T, W>*>(p) = c;
}

// The same with the "streaming" cache hint (evict first): for the last read of a row that is read
// twice, and for outputs, so that they do not push the rows still to be re-read out of L2.
template <typename T, int W> __device__ inline Chunk<T, W> load_last(const T* p) {
  Chunk<T, W> c;
  if constexpr (W == 1) {
    c.v[0] = __ldcs(p);
  } else if constexpr (sizeof(T) == 4) {
    const float4 v = __ldcs(reinterpret_cast<const float4*>(p));
    c.v[0] = v.x, c.v[1] = v.y, c.v[2] = v.z, c.v[3] = v.w;
  } else {
    const double2 v = __ldcs(reinterpret_cast<const double2*>(p));
    c.v[0] = v.x, c.v[1] = v.y;
  }
  return c;
}
template <typename T, int W> __device__ inline void store_last(T* p, const Chunk<T, W>& c) {
  if constexpr (W == 1) __stcs(p, c.v[0]);
  else if constexpr (sizeof(T) == 4) __stcs(reinterpret_cast<float4*>(p), make_float4(c.v[0], c.v[1], c.v[2], c.v[3]));
  else __stcs(reinterpret_cast<double2*>(p), make_double2(c.v[0], c.v[1]));
}

// Folds one chunk into the running pair: one rescale per chunk, one exp per element.
template <typename T, int W> __device__ inline void absorb(Online<T>& o, const Chunk<T, W>& c) {
  T cm = c.v[0];
#pragma unroll
  for (int j = 1; j < W; ++j) cm = max_(cm, c.v[j]);
  if (cm > o.m) {
    o.s = o.s * rescale(o.m, cm);
    o.m = cm;
  }
  if (o.m == neg_inf<T>()) return;  // only -inf so far: they add exp(-inf - m) = 0 at the end
#pragma unroll
  for (int j = 0; j < W; ++j) o.s += exp_(c.v[j] - o.m);
}

template <typename T, int W> struct RowSplit {
  int pre = 0, tail = 0;
  int64_t nvec = 0;
  __device__ RowSplit(const T* p, int64_t n) {
    if constexpr (W == 1) {
      nvec = n;
    } else {
      const int mis = int((reinterpret_cast<uintptr_t>(p) / sizeof(T)) % W);
      int64_t lead = mis == 0 ? 0 : W - mis;
      if (lead > n) lead = n;
      pre = int(lead);
      nvec = (n - lead) / W;
      tail = int(n - lead - nvec * W);
    }
  }
  __device__ int edges() const { return pre + tail; }
  // Index in the row of edge element i < edges().
  __device__ int64_t edge(int i) const { return i < pre ? i : pre + nvec * W + (i - pre); }
  // Index in the row of chunk v's first element.
  __device__ int64_t at(int64_t v) const { return pre + v * W; }
};

// Thread bounds of the row kernels: 256 per block for a warp per row; a caching block up to 1024
// (64 registers a thread); a streaming block up to 512, whose unrolled loads need more registers.
// (Streaming blocks of 1024, one per multiprocessor so that the re-read rows stay in L2, measured
// slower: 60% of copy against 67% at V = 50257.)
constexpr int kMaxStreamThreads = 512;
constexpr int row_threads_bound(bool warp, int chunks) { return warp ? 256 : chunks > 0 ? 1024 : kMaxStreamThreads; }

// Host side: how a row kernel is launched.
struct RowLaunch {
  bool warp = true;  // one warp per row (else one block per row)
  int chunks = 0;    // chunks cached per thread in registers; 0: streamed twice
  int threads = 256;
  unsigned blocks = 1;
};

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int round_up32(int64_t v) { return int(ceil_div(v, 32) * 32); }

inline bool same_mod16(const void* a, const void* b) {
  return reinterpret_cast<uintptr_t>(a) % 16 == reinterpret_cast<uintptr_t>(b) % 16;
}

// Blocks for `groups` rows (grid-stride beyond), at most 32 blocks per multiprocessor.
inline unsigned row_blocks(int64_t groups, int device) {
  const int64_t cap = int64_t(::mom::cuda::multiprocessor_count(device)) * 32;
  return static_cast<unsigned>(groups < 1 ? 1 : (groups < cap ? groups : cap));
}

// Rows of at most `nvec` chunks: a warp per row caching 1, 2, 4 or 8 chunks per lane when that holds
// the row, else a block of <= 1024 threads caching `block_chunks` per thread, else a streaming block of
// <= 512 threads (the row read twice). `cache` false: always streaming.
inline RowLaunch plan_rows(int64_t rows, int64_t nvec, bool cache, int block_chunks, int device) {
  RowLaunch l;
  if (cache && nvec <= 32 * 8) {
    l.warp = true;
    l.chunks = nvec <= 32 ? 1 : nvec <= 64 ? 2 : nvec <= 128 ? 4 : 8;
    l.threads = 256;
    l.blocks = row_blocks(ceil_div(rows, l.threads / 32), device);
    return l;
  }
  l.warp = false;
  if (cache && nvec <= int64_t(1024) * block_chunks) {
    l.chunks = block_chunks;
    l.threads = round_up32(ceil_div(nvec, block_chunks));
  } else {
    l.chunks = 0;
    const int64_t t = round_up32(ceil_div(nvec, 8));
    l.threads = int(t < 32 ? 32 : (t > kMaxStreamThreads ? kMaxStreamThreads : t));
  }
  l.blocks = row_blocks(rows, device);
  return l;
}

}  // namespace mom::kernels::cuda::rows
