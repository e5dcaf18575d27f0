// CUDA versions of kernels/causal_conv1d.h, called by the public functions
// (kernels/cpu/causal_conv1d.cpp) after their argument checks. Same math as the CPU reference, f32,
// f64 and bf16; W (2..8) and silu are template parameters, so the windows live in registers.
//
// bf16 (mixed precision): the kernels take the stored type T of x, y, the windows and their gradients,
// and its acc type (acc_t: float for bf16, T itself for f32 and f64) for weight, bias, dweight, dbias
// and every value computed. A bf16 value is widened exactly where it is read (the windows hold the
// stored bf16 values; dpre, the weights and the sums are float), and each bf16 output is rounded once,
// to nearest even, by core/bf16.h's conversion: so a bf16 call is the f32 computation on the widened
// inputs, as the CPU reference, with the f32 kernels' arithmetic and order. final_window holds copies
// of inputs, and dfinal_window is added to dx in float before the rounding. For f32 and f64, acc_t is
// T and the conversions are identities: their kernels are the plain T kernels, the same code.
//
// Decomposition. Channel-last (B, L, E): a row of E channels is contiguous, so a thread owns a pack
// of N adjacent channels and one chunk of time steps of one batch row (kForwardChunk = 16 in the
// forward, kChunk = 64 in the backward). Packs are 16 bytes in the forward (float4, double2) and 8
// bytes in the backward (float2, double: with 16-byte packs its two windows and the weight sums take
// 122 registers, 4 blocks per multiprocessor), when E and every pointer allow it, else one channel. A block is 32 packs (threadIdx.x: a warp reads 256 or 512
// contiguous bytes of a row) by 4 consecutive chunks (threadIdx.y): 128 threads. bf16 takes f32's
// channels per thread (4 forward, 2 backward: the weights, dpre and the sums are float, so its
// registers and occupancy are f32's), in packs of 8 and 4 bytes (a warp reads 256 and 128 contiguous
// bytes of a row). ptxas, sm_90, W = 4: forward 64 registers (8 blocks per multiprocessor, as f32),
// backward 64-72 (as f32). Packs of 8 bf16 channels in the forward take 104-111 registers (4 blocks
// per multiprocessor; capped at 80 they spill 500-660 bytes). A 2-byte pack (one bf16 channel: odd E
// or a misaligned pointer) is copied through a register, as cp.async copies 4, 8 or 16 bytes. The
// thread slides a register window over its chunk:
//   forward:  one step at a time; xw holds xe[t - (W-1) .. t]. The W-1 steps before the chunk (the
//             halo) come from x, the initial window, or zeros. x itself streams through a ring of
//             kRing = 8 shared-memory slots per thread, filled by cp.async (global to shared, no
//             register held while in flight; 16-byte packs bypass L1): the chunk's first 8 steps are
//             issued before the weights and the halo load, and each step's slot is refilled with the
//             step 8 ahead once its value is used, so 8 steps of loads are in flight per thread at 64
//             registers (8 blocks per multiprocessor in f32). Each thread has its own slots: no
//             barrier. y[t] = act(bias + sum_k w[k] xe[t-(W-1)+k]), k ascending, in the acc type
//             (the CPU's order), stored with the streaming cache hint; float's SiLU uses the hardware
//             exp2 and a fast divide (silu_forward). The thread whose chunk holds t = L-1 writes the
//             final window from its xw, which reaches into the initial window when L < W-1.
//             Measured on an H200 at the benchmark's shape (bench_cuda_conv): 0.0568-0.0572 ms;
//             0.0587 with a register prefetch of the next 4 steps instead of the ring, 0.0621 with
//             that prefetch and expf and an IEEE division instead of the fast SiLU; a copy of x
//             takes 0.0511-0.0515 (docs/architecture.md has the variants tried).
//   backward: one step at a time, x and dy streaming through two per-thread rings of kRing
//             shared-memory slots filled by cp.async, as the forward's x. A second window dp holds
//             dpre = dy * silu'(pre), pre recomputed from the x window; float's sigmoid takes the
//             forward's hardware exp2 and fast divide (sigmoid_fast). dx[s] needs dpre[s .. s+W-1],
//             so the thread also reads the W-1 steps after its chunk (x has a halo on both sides, dy
//             on the right) and emits dx[s] W-1 steps behind the dpre it computes, with the streaming
//             store; dpre is 0 outside [0, L) (dy is read as 0 there).
//             The chunk at t0 = 0 emits the dinitial_window rows s in [-(W-1), 0) the same way.
//             dfinal_window[j] is added to row s = L-(W-1)+j, whether that row is in dx or in
//             dinitial_window (L < W-1).
// Parameter gradients, without atomics, in an order fixed by the shapes:
//   each thread sums dpre * xe (dweight) and dpre (dbias) over its chunk in the acc type (64
//   terms); the block adds its 4 chunks in order, in double, into partial[tile][k][e] (tile = batch
//   row x 256-step block; k = 0..W-1 the taps, W the bias); param_reduce_kernel adds the tiles (8
//   strided slices in double, then the slices in order) into dweight (E, W) and dbias (E). Results
//   repeat bit for bit; they differ from the CPU's b-then-t double sum by rounding only.
// Grouped rows (kRows, a template flag so that the plain kernels keep their code): the (b, t) row of
// x, y, dy and dx sits at storage row rows[b*L + t] (the Routing's inverse). The decomposition, the
// windows and the arithmetic are unchanged; only each step's row address is read from the index
// instead of stepping a pointer by E. Each thread reads a step's indices when it loads that
// step's x (and dy) (8 bytes each, the same address for the 32 lanes of a warp: one broadcast
// transaction, and 16 tokens per 128-byte line, so mostly L1 hits); the y (dx) store re-reads its row's
// index, which this thread read a few steps before (L1), instead of holding the offsets in registers:
// that keeps the grouped kernels at the plain kernels' occupancy (ptxas, sm_90, f32, W=4, silu: forward
// 64 registers as the plain, backward 94 against 96; holding the backward's offsets cost 122, with
// small spills in some variants). Halo rows read through the index too. Extra traffic: 8 bytes of
// index per token per 32-pack channel block against its 512 bytes of x (f32): 1.6% of the reads, from
// L2 (the whole index is B*L*8 bytes, 131 KB at the benchmark's shape); a warp still reads or writes
// 256 or 512 contiguous bytes of one row per access, as in the plain layout.
// Traffic at B=8, L=2048, E=1536, W=4, f32 (the benchmark): the forward reads x and writes y, 201 MB
// (the 3-step halo per chunk is read again, from L1/L2); the backward reads x and dy and writes dx,
// 302 MB, plus 3.9 MB of partials. Registers (ptxas, sm_90): forward 64 (8 blocks of 128 per SM and
// 16 KB of ring each; the benchmark's 3072 blocks are 2.9 waves), backward 72 (7 blocks per SM and
// 21 KB of rings each). The backward on an H100 at the benchmark's shape (a standalone harness timing
// the variants side by side): 0.124 ms with the rings and the fast sigmoid, 0.127 ms with the rings and
// expf, 0.136 ms loading 4 steps at a time into registers (its reads then come in bursts between the
// arithmetic); rings of 4 or 8 slots tie, 16 slots (0.128) and 16-byte packs (0.126-0.129) lose.
#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "core/cuda/stream.h"
#include "kernels/causal_conv1d.h"

namespace mom::kernels::cuda {

namespace {

constexpr const char* kOp = "causal_conv1d";
constexpr int kLanes = 32;          // channel packs per block (threadIdx.x)
constexpr int kChunksPerBlock = 4;  // consecutive time chunks per block (threadIdx.y)
constexpr int kChunk = 64;          // time steps per thread in the backward
constexpr int kForwardChunk = 16;   // time steps per thread in the forward
constexpr int kRing = 8;            // forward: steps of x in flight per thread (shared-memory slots)
constexpr int kBlockThreads = kLanes * kChunksPerBlock;
constexpr int kReduceSlices = 8;    // tile slices per channel in param_reduce_kernel

// The acc type of a stored type T: the type of every sum, of weight, bias, dweight and dbias. bf16
// stores x, y, the windows and their gradients and sums in float32; f32 and f64 are their own.
template <typename T> struct AccOf {
  using type = T;
};
template <> struct AccOf<bf16> {
  using type = float;
};
template <typename T> using acc_t = typename AccOf<T>::type;

// A stored value as the acc type (exact), and an acc value stored: bf16 rounds once, to nearest even,
// by core/bf16.h's conversion (the CPU reference's bits). Identities for f32 and f64.
template <typename T> __device__ inline acc_t<T> widen(T v) { return static_cast<acc_t<T>>(v); }
template <typename T> __device__ inline T narrow(acc_t<T> v) { return static_cast<T>(v); }

template <typename T> __device__ inline T zero_value() {
  if constexpr (std::is_same<T, bf16>::value)
    return bf16::from_bits(0);
  else
    return T(0);
}

// The forward's register budget up to W = 4: 8 blocks of 128 threads per multiprocessor in f32 and
// bf16 (64 registers), 6 in f64 (80; 64 spilled). Wider windows keep what they need (they would spill).
template <typename T> constexpr int forward_blocks_per_sm(int W) { return W > 4 ? 1 : sizeof(acc_t<T>) == 4 ? 8 : 6; }

template <typename T, int N> struct alignas(sizeof(T) * N) Pack {
  T v[N];
};

template <typename T, int N> __device__ inline Pack<T, N> zero_pack() {
  Pack<T, N> p;
#pragma unroll
  for (int n = 0; n < N; ++n) p.v[n] = zero_value<T>();
  return p;
}

template <typename T, int N> __device__ inline Pack<T, N> load_pack(const T* p) {
  return *reinterpret_cast<const Pack<T, N>*>(p);
}

template <typename T, int N> __device__ inline void store_pack(T* p, const Pack<T, N>& v) {
  *reinterpret_cast<Pack<T, N>*>(p) = v;
}

// The forward's y stores, with the streaming cache hint (evict first: written once) on the forward's
// packs of 4 or more channels (16 bytes; 8 in bf16); other packs as plain stores.
template <typename T, int N> __device__ inline void store_pack_streaming(T* p, const Pack<T, N>& v) {
  if constexpr (sizeof(Pack<T, N>) == 16)
    __stcs(reinterpret_cast<float4*>(p), *reinterpret_cast<const float4*>(&v));
  else if constexpr (std::is_same<T, bf16>::value && N == 4)
    __stcs(reinterpret_cast<float2*>(p), *reinterpret_cast<const float2*>(&v));
  else
    store_pack(p, v);
}

// The forward's x loads: a copy from global to shared memory that holds no register while in flight
// (cp.async, sm_80 on; 16-byte packs bypass L1, .cg, since x is read once). Each thread commits one
// group per step and waits until at most kPending of its groups are still in flight. Before sm_80 the
// copy goes through a register and the waits are empty; so does a 2-byte pack (one bf16 channel, the
// misaligned fallback), which cp.async cannot copy.
template <typename T, int N> __device__ inline void copy_async(Pack<T, N>* dst, const T* src) {
#if __CUDA_ARCH__ >= 800
  if constexpr (sizeof(Pack<T, N>) < 4) {
    *dst = load_pack<T, N>(src);
  } else {
    const unsigned to = static_cast<unsigned>(__cvta_generic_to_shared(dst));
    if constexpr (sizeof(Pack<T, N>) == 16)
      asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(to), "l"(src) : "memory");
    else
      asm volatile("cp.async.ca.shared.global [%0], [%1], %2;\n" ::"r"(to), "l"(src), "n"(sizeof(Pack<T, N>)) : "memory");
  }
#else
  *dst = load_pack<T, N>(src);
#endif
}
__device__ inline void copy_async_commit() {
#if __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}
template <int kPending> __device__ inline void copy_async_wait() {
#if __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
#endif
}

__device__ inline double sigmoid(double v) { return 1.0 / (1.0 + exp(-v)); }

// The forward's SiLU, v / (1 + exp(-v)). In f32 this is the kernel's costliest arithmetic: expf and
// an IEEE division are about 20 instructions per channel, and the forward is short of issue slots
// beside its loads (H200, a standalone copy of this kernel: 0.0604 ms with them, 0.0572 with
// __expf and __fdividef). So f32 takes the hardware 2^x (ex2.approx, about 2 ulp) of -v log2(e),
// with the product's rounding error carried in a first-order correction: __expf skips that and its
// exp loses about 1.2 |v| ulp. Then a fast divide (2 ulp; 0 once 1 + exp(-v) passes 2^126, where
// the quotient is below 1e-36). Max relative error of silu against double over |v| <= 80 (H200):
// 3.0e-7 this way, 3.8e-6 with __expf, 2.4e-7 with expf and the division. f64 keeps exp and the
// division.
__device__ inline float exp2_approx(float p) {
  float r;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(p));
  return r;
}
__device__ inline float silu_forward(float v) {
  const float kLog2e = 1.44269502f, kLog2eTail = 1.92596303e-08f, kLn2 = 0.693147182f;
  const float p = -v * kLog2e;
  const float r = fmaf(-v, kLog2e, -p) + -v * kLog2eTail;  // -v log2(e) = p + r
  return __fdividef(v, 1.f + exp2_approx(p) * fmaf(r, kLn2, 1.f));  // 2^(p + r) = 2^p (1 + r ln 2)
}
__device__ inline double silu_forward(double v) { return v * sigmoid(v); }

// One call's tensors (null where the header allows an undefined one) and its launch geometry. T is the
// stored type of x, y, the windows and their gradients; weight and bias are in the acc type.
template <typename T> struct ConvArgs {
  const T* x;               // (B, L, E)
  const acc_t<T>* weight;   // (E, W)
  const acc_t<T>* bias;     // (E) or null
  const T* init;            // (B, W-1, E) or null
  T* y;                     // forward: (B, L, E)
  T* final_window;          // forward: (B, W-1, E)
  const T* dy;              // backward: (B, L, E)
  const T* dfinal;          // backward: (B, W-1, E) or null
  T* dx;                    // backward: (B, L, E)
  T* dinit;                 // backward: (B, W-1, E), null without an initial window
  double* partial;          // backward: (tiles, W+1, E)
  const int64_t* rows;  // (B*L) storage row of token b*L + t in x, y, dy, dx; null: the plain layout
  const bool* docs;     // (B, L) doc_start in token order, or null: no document boundaries
  int64_t B, L, E;
  int64_t packs;           // E / N channel packs per row
  int64_t channel_blocks;  // ceil(packs / kLanes)
  int64_t time_blocks;     // ceil(ceil(L / chunk) / kChunksPerBlock) per batch row
};

// What one thread works on.
struct Tile {
  int64_t tile;           // b * time_blocks + time block: the row of `partial`
  int64_t channel_block;  // which 32 packs
  int64_t b, t0, e0;      // batch row, first step of the chunk, first channel of the pack
  bool active;            // the chunk starts inside the row and the pack inside E
};

template <typename T, int N, int kLen> __device__ inline Tile tile_of(const ConvArgs<T>& a) {
  Tile r;
  r.channel_block = int64_t(blockIdx.x) % a.channel_blocks;
  r.tile = int64_t(blockIdx.x) / a.channel_blocks;
  r.b = r.tile / a.time_blocks;
  r.t0 = ((r.tile % a.time_blocks) * kChunksPerBlock + threadIdx.y) * kLen;
  const int64_t pack = r.channel_block * kLanes + threadIdx.x;
  r.e0 = pack * N;
  r.active = r.t0 < a.L && pack < a.packs;
  return r;
}

// The storage row of step s in [0, L) of batch row b, in x, y, dy and dx.
template <bool kRows, typename T> __device__ inline int64_t row_of(const ConvArgs<T>& a, int64_t b, int64_t s) {
  if constexpr (kRows)
    return a.rows[b * a.L + s];
  else
    return b * a.L + s;
}

// Document starts near a thread's chunk, as bits: bit i of word r is whether step t0 - 8 + 32 r + i
// starts a document after t = 0 (a flag at t = 0 cuts nothing; steps outside (0, L) never start one).
// All 32 lanes of a warp share b and t0, so each lane loads one flag per word and a ballot gives every
// lane the words: kWords = 1 covers the forward's halo and chunk (t0 - 8 .. t0 + 23), 3 the backward's
// (t0 - 8 .. t0 + 87). Every lane of the warp calls this, before any lane leaves; 0 without doc_start.
template <int kWords, bool kDocs, typename T> struct DocBits {
  uint32_t word[kWords];
  __device__ DocBits(const ConvArgs<T>& a, int64_t b, int64_t t0) {
#pragma unroll
    for (int r = 0; r < kWords; ++r) {
      const int64_t s = t0 - 8 + 32 * r + int64_t(threadIdx.x);
      word[r] = kDocs ? __ballot_sync(0xffffffffu, s > 0 && s < a.L && a.docs[b * a.L + s]) : 0u;
    }
  }
  // Whether step t0 + j starts a document, for j in [-8, 32 kWords - 8). The word is chosen by
  // selects, not by a runtime index, which would put the words in local memory.
  __device__ bool starts(int j) const {
    const int i = j + 8;
    uint32_t w = word[0];
#pragma unroll
    for (int r = 1; r < kWords; ++r)
      if (i >= 32 * r) w = word[r];
    return w >> (i & 31) & 1u;
  }
};

// xe[b, s, e0 .. e0+N) for s in [-(W-1), L): x for s >= 0, else the initial window or zeros.
template <typename T, int N, int W, bool kRows>
__device__ inline Pack<T, N> load_xe(const ConvArgs<T>& a, int64_t b, int64_t s, int64_t e0) {
  if (s >= 0) return load_pack<T, N>(a.x + row_of<kRows>(a, b, s) * a.E + e0);
  if (a.init) return load_pack<T, N>(a.init + (b * (W - 1) + s + W - 1) * a.E + e0);
  return zero_pack<T, N>();
}

template <typename T, int W, int N>
__device__ inline void load_weights(const ConvArgs<T>& a, int64_t e0, acc_t<T> (&w)[W][N], acc_t<T> (&bias)[N]) {
#pragma unroll
  for (int n = 0; n < N; ++n) {
#pragma unroll
    for (int k = 0; k < W; ++k) w[k][n] = a.weight[(e0 + n) * W + k];
    bias[n] = a.bias ? a.bias[e0 + n] : acc_t<T>(0);
  }
}

// A document starts at the window's last step: the steps before it read as zeros.
template <typename T, int N, int W> __device__ inline void cut_window(Pack<T, N> (&xw)[W]) {
#pragma unroll
  for (int i = 0; i < W - 1; ++i) xw[i] = zero_pack<T, N>();
}

// The window's halo, steps t0 - (W-1) + i for i < W-1, as the document starts leave it: a start at
// halo step m zeroes the steps before it.
template <typename T, int N, int W, int kWords, bool kDocs>
__device__ inline void cut_halo(Pack<T, N> (&xw)[W], const DocBits<kWords, kDocs, T>& docs) {
  if constexpr (kDocs) {
#pragma unroll
    for (int m = 1; m < W - 1; ++m)
      if (docs.starts(m - (W - 1)))
#pragma unroll
        for (int i = 0; i < m; ++i) xw[i] = zero_pack<T, N>();
  }
}

// pre for step i of the window: bias + sum_k w[k] xw[i + k], k ascending (the CPU's order), in the
// acc type.
template <typename T, typename A, int W, int N, int M>
__device__ inline A pre_at(const A (&w)[W][N], const A (&bias)[N], const Pack<T, N> (&xw)[M], int i, int n) {
  A acc = bias[n];
#pragma unroll
  for (int k = 0; k < W; ++k) acc += w[k][n] * widen(xw[i + k].v[n]);
  return acc;
}

template <typename T, int W, int N, bool kSilu, bool kRows, bool kDocs>
__global__ void __launch_bounds__(kBlockThreads, forward_blocks_per_sm<T>(W)) forward_kernel(ConvArgs<T> a) {
  // ring[t % kRing][thread]: x of step t of the chunk, kRing steps ahead of the one computed. Each
  // thread has its own slots (no barrier); a warp's slots of one step are 512 contiguous bytes.
  __shared__ Pack<T, N> ring[kRing][kBlockThreads];
  const Tile tl = tile_of<T, N, kForwardChunk>(a);
  static_assert(kForwardChunk <= 24, "the chunk's document starts fit in one DocBits word");
  const DocBits<1, kDocs, T> docs(a, tl.b, tl.t0);  // all 0 without kDocs
  if (!tl.active) return;
  const int thread = threadIdx.y * kLanes + threadIdx.x;
  const int steps = static_cast<int>(min(int64_t(kForwardChunk), a.L - tl.t0));
  const int64_t* idx = kRows ? a.rows + tl.b * a.L + tl.t0 : nullptr;  // grouped: step t is at row idx[t]
  const int64_t first = tl.b * a.L + tl.t0;                             // plain: step t is at row first + t
  auto at = [&](int t) { return (kRows ? idx[t] : first + t) * a.E + tl.e0; };
#pragma unroll
  for (int j = 0; j < kRing; ++j) {  // the first kRing steps go out before the weights and halo load
    if (j < steps) copy_async(&ring[j][thread], a.x + at(j));
    copy_async_commit();
  }
  acc_t<T> w[W][N], bias[N];
  load_weights<T, W, N>(a, tl.e0, w, bias);
  Pack<T, N> xw[W];  // xw[i] = xe[t - (W-1) + i] at step t; xw[W-1] is step t's x
#pragma unroll
  for (int i = 0; i < W - 1; ++i) xw[i] = load_xe<T, N, W, kRows>(a, tl.b, tl.t0 - (W - 1) + i, tl.e0);
  cut_halo(xw, docs);
  for (int base = 0; base < steps; base += kRing) {
#pragma unroll
    for (int j = 0; j < kRing; ++j) {
      const int t = base + j;
      copy_async_wait<kRing - 1>();  // step t's group (one per step, empty or not) has landed
      if (t < steps) {
        xw[W - 1] = ring[j][thread];
        if (kDocs && docs.starts(t)) cut_window(xw);
        Pack<T, N> out;
#pragma unroll
        for (int n = 0; n < N; ++n) {
          const acc_t<T> pre = pre_at(w, bias, xw, 0, n);
          out.v[n] = narrow<T>(kSilu ? silu_forward(pre) : pre);
        }
        store_pack_streaming(a.y + at(t), out);
        // The slot is free once its value is used: refill it with step t + kRing.
        if (t + kRing < steps) copy_async(&ring[j][thread], a.x + at(t + kRing));
#pragma unroll
        for (int i = 0; i < W - 1; ++i) xw[i] = xw[i + 1];
      }
      copy_async_commit();
    }
  }
  if (tl.t0 + steps == a.L) {  // this chunk holds t = L-1: final_window[j] = xe[L - (W-1) + j] = xw[j]
    T* fw = a.final_window + tl.b * (W - 1) * a.E + tl.e0;
#pragma unroll
    for (int j = 0; j < W - 1; ++j) store_pack(fw + j * a.E, xw[j]);
  }
}

// f32's sigmoid for the backward, the forward's way: the hardware exp2 with a first-order correction
// and a fast divide (0 once 1 + exp(-v) passes 2^126). f64 keeps exp and the division.
__device__ inline float sigmoid_fast(float v) {
  const float kLog2e = 1.44269502f, kLog2eTail = 1.92596303e-08f, kLn2 = 0.693147182f;
  const float p = -v * kLog2e;
  const float r = fmaf(-v, kLog2e, -p) + -v * kLog2eTail;
  return __fdividef(1.f, 1.f + exp2_approx(p) * fmaf(r, kLn2, 1.f));
}
__device__ inline double sigmoid_fast(double v) { return sigmoid(v); }

template <typename T, int W, int N, bool kSilu, bool kRows, bool kDocs>
__global__ void __launch_bounds__(kBlockThreads) backward_kernel(ConvArgs<T> a) {
  // xring / gring[j % kRing][thread]: x and dy of step j, kRing steps ahead of the one computed; each
  // thread owns its slots, as in the forward.
  __shared__ Pack<T, N> xring[kRing][kBlockThreads];
  __shared__ Pack<T, N> gring[kRing][kBlockThreads];
  const Tile tl = tile_of<T, N, kChunk>(a);
  static_assert(kChunk + 8 + 8 <= 96, "the chunk's document starts and both halos fit in three DocBits words");
  const DocBits<3, kDocs, T> docs(a, tl.b, tl.t0);
  using A = acc_t<T>;
  A dw[W][N], db[N];  // this thread's dweight, dbias over its chunk
#pragma unroll
  for (int n = 0; n < N; ++n) {
    db[n] = A(0);
#pragma unroll
    for (int k = 0; k < W; ++k) dw[k][n] = A(0);
  }
  if (tl.active) {
    const int thread = threadIdx.y * kLanes + threadIdx.x;
    const int own = static_cast<int>(min(int64_t(kChunk), a.L - tl.t0));          // dx rows t0 .. t0+own-1
    const int loads = static_cast<int>(min(int64_t(kChunk + W - 1), a.L - tl.t0));  // x, dy steps read
    const int steps = own + W - 1;  // step j computes dpre[t0 + j] and emits row t0 + j - (W-1)
    const int64_t* idx = kRows ? a.rows + tl.b * a.L + tl.t0 : nullptr;
    const int64_t first = tl.b * a.L + tl.t0;
    auto at = [&](int j) { return (kRows ? idx[j] : first + j) * a.E + tl.e0; };
#pragma unroll
    for (int j = 0; j < kRing; ++j) {
      if (j < loads) {
        copy_async(&xring[j][thread], a.x + at(j));
        copy_async(&gring[j][thread], a.dy + at(j));
      }
      copy_async_commit();
    }
    A w[W][N], bias[N];
    load_weights<T, W, N>(a, tl.e0, w, bias);
    Pack<T, N> xw[W];  // xw[i] = xe[t0 + j - (W-1) + i] at step j
    Pack<A, N> dp[W];  // dp[i] = dpre[t0 + j - (W-1) + i]; 0 before the chunk (not needed there)
    // cut: bit m says whether step t0 + j - (W-2) + m starts a document (m < W-1), for the step j
    // computed: then output s + 1 + m = t0 + j - (W-2) + m reads nothing at or before row s = t0 + j - (W-1),
    // so dx[s] takes dpre[s + i] only while bits 0 .. i-1 are clear.
    uint32_t cut = 0;
#pragma unroll
    for (int i = 0; i < W - 1; ++i) {
      xw[i] = load_xe<T, N, W, kRows>(a, tl.b, tl.t0 - (W - 1) + i, tl.e0);
      dp[i] = zero_pack<A, N>();
      if (kDocs) cut |= uint32_t(docs.starts(i - (W - 1))) << i;
    }
    cut_halo(xw, docs);
    const int64_t fw_start = a.L - (W - 1);
    for (int base = 0; base < steps; base += kRing) {
#pragma unroll
      for (int jj = 0; jj < kRing; ++jj) {
        const int j = base + jj;
        copy_async_wait<kRing - 1>();
        if (j < steps) {
          Pack<T, N> g = zero_pack<T, N>();
          if (j < loads) {
            xw[W - 1] = xring[jj][thread];
            g = gring[jj][thread];
          } else {
            xw[W - 1] = zero_pack<T, N>();
          }
          const bool start = kDocs && docs.starts(j);
          if (kDocs) {
            if (start) cut_window(xw);
            cut = (cut >> 1) | uint32_t(start) << (W - 2);
          }
          if (j + kRing < loads) {
            copy_async(&xring[jj][thread], a.x + at(j + kRing));
            copy_async(&gring[jj][thread], a.dy + at(j + kRing));
          }
#pragma unroll
          for (int n = 0; n < N; ++n) {
            if (kSilu) {
              const A pre = pre_at(w, bias, xw, 0, n);
              const A sg = sigmoid_fast(pre);
              dp[W - 1].v[n] = widen(g.v[n]) * sg * (A(1) + pre * (A(1) - sg));
            } else {
              dp[W - 1].v[n] = widen(g.v[n]);
            }
          }
          if (j < own) {
#pragma unroll
            for (int n = 0; n < N; ++n) {
              const A gg = dp[W - 1].v[n];
              db[n] += gg;
#pragma unroll
              for (int k = 0; k < W; ++k) dw[k][n] += gg * widen(xw[k].v[n]);
            }
          }
          const int64_t s = tl.t0 + j - (W - 1);
          const bool mine = j >= W - 1;
          if (mine || (s < 0 && a.dinit)) {
            A sum[N];
#pragma unroll
            for (int n = 0; n < N; ++n) {
              A acc = A(0);
#pragma unroll
              for (int k = 0; k < W; ++k)  // output s + (W-1) - k, unless a document starts after s
                if ((cut & ((1u << (W - 1 - k)) - 1u)) == 0u) acc += w[k][n] * dp[W - 1 - k].v[n];
              sum[n] = acc;
            }
            if (a.dfinal && s >= fw_start && cut == 0u) {  // the final window keeps the last document
              const Pack<T, N> f = load_pack<T, N>(a.dfinal + (tl.b * (W - 1) + s - fw_start) * a.E + tl.e0);
#pragma unroll
              for (int n = 0; n < N; ++n) sum[n] += widen(f.v[n]);
            }
            Pack<T, N> out;
#pragma unroll
            for (int n = 0; n < N; ++n) out.v[n] = narrow<T>(sum[n]);
            if (mine)
              store_pack_streaming(a.dx + at(j - (W - 1)), out);
            else
              store_pack(a.dinit + (tl.b * (W - 1) + s + W - 1) * a.E + tl.e0, out);
          }
#pragma unroll
          for (int i = 0; i < W - 1; ++i) {
            xw[i] = xw[i + 1];
            dp[i] = dp[i + 1];
          }
        }
        copy_async_commit();
      }
    }
  }
  __shared__ A red[kChunksPerBlock][W + 1][kLanes * N];
#pragma unroll
  for (int n = 0; n < N; ++n) {
#pragma unroll
    for (int k = 0; k < W; ++k) red[threadIdx.y][k][threadIdx.x * N + n] = dw[k][n];
    red[threadIdx.y][W][threadIdx.x * N + n] = db[n];
  }
  __syncthreads();
  const int64_t e_first = tl.channel_block * kLanes * N;
  for (int i = threadIdx.y * kLanes + threadIdx.x; i < (W + 1) * kLanes * N; i += kBlockThreads) {
    const int k = i / (kLanes * N), c = i % (kLanes * N);
    const int64_t e = e_first + c;
    if (e >= a.E) continue;
    double acc = 0.0;
#pragma unroll
    for (int y = 0; y < kChunksPerBlock; ++y) acc += static_cast<double>(red[y][k][c]);
    a.partial[(tl.tile * (W + 1) + k) * a.E + e] = acc;
  }
}

// dweight[e, k] (k < W) and dbias[e] (k = W) = sum over tiles of partial[tile][k][e]: thread
// (e, slice) adds tiles slice, slice + 8, ... in double, then the 8 slices are added in order.
template <typename T>
__global__ void param_reduce_kernel(const double* __restrict__ partial, int64_t tiles, int64_t E, int W,
                                    T* __restrict__ dweight, T* __restrict__ dbias) {
  const int k = blockIdx.y;
  if (k == W && !dbias) return;  // the whole block
  const int64_t e = int64_t(blockIdx.x) * kLanes + threadIdx.x;
  double acc = 0.0;
  if (e < E)
    for (int64_t tile = threadIdx.y; tile < tiles; tile += kReduceSlices) acc += partial[(tile * (W + 1) + k) * E + e];
  __shared__ double red[kReduceSlices][kLanes];
  red[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y != 0 || e >= E) return;
  double sum = 0.0;
#pragma unroll
  for (int y = 0; y < kReduceSlices; ++y) sum += red[y][threadIdx.x];
  if (k < W)
    dweight[e * W + k] = static_cast<T>(sum);
  else
    dbias[e] = static_cast<T>(sum);
}

// Calls f(std::integral_constant<int, W>) for W in 2..8 (the public checks guarantee the range).
template <typename F> void dispatch_width(int64_t W, F&& f) {
  switch (W) {
    case 2: return f(std::integral_constant<int, 2>{});
    case 3: return f(std::integral_constant<int, 3>{});
    case 4: return f(std::integral_constant<int, 4>{});
    case 5: return f(std::integral_constant<int, 5>{});
    case 6: return f(std::integral_constant<int, 6>{});
    case 7: return f(std::integral_constant<int, 7>{});
    default: return f(std::integral_constant<int, 8>{});
  }
}

// True when E is a multiple of n and every (non-null) pointer is aligned to n * bytes.
bool packable(int64_t E, int n, size_t bytes, std::initializer_list<const void*> pointers) {
  if (E % n != 0) return false;
  for (const void* p : pointers)
    if (reinterpret_cast<uintptr_t>(p) % (n * bytes) != 0) return false;
  return true;
}

template <typename T> const T* data_or_null(const Tensor& t) { return t.defined() ? t.data<T>() : nullptr; }
template <typename T> T* mutable_data_or_null(const Tensor& t) { return t.defined() ? t.data<T>() : nullptr; }

// Fills the geometry of `a` for packs of n channels and chunks of `chunk` steps and returns the number
// of blocks.
template <typename T> unsigned geometry(ConvArgs<T>& a, int n, int64_t chunk) {
  a.packs = a.E / n;
  a.channel_blocks = (a.packs + kLanes - 1) / kLanes;
  const int64_t chunks = (a.L + chunk - 1) / chunk;
  a.time_blocks = (chunks + kChunksPerBlock - 1) / kChunksPerBlock;
  const int64_t blocks = a.B * a.time_blocks * a.channel_blocks;
  MOM_CHECK(blocks <= INT32_MAX, kOp, "x of shape (" << a.B << ", " << a.L << ", " << a.E
                                                     << ") needs more thread blocks than one launch allows");
  return static_cast<unsigned>(blocks);
}

// Calls f(silu, rows, docs) with the three flags as std::bool_constant values.
template <typename F> void dispatch_flags(bool silu, bool rows, bool docs, F&& f) {
  auto with_docs = [&](auto s, auto r) {
    if (docs) f(s, r, std::true_type{});
    else f(s, r, std::false_type{});
  };
  auto with_rows = [&](auto s) {
    if (rows) with_docs(s, std::true_type{});
    else with_docs(s, std::false_type{});
  };
  if (silu) with_rows(std::true_type{});
  else with_rows(std::false_type{});
}

template <typename T, int W, int N>
void launch_forward(const ConvArgs<T>& a, bool silu, unsigned blocks, cudaStream_t st) {
  dispatch_flags(silu, a.rows, a.docs, [&](auto s, auto r, auto d) {
    forward_kernel<T, W, N, decltype(s)::value, decltype(r)::value, decltype(d)::value>
        <<<blocks, dim3(kLanes, kChunksPerBlock), 0, st>>>(a);
  });
  MOM_CUDA_CHECK_LAUNCH();
}

template <typename T, int W, int N>
void launch_backward(const ConvArgs<T>& a, bool silu, unsigned blocks, cudaStream_t st) {
  dispatch_flags(silu, a.rows, a.docs, [&](auto s, auto r, auto d) {
    backward_kernel<T, W, N, decltype(s)::value, decltype(r)::value, decltype(d)::value>
        <<<blocks, dim3(kLanes, kChunksPerBlock), 0, st>>>(a);
  });
  MOM_CUDA_CHECK_LAUNCH();
}

// Calls f(TypeTag<T>{}) with T the stored type of x: float, double or bf16.
template <typename F> void dispatch_stored(DType dt, F&& f) {
  if (dt == DType::bf16)
    f(TypeTag<bf16>{});
  else
    dispatch_float(dt, kOp, f);
}

// A defined tensor `name` must have dtype dt (x's for the stored tensors, the acc type's for the
// parameters and their gradients). The public functions check this before calling here.
void check_dtype(const Tensor& t, DType dt, const char* name) {
  if (!t.defined()) return;
  MOM_CHECK(t.dtype() == dt, kOp, name << " must be " << dtype_name(dt) << ", got " << dtype_name(t.dtype()));
}

template <typename T> ConvArgs<T> inputs(const CausalConv1dParams& p) {
  const DType acc = dtype_of<acc_t<T>>();
  check_dtype(p.weight, acc, "weight");
  check_dtype(p.bias, acc, "bias");
  check_dtype(p.initial_window, dtype_of<T>(), "initial_window");
  ConvArgs<T> a{};
  a.x = p.x.data<T>();
  a.rows = p.order ? p.order->inverse.data<int64_t>() : nullptr;
  a.docs = data_or_null<bool>(p.doc_start);
  a.weight = p.weight.data<acc_t<T>>();
  a.bias = data_or_null<acc_t<T>>(p.bias);
  a.init = data_or_null<T>(p.initial_window);
  a.B = p.x.size(0);
  a.L = p.x.size(1);
  a.E = p.x.size(2);
  return a;
}

}  // namespace

CausalConv1dOutput causal_conv1d_forward(const CausalConv1dParams& p) {
  const Tensor& x = p.x;
  const int64_t B = x.size(0), E = x.size(2), W = p.weight.size(1);
  const bool silu = p.silu;
  CausalConv1dOutput out{empty_like(x), empty({B, W - 1, E}, x.dtype(), x.device())};
  if (B == 0 || E == 0) return out;
  const int device = x.device().index;
  ::mom::cuda::DeviceGuard guard(device);
  cudaStream_t st = ::mom::cuda::stream(device);
  dispatch_stored(x.dtype(), [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    ConvArgs<scalar_t> a = inputs<scalar_t>(p);
    a.y = out.y.data<scalar_t>();
    a.final_window = out.final_window.data<scalar_t>();
    // Channels per thread by the acc type (the weights and the sums take its registers): 16-byte
    // packs in f32 and f64, 8 in bf16.
    constexpr int kPack = 16 / sizeof(acc_t<scalar_t>);
    const bool packed = packable(E, kPack, sizeof(scalar_t), {a.x, a.init, a.y, a.final_window});
    const unsigned blocks = geometry(a, packed ? kPack : 1, kForwardChunk);
    dispatch_width(W, [&](auto w_tag) {
      constexpr int kW = decltype(w_tag)::value;
      if (packed)
        launch_forward<scalar_t, kW, kPack>(a, silu, blocks, st);
      else
        launch_forward<scalar_t, kW, 1>(a, silu, blocks, st);
    });
  });
  return out;
}

CausalConv1dGrads causal_conv1d_backward(const CausalConv1dParams& p, const Tensor& dy, const Tensor& dfinal_window) {
  const Tensor &x = p.x, &weight = p.weight, &bias = p.bias, &initial_window = p.initial_window;
  const bool silu = p.silu;
  const int64_t B = x.size(0), E = x.size(2), W = weight.size(1);
  CausalConv1dGrads grads;
  grads.dx = empty_like(x);
  if (initial_window.defined()) grads.dinitial_window = empty_like(initial_window);
  if (B == 0 || E == 0) {  // sums over nothing
    grads.dweight = zeros_like(weight);
    if (bias.defined()) grads.dbias = zeros_like(bias);
    return grads;
  }
  grads.dweight = empty_like(weight);
  if (bias.defined()) grads.dbias = empty_like(bias);
  const int device = x.device().index;
  ::mom::cuda::DeviceGuard guard(device);
  cudaStream_t st = ::mom::cuda::stream(device);
  dispatch_stored(x.dtype(), [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    using acc_type = acc_t<scalar_t>;
    ConvArgs<scalar_t> a = inputs<scalar_t>(p);
    check_dtype(dy, x.dtype(), "dy");
    check_dtype(dfinal_window, x.dtype(), "dfinal_window");
    a.dy = dy.data<scalar_t>();
    a.dfinal = data_or_null<scalar_t>(dfinal_window);
    a.dx = grads.dx.data<scalar_t>();
    a.dinit = mutable_data_or_null<scalar_t>(grads.dinitial_window);
    dispatch_width(W, [&](auto w_tag) {
      constexpr int kW = decltype(w_tag)::value;
      // Channels per thread by the acc type: 8-byte packs in f32 and f64 (the two windows need the
      // registers), 4-byte in bf16.
      constexpr int kPack = 8 / sizeof(acc_type);
      const bool packed =
          kPack > 1 && packable(E, kPack, sizeof(scalar_t), {a.x, a.init, a.dy, a.dfinal, a.dx, a.dinit});
      const unsigned blocks = geometry(a, packed ? kPack : 1, kChunk);
      Tensor partial = empty({B * a.time_blocks, kW + 1, E}, DType::f64, x.device());  // freed in stream order
      a.partial = partial.data<double>();
      if (packed)
        launch_backward<scalar_t, kW, kPack>(a, silu, blocks, st);
      else
        launch_backward<scalar_t, kW, 1>(a, silu, blocks, st);
      const dim3 reduce_grid(static_cast<unsigned>((E + kLanes - 1) / kLanes), kW + 1);
      param_reduce_kernel<acc_type><<<reduce_grid, dim3(kLanes, kReduceSlices), 0, st>>>(
          a.partial, B * a.time_blocks, E, kW, grads.dweight.data<acc_type>(),
          mutable_data_or_null<acc_type>(grads.dbias));
      MOM_CUDA_CHECK_LAUNCH();
    });
  });
  return grads;
}

}  // namespace mom::kernels::cuda
