// bfloat16: the top 16 bits of an IEEE float32 (1 sign, 8 exponent, 7 fraction bits), so it has
// float32's range with 8 significant bits. mom::bf16 holds those bits; it is a storage type: arithmetic
// widens it to float (exactly) and rounds the result back.
//
// Conversions, written once here for the host and the device (MOM_HOST_DEVICE), in integer arithmetic
// on the bit patterns, so the CPU and the CUDA copies round alike bit for bit:
//   - to float: exact (the bits shifted left by 16); to double: exact, through float.
//   - from float: round to nearest, ties to even, as IEEE does: values beyond the largest finite bf16
//     (0x7F7F, 3.3895e38) by half its last place or more become inf, subnormals round like the rest
//     (down to 0x0001 = 2^-133), signed zeros and infs are kept. A NaN stays a NaN with its sign and the
//     top 7 bits of its payload, with the quiet bit set (IEEE conversions quiet a signalling NaN).
//   - from double: rounded once, directly to nearest even. Going through float would round twice and
//     can differ: 1 + 2^-8 + 2^-30 is just above the midpoint of 1 and 1 + 2^-7, so it rounds up to
//     1 + 2^-7; as a float it becomes the midpoint 1 + 2^-8 itself, whose tie goes to even, 1.
//   - from an integer (bool included): through double, where every integer below 2^53 is exact, so
//     the value rounds once; int64 magnitudes from 2^53 up are first cut to 53 bits rounding to odd
//     (the lowest kept bit set when a dropped bit is), which keeps that single rounding correct.
//   - to an integer (bool included): through float, as static_cast<I>(float): truncation toward zero,
//     with float's behaviour for NaN and for values out of I's range.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "core/host_device.h"

namespace mom {

namespace bf16_detail {

MOM_HOST_DEVICE inline uint32_t bits_of(float f) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);  // a bit cast without type punning
  return u;
#endif
}

MOM_HOST_DEVICE inline uint64_t bits_of(double d) {
#ifdef __CUDA_ARCH__
  return static_cast<uint64_t>(__double_as_longlong(d));
#else
  uint64_t u;
  std::memcpy(&u, &d, sizeof u);
  return u;
#endif
}

MOM_HOST_DEVICE inline float float_of(uint32_t u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

// x / 2^s rounded to nearest, ties to even, for 0 < s < 64.
MOM_HOST_DEVICE inline uint64_t shift_right_rne(uint64_t x, int s) {
  const uint64_t q = x >> s, rest = x & ((uint64_t(1) << s) - 1), half = uint64_t(1) << (s - 1);
  return q + ((rest > half || (rest == half && (q & 1))) ? 1 : 0);
}

MOM_HOST_DEVICE inline uint16_t from_float(float f) {
  const uint32_t u = bits_of(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);  // NaN, quieted
  // Adding 0x7FFF plus the lowest kept bit carries into the kept bits exactly when the dropped half is
  // above the midpoint, or at it with an odd kept part: ties to even. The carry runs on into the
  // exponent, so the largest floats round up to inf (0x7F80), as IEEE rounding does; infs stay infs.
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

MOM_HOST_DEVICE inline uint16_t from_double(double d) {
  const uint64_t u = bits_of(d);
  const uint16_t sign = static_cast<uint16_t>((u >> 48) & 0x8000u);
  const uint64_t a = u & 0x7fffffffffffffffull;
  if (a > 0x7ff0000000000000ull)  // NaN: its sign and the top 7 payload bits, quieted (as through float)
    return static_cast<uint16_t>(sign | 0x7fc0u | ((a >> 45) & 0x7fu));
  const int e = static_cast<int>(a >> 52) - 1023;  // |d| in [2^e, 2^(e+1)); -1023 for zeros and subnormals
  if (e >= 128) return static_cast<uint16_t>(sign | 0x7f80u);  // inf, or beyond the last rounding to inf
  if (e < -134) return sign;  // below half of the smallest subnormal (2^-134): a signed zero
  const uint64_t frac = a & ((uint64_t(1) << 52) - 1);
  uint64_t r;
  if (e >= -126) {
    // A normal bf16: bf16's biased exponent above double's 52 fraction bits, rounded to 7 of them. A
    // carry out of the fraction raises the exponent, up to inf (0x7F80) past the largest finite.
    r = shift_right_rne((uint64_t(e + 127) << 52) | frac, 45);
  } else {
    // A subnormal bf16: the significand in units of 2^-133 (a shift of 46 at e = -127 ... 53 at e = -134).
    // A carry to 0x80 is the smallest normal, 2^-126, which is what that bit pattern means.
    r = shift_right_rne(frac | (uint64_t(1) << 52), -e - 81);
  }
  return static_cast<uint16_t>(sign | r);
}

template <typename I> MOM_HOST_DEVICE inline uint16_t from_integer(I v) {
  if constexpr (sizeof(I) < 8) {
    return from_double(static_cast<double>(v));  // exact in double
  } else {
    bool negative = false;
    if constexpr (std::is_signed<I>::value) negative = v < 0;
    uint64_t mag = negative ? uint64_t(0) - static_cast<uint64_t>(v) : static_cast<uint64_t>(v);
    int k = 0;
    while ((mag >> k) >> 53) ++k;  // mag / 2^k < 2^53
    if (k > 0) mag = (mag >> k) | ((mag & ((uint64_t(1) << k) - 1)) ? 1 : 0);  // round to odd
    const double m = static_cast<double>(mag) * static_cast<double>(uint64_t(1) << k);  // exact
    return from_double(negative ? -m : m);
  }
}

}  // namespace bf16_detail

struct bf16 {
  uint16_t bits;

  bf16() = default;  // uninitialised, as a float
  MOM_HOST_DEVICE explicit bf16(float f) : bits(bf16_detail::from_float(f)) {}
  MOM_HOST_DEVICE explicit bf16(double d) : bits(bf16_detail::from_double(d)) {}
  template <typename I, typename std::enable_if<std::is_integral<I>::value, int>::type = 0>
  MOM_HOST_DEVICE explicit bf16(I v) : bits(bf16_detail::from_integer(v)) {}

  MOM_HOST_DEVICE static bf16 from_bits(uint16_t b) {
    bf16 h{};
    h.bits = b;
    return h;
  }

  MOM_HOST_DEVICE explicit operator float() const { return bf16_detail::float_of(uint32_t(bits) << 16); }
  MOM_HOST_DEVICE explicit operator double() const { return static_cast<double>(static_cast<float>(*this)); }
  template <typename I, typename std::enable_if<std::is_integral<I>::value, int>::type = 0>
  MOM_HOST_DEVICE explicit operator I() const {
    return static_cast<I>(static_cast<float>(*this));
  }
};

static_assert(sizeof(bf16) == 2 && alignof(bf16) == 2, "bf16 is two bytes, as in memory and in files");
static_assert(std::is_trivially_copyable<bf16>::value, "bf16 moves as raw bytes (memcpy, cudaMemcpy)");

}  // namespace mom
