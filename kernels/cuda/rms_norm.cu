// CUDA versions of kernels/rms_norm.h, called by the public functions (kernels/cpu/rms_norm.cpp) after
// their argument checks. f32 and f64. Row sums in the input's type; rstd and the backward's per-row
// factor in double; dweight summed in double.
//
// Forward: a warp per row (D <= 256 chunks of 16 bytes: 1024 f32, 512 f64) or a block per row (up to
// 1024 threads x 8 chunks) holds the row in registers: x read once, y written once, rstd one value per
// row. Longer rows stream x twice.
// Backward, two kernels:
//   1. rows: block b owns a fixed tile of rows [b R, (b + 1) R) (R from the row count and D alone) and
//      <= 256 threads spanning the columns, each thread owning the same 1..8 chunks of columns for the
//      whole tile (weight cached for the tile). Per row: x, dy read once (registers), s = sum dy w x by
//      a block reduction, dx written once, and dy x rstd added to the thread's own dweight columns in
//      double registers; at the end the tile's partial dweight row goes to a (tiles, D) f64 scratch.
//      Rows past 8 chunks a thread stream x and dy twice and keep the partial sums in the scratch
//      (each column read-modified-written by the one thread that owns it).
//   2. dweight: 32 columns x 32 slices per block; slice s sums tiles s, s + 32, ... in order, then the
//      32 slices of a column are summed in order.
// Vector (16-byte) loads when D is a multiple of the vector width and every tensor is 16-byte aligned;
// otherwise scalar streaming kernels.
// Deterministic: per-row sums in a fixed butterfly/warp order, dweight in a fixed tile partition summed
// in fixed order; no atomics.
#include <cstdint>
#include <type_traits>

#include "kernels/cuda/rows.cuh"
#include "kernels/rms_norm.h"

namespace mom::kernels::cuda {

namespace {

using namespace rows;

constexpr int kUnroll = 4;               // chunks in flight per thread when streaming
constexpr int kBackwardThreads = 256;     // at most, for the caching backward
constexpr int kBackwardMaxChunks = 8;
constexpr int kBackwardStreamThreads = 512;  // three unrolled tensors need up to 128 registers a thread
constexpr int64_t kMinTiles = 512;        // backward row tiles: at least this many (rows permitting) ...
constexpr int64_t kPartialDoubles = int64_t(1) << 20;  // ... and more while the scratch stays <= 8 MB
constexpr int64_t kMaxTiles = 16384;

__device__ inline double rstd_of(double ss, int64_t D, double eps) {
  return 1.0 / sqrt(ss / static_cast<double>(D) + eps);
}

template <typename T, bool kWarp, int kChunks, int W>
__global__ void __launch_bounds__(row_threads_bound(kWarp, kChunks))
    forward_kernel(const T* __restrict__ x, const T* __restrict__ weight, T* __restrict__ y, T* __restrict__ rstd,
                   int64_t rows, int64_t D, double eps) {
  using G = Group<kWarp>;
  const int lane = G::lane(), size = G::size();
  const int64_t nvec = D / W;  // exact: W > 1 only when W divides D
  for (int64_t r = G::first(); r < rows; r += G::stride()) {
    const T* xr = x + r * D;
    T* yr = y + r * D;
    if constexpr (kChunks > 0) {
      Chunk<T, W> c[kChunks];
      T ss = 0;
#pragma unroll
      for (int k = 0; k < kChunks; ++k) {
        const int64_t v = lane + int64_t(k) * size;
        if (v < nvec) {
          c[k] = load<T, W>(xr + v * W);
#pragma unroll
          for (int j = 0; j < W; ++j) ss += c[k].v[j] * c[k].v[j];
        }
      }
      ss = G::reduce(ss, SumOp{});
      const double rs = rstd_of(static_cast<double>(ss), D, eps);
      if (lane == 0) rstd[r] = static_cast<T>(rs);
      const T rst = static_cast<T>(rs);
#pragma unroll
      for (int k = 0; k < kChunks; ++k) {
        const int64_t v = lane + int64_t(k) * size;
        if (v < nvec) {
          const Chunk<T, W> w = load<T, W>(weight + v * W);
#pragma unroll
          for (int j = 0; j < W; ++j) c[k].v[j] = c[k].v[j] * rst * w.v[j];
          store<T, W>(yr + v * W, c[k]);
        }
      }
    } else {
      T ss = 0;
      for (int64_t v0 = lane; v0 < nvec; v0 += int64_t(kUnroll) * size) {
        Chunk<T, W> c[kUnroll];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u)
          if (v0 + int64_t(u) * size < nvec) c[u] = load<T, W>(xr + (v0 + int64_t(u) * size) * W);
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          if (v0 + int64_t(u) * size < nvec) {
#pragma unroll
            for (int j = 0; j < W; ++j) ss += c[u].v[j] * c[u].v[j];
          }
        }
      }
      ss = G::reduce(ss, SumOp{});
      const double rs = rstd_of(static_cast<double>(ss), D, eps);
      if (lane == 0) rstd[r] = static_cast<T>(rs);
      const T rst = static_cast<T>(rs);
      for (int64_t v0 = lane; v0 < nvec; v0 += int64_t(kUnroll) * size) {
        Chunk<T, W> c[kUnroll];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u)
          if (v0 + int64_t(u) * size < nvec) c[u] = load<T, W>(xr + (v0 + int64_t(u) * size) * W);
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          const int64_t v = v0 + int64_t(u) * size;
          if (v < nvec) {
            const Chunk<T, W> w = load<T, W>(weight + v * W);
#pragma unroll
            for (int j = 0; j < W; ++j) c[u].v[j] = c[u].v[j] * rst * w.v[j];
            store<T, W>(yr + v * W, c[u]);
          }
        }
      }
    }
  }
}

// The per-row backward factor c = rstd^3 s / D, in double as the CPU (times 1/D: a division would
// call a slow-path subroutine whose calling convention makes the hot loop spill).
__device__ inline double row_factor(double rs, double s, double inv_d) { return rs * rs * rs * s * inv_d; }

template <typename T, int kChunks, int W>
__global__ void __launch_bounds__(kChunks > 0 ? kBackwardThreads : kBackwardStreamThreads)
    backward_kernel(const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ weight,
                    const T* __restrict__ rstd, T* __restrict__ dx, double* __restrict__ partial, int64_t rows,
                    int64_t D, int64_t tile_rows) {
  const int lane = threadIdx.x, size = blockDim.x;
  const double inv_d = 1.0 / static_cast<double>(D);
  const int64_t nvec = D / W;
  const int64_t r0 = int64_t(blockIdx.x) * tile_rows, r1 = min(rows, r0 + tile_rows);
  double* part = partial + int64_t(blockIdx.x) * D;  // this tile's row of the (tiles, D) scratch
  if constexpr (kChunks > 0) {
    Chunk<T, W> w[kChunks];
    double acc[kChunks][W];
#pragma unroll
    for (int k = 0; k < kChunks; ++k) {
      const int64_t v = lane + int64_t(k) * size;
      if (v < nvec) w[k] = load<T, W>(weight + v * W);
#pragma unroll
      for (int j = 0; j < W; ++j) acc[k][j] = 0;
    }
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t base = r * D;
      Chunk<T, W> g[kChunks], xv[kChunks];
#pragma unroll
      for (int k = 0; k < kChunks; ++k) {
        const int64_t v = lane + int64_t(k) * size;
        if (v < nvec) {
          g[k] = load<T, W>(dy + base + v * W);
          xv[k] = load<T, W>(x + base + v * W);
        }
      }
      const T rst = rstd[r];
      T s = 0;
#pragma unroll
      for (int k = 0; k < kChunks; ++k) {
        if (lane + int64_t(k) * size < nvec) {
#pragma unroll
          for (int j = 0; j < W; ++j) s += g[k].v[j] * w[k].v[j] * xv[k].v[j];
        }
      }
      s = block_reduce(s, SumOp{});
      const double rs = static_cast<double>(rst);
      const T c = static_cast<T>(row_factor(rs, static_cast<double>(s), inv_d));
#pragma unroll
      for (int k = 0; k < kChunks; ++k) {
        const int64_t v = lane + int64_t(k) * size;
        if (v < nvec) {
#pragma unroll
          for (int j = 0; j < W; ++j) {
            acc[k][j] += static_cast<double>(g[k].v[j]) * static_cast<double>(xv[k].v[j]) * rs;
            g[k].v[j] = rst * g[k].v[j] * w[k].v[j] - c * xv[k].v[j];
          }
          store<T, W>(dx + base + v * W, g[k]);
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
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t base = r * D;
      const T rst = rstd[r];
      T s = 0;
      for (int64_t v0 = lane; v0 < nvec; v0 += int64_t(kUnroll) * size) {
        Chunk<T, W> g[kUnroll], xv[kUnroll], w[kUnroll];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          const int64_t v = v0 + int64_t(u) * size;
          if (v < nvec) {
            g[u] = load<T, W>(dy + base + v * W);
            xv[u] = load<T, W>(x + base + v * W);
            w[u] = load<T, W>(weight + v * W);
          }
        }
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          if (v0 + int64_t(u) * size < nvec) {
#pragma unroll
            for (int j = 0; j < W; ++j) s += g[u].v[j] * w[u].v[j] * xv[u].v[j];
          }
        }
      }
      s = block_reduce(s, SumOp{});
      const double rs = static_cast<double>(rst);
      const T c = static_cast<T>(row_factor(rs, static_cast<double>(s), inv_d));
      for (int64_t v0 = lane; v0 < nvec; v0 += int64_t(kUnroll) * size) {
        Chunk<T, W> g[kUnroll], xv[kUnroll], w[kUnroll];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          const int64_t v = v0 + int64_t(u) * size;
          if (v < nvec) {
            g[u] = load<T, W>(dy + base + v * W);
            xv[u] = load<T, W>(x + base + v * W);
            w[u] = load<T, W>(weight + v * W);
          }
        }
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          const int64_t v = v0 + int64_t(u) * size;
          if (v < nvec) {
#pragma unroll
            for (int j = 0; j < W; ++j) {
              // Column v * W + j belongs to this thread for every row of the tile: no other thread
              // touches this scratch element.
              const double term = static_cast<double>(g[u].v[j]) * static_cast<double>(xv[u].v[j]) * rs;
              part[v * W + j] = r == r0 ? term : part[v * W + j] + term;
              g[u].v[j] = rst * g[u].v[j] * w[u].v[j] - c * xv[u].v[j];
            }
            store<T, W>(dx + base + v * W, g[u]);
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

template <typename F> void dispatch_chunks(int chunks, F&& f) {
  switch (chunks) {
    case 1: return f(std::integral_constant<int, 1>{});
    case 2: return f(std::integral_constant<int, 2>{});
    case 4: return f(std::integral_constant<int, 4>{});
    default: return f(std::integral_constant<int, 8>{});
  }
}

bool all_aligned(std::initializer_list<const void*> ptrs) {
  for (const void* p : ptrs)
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  return true;
}

}  // namespace

RmsNormForward rms_norm_forward(const Tensor& x, const Tensor& weight, double eps) {
  const int64_t D = x.size(-1);
  RmsNormForward out{empty_like(x), empty(Shape(x.shape().begin(), x.shape().end() - 1), x.dtype(), x.device())};
  const int64_t rows = out.rstd.numel();
  if (rows == 0) return out;
  const int device = x.device().index;
  ::mom::cuda::DeviceGuard guard(device);
  cudaStream_t st = ::mom::cuda::stream(device);
  dispatch_float(x.dtype(), "rms_norm", [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    constexpr int W = Vec<scalar_t>::width;
    const scalar_t* xp = x.data<scalar_t>();
    const scalar_t* wp = weight.data<scalar_t>();
    scalar_t* yp = out.y.data<scalar_t>();
    scalar_t* rp = out.rstd.data<scalar_t>();
    auto launch = [&](auto w, auto warp, auto chunks, const RowLaunch& l) {
      forward_kernel<scalar_t, decltype(warp)::value, decltype(chunks)::value, decltype(w)::value>
          <<<l.blocks, l.threads, 0, st>>>(xp, wp, yp, rp, rows, D, eps);
      MOM_CUDA_CHECK_LAUNCH();
    };
    if (D % W != 0 || !all_aligned({xp, wp, yp})) {
      const RowLaunch l = plan_rows(rows, D, false, 8, device);
      launch(std::integral_constant<int, 1>{}, std::false_type{}, std::integral_constant<int, 0>{}, l);
      return;
    }
    const RowLaunch l = plan_rows(rows, D / W, true, 8, device);
    if (l.warp) dispatch_chunks(l.chunks, [&](auto c) { launch(std::integral_constant<int, W>{}, std::true_type{}, c, l); });
    else if (l.chunks > 0) launch(std::integral_constant<int, W>{}, std::false_type{}, std::integral_constant<int, 8>{}, l);
    else launch(std::integral_constant<int, W>{}, std::false_type{}, std::integral_constant<int, 0>{}, l);
  });
  return out;
}

RmsNormBackward rms_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight, const Tensor& rstd) {
  const int64_t D = x.size(-1), rows = rstd.numel();
  RmsNormBackward out{empty_like(x), empty({D}, x.dtype(), x.device())};
  if (D == 0) return out;
  if (rows == 0) return {out.dx, zeros({D}, x.dtype(), x.device())};
  const int device = x.device().index;
  // Row tiles: a function of rows and D only, so the summation order never changes.
  int64_t max_tiles = kPartialDoubles / D;
  max_tiles = max_tiles < kMinTiles ? kMinTiles : (max_tiles > kMaxTiles ? kMaxTiles : max_tiles);
  const int64_t tile_rows = ceil_div(rows, max_tiles), tiles = ceil_div(rows, tile_rows);
  Tensor partial = empty({tiles, D}, DType::f64, x.device());
  ::mom::cuda::DeviceGuard guard(device);
  cudaStream_t st = ::mom::cuda::stream(device);
  dispatch_float(x.dtype(), "rms_norm", [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    constexpr int W = Vec<scalar_t>::width;
    const scalar_t* gp = dy.data<scalar_t>();
    const scalar_t* xp = x.data<scalar_t>();
    const scalar_t* wp = weight.data<scalar_t>();
    const scalar_t* rp = rstd.data<scalar_t>();
    scalar_t* dp = out.dx.data<scalar_t>();
    double* pp = partial.data<double>();
    auto launch = [&](auto w, auto chunks, int threads) {
      backward_kernel<scalar_t, decltype(chunks)::value, decltype(w)::value>
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
    } else if (nvec <= int64_t(kBackwardThreads) * kBackwardMaxChunks) {
      const int chunks = nvec <= kBackwardThreads ? 1 : nvec <= 2 * kBackwardThreads ? 2 : nvec <= 4 * kBackwardThreads ? 4 : 8;
      const int threads = round_up32(ceil_div(nvec, chunks));
      dispatch_chunks(chunks, [&](auto c) { launch(std::integral_constant<int, W>{}, c, threads); });
    } else {
      launch(std::integral_constant<int, W>{}, std::integral_constant<int, 0>{}, stream_threads());
    }
    dweight_kernel<scalar_t><<<static_cast<unsigned>(ceil_div(D, kDwCols)), kDwCols * kDwSlices, 0, st>>>(
        pp, out.dweight.data<scalar_t>(), tiles, D);
    MOM_CUDA_CHECK_LAUNCH();
  });
  return out;
}

}  // namespace mom::kernels::cuda
