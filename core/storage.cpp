#include "core/storage.h"

#include <cstdlib>
#include <new>

#include "core/error.h"
#ifdef MOM_WITH_CUDA
#include "core/cuda/memory.h"
#endif

namespace mom {

namespace {
constexpr size_t kAlignment = 64;
}

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  if (device.is_cpu()) {
    size_t rounded = (nbytes + kAlignment - 1) / kAlignment * kAlignment;
    if (rounded == 0) rounded = kAlignment;
    data_ = std::aligned_alloc(kAlignment, rounded);
    MOM_CHECK(data_ != nullptr, "storage", "out of host memory: asked for " << nbytes << " bytes");
    return;
  }
#ifdef MOM_WITH_CUDA
  data_ = cuda::device_alloc(nbytes, device.index);
#else
  MOM_THROW("cuda", "built without CUDA: cannot allocate on " << device.str());
#endif
}

Storage::~Storage() {
  if (!data_) return;
  if (device_.is_cpu()) {
    std::free(data_);
    return;
  }
#ifdef MOM_WITH_CUDA
  cuda::device_free(data_, nbytes_, device_.index);
#endif
}

}  // namespace mom
