// exp(x) for the CPU kernels' hot loops: the scan's state decay exp(dt * A) and the decode step's.
// double: std::exp. float: Cephes' expf (round x / ln 2 to k, a degree-6 polynomial for exp(r) on
// |r| <= ln 2 / 2, then scale by 2^k through the exponent bits): within 2 ulp of std::exp, and
// branch-free so the compiler vectorises the loops that call it (glibc's expf is a call).
// x is clamped to [-87, 88], where float's exp neither overflows nor turns denormal; NaN stays NaN.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace mom::kernels::cpu {

inline double fast_exp(double x) { return std::exp(x); }

inline float fast_exp(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  const float round_magic = 12582912.0f;  // 1.5 * 2^23: adding and subtracting it rounds to an integer
  float k = (x * 1.44269504088896341f + round_magic) - round_magic;
  float r = x - k * 0.693359375f + k * 2.12194440e-4f;  // x - k ln 2, ln 2 split in two for accuracy
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  float e = p * r * r + r + 1.0f;
  int32_t ki = k == k ? static_cast<int32_t>(k) : 0;  // NaN: any scale, e is NaN already
  uint32_t bits = static_cast<uint32_t>(ki + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return e * scale;
}

}  // namespace mom::kernels::cpu
