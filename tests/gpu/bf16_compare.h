// The comparison of a mixed-precision CUDA result with the CPU reference, shared by the bf16 GPU suites
// (test_cuda_bf16_conv.cpp, test_cuda_bf16_scan.cpp, test_cuda_bf16_gemm.cpp). The CPU reference widens
// the same bf16 inputs to float32, runs the float32 op and rounds each bf16 output once, so a bf16 output
// is within one bf16 step of it everywhere and equal to it almost everywhere; a float32 output differs
// by float32 noise only. The suites differ in how many bf16 elements may differ and in the float32
// bounds: each passes its own Tolerances, which its header comment explains.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/tensor.h"
#include "tests/support.h"

namespace mom::test {

inline double rms(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x * x;
  return v.empty() ? 0.0 : std::sqrt(s / static_cast<double>(v.size()));
}

// What a CUDA result may differ from the CPU reference by.
struct Tolerances {
  // bf16: every element within one bf16 step, |cuda - ref| <= 2^-7 |ref| + 1e-3 rms(ref) (the second
  // term covers values near zero after cancellation), and at most bf16_share of the elements, plus
  // bf16_spare of them (for outputs of a few dozen elements), differing at all.
  double bf16_share;
  int64_t bf16_spare;
  // float32: per element |cuda - ref| <= f32_element (|ref| + rms(ref)), and the relative error of the
  // norm below f32_norm (0: the norm is not bounded beyond the elements).
  double f32_element;
  double f32_norm;
  // An output undefined on both devices (an optional input left out) passes; else both must be defined.
  bool undefined_ok;
};

// A CUDA result (on GPU 0, of dtype `want`) against the CPU reference, within `tol`. With `zero` the
// reference is zero by construction (a gradient that only an undefined incoming gradient feeds), and so
// must be the result; without it an all-zero reference fails (the inputs would test nothing). Returns
// the share of differing elements (bf16) or the relative error of the norm (float32).
inline double expect_close(const Tensor& got, const Tensor& ref, DType want, const Tolerances& tol,
                           const std::string& what, bool zero = false) {
  SCOPED_TRACE(what);
  if (tol.undefined_ok) {
    EXPECT_EQ(got.defined(), ref.defined());
  } else {
    EXPECT_TRUE(got.defined() && ref.defined());
  }
  if (!got.defined() || !ref.defined()) return 0;
  EXPECT_EQ(got.device(), Device::cuda(0));
  EXPECT_EQ(got.dtype(), want);
  EXPECT_EQ(ref.dtype(), want);
  EXPECT_EQ(got.shape(), ref.shape());
  const std::vector<double> g = got.to(Device::cpu()).to_vector<double>(), r = ref.to_vector<double>();
  if (g.size() != r.size()) return 1;
  const double scale = rms(r);
  if (zero) {
    EXPECT_EQ(scale, 0.0) << "expected zeros";
  } else {
    EXPECT_GT(scale, 0.0) << "the reference is all zeros: the inputs test nothing";
  }
  const bool bf = want == DType::bf16;
  int64_t differ = 0, bad = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    const double d = std::fabs(g[i] - r[i]);
    if (d != 0) ++differ;
    const double bound =
        bf ? std::ldexp(std::fabs(r[i]), -7) + 1e-3 * scale : tol.f32_element * (std::fabs(r[i]) + scale);
    if (!(d <= bound) && bad++ < 5) ADD_FAILURE() << "element " << i << ": cuda " << g[i] << ", reference " << r[i];
  }
  EXPECT_EQ(bad, 0) << "elements outside the tolerance";
  if (bf) {
    EXPECT_LE(static_cast<double>(differ),
              static_cast<double>(tol.bf16_spare) + tol.bf16_share * static_cast<double>(g.size()))
        << differ << " of " << g.size() << " elements differ from the reference";
    return g.empty() ? 0.0 : static_cast<double>(differ) / static_cast<double>(g.size());
  }
  const double e = rel_error(got.to(Device::cpu()), ref);
  if (tol.f32_norm > 0) {
    EXPECT_LT(e, tol.f32_norm);
  }
  return e;
}

}  // namespace mom::test
