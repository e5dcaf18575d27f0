// CUDA memory for Storage and the copies between host and device. Plain C++ (no CUDA headers), only
// compiled in CUDA builds (MOM_WITH_CUDA); Storage and Tensor report "built without CUDA" otherwise.
//
// Memory comes from each device's default stream-ordered pool (cudaMallocAsync / cudaFreeAsync on
// mom::cuda::stream(device), see core/cuda/stream.h). The pool's release threshold is raised to the
// maximum, so freed blocks stay in the pool for the next allocation instead of going back to the
// driver at every synchronisation. When an allocation fails the pool is trimmed and the allocation
// tried once more; a second failure throws "[cuda] out of memory ..." with the requested and free bytes.
//
// Host <-> device copies go through two pinned staging buffers per device, so that they need no
// page-locked user memory and overlap the host-side memcpy with the DMA of the previous chunk:
//   copy_host_to_device returns once the source has been read (the device copy stays queued on the
//   stream, ordered before any later work); copy_device_to_host returns once the data is on the host.
#pragma once

#include <cstddef>

namespace mom::cuda {

struct MemoryStats {
  size_t current = 0;  // bytes held by live allocations of this process on the device
  size_t peak = 0;     // highest `current` since start or the last reset_peak
};

int device_count();
void* device_alloc(size_t nbytes, int device);  // nullptr for 0 bytes (the device is still checked)
void device_free(void* ptr, size_t nbytes, int device) noexcept;
MemoryStats memory_stats(int device);
void reset_peak(int device);  // peak <- current
void synchronize(int device);  // waits for all work queued on the device's stream

void copy_host_to_device(void* dst, const void* src, size_t nbytes, int device);
void copy_device_to_host(void* dst, const void* src, size_t nbytes, int device);
void copy_device_to_device(void* dst, const void* src, size_t nbytes, int device);
// Queued on the destination's stream after the work queued on the source's; later work on the
// source's stream (a free of `src` included) waits for the copy. The host does not wait.
void copy_between_devices(void* dst, int dst_device, const void* src, int src_device, size_t nbytes);
void memset_zero(void* dst, size_t nbytes, int device);

}  // namespace mom::cuda
