// CUDA version of Routing::from_modalities (kernels/routing.h), called after its checks
// (kernels/cpu/routing.cpp).
//
// Routing (ids (T) on the device). The tokens are cut into S segments of seg_len tokens (a multiple of
// 32, at least 256, large enough that S <= 1024), one warp per segment, 8 warps per block:
//   1. count: each warp walks its segment 32 tokens at a time; __match_any_sync groups the lanes
//      holding the same id and the group's first lane adds the group's size to the segment's row
//      counts[s][m]. Integer sums: exact whatever the order. An id out of range is not counted; the
//      first one is found by an integer atomicMax of T - t, and an id smaller than its predecessor
//      marks the ids as not sorted (integer atomicOr).
//   2. scan (one block): counts[m] = the segments' counts summed in order, offsets = their exclusive
//      scan, and each segment's base position for modality m, offsets[m] + the counts of the segments
//      before it, written over its counts.
//   3. place: each warp walks its segment again; a token goes to its segment's base for its modality
//      plus the number of lower lanes in its match group, and the group's first lane then advances that
//      base. Token order is kept within a step (by lane), across steps and across segments (by the
//      bases): the stable counting sort of the CPU, bit for bit.
//   Then counts and the two flags come back to the host in one copy: the only host wait, needed
//   because the GEMMs' sizes are host values; an id out of range costs one more read for the message.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/cuda/memory.h"
#include "kernels/cuda/launch.cuh"
#include "kernels/routing.h"

namespace mom::kernels::cuda {

namespace {

constexpr int kWarp = 32;
constexpr unsigned kFullMask = 0xffffffffu;

constexpr int64_t kMinSegment = 256;
constexpr int64_t kMaxSegments = 1024;

struct Segments {
  int64_t len, count;
};

Segments segments_for(int64_t T) {
  int64_t len = std::max(kMinSegment, (T + kMaxSegments - 1) / kMaxSegments);
  len = (len + kWarp - 1) / kWarp * kWarp;
  return {len, (T + len - 1) / len};
}

unsigned warps_grid(int64_t warps) { return static_cast<unsigned>((warps * kWarp + kThreads - 1) / kThreads); }

// Pass 1. seg_counts (S, M): row s = the counts of segment s (each warp zeroes its own row).
// flags[0] = max of T - t over ids out of range (0: none), flags[1] = 1 if some id is below its
// predecessor.
template <typename I>
__global__ void routing_count_kernel(const I* ids, int64_t T, int64_t M, int64_t seg_len, int64_t segments,
                                     int64_t* seg_counts, unsigned long long* flags) {
  const int64_t s = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (s >= segments) return;  // the whole warp: s is the same for its 32 lanes
  int64_t* row = seg_counts + s * M;
  for (int64_t m = lane; m < M; m += kWarp) row[m] = 0;
  __syncwarp();
  const int64_t begin = s * seg_len, end = min(T, begin + seg_len);
  unsigned long long bad = 0;
  bool decreases = false;
  for (int64_t base = begin; base < end; base += kWarp) {  // the same trip count for every lane
    const int64_t t = base + lane;
    const bool in = t < end;
    const int64_t id = in ? static_cast<int64_t>(ids[t]) : 0;
    const bool valid = in && id >= 0 && id < M;
    if (in && !valid) bad = max(bad, static_cast<unsigned long long>(T - t));
    if (in && t > 0 && static_cast<int64_t>(ids[t - 1]) > id) decreases = true;
    const unsigned mask = __ballot_sync(kFullMask, valid);
    if (valid) {
      const unsigned group = __match_any_sync(mask, static_cast<unsigned long long>(id));
      if (lane == __ffs(group) - 1) row[id] += __popc(group);
    }
    __syncwarp();  // this step's updates are seen by the next step's leaders
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) bad = max(bad, __shfl_xor_sync(kFullMask, bad, o));
  decreases = __any_sync(kFullMask, decreases);
  if (lane == 0) {
    if (bad > 0) atomicMax(&flags[0], bad);
    if (decreases) atomicOr(&flags[1], 1ull);
  }
}

// Pass 2, one block. counts (M) = column sums of seg_counts; offsets (M) their exclusive scan; then
// seg_counts[s][m] <- offsets[m] + sum of seg_counts[s'][m] over s' < s.
__global__ void routing_scan_kernel(int64_t* seg_counts, int64_t segments, int64_t M, int64_t* offsets,
                                    int64_t* counts) {
  for (int64_t m = threadIdx.x; m < M; m += blockDim.x) {
    int64_t total = 0;
    for (int64_t s = 0; s < segments; ++s) total += seg_counts[s * M + m];
    counts[m] = total;
  }
  __syncthreads();  // also makes the global writes above visible to thread 0
  if (threadIdx.x == 0) {
    int64_t run = 0;
    for (int64_t m = 0; m < M; ++m) {
      offsets[m] = run;
      run += counts[m];
    }
  }
  __syncthreads();
  for (int64_t m = threadIdx.x; m < M; m += blockDim.x) {
    int64_t run = offsets[m];
    for (int64_t s = 0; s < segments; ++s) {
      const int64_t c = seg_counts[s * M + m];
      seg_counts[s * M + m] = run;
      run += c;
    }
  }
}

// Pass 3. seg_base (S, M) from pass 2; perm[position] = t for every valid token.
template <typename I>
__global__ void routing_place_kernel(const I* ids, int64_t T, int64_t M, int64_t seg_len, int64_t segments,
                                     int64_t* seg_base, int64_t* perm) {
  const int64_t s = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (s >= segments) return;
  int64_t* row = seg_base + s * M;
  const unsigned lower = (1u << lane) - 1u;
  const int64_t begin = s * seg_len, end = min(T, begin + seg_len);
  for (int64_t base = begin; base < end; base += kWarp) {
    const int64_t t = base + lane;
    const bool in = t < end;
    const int64_t id = in ? static_cast<int64_t>(ids[t]) : 0;
    const bool valid = in && id >= 0 && id < M;
    const unsigned mask = __ballot_sync(kFullMask, valid);
    unsigned group = 0;
    if (valid) {
      group = __match_any_sync(mask, static_cast<unsigned long long>(id));
      perm[row[id] + __popc(group & lower)] = t;
    }
    __syncwarp();  // every lane of the group has read row[id] before its leader advances it
    if (valid && lane == __ffs(group) - 1) row[id] += __popc(group);
    __syncwarp();
  }
}

// inverse[perm[p]] = p. With a bad id perm has unwritten entries (the routing then throws): the range
// check keeps the write inside inverse.
__global__ void routing_inverse_kernel(const int64_t* __restrict__ perm, int64_t T, int64_t* __restrict__ inverse) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t p = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; p < T; p += stride) {
    const int64_t t = perm[p];
    if (t >= 0 && t < T) inverse[t] = p;
  }
}

}  // namespace

Routing routing_from_modalities(const Tensor& ids, int64_t M) {
  const char* op = "routing";
  const int64_t T = ids.size(0);
  const int device = ids.device().index;
  Routing r;
  r.num_modalities = M;
  r.counts.assign(M, 0);
  r.offsets.assign(M + 1, 0);
  r.perm = empty({T}, DType::i64, ids.device());
  r.inverse = empty({T}, DType::i64, ids.device());
  r.perm_is_identity = true;
  dispatch_index(ids.dtype(), op, [&](auto tag) {
    using index_t = MOM_TYPE(tag);
    if (T == 0) return;
    const index_t* id = ids.data<index_t>();
    const Segments seg = segments_for(T);
    Tensor scratch = empty({seg.count * M + M}, DType::i64, ids.device());  // (S, M) segment rows, then offsets (M)
    Tensor info = zeros({M + 2}, DType::i64, ids.device());                 // counts (M), then the two flags
    int64_t* rows = scratch.data<int64_t>();
    int64_t* counts = info.data<int64_t>();
    auto* flags = reinterpret_cast<unsigned long long*>(counts + M);
    ::mom::cuda::DeviceGuard guard(device);
    cudaStream_t st = ::mom::cuda::stream(device);
    routing_count_kernel<index_t><<<warps_grid(seg.count), kThreads, 0, st>>>(id, T, M, seg.len, seg.count, rows,
                                                                             flags);
    MOM_CUDA_CHECK_LAUNCH();
    routing_scan_kernel<<<1, kThreads, 0, st>>>(rows, seg.count, M, rows + seg.count * M, counts);
    MOM_CUDA_CHECK_LAUNCH();
    routing_place_kernel<index_t><<<warps_grid(seg.count), kThreads, 0, st>>>(id, T, M, seg.len, seg.count, rows,
                                                                             r.perm.data<int64_t>());
    MOM_CUDA_CHECK_LAUNCH();
    routing_inverse_kernel<<<grid_for(T, device), kThreads, 0, st>>>(r.perm.data<int64_t>(), T,
                                                                     r.inverse.data<int64_t>());
    MOM_CUDA_CHECK_LAUNCH();
    // The host wait: counts size the GEMMs, and a bad id must throw here.
    std::vector<int64_t> host(M + 2);
    ::mom::cuda::copy_device_to_host(host.data(), counts, host.size() * sizeof(int64_t), device);
    if (host[M] > 0) {
      const int64_t t = T - host[M];
      index_t bad = 0;
      ::mom::cuda::copy_device_to_host(&bad, id + t, sizeof(index_t), device);
      MOM_THROW(op, "modality id " << bad << " at token " << t << " is outside [0, " << M << ")");
    }
    for (int64_t m = 0; m < M; ++m) {
      r.counts[m] = host[m];
      r.offsets[m + 1] = r.offsets[m] + host[m];
    }
    r.perm_is_identity = host[M + 1] == 0;
  });
  return r;
}

}  // namespace mom::kernels::cuda
