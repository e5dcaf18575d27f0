// CUDA versions of kernels/embedding.h, called by the public functions (kernels/cpu/embedding.cpp)
// after their argument checks. f32 and f64 weights, int32 and int64 ids.
//
// Forward: one warp per position copies its weight row into y, in 16-byte vectors when D is a
// multiple of the vector width and both pointers are 16-byte aligned (scalars otherwise); warps
// stride over positions. An id outside [0, V) copies nothing and is reported to a BadIndex cell
// (kernels/cuda/bad_index.cuh: an integer atomicMin keeps the FIRST bad position whatever the
// timing). The host reads the cell once after the launch (a synchronisation: the error must be thrown
// by this call) and throws the CPU's message.
//
// Backward (dweight[v] = sum of dy[p] over the positions p of id v):
//   1. keys_kernel: key[p] = ids[p] (0 for a bad id, which is only reported), value[p] = p.
//   2. CUB's radix sort of (key, value) pairs over the bits of V - 1: a least-significant-digit
//      sequence of stable counting sorts, so the positions of each id come out grouped and in
//      increasing order. A stable sort's output is unique, so it is the same on every run.
//   3. run_bounds_kernel: the first and one-past-last index of each id's run in the sorted keys,
//      each written by the one thread that sees the run's edge; untouched ids keep the empty [0, 0).
//   4. sum_rows_kernel: one warp per (row of dweight, slice of 32 vectors of columns) sums that row's
//      dy rows in increasing position order, in double, and writes the row once (zeros when no id
//      touches it). No floating-point atomics; each output element has one writer.
// Accumulation in double, in position order, is exactly the CPU reference's arithmetic, so the
// results equal the CPU's to the last bit (f32 and f64); the bandwidth-bound loop does not notice the
// double adds. A very frequent id makes its row's warps long (their loads are independent, 8 in
// flight per lane, but the position order is one chain per column).
// One read of the bad-index cell per call, as in the forward. Scratch (keys, positions, CUB's
// temporary storage, run bounds) is O(P + V), in Tensors on the device's stream.
#include <cub/device/device_radix_sort.cuh>

#include <cstdint>
#include <initializer_list>

#include "kernels/cuda/bad_index.cuh"
#include "kernels/cuda/launch.cuh"
#include "kernels/embedding.h"

namespace mom::kernels::cuda {

namespace {

constexpr const char* kOp = "embedding";
constexpr int kWarp = 32;
constexpr int kUnroll = 8;  // positions whose dy loads a lane has in flight in sum_rows_kernel

template <typename T, int N> struct alignas(sizeof(T) * N) Pack {
  T v[N];
};

// y[p, :] = weight[ids[p], :], in packs of N values; Dn = D / N packs per row.
template <typename T, typename Id, int N>
__global__ void forward_kernel(const Id* __restrict__ ids, const T* __restrict__ weight, T* __restrict__ y,
                               int64_t P, int64_t V, int64_t Dn, BadIndexReport bad) {
  const int lane = threadIdx.x % kWarp;
  const int64_t warps = int64_t(gridDim.x) * blockDim.x / kWarp;
  for (int64_t p = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp; p < P; p += warps) {
    const int64_t id = static_cast<int64_t>(ids[p]);  // the same for the whole warp
    if (id < 0 || id >= V) {
      if (lane == 0) bad(p);
      continue;
    }
    const Pack<T, N>* src = reinterpret_cast<const Pack<T, N>*>(weight) + id * Dn;
    Pack<T, N>* dst = reinterpret_cast<Pack<T, N>*>(y) + p * Dn;
    for (int64_t j = lane; j < Dn; j += kWarp) dst[j] = src[j];
  }
}

template <typename Id>
__global__ void keys_kernel(const Id* __restrict__ ids, uint64_t* __restrict__ keys, int64_t* __restrict__ positions,
                            int64_t P, int64_t V, BadIndexReport bad) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t p = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; p < P; p += stride) {
    const int64_t id = static_cast<int64_t>(ids[p]);
    const bool ok = id >= 0 && id < V;
    if (!ok) bad(p);
    keys[p] = ok ? static_cast<uint64_t>(id) : 0;  // in range, so the sort and the bounds stay in bounds
    positions[p] = p;
  }
}

// start[v], end[v]: the run of id v in the sorted keys (left at 0, 0 when v does not occur).
__global__ void run_bounds_kernel(const uint64_t* __restrict__ keys, int64_t P, int64_t* __restrict__ start,
                                  int64_t* __restrict__ end) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < P; i += stride) {
    const uint64_t k = keys[i];
    if (i == 0 || keys[i - 1] != k) start[k] = i;
    if (i == P - 1 || keys[i + 1] != k) end[k] = i + 1;
  }
}

// dweight[v, :] = sum over k in [start[v], end[v]) of dy[order[k], :], k ascending, in double.
// Work item w = (row v, slice s) covers packs [s * 32, s * 32 + 32) of the row, one per lane.
template <typename T, int N>
__global__ void sum_rows_kernel(const T* __restrict__ dy, const int64_t* __restrict__ order,
                                const int64_t* __restrict__ start, const int64_t* __restrict__ end,
                                T* __restrict__ dweight, int64_t V, int64_t Dn, int64_t slices) {
  const int lane = threadIdx.x % kWarp;
  const int64_t warps = int64_t(gridDim.x) * blockDim.x / kWarp;
  const Pack<T, N>* g = reinterpret_cast<const Pack<T, N>*>(dy);
  for (int64_t w = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp; w < V * slices; w += warps) {
    const int64_t v = w / slices, j = (w % slices) * kWarp + lane;
    if (j >= Dn) continue;
    double acc[N];
#pragma unroll
    for (int i = 0; i < N; ++i) acc[i] = 0.0;
    const int64_t k_end = end[v];
    int64_t k = start[v];
    for (; k + kUnroll <= k_end; k += kUnroll) {
      Pack<T, N> r[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) r[u] = g[order[k + u] * Dn + j];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u)
#pragma unroll
        for (int i = 0; i < N; ++i) acc[i] += static_cast<double>(r[u].v[i]);
    }
    for (; k < k_end; ++k) {
      const Pack<T, N> r = g[order[k] * Dn + j];
#pragma unroll
      for (int i = 0; i < N; ++i) acc[i] += static_cast<double>(r.v[i]);
    }
    Pack<T, N> out;
#pragma unroll
    for (int i = 0; i < N; ++i) out.v[i] = static_cast<T>(acc[i]);
    reinterpret_cast<Pack<T, N>*>(dweight)[v * Dn + j] = out;
  }
}

template <typename F> void dispatch_ids(DType dt, F&& f) {
  if (dt == DType::i32)
    f(TypeTag<int32_t>{});
  else
    f(TypeTag<int64_t>{});
}

// Reads the first bad position (a synchronisation with the device) and throws the CPU's message.
void throw_if_bad_id(const BadIndex& bad, const Tensor& ids, int64_t V) {
  const int64_t p = bad.first();
  if (p < 0) return;
  MOM_THROW(kOp, "id " << index_value_at(ids, p) << " at position " << p << " is out of range for " << V << " rows");
}

// Values per 16-byte pack when D and every pointer allow it, else 1.
template <typename T> int pack_width(int64_t D, std::initializer_list<const void*> pointers) {
  constexpr int N = 16 / sizeof(T);
  if (D % N != 0) return 1;
  for (const void* p : pointers)
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return 1;
  return N;
}

int bits_for(int64_t max_value) {
  int bits = 1;
  while (bits < 63 && (max_value >> bits) != 0) ++bits;
  return bits;
}

}  // namespace

Tensor embedding_forward(const Tensor& ids, const Tensor& weight) {
  const int64_t V = weight.size(0), D = weight.size(1), P = ids.numel();
  Shape shape = ids.shape();
  shape.push_back(D);
  Tensor y = empty(shape, weight.dtype(), weight.device());
  if (P == 0) return y;
  const int device = weight.device().index;
  ::mom::cuda::DeviceGuard guard(device);
  BadIndex bad(weight.device());
  cudaStream_t st = ::mom::cuda::stream(device);
  dispatch_float(weight.dtype(), kOp, [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    const scalar_t* wp = weight.data<scalar_t>();
    scalar_t* yp = y.data<scalar_t>();
    const unsigned grid = grid_for(P * kWarp, device);
    dispatch_ids(ids.dtype(), [&](auto id_tag) {
      using id_t = MOM_TYPE(id_tag);
      const id_t* ip = ids.data<id_t>();
      constexpr int N = 16 / sizeof(scalar_t);
      if (pack_width<scalar_t>(D, {wp, yp}) == N)
        forward_kernel<scalar_t, id_t, N><<<grid, kThreads, 0, st>>>(ip, wp, yp, P, V, D / N, bad.report());
      else
        forward_kernel<scalar_t, id_t, 1><<<grid, kThreads, 0, st>>>(ip, wp, yp, P, V, D, bad.report());
      MOM_CUDA_CHECK_LAUNCH();
    });
  });
  throw_if_bad_id(bad, ids, V);
  return y;
}

Tensor embedding_backward(const Tensor& dy, const Tensor& ids, int64_t V) {
  const int64_t D = dy.size(-1), P = ids.numel();
  const Device dev = dy.device();
  if (P == 0) return zeros({V, D}, dy.dtype(), dev);
  const int device = dev.index;
  ::mom::cuda::DeviceGuard guard(device);
  cudaStream_t st = ::mom::cuda::stream(device);

  // 1. Keys and positions; bad ids are reported.
  BadIndex bad(dev);
  Tensor keys_in = empty({P}, DType::i64, dev), keys = empty({P}, DType::i64, dev);
  Tensor pos_in = empty({P}, DType::i64, dev), order = empty({P}, DType::i64, dev);
  auto* kin = reinterpret_cast<uint64_t*>(keys_in.data<int64_t>());
  auto* kout = reinterpret_cast<uint64_t*>(keys.data<int64_t>());
  dispatch_ids(ids.dtype(), [&](auto id_tag) {
    using id_t = MOM_TYPE(id_tag);
    keys_kernel<id_t><<<grid_for(P, device), kThreads, 0, st>>>(ids.data<id_t>(), kin, pos_in.data<int64_t>(), P, V,
                                                                 bad.report());
    MOM_CUDA_CHECK_LAUNCH();
  });
  if (V == 0 || D == 0) {  // nothing to sum; every id is bad when V == 0
    throw_if_bad_id(bad, ids, V);
    return empty({V, D}, dy.dtype(), dev);
  }

  // 2. Stable sort of (id, position) pairs by id, over the bits that V - 1 needs.
  const int end_bit = bits_for(V - 1);
  size_t scratch_bytes = 0;
  MOM_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, scratch_bytes, kin, kout, pos_in.data<int64_t>(),
                                                 order.data<int64_t>(), P, 0, end_bit, st));
  Tensor scratch = empty({static_cast<int64_t>(scratch_bytes)}, DType::u8, dev);
  MOM_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(scratch.raw_data(), scratch_bytes, kin, kout, pos_in.data<int64_t>(),
                                                 order.data<int64_t>(), P, 0, end_bit, st));

  // 3. Each id's run in the sorted order.
  Tensor bounds = zeros({2, V}, DType::i64, dev);
  int64_t* start = bounds.data<int64_t>();
  int64_t* end = start + V;
  run_bounds_kernel<<<grid_for(P, device), kThreads, 0, st>>>(kout, P, start, end);
  MOM_CUDA_CHECK_LAUNCH();

  // 4. Row sums.
  Tensor dweight = empty({V, D}, dy.dtype(), dev);
  dispatch_float(dy.dtype(), kOp, [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    const scalar_t* gp = dy.data<scalar_t>();
    scalar_t* dp = dweight.data<scalar_t>();
    const int64_t* op = order.data<int64_t>();
    constexpr int N = 16 / sizeof(scalar_t);
    const bool packed = pack_width<scalar_t>(D, {gp, dp}) == N;
    const int64_t Dn = packed ? D / N : D;
    const int64_t slices = (Dn + kWarp - 1) / kWarp;
    const unsigned grid = grid_for(V * slices * kWarp, device);
    if (packed)
      sum_rows_kernel<scalar_t, N><<<grid, kThreads, 0, st>>>(gp, op, start, end, dp, V, Dn, slices);
    else
      sum_rows_kernel<scalar_t, 1><<<grid, kThreads, 0, st>>>(gp, op, start, end, dp, V, Dn, slices);
    MOM_CUDA_CHECK_LAUNCH();
  });
  throw_if_bad_id(bad, ids, V);
  return dweight;
}

}  // namespace mom::kernels::cuda
