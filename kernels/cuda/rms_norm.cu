// CUDA versions of kernels/rms_norm.h, called by the public functions (kernels/cpu/rms_norm.cpp) after
// their argument checks. x float32 or float64 with y and dy of x's dtype, and mixed precision: y bf16
// beside a float32 x (the pre-norm of the residual stream), or x, y and dy all bf16. Row sums in x's
// acc type (float32 beside bf16, x's own type otherwise); rstd and the backward's per-row factor in
// double; dweight summed in double.
//
// Forward: a warp per row (D <= 256 chunks of 16 bytes: 1024 f32, 512 f64, 2048 bf16) or a block per
// row (up to 1024 threads x 8 chunks) holds the row in registers: x read once, y written once, rstd one
// value per row. Longer rows stream x twice.
// Backward, two kernels:
//   1. rows: block b owns a fixed tile of rows [b R, (b + 1) R) (R from the row count and D alone) and
//      <= 256 threads spanning the columns, each thread owning the same 1..8 chunks of columns (1..4 of
//      a bf16 x: 32 elements at most either way) for the whole tile (weight cached for the tile). Per
//      row: x, dy read once (registers), s = sum dy w x by a block reduction, dx written once, and
//      dy x rstd added to the thread's own dweight columns in double registers; at the end the tile's
//      partial dweight row goes to a (tiles, D) f64 scratch. Longer rows stream x and dy twice and keep
//      the partial sums in the scratch (each column read-modified-written by the one thread that owns
//      it).
//   2. dweight: 32 columns x 32 slices per block; slice s sums tiles s, s + 32, ... in order, then the
//      32 slices of a column are summed in order.
// Vector loads when D is a multiple of the vector width and every tensor is 16-byte aligned; otherwise
// scalar streaming kernels.
// Deterministic: per-row sums in a fixed butterfly/warp order, dweight in a fixed tile partition summed
// in fixed order; no atomics.
//
// bf16: the kernels take x's stored type X (dx's too) and the stored type of y or dy, and compute every
// value in acc_t<X> (float for bf16), the type of weight, rstd and dweight: the float32 kernels'
// arithmetic. A bf16 value widens exactly where it is used (the caching kernels hold the loaded bf16
// chunks, half the registers of float32 ones) and each bf16 output (y, the dx of a bf16 x) is rounded
// once, to nearest even, by core/bf16.h's conversion, the CPU reference's rounding. A chunk is
// W = 16 / sizeof(X) elements, so x always moves in 16-byte vectors: beside a float32 x (W = 4) a bf16
// y or dy moves 8 bytes a chunk; beside a bf16 x (W = 8) y, dy and dx move 16 bytes and weight two
// 16-byte loads, and the streaming backward keeps 2 chunks in flight (16 elements, as float32's 4).
// For float32 and float64 every type is x's, and the kernels compile to the same code (the same PTX) as
// without bf16.
#include <cstdint>
#include <type_traits>

#include "kernels/cuda/rows.cuh"
#include "kernels/rms_norm.h"

namespace mom::kernels::cuda {

namespace {

using namespace rows;

constexpr const char* kOp = "rms_norm";
constexpr int kUnroll = 4;               // chunks in flight per thread when streaming
constexpr int kBackwardThreads = 256;     // at most, for the caching backward
constexpr int kBackwardStreamThreads = 512;  // three unrolled tensors need up to 128 registers a thread
constexpr int64_t kMinTiles = 512;        // backward row tiles: at least this many (rows permitting) ...
constexpr int64_t kPartialDoubles = int64_t(1) << 20;  // ... and more while the scratch stays <= 8 MB
constexpr int64_t kMaxTiles = 16384;

// The acc type of a stored type: float for bf16, the type itself for f32 and f64.
template <typename T> struct AccOf {
  using type = T;
};
template <> struct AccOf<bf16> {
  using type = float;
};
template <typename T> using acc_t = typename AccOf<T>::type;

// The caching backward's chunks per thread at most: 8 in f32 and f64; beside a bf16 x (W = 8) the
// elements of 8 float32 chunks, 4, so that the double dweight sums take the registers they take in f32.
template <typename X> constexpr int backward_max_chunks() {
  return 8 * Vec<acc_t<X>>::width / Vec<X>::width;
}

// W elements of T at p, aligned to the smaller of 16 bytes and the chunk: one load, or 16-byte pieces
// for a chunk wider than 16 bytes (8 float32 beside 8 bf16).
template <typename T, int W> __device__ inline Chunk<T, W> load_n(const T* p) {
  constexpr int P = 16 / int(sizeof(T));
  if constexpr (W <= P) {
    return load<T, W>(p);
  } else {
    Chunk<T, W> c;
#pragma unroll
    for (int k = 0; k < W / P; ++k) {
      const Chunk<T, P> piece = load<T, P>(p + k * P);
#pragma unroll
      for (int j = 0; j < P; ++j) c.v[k * P + j] = piece.v[j];
    }
    return c;
  }
}

// The chunk a row's result is formed in: for float32 and float64 the input chunk itself (in place,
// which keeps their code the same as without bf16), else `other` (a bf16 chunk written in place stays
// in local memory: 264 bytes of spills in the caching block forward).
template <typename O, typename I, int W> __device__ inline Chunk<O, W>& out_chunk(Chunk<I, W>& in, Chunk<O, W>& other) {
  if constexpr (std::is_same<O, I>::value && !std::is_same<O, bf16>::value)
    return in;
  else
    return other;
}

__device__ inline double rstd_of(double ss, int64_t D, double eps) {
  return 1.0 / sqrt(ss / static_cast<double>(D) + eps);
}

// x (X) -> y (Y): Y is X, or bf16 beside a float32 X. weight and rstd are acc_t<X>.
template <typename X, typename Y, bool kWarp, int kChunks, int W>
__global__ void __launch_bounds__(row_threads_bound(kWarp, kChunks))
    forward_kernel(const X* __restrict__ x, const acc_t<X>* __restrict__ weight, Y* __restrict__ y,
                   acc_t<X>* __restrict__ rstd, int64_t rows, int64_t D, double eps) {
  using A = acc_t<X>;
  using G = Group<kWarp>;
  const int lane = G::lane(), size = G::size();
  const int64_t nvec = D / W;  // exact: W > 1 only when W divides D
  for (int64_t r = G::first(); r < rows; r += G::stride()) {
    const X* xr = x + r * D;
    Y* yr = y + r * D;
    if constexpr (kChunks > 0) {
      Chunk<X, W> c[kChunks];
      A ss = 0;
#pragma unroll
      for (int k = 0; k < kChunks; ++k) {
        const int64_t v = lane + int64_t(k) * size;
        if (v < nvec) {
          c[k] = load<X, W>(xr + v * W);
#pragma unroll
          for (int j = 0; j < W; ++j) {
            const A a = static_cast<A>(c[k].v[j]);
            ss += a * a;
          }
        }
      }
      ss = G::reduce(ss, SumOp{});
      const double rs = rstd_of(static_cast<double>(ss), D, eps);
      if (lane == 0) rstd[r] = static_cast<A>(rs);
      const A rst = static_cast<A>(rs);
#pragma unroll
      for (int k = 0; k < kChunks; ++k) {
        const int64_t v = lane + int64_t(k) * size;
        if (v < nvec) {
          const Chunk<A, W> w = load_n<A, W>(weight + v * W);
          Chunk<Y, W> spare;
          Chunk<Y, W>& o = out_chunk<Y>(c[k], spare);
#pragma unroll
          for (int j = 0; j < W; ++j) o.v[j] = static_cast<Y>(static_cast<A>(c[k].v[j]) * rst * w.v[j]);
          store<Y, W>(yr + v * W, o);
        }
      }
    } else {
      A ss = 0;
      for (int64_t v0 = lane; v0 < nvec; v0 += int64_t(kUnroll) * size) {
        Chunk<X, W> c[kUnroll];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u)
          if (v0 + int64_t(u) * size < nvec) c[u] = load<X, W>(xr + (v0 + int64_t(u) * size) * W);
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          if (v0 + int64_t(u) * size < nvec) {
#pragma unroll
            for (int j = 0; j < W; ++j) {
              const A a = static_cast<A>(c[u].v[j]);
              ss += a * a;
            }
          }
        }
      }
      ss = G::reduce(ss, SumOp{});
      const double rs = rstd_of(static_cast<double>(ss), D, eps);
      if (lane == 0) rstd[r] = static_cast<A>(rs);
      const A rst = static_cast<A>(rs);
      for (int64_t v0 = lane; v0 < nvec; v0 += int64_t(kUnroll) * size) {
        Chunk<X, W> c[kUnroll];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u)
          if (v0 + int64_t(u) * size < nvec) c[u] = load<X, W>(xr + (v0 + int64_t(u) * size) * W);
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          const int64_t v = v0 + int64_t(u) * size;
          if (v < nvec) {
            const Chunk<A, W> w = load_n<A, W>(weight + v * W);
            Chunk<Y, W> spare;
            Chunk<Y, W>& o = out_chunk<Y>(c[u], spare);
#pragma unroll
            for (int j = 0; j < W; ++j) o.v[j] = static_cast<Y>(static_cast<A>(c[u].v[j]) * rst * w.v[j]);
            store<Y, W>(yr + v * W, o);
          }
        }
      }
    }
  }
}

// The per-row backward factor c = rstd^3 s / D, in double as the CPU (times 1/D: a division would
// call a slow-path subroutine whose calling convention makes the hot loop spill).
__device__ inline double row_factor(double rs, double s, double inv_d) { return rs * rs * rs * s * inv_d; }

// dy (DY), x (X) -> dx (X): DY is X, or bf16 beside a float32 X. weight, rstd and dweight are acc_t<X>.
template <typename X, typename DY, int kChunks, int W>
__global__ void __launch_bounds__(kChunks > 0 ? kBackwardThreads : kBackwardStreamThreads)
    backward_kernel(const DY* __restrict__ dy, const X* __restrict__ x, const acc_t<X>* __restrict__ weight,
                    const acc_t<X>* __restrict__ rstd, X* __restrict__ dx, double* __restrict__ partial,
                    int64_t rows, int64_t D, int64_t tile_rows) {
  using A = acc_t<X>;
  const int lane = threadIdx.x, size = blockDim.x;
  const double inv_d = 1.0 / static_cast<double>(D);
  const int64_t nvec = D / W;
  const int64_t r0 = int64_t(blockIdx.x) * tile_rows, r1 = min(rows, r0 + tile_rows);
  double* part = partial + int64_t(blockIdx.x) * D;  // this tile's row of the (tiles, D) scratch
  if constexpr (kChunks > 0) {
    Chunk<A, W> w[kChunks];
    double acc[kChunks][W];
#pragma unroll
    for (int k = 0; k < kChunks; ++k) {
      const int64_t v = lane + int64_t(k) * size;
      if (v < nvec) w[k] = load_n<A, W>(weight + v * W);
#pragma unroll
      for (int j = 0; j < W; ++j) acc[k][j] = 0;
    }
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t base = r * D;
      Chunk<DY, W> g[kChunks];
      Chunk<X, W> xv[kChunks];
#pragma unroll
      for (int k = 0; k < kChunks; ++k) {
        const int64_t v = lane + int64_t(k) * size;
        if (v < nvec) {
          g[k] = load<DY, W>(dy + base + v * W);
          xv[k] = load<X, W>(x + base + v * W);
        }
      }
      const A rst = rstd[r];
      A s = 0;
#pragma unroll
      for (int k = 0; k < kChunks; ++k) {
        if (lane + int64_t(k) * size < nvec) {
#pragma unroll
          for (int j = 0; j < W; ++j) s += static_cast<A>(g[k].v[j]) * w[k].v[j] * static_cast<A>(xv[k].v[j]);
        }
      }
      s = block_reduce(s, SumOp{});
      const double rs = static_cast<double>(rst);
      const A c = static_cast<A>(row_factor(rs, static_cast<double>(s), inv_d));
#pragma unroll
      for (int k = 0; k < kChunks; ++k) {
        const int64_t v = lane + int64_t(k) * size;
        if (v < nvec) {
          Chunk<X, W> spare;
          Chunk<X, W>& o = out_chunk<X>(g[k], spare);
#pragma unroll
          for (int j = 0; j < W; ++j) {
            const A gj = static_cast<A>(g[k].v[j]), xj = static_cast<A>(xv[k].v[j]);
            acc[k][j] += static_cast<double>(gj) * static_cast<double>(xj) * rs;
            o.v[j] = static_cast<X>(rst * gj * w[k].v[j] - c * xj);
          }
          store<X, W>(dx + base + v * W, o);
        }
      }
    }
#pragma unroll
    for (int k = 0; k < kChunks; ++k) {
      const int64_t v = lane + int64_t(k) * size;
      if (v < nvec) {
#pragma unroll
        for (int j = 0; j < W; ++j) part[v * W + j] = acc[k][j];
      }
    }
  } else {
    // Chunks in flight per thread: kUnroll, or as many elements beside a bf16 x (W = 8), whose float32
    // weight chunks would otherwise spill.
    constexpr int kU = W > Vec<A>::width ? kUnroll * Vec<A>::width / W : kUnroll;
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t base = r * D;
      const A rst = rstd[r];
      A s = 0;
      for (int64_t v0 = lane; v0 < nvec; v0 += int64_t(kU) * size) {
        Chunk<DY, W> g[kU];
        Chunk<X, W> xv[kU];
        Chunk<A, W> w[kU];
#pragma unroll
        for (int u = 0; u < kU; ++u) {
          const int64_t v = v0 + int64_t(u) * size;
          if (v < nvec) {
            g[u] = load<DY, W>(dy + base + v * W);
            xv[u] = load<X, W>(x + base + v * W);
            w[u] = load_n<A, W>(weight + v * W);
          }
        }
#pragma unroll
        for (int u = 0; u < kU; ++u) {
          if (v0 + int64_t(u) * size < nvec) {
#pragma unroll
            for (int j = 0; j < W; ++j) s += static_cast<A>(g[u].v[j]) * w[u].v[j] * static_cast<A>(xv[u].v[j]);
          }
        }
      }
      s = block_reduce(s, SumOp{});
      const double rs = static_cast<double>(rst);
      const A c = static_cast<A>(row_factor(rs, static_cast<double>(s), inv_d));
      for (int64_t v0 = lane; v0 < nvec; v0 += int64_t(kU) * size) {
        Chunk<DY, W> g[kU];
        Chunk<X, W> xv[kU];
        Chunk<A, W> w[kU];
#pragma unroll
        for (int u = 0; u < kU; ++u) {
          const int64_t v = v0 + int64_t(u) * size;
          if (v < nvec) {
            g[u] = load<DY, W>(dy + base + v * W);
            xv[u] = load<X, W>(x + base + v * W);
            w[u] = load_n<A, W>(weight + v * W);
          }
        }
#pragma unroll
        for (int u = 0; u < kU; ++u) {
          const int64_t v = v0 + int64_t(u) * size;
          if (v < nvec) {
            Chunk<X, W> spare;
            Chunk<X, W>& o = out_chunk<X>(g[u], spare);
#pragma unroll
            for (int j = 0; j < W; ++j) {
              // Column v * W + j belongs to this thread for every row of the tile: no other thread
              // touches this scratch element.
              const A gj = static_cast<A>(g[u].v[j]), xj = static_cast<A>(xv[u].v[j]);
              const double term = static_cast<double>(gj) * static_cast<double>(xj) * rs;
              part[v * W + j] = r == r0 ? term : part[v * W + j] + term;
              o.v[j] = static_cast<X>(rst * gj * w[u].v[j] - c * xj);
            }
            store<X, W>(dx + base + v * W, o);
          }
        }
      }
    }
  }
}

constexpr int kDwCols = 32, kDwSlices = 32;

template <typename T>
__global__ void __launch_bounds__(kDwCols* kDwSlices)
    dweight_kernel(const double* __restrict__ partial, T* __restrict__ dweight, int64_t tiles, int64_t D) {
  __shared__ double shared[kDwSlices][kDwCols + 1];
  const int lane = threadIdx.x % kDwCols, slice = threadIdx.x / kDwCols;
  const int64_t col = int64_t(blockIdx.x) * kDwCols + lane;
  double acc = 0;
  if (col < D) {
    for (int64_t t = slice; t < tiles; t += kDwSlices) acc += partial[t * D + col];
  }
  shared[slice][lane] = acc;
  __syncthreads();
  if (slice == 0 && col < D) {
    double s = shared[0][lane];
    for (int k = 1; k < kDwSlices; ++k) s += shared[k][lane];
    dweight[col] = static_cast<T>(s);
  }
}

// ---- host side ----

// Calls f with the chunk count as a constant: 1, 2, 4, or (kMax 8) 8.
template <int kMax, typename F> void dispatch_chunks(int chunks, F&& f) {
  switch (chunks) {
    case 1: return f(std::integral_constant<int, 1>{});
    case 2: return f(std::integral_constant<int, 2>{});
    case 4: return f(std::integral_constant<int, 4>{});
    default:
      if constexpr (kMax >= 8) return f(std::integral_constant<int, 8>{});
      else return f(std::integral_constant<int, kMax>{});
  }
}

bool all_aligned(std::initializer_list<const void*> ptrs) {
  for (const void* p : ptrs)
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  return true;
}

// Calls f(TypeTag<X>{}, TypeTag<O>{}) with X the stored type of x and O that of the other row tensor
// (y in the forward, dy in the backward): both x's type, or O = bf16 beside a float32 or bf16 x. Any
// other pair is refused (the public functions check this first).
template <typename F> void dispatch_pair(DType x, DType other, const char* other_name, F&& f) {
  if (other == DType::bf16) {
    MOM_CHECK(x == DType::f32 || x == DType::bf16, kOp,
              other_name << " must be of x's dtype, or bfloat16 beside a float32 x; got bfloat16 for "
                         << dtype_name(x) << " x");
    if (x == DType::bf16) f(TypeTag<bf16>{}, TypeTag<bf16>{});
    else f(TypeTag<float>{}, TypeTag<bf16>{});
    return;
  }
  MOM_CHECK(other == x, kOp,
            other_name << " must be of x's dtype, got " << dtype_name(other) << " for " << dtype_name(x) << " x");
  dispatch_float(x, kOp, [&](auto tag) { f(tag, tag); });
}

}  // namespace

RmsNormForward rms_norm_forward(const Tensor& x, const Tensor& weight, double eps, DType y_dtype) {
  const int64_t D = x.size(-1);
  const Shape row_shape(x.shape().begin(), x.shape().end() - 1);
  RmsNormForward out{y_dtype == x.dtype() ? empty_like(x) : empty(x.shape(), y_dtype, x.device()),
                     empty(row_shape, acc_dtype(x.dtype()), x.device())};
  const int64_t rows = out.rstd.numel();
  if (rows == 0) return out;
  const int device = x.device().index;
  ::mom::cuda::DeviceGuard guard(device);
  cudaStream_t st = ::mom::cuda::stream(device);
  dispatch_pair(x.dtype(), y_dtype, "y", [&](auto xtag, auto ytag) {
    using x_t = MOM_TYPE(xtag);
    using y_t = MOM_TYPE(ytag);
    using a_t = acc_t<x_t>;
    constexpr int W = Vec<x_t>::width;
    const x_t* xp = x.data<x_t>();
    const a_t* wp = weight.data<a_t>();
    y_t* yp = out.y.data<y_t>();
    a_t* rp = out.rstd.data<a_t>();
    auto launch = [&](auto w, auto warp, auto chunks, const RowLaunch& l) {
      forward_kernel<x_t, y_t, decltype(warp)::value, decltype(chunks)::value, decltype(w)::value>
          <<<l.blocks, l.threads, 0, st>>>(xp, wp, yp, rp, rows, D, eps);
      MOM_CUDA_CHECK_LAUNCH();
    };
    if (D % W != 0 || !all_aligned({xp, wp, yp})) {
      const RowLaunch l = plan_rows(rows, D, false, 8, device);
      launch(std::integral_constant<int, 1>{}, std::false_type{}, std::integral_constant<int, 0>{}, l);
      return;
    }
    const RowLaunch l = plan_rows(rows, D / W, true, 8, device);
    if (l.warp) dispatch_chunks<8>(l.chunks, [&](auto c) { launch(std::integral_constant<int, W>{}, std::true_type{}, c, l); });
    else if (l.chunks > 0) launch(std::integral_constant<int, W>{}, std::false_type{}, std::integral_constant<int, 8>{}, l);
    else launch(std::integral_constant<int, W>{}, std::false_type{}, std::integral_constant<int, 0>{}, l);
  });
  return out;
}

RmsNormBackward rms_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight, const Tensor& rstd) {
  const int64_t D = x.size(-1), rows = rstd.numel();
  const DType acc = acc_dtype(x.dtype());
  RmsNormBackward out{empty_like(x), empty({D}, acc, x.device())};
  if (D == 0) return out;
  if (rows == 0) return {out.dx, zeros({D}, acc, x.device())};
  const int device = x.device().index;
  // Row tiles: a function of rows and D only, so the summation order never changes.
  int64_t max_tiles = kPartialDoubles / D;
  max_tiles = max_tiles < kMinTiles ? kMinTiles : (max_tiles > kMaxTiles ? kMaxTiles : max_tiles);
  const int64_t tile_rows = ceil_div(rows, max_tiles), tiles = ceil_div(rows, tile_rows);
  Tensor partial = empty({tiles, D}, DType::f64, x.device());
  ::mom::cuda::DeviceGuard guard(device);
  cudaStream_t st = ::mom::cuda::stream(device);
  dispatch_pair(x.dtype(), dy.dtype(), "dy", [&](auto xtag, auto gtag) {
    using x_t = MOM_TYPE(xtag);
    using g_t = MOM_TYPE(gtag);
    using a_t = acc_t<x_t>;
    constexpr int W = Vec<x_t>::width;
    constexpr int kMaxChunks = backward_max_chunks<x_t>();
    const g_t* gp = dy.data<g_t>();
    const x_t* xp = x.data<x_t>();
    const a_t* wp = weight.data<a_t>();
    const a_t* rp = rstd.data<a_t>();
    x_t* dp = out.dx.data<x_t>();
    double* pp = partial.data<double>();
    auto launch = [&](auto w, auto chunks, int threads) {
      backward_kernel<x_t, g_t, decltype(chunks)::value, decltype(w)::value>
          <<<static_cast<unsigned>(tiles), threads, 0, st>>>(gp, xp, wp, rp, dp, pp, rows, D, tile_rows);
      MOM_CUDA_CHECK_LAUNCH();
    };
    const bool vec = D % W == 0 && all_aligned({gp, xp, wp, dp});
    const int64_t nvec = vec ? D / W : D;
    auto stream_threads = [&] {
      const int64_t t = round_up32(ceil_div(nvec, 8));
      return int(t > kBackwardStreamThreads ? kBackwardStreamThreads : t);
    };
    if (!vec) {
      launch(std::integral_constant<int, 1>{}, std::integral_constant<int, 0>{}, stream_threads());
    } else if (nvec <= int64_t(kBackwardThreads) * kMaxChunks) {
      const int chunks = nvec <= kBackwardThreads ? 1 : nvec <= 2 * kBackwardThreads ? 2 : nvec <= 4 * kBackwardThreads ? 4 : 8;
      const int threads = round_up32(ceil_div(nvec, chunks));
      dispatch_chunks<kMaxChunks>(chunks, [&](auto c) { launch(std::integral_constant<int, W>{}, c, threads); });
    } else {
      launch(std::integral_constant<int, W>{}, std::integral_constant<int, 0>{}, stream_threads());
    }
    dweight_kernel<a_t><<<static_cast<unsigned>(ceil_div(D, kDwCols)), kDwCols * kDwSlices, 0, st>>>(
        pp, out.dweight.data<a_t>(), tiles, D);
    MOM_CUDA_CHECK_LAUNCH();
  });
  return out;
}

}  // namespace mom::kernels::cuda
