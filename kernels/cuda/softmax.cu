// CUDA versions of kernels/softmax.h, called by the public functions (kernels/cpu/softmax.cpp) after
// their argument checks. f32 and f64; arithmetic and row sums in the input's type (the CPU reference
// sums in double: f32 rows agree to ~1e-6 relative).
//
// x is seen as (outer, n, inner); a row is the n elements at stride inner.
//
// inner == 1 (the softmax dim is the last one), rows contiguous (kernels/cuda/rows.cuh):
//   - n <= 256 chunks of 16 bytes (1024 f32, 512 f64): one warp per row, 8 rows per 256-thread block,
//     each lane holding 1, 2, 4 or 8 chunks of the row in registers: the row is read once and written
//     once (forward: max, then sum of exp, then write; backward: one sum, then write).
//   - longer rows up to 1024 threads x 8 chunks (forward; 4 in the backward, which holds dy and y): one
//     block per row, the same register cache.
//   - longer still: one block (<= 512 threads) per row streams it twice: an online max/sum pass
//     (running maximum, the sum rescaled when it grows, one exp per element), then a pass that writes;
//     that second read and the writes carry the evict-first hint, so that the re-read rows stay in L2
//     as much as they can (measured: 67% of a copy at n = 50257 f32, against 82-98% for cached rows).
//   Loads and stores are 16-byte chunks with the row's unaligned edges peeled (any n, any offset);
//   when x and y differ in address modulo 16 (a misaligned view), the streaming kernel runs with
//   scalar loads.
// inner > 1: a block of 32 columns x 8 slices; thread (column k, slice s) runs the online pass over
//   elements s, s + 8, ... of column k (coalesced across the 32 columns), the 8 slices are combined in
//   shared memory in slice order, then the same threads write. Reads x twice (y, dy twice backward).
//
// Deterministic: every row's reduction order depends only on n, the group size and the dtype (fixed
// butterfly and warp order, rows.cuh); nothing uses atomics.
#include <cstdint>
#include <type_traits>

#include "kernels/cuda/rows.cuh"
#include "kernels/softmax.h"

namespace mom::kernels::cuda {

namespace {

using namespace rows;

// Forward of one contiguous row per group. kChunks > 0: the row held in registers; 0: streamed twice.
template <typename T, bool kLog, bool kWarp, int kChunks, int W>
__global__ void __launch_bounds__(row_threads_bound(kWarp, kChunks))
    forward_rows_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t rows, int64_t n) {
  using G = Group<kWarp>;
  const int lane = G::lane(), size = G::size();
  for (int64_t r = G::first(); r < rows; r += G::stride()) {
    const T* xr = x + r * n;
    T* yr = y + r * n;
    const RowSplit<T, W> row(xr, n);
    const bool edge = lane < row.edges();
    const int64_t ei = edge ? row.edge(lane) : 0;
    if constexpr (kChunks > 0) {
      Chunk<T, W> c[kChunks];
      T e = 0, m = neg_inf<T>();
#pragma unroll
      for (int k = 0; k < kChunks; ++k) {
        const int64_t v = lane + int64_t(k) * size;
        if (v < row.nvec) {
          c[k] = load<T, W>(xr + row.at(v));
#pragma unroll
          for (int j = 0; j < W; ++j) m = max_(m, c[k].v[j]);
        }
      }
      if (edge) {
        e = xr[ei];
        m = max_(m, e);
      }
      m = G::reduce(m, MaxOp{});
      T s = 0;
#pragma unroll
      for (int k = 0; k < kChunks; ++k) {
        if (lane + int64_t(k) * size < row.nvec) {
#pragma unroll
          for (int j = 0; j < W; ++j) {
            const T p = exp_(c[k].v[j] - m);
            s += p;
            if constexpr (!kLog) c[k].v[j] = p;
          }
        }
      }
      if (edge) {
        const T p = exp_(e - m);
        s += p;
        if constexpr (!kLog) e = p;
      }
      s = G::reduce(s, SumOp{});
      // log: y = x - (m + log s); else y = exp(x - m) / s, as the CPU (times 1/s).
      const T shift = kLog ? m + log_(s) : T(0), inv = kLog ? T(1) : T(1) / s;
#pragma unroll
      for (int k = 0; k < kChunks; ++k) {
        const int64_t v = lane + int64_t(k) * size;
        if (v < row.nvec) {
#pragma unroll
          for (int j = 0; j < W; ++j) c[k].v[j] = kLog ? c[k].v[j] - shift : c[k].v[j] * inv;
          store<T, W>(yr + row.at(v), c[k]);
        }
      }
      if (edge) yr[ei] = kLog ? e - shift : e * inv;
    } else {
      constexpr int kUnroll = 4;  // chunks in flight per thread
      Online<T> o{neg_inf<T>(), T(0)};
      for (int64_t v0 = lane; v0 < row.nvec; v0 += int64_t(kUnroll) * size) {
        Chunk<T, W> c[kUnroll];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u)
          if (v0 + int64_t(u) * size < row.nvec) c[u] = load<T, W>(xr + row.at(v0 + int64_t(u) * size));
#pragma unroll
        for (int u = 0; u < kUnroll; ++u)
          if (v0 + int64_t(u) * size < row.nvec) absorb(o, c[u]);
      }
      if (edge) absorb(o, Chunk<T, 1>{{xr[ei]}});
      o = G::reduce(o, OnlineOp{});
      const T shift = kLog ? o.m + log_(o.s) : o.m, inv = kLog ? T(1) : T(1) / o.s;
      for (int64_t v0 = lane; v0 < row.nvec; v0 += int64_t(kUnroll) * size) {
        Chunk<T, W> c[kUnroll];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u)
          if (v0 + int64_t(u) * size < row.nvec) c[u] = load_last<T, W>(xr + row.at(v0 + int64_t(u) * size));
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          const int64_t v = v0 + int64_t(u) * size;
          if (v < row.nvec) {
#pragma unroll
            for (int j = 0; j < W; ++j) c[u].v[j] = kLog ? c[u].v[j] - shift : exp_(c[u].v[j] - shift) * inv;
            store_last<T, W>(yr + row.at(v), c[u]);
          }
        }
      }
      if (edge) yr[ei] = kLog ? xr[ei] - shift : exp_(xr[ei] - shift) * inv;
    }
  }
}

// Backward of one contiguous row per group: s = sum(dy y), dx = y (dy - s); log: s = sum(dy),
// dx = dy - exp(y) s.
template <typename T, bool kLog>
__device__ inline T backward_term(T g, T yv) { return kLog ? g : g * yv; }
template <typename T, bool kLog>
__device__ inline T backward_value(T g, T yv, T s) { return kLog ? g - exp_(yv) * s : yv * (g - s); }

template <typename T, bool kLog, bool kWarp, int kChunks, int W>
__global__ void __launch_bounds__(row_threads_bound(kWarp, kChunks))
    backward_rows_kernel(const T* __restrict__ dy, const T* __restrict__ y, T* __restrict__ dx, int64_t rows,
                         int64_t n) {
  using G = Group<kWarp>;
  const int lane = G::lane(), size = G::size();
  for (int64_t r = G::first(); r < rows; r += G::stride()) {
    const int64_t base = r * n;
    const T *gr = dy + base, *yr = y + base;
    T* dr = dx + base;
    const RowSplit<T, W> row(yr, n);
    const bool edge = lane < row.edges();
    const int64_t ei = edge ? row.edge(lane) : 0;
    if constexpr (kChunks > 0) {
      Chunk<T, W> cg[kChunks], cy[kChunks];
      T eg = 0, ey = 0, s = 0;
#pragma unroll
      for (int k = 0; k < kChunks; ++k) {
        const int64_t v = lane + int64_t(k) * size;
        if (v < row.nvec) {
          cg[k] = load<T, W>(gr + row.at(v));
          cy[k] = load<T, W>(yr + row.at(v));
        }
      }
      if (edge) {
        eg = gr[ei];
        ey = yr[ei];
      }
#pragma unroll
      for (int k = 0; k < kChunks; ++k) {
        if (lane + int64_t(k) * size < row.nvec) {
#pragma unroll
          for (int j = 0; j < W; ++j) s += backward_term<T, kLog>(cg[k].v[j], cy[k].v[j]);
        }
      }
      if (edge) s += backward_term<T, kLog>(eg, ey);
      s = G::reduce(s, SumOp{});
#pragma unroll
      for (int k = 0; k < kChunks; ++k) {
        const int64_t v = lane + int64_t(k) * size;
        if (v < row.nvec) {
#pragma unroll
          for (int j = 0; j < W; ++j) cg[k].v[j] = backward_value<T, kLog>(cg[k].v[j], cy[k].v[j], s);
          store<T, W>(dr + row.at(v), cg[k]);
        }
      }
      if (edge) dr[ei] = backward_value<T, kLog>(eg, ey, s);
    } else {
      constexpr int kUnroll = 4;
      T s = 0;
      for (int64_t v0 = lane; v0 < row.nvec; v0 += int64_t(kUnroll) * size) {
        Chunk<T, W> cg[kUnroll], cy[kUnroll];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          const int64_t v = v0 + int64_t(u) * size;
          if (v < row.nvec) {
            cg[u] = load<T, W>(gr + row.at(v));
            cy[u] = load<T, W>(yr + row.at(v));
          }
        }
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          if (v0 + int64_t(u) * size < row.nvec) {
#pragma unroll
            for (int j = 0; j < W; ++j) s += backward_term<T, kLog>(cg[u].v[j], cy[u].v[j]);
          }
        }
      }
      if (edge) s += backward_term<T, kLog>(gr[ei], yr[ei]);
      s = G::reduce(s, SumOp{});
      for (int64_t v0 = lane; v0 < row.nvec; v0 += int64_t(kUnroll) * size) {
        Chunk<T, W> cg[kUnroll], cy[kUnroll];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          const int64_t v = v0 + int64_t(u) * size;
          if (v < row.nvec) {
            cg[u] = load_last<T, W>(gr + row.at(v));
            cy[u] = load_last<T, W>(yr + row.at(v));
          }
        }
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          const int64_t v = v0 + int64_t(u) * size;
          if (v < row.nvec) {
#pragma unroll
            for (int j = 0; j < W; ++j) cg[u].v[j] = backward_value<T, kLog>(cg[u].v[j], cy[u].v[j], s);
            store_last<T, W>(dr + row.at(v), cg[u]);
          }
        }
      }
      if (edge) dr[ei] = backward_value<T, kLog>(gr[ei], yr[ei], s);
    }
  }
}

// ---- inner > 1: strided rows ----

constexpr int kCols = 32;   // columns per block (one warp wide)
constexpr int kSlices = 8;  // threads per column, splitting the row

// Block b covers columns [c0, c0 + 32) of outer index o (b = o * column_blocks + c0 / 32), grid-stride.
struct StridedRows {
  int64_t outer, n, inner, column_blocks;
};

template <typename A, typename Op> __device__ inline A combine_slices(A v, A (&shared)[kSlices][kCols], Op op) {
  const int col = threadIdx.x % kCols, slice = threadIdx.x / kCols;
  shared[slice][col] = v;
  __syncthreads();
  A r = shared[0][col];
#pragma unroll
  for (int s = 1; s < kSlices; ++s) r = op(r, shared[s][col]);
  __syncthreads();
  return r;
}

template <typename T, bool kLog>
__global__ void __launch_bounds__(kCols* kSlices)
    forward_strided_kernel(const T* __restrict__ x, T* __restrict__ y, StridedRows l) {
  __shared__ Online<T> shared[kSlices][kCols];
  const int col = threadIdx.x % kCols, slice = threadIdx.x / kCols;
  const int64_t blocks = l.outer * l.column_blocks;
  for (int64_t b = blockIdx.x; b < blocks; b += gridDim.x) {
    const int64_t o = b / l.column_blocks, k = (b % l.column_blocks) * kCols + col;
    const bool active = k < l.inner;
    const int64_t base = o * l.n * l.inner + k;
    Online<T> acc{neg_inf<T>(), T(0)};
    if (active) {
      for (int64_t i = slice; i < l.n; i += kSlices) absorb(acc, Chunk<T, 1>{{x[base + i * l.inner]}});
    }
    acc = combine_slices(acc, shared, OnlineOp{});
    const T shift = kLog ? acc.m + log_(acc.s) : acc.m, inv = kLog ? T(1) : T(1) / acc.s;
    if (active) {
      for (int64_t i = slice; i < l.n; i += kSlices) {
        const T v = x[base + i * l.inner];
        y[base + i * l.inner] = kLog ? v - shift : exp_(v - shift) * inv;
      }
    }
  }
}

template <typename T, bool kLog>
__global__ void __launch_bounds__(kCols* kSlices)
    backward_strided_kernel(const T* __restrict__ dy, const T* __restrict__ y, T* __restrict__ dx, StridedRows l) {
  __shared__ T shared[kSlices][kCols];
  const int col = threadIdx.x % kCols, slice = threadIdx.x / kCols;
  const int64_t blocks = l.outer * l.column_blocks;
  for (int64_t b = blockIdx.x; b < blocks; b += gridDim.x) {
    const int64_t o = b / l.column_blocks, k = (b % l.column_blocks) * kCols + col;
    const bool active = k < l.inner;
    const int64_t base = o * l.n * l.inner + k;
    T s = 0;
    if (active) {
      for (int64_t i = slice; i < l.n; i += kSlices)
        s += backward_term<T, kLog>(dy[base + i * l.inner], y[base + i * l.inner]);
    }
    s = combine_slices(s, shared, SumOp{});
    if (active) {
      for (int64_t i = slice; i < l.n; i += kSlices) {
        const int64_t at = base + i * l.inner;
        dx[at] = backward_value<T, kLog>(dy[at], y[at], s);
      }
    }
  }
}

// ---- host side ----

struct Dims {
  int64_t outer = 1, n = 1, inner = 1;
};

Dims dims_of(const Tensor& x, int64_t dim) {
  Dims d;
  d.n = x.size(dim);
  for (int64_t i = 0; i < dim; ++i) d.outer *= x.size(i);
  for (int64_t i = dim + 1; i < x.dim(); ++i) d.inner *= x.size(i);
  return d;
}

// Calls f(std::integral_constant-like chunk count) for the plan's cached variant.
template <typename F> void dispatch_chunks(int chunks, F&& f) {
  switch (chunks) {
    case 1: return f(std::integral_constant<int, 1>{});
    case 2: return f(std::integral_constant<int, 2>{});
    case 4: return f(std::integral_constant<int, 4>{});
    default: return f(std::integral_constant<int, 8>{});
  }
}

// Block chunk caps: forward caches x (8 chunks = 32 registers), backward dy and y (2 x 4 chunks), so
// that a 1024-thread block stays within 64 registers per thread.
constexpr int kForwardBlockChunks = 8;
constexpr int kBackwardBlockChunks = 4;

// The contiguous-rows launch: `vec` selects 16-byte chunks (every tensor the same address modulo 16),
// else scalar streaming. Kernel<W, kWarp, kChunks> is launched with the plan.
template <typename T, int kBlockChunks, typename Launch>
void launch_rows(int64_t rows, int64_t n, bool vec, int device, Launch&& launch) {
  constexpr int W = Vec<T>::width;
  if (!vec) {
    RowLaunch l = plan_rows(rows, n, false, kBlockChunks, device);
    launch(std::integral_constant<int, 1>{}, std::false_type{}, std::integral_constant<int, 0>{}, l);
    return;
  }
  RowLaunch l = plan_rows(rows, n / W, true, kBlockChunks, device);
  if (l.warp) {
    dispatch_chunks(l.chunks, [&](auto chunks) { launch(std::integral_constant<int, W>{}, std::true_type{}, chunks, l); });
  } else if (l.chunks > 0) {
    launch(std::integral_constant<int, W>{}, std::false_type{}, std::integral_constant<int, kBlockChunks>{}, l);
  } else {
    launch(std::integral_constant<int, W>{}, std::false_type{}, std::integral_constant<int, 0>{}, l);
  }
}

unsigned strided_blocks(const StridedRows& l, int device) {
  const int64_t blocks = l.outer * l.column_blocks;
  const int64_t cap = int64_t(::mom::cuda::multiprocessor_count(device)) * 8;
  return static_cast<unsigned>(blocks < cap ? blocks : cap);
}

template <bool kLog> Tensor forward(const Tensor& x, int64_t dim, const char* op) {
  Tensor y = empty_like(x);
  if (x.numel() == 0) return y;
  const int device = x.device().index;
  const Dims d = dims_of(x, dim);
  ::mom::cuda::DeviceGuard guard(device);
  cudaStream_t st = ::mom::cuda::stream(device);
  dispatch_float(x.dtype(), op, [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    const scalar_t* xp = x.data<scalar_t>();
    scalar_t* yp = y.data<scalar_t>();
    if (d.inner > 1) {
      StridedRows l{d.outer, d.n, d.inner, ceil_div(d.inner, kCols)};
      forward_strided_kernel<scalar_t, kLog><<<strided_blocks(l, device), kCols * kSlices, 0, st>>>(xp, yp, l);
      MOM_CUDA_CHECK_LAUNCH();
      return;
    }
    launch_rows<scalar_t, kForwardBlockChunks>(
        d.outer, d.n, same_mod16(xp, yp), device, [&](auto w, auto warp, auto chunks, const RowLaunch& l) {
          forward_rows_kernel<scalar_t, kLog, decltype(warp)::value, decltype(chunks)::value, decltype(w)::value>
              <<<l.blocks, l.threads, 0, st>>>(xp, yp, d.outer, d.n);
          MOM_CUDA_CHECK_LAUNCH();
        });
  });
  return y;
}

template <bool kLog> Tensor backward(const Tensor& dy, const Tensor& y, int64_t dim, const char* op) {
  Tensor dx = empty_like(y);
  if (y.numel() == 0) return dx;
  const int device = y.device().index;
  const Dims d = dims_of(y, dim);
  ::mom::cuda::DeviceGuard guard(device);
  cudaStream_t st = ::mom::cuda::stream(device);
  dispatch_float(y.dtype(), op, [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    const scalar_t* gp = dy.data<scalar_t>();
    const scalar_t* yp = y.data<scalar_t>();
    scalar_t* dp = dx.data<scalar_t>();
    if (d.inner > 1) {
      StridedRows l{d.outer, d.n, d.inner, ceil_div(d.inner, kCols)};
      backward_strided_kernel<scalar_t, kLog><<<strided_blocks(l, device), kCols * kSlices, 0, st>>>(gp, yp, dp, l);
      MOM_CUDA_CHECK_LAUNCH();
      return;
    }
    const bool vec = same_mod16(gp, yp) && same_mod16(yp, dp);
    launch_rows<scalar_t, kBackwardBlockChunks>(
        d.outer, d.n, vec, device, [&](auto w, auto warp, auto chunks, const RowLaunch& l) {
          backward_rows_kernel<scalar_t, kLog, decltype(warp)::value, decltype(chunks)::value, decltype(w)::value>
              <<<l.blocks, l.threads, 0, st>>>(gp, yp, dp, d.outer, d.n);
          MOM_CUDA_CHECK_LAUNCH();
        });
  });
  return dx;
}

}  // namespace

Tensor softmax_forward(const Tensor& x, int64_t dim) { return forward<false>(x, dim, "softmax"); }
Tensor softmax_backward(const Tensor& dy, const Tensor& y, int64_t dim) {
  return backward<false>(dy, y, dim, "softmax");
}
Tensor log_softmax_forward(const Tensor& x, int64_t dim) { return forward<true>(x, dim, "log_softmax"); }
Tensor log_softmax_backward(const Tensor& dy, const Tensor& y, int64_t dim) {
  return backward<true>(dy, y, dim, "log_softmax");
}

}  // namespace mom::kernels::cuda
