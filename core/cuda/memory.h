// CUDA memory for Storage: the stream-ordered pool (cudaMallocAsync / cudaFreeAsync) on the one
// stream each device uses for all work, and copies between host and device. Only compiled when the
// build has CUDA (MOM_WITH_CUDA); Storage reports "[cuda] built without CUDA" otherwise.
#pragma once

#include <cstddef>

namespace mom::cuda {

int device_count();
void* device_alloc(size_t nbytes, int device);
void device_free(void* ptr, int device);
void copy_host_to_device(void* dst, const void* src, size_t nbytes, int device);
void copy_device_to_host(void* dst, const void* src, size_t nbytes, int device);
void copy_device_to_device(void* dst, const void* src, size_t nbytes, int device);
void memset_zero(void* dst, size_t nbytes, int device);

}  // namespace mom::cuda
