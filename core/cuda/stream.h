// The one stream each device uses for all work, and what kernels need to launch on it. CUDA builds
// only (includes cuda_runtime.h): core/cuda/memory.h is the part of the runtime that plain C++ sees.
//
// Every op of the framework enqueues on mom::cuda::stream(device): work on a device runs in the order
// it was issued, memory freed on that stream is reused only by later work on it, and the host waits
// only where it reads a value (item(), to_vector(), a copy to the CPU) or where a caller asks for it.
#pragma once

#include <cuda_runtime.h>

#include "core/cuda/check.h"

namespace mom::cuda {

// Created on first use, non-blocking (no implicit synchronisation with the legacy default stream).
cudaStream_t stream(int device);
int multiprocessor_count(int device);

// Makes `device` current for the guard's lifetime.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    MOM_CUDA_CHECK(cudaGetDevice(&previous_));
    if (previous_ != device) MOM_CUDA_CHECK(cudaSetDevice(device));
    changed_ = previous_ != device;
  }
  ~DeviceGuard() {
    if (changed_) cudaSetDevice(previous_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
  bool changed_ = false;
};

}  // namespace mom::cuda
