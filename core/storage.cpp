#include "core/storage.h"

#include <cstdlib>
#include <limits>
#include <new>

#include "core/error.h"
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#if defined(__linux__)
#include <sys/sysinfo.h>
#endif
#ifdef MOM_WITH_CUDA
#include "core/cuda/memory.h"
#endif

namespace mom {

namespace {
constexpr size_t kAlignment = 64;

// glibc serves a block above its mmap threshold (128 KiB at first, adapting) with a fresh mapping and
// unmaps it on free, so the large temporaries of every training step page-fault afresh; and it gives
// freed heap memory above 128 KiB back to the system. Once per process we raise the mmap threshold to
// its maximum (32 MiB on 64-bit) and the trim threshold to 1 GiB, so that the next step's allocations
// reuse the last step's memory, as a caching allocator would. Measured with masked_linear (T=4096
// In=512 Out=1024): 1.4-1.6x of one plain GEMM's time without, 1.1-1.2x with. glibc only.
void keep_freed_host_memory() {
#if defined(__GLIBC__)
  static const bool done = [] {
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    return true;
  }();
  (void)done;
#endif
}

// The most host memory one allocation may ask for: the machine's RAM plus swap (Linux), the bound of
// the kernel's default (heuristic) overcommit, or the largest size_t that can be rounded up to the
// alignment elsewhere. A larger request fails here with its byte count, before malloc: glibc would
// return null anyway, and a sanitizer's allocator would abort the process instead.
size_t host_allocation_limit() {
  size_t limit = std::numeric_limits<size_t>::max() - (kAlignment - 1);
#if defined(__linux__)
  struct sysinfo info;
  if (::sysinfo(&info) == 0) {
    unsigned __int128 total = static_cast<unsigned __int128>(info.totalram + info.totalswap) * info.mem_unit;
    if (total > 0 && total < limit) limit = static_cast<size_t>(total);
  }
#endif
  return limit;
}
}  // namespace

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  if (device.is_cpu()) {
    keep_freed_host_memory();
    static const size_t limit = host_allocation_limit();
    MOM_CHECK(nbytes <= limit, "storage", "out of host memory: asked for " << nbytes << " bytes, more than the "
              << limit << " bytes of memory and swap of this machine");
    size_t rounded = (nbytes + kAlignment - 1) / kAlignment * kAlignment;
    if (rounded == 0) rounded = kAlignment;
    data_ = std::aligned_alloc(kAlignment, rounded);
    MOM_CHECK(data_ != nullptr, "storage", "out of host memory: asked for " << nbytes << " bytes");
    return;
  }
#ifdef MOM_WITH_CUDA
  try {
    data_ = cuda::device_alloc(nbytes, device.index);
  } catch (const std::bad_alloc&) {
    MOM_THROW("storage", "out of host memory while allocating " << nbytes << " bytes on " << device.str());
  }
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
