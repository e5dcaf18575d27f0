// bfloat16 (core/bf16.h): rounding against a reference written another way, on every bf16 value's
// neighbourhood, random floats, doubles and integers; tensors of it (casts, strided copies, fill, item,
// printing); the kernels' refusal; safetensors BF16 files.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

#include "core/bf16.h"
#include "core/safetensors.h"
#include "core/tensor.h"
#include "kernels/elementwise.h"
#include "kernels/index.h"
#include "tests/support.h"

namespace mom {
namespace {

float float_from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

double double_from_bits(uint64_t u) {
  double d;
  std::memcpy(&d, &u, sizeof d);
  return d;
}

bool is_nan_pattern(uint16_t p) { return (p & 0x7fff) > 0x7f80; }

// The value of a bf16 pattern from its fields (sign, 8 exponent bits, 7 fraction bits), by ldexp rather
// than by placing the bits in a float.
template <typename R> R decode(uint16_t p) {
  const int e = (p >> 7) & 0xff, frac = p & 0x7f;
  R v = e == 0     ? std::ldexp(R(frac), -133)
        : e == 255 ? (frac ? std::numeric_limits<R>::quiet_NaN() : std::numeric_limits<R>::infinity())
                   : std::ldexp(R(128 + frac), e - 134);
  return (p & 0x8000) ? -v : v;
}

// The reference rounding: the bf16 nearest to x (not a NaN), ties to the even pattern, found without
// core/bf16.h's bit arithmetic. A binary search finds lo, the largest bf16 magnitude <= |x| among the
// patterns 0x0000 ... 0x7F80 (ordered as their values); the distances from |x| to lo and to the next
// pattern up are then compared in R, where they are exact: both neighbours lie within one bf16 step
// of |x|, and R holds x's significand with room for that step. Past the largest finite bf16 (0x7F7F)
// the step up is to 2^128, where IEEE rounding reaches inf.
template <typename R> uint16_t nearest_bf16(R x) {
  const R a = std::fabs(x);
  uint16_t lo = 0, hi = 0x7f80;
  while (lo < hi) {
    const uint16_t mid = static_cast<uint16_t>((lo + hi + 1) / 2);
    if (decode<R>(mid) <= a) lo = mid;
    else hi = static_cast<uint16_t>(mid - 1);
  }
  uint16_t r = lo;
  if (decode<R>(lo) != a) {
    const R up = lo == 0x7f7f ? std::ldexp(R(1), 128) : decode<R>(static_cast<uint16_t>(lo + 1));
    const R below = a - decode<R>(lo), above = up - a;
    const bool round_up = above < below || (above == below && (lo & 1));
    r = static_cast<uint16_t>(lo + (round_up ? 1 : 0));
  }
  return static_cast<uint16_t>(std::signbit(x) ? r | 0x8000 : r);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

std::vector<uint16_t> bits_of(const Tensor& t) {
  std::vector<uint16_t> out;
  for (bf16 v : t.to_vector<bf16>()) out.push_back(v.bits);
  return out;
}

Tensor bf16_tensor(const std::vector<uint16_t>& bits, const Shape& shape) {
  std::vector<bf16> v;
  for (uint16_t b : bits) v.push_back(bf16::from_bits(b));
  return from_vector<bf16>(v, shape);
}

// ---- the type ----

TEST(Bf16, DtypeFacts) {
  EXPECT_EQ(dtype_size(DType::bf16), 2u);
  EXPECT_STREQ(dtype_name(DType::bf16), "bfloat16");
  EXPECT_TRUE(is_floating(DType::bf16));
  EXPECT_EQ(dtype_of<bf16>(), DType::bf16);
  EXPECT_EQ(sizeof(bf16), 2u);
  EXPECT_STREQ(safetensors_dtype_name(DType::bf16), "BF16");
}

TEST(Bf16, ToFloatIsExactForEveryPattern) {
  for (uint32_t p = 0; p <= 0xffff; ++p) {
    const bf16 h = bf16::from_bits(static_cast<uint16_t>(p));
    const float f = static_cast<float>(h);
    ASSERT_EQ(bits_of(f), p << 16) << std::hex << p;
    if (is_nan_pattern(static_cast<uint16_t>(p))) {
      ASSERT_TRUE(std::isnan(static_cast<double>(h)));
      // Back from float: still a NaN of that sign and payload, quieted.
      ASSERT_EQ(bf16(f).bits, p | 0x0040) << std::hex << p;
    } else {
      ASSERT_EQ(static_cast<double>(h), decode<double>(static_cast<uint16_t>(p))) << std::hex << p;
      ASSERT_EQ(bf16(f).bits, p) << std::hex << p;  // exact round trip
      ASSERT_EQ(bf16(static_cast<double>(h)).bits, p) << std::hex << p;
    }
  }
}

TEST(Bf16, FromFloatNamedCases) {
  auto from = [](uint32_t float_bits) { return bf16(float_from_bits(float_bits)).bits; };
  EXPECT_EQ(bf16(1.0f).bits, 0x3f80);
  EXPECT_EQ(bf16(-2.0f).bits, 0xc000);
  EXPECT_EQ(bf16(0.1f).bits, 0x3dcd);  // 0x3DCCCCCD: above the midpoint, up
  // Ties: 1 + 2^-8 lies midway between 0x3F80 and 0x3F81 and goes to the even 0x3F80; 1 + 3 * 2^-8
  // midway between 0x3F81 and 0x3F82 goes to 0x3F82.
  EXPECT_EQ(from(0x3f808000), 0x3f80);
  EXPECT_EQ(from(0x3f818000), 0x3f82);
  EXPECT_EQ(from(0x3f808001), 0x3f81);
  EXPECT_EQ(from(0x3f807fff), 0x3f80);
  EXPECT_EQ(from(0xbf818000), 0xbf82);
  // The largest finite bf16 (0x7F7F, 3.3895314e38), the midpoint above it (a tie, to the even inf) and
  // float's largest finite, past the midpoint: inf, as IEEE overflow does.
  EXPECT_EQ(from(0x7f7f0000), 0x7f7f);
  EXPECT_FLOAT_EQ(static_cast<float>(bf16::from_bits(0x7f7f)), 3.3895314e38f);
  EXPECT_EQ(from(0x7f7f7fff), 0x7f7f);
  EXPECT_EQ(from(0x7f7f8000), 0x7f80);
  EXPECT_EQ(bf16(std::numeric_limits<float>::max()).bits, 0x7f80);
  EXPECT_EQ(bf16(-std::numeric_limits<float>::max()).bits, 0xff80);
  EXPECT_EQ(bf16(std::numeric_limits<float>::infinity()).bits, 0x7f80);
  EXPECT_EQ(bf16(-std::numeric_limits<float>::infinity()).bits, 0xff80);
  // Signed zeros and subnormals: 2^-149 rounds to 0; 2^-134 (the midpoint of 0 and the smallest bf16
  // subnormal 2^-133) ties to 0; just above it goes up; 3 * 2^-134 ties to the even 0x0002; the largest
  // float subnormal rounds up to the smallest normal 0x0080.
  EXPECT_EQ(bf16(0.0f).bits, 0x0000);
  EXPECT_EQ(bf16(-0.0f).bits, 0x8000);
  EXPECT_EQ(from(0x00000001), 0x0000);
  EXPECT_EQ(from(0x80000001), 0x8000);
  EXPECT_EQ(from(0x00008000), 0x0000);
  EXPECT_EQ(from(0x00008001), 0x0001);
  EXPECT_EQ(from(0x00018000), 0x0002);
  EXPECT_EQ(from(0x007fffff), 0x0080);
  EXPECT_EQ(from(0x00800000), 0x0080);
  EXPECT_EQ(static_cast<float>(bf16::from_bits(0x0001)), std::ldexp(1.0f, -133));
  // NaNs stay NaNs, with their sign and the top of their payload, quieted: a signalling NaN whose
  // payload lies only in the dropped bits must not become inf.
  EXPECT_EQ(from(0x7fc00000), 0x7fc0);
  EXPECT_EQ(from(0xffc00000), 0xffc0);
  EXPECT_EQ(from(0x7f800001), 0x7fc0);
  EXPECT_EQ(from(0xff800001), 0xffc0);
  EXPECT_EQ(from(0x7fa00000), 0x7fe0);
  EXPECT_EQ(from(0xff812345), 0xffc1);
  EXPECT_EQ(from(0x7fffffff), 0x7fff);
}

TEST(Bf16, FromFloatMatchesTheReferenceAroundEveryBf16Value) {
  // Every upper half (every bf16 pattern) with lower halves at and around the tie and the ends, plus two
  // random ones: 2^16 x 8 floats.
  Generator gen(11);
  int64_t compared = 0;
  for (uint32_t hi = 0; hi <= 0xffff; ++hi) {
    if (is_nan_pattern(static_cast<uint16_t>(hi))) continue;
    const uint32_t r1 = static_cast<uint32_t>(gen.randint(0x10000)), r2 = static_cast<uint32_t>(gen.randint(0x10000));
    for (uint32_t lo : {0x0000u, 0x0001u, 0x7fffu, 0x8000u, 0x8001u, 0xffffu, r1, r2}) {
      const float f = float_from_bits(hi << 16 | lo);
      if (std::isnan(f)) continue;  // 0x7F80xxxx / 0xFF80xxxx with a payload: the NaN test covers them
      ASSERT_EQ(bf16(f).bits, nearest_bf16<double>(f)) << std::hex << (hi << 16 | lo);
      ++compared;
    }
  }
  EXPECT_GT(compared, 8 * 65000);
}

TEST(Bf16, FromFloatMatchesTheReferenceOnRandomBits) {
  Generator gen(12);
  int64_t nans = 0;
  for (int i = 0; i < (1 << 21); ++i) {
    const uint32_t u = static_cast<uint32_t>(gen.next_u64() >> 32);
    const float f = float_from_bits(u);
    const uint16_t b = bf16(f).bits;
    if (std::isnan(f)) {
      ++nans;
      ASSERT_EQ(b, (u >> 16) | 0x0040) << std::hex << u;  // sign, payload's top bits, quiet bit
      ASSERT_TRUE(is_nan_pattern(b));
    } else {
      ASSERT_EQ(b, nearest_bf16<double>(f)) << std::hex << u;
    }
  }
  EXPECT_GT(nans, 0);  // 1/256 of random bits are NaNs
}

TEST(Bf16, FromDoubleRoundsOnceNotThroughFloat) {
  // 1 + 2^-8 + 2^-30 is just above the midpoint of 0x3F80 and 0x3F81: up. As a float it is the midpoint
  // itself (2^-30 is below float's half step), which ties to the even 0x3F80.
  const double up = 1.0 + std::ldexp(1.0, -8) + std::ldexp(1.0, -30);
  EXPECT_EQ(bf16(up).bits, 0x3f81);
  EXPECT_EQ(bf16(static_cast<float>(up)).bits, 0x3f80);
  // 1 + 3 * 2^-8 - 2^-30 is just below the midpoint of 0x3F81 and 0x3F82: down. Through float: the
  // midpoint, to the even 0x3F82.
  const double down = 1.0 + 3 * std::ldexp(1.0, -8) - std::ldexp(1.0, -30);
  EXPECT_EQ(bf16(down).bits, 0x3f81);
  EXPECT_EQ(bf16(static_cast<float>(down)).bits, 0x3f82);
  EXPECT_EQ(bf16(-up).bits, 0xbf81);
  // Range ends: 2^128 and beyond are inf; the midpoint above the largest finite ties to inf, a double
  // below it rounds down; 2^-134 ties to 0, a double above it rounds to the smallest subnormal; double
  // subnormals are signed zeros.
  EXPECT_EQ(bf16(std::ldexp(1.0, 128)).bits, 0x7f80);
  EXPECT_EQ(bf16(std::numeric_limits<double>::max()).bits, 0x7f80);
  EXPECT_EQ(bf16(-std::numeric_limits<double>::max()).bits, 0xff80);
  const double top_mid = std::ldexp(255.5, 120);  // midway between 0x7F7F (255 * 2^120) and 2^128
  EXPECT_EQ(bf16(top_mid).bits, 0x7f80);
  EXPECT_EQ(bf16(std::nextafter(top_mid, 0.0)).bits, 0x7f7f);
  EXPECT_EQ(bf16(std::ldexp(1.0, -134)).bits, 0x0000);
  EXPECT_EQ(bf16(std::nextafter(std::ldexp(1.0, -134), 1.0)).bits, 0x0001);
  EXPECT_EQ(bf16(std::ldexp(3.0, -134)).bits, 0x0002);
  EXPECT_EQ(bf16(std::ldexp(1.0, -135)).bits, 0x0000);
  EXPECT_EQ(bf16(std::numeric_limits<double>::denorm_min()).bits, 0x0000);
  EXPECT_EQ(bf16(-std::numeric_limits<double>::denorm_min()).bits, 0x8000);
  EXPECT_EQ(bf16(-0.0).bits, 0x8000);
  EXPECT_EQ(bf16(std::numeric_limits<double>::infinity()).bits, 0x7f80);
  EXPECT_EQ(bf16(-std::numeric_limits<double>::infinity()).bits, 0xff80);
  EXPECT_EQ(bf16(std::ldexp(1.0, -126) - std::ldexp(1.0, -140)).bits, 0x0080);  // up to the smallest normal
  // NaNs: sign and the top payload bits kept, quieted, as a conversion through float gives.
  for (uint64_t u : {0x7ff8000000000000ull, 0xfff8000000000000ull, 0x7ff0000000000001ull, 0xfff4000000000000ull,
                     0x7ff7ffffffffffffull}) {
    const double d = double_from_bits(u);
    EXPECT_EQ(bf16(d).bits, bf16(static_cast<float>(d)).bits) << std::hex << u;
    EXPECT_TRUE(is_nan_pattern(bf16(d).bits));
    EXPECT_EQ(static_cast<uint32_t>(bf16(d).bits & 0x8040), static_cast<uint32_t>(((u >> 48) & 0x8000) | 0x0040));
  }
}

TEST(Bf16, FromDoubleMatchesTheReference) {
  Generator gen(13);
  // Random significands with exponents from below the subnormals to past the overflow, either sign.
  for (int i = 0; i < (1 << 20); ++i) {
    const uint64_t frac = gen.next_u64() >> 12;
    const int e = static_cast<int>(gen.randint(276)) - 140;  // [-140, 135]
    const double d = std::ldexp(1.0 + std::ldexp(static_cast<double>(frac), -52), e) * (gen.randint(2) ? -1 : 1);
    ASSERT_EQ(bf16(d).bits, nearest_bf16<double>(d)) << std::hexfloat << d;
  }
  // Around every midpoint between neighbouring finite bf16 values (and between 0x7F7F and 2^128): the
  // midpoint, one double step either side, and a float step either side (which a float cannot see).
  for (uint16_t p = 0; p <= 0x7f7f; ++p) {
    const double lo = decode<double>(p);
    const double hi = p == 0x7f7f ? std::ldexp(1.0, 128) : decode<double>(static_cast<uint16_t>(p + 1));
    const double mid = (lo + hi) / 2, f_step = std::ldexp(mid, -30);
    for (double d : {mid, std::nextafter(mid, 0.0), std::nextafter(mid, INFINITY), mid - f_step, mid + f_step}) {
      ASSERT_EQ(bf16(d).bits, nearest_bf16<double>(d)) << std::hexfloat << d;
      ASSERT_EQ(bf16(-d).bits, nearest_bf16<double>(-d)) << std::hexfloat << -d;
    }
  }
  // A double that is a float rounds as that float does.
  for (int i = 0; i < (1 << 20); ++i) {
    const float f = float_from_bits(static_cast<uint32_t>(gen.next_u64()));
    if (!std::isnan(f)) {
      ASSERT_EQ(bf16(static_cast<double>(f)).bits, bf16(f).bits) << std::hex << bits_of(f);
    }
  }
}

TEST(Bf16, IntegersRoundOnce) {
  // 8 significant bits: integers to 256 are exact; 257 ties to 256, 259 to 260 (even patterns).
  EXPECT_EQ(static_cast<float>(bf16(255)), 255.0f);
  EXPECT_EQ(static_cast<float>(bf16(256)), 256.0f);
  EXPECT_EQ(static_cast<float>(bf16(257)), 256.0f);
  EXPECT_EQ(static_cast<float>(bf16(259)), 260.0f);
  EXPECT_EQ(static_cast<float>(bf16(-259)), -260.0f);
  EXPECT_EQ(static_cast<float>(bf16(uint8_t(200))), 200.0f);
  EXPECT_EQ(bf16(true).bits, 0x3f80);
  EXPECT_EQ(bf16(false).bits, 0x0000);
  EXPECT_EQ(bf16(std::numeric_limits<int64_t>::min()).bits, 0xdf00);  // -2^63
  // 2^62 + 2^54 + 1 is just above the midpoint of 2^62 and 2^62 + 2^55. A plain cast to double drops the
  // 1 and leaves the midpoint, which would tie down to 2^62; the single rounding goes up.
  const int64_t v = (int64_t(1) << 62) + (int64_t(1) << 54) + 1;
  EXPECT_EQ(bf16(v).bits, bf16(std::ldexp(1.0, 62) + std::ldexp(1.0, 55)).bits);
  EXPECT_EQ(bf16(static_cast<double>(v)).bits, bf16(std::ldexp(1.0, 62)).bits);
  EXPECT_EQ(bf16(-v).bits, bf16(v).bits | 0x8000);
  // Random int32 and int64 against the reference in long double, which holds every int64 exactly.
  static_assert(std::numeric_limits<long double>::digits >= 64, "the int64 reference needs a 64-bit significand");
  Generator gen(14);
  for (int i = 0; i < (1 << 18); ++i) {
    const int32_t a = static_cast<int32_t>(static_cast<uint32_t>(gen.next_u64()));
    ASSERT_EQ(bf16(a).bits, nearest_bf16<double>(a)) << a;
    const int64_t b = static_cast<int64_t>(gen.next_u64() >> gen.randint(64));  // every magnitude
    if (b == std::numeric_limits<int64_t>::min()) continue;  // -b would overflow
    ASSERT_EQ(bf16(b).bits, nearest_bf16<long double>(b)) << b;
    ASSERT_EQ(bf16(-b).bits, nearest_bf16<long double>(-b)) << -b;
  }
  // To integers: through float, truncated toward zero; to bool: nonzero.
  EXPECT_EQ(static_cast<int32_t>(bf16(-2.75)), -2);
  EXPECT_EQ(static_cast<int64_t>(bf16(3.0e9)), 3003121664);  // 179 * 2^24, the bf16 nearest 3e9
  EXPECT_EQ(static_cast<uint8_t>(bf16(200.0)), 200);
  EXPECT_FALSE(static_cast<bool>(bf16(0.0)));
  EXPECT_FALSE(static_cast<bool>(bf16(-0.0)));
  EXPECT_TRUE(static_cast<bool>(bf16(0.5)));
}

// ---- tensors ----

TEST(Bf16Tensor, CastsRoundAsTheScalarConversions) {
  Generator gen(21);
  Tensor f = randn({1000}, gen, DType::f32, 0.0, 100.0);
  Tensor h = f.to(DType::bf16);
  EXPECT_EQ(h.dtype(), DType::bf16);
  std::vector<float> fv = f.to_vector<float>();
  std::vector<uint16_t> hb = bits_of(h);
  ASSERT_EQ(hb.size(), fv.size());
  for (size_t i = 0; i < fv.size(); ++i) ASSERT_EQ(hb[i], nearest_bf16<double>(fv[i])) << fv[i];
  // Back to float and double: exact.
  std::vector<float> back = h.to(DType::f32).to_vector<float>();
  std::vector<float> direct = h.to_vector<float>();
  std::vector<double> as_double = h.to(DType::f64).to_vector<double>();
  for (size_t i = 0; i < fv.size(); ++i) {
    ASSERT_EQ(bits_of(back[i]), uint32_t(hb[i]) << 16);
    ASSERT_EQ(back[i], direct[i]);
    ASSERT_EQ(as_double[i], decode<double>(hb[i]));
  }
  EXPECT_TRUE(h.to(DType::bf16).is_same(h));
  // float64 rounds once, straight to bf16.
  const double up = 1.0 + std::ldexp(1.0, -8) + std::ldexp(1.0, -30);
  Tensor d = from_vector<double>({up, -up}, {2});
  EXPECT_EQ(bits_of(d.to(DType::bf16)), (std::vector<uint16_t>{0x3f81, 0xbf81}));
  EXPECT_EQ(bits_of(d.to(DType::f32).to(DType::bf16)), (std::vector<uint16_t>{0x3f80, 0xbf80}));
  // Integers and bool.
  EXPECT_EQ(from_vector<int32_t>({255, 257, 259, -7}, {4}).to(DType::bf16).to_vector<float>(),
            (std::vector<float>{255, 256, 260, -7}));
  const int64_t big = (int64_t(1) << 62) + (int64_t(1) << 54) + 1;
  EXPECT_EQ(from_vector<int64_t>({big}, {1}).to(DType::bf16).to_vector<double>(),
            (std::vector<double>{std::ldexp(1.0, 62) + std::ldexp(1.0, 55)}));
  EXPECT_EQ(arange(255, 260, 1, DType::bf16).to_vector<float>(), (std::vector<float>{255, 256, 256, 258, 260}));
  Tensor m = from_vector<float>({-2.75f, 0.0f, 0.5f, 200.0f}, {4}).to(DType::bf16);
  EXPECT_EQ(m.to(DType::i32).to_vector<int32_t>(), (std::vector<int32_t>{-2, 0, 0, 200}));
  EXPECT_EQ(m.to(DType::u8).to_vector<uint8_t>()[3], 200);
  EXPECT_EQ(m.to(DType::boolean).to(DType::i64).to_vector<int64_t>(), (std::vector<int64_t>{1, 0, 1, 1}));
  EXPECT_EQ(from_vector<uint8_t>({0, 1}, {2}).to(DType::boolean).to(DType::bf16).to_vector<float>(),
            (std::vector<float>{0, 1}));
}

TEST(Bf16Tensor, SpecialValuesSurviveCastsAndCopies) {
  // inf, -inf, a NaN with its sign, signed zero, a subnormal, the largest finite.
  Tensor h = bf16_tensor({0x7f80, 0xff80, 0xffc1, 0x8000, 0x0001, 0x7f7f}, {6});
  EXPECT_EQ(bits_of(h.to(DType::f32).to(DType::bf16)), bits_of(h));
  EXPECT_EQ(bits_of(h.to(DType::f64).to(DType::bf16)), bits_of(h));
  EXPECT_EQ(bits_of(h.clone()), bits_of(h));
  std::vector<float> f = h.to_vector<float>();
  EXPECT_EQ(f[0], INFINITY);
  EXPECT_EQ(f[1], -INFINITY);
  EXPECT_TRUE(std::isnan(f[2]) && std::signbit(f[2]));
  EXPECT_TRUE(f[3] == 0.0f && std::signbit(f[3]));
  EXPECT_EQ(f[4], std::ldexp(1.0f, -133));
  EXPECT_EQ(f[5], std::ldexp(255.0f, 120));
  // A signalling NaN is copied bf16 -> bf16 as it is.
  EXPECT_EQ(bits_of(bf16_tensor({0x7f81, 0xff81}, {2}).clone()), (std::vector<uint16_t>{0x7f81, 0xff81}));
  // Float values past the largest bf16 become inf.
  EXPECT_EQ(bits_of(from_vector<float>({3.4e38f, -3.39e38f}, {2}).to(DType::bf16)),
            (std::vector<uint16_t>{0x7f80, 0xff7f}));
}

TEST(Bf16Tensor, StridedCopiesConvert) {
  Generator gen(22);
  Tensor f = randn({2, 3, 4}, gen, DType::f32);
  std::vector<float> fv = f.permute({2, 0, 1}).to_vector<float>();
  // float32 strided source -> bf16 strided destination.
  Tensor dst = zeros({3, 4, 2}, DType::bf16);
  Tensor view = dst.permute({1, 2, 0});  // (4, 2, 3), strided
  view.copy_(f.permute({2, 0, 1}));
  std::vector<uint16_t> got = bits_of(view);
  ASSERT_EQ(got.size(), fv.size());
  for (size_t i = 0; i < fv.size(); ++i) EXPECT_EQ(got[i], bf16(fv[i]).bits);
  // bf16 strided source -> float64 contiguous destination: exact.
  Tensor d64 = empty({4, 2, 3}, DType::f64);
  d64.copy_(view);
  std::vector<double> dv = d64.to_vector<double>();
  for (size_t i = 0; i < fv.size(); ++i) EXPECT_EQ(dv[i], static_cast<double>(bf16(fv[i])));
  // bf16 -> bf16 through a slice with a step and an expand: the bits move unchanged.
  Tensor row = bf16_tensor({0x3f80, 0xc000, 0x7fc0, 0x0001}, {4});
  Tensor wide = zeros({3, 8}, DType::bf16);
  wide.slice(1, 0, 8, 2).copy_(row.unsqueeze(0).expand({3, 4}));
  EXPECT_EQ(bits_of(wide.narrow(0, 2, 1)), (std::vector<uint16_t>{0x3f80, 0, 0xc000, 0, 0x7fc0, 0, 0x0001, 0}));
  // contiguous() of a bf16 transpose.
  Tensor t = bf16_tensor({1, 2, 3, 4, 5, 6}, {2, 3}).transpose(0, 1);
  EXPECT_FALSE(t.is_contiguous());
  EXPECT_EQ(bits_of(t.contiguous()), (std::vector<uint16_t>{1, 4, 2, 5, 3, 6}));
}

TEST(Bf16Tensor, FillItemFromVectorToVector) {
  Tensor t = full({2, 3}, 0.1, DType::bf16);
  EXPECT_EQ(bits_of(t), std::vector<uint16_t>(6, 0x3dcd));
  EXPECT_EQ(t.narrow(1, 2, 1).narrow(0, 1, 1).item(), 0.10009765625);
  t.slice(1, 0, 3, 2).fill_(-3.0);
  EXPECT_EQ(t.to_vector<double>(), (std::vector<double>{-3, 0.10009765625, -3, -3, 0.10009765625, -3}));
  // fill_ rounds the double once.
  const double up = 1.0 + std::ldexp(1.0, -8) + std::ldexp(1.0, -30);
  EXPECT_EQ(scalar_tensor(up, DType::bf16).item(), 1.0078125);
  EXPECT_EQ(bits_of(zeros({3}, DType::bf16)), std::vector<uint16_t>(3, 0));
  EXPECT_EQ(bits_of(ones({2}, DType::bf16)), std::vector<uint16_t>(2, 0x3f80));
  Tensor v = from_vector<bf16>({bf16(1.5f), bf16(-0.25f), bf16::from_bits(0x0001)}, {3});
  EXPECT_EQ(v.dtype(), DType::bf16);
  EXPECT_EQ(v.to_vector<float>(), (std::vector<float>{1.5f, -0.25f, std::ldexp(1.0f, -133)}));
  EXPECT_EQ(v.to_vector<int64_t>(), (std::vector<int64_t>{1, 0, 0}));
  EXPECT_EQ(bits_of(from_vector<float>({1.0f, 2.0f}, {2})), (std::vector<uint16_t>{0x3f80, 0x4000}));
  test::expect_error([&] { v.data<float>(); }, "[Tensor::data]");
  EXPECT_EQ(error_of([&] { v.data<float>(); }), "[Tensor::data] tensor has dtype bfloat16, asked for float32");
}

TEST(Bf16Tensor, PrintsLikePyTorch) {
  // PyTorch prints a bfloat16 tensor's values as the floats they are (0.1 is 0.10009765625), with
  // dtype=torch.bfloat16; this project names dtypes without the torch. prefix (dtype=float64).
  EXPECT_EQ(from_vector<float>({0.1f, 1.5f}, {2}).to(DType::bf16).str(), "tensor([0.1001, 1.5000], dtype=bfloat16)");
  EXPECT_EQ(from_vector<float>({1, 2, 3, 4}, {2, 2}).to(DType::bf16).str(),
            "tensor([[1., 2.],\n        [3., 4.]], dtype=bfloat16)");
  EXPECT_EQ(scalar_tensor(3.0, DType::bf16).str(), "tensor(3., dtype=bfloat16)");
  EXPECT_EQ(from_vector<float>({1.0f / 3, -2.0f}, {2}).to(DType::bf16).str(),
            "tensor([ 0.3340, -2.0000], dtype=bfloat16)");
  EXPECT_EQ(from_vector<float>({1e10f, 1.0f}, {2}).to(DType::bf16).str(),
            "tensor([9.9992e+09, 1.0000e+00], dtype=bfloat16)");
  EXPECT_EQ(bf16_tensor({0x7f80, 0xff80, 0x7fc0, 0x3f00}, {4}).str(),
            "tensor([   inf,   -inf,    nan, 0.5000], dtype=bfloat16)");
  EXPECT_EQ(empty({0}, DType::bf16).str(), "tensor([], dtype=bfloat16)");
}

TEST(Bf16Tensor, KernelsRefuseItByName) {
  Tensor a = ones({2, 3}, DType::bf16), b = ones({2, 3}, DType::bf16);
  EXPECT_EQ(error_of([&] { kernels::add(a, b.to(DType::f32)); }), "[add] a is bfloat16 but b is float32");
  EXPECT_EQ(error_of([&] { kernels::unary(kernels::UnaryOp::exp, a); }),
            "[exp] x must be float32 or float64, got bfloat16");
  Generator gen(1);
  EXPECT_EQ(error_of([&] { randn({2}, gen, DType::bf16); }), "[randn] expects float32 or float64, got bfloat16");
  EXPECT_EQ(error_of([&] { dispatch_float(DType::bf16, "op", [](auto) {}); }),
            "[op] expects float32 or float64, got bfloat16");
  // The copies among the index ops take any dtype, bf16 included: its bits move unchanged.
  Tensor x = bf16_tensor({1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_EQ(bits_of(kernels::cat({x, x.narrow(0, 0, 1).contiguous()}, 0)),
            (std::vector<uint16_t>{1, 2, 3, 4, 5, 6, 1, 2, 3}));
  EXPECT_EQ(bits_of(kernels::index_select(x, 1, from_vector<int64_t>({2, 0}, {2}))),
            (std::vector<uint16_t>{3, 1, 6, 4}));
  EXPECT_EQ(bits_of(kernels::gather(x, 1, from_vector<int64_t>({1, 1, 0, 2}, {2, 2}))),
            (std::vector<uint16_t>{2, 2, 4, 6}));
}

// ---- safetensors ----

std::string temp_path(const std::string& name) { return test::scratch_path(name + ".safetensors"); }

TEST(Bf16Safetensors, RoundTripIsBitExact) {
  Generator gen(31);
  Tensor w = randn({5, 7}, gen).to(DType::bf16);
  Tensor special = bf16_tensor({0x7f80, 0xff80, 0x7f81, 0xffc1, 0x8000, 0x0001, 0x7f7f, 0x3f80}, {2, 4});
  std::map<std::string, Tensor> tensors = {
      {"w", w},
      {"special", special},
      {"strided", w.transpose(0, 1)},  // written contiguous
      {"f32", randn({3}, gen)},
      {"empty", empty({0, 2}, DType::bf16)},
  };
  const std::string path = temp_path("roundtrip");
  save_safetensors(path, tensors);
  SafetensorsFile f = load_safetensors(path);
  ASSERT_EQ(f.tensors.size(), tensors.size());
  for (const auto& [name, t] : tensors) {
    const Tensor& r = f.tensors.at(name);
    EXPECT_EQ(r.dtype(), t.dtype()) << name;
    EXPECT_EQ(r.shape(), t.shape()) << name;
    if (t.dtype() == DType::bf16) {
      EXPECT_EQ(bits_of(r), bits_of(t)) << name;
    }
  }
  EXPECT_EQ(bits_of(f.tensors.at("special")),
            (std::vector<uint16_t>{0x7f80, 0xff80, 0x7f81, 0xffc1, 0x8000, 0x0001, 0x7f7f, 0x3f80}));
  // The header names the dtype as the reference does.
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(bytes.find(R"("special":{"dtype":"BF16","shape":[2,4],)"), std::string::npos);
  std::remove(path.c_str());
}

void write_file(const std::string& path, const std::string& header, const std::string& data) {
  std::ofstream out(path, std::ios::binary);
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>(static_cast<uint64_t>(header.size()) >> (8 * i)));
  out << header << data;
}

TEST(Bf16Safetensors, ReadsAHandBuiltFile) {
  // 0x3F80 = 1, 0xC000 = -2, 0x7FC0 a NaN, 0x0001 = 2^-133 (the smallest subnormal), little-endian.
  const std::string data("\x80\x3f\x00\xc0\xc0\x7f\x01\x00", 8);
  const std::string path = temp_path("hand");
  write_file(path, R"({"w":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,8]}})", data);
  const Tensor w = load_safetensors(path).tensors.at("w");
  EXPECT_EQ(w.dtype(), DType::bf16);
  EXPECT_EQ(w.shape(), (Shape{2, 2}));
  EXPECT_EQ(bits_of(w), (std::vector<uint16_t>{0x3f80, 0xc000, 0x7fc0, 0x0001}));
  std::vector<double> v = w.to_vector<double>();
  EXPECT_EQ(v[0], 1.0);
  EXPECT_EQ(v[1], -2.0);
  EXPECT_TRUE(std::isnan(v[2]));
  EXPECT_EQ(v[3], 9.183549615799121e-41);
  EXPECT_EQ(v[3], std::ldexp(1.0, -133));
  // The byte count follows the dtype's 2 bytes.
  write_file(path, R"({"w":{"dtype":"BF16","shape":[3],"data_offsets":[0,8]}})", data);
  EXPECT_EQ(error_of([&] { load_safetensors(path); }),
            "[safetensors] " + path + ": entry 'w' spans 8 bytes, but BF16 (3,) needs 6");
  write_file(path, R"({"w":{"dtype":"BF16","shape":[4],"data_offsets":[0,8]}})", data.substr(0, 7));
  test::expect_error([&] { load_safetensors(path); }, "[safetensors]");
  write_file(path, R"({"w":{"dtype":"bf16","shape":[4],"data_offsets":[0,8]}})", data);
  EXPECT_NE(error_of([&] { load_safetensors(path); }).find("(expected F32, F64, BF16, I32, I64, U8 or BOOL)"),
            std::string::npos);
  std::remove(path.c_str());
}

}  // namespace
}  // namespace mom
