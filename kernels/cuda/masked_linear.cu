// CUDA versions of kernels/masked_linear.h, called after the public functions' checks
// (kernels/cpu/masked_linear.cpp).
//
// masked_linear. Forward, per modality present, on GEMM lane m (blas.cuh): gather its rows of x into
// grouped order, one cuBLAS GEMM with its bias added by the GEMM (with the algorithm of the whole
// T-row GEMM), then scatter its grouped rows of y into token order in a second buffer. The lanes run
// side by side, so one modality's row moves overlap the others' GEMMs; they are joined at the end.
// As on the CPU, the GEMMs write a grouped-order buffer and the scatter moves its rows into y, a second
// (T, Out) buffer, so that the move is one parallel pass. Backward, per modality on lane m: gather
// its rows of dy (and of x for the weight gradients), dx_m = dy_m W_m into grouped order, scatter dx_m
// to token order, dW_m = dy_m^T x_m, db_m = column sums of dy_m.
// With perm the identity (ids already sorted), or a side already in grouped order (RowOrder), that
// side's rows are used in place. Outputs in column parts (masked_linear_split) are written by the
// scatter straight into the parts, or, for a grouped y, by one GEMM per part (gemm_per_part below).
//
// Row moves: a group of L lanes (the power of two >= the row's units, at most 32) per row, grid-stride
// over rows, 256 threads per block; units are 16-byte vectors (float4 / double2) when the row length
// is a multiple of 16 bytes and every pointer is 16-byte aligned, single values otherwise. A lane
// loads up to 8 units before storing them (a row of 768 floats is 6 per lane). Each element is read
// once and written once. Column sums: blocks of 32 columns x 8 row lanes over chunks
// of at least 64 rows (at most 256 chunks per modality), each block's partial sums in double added in
// a fixed order, then one thread per column adds the chunks' partials in order: no atomics, the same
// bits every run. The GEMMs are cuBLAS's (kernels/cuda/blas.cuh), deterministic on one stream.
// Indices are 64-bit throughout.
//
// bf16: x, the weights, dy, y, dx and dweight bf16 (rows move as 2-byte values, 8 to a 16-byte
// vector), the biases and dbias float32. The GEMMs accumulate in float32 and round each output once;
// the bias is added by the GEMM (cuBLASLt's epilogue, or blas.cuh's float32 fallback) to the float32
// value before that rounding, and the scatter moves the rounded rows unchanged, so y rounds once. The
// bias sums read bf16 dy and sum in double as for float. dx of several dy parts is one GEMM over the
// parts gathered side by side (never one GEMM per part added with beta = 1, which would round the
// running sum after every part).
#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "core/cuda/memory.h"
#include "kernels/cuda/blas.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/masked_linear.h"

namespace mom::kernels::cuda {

namespace {

constexpr const char* kOp = "masked_linear";
// ---- row moves ----

// A row of `width` units cut into column parts, each its own (rows, part width) matrix: part k holds
// units [end[k-1], end[k]) of every row (end[-1] = 0, end[count-1] = width). One part is a plain
// matrix; several are the outputs of kernels::split(y, sizes, 1) (or the inputs of cat) without the copy.
constexpr int kMaxParts = 4;

template <typename U> struct RowParts {
  U* ptr[kMaxParts];
  int64_t end[kMaxParts];
  int count;
};

// Units in flight per lane: a lane loads up to kMoveUnroll units before it stores any, so that a row
// costs a few memory latencies rather than one per unit (a row of 768 floats is 6 units per lane).
constexpr int kMoveUnroll = 8;

// d[j] = s[j] for j = first, first + lanes, ... < end.
template <typename U>
__device__ inline void copy_units(const U* __restrict__ s, U* __restrict__ d, int64_t first, int64_t end,
                                  int64_t lanes) {
  for (int64_t j0 = first; j0 < end; j0 += kMoveUnroll * lanes) {
    U v[kMoveUnroll];
#pragma unroll
    for (int u = 0; u < kMoveUnroll; ++u)
      if (j0 + u * lanes < end) v[u] = s[j0 + u * lanes];
#pragma unroll
    for (int u = 0; u < kMoveUnroll; ++u)
      if (j0 + u * lanes < end) d[j0 + u * lanes] = v[u];
  }
}

// dst[p, :] = src[perm[p], :] for p < rows (src[p, :] when perm is null); 2^lanes_log2 lanes per row,
// which copy the row part by part (fixed part indices: the parts stay in registers).
template <typename U>
__global__ void gather_rows_kernel(RowParts<const U> src, const int64_t* __restrict__ perm, int64_t rows,
                                   int64_t width, int lanes_log2, U* __restrict__ dst) {
  const int64_t thread = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t lanes = int64_t(1) << lanes_log2, lane = thread & (lanes - 1);
  const int64_t step = (int64_t(gridDim.x) * blockDim.x) >> lanes_log2;  // blockDim.x is a multiple of 32
  for (int64_t p = thread >> lanes_log2; p < rows; p += step) {
    const int64_t row = perm ? perm[p] : p;
    int64_t begin = 0;
#pragma unroll
    for (int k = 0; k < kMaxParts; ++k) {
      if (k >= src.count) break;
      const int64_t w = src.end[k] - begin;
      copy_units(src.ptr[k] + row * w, dst + p * width + begin, lane, w, lanes);
      begin = src.end[k];
    }
  }
}

// dst[perm[p], :] = src[p, :] for p < rows (dst[p, :] when perm is null).
template <typename U>
__global__ void scatter_rows_kernel(const U* __restrict__ src, const int64_t* __restrict__ perm, int64_t rows,
                                    int64_t width, int lanes_log2, RowParts<U> dst) {
  const int64_t thread = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t lanes = int64_t(1) << lanes_log2, lane = thread & (lanes - 1);
  const int64_t step = (int64_t(gridDim.x) * blockDim.x) >> lanes_log2;
  for (int64_t p = thread >> lanes_log2; p < rows; p += step) {
    const int64_t row = perm ? perm[p] : p;
    int64_t begin = 0;
#pragma unroll
    for (int k = 0; k < kMaxParts; ++k) {
      if (k >= dst.count) break;
      const int64_t w = dst.end[k] - begin;
      copy_units(src + p * width + begin, dst.ptr[k] + row * w, lane, w, lanes);
      begin = dst.end[k];
    }
  }
}

// The lanes per row: the power of two >= units, at most a warp.
int lanes_log2_for(int64_t units) {
  int l = 0;
  while (l < 5 && (int64_t(1) << l) < units) ++l;
  return l;
}

// One column part of a row-major matrix on the host side: its data and its number of columns.
template <typename T> struct Part {
  T* data;
  int64_t cols;
};

// Whole 16-byte vectors fit every part and every pointer is 16-byte aligned.
template <typename T, typename P> bool parts_vectorisable(const std::vector<Part<P>>& parts, const T* a, const T* b) {
  bool ok = aligned16(a) && (b == nullptr || aligned16(b));
  for (const Part<P>& q : parts) ok = ok && (q.cols * int64_t(sizeof(T))) % 16 == 0 && aligned16(q.data);
  return ok;
}

// The parts in units U (T values, or 16-byte vectors of them when vec).
template <typename U, typename T, typename P> RowParts<U> row_parts(const std::vector<Part<P>>& parts, bool vec) {
  MOM_CHECK(!parts.empty() && parts.size() <= static_cast<size_t>(kMaxParts), kOp,
            "outputs are cut into 1 to " << kMaxParts << " parts, got " << parts.size());
  RowParts<U> r{};
  r.count = static_cast<int>(parts.size());
  int64_t end = 0;
  for (int k = 0; k < r.count; ++k) {
    r.ptr[k] = reinterpret_cast<U*>(parts[k].data);
    end += vec ? parts[k].cols / Vec<T>::width : parts[k].cols;
    r.end[k] = end;
  }
  return r;
}

// dst (rows, C) = rows perm[0 .. rows) (0 .. rows when perm is null) of the parts of src, side by side
// (C = their columns), on stream st of the device.
template <typename T>
void gather_rows(const std::vector<Part<const T>>& src, const int64_t* perm, int64_t rows, T* dst, int device,
                 cudaStream_t st) {
  if (rows == 0) return;
  int64_t C = 0;
  for (const Part<const T>& q : src) C += q.cols;
  if (parts_vectorisable<T>(src, dst, static_cast<const T*>(nullptr))) {
    const int64_t width = C / Vec<T>::width;
    const int l = lanes_log2_for(width);
    gather_rows_kernel<Vec<T>><<<grid_for(rows << l, device), kThreads, 0, st>>>(
        row_parts<const Vec<T>, T>(src, true), perm, rows, width, l, reinterpret_cast<Vec<T>*>(dst));
  } else {
    const int l = lanes_log2_for(C);
    gather_rows_kernel<T><<<grid_for(rows << l, device), kThreads, 0, st>>>(row_parts<const T, T>(src, false), perm,
                                                                           rows, C, l, dst);
  }
  MOM_CUDA_CHECK_LAUNCH();
}

template <typename T>
void gather_rows(const T* src, const int64_t* perm, int64_t rows, int64_t C, T* dst, int device, cudaStream_t st) {
  gather_rows<T>({Part<const T>{src, C}}, perm, rows, dst, device, st);
}

// Row p of src (rows, C) to row perm[p] (p when perm is null) of the parts of dst, on stream st.
template <typename T>
void scatter_rows(const T* src, const int64_t* perm, int64_t rows, const std::vector<Part<T>>& dst, int device,
                  cudaStream_t st) {
  if (rows == 0) return;
  int64_t C = 0;
  for (const Part<T>& q : dst) C += q.cols;
  if (parts_vectorisable<T>(dst, src, static_cast<const T*>(nullptr))) {
    const int64_t width = C / Vec<T>::width;
    const int l = lanes_log2_for(width);
    scatter_rows_kernel<Vec<T>><<<grid_for(rows << l, device), kThreads, 0, st>>>(
        reinterpret_cast<const Vec<T>*>(src), perm, rows, width, l, row_parts<Vec<T>, T>(dst, true));
  } else {
    const int l = lanes_log2_for(C);
    scatter_rows_kernel<T><<<grid_for(rows << l, device), kThreads, 0, st>>>(src, perm, rows, C, l,
                                                                            row_parts<T, T>(dst, false));
  }
  MOM_CUDA_CHECK_LAUNCH();
}

// ---- column sums (the bias gradient) ----

constexpr int kSumCols = 32, kSumRowLanes = 8;  // 256 threads per block
constexpr int64_t kMinChunkRows = 64, kMaxChunks = 256;

struct Chunks {
  int64_t rows, count;
};

Chunks chunks_for(int64_t n) {
  const int64_t rows = std::max(kMinChunkRows, (n + kMaxChunks - 1) / kMaxChunks);
  return {rows, (n + rows - 1) / rows};
}

// partial[c, j] = sum of g[r, j] over the rows r of chunk c (blockIdx.y), in double: row lane y sums
// rows r0 + y, r0 + y + 8, ..., then the 8 lanes are added in order.
template <typename T>
__global__ void column_partials_kernel(const T* __restrict__ g, int64_t rows, int64_t C, int64_t chunk_rows,
                                       double* __restrict__ partial) {
  __shared__ double lanes[kSumRowLanes][kSumCols];
  const int64_t j = int64_t(blockIdx.x) * kSumCols + threadIdx.x;
  const int64_t chunk = blockIdx.y;
  const int64_t r0 = chunk * chunk_rows, r1 = min(rows, r0 + chunk_rows);
  double acc = 0;
  if (j < C)
    for (int64_t r = r0 + threadIdx.y; r < r1; r += kSumRowLanes) acc += static_cast<double>(g[r * C + j]);
  lanes[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && j < C) {
    double total = 0;
#pragma unroll
    for (int y = 0; y < kSumRowLanes; ++y) total += lanes[y][threadIdx.x];
    partial[chunk * C + j] = total;
  }
}

// out[j] = sum over chunks c in order of partial[c, j].
template <typename T>
__global__ void column_totals_kernel(const double* __restrict__ partial, int64_t chunks, int64_t C,
                                     T* __restrict__ out) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; j < C; j += stride) {
    double total = 0;
    for (int64_t c = 0; c < chunks; ++c) total += partial[c * C + j];
    out[j] = static_cast<T>(total);
  }
}

// out (C) = column sums of g (rows, C), rows >= 1, on stream st; partial holds chunks_for(rows).count * C
// doubles. O: T, or float beside bf16 g.
template <typename T, typename O>
void column_sums(const T* g, int64_t rows, int64_t C, double* partial, O* out, int device, cudaStream_t st) {
  const Chunks ch = chunks_for(rows);
  const dim3 grid(static_cast<unsigned>((C + kSumCols - 1) / kSumCols), static_cast<unsigned>(ch.count));
  column_partials_kernel<T><<<grid, dim3(kSumCols, kSumRowLanes), 0, st>>>(g, rows, C, ch.rows, partial);
  MOM_CUDA_CHECK_LAUNCH();
  column_totals_kernel<O><<<grid_for(C, device), kThreads, 0, st>>>(partial, ch.count, C, out);
  MOM_CUDA_CHECK_LAUNCH();
}

int64_t present_modalities(const Routing& r) {
  return std::count_if(r.counts.begin(), r.counts.end(), [](int64_t n) { return n > 0; });
}

}  // namespace


namespace {

// A grouped y in several parts: one GEMM per part (x read once more per extra part) when that moves
// fewer bytes than one GEMM and a copy of y into the parts (y read and written once more).
bool gemm_per_part(const std::vector<int64_t>& split, int64_t In, int64_t Out) {
  return split.size() > 1 && (static_cast<int64_t>(split.size()) - 1) * In < 2 * Out;
}

}  // namespace

std::vector<Tensor> masked_linear_forward(const Tensor& x, const Routing& routing, const std::vector<Tensor>& weight,
                                          const std::vector<Tensor>& bias, const std::vector<int64_t>& split,
                                          RowOrder order) {
  const int64_t T = x.size(0), In = x.size(1), Out = weight[0].size(0), M = routing.num_modalities;
  const int device = x.device().index;
  std::vector<Tensor> ys;
  for (int64_t cols : split) ys.push_back(empty({T, cols}, x.dtype(), x.device()));
  if (T == 0) return ys;
  dispatch_gemm(x.dtype(), kOp, [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    using acc = gemm_acc_t<scalar_t>;  // the bias's type
    // A side whose rows are already in grouped order (or whose routing is the identity) moves none.
    const bool x_direct = routing.perm_is_identity || order.x_grouped;
    const bool y_direct = routing.perm_is_identity || order.y_grouped;
    const bool per_part = y_direct && gemm_per_part(split, In, Out);
    const bool y_whole = y_direct && ys.size() == 1;  // the GEMMs write y itself
    const int64_t* perm = routing.perm.data<int64_t>();
    Tensor xg_t = x_direct ? x : empty({T, In}, x.dtype(), x.device());
    Tensor yg_t = y_whole ? ys[0] : per_part ? Tensor() : empty({T, Out}, x.dtype(), x.device());
    ::mom::cuda::DeviceGuard guard(device);
    scalar_t* xg = xg_t.data<scalar_t>();
    // Modality m's rows move on lane m, before and after its GEMMs: one modality's moves overlap the
    // others' GEMMs.
    GemmLanes lanes(device, present_modalities(routing) > 1);
    for (int64_t m = 0; m < M; ++m) {
      const int64_t off = routing.offsets[m], n = routing.counts[m];
      if (n == 0) continue;
      const scalar_t* w = weight[m].data<scalar_t>();
      const acc* b = bias.empty() ? nullptr : bias[m].data<acc>();
      cublasHandle_t lane = lanes.handle(static_cast<int>(m));
      cudaStream_t st = lanes.stream(static_cast<int>(m));
      if (!x_direct) gather_rows(x.data<scalar_t>(), perm + off, n, In, xg + off * In, device, st);
      if (!per_part) {  // y_m (n, Out) = x_m (n, In) @ weight[m]^T + bias[m]
        Gemm<scalar_t> g(false, true, n, Out, In, xg + off * In, In, w, In, yg_t.data<scalar_t>() + off * Out, Out);
        g.bias = b, g.plan_m = T;
        gemm(device, g, lane);
        if (y_whole) continue;
        // y_m's rows to their tokens (the same rows when y is grouped), in the parts
        std::vector<Part<scalar_t>> dst;
        for (size_t k = 0; k < ys.size(); ++k)
          dst.push_back({ys[k].data<scalar_t>() + (y_direct ? off * split[k] : 0), split[k]});
        scatter_rows<scalar_t>(yg_t.data<scalar_t>() + off * Out, y_direct ? nullptr : perm + off, n, dst, device, st);
        continue;
      }
      int64_t start = 0;  // part k of y_m (n, cols) = x_m @ (rows [start, start + cols) of weight[m])^T + its bias
      for (size_t k = 0; k < ys.size(); start += split[k], ++k) {
        Gemm<scalar_t> g(false, true, n, split[k], In, xg + off * In, In, w + start * In, In,
                         ys[k].data<scalar_t>() + off * split[k], split[k]);
        g.bias = b ? b + start : nullptr, g.plan_m = T;
        gemm(device, g, lane);
      }
    }
    lanes.join();
  });
  return ys;
}

MaskedLinearGrads masked_linear_backward(const std::vector<Tensor>& dy, const Tensor& x, const Routing& routing,
                                         const std::vector<Tensor>& weight, bool has_bias, bool need_dx,
                                         bool need_dparams, RowOrder order) {
  const int64_t T = x.size(0), In = x.size(1), Out = weight[0].size(0), M = routing.num_modalities;
  const int device = x.device().index;
  MaskedLinearGrads grads;
  grads.dweight.resize(M);
  if (has_bias) grads.dbias.resize(M);
  if (need_dx) grads.dx = empty({T, In}, x.dtype(), x.device());
  if (T == 0 || !(need_dx || need_dparams)) return grads;
  std::vector<int64_t> split;
  for (const Tensor& d : dy) split.push_back(d.size(1));
  dispatch_gemm(x.dtype(), kOp, [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    using acc = gemm_acc_t<scalar_t>;  // the bias gradient's type
    const bool x_direct = routing.perm_is_identity || order.x_grouped;
    const bool y_direct = routing.perm_is_identity || order.y_grouped;
    // bf16 takes dy's parts gathered into one matrix: dx in one GEMM, rounded once (the header).
    const bool per_part = y_direct && gemm_per_part(split, In, Out) && !std::is_same_v<scalar_t, bf16>;
    const int64_t* perm = routing.perm.data<int64_t>();
    ::mom::cuda::DeviceGuard guard(device);
    // dy in grouped order as one matrix (unless its parts are used one by one), x (for the weight
    // gradients) and dx in grouped order: the tensors themselves where they already are.
    Tensor dyg_t = per_part ? Tensor() : (y_direct && dy.size() == 1) ? dy[0] : empty({T, Out}, x.dtype(), x.device());
    const bool gather_dy = !per_part && !(y_direct && dy.size() == 1);
    Tensor xg_t = !need_dparams ? Tensor() : x_direct ? x : empty({T, In}, x.dtype(), x.device());
    Tensor dxg_t = !need_dx ? Tensor() : x_direct ? grads.dx : empty({T, In}, x.dtype(), x.device());
    // The parts of dy_m (one part: dy_m itself): data at row off, columns, first row of the weight.
    struct DyPart {
      const scalar_t* data;
      int64_t cols, start;
    };
    auto dy_parts = [&](int64_t off) {
      std::vector<DyPart> parts;
      if (!per_part) return std::vector<DyPart>{{dyg_t.data<scalar_t>() + off * Out, Out, 0}};
      int64_t start = 0;
      for (size_t k = 0; k < dy.size(); start += split[k], ++k)
        parts.push_back({dy[k].data<scalar_t>() + off * split[k], split[k], start});
      return parts;
    };
    // Scratch of the bias sums: each present modality's chunks, one after another.
    std::vector<int64_t> partial_at(M, 0);
    int64_t partial_len = 0;
    for (int64_t m = 0; m < M && has_bias && need_dparams; ++m) {
      partial_at[m] = partial_len;
      if (routing.counts[m] > 0) partial_len += chunks_for(routing.counts[m]).count * Out;
    }
    Tensor partial = partial_len > 0 ? empty({partial_len}, DType::f64, x.device()) : Tensor();
    for (int64_t m = 0; m < M && need_dparams; ++m) {  // every output exists before the lanes fork
      if (routing.counts[m] == 0) continue;               // an absent expert: undefined gradients
      grads.dweight[m] = empty({Out, In}, x.dtype(), x.device());
      if (has_bias) grads.dbias[m] = empty({Out}, acc_dtype(x.dtype()), x.device());
    }
    // Everything of modality m runs on lane m: its rows of dy (and x) gathered, its GEMMs and bias sums,
    // its rows of dx scattered; one modality's moves overlap the others' GEMMs.
    GemmLanes lanes(device, present_modalities(routing) > 1);
    for (int64_t m = 0; m < M; ++m) {
      const int64_t off = routing.offsets[m], n = routing.counts[m];
      if (n == 0) continue;  // an absent expert: no work
      const scalar_t* w = weight[m].data<scalar_t>();
      cublasHandle_t lane = lanes.handle(static_cast<int>(m));
      cudaStream_t st = lanes.stream(static_cast<int>(m));
      if (gather_dy) {  // dy_m's rows, from the parts side by side (the same rows when dy is grouped)
        std::vector<Part<const scalar_t>> src;
        for (const Tensor& d : dy) src.push_back({d.data<scalar_t>() + (y_direct ? off * d.size(1) : 0), d.size(1)});
        gather_rows<scalar_t>(src, y_direct ? nullptr : perm + off, n, dyg_t.data<scalar_t>() + off * Out, device, st);
      }
      if (need_dparams && !x_direct)
        gather_rows(x.data<scalar_t>(), perm + off, n, In, xg_t.data<scalar_t>() + off * In, device, st);
      const std::vector<DyPart> parts = dy_parts(off);
      // dx_m (n, In) = sum over parts of dy_m,k (n, cols) @ rows [start, start + cols) of weight[m]
      for (size_t k = 0; k < parts.size() && need_dx; ++k) {
        Gemm<scalar_t> g(false, false, n, In, parts[k].cols, parts[k].data, parts[k].cols, w + parts[k].start * In, In,
                         dxg_t.data<scalar_t>() + off * In, In);
        g.beta = acc(k == 0 ? 0 : 1), g.plan_m = T;
        gemm(device, g, lane);
      }
      if (need_dx && !x_direct)
        scatter_rows<scalar_t>(dxg_t.data<scalar_t>() + off * In, perm + off, n, {{grads.dx.data<scalar_t>(), In}}, device,
                               st);
      if (!need_dparams) continue;
      for (const DyPart& q : parts) {
        // rows [start, start + cols) of dweight[m] = dy_m,k^T (cols, n) @ x_m (n, In)
        Gemm<scalar_t> g(true, false, q.cols, In, n, q.data, q.cols, xg_t.data<scalar_t>() + off * In, In,
                         grads.dweight[m].data<scalar_t>() + q.start * In, In);
        g.plan_k = T;
        gemm(device, g, lane);
        if (has_bias)
          column_sums(q.data, n, q.cols, partial.data<double>() + partial_at[m] + chunks_for(n).count * q.start,
                      grads.dbias[m].data<acc>() + q.start, device, st);
      }
    }
    lanes.join();
  });
  return grads;
}

}  // namespace mom::kernels::cuda
