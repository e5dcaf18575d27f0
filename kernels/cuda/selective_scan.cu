// CUDA version of kernels/selective_scan.h, called by the public functions (kernels/cpu/selective_scan.cpp)
// after their argument checks. Same math and API as the CPU reference; f32 (state in float), f64, and
// bf16 (mixed precision: u, delta, B_ssm, C_ssm, z, out, dout and their gradients bf16; A, D,
// delta_bias, the states and their gradients float32; see the last paragraph).
//
// Layout is channel-last, (B, L, E): at one step t the channels of a row are adjacent in memory, so the
// scan runs one thread (group) per channel and walks t sequentially, and every load of u, delta, z, dout
// is coalesced across channels. With a row order (SelectiveScanParams::order) the row of (b, t) is
// read from the routing's inverse permutation one chunk ahead (RowPrefetch below; the same row for
// every thread of a step, so the loads stay coalesced); dB and dC are moved to their rows by the final
// sums.
//
// Decomposition. A block has 128 threads and owns one batch row b and kC = 128 / kLanes consecutive
// channels; each channel's N states are spread over kLanes adjacent lanes (kLanes = the smallest power
// of two >= N / 4, so N <= 64), 4 states per thread, padded states (n >= N) being inert (A = B = C = 0).
// Grid = (ceil(E / kC), B). Time is cut into chunks of kChunk steps. Per chunk the block stages the
// chunk's step sizes dt = softplus(delta + delta_bias), dt * u, u, B_t and C_t in shared memory (each
// (t, channel) computed once, by a cooperative mapping over consecutive channels), the next chunk's raw
// inputs are loaded into registers while the current chunk is scanned (software pipelining), and each
// thread then runs kChunk sequential steps on its 4 states:
//     h = exp2(dt * A * log2 e) * h + (dt * u) * B_t;   y += C_t . h   (summed over the kLanes lanes by
//     shuffles); the block then writes out = (y + D u) silu(z) for the chunk, coalesced.
// Document starts (doc_start): each warp holds the chunk's start flags as one bit mask (a ballot of
// one flag per lane, loaded one chunk ahead with the inputs); at a start the state is zeroed before the
// step, in the forward and in the backward's recomputation, and the backward's g = dL/dh stops there
// (g = 0 for h_{t-1}), so no gradient crosses a boundary and dinitial_state takes only the first
// document's. Without doc_start the kernels are built without the mask (kDocs false).
//
// Backward (recompute from checkpoints): the state at the start of every chunk, (B, ceil(L/kChunk), E, N)
// in the accumulation type, is a checkpoint. A forward asked for them (save_checkpoints: the autograd
// function asks when it records a node) writes them beside its outputs, and the backward takes them;
// without them, a first pass of the backward reruns the forward without outputs to make them. The
// backward kernel walks chunks from last to first: it recomputes the chunk's kChunk states from its
// checkpoint into registers (fully unrolled, compile-time indices), then walks the chunk backward with
// g = dL/dh:
//     g += dy_t C_t; dC_t += dy_t h_t; dB_t += g dt u; ddt = sum_n g (A dA h_{t-1} + B u);
//     du = dy D + dt sum_n g B; dA += g dt dA h_{t-1}; g *= dA.
// dB_t and dC_t sum over channels: each step's per-thread contributions go to shared memory and are
// summed over the block's channels in a fixed order after every kWalk steps (no shuffles or atomics per
// step: the known trap of one atomic per (b, e, n, t)), giving one partial per (channel block, b, t, n);
// a second kernel sums the partials over channel blocks in increasing order. dA, dD and ddelta_bias
// (sums over b and t) are summed per (b, e) in registers in t order, then over b in increasing order.
// Every result is therefore produced by a fixed sequence of float operations: identical from run to
// run (no floating-point atomics anywhere).
//
// Accumulation type: float for float and bf16 inputs (as the CPU's acc_type), double for double. The
// parameters (A, D, delta_bias), the states (initial_state, last_state, checkpoints, dlast_state) and
// their gradients are of the accumulation type, so for float and double every pointer is of the input
// type, and for bf16 only the sequence tensors are bf16: they widen exactly to float on load, everything
// after runs in float as for float inputs, and each bf16 output (out, du, ddelta, dz, and dB, dC after
// their float sums over the channel blocks) is rounded once from its float value, as core/bf16.h rounds,
// the same bits as the CPU's rounding of the same float. Indices into (B, L, E) arrays are 64-bit (the
// rows of a row order 32-bit, their offsets 64-bit).
#include <cstdint>
#include <type_traits>

#include "core/cuda/stream.h"
#include "kernels/selective_scan.h"

namespace mom::kernels::cuda {

namespace {

constexpr int kThreads = 128;  // per block

template <typename T> struct Acc { using type = float; };  // float and bf16
template <> struct Acc<double> { using type = double; };

// The zero of an element type, for the loads past the end: bf16's own bits (its conversion from an
// integer goes through double).
template <typename T> __device__ inline T zero() { return T(0); }
template <> __device__ inline bf16 zero<bf16>() { return bf16::from_bits(0); }

// Steps per chunk: the checkpoint interval and the length of the register-held state history.
template <typename acc> constexpr int chunk_steps() { return sizeof(acc) == 4 ? 16 : 8; }
// Steps between two flushes of the dB / dC contributions in the backward.
constexpr int kWalk = 8;

// exp(x * A) as decay(x * A * decay_scale): exp2 with A pre-multiplied by log2(e) for float, exp for double.
// The float one is the bare MUFU.EX2 (ex2.approx.ftz: 2 ulp; a result below 2^-126 flushes to 0, where
// a decayed state is negligible anyway); exp2f would add a denormal fix-up of three more instructions
// around every one of the B*L*E*N exponentials.
__device__ inline float decay_scale(float) { return 1.4426950408889634f; }
__device__ inline double decay_scale(double) { return 1.0; }
__device__ inline float decay(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
__device__ inline double decay(double x) { return exp(x); }
__device__ inline float d_exp(float x) { return expf(x); }
__device__ inline double d_exp(double x) { return exp(x); }
__device__ inline float d_log1p(float x) { return log1pf(x); }
__device__ inline double d_log1p(double x) { return log1p(x); }

template <typename A> __device__ inline A sigmoid(A x) { return A(1) / (A(1) + d_exp(-x)); }
template <typename A> __device__ inline A softplus(A x) { return x > A(20) ? x : d_log1p(d_exp(x)); }
template <typename A> __device__ inline A softplus_grad(A x) { return x > A(20) ? A(1) : sigmoid(x); }

template <typename A, int kStates> struct alignas(kStates * sizeof(A)) States {
  A v[kStates];
};

// Lane sum over the kLanes adjacent lanes that hold one channel's states.
template <int kLanes, typename A> __device__ inline A lane_sum(A x) {
#pragma unroll
  for (int off = kLanes / 2; off > 0; off /= 2) x += __shfl_xor_sync(0xffffffffu, x, off);
  return x;
}

template <typename T> struct ScanArgs {
  using acc = typename Acc<T>::type;
  const T* u;
  const T* delta;
  const acc* A;
  const T* Bm;
  const T* Cm;
  const acc* D;     // or null
  const T* z;       // or null
  const acc* bias;  // delta_bias or null
  const acc* init;  // initial_state or null
  const int64_t* rows;  // (B*L): the storage row of (b, t) in every (B, L, .) tensor, or null (b*L + t)
  const bool* docs;     // (B, L) doc_start in token order, or null (no document boundaries)
  bool softplus;
  int64_t B, L, E, N;
  int64_t nchunks;
};

template <typename T> struct ForwardOut {
  T* out;                       // (B, L, E) or null (checkpoint pass)
  typename Acc<T>::type* last;  // (B, E, N) or null
  typename Acc<T>::type* ckpt;  // (B, nchunks, E, N) states at chunk starts, or null
};

template <typename T> struct BackwardOut {
  const T* dout;                       // or null
  const typename Acc<T>::type* dlast;  // or null
  const typename Acc<T>::type* ckpt;
  T* du;
  T* ddelta;
  T* dz;                         // or null
  typename Acc<T>::type* dinit;  // or null
  typename Acc<T>::type* part_A;     // (B, E, N)
  typename Acc<T>::type* part_D;     // (B, E)
  typename Acc<T>::type* part_bias;  // (B, E)
  typename Acc<T>::type* part_Bm;    // (G, B, L, N), G = gridDim.x
  typename Acc<T>::type* part_Cm;    // (G, B, L, N)
};

// Shared memory carve-up: arrays of kChunk x kC per (t, channel) values, kChunk x kNp per (t, state).
template <typename acc, int kLanes, int kStates, int kChunk> struct Smem {
  static constexpr int kC = kThreads / kLanes;
  static constexpr int kNp = kLanes * kStates;
  static constexpr int per_channel = kChunk * kC;
  static constexpr int per_state = kChunk * kNp;
  // Per-lane partial sums of y, step by step, [kChunk][kLanes][kC + 1] (padded against bank conflicts).
  static constexpr int part_row = kLanes * (kC + 1);
  // forward: B, C; (dt, dt u) pairs; u; the partial sums of y
  static constexpr int forward_elems = 2 * per_state + 3 * per_channel + kChunk * part_row;
  // backward: dB, dC contributions of kWalk steps; B, C; (dt, dt u, u, dy) quads; y, ddt, du; reduction
  static constexpr int walk_elems = kWalk * kThreads * kStates;
  static constexpr int backward_elems = 2 * walk_elems + 2 * per_state + 7 * per_channel + 2 * kThreads;
};

// The (b, channel block) the calling thread belongs to, and its cooperative channel.
struct Place {
  int tid, lane, c, cc;
  int64_t b, e0, e, ce;
  bool active, c_active;
};

template <int kLanes> __device__ inline Place place(int64_t E) {
  constexpr int kC = kThreads / kLanes;
  Place p;
  p.tid = threadIdx.x;
  p.lane = p.tid % kLanes;
  p.c = p.tid / kLanes;
  p.cc = p.tid % kC;  // kC divides kThreads: a thread's cooperative items all share this channel
  p.b = blockIdx.y;
  p.e0 = int64_t(blockIdx.x) * kC;
  p.e = p.e0 + p.c;
  p.ce = p.e0 + p.cc;
  p.active = p.e < E;
  p.c_active = p.ce < E;
  return p;
}

// offset of `row` in a tensor of rows of `stride` values: one 32 x 32 -> 64-bit multiply (rows and
// strides of a scan with a row order are below 2^31, checked on the host).
__device__ inline int64_t row_offset(int row, int64_t stride) {
  return static_cast<int64_t>(row) * static_cast<int>(stride);
}

// With a row order, the storage rows of the chunk that load_chunk reads next, read one chunk ahead so
// that the data loads never wait on the index: lane l of every warp holds the row of step l % kChunk
// (kChunk <= 32), and a thread takes the row of its step from that lane (one 32-bit shuffle). Two
// registers, where holding each item's row would cost the backward a third of its occupancy.
// Without a row order: the plain row b*L + t, nothing held.
template <bool kRows> struct RowPrefetch {
  template <int kChunk, typename T> __device__ void load(const ScanArgs<T>&, const Place&, int64_t) {}
  template <int kChunk, typename T> __device__ void load_current(const ScanArgs<T>&, const Place&, int64_t) {}
  __device__ int64_t offset(int, int64_t plain, int64_t stride) const { return plain * stride; }
  __device__ int64_t current_offset(int, int64_t plain, int64_t stride) const { return plain * stride; }
};

template <> struct RowPrefetch<true> {
  int next = 0, current = 0;
  template <int kChunk, typename T> __device__ int lane_row(const ScanArgs<T>& a, const Place& p, int64_t k) {
    static_assert(kChunk <= 32, "one chunk's rows fit in a warp");
    const int64_t t = k * kChunk + (p.tid % 32) % kChunk;
    return t >= 0 && t < a.L ? static_cast<int>(a.rows[p.b * a.L + t]) : 0;  // outside [0, L): never used
  }
  template <int kChunk, typename T> __device__ void load(const ScanArgs<T>& a, const Place& p, int64_t k) {
    next = lane_row<kChunk>(a, p, k);
  }
  // The rows of the chunk being computed, for its writes: read when the chunk starts, used at its end.
  template <int kChunk, typename T> __device__ void load_current(const ScanArgs<T>& a, const Place& p, int64_t k) {
    current = lane_row<kChunk>(a, p, k);
  }
  // Every lane of the warp calls these (outside any divergent branch); step = the step within the chunk.
  __device__ int64_t offset(int step, int64_t, int64_t stride) const {
    return row_offset(__shfl_sync(0xffffffffu, next, step), stride);
  }
  __device__ int64_t current_offset(int step, int64_t, int64_t stride) const {
    return row_offset(__shfl_sync(0xffffffffu, current, step), stride);
  }
};

// The document starts among the steps of chunk k of row p.b, in two halves so that the flag's load is
// in flight with the chunk's other loads: chunk_flag (in load_chunk) loads one flag per lane, for step
// k*kChunk + lane; chunk_starts (when the chunk is staged) ballots them into a mask with bit tt set when
// step k*kChunk + tt starts a document after t = 0 (a flag at t = 0 cuts nothing). Every warp then holds
// the chunk's mask in one register; a block owns one batch row, so the mask is uniform over the block
// and the reset it drives is a branch no thread diverges on. Only the kernels built for documents
// (kDocs) call these: without them the mask is a compile-time 0 and the steps carry no test at all.
template <int kChunk, typename T> __device__ inline bool chunk_flag(const ScanArgs<T>& a, const Place& p, int64_t k) {
  static_assert(kChunk <= 32, "one chunk's flags fit in a warp");
  const int lane = p.tid % 32;
  const int64_t t = k * kChunk + lane;
  return lane < kChunk && t > 0 && t < a.L && a.docs[p.b * a.L + t];
}
__device__ inline uint32_t chunk_starts(bool flag) { return __ballot_sync(0xffffffffu, flag); }

template <typename T, int kLanes, int kStates, int kChunk, bool kRows, bool kDocs>
__global__ void __launch_bounds__(kThreads) scan_forward_kernel(ScanArgs<T> a, ForwardOut<T> o) {
  using acc = typename Acc<T>::type;
  using S = Smem<acc, kLanes, kStates, kChunk>;
  using SV = States<acc, kStates>;
  constexpr int kC = S::kC, kNp = S::kNp;
  constexpr int kPairs = (S::per_channel + kThreads - 1) / kThreads;
  constexpr int kBC = (S::per_state + kThreads - 1) / kThreads;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  using Step = States<acc, 2>;  // (dt, dt * u) of one (t, channel): one 8-byte load per step
  acc* s_B = reinterpret_cast<acc*>(smem_raw);
  acc* s_C = s_B + S::per_state;
  Step* s_step = reinterpret_cast<Step*>(s_C + S::per_state);
  acc* s_u = reinterpret_cast<acc*>(s_step + S::per_channel);
  acc* s_ypart = s_u + S::per_channel;

  const Place p = place<kLanes>(a.E);
  const int64_t L = a.L, E = a.E, N = a.N;

  acc A2[kStates], h[kStates];
#pragma unroll
  for (int s = 0; s < kStates; ++s) {
    const int64_t n = p.lane * kStates + s;
    const bool valid = p.active && n < N;
    A2[s] = valid ? acc(a.A[p.e * N + n]) * decay_scale(acc(0)) : acc(0);
    h[s] = valid && a.init ? acc(a.init[(p.b * E + p.e) * N + n]) : acc(0);
  }
  const acc bias = p.c_active && a.bias ? acc(a.bias[p.ce]) : acc(0);
  const acc Dv = p.c_active && a.D ? acc(a.D[p.ce]) : acc(0);

  T r_u[kPairs], r_delta[kPairs], r_z[kPairs], r_B[kBC], r_C[kBC];
  bool r_flag = false;      // this lane's flag of the loaded chunk (chunk_flag)
  int64_t r_at[kPairs];     // grouped rows: where the loaded items sit in u, also where their outputs go
  RowPrefetch<kRows> rows;  // the storage rows of the chunk load_chunk reads next
  auto load_rows = [&](int64_t k) { rows.template load<kChunk>(a, p, k); };
  auto load_chunk = [&](int64_t k) {
    if constexpr (kDocs) r_flag = chunk_flag<kChunk>(a, p, k);
#pragma unroll
    for (int j = 0; j < kPairs; ++j) {
      const int q = p.tid + j * kThreads;
      const int64_t t = k * kChunk + q / kC;
      const bool ok = q < S::per_channel && t < L && p.c_active;
      const int64_t idx = rows.offset(q / kC, p.b * L + t, E) + p.ce;
      if constexpr (kRows) r_at[j] = idx;
      r_u[j] = ok ? a.u[idx] : zero<T>();
      r_delta[j] = ok ? a.delta[idx] : zero<T>();
      r_z[j] = ok && a.z ? a.z[idx] : zero<T>();
    }
#pragma unroll
    for (int j = 0; j < kBC; ++j) {
      const int q = p.tid + j * kThreads;
      const int64_t t = k * kChunk + q / kNp, n = q % kNp;
      const bool ok = q < S::per_state && t < L && n < N;
      const int64_t at = rows.offset(q / kNp, p.b * L + t, N) + n;
      r_B[j] = ok ? a.Bm[at] : zero<T>();
      r_C[j] = ok ? a.Cm[at] : zero<T>();
    }
    load_rows(k + 1);  // in flight while this chunk is computed
  };

  load_rows(0);
  load_chunk(0);
  for (int64_t k = 0; k < a.nchunks; ++k) {
    // Where the chunk's outputs go. Grouped rows: the loaded items' places, kept for the writes (the
    // forward has registers to spare; a shuffle of one row per lane at write time, as the backward
    // does, cost it 10%).
    int64_t out_at[kPairs];
#pragma unroll
    for (int j = 0; j < kPairs; ++j)
      out_at[j] = kRows ? r_at[j] : (p.b * L + k * kChunk + (p.tid + j * kThreads) / kC) * E + p.ce;
    T cur_z[kPairs];
    uint32_t starts = 0;  // stays a compile-time 0 without documents
    if constexpr (kDocs) starts = chunk_starts(r_flag);
#pragma unroll
    for (int j = 0; j < kPairs; ++j) {
      const int q = p.tid + j * kThreads;
      if (q >= S::per_channel) continue;
      const int64_t t = k * kChunk + q / kC;
      const bool valid = t < L && p.c_active;
      const acc x = acc(r_delta[j]) + bias;
      const acc dt = valid ? (a.softplus ? softplus(x) : x) : acc(0);  // dt = 0: an inert step
      s_step[q] = Step{{dt, dt * acc(r_u[j])}};
      s_u[q] = acc(r_u[j]);
      cur_z[j] = r_z[j];
    }
#pragma unroll
    for (int j = 0; j < kBC; ++j) {
      const int q = p.tid + j * kThreads;
      if (q >= S::per_state) continue;
      s_B[q] = acc(r_B[j]);
      s_C[q] = acc(r_C[j]);
    }
    if (o.ckpt && p.active) {
#pragma unroll
      for (int s = 0; s < kStates; ++s) {
        const int64_t n = p.lane * kStates + s;
        if (n < N) o.ckpt[((p.b * a.nchunks + k) * E + p.e) * N + n] = h[s];
      }
    }
    __syncthreads();
    if (k + 1 < a.nchunks) load_chunk(k + 1);

    // The sequential part: no shuffle and no reduction on the path from one step to the next; each
    // lane leaves its partial C_t . h_t in shared memory. A document start begins from a zero state;
    // a chunk without one (starts is uniform over the block) runs the steps without the test.
    auto scan_steps = [&](auto cut) {
#pragma unroll
      for (int tt = 0; tt < kChunk; ++tt) {
        const Step st = s_step[tt * kC + p.c];
        const SV Bv = reinterpret_cast<const SV*>(s_B + tt * kNp)[p.lane];
        const SV Cv = reinterpret_cast<const SV*>(s_C + tt * kNp)[p.lane];
        if (decltype(cut)::value && (starts >> tt & 1u)) {
#pragma unroll
          for (int s = 0; s < kStates; ++s) h[s] = 0;
        }
        acc y = 0;
#pragma unroll
        for (int s = 0; s < kStates; ++s) {
          h[s] = decay(st.v[0] * A2[s]) * h[s] + st.v[1] * Bv.v[s];
          y += Cv.v[s] * h[s];
        }
        s_ypart[tt * S::part_row + p.lane * (kC + 1) + p.c] = y;
      }
    };
    if (starts != 0)
      scan_steps(std::true_type{});
    else
      scan_steps(std::false_type{});
    __syncthreads();
    if (o.out) {
#pragma unroll
      for (int j = 0; j < kPairs; ++j) {
        const int q = p.tid + j * kThreads;
        const int tt = q / kC;
        const int64_t t = k * kChunk + tt;
        if (q >= S::per_channel || t >= L || !p.c_active) continue;
        acc y = Dv * s_u[q];
#pragma unroll
        for (int l = 0; l < kLanes; ++l) y += s_ypart[tt * S::part_row + l * (kC + 1) + p.cc];
        if (a.z) y *= acc(cur_z[j]) * sigmoid(acc(cur_z[j]));
        o.out[out_at[j]] = T(y);
      }
    }
    __syncthreads();  // the next chunk overwrites the staged arrays
  }
  if (o.last && p.active) {
#pragma unroll
    for (int s = 0; s < kStates; ++s) {
      const int64_t n = p.lane * kStates + s;
      if (n < N) o.last[(p.b * E + p.e) * N + n] = h[s];
    }
  }
}

// Float with four states per thread fits three blocks per multiprocessor in 168 registers, as the
// compiler builds the kernels without documents; left alone, it gives the document kernels a few more
// and so two blocks (1.5x slower). Asked for three, it fits them without spilling. 0 leaves the others
// to the compiler's choice (an explicit 1 costs the plain kernel 190 registers, two blocks).
template <typename T, int kStates, bool kDocs> constexpr int backward_min_blocks() {
  return sizeof(typename Acc<T>::type) == 4 && kStates == 4 && kDocs ? 3 : 0;
}

template <typename T, int kLanes, int kStates, int kChunk, bool kRows, bool kDocs>
__global__ void __launch_bounds__(kThreads, backward_min_blocks<T, kStates, kDocs>()) scan_backward_kernel(ScanArgs<T> a, BackwardOut<T> o) {
  using acc = typename Acc<T>::type;
  using S = Smem<acc, kLanes, kStates, kChunk>;
  using SV = States<acc, kStates>;
  constexpr int kC = S::kC, kNp = S::kNp;
  constexpr int kPairs = (S::per_channel + kThreads - 1) / kThreads;
  constexpr int kBC = (S::per_state + kThreads - 1) / kThreads;
  constexpr int kRed = (kWalk * kNp + kThreads - 1) / kThreads;
  static_assert(kChunk % kWalk == 0, "a chunk is whole walks");
  extern __shared__ __align__(16) unsigned char smem_raw[];
  SV* s_dB = reinterpret_cast<SV*>(smem_raw);  // [kWalk][kThreads]
  SV* s_dC = s_dB + kWalk * kThreads;
  using Step = States<acc, 4>;  // (dt, dt * u, u, dy) of one (t, channel): one 16-byte load per step
  acc* s_B = reinterpret_cast<acc*>(s_dC + kWalk * kThreads);
  acc* s_C = s_B + S::per_state;
  Step* s_step = reinterpret_cast<Step*>(s_C + S::per_state);
  acc* s_y = reinterpret_cast<acc*>(s_step + S::per_channel);
  acc* s_ddt = s_y + S::per_channel;
  acc* s_du = s_ddt + S::per_channel;
  acc* s_red = s_du + S::per_channel;  // [2][kThreads]

  const Place p = place<kLanes>(a.E);
  const int64_t L = a.L, E = a.E, N = a.N;

  acc Av[kStates], A2[kStates], g[kStates], dA_acc[kStates];
#pragma unroll
  for (int s = 0; s < kStates; ++s) {
    const int64_t n = p.lane * kStates + s;
    const bool valid = p.active && n < N;
    Av[s] = valid ? acc(a.A[p.e * N + n]) : acc(0);
    A2[s] = Av[s] * decay_scale(acc(0));
    g[s] = valid && o.dlast ? acc(o.dlast[(p.b * E + p.e) * N + n]) : acc(0);
    dA_acc[s] = 0;
  }
  const acc bias = p.c_active && a.bias ? acc(a.bias[p.ce]) : acc(0);
  const acc Dv = p.c_active && a.D ? acc(a.D[p.ce]) : acc(0);
  acc dD_acc = 0, dbias_acc = 0;

  T r_u[kPairs], r_delta[kPairs], r_z[kPairs], r_dout[kPairs], r_B[kBC], r_C[kBC];
  bool r_flag = false;      // this lane's flag of the loaded chunk (chunk_flag)
  RowPrefetch<kRows> rows;  // the storage rows of the chunk load_chunk reads next
  auto load_rows = [&](int64_t k) { rows.template load<kChunk>(a, p, k); };
  auto load_chunk = [&](int64_t k) {
    if constexpr (kDocs) r_flag = chunk_flag<kChunk>(a, p, k);
#pragma unroll
    for (int j = 0; j < kPairs; ++j) {
      const int q = p.tid + j * kThreads;
      const int64_t t = k * kChunk + q / kC;
      const bool ok = q < S::per_channel && t < L && p.c_active;
      const int64_t idx = rows.offset(q / kC, p.b * L + t, E) + p.ce;
      r_u[j] = ok ? a.u[idx] : zero<T>();
      r_delta[j] = ok ? a.delta[idx] : zero<T>();
      r_z[j] = ok && a.z ? a.z[idx] : zero<T>();
      r_dout[j] = ok && o.dout ? o.dout[idx] : zero<T>();
    }
#pragma unroll
    for (int j = 0; j < kBC; ++j) {
      const int q = p.tid + j * kThreads;
      const int64_t t = k * kChunk + q / kNp, n = q % kNp;
      const bool ok = q < S::per_state && t < L && n < N;
      const int64_t at = rows.offset(q / kNp, p.b * L + t, N) + n;
      r_B[j] = ok ? a.Bm[at] : zero<T>();
      r_C[j] = ok ? a.Cm[at] : zero<T>();
    }
    load_rows(k - 1);  // in flight while this chunk is computed (time runs backwards here)
  };

  load_rows(a.nchunks - 1);
  load_chunk(a.nchunks - 1);
  for (int64_t k = a.nchunks - 1; k >= 0; --k) {
    rows.template load_current<kChunk>(a, p, k);
    // ---- stage the chunk ----
    acc cur_x[kPairs], cur_z[kPairs], cur_dout[kPairs];
    uint32_t starts = 0;  // stays a compile-time 0 without documents
    if constexpr (kDocs) starts = chunk_starts(r_flag);
#pragma unroll
    for (int j = 0; j < kPairs; ++j) {
      const int q = p.tid + j * kThreads;
      if (q >= S::per_channel) continue;
      const int64_t t = k * kChunk + q / kC;
      const bool valid = t < L && p.c_active;
      const acc x = acc(r_delta[j]) + bias;
      const acc dt = valid ? (a.softplus ? softplus(x) : x) : acc(0);
      const acc zz = acc(r_z[j]), dout = acc(r_dout[j]), u = acc(r_u[j]);
      const acc dy = a.z ? dout * zz * sigmoid(zz) : dout;  // 0 where invalid: dout was loaded as 0
      s_step[q] = Step{{dt, dt * u, u, dy}};
      cur_x[j] = x;
      cur_z[j] = zz;
      cur_dout[j] = dout;
    }
#pragma unroll
    for (int j = 0; j < kBC; ++j) {
      const int q = p.tid + j * kThreads;
      if (q >= S::per_state) continue;
      s_B[q] = acc(r_B[j]);
      s_C[q] = acc(r_C[j]);
    }
    __syncthreads();
    if (k > 0) load_chunk(k - 1);

    // ---- recompute the chunk's states h_{t-1} from its checkpoint, into registers ----
    acc hist[kChunk][kStates];  // hist[tt] = the state before step tt
    {
      acc h[kStates];
#pragma unroll
      for (int s = 0; s < kStates; ++s) {
        const int64_t n = p.lane * kStates + s;
        h[s] = p.active && n < N ? o.ckpt[((p.b * a.nchunks + k) * E + p.e) * N + n] : acc(0);
      }
      auto recompute = [&](auto cut) {
#pragma unroll
        for (int tt = 0; tt < kChunk; ++tt) {
          const Step st = s_step[tt * kC + p.c];
          const SV Bv = reinterpret_cast<const SV*>(s_B + tt * kNp)[p.lane];
          const SV Cv = reinterpret_cast<const SV*>(s_C + tt * kNp)[p.lane];
          if (decltype(cut)::value && (starts >> tt & 1u)) {  // a start: h_{t-1} reads as 0, as in the forward
#pragma unroll
            for (int s = 0; s < kStates; ++s) h[s] = 0;
          }
          acc y = 0;
#pragma unroll
          for (int s = 0; s < kStates; ++s) {
            hist[tt][s] = h[s];
            h[s] = decay(st.v[0] * A2[s]) * h[s] + st.v[1] * Bv.v[s];
            y += Cv.v[s] * h[s];
          }
          y = lane_sum<kLanes>(y);
          if (p.lane == 0) s_y[tt * kC + p.c] = y;
        }
      };
      if (starts != 0)  // uniform over the block: a chunk without a start runs the steps without the test
        recompute(std::true_type{});
      else
        recompute(std::false_type{});
    }

    // ---- walk the chunk backward, kWalk steps per flush of the dB / dC contributions ----
    auto walk = [&](auto cut) {
#pragma unroll
      for (int w = kChunk / kWalk - 1; w >= 0; --w) {
#pragma unroll
        for (int i = kWalk - 1; i >= 0; --i) {
          const int tt = w * kWalk + i;
          const Step st = s_step[tt * kC + p.c];
          const acc dt = st.v[0], dtu = st.v[1], u = st.v[2], dy = st.v[3];
          const SV Bv = reinterpret_cast<const SV*>(s_B + tt * kNp)[p.lane];
          const SV Cv = reinterpret_cast<const SV*>(s_C + tt * kNp)[p.lane];
          SV dBv, dCv;
          acc gdhA = 0, gB = 0;  // sum_n g dA h_{t-1} A and sum_n g B
#pragma unroll
          for (int s = 0; s < kStates; ++s) {
            const acc dA = decay(dt * A2[s]);
            const acc hp = hist[tt][s];
            const acc gs = g[s] + dy * Cv.v[s];  // dL/dh_t
            dCv.v[s] = dy * (dA * hp + dtu * Bv.v[s]);
            dBv.v[s] = gs * dtu;
            g[s] = decltype(cut)::value && (starts >> tt & 1u) ? acc(0) : gs * dA;  // none across a start
            const acc gdh = g[s] * hp;
            gdhA += gdh * Av[s];
            gB += gs * Bv.v[s];
            dA_acc[s] += gdh * dt;
          }
          s_dB[i * kThreads + p.tid] = dBv;
          s_dC[i * kThreads + p.tid] = dCv;
          gdhA = lane_sum<kLanes>(gdhA);
          gB = lane_sum<kLanes>(gB);
          if (p.lane == 0) {
            s_ddt[tt * kC + p.c] = gdhA + gB * u;  // ddt = sum_n g (A dA h_{t-1} + B u)
            s_du[tt * kC + p.c] = gB * dt;         // du, before its D dy term
          }
        }
        __syncthreads();
        // Sum the walk's dB_t, dC_t contributions over the block's channels, in channel order.
#pragma unroll
        for (int j = 0; j < kRed; ++j) {
          const int q = p.tid + j * kThreads;
          if (q >= kWalk * kNp) continue;
          const int i = q / kNp, n = q % kNp;
          const int64_t t = k * kChunk + w * kWalk + i;
          if (n >= N || t >= L) continue;
          const acc* dBrow = reinterpret_cast<const acc*>(s_dB + i * kThreads) + n;
          const acc* dCrow = reinterpret_cast<const acc*>(s_dC + i * kThreads) + n;
          acc sB = 0, sC = 0;
#pragma unroll 8
          for (int c = 0; c < kC; ++c) {
            sB += dBrow[c * kNp];
            sC += dCrow[c * kNp];
          }
          const int64_t at = ((int64_t(blockIdx.x) * a.B + p.b) * L + t) * N + n;
          o.part_Bm[at] = sB;
          o.part_Cm[at] = sC;
        }
        __syncthreads();  // the next walk overwrites s_dB / s_dC
      }
    };
    if (starts != 0)  // uniform over the block, as in the recomputation
      walk(std::true_type{});
    else
      walk(std::false_type{});

    // ---- the chunk's per-(t, channel) gradients, coalesced ----
#pragma unroll
    for (int j = 0; j < kPairs; ++j) {
      const int q = p.tid + j * kThreads;
      const int64_t t = k * kChunk + q / kC;
      const int64_t idx = rows.current_offset(q / kC, p.b * L + t, E) + p.ce;
      if (q >= S::per_channel || t >= L || !p.c_active) continue;
      const acc u = s_step[q].v[2], dy = s_step[q].v[3];
      o.du[idx] = T(s_du[q] + dy * Dv);
      const acc ddelta = a.softplus ? s_ddt[q] * softplus_grad(cur_x[j]) : s_ddt[q];
      o.ddelta[idx] = T(ddelta);
      dbias_acc += ddelta;
      dD_acc += dy * u;
      if (a.z) {
        const acc y = s_y[q] + Dv * u, zz = cur_z[j], sg = sigmoid(zz);
        o.dz[idx] = T(cur_dout[j] * y * sg * (acc(1) + zz * (acc(1) - sg)));
      }
    }
    __syncthreads();  // the next chunk overwrites the staged arrays
  }

#pragma unroll
  for (int s = 0; s < kStates; ++s) {
    const int64_t n = p.lane * kStates + s;
    if (!p.active || n >= N) continue;
    if (o.dinit) o.dinit[(p.b * E + p.e) * N + n] = g[s];
    o.part_A[(p.b * E + p.e) * N + n] = dA_acc[s];
  }
  // dD and ddelta_bias of each channel: the kLanes cooperative threads of the channel, in thread order.
  s_red[p.tid] = dD_acc;
  s_red[kThreads + p.tid] = dbias_acc;
  __syncthreads();
  if (p.tid < kC && p.c_active) {
    acc sD = 0, sb = 0;
    for (int j = 0; j < kThreads / kC; ++j) {
      sD += s_red[p.tid + j * kC];
      sb += s_red[kThreads + p.tid + j * kC];
    }
    o.part_D[p.b * E + p.ce] = sD;
    o.part_bias[p.b * E + p.ce] = sb;
  }
}

// out[i] = sum_{j < count} part[j * stride + i], in increasing j; with rows, i = r * width + n goes to
// out[rows[r] * width + n] (dB and dC of a scan with a row order).
template <typename acc, typename T>
__global__ void sum_leading_kernel(const acc* part, int64_t count, int64_t stride, const int64_t* rows,
                                   int64_t width, T* out) {
  const int64_t step = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < stride; i += step) {
    acc s = 0;
    for (int64_t j = 0; j < count; ++j) s += part[j * stride + i];
    out[rows ? rows[i / width] * width + i % width : i] = T(s);
  }
}

template <typename acc, typename T>
void sum_leading(const acc* part, int64_t count, int64_t stride, T* out, int dev, const int64_t* rows = nullptr,
                 int64_t width = 1) {
  if (stride == 0) return;
  const int64_t blocks64 = (stride + 255) / 256;
  const int64_t cap = int64_t(::mom::cuda::multiprocessor_count(dev)) * 16;
  const unsigned blocks = static_cast<unsigned>(blocks64 < cap ? blocks64 : cap);
  sum_leading_kernel<acc, T><<<blocks, 256, 0, ::mom::cuda::stream(dev)>>>(part, count, stride, rows, width, out);
  MOM_CUDA_CHECK_LAUNCH();
}

template <typename T> const T* ptr(const Tensor& t) { return t.defined() ? t.data<T>() : nullptr; }
template <typename T> T* mut_ptr(const Tensor& t) { return t.defined() ? t.data<T>() : nullptr; }

// A tensor the kernels read or write as `want` (undefined: absent, nothing to check).
void check_dtype(const Tensor& t, DType want, const char* name, DType u) {
  MOM_CHECK(!t.defined() || t.dtype() == want, "selective_scan",
            name << " is " << dtype_name(t.dtype()) << ", a " << dtype_name(u) << " scan on CUDA takes it as "
                 << dtype_name(want));
}

template <typename T> ScanArgs<T> scan_args(const SelectiveScanParams& p, const SelectiveScanDims& d, int chunk) {
  using acc = typename Acc<T>::type;
  const DType t = dtype_of<T>(), at = dtype_of<acc>();
  check_dtype(p.delta, t, "delta", t);
  check_dtype(p.B_ssm, t, "B_ssm", t);
  check_dtype(p.C_ssm, t, "C_ssm", t);
  check_dtype(p.z, t, "z", t);
  check_dtype(p.A, at, "A", t);
  check_dtype(p.D, at, "D", t);
  check_dtype(p.delta_bias, at, "delta_bias", t);
  check_dtype(p.initial_state, at, "initial_state", t);
  ScanArgs<T> a;
  a.u = p.u.data<T>();
  a.delta = p.delta.data<T>();
  a.A = p.A.data<acc>();
  a.Bm = p.B_ssm.data<T>();
  a.Cm = p.C_ssm.data<T>();
  a.D = ptr<acc>(p.D);
  a.z = ptr<T>(p.z);
  a.bias = ptr<acc>(p.delta_bias);
  a.init = ptr<acc>(p.initial_state);
  a.rows = p.order ? p.order->inverse.data<int64_t>() : nullptr;
  a.docs = ptr<bool>(p.doc_start);
  // Rows and strides of a row order are 32-bit in the kernels (row_offset).
  MOM_CHECK(!p.order || (d.B * d.L <= INT32_MAX && d.E <= INT32_MAX && d.N <= INT32_MAX), "selective_scan",
            "a row order needs B*L, E and N below 2^31 on CUDA, got B*L = " << d.B * d.L);
  a.softplus = p.delta_softplus;
  a.B = d.B;
  a.L = d.L;
  a.E = d.E;
  a.N = d.N;
  a.nchunks = (d.L + chunk - 1) / chunk;
  return a;
}

template <typename Kernel> void allow_smem(Kernel kernel, size_t bytes) {
  if (bytes > 48 * 1024)
    MOM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
}

// Calls f(std::integral_constant<int, kLanes>{}, std::integral_constant<int, kStates>{}): kStates states
// per thread and kLanes = the smallest power of two with kLanes * kStates >= N. Four states per thread
// (more independent work per step, fewer instructions per state) unless that leaves fewer than two
// blocks per multiprocessor; then two (twice the threads). Measured on the H200 at B=8, L=2048, E=1536,
// N=16: four states 1.79 ms forward+backward, two 2.08 ms. bf16 runs the float arithmetic and follows
// float; doubles always take four (tests only).
template <typename T, typename F> void dispatch_layout(const SelectiveScanDims& d, int dev, F&& f) {
  using I1 = std::integral_constant<int, 1>;
  using I2 = std::integral_constant<int, 2>;
  using I4 = std::integral_constant<int, 4>;
  using I8 = std::integral_constant<int, 8>;
  using I16 = std::integral_constant<int, 16>;
  const int64_t lanes4 = d.N <= 4 ? 1 : d.N <= 8 ? 2 : d.N <= 16 ? 4 : d.N <= 32 ? 8 : 16;
  const int64_t blocks4 = d.B * ((d.E + kThreads / lanes4 - 1) / (kThreads / lanes4));
  const bool two = blocks4 < 2 * int64_t(::mom::cuda::multiprocessor_count(dev));
  if (std::is_same<typename Acc<T>::type, float>::value && d.N <= 32 && two) {
    if (d.N <= 2) f(I1{}, I2{});
    else if (d.N <= 4) f(I2{}, I2{});
    else if (d.N <= 8) f(I4{}, I2{});
    else if (d.N <= 16) f(I8{}, I2{});
    else f(I16{}, I2{});
    return;
  }
  if (d.N <= 4) f(I1{}, I4{});
  else if (d.N <= 8) f(I2{}, I4{});
  else if (d.N <= 16) f(I4{}, I4{});
  else if (d.N <= 32) f(I8{}, I4{});
  else f(I16{}, I4{});
}

template <typename T>
void launch_forward(const ScanArgs<T>& a, const ForwardOut<T>& o, const SelectiveScanDims& d, int dev) {
  using acc = typename Acc<T>::type;
  constexpr int kChunk = chunk_steps<acc>();
  dispatch_layout<T>(d, dev, [&](auto lanes, auto states) {
    constexpr int kLanes = decltype(lanes)::value, kStates = decltype(states)::value;
    using S = Smem<acc, kLanes, kStates, kChunk>;
    const size_t smem = sizeof(acc) * S::forward_elems;
    auto kernel = a.rows ? (a.docs ? scan_forward_kernel<T, kLanes, kStates, kChunk, true, true>
                                   : scan_forward_kernel<T, kLanes, kStates, kChunk, true, false>)
                         : (a.docs ? scan_forward_kernel<T, kLanes, kStates, kChunk, false, true>
                                   : scan_forward_kernel<T, kLanes, kStates, kChunk, false, false>);
    allow_smem(kernel, smem);
    const dim3 grid(static_cast<unsigned>((a.E + S::kC - 1) / S::kC), static_cast<unsigned>(a.B));
    kernel<<<grid, kThreads, smem, ::mom::cuda::stream(dev)>>>(a, o);
    MOM_CUDA_CHECK_LAUNCH();
  });
}

// The scan's element types: those of dispatch_float, and bf16 (float arithmetic, Acc<bf16>).
template <typename F> void dispatch_scan(DType dt, F&& f) {
  switch (dt) {
    case DType::f32: f(TypeTag<float>{}); return;
    case DType::f64: f(TypeTag<double>{}); return;
    case DType::bf16: f(TypeTag<bf16>{}); return;
    default: MOM_THROW("selective_scan", "expects float32, float64 or bfloat16, got " << dtype_name(dt));
  }
}

int64_t num_chunks(DType dt, int64_t L) {
  const int64_t chunk = dt == DType::f64 ? chunk_steps<double>() : chunk_steps<float>();
  return (L + chunk - 1) / chunk;
}

}  // namespace

SelectiveScanOutput selective_scan_forward(const SelectiveScanParams& p, const SelectiveScanDims& d,
                                           bool save_checkpoints) {
  const Device dev = p.u.device();
  ::mom::cuda::DeviceGuard guard(dev.index);
  MOM_CHECK(d.B <= 65535, "selective_scan", "the CUDA scan supports B up to 65535, got " << d.B);
  MOM_CHECK(d.N >= 1 && d.N <= 64, "selective_scan", "the CUDA scan supports N from 1 to 64, got N = " << d.N);
  const DType adt = acc_dtype(p.u.dtype());
  SelectiveScanOutput r{empty({d.B, d.L, d.E}, p.u.dtype(), dev), empty({d.B, d.E, d.N}, adt, dev), Tensor()};
  if (d.B == 0 || d.E == 0 || d.L == 0) {  // nothing to scan
    if (r.last_state.numel()) {
      if (p.initial_state.defined()) r.last_state.copy_(p.initial_state);
      else r.last_state.fill_(0.0);
    }
    return r;
  }
  if (save_checkpoints) r.checkpoints = empty({d.B, num_chunks(p.u.dtype(), d.L), d.E, d.N}, adt, dev);
  dispatch_scan(p.u.dtype(), [&](auto tag) {
    using T = MOM_TYPE(tag);
    using acc = typename Acc<T>::type;
    ScanArgs<T> a = scan_args<T>(p, d, chunk_steps<acc>());
    acc* ckpt = save_checkpoints ? r.checkpoints.data<acc>() : nullptr;
    launch_forward(a, ForwardOut<T>{r.out.data<T>(), r.last_state.data<acc>(), ckpt}, d, dev.index);
  });
  return r;
}

SelectiveScanGrads selective_scan_backward(const SelectiveScanParams& p, const SelectiveScanDims& d,
                                           const Tensor& dout, const Tensor& dlast_state, const Tensor& checkpoints,
                                           bool dz_over_dout) {
  const Device dev = p.u.device();
  ::mom::cuda::DeviceGuard guard(dev.index);
  MOM_CHECK(d.B <= 65535, "selective_scan", "the CUDA scan supports B up to 65535, got " << d.B);
  MOM_CHECK(d.N >= 1 && d.N <= 64, "selective_scan", "the CUDA scan supports N from 1 to 64, got N = " << d.N);
  auto grad_like = [&](const Tensor& t) { return t.defined() ? empty(t.shape(), t.dtype(), dev) : Tensor(); };
  SelectiveScanGrads r;
  r.du = grad_like(p.u);
  r.ddelta = grad_like(p.delta);
  r.dA = grad_like(p.A);
  r.dB_ssm = grad_like(p.B_ssm);
  r.dC_ssm = grad_like(p.C_ssm);
  r.dD = grad_like(p.D);
  // dz over dout: dout is read in the chunk loads, one chunk ahead of the writes of the same elements.
  r.dz = dz_over_dout && p.z.defined() && dout.defined() ? dout : grad_like(p.z);
  r.ddelta_bias = grad_like(p.delta_bias);
  r.dinitial_state = grad_like(p.initial_state);
  if (d.B == 0 || d.E == 0 || d.L == 0) {  // nothing was scanned: only the state passes through
    for (Tensor* t : {&r.du, &r.ddelta, &r.dA, &r.dB_ssm, &r.dC_ssm, &r.dD, &r.dz, &r.ddelta_bias})
      if (t->defined() && t->numel()) t->fill_(0.0);
    if (r.dinitial_state.defined() && r.dinitial_state.numel()) {
      if (dlast_state.defined()) r.dinitial_state.copy_(dlast_state);
      else r.dinitial_state.fill_(0.0);
    }
    return r;
  }
  const Shape ckpt_shape{d.B, num_chunks(p.u.dtype(), d.L), d.E, d.N};
  if (checkpoints.defined()) {
    MOM_CHECK(checkpoints.shape() == ckpt_shape && checkpoints.dtype() == acc_dtype(p.u.dtype()) &&
                  checkpoints.device() == dev && checkpoints.is_contiguous(),
              "selective_scan", "checkpoints do not come from a forward of these inputs");
  }
  dispatch_scan(p.u.dtype(), [&](auto tag) {
    using T = MOM_TYPE(tag);
    using acc = typename Acc<T>::type;
    constexpr int kChunk = chunk_steps<acc>();
    ScanArgs<T> a = scan_args<T>(p, d, kChunk);
    check_dtype(dout, dtype_of<T>(), "dout", dtype_of<T>());
    check_dtype(dlast_state, dtype_of<acc>(), "dlast_state", dtype_of<T>());
    Tensor ckpt = checkpoints;
    if (!ckpt.defined()) {  // recompute the chunk-start states: the forward without its outputs
      ckpt = empty(ckpt_shape, acc_dtype(p.u.dtype()), dev);
      launch_forward(a, ForwardOut<T>{nullptr, nullptr, ckpt.data<acc>()}, d, dev.index);
    }

    dispatch_layout<T>(d, dev.index, [&](auto lanes, auto states) {
      constexpr int kLanes = decltype(lanes)::value, kStates = decltype(states)::value;
      using S = Smem<acc, kLanes, kStates, kChunk>;
      const DType adt = acc_dtype(p.u.dtype());
      const int64_t G = (d.E + S::kC - 1) / S::kC;
      Tensor part_A = empty({d.B, d.E, d.N}, adt, dev);
      Tensor part_D = empty({d.B, d.E}, adt, dev);
      Tensor part_bias = empty({d.B, d.E}, adt, dev);
      Tensor part_Bm = empty({G, d.B, d.L, d.N}, adt, dev);
      Tensor part_Cm = empty({G, d.B, d.L, d.N}, adt, dev);
      BackwardOut<T> o;
      o.dout = ptr<T>(dout);
      o.dlast = ptr<acc>(dlast_state);
      o.ckpt = ckpt.data<acc>();
      o.du = r.du.data<T>();
      o.ddelta = r.ddelta.data<T>();
      o.dz = mut_ptr<T>(r.dz);
      o.dinit = mut_ptr<acc>(r.dinitial_state);
      o.part_A = part_A.data<acc>();
      o.part_D = part_D.data<acc>();
      o.part_bias = part_bias.data<acc>();
      o.part_Bm = part_Bm.data<acc>();
      o.part_Cm = part_Cm.data<acc>();
      const size_t smem = sizeof(acc) * S::backward_elems;
      auto kernel = a.rows ? (a.docs ? scan_backward_kernel<T, kLanes, kStates, kChunk, true, true>
                                     : scan_backward_kernel<T, kLanes, kStates, kChunk, true, false>)
                           : (a.docs ? scan_backward_kernel<T, kLanes, kStates, kChunk, false, true>
                                     : scan_backward_kernel<T, kLanes, kStates, kChunk, false, false>);
      allow_smem(kernel, smem);
      const dim3 grid(static_cast<unsigned>(G), static_cast<unsigned>(d.B));
      kernel<<<grid, kThreads, smem, ::mom::cuda::stream(dev.index)>>>(a, o);
      MOM_CUDA_CHECK_LAUNCH();

      sum_leading(o.part_A, d.B, d.E * d.N, r.dA.data<acc>(), dev.index);
      if (r.dD.defined()) sum_leading(o.part_D, d.B, d.E, r.dD.data<acc>(), dev.index);
      if (r.ddelta_bias.defined()) sum_leading(o.part_bias, d.B, d.E, r.ddelta_bias.data<acc>(), dev.index);
      sum_leading(o.part_Bm, G, d.B * d.L * d.N, r.dB_ssm.data<T>(), dev.index, a.rows, d.N);
      sum_leading(o.part_Cm, G, d.B * d.L * d.N, r.dC_ssm.data<T>(), dev.index, a.rows, d.N);
    });
  });
  return r;
}

}  // namespace mom::kernels::cuda
