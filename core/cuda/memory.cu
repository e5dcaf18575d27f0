// Streams, the stream-ordered pool and host <-> device copies (core/cuda/memory.h, core/cuda/stream.h).
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>

#include "core/cuda/memory.h"
#include "core/cuda/stream.h"

namespace mom::cuda {

namespace {

constexpr size_t kStagingBytes = size_t(32) << 20;  // each of the two pinned buffers of a device

// Two pinned buffers used in turn; done[k] is recorded on the stream after the last device copy that
// touched buffer[k], so the host waits on it before writing (or reading) that buffer again.
struct Staging {
  std::mutex mutex;
  void* buffer[2] = {nullptr, nullptr};
  cudaEvent_t done[2] = {nullptr, nullptr};
  int next = 0;
};

struct DeviceState {
  std::once_flag init;
  cudaStream_t stream = nullptr;
  cudaMemPool_t pool = nullptr;
  size_t total_bytes = 0;
  int multiprocessors = 0;
  std::atomic<size_t> current{0};
  std::atomic<size_t> peak{0};
  std::once_flag staging_init;
  Staging staging;
};

int visible_devices() {
  static const int count = device_count();
  return count;
}

DeviceState* states() {
  static std::unique_ptr<DeviceState[]> all(new DeviceState[std::max(visible_devices(), 1)]);
  return all.get();
}

DeviceState& state(int device) {
  MOM_CHECK(device >= 0 && device < visible_devices(), "cuda",
            "no device cuda:" << device << " (" << visible_devices() << " CUDA devices visible)");
  DeviceState& s = states()[device];
  std::call_once(s.init, [&] {
    DeviceGuard guard(device);
    MOM_CUDA_CHECK(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking));
    MOM_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&s.pool, device));
    uint64_t keep_all = UINT64_MAX;
    MOM_CUDA_CHECK(cudaMemPoolSetAttribute(s.pool, cudaMemPoolAttrReleaseThreshold, &keep_all));
    MOM_CUDA_CHECK(cudaDeviceGetAttribute(&s.multiprocessors, cudaDevAttrMultiProcessorCount, device));
    size_t free_bytes = 0;
    MOM_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &s.total_bytes));
  });
  return s;
}

Staging& staging(int device) {
  DeviceState& s = state(device);
  std::call_once(s.staging_init, [&] {
    DeviceGuard guard(device);
    for (int k = 0; k < 2; ++k) {
      MOM_CUDA_CHECK(cudaMallocHost(&s.staging.buffer[k], kStagingBytes));
      MOM_CUDA_CHECK(cudaEventCreateWithFlags(&s.staging.done[k], cudaEventDisableTiming));
    }
  });
  return s.staging;
}

[[noreturn]] void throw_out_of_memory(size_t nbytes, int device) {
  size_t free_bytes = 0, total_bytes = 0;
  cudaMemGetInfo(&free_bytes, &total_bytes);
  cudaGetLastError();
  MOM_THROW("cuda", "out of memory on cuda:" << device << ": requested " << nbytes << " bytes, "
                                             << free_bytes << " bytes free of " << total_bytes);
}

}  // namespace

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the "no device" error
    return 0;
  }
  return n;
}

cudaStream_t stream(int device) { return state(device).stream; }

int multiprocessor_count(int device) { return state(device).multiprocessors; }

void* device_alloc(size_t nbytes, int device) {
  DeviceState& s = state(device);
  if (nbytes == 0) return nullptr;
  if (nbytes > s.total_bytes) throw_out_of_memory(nbytes, device);
  DeviceGuard guard(device);
  void* ptr = nullptr;
  cudaError_t err = cudaMallocAsync(&ptr, nbytes, s.stream);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    // Blocks freed earlier stay in the pool; hand them back to the driver and try once more.
    MOM_CUDA_CHECK(cudaStreamSynchronize(s.stream));
    MOM_CUDA_CHECK(cudaMemPoolTrimTo(s.pool, 0));
    err = cudaMallocAsync(&ptr, nbytes, s.stream);
    if (err == cudaErrorMemoryAllocation) throw_out_of_memory(nbytes, device);
  }
  MOM_CUDA_CHECK(err);
  size_t now = s.current.fetch_add(nbytes) + nbytes;
  size_t peak = s.peak.load();
  while (now > peak && !s.peak.compare_exchange_weak(peak, now)) {
  }
  return ptr;
}

void device_free(void* ptr, size_t nbytes, int device) noexcept {
  // The device was initialised by the allocation. Errors are ignored: a destructor cannot report them,
  // and at process exit the runtime may already be gone (the driver then frees everything).
  DeviceState& s = states()[device];
  int previous = 0;
  if (cudaGetDevice(&previous) != cudaSuccess) return;
  if (previous != device) cudaSetDevice(device);
  cudaFreeAsync(ptr, s.stream);
  if (previous != device) cudaSetDevice(previous);
  s.current.fetch_sub(nbytes);
}

MemoryStats memory_stats(int device) {
  DeviceState& s = state(device);
  return {s.current.load(), s.peak.load()};
}

void reset_peak(int device) {
  DeviceState& s = state(device);
  s.peak.store(s.current.load());
}

void synchronize(int device) {
  DeviceState& s = state(device);
  MOM_CUDA_CHECK(cudaStreamSynchronize(s.stream));
}

void copy_host_to_device(void* dst, const void* src, size_t nbytes, int device) {
  if (nbytes == 0) return;
  cudaStream_t st = stream(device);
  Staging& stg = staging(device);
  std::lock_guard<std::mutex> lock(stg.mutex);
  DeviceGuard guard(device);
  for (size_t off = 0; off < nbytes; off += kStagingBytes) {
    size_t len = std::min(kStagingBytes, nbytes - off);
    int k = stg.next;
    stg.next ^= 1;
    MOM_CUDA_CHECK(cudaEventSynchronize(stg.done[k]));
    std::memcpy(stg.buffer[k], static_cast<const char*>(src) + off, len);
    MOM_CUDA_CHECK(cudaMemcpyAsync(static_cast<char*>(dst) + off, stg.buffer[k], len, cudaMemcpyHostToDevice, st));
    MOM_CUDA_CHECK(cudaEventRecord(stg.done[k], st));
  }
}

void copy_device_to_host(void* dst, const void* src, size_t nbytes, int device) {
  if (nbytes == 0) return;
  cudaStream_t st = stream(device);
  Staging& stg = staging(device);
  std::lock_guard<std::mutex> lock(stg.mutex);
  DeviceGuard guard(device);
  // Chunk c goes to buffer k_c; while it is in flight the host copies chunk c-1 out of the other one.
  int pending_k = -1;
  size_t pending_off = 0, pending_len = 0;
  auto drain = [&] {
    MOM_CUDA_CHECK(cudaEventSynchronize(stg.done[pending_k]));
    std::memcpy(static_cast<char*>(dst) + pending_off, stg.buffer[pending_k], pending_len);
  };
  for (size_t off = 0; off < nbytes; off += kStagingBytes) {
    size_t len = std::min(kStagingBytes, nbytes - off);
    int k = stg.next;
    stg.next ^= 1;
    MOM_CUDA_CHECK(cudaEventSynchronize(stg.done[k]));
    MOM_CUDA_CHECK(cudaMemcpyAsync(stg.buffer[k], static_cast<const char*>(src) + off, len, cudaMemcpyDeviceToHost, st));
    MOM_CUDA_CHECK(cudaEventRecord(stg.done[k], st));
    if (pending_k >= 0) drain();
    pending_k = k;
    pending_off = off;
    pending_len = len;
  }
  drain();
}

void copy_device_to_device(void* dst, const void* src, size_t nbytes, int device) {
  if (nbytes == 0) return;
  cudaStream_t st = stream(device);
  DeviceGuard guard(device);
  MOM_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToDevice, st));
}

void copy_between_devices(void* dst, int dst_device, const void* src, int src_device, size_t nbytes) {
  if (nbytes == 0) return;
  cudaStream_t src_stream = stream(src_device), dst_stream = stream(dst_device);
  cudaEvent_t src_ready = nullptr, copied = nullptr;
  {
    DeviceGuard guard(src_device);
    MOM_CUDA_CHECK(cudaEventCreateWithFlags(&src_ready, cudaEventDisableTiming));
    MOM_CUDA_CHECK(cudaEventRecord(src_ready, src_stream));
  }
  {
    DeviceGuard guard(dst_device);
    MOM_CUDA_CHECK(cudaStreamWaitEvent(dst_stream, src_ready, 0));
    MOM_CUDA_CHECK(cudaMemcpyPeerAsync(dst, dst_device, src, src_device, nbytes, dst_stream));
    MOM_CUDA_CHECK(cudaEventCreateWithFlags(&copied, cudaEventDisableTiming));
    MOM_CUDA_CHECK(cudaEventRecord(copied, dst_stream));
  }
  {
    DeviceGuard guard(src_device);
    MOM_CUDA_CHECK(cudaStreamWaitEvent(src_stream, copied, 0));
  }
  // Destroying a recorded event is safe: its resources go once the work it marks has completed.
  MOM_CUDA_CHECK(cudaEventDestroy(src_ready));
  MOM_CUDA_CHECK(cudaEventDestroy(copied));
}

void memset_zero(void* dst, size_t nbytes, int device) {
  if (nbytes == 0) return;
  cudaStream_t st = stream(device);
  DeviceGuard guard(device);
  MOM_CUDA_CHECK(cudaMemsetAsync(dst, 0, nbytes, st));
}

}  // namespace mom::cuda
