#include "core/cuda/check.h"
#include "core/cuda/memory.h"

namespace mom::cuda {

namespace {
struct DeviceGuard {
  int previous = 0;
  explicit DeviceGuard(int device) {
    MOM_CUDA_CHECK(cudaGetDevice(&previous));
    if (previous != device) MOM_CUDA_CHECK(cudaSetDevice(device));
  }
  ~DeviceGuard() { cudaSetDevice(previous); }
};
}  // namespace

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return n;
}

void* device_alloc(size_t nbytes, int device) {
  DeviceGuard guard(device);
  void* ptr = nullptr;
  cudaError_t err = cudaMallocAsync(&ptr, nbytes, 0);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    size_t free_bytes = 0, total = 0;
    cudaMemGetInfo(&free_bytes, &total);
    MOM_THROW("cuda", "out of memory: asked for " << nbytes << " bytes on cuda:" << device << ", "
                                                  << free_bytes << " bytes free of " << total);
  }
  MOM_CUDA_CHECK(err);
  return ptr;
}

void device_free(void* ptr, int device) {
  DeviceGuard guard(device);
  cudaFreeAsync(ptr, 0);
}

void copy_host_to_device(void* dst, const void* src, size_t nbytes, int device) {
  DeviceGuard guard(device);
  MOM_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyHostToDevice, 0));
  MOM_CUDA_CHECK(cudaStreamSynchronize(0));
}

void copy_device_to_host(void* dst, const void* src, size_t nbytes, int device) {
  DeviceGuard guard(device);
  MOM_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToHost, 0));
  MOM_CUDA_CHECK(cudaStreamSynchronize(0));
}

void copy_device_to_device(void* dst, const void* src, size_t nbytes, int device) {
  DeviceGuard guard(device);
  MOM_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToDevice, 0));
}

void memset_zero(void* dst, size_t nbytes, int device) {
  DeviceGuard guard(device);
  MOM_CUDA_CHECK(cudaMemsetAsync(dst, 0, nbytes, 0));
}

}  // namespace mom::cuda
