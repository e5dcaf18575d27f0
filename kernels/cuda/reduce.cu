// CUDA versions of kernels/reduce.h, called by the public functions (kernels/cpu/reduce.cpp) after their
// argument checks; sum_reduce also serves sum_to_shape (kernels/cuda/reduce.cuh).
//
// Decomposition. A contiguous x is seen as groups of adjacent dims of one kind (kept or reduced), size-1
// dims dropped. One reduced group is a 3-D problem (outer, len, inner) reducing the middle dim:
//   inner == 1  rows: a team per row segment, one thread for rows of at most 16 elements, a warp up to
//               4096, a block (256 threads) beyond. Lane l takes the groups l, l + team, ... of W =
//               16 / sizeof(T) consecutive elements (one 16-byte load when the row is 16-byte aligned,
//               W scalar loads otherwise: the same order either way), then a fixed shuffle tree (and a
//               shared-memory step across the warps of a block). Fewer than 1024 rows longer than
//               32768 are cut into chunks: pass 1 writes one partial per (row, chunk), pass 2 sums each
//               row's partials (a row reduction of at most 1024). A full reduction is the case rows = 1:
//               the number of chunks (at most 1024) depends on n alone.
//   inner > 1   columns: a block of up to 256 threads = bx column groups (W adjacent columns each,
//               16-byte loads when inner % W == 0 and x is aligned) x by row phases x bz outer slices.
//               Thread (tx, ty, tz) sums rows r0 + ty, r0 + ty + by, ... of its tile in order, then a
//               fixed tree over ty in shared memory. When the columns give fewer than 1024 blocks, the
//               rows are cut into tiles (about 1024 blocks, 8 rows per thread at least): pass 1 writes
//               one partial per (tile, column), pass 2 is the same column reduction over the tiles (tiled
//               again when the tiles are many and the columns few).
//   Several reduced groups: the innermost is reduced first into a double intermediate, then the next,
//   and so on (each step one of the above); x is never permuted.
// Accumulation: double for float and double (partials and intermediates too). The error stays at the
// CPU reference's level (it sums in double too), and the FP64 adds cost nothing that shows: reading
// float at 4.8 TB/s is 1.2 G adds per ms, under 4% of an H200's FP64 rate.
// max carries (value, index) and combines by a total order (NaN above every number, then the larger
// value, then the smaller index), so every tree gives the CPU's answer: the first maximum, the first NaN.
// Determinism: teams, chunks and tiles are functions of the shapes only; each partial is summed in a
// fixed order and written by one thread; no atomics. The grid size (grid-stride loops over teams and
// tasks) follows the device; the bits do not.
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "core/cuda/strided.cuh"
#include "kernels/cuda/bad_index.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/cuda/reduce.cuh"
#include "kernels/reduce.h"

namespace mom::kernels::cuda {

namespace {

using ::mom::cuda::StridedLayout2;

constexpr unsigned kFullMask = 0xffffffffu;

// Elements per load: a 16-byte vector of float or double; partials of max are loaded one by one.
template <typename In> constexpr int load_width() {
  if constexpr (std::is_same_v<In, float> || std::is_same_v<In, double>) return 16 / sizeof(In);
  else return 1;
}

__device__ inline bool is_aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// ---- the two reductions: an accumulator, the element that starts it, and an ordered combine ----

struct SumOp {
  using Acc = double;
  __device__ static Acc identity() { return 0.0; }
  template <typename In> __device__ static Acc lift(In v, int64_t) { return static_cast<double>(v); }
  __device__ static Acc combine(Acc a, Acc b) { return a + b; }  // a holds the earlier elements
  __device__ static Acc shfl_down(Acc a, int o) { return __shfl_down_sync(kFullMask, a, o); }
};

template <typename T> struct MaxAcc {
  T v;
  int64_t i;  // position along the reduced dim (INT64_MAX: no element yet)
};

template <typename T> struct MaxOp {
  using Acc = MaxAcc<T>;
  __device__ static Acc identity() { return {-static_cast<T>(INFINITY), INT64_MAX}; }
  __device__ static Acc lift(T v, int64_t r) { return {v, r}; }
  __device__ static Acc lift(Acc a, int64_t) { return a; }  // a partial of pass 1
  // NaN (v != v) above every number; then the larger value; ties and two NaNs: the smaller index.
  __device__ static Acc combine(Acc a, Acc b) {
    bool an = a.v != a.v, bn = b.v != b.v;
    bool a_wins = an != bn ? an : (!an && a.v != b.v ? a.v > b.v : a.i < b.i);
    return a_wins ? a : b;
  }
  __device__ static Acc shfl_down(Acc a, int o) {
    return {__shfl_down_sync(kFullMask, a.v, o), __shfl_down_sync(kFullMask, a.i, o)};
  }
};

// ---- where results go ----

template <typename Out> struct SumWriter {
  Out* out;
  double divisor;
  __device__ void operator()(int64_t q, double a) const { out[q] = static_cast<Out>(a / divisor); }
};

template <typename Acc> struct PartialWriter {
  Acc* partial;
  __device__ void operator()(int64_t q, Acc a) const { partial[q] = a; }
};

template <typename T> struct MaxWriter {
  T* values;
  int64_t* indices;
  __device__ void operator()(int64_t q, MaxAcc<T> a) const {
    values[q] = a.v;
    indices[q] = a.i;
  }
};

// ---- rows ----

// Combines the team's accumulators in a fixed tree; the result is valid in lane 0 of the team. Every
// thread of the team must call it; for Team == kThreads, every thread of the block.
template <typename Op, int Team> __device__ typename Op::Acc team_reduce(typename Op::Acc a) {
  using Acc = typename Op::Acc;
  if constexpr (Team > 1) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) a = Op::combine(a, Op::shfl_down(a, o));
  }
  if constexpr (Team == kThreads) {
    __shared__ Acc warp_acc[kThreads / 32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    __syncthreads();  // the previous segment's reader (warp 0) is done with warp_acc
    if (lane == 0) warp_acc[warp] = a;
    __syncthreads();
    if (warp == 0) {
      a = lane < kThreads / 32 ? warp_acc[lane] : Op::identity();
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) a = Op::combine(a, Op::shfl_down(a, o));
    }
  }
  return a;
}

// Segment s = (row, chunk) = (s / chunks, s % chunks) covers x[row * len + begin, ... + n), begin =
// chunk * chunk_len (a multiple of W), n = min(chunk_len, len - begin); its result goes to w(s, .).
template <typename Op, int Team, typename In, typename Writer>
__global__ void __launch_bounds__(kThreads)
    row_reduce_kernel(const In* x, int64_t rows, int64_t len, int64_t chunks, int64_t chunk_len, Writer w) {
  using Acc = typename Op::Acc;
  constexpr int W = load_width<In>();
  constexpr int kTeams = kThreads / Team;
  const int lane = threadIdx.x % Team;
  const int64_t segments = rows * chunks;
  // The loop count is uniform over a team (and over the block when Team == kThreads).
  for (int64_t s = int64_t(blockIdx.x) * kTeams + threadIdx.x / Team; s < segments; s += int64_t(gridDim.x) * kTeams) {
    const int64_t row = s / chunks, begin = (s % chunks) * chunk_len;
    const int64_t n = min(chunk_len, len - begin);
    const In* p = x + row * len + begin;
    const int64_t full = n / W;  // whole groups; a last partial group follows
    Acc acc = Op::identity();
    bool vectorised = false;
    if constexpr (W > 1) vectorised = is_aligned16(p);
    if (vectorised) {
      if constexpr (W > 1) {
        const Vec<In>* pv = reinterpret_cast<const Vec<In>*>(p);
#pragma unroll 4
        for (int64_t g = lane; g < full; g += Team) {
          Vec<In> v = pv[g];
#pragma unroll
          for (int k = 0; k < W; ++k) acc = Op::combine(acc, Op::lift(v.v[k], begin + g * W + k));
        }
      }
    } else {
#pragma unroll 4
      for (int64_t g = lane; g < full; g += Team) {
#pragma unroll
        for (int k = 0; k < W; ++k) acc = Op::combine(acc, Op::lift(p[g * W + k], begin + g * W + k));
      }
    }
    if (full * W < n && lane == full % Team)  // the partial group, last in its lane's order
      for (int64_t j = full * W; j < n; ++j) acc = Op::combine(acc, Op::lift(p[j], begin + j));
    acc = team_reduce<Op, Team>(acc);
    if (lane == 0) w(s, acc);
  }
}

constexpr int64_t kTargetThreads = int64_t(1) << 18;       // about an H200 full (132 SMs x 2048 threads)
constexpr int64_t kTargetBlocks = kTargetThreads / kThreads;  // 1024 blocks of 256
constexpr int64_t kMinChunk = 16384;                        // elements per chunk when rows are cut
constexpr int64_t kMinRowsPerThread = 8;                    // rows per thread when columns are tiled

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }
int pow2_at_least(int64_t x, int cap) {
  int p = 1;
  while (p < x && p < cap) p *= 2;
  return p;
}

struct RowPlan {
  int team;
  int64_t chunks, chunk_len;
};

// A function of (rows, len) only.
RowPlan row_plan(int64_t rows, int64_t len) {
  int64_t chunks = 1;
  if (len > 2 * kMinChunk && rows < kTargetBlocks)
    chunks = std::min(ceil_div(kTargetBlocks, rows), ceil_div(len, kMinChunk));
  int64_t chunk_len = chunks == 1 ? len : round_up(ceil_div(len, chunks), 1024);
  chunks = ceil_div(len, chunk_len);
  int team = chunk_len <= 16 ? 1 : chunk_len <= 4096 ? 32 : kThreads;
  return {team, chunks, chunk_len};
}

unsigned blocks_for(int64_t tasks, int device) {
  int64_t cap = int64_t(::mom::cuda::multiprocessor_count(device)) * 32;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min(tasks, cap)));
}

template <typename Op, typename In, typename Writer>
void launch_rows(const In* x, int64_t rows, int64_t len, int64_t chunks, int64_t chunk_len, int team, Writer w,
                 int device) {
  cudaStream_t st = ::mom::cuda::stream(device);
  const int64_t segments = rows * chunks;
  if (team == 1)
    row_reduce_kernel<Op, 1, In, Writer><<<blocks_for(ceil_div(segments, kThreads), device), kThreads, 0, st>>>(
        x, rows, len, chunks, chunk_len, w);
  else if (team == 32)
    row_reduce_kernel<Op, 32, In, Writer><<<blocks_for(ceil_div(segments, kThreads / 32), device), kThreads, 0, st>>>(
        x, rows, len, chunks, chunk_len, w);
  else
    row_reduce_kernel<Op, kThreads, In, Writer><<<blocks_for(segments, device), kThreads, 0, st>>>(
        x, rows, len, chunks, chunk_len, w);
  MOM_CUDA_CHECK_LAUNCH();
}

// ---- columns ----

struct ColumnPlan {
  int64_t outer, len, inner;
  int64_t groups;  // column groups (W columns) per outer slice
  int bx, by, bz;  // block = bx x by x bz threads, tx fastest
  int64_t strips, oblocks, tiles, tile_len;
};

// A function of the shape (and W) only. Tiles when the columns alone give fewer than kTargetBlocks
// blocks: enough for about kTargetBlocks blocks, each thread keeping at least kMinRowsPerThread rows.
ColumnPlan column_plan(int64_t outer, int64_t len, int64_t inner, int W) {
  ColumnPlan p;
  p.outer = outer;
  p.len = len;
  p.inner = inner;
  p.groups = ceil_div(inner, W);
  p.bx = pow2_at_least(p.groups, 32);
  p.by = pow2_at_least(len, kThreads / p.bx);
  p.bz = pow2_at_least(outer, kThreads / (p.bx * p.by));
  p.strips = ceil_div(p.groups, p.bx);
  p.oblocks = ceil_div(outer, p.bz);
  p.tiles = 1;
  const int64_t blocks = p.strips * p.oblocks;
  if (blocks < kTargetBlocks)
    p.tiles = std::max<int64_t>(1, std::min(ceil_div(kTargetBlocks, blocks), len / (p.by * kMinRowsPerThread)));
  p.tile_len = round_up(ceil_div(len, p.tiles), p.by);
  p.tiles = ceil_div(len, p.tile_len);
  return p;
}

// Task (tile, outer block, strip); thread (tx, ty, tz) owns columns [g W, g W + W) of outer slice o
// and rows r0 + ty, r0 + ty + by, ... < r1 of the tile. Result of column c of slice o in tile t goes to
// w((t * outer + o) * inner + c, .).
template <typename Op, typename In, typename Writer>
__global__ void __launch_bounds__(kThreads) column_reduce_kernel(const In* x, ColumnPlan p, Writer w) {
  using Acc = typename Op::Acc;
  constexpr int W = load_width<In>();
  __shared__ Acc shared[kThreads][W];
  const int tid = threadIdx.x;
  const int tx = tid % p.bx, ty = (tid / p.bx) % p.by, tz = tid / (p.bx * p.by);
  const int64_t tasks = p.tiles * p.oblocks * p.strips;
  for (int64_t task = blockIdx.x; task < tasks; task += gridDim.x) {  // uniform over the block
    const int64_t strip = task % p.strips, rest = task / p.strips;
    const int64_t o = (rest % p.oblocks) * p.bz + tz, tile = rest / p.oblocks;
    const int64_t col = (strip * p.bx + tx) * W;
    const bool active = o < p.outer && col < p.inner;
    const int cols = active ? static_cast<int>(min(int64_t(W), p.inner - col)) : 0;
    Acc acc[W];
#pragma unroll
    for (int k = 0; k < W; ++k) acc[k] = Op::identity();
    if (active) {
      const In* base = x + o * p.len * p.inner + col;
      const int64_t r1 = min(p.len, (tile + 1) * p.tile_len);
      bool vectorised = false;
      if constexpr (W > 1) vectorised = cols == W && p.inner % W == 0 && is_aligned16(base);
      if (vectorised) {
        if constexpr (W > 1) {
#pragma unroll 4
          for (int64_t r = tile * p.tile_len + ty; r < r1; r += p.by) {
            Vec<In> v = *reinterpret_cast<const Vec<In>*>(base + r * p.inner);
#pragma unroll
            for (int k = 0; k < W; ++k) acc[k] = Op::combine(acc[k], Op::lift(v.v[k], r));
          }
        }
      } else {
#pragma unroll 4
        for (int64_t r = tile * p.tile_len + ty; r < r1; r += p.by) {
          const In* row = base + r * p.inner;
#pragma unroll
          for (int k = 0; k < W; ++k)
            if (k < cols) acc[k] = Op::combine(acc[k], Op::lift(row[k], r));
        }
      }
    }
    __syncthreads();  // the previous task's tree is done with `shared`
#pragma unroll
    for (int k = 0; k < W; ++k) shared[tid][k] = acc[k];
    __syncthreads();
    for (int step = p.by / 2; step > 0; step /= 2) {  // ty combines with ty + step: a fixed tree
      if (ty < step) {
#pragma unroll
        for (int k = 0; k < W; ++k) shared[tid][k] = Op::combine(shared[tid][k], shared[tid + step * p.bx][k]);
      }
      __syncthreads();
    }
    if (ty == 0)
      for (int k = 0; k < cols; ++k) w((tile * p.outer + o) * p.inner + col + k, shared[tid][k]);
  }
}

template <typename Op, typename In, typename Writer>
void launch_columns(const In* x, const ColumnPlan& p, Writer w, int device) {
  const int threads = p.bx * p.by * p.bz;
  column_reduce_kernel<Op, In, Writer><<<blocks_for(p.tiles * p.oblocks * p.strips, device), threads, 0,
                                         ::mom::cuda::stream(device)>>>(x, p, w);
  MOM_CUDA_CHECK_LAUNCH();
}

// Scratch for n accumulators, a Tensor of the stream-ordered pool (freed after the work queued on it).
template <typename Acc> Tensor scratch(int64_t n, Device device) {
  return empty({n * static_cast<int64_t>(sizeof(Acc))}, DType::u8, device);
}

// w(q, result) for q = o * inner + i, the reduction over r of x[(o * len + r) * inner + i]. When pass 1
// writes partials, they are reduced by the same function: (outer, chunks, 1) for rows, which never
// needs chunks again (chunks <= kTargetBlocks); (1, tiles, outer * inner) for columns, which may need
// tiles again when the columns are few (tiles <= len / 8, so the recursion ends).
template <typename Op, typename In, typename Writer>
void reduce_3d(const In* x, int64_t outer, int64_t len, int64_t inner, Writer w, Device device) {
  using Acc = typename Op::Acc;
  const int dev = device.index;
  if (inner == 1) {
    RowPlan p = row_plan(outer, len);
    if (p.chunks == 1) {
      launch_rows<Op>(x, outer, len, 1, len, p.team, w, dev);
      return;
    }
    Tensor partial = scratch<Acc>(outer * p.chunks, device);
    Acc* pp = static_cast<Acc*>(partial.raw_data());
    launch_rows<Op>(x, outer, len, p.chunks, p.chunk_len, p.team, PartialWriter<Acc>{pp}, dev);
    reduce_3d<Op>(static_cast<const Acc*>(pp), outer, p.chunks, 1, w, device);
    return;
  }
  ColumnPlan p = column_plan(outer, len, inner, load_width<In>());
  if (p.tiles == 1) {
    launch_columns<Op>(x, p, w, dev);
    return;
  }
  Tensor partial = scratch<Acc>(p.tiles * outer * inner, device);
  Acc* pp = static_cast<Acc*>(partial.raw_data());
  launch_columns<Op>(x, p, PartialWriter<Acc>{pp}, dev);
  reduce_3d<Op>(static_cast<const Acc*>(pp), 1, p.tiles, outer * inner, w, device);
}

// ---- sum over any set of dims ----

struct Group {
  int64_t size;
  bool reduced;
};

// Reduces the innermost reduced group, then (into double intermediates) the next, until none is left.
template <typename T, typename In>
void sum_steps(const In* x, std::vector<Group> groups, T* out, double divisor, Device device) {
  size_t k = groups.size() - 1;
  while (!groups[k].reduced) --k;
  int64_t outer = 1, inner = 1, len = groups[k].size;
  for (size_t g = 0; g < groups.size(); ++g) {
    if (g < k) outer *= groups[g].size;
    if (g > k) inner *= groups[g].size;
  }
  groups.erase(groups.begin() + k);
  if (k > 0 && k < groups.size()) {  // the kept neighbours of the removed group merge
    groups[k - 1].size *= groups[k].size;
    groups.erase(groups.begin() + k);
  }
  bool more = false;
  for (const Group& g : groups) more = more || g.reduced;
  if (!more) {
    reduce_3d<SumOp>(x, outer, len, inner, SumWriter<T>{out, divisor}, device);
    return;
  }
  Tensor next = empty({outer * inner}, DType::f64, device);
  reduce_3d<SumOp>(x, outer, len, inner, SumWriter<double>{next.data<double>(), 1.0}, device);
  sum_steps<T, double>(next.data<double>(), groups, out, divisor, device);
}

std::vector<bool> reduced_mask(int64_t ndim, const std::vector<int64_t>& dims, const char* op) {
  std::vector<bool> mask(ndim, false);
  for (int64_t d : dims) mask[wrap_dim(d, ndim, op)] = true;
  return mask;
}

Shape reduced_shape(const Shape& shape, const std::vector<bool>& mask, bool keepdim) {
  Shape out;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (!mask[d]) out.push_back(shape[d]);
    else if (keepdim) out.push_back(1);
  }
  return out;
}

double reduced_count(const Shape& shape, const std::vector<bool>& mask) {
  int64_t count = 1;
  for (size_t d = 0; d < shape.size(); ++d)
    if (mask[d]) count *= shape[d];
  return static_cast<double>(count);
}

Tensor sum_or_mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim, bool is_mean) {
  const char* op = is_mean ? "mean" : "sum";
  std::vector<bool> mask = reduced_mask(x.dim(), dims, op);
  Shape out_shape = reduced_shape(x.shape(), mask, keepdim);
  if (x.numel() == 0) return full(out_shape, is_mean ? NAN : 0.0, x.dtype(), x.device());
  Tensor y = empty(out_shape, x.dtype(), x.device());
  sum_reduce(x, mask, y, is_mean ? reduced_count(x.shape(), mask) : 1.0);
  return y;
}

// dx[i] = T(dy[offset of i's kept coordinates] / divisor).
template <typename T, typename Index>
__global__ void broadcast_back_kernel(const T* dy, T* dx, StridedLayout2 l, Index n, double divisor) {
  const Index stride = Index(gridDim.x) * blockDim.x;
  for (Index i = Index(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    int64_t o_dx, o_dy;
    ::mom::cuda::offsets2(i, l, o_dx, o_dy);
    dx[o_dx] = static_cast<T>(static_cast<double>(dy[o_dy]) / divisor);
  }
}

// dy's layout is the same with or without keepdim (size-1 dims move no element).
Tensor broadcast_back(const Tensor& dy, const Shape& x_shape, const std::vector<int64_t>& dims, bool is_mean) {
  const char* op = is_mean ? "mean" : "sum";
  std::vector<bool> mask = reduced_mask(static_cast<int64_t>(x_shape.size()), dims, op);
  const double divisor = is_mean ? reduced_count(x_shape, mask) : 1.0;
  Shape st = contiguous_strides(reduced_shape(x_shape, mask, true));
  for (size_t d = 0; d < x_shape.size(); ++d)
    if (mask[d]) st[d] = 0;
  const int device = dy.device().index;
  ::mom::cuda::DeviceGuard guard(device);
  Tensor dx = empty(x_shape, dy.dtype(), dy.device());
  const int64_t n = dx.numel();
  if (n == 0) return dx;
  StridedLayout2 l = ::mom::cuda::coalesce2(x_shape, contiguous_strides(x_shape), st, op);
  cudaStream_t s = ::mom::cuda::stream(device);
  dispatch_float(dy.dtype(), op, [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    const scalar_t* gp = dy.data<scalar_t>();
    scalar_t* dp = dx.data<scalar_t>();
    if (n <= INT32_MAX)
      broadcast_back_kernel<scalar_t, uint32_t><<<grid_for(n, device), kThreads, 0, s>>>(gp, dp, l, uint32_t(n), divisor);
    else
      broadcast_back_kernel<scalar_t, uint64_t><<<grid_for(n, device), kThreads, 0, s>>>(gp, dp, l, uint64_t(n), divisor);
    MOM_CUDA_CHECK_LAUNCH();
  });
  return dx;
}

// dx[o, idx[q], i] = dy[q] for q = (o, i); dx is zero elsewhere. Bad indices are reported, not written.
template <typename T>
__global__ void max_scatter_kernel(const T* dy, const int64_t* idx, T* dx, int64_t m, int64_t n, int64_t inner,
                                   BadIndexReport bad) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t q = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; q < m; q += stride) {
    const int64_t k = idx[q];
    if (k < 0 || k >= n) {
      bad(q);
      continue;
    }
    dx[(q / inner) * n * inner + k * inner + q % inner] = dy[q];
  }
}

// dx = zeros(x_shape) with the m elements of dy scattered along a dim of size n (inner elements after it).
Tensor max_scatter(const Tensor& dy, const Tensor& indices, const Shape& x_shape, int64_t n, int64_t inner) {
  const int device = dy.device().index;
  ::mom::cuda::DeviceGuard guard(device);
  Tensor dx = zeros(x_shape, dy.dtype(), dy.device());
  const int64_t m = dy.numel();
  if (m == 0) return dx;
  BadIndex bad(dy.device());
  dispatch_float(dy.dtype(), "max", [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    max_scatter_kernel<scalar_t><<<grid_for(m, device), kThreads, 0, ::mom::cuda::stream(device)>>>(
        dy.data<scalar_t>(), indices.data<int64_t>(), dx.data<scalar_t>(), m, n, inner, bad.report());
    MOM_CUDA_CHECK_LAUNCH();
  });
  const int64_t first = bad.first();  // host synchronisation: the indices live on the device
  if (first >= 0)
    MOM_THROW("max", "index " << index_value_at(indices, first) << " is out of range for a dim of size " << n);
  return dx;
}

}  // namespace

void sum_reduce(const Tensor& x, const std::vector<bool>& reduced, const Tensor& out, double divisor) {
  std::vector<Group> groups;
  const Shape& shape = x.shape();
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    if (!groups.empty() && groups.back().reduced == reduced[d]) groups.back().size *= shape[d];
    else groups.push_back({shape[d], static_cast<bool>(reduced[d])});
  }
  const int device = x.device().index;
  ::mom::cuda::DeviceGuard guard(device);
  bool any = false;
  for (const Group& g : groups) any = any || g.reduced;
  if (!any) {  // nothing of size > 1 is reduced: out = x (the divisor, a product of 1s, is 1)
    ::mom::cuda::copy_device_to_device(out.raw_data(), x.raw_data(), x.numel() * dtype_size(x.dtype()), device);
    return;
  }
  dispatch_float(x.dtype(), "sum", [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    sum_steps<scalar_t, scalar_t>(x.data<scalar_t>(), groups, out.data<scalar_t>(), divisor, x.device());
  });
}

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return sum_or_mean(x, dims, keepdim, false);
}

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return sum_or_mean(x, dims, keepdim, true);
}

Tensor sum_backward(const Tensor& dy, const Shape& x_shape, const std::vector<int64_t>& dims, bool) {
  return broadcast_back(dy, x_shape, dims, false);
}

Tensor mean_backward(const Tensor& dy, const Shape& x_shape, const std::vector<int64_t>& dims, bool) {
  return broadcast_back(dy, x_shape, dims, true);
}

MaxResult max(const Tensor& x, int64_t dim, bool keepdim) {
  const Shape& shape = x.shape();
  const int64_t d = wrap_dim(dim, x.dim(), "max");
  std::vector<bool> mask(shape.size(), false);
  mask[d] = true;
  Shape out_shape = reduced_shape(shape, mask, keepdim);
  MaxResult r{empty(out_shape, x.dtype(), x.device()), empty(out_shape, DType::i64, x.device())};
  if (r.values.numel() == 0) return r;
  const int64_t outer = shape_numel(Shape(shape.begin(), shape.begin() + d));
  const int64_t inner = shape_numel(Shape(shape.begin() + d + 1, shape.end()));
  ::mom::cuda::DeviceGuard guard(x.device().index);
  dispatch_float(x.dtype(), "max", [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    reduce_3d<MaxOp<scalar_t>>(x.data<scalar_t>(), outer, shape[d], inner,
                               MaxWriter<scalar_t>{r.values.data<scalar_t>(), r.indices.data<int64_t>()}, x.device());
  });
  return r;
}

Tensor max_backward(const Tensor& dy, const Tensor& indices, const Shape& x_shape, int64_t dim, bool) {
  const int64_t d = wrap_dim(dim, static_cast<int64_t>(x_shape.size()), "max");
  const int64_t inner = shape_numel(Shape(x_shape.begin() + d + 1, x_shape.end()));
  return max_scatter(dy, indices, x_shape, x_shape[d], inner);
}

MaxResult max_all(const Tensor& x) {
  MaxResult r{empty({}, x.dtype(), x.device()), empty({}, DType::i64, x.device())};
  ::mom::cuda::DeviceGuard guard(x.device().index);
  dispatch_float(x.dtype(), "max", [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    reduce_3d<MaxOp<scalar_t>>(x.data<scalar_t>(), 1, x.numel(), 1,
                               MaxWriter<scalar_t>{r.values.data<scalar_t>(), r.indices.data<int64_t>()}, x.device());
  });
  return r;
}

Tensor max_all_backward(const Tensor& dy, const Tensor& index, const Shape& x_shape) {
  return max_scatter(dy, index, x_shape, shape_numel(x_shape), 1);
}

}  // namespace mom::kernels::cuda
