// Storage: one block of memory on one device, shared by a tensor and all of its views.
//
// CPU memory is 64-byte aligned (a cache line, and wide enough for any vector load). CUDA memory comes
// from the stream-ordered pool (core/cuda/memory.h). The version counter lives here, not in the
// tensor, so that an in-place change through any view is seen by every tensor saved for backward.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "core/device.h"

namespace mom {

class Storage {
 public:
  Storage(size_t nbytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }
  int64_t version() const { return version_; }
  void bump_version() { ++version_; }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
  int64_t version_ = 0;
};

}  // namespace mom
