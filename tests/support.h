// Helpers shared by the test suites.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/tensor.h"

namespace mom::test {

// Runs f and expects a mom::Error whose message starts with `prefix` (e.g. "[masked_linear]").
template <typename F> void expect_error(F&& f, const std::string& prefix) {
  try {
    f();
    ADD_FAILURE() << "expected mom::Error starting with " << prefix;
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind(prefix, 0), 0u) << "message: " << e.what();
  }
}

// A fresh leaf that requires grad, holding a copy of t's values.
inline Tensor leaf(const Tensor& t) {
  Tensor l = t.detach().clone();
  l.set_requires_grad(true);
  return l;
}

// ||a - b|| / ||b|| over all elements (b is the reference), computed in double.
inline double rel_error(const Tensor& a, const Tensor& b) {
  std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  EXPECT_EQ(x.size(), y.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < std::min(x.size(), y.size()); ++i) {
    num += (x[i] - y[i]) * (x[i] - y[i]);
    den += y[i] * y[i];
  }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-300);
}

// A path in the test temporary directory that no other test uses: ctest runs the tests in parallel, one
// process per test, so the running test's full name is part of the path.
inline std::string scratch_path(const std::string& name) {
  const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string test = info ? std::string(info->test_suite_name()) + "." + info->name() : "no_test";
  std::replace(test.begin(), test.end(), '/', '_');
  return ::testing::TempDir() + "mom_" + test + "_" + name;
}

// A document of a packed row: [begin, end).
struct Span {
  int64_t begin, end;
};

// The documents of row b of (B, L) start flags (one byte each): one begins at 0 and at every flagged
// t > 0 (a flag at t = 0 changes nothing).
inline std::vector<Span> document_spans(const std::vector<uint8_t>& flags, int64_t b, int64_t L) {
  std::vector<Span> docs;
  int64_t begin = 0;
  for (int64_t t = 1; t < L; ++t)
    if (flags[b * L + t]) {
      docs.push_back({begin, t});
      begin = t;
    }
  docs.push_back({begin, L});
  return docs;
}

// (B, L) boolean document start flags for documents of 1 to max_len tokens, drawn from gen; row 0 also
// flags t = 0 and ends with a one-token document.
inline Tensor random_doc_starts(int64_t B, int64_t L, uint64_t max_len, Generator& gen) {
  std::vector<uint8_t> flags(static_cast<size_t>(B * L), 0);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = static_cast<int64_t>(gen.randint(max_len)); t < L;
         t += 1 + static_cast<int64_t>(gen.randint(max_len)))
      flags[b * L + t] = 1;
    if (b == 0) flags[0] = flags[L - 1] = 1;
  }
  return from_vector<uint8_t>(flags, {B, L}).to(DType::boolean);
}

// T modality ids of M modalities with uneven counts (modality m drawn with weight m + 1); `absent`
// (if >= 0) is replaced by the next modality, so that expert has no token; `sorted` puts them in order
// (the identity routing).
inline std::vector<int32_t> uneven_ids(int64_t T, int64_t M, int64_t absent, bool sorted, Generator& gen) {
  std::vector<int32_t> ids(static_cast<size_t>(T));
  for (int32_t& id : ids) {
    int64_t r = static_cast<int64_t>(gen.randint(static_cast<uint64_t>(M * (M + 1) / 2))), m = 0;
    while (r >= m + 1) r -= ++m;
    id = static_cast<int32_t>(m == absent ? (m + 1) % M : m);
  }
  if (sorted) std::sort(ids.begin(), ids.end());
  return ids;
}

inline double max_abs_diff(const Tensor& a, const Tensor& b) {
  std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  double m = 0;
  for (size_t i = 0; i < std::min(x.size(), y.size()); ++i) m = std::max(m, std::fabs(x[i] - y[i]));
  return m;
}

}  // namespace mom::test
