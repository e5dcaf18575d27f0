// CUDA versions of kernels/decode.h, after the checks in kernels/cpu/decode.cpp.
//
// decode_linear: a warp per output o (a grid-stride loop over o), or kSplit warps per output, each a
// slice of In, when there are too few outputs to give the GPU 8 warps per multiprocessor. A block first
// stages its rows' inputs v (up to kRows rows of In values, in the sum type) in shared memory, every
// thread's loads issued before its stores; for Input::norm it stages x g and each row's sum of squares,
// and the row's 1 / rms scales the output (sum_i W (x g rstd) = rstd sum_i W (x g)). Before staging, each
// warp asks L2 for its first weight row, so that the weights' DRAM latency overlaps the staging. Each
// warp then streams W[e, o, :] in 16-byte vectors (4 float32, 8 bf16 widened, 2 float64), every lane 16
// bytes per row chunk, and multiplies every staged row that uses expert e, so a weight row is read once
// per pass however many of the pass's rows share its expert; the rows' sums close with warp shuffles.
// The lane that writes y[b, o] also runs the conv for (b, o) when o is one of its channels: u and the
// window's column move there, read and written by that thread alone. The weights are the bytes that
// matter (B <= kRows rows: one pass, each weight read once); more rows go through cuBLAS
// (launch_batched).
// decode_ssm_step: a group of lanes per (row, channel), the state's N values spread over the group; with
// N at most the group's size every load is issued before dt's sum.
// decode_embed: one thread per element.
#include <cstdint>
#include <limits>
#include <type_traits>

#include "core/bf16.h"
#include "core/cuda/stream.h"
#include "kernels/cuda/blas.cuh"
#include "kernels/decode.h"

namespace mom::kernels::cuda {

namespace {

constexpr int kWarps = 8;  // decode_linear: warps per block
constexpr int kRows = 8;   // decode_linear: rows per pass
constexpr int kSsmThreads = 128;

template <typename P> struct SumOf { using type = float; };
template <> struct SumOf<double> { using type = double; };

__device__ inline float widen(float v) { return v; }
__device__ inline double widen(double v) { return v; }
__device__ inline float widen(bf16 v) { return static_cast<float>(v); }

template <typename S> __device__ inline S silu(S v) { return v / (S(1) + exp(-v)); }
template <typename S> __device__ inline S softplus(S v) { return v > S(20) ? v : log1p(exp(v)); }
template <typename S> __device__ inline S quiet_nan() { return std::numeric_limits<S>::quiet_NaN(); }

template <typename S> __device__ inline S warp_sum(S v) {
#pragma unroll
  for (int d = 16; d > 0; d /= 2) v += __shfl_xor_sync(0xffffffffu, v, d);
  return v;
}

// decode_linear's conv over y's first E columns (decode.h): u for (b, e) from the window before the token
// and its new input x, then the window's column e moves one token. No window: no conv.
template <typename P> struct ConvOut {
  P *win, *u;
  const P *cw, *cb;
  const bool* start;
  int64_t E;
  int W;
  __device__ void operator()(int64_t b, int64_t e, P x) const {
    using S = typename SumOf<P>::type;
    const bool reset = start && start[b];
    P* col = win + b * (W - 1) * E + e;
    S pre = cb ? S(cb[e]) : S(0);
    if (!reset)
      for (int j = 0; j < W - 1; ++j) pre += S(col[j * E]) * S(cw[e * W + j]);
    pre += S(x) * S(cw[e * W + W - 1]);
    u[b * E + e] = P(silu(pre));
    for (int j = 0; j + 1 < W - 1; ++j) col[j * E] = reset ? P(0) : col[(j + 1) * E];
    if (W > 1) col[(W - 2) * E] = x;
  }
};

template <typename P> ConvOut<P> make_conv(const DecodeConv* c) {
  if (!c) return {};
  return {c->window.data<P>(),
          c->u.data<P>(),
          c->conv_weight.data<P>(),
          c->conv_bias.defined() ? c->conv_bias.data<P>() : nullptr,
          c->start.defined() ? c->start.data<bool>() : nullptr,
          c->window.size(2),
          static_cast<int>(c->window.size(1) + 1)};
}

template <typename P, typename Wt> struct LinearArgs {
  const P* x;
  const Wt* w;
  const P* bias;
  const int32_t* expert;
  const P* norm;  // Input::norm
  double eps;
  ConvOut<P> conv;
  P* y;
  int64_t B, M, Out, In;
  bool accumulate, vec;  // vec: every weight row starts 16-byte aligned and In is whole vectors
};

__device__ inline void prefetch_l2(const void* p) { asm volatile("prefetch.global.L2 [%0];" ::"l"(p)); }

// B <= kRows rows. kSplit warps share an output (each a slice of In, summed through shared memory) when
// there are too few outputs for a warp each to fill the GPU; a block computes kWarps / kSplit outputs
// at a time.
template <typename P, typename Wt, DecodeInput::Kind kKind, int kSplit>
__global__ void __launch_bounds__(kWarps * 32) linear_kernel(LinearArgs<P, Wt> a) {
  using S = typename SumOf<P>::type;
  constexpr int kVec = 16 / sizeof(Wt);
  constexpr int kOuts = kWarps / kSplit;
  constexpr int kBatch = 8;  // staging: loads a thread issues before its stores
  constexpr bool kNorm = kKind == DecodeInput::Kind::norm;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  S* v = reinterpret_cast<S*>(smem_raw);  // [rows][In]
  __shared__ int s_expert[kRows];
  __shared__ S s_ss[kNorm ? kWarps : 1][kRows];
  __shared__ S s_part[kSplit > 1 ? kWarps : 1][kRows];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, slot = warp / kSplit, part = warp % kSplit;
  const int64_t In = a.In;
  const int rows = static_cast<int>(a.B);

  {  // L2, fetch this warp's first weight row (row 0's expert): its latency overlaps the staging
    const int64_t o = int64_t(blockIdx.x) * kOuts + slot;
    const int m = a.expert ? a.expert[0] : 0;
    if (o < a.Out && m >= 0 && m < a.M) {
      const char* wrow = reinterpret_cast<const char*>(a.w + (int64_t(m) * a.Out + o) * In);
      const int64_t bytes = In * int64_t(sizeof(Wt));
      for (int64_t at = (int64_t(part) * 32 + lane) * 128; at < bytes; at += 32 * 128 * kSplit) prefetch_l2(wrow + at);
    }
  }
  if (threadIdx.x < rows) s_expert[threadIdx.x] = a.expert ? a.expert[threadIdx.x] : 0;
  for (int r = 0; r < rows; ++r) {
    const P* xr = a.x + r * In;
    S ss = 0;
    for (int64_t i0 = threadIdx.x; i0 < In; i0 += int64_t(kBatch) * blockDim.x) {
      S xv[kBatch], gv[kBatch];
#pragma unroll
      for (int k = 0; k < kBatch; ++k) {
        const int64_t i = i0 + int64_t(k) * blockDim.x;
        xv[k] = i < In ? S(__ldg(xr + i)) : S(0);
        if constexpr (kNorm) gv[k] = i < In ? S(__ldg(a.norm + i)) : S(0);
      }
#pragma unroll
      for (int k = 0; k < kBatch; ++k) {
        const int64_t i = i0 + int64_t(k) * blockDim.x;
        if (i < In) v[r * In + i] = kNorm ? xv[k] * gv[k] : xv[k];
        if constexpr (kNorm) ss += xv[k] * xv[k];
      }
    }
    if constexpr (kNorm) {
      ss = warp_sum(ss);
      if (lane == 0) s_ss[warp][r] = ss;
    }
  }
  __syncthreads();

  for (int64_t base = int64_t(blockIdx.x) * kOuts; base < a.Out; base += int64_t(gridDim.x) * kOuts) {
    const int64_t o = base + slot;
    S sum[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) sum[r] = 0;
    for (int first = 0; first < rows && o < a.Out; ++first) {  // each expert of the rows once
      const int m = s_expert[first];
      bool seen = m < 0 || m >= a.M;
      for (int r = 0; r < first; ++r) seen = seen || s_expert[r] == m;
      if (seen) continue;
      unsigned use = 0;  // the rows of expert m
      for (int r = first; r < rows; ++r) use |= (s_expert[r] == m ? 1u : 0u) << r;
      const Wt* wrow = a.w + (int64_t(m) * a.Out + o) * In;
      if (a.vec) {
#pragma unroll 4
        for (int64_t i = (int64_t(part) * 32 + lane) * kVec; i < In; i += 32 * kVec * kSplit) {
          alignas(16) Wt wv[kVec];
          *reinterpret_cast<uint4*>(wv) = __ldg(reinterpret_cast<const uint4*>(wrow + i));
#pragma unroll
          for (int r = 0; r < kRows; ++r) {
            if (!(use >> r & 1u)) continue;
            alignas(16) S vr[kVec];  // 16-byte loads: In is whole vectors, so every staged row is aligned
#pragma unroll
            for (int c = 0; c < kVec * int(sizeof(S)) / 16; ++c)
              reinterpret_cast<uint4*>(vr)[c] = reinterpret_cast<const uint4*>(v + r * In + i)[c];
#pragma unroll
            for (int k = 0; k < kVec; ++k) sum[r] += widen(wv[k]) * vr[k];
          }
        }
      } else {
        for (int64_t i = int64_t(part) * 32 + lane; i < In; i += 32 * kSplit) {
          const S wi = widen(wrow[i]);
#pragma unroll
          for (int r = 0; r < kRows; ++r)
            if (use >> r & 1u) sum[r] += wi * v[r * In + i];
        }
      }
    }
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      if (r >= rows) break;
      sum[r] = warp_sum(sum[r]);
      if constexpr (kSplit > 1)
        if (lane == 0) s_part[warp][r] = sum[r];
    }
    if constexpr (kSplit > 1) __syncthreads();
    if (lane == 0 && part == 0 && o < a.Out) {
#pragma unroll
      for (int r = 0; r < kRows; ++r) {  // unrolled: sum[] stays in registers
        if (r >= rows) break;
        S total = sum[r];
        if constexpr (kSplit > 1)
          for (int p = 1; p < kSplit; ++p) total += s_part[warp + p][r];
        if constexpr (kNorm) {
          S ss = 0;
          for (int w = 0; w < kWarps; ++w) ss += s_ss[w][r];
          total *= S(1) / sqrt(ss / S(In) + S(a.eps));
        }
        const int m = s_expert[r];
        const int64_t at = r * a.Out + o;
        P out;
        if (m < 0 || m >= a.M) {
          out = quiet_nan<P>();
        } else {
          const S add = total + (a.bias ? S(a.bias[m * a.Out + o]) : S(0));
          out = P(a.accumulate ? S(a.y[at]) + add : add);
        }
        a.y[at] = out;
        if (a.conv.win && o < a.conv.E) a.conv(r, o, out);
      }
    }
    if constexpr (kSplit > 1) __syncthreads();  // s_part is rewritten by the next outputs
  }
}

template <typename P> struct SsmArgs {
  const P *xz, *u, *dbc, *wdt, *bdt, *alog, *D;
  const int32_t* expert;
  const bool* start;
  P *state, *y;
  int64_t B, E, N, R, M;
};

// kLanes lanes per channel (the smallest power of two >= N, at most 32): lane l holds states l, l +
// kLanes, ...; dt_proj's dot is split over the lanes likewise; both sums close with shuffles in the group.
template <typename P, int kLanes> __global__ void __launch_bounds__(kSsmThreads) ssm_kernel(SsmArgs<P> a) {
  using S = typename SumOf<P>::type;
  constexpr int kPerBlock = kSsmThreads / kLanes;
  const int lane = threadIdx.x % kLanes;
  const int64_t channel = int64_t(blockIdx.x) * kPerBlock + threadIdx.x / kLanes, b = blockIdx.y;
  // Every lane stays to the shuffles; a group past the last channel computes channel 0 and writes nothing.
  const bool valid = channel < a.E;
  const int64_t e = valid ? channel : 0;
  const int64_t E = a.E, N = a.N, R = a.R;
  const bool reset = a.start && a.start[b];
  const int m = a.expert ? a.expert[b] : 0;
  const bool bad = m < 0 || m >= a.M;
  const P* row = a.dbc + b * (R + 2 * N);
  P* h = a.state + (b * E + e) * N;
  const S u = S(a.u[b * E + e]);
  // One state per lane (N <= kLanes): its loads go out with dt's.
  const bool one = N <= kLanes;
  S h0 = 0, a0 = 0, b0 = 0, c0 = 0;
  if (one && lane < N) {
    h0 = reset ? S(0) : S(h[lane]);
    a0 = S(a.alog[e * N + lane]);
    b0 = S(row[R + lane]);
    c0 = S(row[R + N + lane]);
  }
  auto group_sum = [](S v) {
#pragma unroll
    for (int d = kLanes / 2; d > 0; d /= 2) v += __shfl_xor_sync(0xffffffffu, v, d, kLanes);
    return v;
  };
  S pre = 0;
  if (!bad) {
    const P* w = a.wdt + (int64_t(m) * E + e) * R;
    for (int64_t r = lane; r < R; r += kLanes) pre += S(w[r]) * S(row[r]);
  }
  pre = group_sum(pre);
  const S dt = softplus(pre + (bad ? S(0) : S(a.bdt[m * E + e])));
  S y = 0;
  if (one) {
    if (lane < N) {
      const S next = exp(-dt * exp(a0)) * h0 + dt * b0 * u;
      if (valid && !bad) h[lane] = P(next);
      y = c0 * next;
    }
  } else {
    for (int64_t n = lane; n < N; n += kLanes) {
      const S prev = reset ? S(0) : S(h[n]);
      const S next = exp(-dt * exp(S(a.alog[e * N + n]))) * prev + dt * S(row[R + n]) * u;
      if (valid && !bad) h[n] = P(next);
      y += S(row[R + N + n]) * next;
    }
  }
  y = group_sum(y);
  if (lane != 0 || !valid) return;
  const S z = S(a.xz[b * 2 * E + E + e]);
  a.y[b * E + e] = bad ? quiet_nan<P>() : P((y + S(a.D[e]) * u) * silu(z));
}

template <typename P> __global__ void embed_kernel(const int32_t* ids, const P* table, P* out, int64_t B, int64_t V,
                                                    int64_t D) {
  for (int64_t q = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; q < B * D; q += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = q / D, d = q % D;
    const int32_t id = ids[b];
    out[q] = id >= 0 && id < V ? table[id * D + d] : quiet_nan<P>();
  }
}

template <typename P, typename Wt, DecodeInput::Kind kKind, int kSplit>
void launch_split(const LinearArgs<P, Wt>& a, int dev) {
  using S = typename SumOf<P>::type;
  const size_t smem = sizeof(S) * static_cast<size_t>(a.B) * static_cast<size_t>(a.In);
  auto kernel = linear_kernel<P, Wt, kKind, kSplit>;
  // Raised to the largest size asked so far (the first step runs outside any capture, so a graph's
  // launches never need a raise). The 48 KiB default also counts the kernel's static shared memory.
  static size_t allowed = 0;
  if (smem > allowed) {
    MOM_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
    allowed = smem;
  }
  constexpr int kOuts = kWarps / kSplit;
  const int64_t sms = ::mom::cuda::multiprocessor_count(dev);
  const int64_t want = (a.Out + kOuts - 1) / kOuts, cap = sms * 16;
  const unsigned grid = static_cast<unsigned>(want < cap ? want : cap);
  kernel<<<grid, kWarps * 32, smem, ::mom::cuda::stream(dev)>>>(a);
  MOM_CUDA_CHECK_LAUNCH();
}

// The fewest warps per output (1, 2, 4 or 8) that give every multiprocessor 8 warps.
template <typename P, typename Wt, DecodeInput::Kind kKind> void launch_linear(const LinearArgs<P, Wt>& a, int dev) {
  const int64_t want = 8 * int64_t(::mom::cuda::multiprocessor_count(dev));
  if (a.Out >= want) launch_split<P, Wt, kKind, 1>(a, dev);
  else if (2 * a.Out >= want) launch_split<P, Wt, kKind, 2>(a, dev);
  else if (4 * a.Out >= want) launch_split<P, Wt, kKind, 4>(a, dev);
  else launch_split<P, Wt, kKind, kWarps>(a, dev);
}

// More than kRows rows: the inputs staged once (in the weights' type), one GEMM per expert over all
// the rows (cuBLAS, one strided-batched call), then each row takes its expert's product.
template <typename P, typename Wt, DecodeInput::Kind kKind> __global__ void stage_kernel(LinearArgs<P, Wt> a, Wt* v) {
  using S = typename SumOf<P>::type;
  __shared__ S s_sum[kWarps];
  const int64_t b = blockIdx.x, In = a.In;
  S rstd = 1;
  if constexpr (kKind == DecodeInput::Kind::norm) {
    S ss = 0;
    for (int64_t i = threadIdx.x; i < In; i += blockDim.x) ss += S(a.x[b * In + i]) * S(a.x[b * In + i]);
    ss = warp_sum(ss);
    if (threadIdx.x % 32 == 0) s_sum[threadIdx.x / 32] = ss;
    __syncthreads();
    S total = 0;
    for (int w = 0; w < kWarps; ++w) total += s_sum[w];
    rstd = S(1) / sqrt(total / S(In) + S(a.eps));
  }
  for (int64_t i = threadIdx.x; i < In; i += blockDim.x) {
    S val;
    if constexpr (kKind == DecodeInput::Kind::plain) val = S(a.x[b * In + i]);
    else val = S(a.x[b * In + i]) * rstd * S(a.norm[i]);
    v[b * In + i] = Wt(val);
  }
}

template <typename P, typename S> __global__ void select_kernel(const S* prod, const int32_t* expert, const P* bias, P* y,
                                                                int64_t B, int64_t Out, int64_t M, bool accumulate,
                                                                ConvOut<P> conv) {
  for (int64_t q = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; q < B * Out; q += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = q / Out, o = q % Out;
    const int m = expert ? expert[b] : 0;
    P out;
    if (m < 0 || m >= M) {
      out = quiet_nan<P>();
    } else {
      const S add = prod[(m * B + b) * Out + o] + (bias ? S(bias[m * Out + o]) : S(0));
      out = P(accumulate ? S(y[q]) + add : add);
    }
    y[q] = out;
    if (conv.win && o < conv.E) conv(b, o, out);
  }
}

constexpr int64_t kAlign = 256;
int64_t round_up(int64_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

template <typename P, typename Wt, DecodeInput::Kind kKind>
void launch_batched(const LinearArgs<P, Wt>& a, int dev, Tensor* workspace) {
  using S = typename SumOf<P>::type;
  const int64_t staged = round_up(a.B * a.In * int64_t(sizeof(Wt)));
  const int64_t bytes = staged + a.M * a.B * a.Out * int64_t(sizeof(S));
  Tensor local;
  Tensor& ws = workspace ? *workspace : local;
  if (!ws.defined() || ws.numel() < bytes || ws.device() != Device::cuda(dev))
    ws = empty({bytes}, DType::u8, Device::cuda(dev));
  Wt* v = reinterpret_cast<Wt*>(ws.data<uint8_t>());
  S* prod = reinterpret_cast<S*>(ws.data<uint8_t>() + staged);
  cudaStream_t st = ::mom::cuda::stream(dev);
  stage_kernel<P, Wt, kKind><<<static_cast<unsigned>(a.B), kWarps * 32, 0, st>>>(a, v);
  MOM_CUDA_CHECK_LAUNCH();
  gemm_strided_batched<Wt, S>(dev, false, true, a.B, a.Out, a.In, v, a.In, 0, a.w, a.In, a.Out * a.In, prod, a.Out,
                              a.B * a.Out, a.M);
  const int64_t n = a.B * a.Out, blocks = (n + 255) / 256, cap = int64_t(::mom::cuda::multiprocessor_count(dev)) * 8;
  select_kernel<P, S><<<static_cast<unsigned>(blocks < cap ? blocks : cap), 256, 0, st>>>(
      prod, a.expert, a.bias, a.y, a.B, a.Out, a.M, a.accumulate, a.conv);
  MOM_CUDA_CHECK_LAUNCH();
}

template <typename P, typename Wt, DecodeInput::Kind kKind>
void dispatch_rows(const LinearArgs<P, Wt>& a, int dev, Tensor* workspace) {
  if (a.B <= kRows) launch_linear<P, Wt, kKind>(a, dev);
  else launch_batched<P, Wt, kKind>(a, dev, workspace);
}

template <typename P, typename Wt>
void run_linear(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& expert, const DecodeInput& in,
                Tensor& y, bool accumulate, Tensor* workspace, const DecodeConv* conv) {
  LinearArgs<P, Wt> a{};
  a.x = x.data<P>();
  a.w = weight.data<Wt>();
  a.bias = bias.defined() ? bias.data<P>() : nullptr;
  a.expert = expert.defined() ? expert.data<int32_t>() : nullptr;
  a.y = y.data<P>();
  a.B = x.size(0);
  a.M = weight.size(0);
  a.Out = weight.size(1);
  a.In = weight.size(2);
  a.accumulate = accumulate;
  a.conv = make_conv<P>(conv);
  a.vec = (a.In * static_cast<int64_t>(sizeof(Wt))) % 16 == 0 && reinterpret_cast<uintptr_t>(a.w) % 16 == 0;
  const int dev = x.device().index;
  if (a.B == 0 || a.Out == 0) return;
  switch (in.kind) {
    case DecodeInput::Kind::plain: return dispatch_rows<P, Wt, DecodeInput::Kind::plain>(a, dev, workspace);
    case DecodeInput::Kind::norm:
      a.norm = in.norm_weight.data<P>();
      a.eps = in.eps;
      return dispatch_rows<P, Wt, DecodeInput::Kind::norm>(a, dev, workspace);
  }
}

}  // namespace

void decode_linear(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& expert,
                   const DecodeInput& in, Tensor& y, bool accumulate, Tensor* workspace, const DecodeConv* conv) {
  ::mom::cuda::DeviceGuard guard(x.device().index);
  if (x.dtype() == DType::f64)
    return run_linear<double, double>(x, weight, bias, expert, in, y, accumulate, workspace, conv);
  if (weight.dtype() == DType::bf16)
    return run_linear<float, bf16>(x, weight, bias, expert, in, y, accumulate, workspace, conv);
  run_linear<float, float>(x, weight, bias, expert, in, y, accumulate, workspace, conv);
}

void decode_ssm_step(const DecodeSsm& s) {
  ::mom::cuda::DeviceGuard guard(s.xz.device().index);
  const int64_t B = s.xz.size(0), E = s.state.size(1);
  if (B == 0 || E == 0) return;
  auto run = [&](auto tag) {
    using P = MOM_TYPE(tag);
    SsmArgs<P> a{};
    a.xz = s.xz.data<P>();
    a.u = s.u.data<P>();
    a.dbc = s.dbc.data<P>();
    a.wdt = s.dt_weight.data<P>();
    a.bdt = s.dt_bias.data<P>();
    a.alog = s.A_log.data<P>();
    a.D = s.D.data<P>();
    a.expert = s.dt_expert.defined() ? s.dt_expert.data<int32_t>() : nullptr;
    a.start = s.start.defined() ? s.start.data<bool>() : nullptr;
    a.state = s.state.data<P>();
    a.y = s.y.data<P>();
    a.B = B;
    a.E = E;
    a.N = s.state.size(2);
    a.R = s.dt_weight.size(2);
    a.M = s.dt_weight.size(0);
    auto launch = [&](auto lanes) {
      constexpr int kLanes = decltype(lanes)::value;
      constexpr int kPerBlock = kSsmThreads / kLanes;
      const dim3 grid(static_cast<unsigned>((E + kPerBlock - 1) / kPerBlock), static_cast<unsigned>(B));
      ssm_kernel<P, kLanes><<<grid, kSsmThreads, 0, ::mom::cuda::stream(s.xz.device().index)>>>(a);
      MOM_CUDA_CHECK_LAUNCH();
    };
    if (a.N <= 4) launch(std::integral_constant<int, 4>{});
    else if (a.N <= 8) launch(std::integral_constant<int, 8>{});
    else if (a.N <= 16) launch(std::integral_constant<int, 16>{});
    else launch(std::integral_constant<int, 32>{});
  };
  if (s.xz.dtype() == DType::f64) run(TypeTag<double>{});
  else run(TypeTag<float>{});
}

void decode_embed(const Tensor& token, const Tensor& table, Tensor& out) {
  ::mom::cuda::DeviceGuard guard(table.device().index);
  const int64_t B = token.size(0), V = table.size(0), D = table.size(1);
  if (B * D == 0) return;
  const int dev = table.device().index;
  const int64_t blocks = (B * D + 255) / 256, cap = int64_t(::mom::cuda::multiprocessor_count(dev)) * 8;
  const unsigned grid = static_cast<unsigned>(blocks < cap ? blocks : cap);
  if (table.dtype() == DType::f64)
    embed_kernel<double><<<grid, 256, 0, ::mom::cuda::stream(dev)>>>(token.data<int32_t>(), table.data<double>(),
                                                                      out.data<double>(), B, V, D);
  else
    embed_kernel<float><<<grid, 256, 0, ::mom::cuda::stream(dev)>>>(token.data<int32_t>(), table.data<float>(),
                                                                     out.data<float>(), B, V, D);
  MOM_CUDA_CHECK_LAUNCH();
}

}  // namespace mom::kernels::cuda
