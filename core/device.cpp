#include "core/device.h"

#include "core/error.h"
#ifdef MOM_WITH_CUDA
#include "core/cuda/memory.h"
#endif

namespace mom {

Device parse_device(const std::string& s) {
  if (s == "cpu") return Device::cpu();
  if (s == "cuda") return Device::cuda(0);
  if (s.rfind("cuda:", 0) == 0) {
    std::string idx = s.substr(5);
    MOM_CHECK(!idx.empty() && idx.find_first_not_of("0123456789") == std::string::npos, "device",
              "cannot parse device '" << s << "': expected cpu, cuda or cuda:N");
    int64_t index = 0;
    for (char c : idx) {
      index = index * 10 + (c - '0');
      MOM_CHECK(index <= kMaxDeviceIndex, "device", "device index " << idx << " in '" << s
                << "' is out of range: expected 0 .. " << kMaxDeviceIndex);
    }
    return Device::cuda(static_cast<int>(index));
  }
  MOM_THROW("device", "cannot parse device '" << s << "': expected cpu, cuda or cuda:N");
}

bool cuda_available() {
#ifdef MOM_WITH_CUDA
  return cuda::device_count() > 0;
#else
  return false;
#endif
}

}  // namespace mom
