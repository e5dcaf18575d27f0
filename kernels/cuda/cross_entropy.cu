// CUDA versions of kernels/cross_entropy.h, called by the public functions (kernels/cpu/cross_entropy.cpp)
// after their argument checks. f32, f64 and bf16 logits, int32 and int64 targets.
//
// Forward, three kernels and one read-back:
//   1. rows: one warp (V <= 4096 f32, 2048 f64, 8192 bf16) or one 256-thread block per row streams the
//      logits once in 16-byte chunks (unaligned edges peeled) through the online softmax (running
//      maximum, sum rescaled when it grows), in the logits' acc type; lse_t = m + log(s) in double,
//      stored in the acc dtype; nll_t = lse_t - logits[t, target_t] (double) into a (T) scratch, 0 when the target
//      is ignored or out of range (never read out of bounds).
//   2. partials: a fixed number of 256-thread blocks (a function of T), block p over a fixed contiguous
//      range of tokens: sum w_t nll_t, W = sum w_t and the first invalid position (target out of
//      range, or weight not >= 0), each a fixed-order block reduction in double.
//   3. finish: one block sums the partials in order: loss = sum / W (0 when W = 0) in the acc dtype,
//      and the first invalid position.
//   The host then reads that one position (8 bytes): a synchronisation, the price of the CPU's exact
//   error message ("[cross_entropy] target 9 at position 3 is out of range for 8 classes").
// Backward, the same partials and finish (finish writes g = dloss / W, dloss read on the device), then
//   rows: one warp or block per row writes dlogits = g w_t (exp(x - lse_t) - [v == target_t]) in one
//   streaming pass (read logits once, write once), zeros for rows whose factor is 0; then the host
//   reads the first invalid position as in the forward (one synchronisation).
// Deterministic: per-row reductions in a fixed butterfly/warp order, token sums over a partition fixed
// by T and summed in order; no atomics.
//
// bf16 logits (mixed precision): the row kernels take the stored type T of logits and dlogits and
// compute in acc_t<T> (float for bf16; T itself for f32 and f64), the type of lse, loss, dloss and the
// per-token weight: the float32 kernels' arithmetic, and the float32 token sums themselves. A bf16
// chunk is W = 8 elements, one 16-byte load or store, widened exactly where it is used (the online pass
// rescales its running sum once per chunk and takes 8 exps); each dlogits value is rounded once, to
// nearest even, by core/bf16.h's conversion, the CPU reference's rounding. bf16 moves half the bytes
// of float32 through the same kernel shapes.
#include <cstdint>
#include <type_traits>

#include "core/cuda/memory.h"
#include "kernels/cross_entropy.h"
#include "kernels/cuda/rows.cuh"

namespace mom::kernels::cuda {

namespace {

using namespace rows;

constexpr const char* kOp = "cross_entropy";
constexpr int kUnroll = 4;              // chunks in flight per thread in the row kernels
constexpr int kRowBlockThreads = 256;   // threads per row when a warp is not enough
constexpr int64_t kWarpMaxChunks = 1024;  // 16-byte chunks per row up to which a warp owns a row
constexpr int kPartThreads = 256;
constexpr int64_t kPartMax = 1024;      // pass-1 blocks (pass 2 is one 1024-thread block)
constexpr int64_t kPartTokens = 1024;   // tokens per pass-1 block, until kPartMax blocks

// The acc type of a stored type: float for bf16, the type itself for f32 and f64.
template <typename T> struct AccOf {
  using type = T;
};
template <> struct AccOf<bf16> {
  using type = float;
};
template <typename T> using acc_t = typename AccOf<T>::type;

// A chunk of stored values in the acc type (exact); the chunk itself for f32 and f64.
template <typename T, int W> __device__ inline Chunk<acc_t<T>, W> widen(const Chunk<T, W>& c) {
  if constexpr (std::is_same<T, acc_t<T>>::value) {
    return c;
  } else {
    Chunk<acc_t<T>, W> a;
#pragma unroll
    for (int j = 0; j < W; ++j) a.v[j] = static_cast<acc_t<T>>(c.v[j]);
    return a;
  }
}

// ---- 1. per-row lse and nll ----

template <typename T, typename I, bool kWarp, int W>
__global__ void __launch_bounds__(256)
    forward_rows_kernel(const T* __restrict__ logits, const I* __restrict__ targets, int64_t ignore_index,
                        acc_t<T>* __restrict__ lse, double* __restrict__ nll, int64_t rows, int64_t V) {
  using A = acc_t<T>;
  using G = Group<kWarp>;
  const int lane = G::lane(), size = G::size();
  for (int64_t r = G::first(); r < rows; r += G::stride()) {
    const T* xr = logits + r * V;
    const RowSplit<T, W> row(xr, V);
    // The target's logit is fetched first, so that its latency hides behind the row's.
    int64_t target = 0;
    double picked = 0;
    if (lane == 0) {
      target = static_cast<int64_t>(targets[r]);
      if (target != ignore_index && target >= 0 && target < V) picked = static_cast<double>(xr[target]);
      else target = -1;
    }
    Online<A> o{neg_inf<A>(), A(0)};
    for (int64_t v0 = lane; v0 < row.nvec; v0 += int64_t(kUnroll) * size) {
      Chunk<T, W> c[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u)
        if (v0 + int64_t(u) * size < row.nvec) c[u] = load<T, W>(xr + row.at(v0 + int64_t(u) * size));
#pragma unroll
      for (int u = 0; u < kUnroll; ++u)
        if (v0 + int64_t(u) * size < row.nvec) absorb(o, widen(c[u]));
    }
    if (lane < row.edges()) absorb(o, Chunk<A, 1>{{static_cast<A>(xr[row.edge(lane)])}});
    o = G::reduce(o, OnlineOp{});
    if (lane == 0) {
      const double l = double(o.m) + log(double(o.s));
      lse[r] = static_cast<A>(l);
      nll[r] = target >= 0 ? l - picked : 0.0;
    }
  }
}

// ---- 2. and 3. token sums ----

// Block p sums tokens [p * chunk, min(T, (p + 1) * chunk)): sums[p] = sum w_t nll_t (when nll is
// given), sums[parts + p] = sum w_t, bad[p] = first invalid position (T when none).
template <typename T, typename I>
__global__ void __launch_bounds__(kPartThreads)
    partials_kernel(const I* __restrict__ targets, const T* __restrict__ weight, const double* __restrict__ nll,
                    int64_t ignore_index, int64_t rows, int64_t V, int64_t chunk, double* __restrict__ sums,
                    int64_t* __restrict__ bad) {
  const int64_t t0 = int64_t(blockIdx.x) * chunk, t1 = min(rows, t0 + chunk);
  double wn = 0, w = 0;
  int64_t first_bad = rows;
  for (int64_t t = t0 + threadIdx.x; t < t1; t += blockDim.x) {
    const int64_t c = static_cast<int64_t>(targets[t]);
    if (c == ignore_index) continue;
    const double wt = weight ? static_cast<double>(weight[t]) : 1.0;
    if (c < 0 || c >= V || !(wt >= 0)) {  // as the CPU: the range first, then the weight (NaN fails)
      first_bad = min(first_bad, t);
      continue;
    }
    w += wt;
    if (nll && wt != 0) wn += wt * nll[t];
  }
  wn = block_reduce(wn, SumOp{});
  w = block_reduce(w, SumOp{});
  first_bad = block_reduce(first_bad, MinOp{});
  if (threadIdx.x == 0) {
    sums[blockIdx.x] = wn;
    sums[gridDim.x + blockIdx.x] = w;
    bad[blockIdx.x] = first_bad;
  }
}

// One 1024-thread block over `parts` <= 1024 partials. Forward: loss = sum / W (0 when W = 0). Backward:
// *g = dloss / W (0 when W = 0). Both: *first_bad.
template <typename T, bool kForward>
__global__ void __launch_bounds__(1024)
    finish_kernel(const double* __restrict__ sums, const int64_t* __restrict__ bad, int parts, int64_t rows,
                  const T* __restrict__ dloss, T* __restrict__ loss, double* __restrict__ g,
                  int64_t* __restrict__ first_bad) {
  double wn = 0, w = 0;
  int64_t b = rows;
  for (int p = threadIdx.x; p < parts; p += blockDim.x) {
    wn += sums[p];
    w += sums[parts + p];
    b = min(b, bad[p]);
  }
  wn = block_reduce(wn, SumOp{});
  w = block_reduce(w, SumOp{});
  b = block_reduce(b, MinOp{});
  if (threadIdx.x == 0) {
    if constexpr (kForward) *loss = static_cast<T>(w > 0 ? wn / w : 0.0);
    else *g = w > 0 ? static_cast<double>(*dloss) / w : 0.0;
    *first_bad = b;
  }
}

// ---- backward rows ----

template <typename T, typename I, bool kWarp, int W>
__global__ void __launch_bounds__(256)
    backward_rows_kernel(const T* __restrict__ logits, const I* __restrict__ targets,
                         const acc_t<T>* __restrict__ weight, int64_t ignore_index, const acc_t<T>* __restrict__ lse,
                         const double* __restrict__ g, T* __restrict__ dlogits, int64_t rows, int64_t V) {
  using A = acc_t<T>;
  using G = Group<kWarp>;
  const int lane = G::lane(), size = G::size();
  const double scale = *g;
  for (int64_t r = G::first(); r < rows; r += G::stride()) {
    const T* xr = logits + r * V;
    T* dr = dlogits + r * V;
    const int64_t target = static_cast<int64_t>(targets[r]);
    // c = g w_t as the CPU (0 for ignored tokens); an out-of-range target matches no column here and
    // is reported by the host after this kernel.
    const double c = target == ignore_index ? 0.0 : scale * (weight ? static_cast<double>(weight[r]) : 1.0);
    const RowSplit<T, W> row(dr, V);
    const bool edge = lane < row.edges();
    const int64_t ei = edge ? row.edge(lane) : 0;
    if (c == 0) {
      Chunk<T, W> z;
#pragma unroll
      for (int j = 0; j < W; ++j) z.v[j] = static_cast<T>(A(0));
      for (int64_t v = lane; v < row.nvec; v += size) store<T, W>(dr + row.at(v), z);
      if (edge) dr[ei] = static_cast<T>(A(0));
      continue;
    }
    const A k = static_cast<A>(c), l = lse[r];
    for (int64_t v0 = lane; v0 < row.nvec; v0 += int64_t(kUnroll) * size) {
      Chunk<T, W> x[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u)
        if (v0 + int64_t(u) * size < row.nvec) x[u] = load<T, W>(xr + row.at(v0 + int64_t(u) * size));
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int64_t v = v0 + int64_t(u) * size;
        if (v < row.nvec) {
          const int64_t at = row.at(v);
#pragma unroll
          for (int j = 0; j < W; ++j) {
            const A p = exp_(static_cast<A>(x[u].v[j]) - l);
            x[u].v[j] = static_cast<T>(at + j == target ? k * (p - A(1)) : k * p);
          }
          store<T, W>(dr + at, x[u]);
        }
      }
    }
    if (edge) {
      const A p = exp_(static_cast<A>(xr[ei]) - l);
      dr[ei] = static_cast<T>(ei == target ? k * (p - A(1)) : k * p);
    }
  }
}

// ---- host side ----

struct Plan {
  bool warp;
  int threads;
  unsigned blocks;
};

Plan plan(int64_t rows, int64_t nvec, int device) {
  if (nvec <= kWarpMaxChunks) return {true, 256, row_blocks(ceil_div(rows, 256 / 32), device)};
  return {false, kRowBlockThreads, row_blocks(rows, device)};
}

// Pass-1 blocks and tokens per block: functions of T alone.
struct Parts {
  int count;
  int64_t chunk;
};

Parts parts_of(int64_t rows) {
  int64_t count = ceil_div(rows, kPartTokens);
  if (count > kPartMax) count = kPartMax;
  return {int(count), count > 0 ? ceil_div(rows, count) : 0};
}

// The scratch of one call, one allocation: nll (T, forward only), the pass-1 sums (2 P) and first
// invalid positions (P), the backward's g, and the final first invalid position. The int64 parts live
// in 8-byte slots of the same f64 tensor (each slot only ever accessed as int64).
struct Scratch {
  Tensor tensor;
  Parts parts;
  double *nll, *sums, *g;
  int64_t *bad, *first_bad;
};

Scratch make_scratch(int64_t rows, bool with_nll, Device device) {
  Scratch s;
  s.parts = parts_of(rows);
  const int64_t P = s.parts.count, nll = with_nll ? rows : 0;
  s.tensor = empty({nll + 3 * P + 2}, DType::f64, device);
  double* base = s.tensor.data<double>();
  s.nll = base;
  s.sums = base + nll;
  s.g = s.sums + 2 * P;
  s.bad = reinterpret_cast<int64_t*>(s.g + 1);
  s.first_bad = s.bad + P;
  return s;
}

// Runs the partials and finish kernels: the loss (forward) or g (backward) and the first invalid
// position land in the scratch / `loss` on the device. T: the acc type of the logits (that of weight,
// dloss and loss).
template <typename T, typename I, bool kForward>
void token_sums(const Tensor& targets, const Tensor& weight, const Scratch& s, int64_t ignore_index, int64_t V,
                const T* dloss, T* loss, cudaStream_t st) {
  const int64_t rows = targets.numel();
  const T* wp = weight.defined() ? weight.data<T>() : nullptr;
  if (s.parts.count > 0) {
    partials_kernel<T, I><<<s.parts.count, kPartThreads, 0, st>>>(targets.data<I>(), wp, kForward ? s.nll : nullptr,
                                                                    ignore_index, rows, V, s.parts.chunk, s.sums,
                                                                    s.bad);
    MOM_CUDA_CHECK_LAUNCH();
  }
  finish_kernel<T, kForward><<<1, 1024, 0, st>>>(s.sums, s.bad, s.parts.count, rows, dloss, loss, s.g, s.first_bad);
  MOM_CUDA_CHECK_LAUNCH();
}

// Reads the first invalid position back (a synchronisation) and throws the CPU's message for it.
void check_tokens(const int64_t* first_bad_device, const Tensor& targets, const Tensor& weight, int64_t ignore_index,
                  int64_t V, int device) {
  int64_t t = 0;
  ::mom::cuda::copy_device_to_host(&t, first_bad_device, sizeof(t), device);
  if (t >= targets.numel()) return;
  const int64_t c = targets.detach().narrow(0, t, 1).to_vector<int64_t>()[0];
  MOM_CHECK(c == ignore_index || (c >= 0 && c < V), kOp,
            "target " << c << " at position " << t << " is out of range for " << V << " classes");
  const double w = weight.detach().narrow(0, t, 1).to_vector<double>()[0];
  MOM_THROW(kOp, "weight " << w << " at position " << t << " must be >= 0");
}

// Calls f(TypeTag<T>{}, TypeTag<I>{}) with T the stored type of logits (float, double or bf16) and I
// that of targets.
template <typename F> void dispatch_rows(const Tensor& logits, const Tensor& targets, F&& f) {
  auto with_index = [&](auto tag) { dispatch_index(targets.dtype(), kOp, [&](auto itag) { f(tag, itag); }); };
  if (logits.dtype() == DType::bf16)
    with_index(TypeTag<bf16>{});
  else
    dispatch_float(logits.dtype(), kOp, with_index);
}

}  // namespace

CrossEntropyForward cross_entropy_forward(const Tensor& logits, const Tensor& targets, int64_t ignore_index,
                                          const Tensor& weight) {
  const int64_t T_ = logits.size(0), V = logits.size(1);
  const Device dev = logits.device();
  const int device = dev.index;
  const DType acc = acc_dtype(logits.dtype());
  CrossEntropyForward out{empty({}, acc, dev), empty({T_}, acc, dev)};
  const Scratch s = make_scratch(T_, true, dev);
  ::mom::cuda::DeviceGuard guard(device);
  cudaStream_t st = ::mom::cuda::stream(device);
  dispatch_rows(logits, targets, [&](auto tag, auto itag) {
    using scalar_t = MOM_TYPE(tag);
    using index_t = MOM_TYPE(itag);
    using acc_type = acc_t<scalar_t>;
    constexpr int W = Vec<scalar_t>::width;
    if (T_ > 0) {
      const Plan p = plan(T_, V / W, device);
      auto launch = [&](auto warp) {
        forward_rows_kernel<scalar_t, index_t, decltype(warp)::value, W><<<p.blocks, p.threads, 0, st>>>(
            logits.data<scalar_t>(), targets.data<index_t>(), ignore_index, out.lse.data<acc_type>(),
            s.nll, T_, V);
        MOM_CUDA_CHECK_LAUNCH();
      };
      if (p.warp) launch(std::true_type{});
      else launch(std::false_type{});
    }
    token_sums<acc_type, index_t, true>(targets, weight, s, ignore_index, V, nullptr, out.loss.data<acc_type>(), st);
  });
  check_tokens(s.first_bad, targets, weight, ignore_index, V, device);
  return out;
}

Tensor cross_entropy_backward(const Tensor& dloss, const Tensor& logits, const Tensor& targets, const Tensor& lse,
                              int64_t ignore_index, const Tensor& weight) {
  const int64_t T_ = logits.size(0), V = logits.size(1);
  const Device dev = logits.device();
  const int device = dev.index;
  Tensor dlogits = empty_like(logits);
  const Scratch s = make_scratch(T_, false, dev);
  ::mom::cuda::DeviceGuard guard(device);
  cudaStream_t st = ::mom::cuda::stream(device);
  dispatch_rows(logits, targets, [&](auto tag, auto itag) {
    using scalar_t = MOM_TYPE(tag);
    using index_t = MOM_TYPE(itag);
    using acc_type = acc_t<scalar_t>;
    token_sums<acc_type, index_t, false>(targets, weight, s, ignore_index, V, dloss.data<acc_type>(), nullptr, st);
    if (T_ == 0) return;
    const scalar_t* xp = logits.data<scalar_t>();
    scalar_t* dp = dlogits.data<scalar_t>();
    const acc_type* wp = weight.defined() ? weight.data<acc_type>() : nullptr;
    constexpr int W = Vec<scalar_t>::width;
    const Plan p = plan(T_, V / W, device);
    auto launch = [&](auto w, auto warp) {
      backward_rows_kernel<scalar_t, index_t, decltype(warp)::value, decltype(w)::value>
          <<<p.blocks, p.threads, 0, st>>>(xp, targets.data<index_t>(), wp, ignore_index, lse.data<acc_type>(),
                                           s.g, dp, T_, V);
      MOM_CUDA_CHECK_LAUNCH();
    };
    auto run = [&](auto w) {
      if (p.warp) launch(w, std::true_type{});
      else launch(w, std::false_type{});
    };
    if (same_mod16(xp, dp)) run(std::integral_constant<int, W>{});
    else run(std::integral_constant<int, 1>{});  // a logits view off 16-byte alignment: scalar loads
  });
  check_tokens(s.first_bad, targets, weight, ignore_index, V, device);
  return dlogits;
}

}  // namespace mom::kernels::cuda
