// MOM_HOST_DEVICE marks a function that both the host and the device run: __host__ __device__ where
// nvcc compiles the file, nothing where a plain C++ compiler does. Headers shared by .cpp and .cu files
// (core/bf16.h) write such code once, so the two devices run the same arithmetic.
#pragma once

#if defined(__CUDACC__)
#define MOM_HOST_DEVICE __host__ __device__
#else
#define MOM_HOST_DEVICE
#endif
