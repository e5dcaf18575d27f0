// MOM_CUDA_CHECK(call): every CUDA runtime call and kernel launch is checked, with file and line.
#pragma once

#include <cuda_runtime.h>

#include "core/error.h"

#define MOM_CUDA_CHECK(call)                                                                  \
  do {                                                                                        \
    cudaError_t mom_cuda_err_ = (call);                                                       \
    if (mom_cuda_err_ != cudaSuccess)                                                         \
      MOM_THROW("cuda", cudaGetErrorString(mom_cuda_err_) << " at " << __FILE__ << ":" << __LINE__); \
  } while (0)

#define MOM_CUDA_CHECK_LAUNCH() MOM_CUDA_CHECK(cudaGetLastError())
