// Where a tensor's memory lives: the CPU or CUDA device `index`.
#pragma once

#include <cstdint>
#include <string>

namespace mom {

enum class DeviceType : uint8_t { CPU, CUDA };

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;

  static Device cpu() { return {DeviceType::CPU, 0}; }
  static Device cuda(int index = 0) { return {DeviceType::CUDA, index}; }
  bool is_cpu() const { return type == DeviceType::CPU; }
  bool is_cuda() const { return type == DeviceType::CUDA; }
  bool operator==(const Device& o) const { return type == o.type && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
  std::string str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }
};

// The largest N of "cuda:N" that parse_device accepts (whether device N exists is checked where it is used).
constexpr int kMaxDeviceIndex = 1023;

// "cpu", "cuda", "cuda:1" (N in 0 .. kMaxDeviceIndex). Throws [device] on anything else.
Device parse_device(const std::string& s);

// True when this build has CUDA and a device is visible.
bool cuda_available();

}  // namespace mom
