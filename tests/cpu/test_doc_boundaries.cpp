// Document boundaries (doc_start) of the selective scan and the causal conv1d: a packed row against one
// call per document (outputs, the carried state or window, every gradient), grouped rows against the
// plain layout, flags that set no boundary, chunked calls that split a document, the autograd
// functions, and bad doc_start. The finite-difference checks of packed rows are registered cases ("docs"
// variants), run by AllOps/RegisteredGradcheck and the strict perturbation tests.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <tuple>
#include <vector>

#include "autograd/causal_conv1d.h"
#include "autograd/engine.h"
#include "autograd/selective_scan.h"
#include "kernels/causal_conv1d.h"
#include "kernels/index.h"
#include "kernels/routing.h"
#include "kernels/selective_scan.h"
#include "tests/support.h"

namespace mom {
namespace {

using test::expect_error;
using test::leaf;
using test::rel_error;
using test::Span;

// ---- documents ----

// Flags of B >= 4 rows of length L >= 4, each row its own pattern: row 0 flags t = 0, a length-1
// document at 0 and at L-1 and random ones between; row 1 flags only t = 0 and row 2 nothing (one
// document over the whole row, flagged and not); the other rows random lengths, short (1-3) or long
// (1-12), t = 0 flagged or not. `unflagged` (if >= 0) is a position no row flags.
std::vector<uint8_t> random_flags(Generator& gen, int64_t B, int64_t L, int64_t unflagged = -1) {
  std::vector<uint8_t> flags(B * L, 0);
  for (int64_t b = 0; b < B; ++b) {
    uint8_t* row = flags.data() + b * L;
    if (b == 0) {
      row[0] = row[1] = row[L - 1] = 1;
      for (int64_t t = 2; t < L - 1; ++t) row[t] = gen.randint(4) == 0;
    } else if (b == 1) {
      row[0] = 1;
    } else if (b >= 3) {
      row[0] = static_cast<uint8_t>(gen.randint(2));
      const uint64_t longest = b % 2 ? 3 : 12;
      for (int64_t t = 1 + static_cast<int64_t>(gen.randint(longest)); t < L;
           t += 1 + static_cast<int64_t>(gen.randint(longest)))
        row[t] = 1;
    }
    if (unflagged >= 0) row[unflagged] = 0;
  }
  return flags;
}

Tensor doc_start_of(const std::vector<uint8_t>& flags, int64_t B, int64_t L) {
  return from_vector<uint8_t>(flags, {B, L}).to(DType::boolean);
}

// Document `s` of row b of a (B, L, C) tensor, as a (1, length, C) tensor; row b of a (B, ...) tensor.
Tensor piece(const Tensor& t, int64_t b, Span s) {
  return t.narrow(0, b, 1).narrow(1, s.begin, s.end - s.begin).contiguous();
}
Tensor row_of(const Tensor& t, int64_t b) { return t.defined() ? t.narrow(0, b, 1).contiguous() : Tensor(); }

// Same shape, dtype and bytes (two undefined tensors are equal; one is not).
bool same_bits(const Tensor& a, const Tensor& b) {
  if (!a.defined() || !b.defined()) return a.defined() == b.defined();
  Tensor x = a.contiguous(), y = b.contiguous();
  return x.dtype() == y.dtype() && x.shape() == y.shape() &&
         std::memcmp(x.raw_data(), y.raw_data(), static_cast<size_t>(x.numel()) * dtype_size(x.dtype())) == 0;
}

// Sums of per-document parameter gradients, in double.
struct Sum {
  std::vector<double> v;
  void add(const Tensor& t) {
    if (!t.defined()) return;
    std::vector<double> x = t.to_vector<double>();
    if (v.empty()) v.assign(x.size(), 0.0);
    for (size_t i = 0; i < x.size(); ++i) v[i] += x[i];
  }
  double rel_error_of(const Tensor& packed) const { return rel_error(packed, from_vector<double>(v, packed.shape())); }
};

// t (B, L, C) with its rows in the grouped order of r: row inverse[b*L + t] holds token (b, t).
Tensor grouped(const Tensor& t, const kernels::Routing& r) {
  const int64_t B = t.size(0), L = t.size(1), C = t.size(2);
  return kernels::index_select(t.contiguous().view({B * L, C}), 0, r.perm).view({B, L, C});
}

// ---- selective scan ----

struct ScanShape {
  int64_t B, L, E, N;
  bool options;  // D, z, delta_bias, initial_state and softplus, or none of them
};

kernels::SelectiveScanParams random_scan(const ScanShape& c, Generator& gen, DType dt) {
  kernels::SelectiveScanParams p;
  p.u = randn({c.B, c.L, c.E}, gen, dt);
  p.delta = rand({c.B, c.L, c.E}, gen, dt, c.options ? -1.0 : 0.05, c.options ? 1.0 : 0.5);
  p.A = rand({c.E, c.N}, gen, dt, -2.0, -0.2);
  p.B_ssm = randn({c.B, c.L, c.N}, gen, dt);
  p.C_ssm = randn({c.B, c.L, c.N}, gen, dt);
  if (c.options) {
    p.D = randn({c.E}, gen, dt);
    p.z = randn({c.B, c.L, c.E}, gen, dt);
    p.delta_bias = rand({c.E}, gen, dt, -0.5, 0.5);
    p.initial_state = randn({c.B, c.E, c.N}, gen, dt);
    p.delta_softplus = true;
  }
  return p;
}

// The parameters of document s of row b alone: its rows of the sequence tensors, the shared weights,
// and the row's initial state for the row's first document only.
kernels::SelectiveScanParams scan_document(const kernels::SelectiveScanParams& p, int64_t b, Span s, bool first) {
  kernels::SelectiveScanParams q = p;
  q.u = piece(p.u, b, s);
  q.delta = piece(p.delta, b, s);
  q.B_ssm = piece(p.B_ssm, b, s);
  q.C_ssm = piece(p.C_ssm, b, s);
  if (p.z.defined()) q.z = piece(p.z, b, s);
  q.initial_state = first ? row_of(p.initial_state, b) : Tensor();
  q.doc_start = Tensor();
  return q;
}

// Outputs, last_state and the per-token gradients equal those of one call per document bit for bit;
// dinitial_state equals the first document's. dA, dD and ddelta_bias equal the sums of the documents'
// own to rounding only: the packed call adds a row's terms over t in one pass (per (b, e), then over b),
// one call per document adds each document's terms and rounds to the input type, and the documents'
// results are summed here, so the additions are grouped differently.
void check_scan_documents(DType dt, const ScanShape& c, double param_tol) {
  Generator gen(c.L * 100 + c.E);
  kernels::SelectiveScanParams p = random_scan(c, gen, dt);
  const std::vector<uint8_t> flags = random_flags(gen, c.B, c.L);
  p.doc_start = doc_start_of(flags, c.B, c.L);
  Tensor dout = randn({c.B, c.L, c.E}, gen, dt), dlast = randn({c.B, c.E, c.N}, gen, dt);
  const kernels::SelectiveScanOutput fwd = kernels::selective_scan_forward(p);
  const kernels::SelectiveScanGrads grads = kernels::selective_scan_backward(p, dout, dlast);

  Sum dA, dD, ddelta_bias;
  int documents = 0;
  for (int64_t b = 0; b < c.B; ++b) {
    const std::vector<Span> docs = test::document_spans(flags, b, c.L);
    for (size_t j = 0; j < docs.size(); ++j) {
      const Span s = docs[j];
      const bool first = j == 0, last = j + 1 == docs.size();
      SCOPED_TRACE("row " + std::to_string(b) + " document [" + std::to_string(s.begin) + ", " +
                   std::to_string(s.end) + ")");
      const kernels::SelectiveScanParams q = scan_document(p, b, s, first);
      const kernels::SelectiveScanOutput r = kernels::selective_scan_forward(q);
      EXPECT_TRUE(same_bits(r.out, piece(fwd.out, b, s)));
      if (last) {
        EXPECT_TRUE(same_bits(r.last_state, row_of(fwd.last_state, b)));
      }
      const kernels::SelectiveScanGrads g =
          kernels::selective_scan_backward(q, piece(dout, b, s), last ? row_of(dlast, b) : Tensor());
      EXPECT_TRUE(same_bits(g.du, piece(grads.du, b, s)));
      EXPECT_TRUE(same_bits(g.ddelta, piece(grads.ddelta, b, s)));
      EXPECT_TRUE(same_bits(g.dB_ssm, piece(grads.dB_ssm, b, s)));
      EXPECT_TRUE(same_bits(g.dC_ssm, piece(grads.dC_ssm, b, s)));
      if (c.options) {
        EXPECT_TRUE(same_bits(g.dz, piece(grads.dz, b, s)));
      }
      if (first && c.options) {
        EXPECT_TRUE(same_bits(g.dinitial_state, row_of(grads.dinitial_state, b)));
      }
      dA.add(g.dA);
      dD.add(g.dD);
      ddelta_bias.add(g.ddelta_bias);
      ++documents;
    }
  }
  const double e_A = dA.rel_error_of(grads.dA);
  EXPECT_LE(e_A, param_tol);
  std::printf("  %s B=%lld L=%lld E=%lld N=%lld%s: %d documents; dA rel err %.1e", dtype_name(dt),
              static_cast<long long>(c.B), static_cast<long long>(c.L), static_cast<long long>(c.E),
              static_cast<long long>(c.N), c.options ? " all options" : "", documents, e_A);
  if (c.options) {
    const double e_D = dD.rel_error_of(grads.dD), e_bias = ddelta_bias.rel_error_of(grads.ddelta_bias);
    EXPECT_LE(e_D, param_tol);
    EXPECT_LE(e_bias, param_tol);
    std::printf(", dD %.1e, ddelta_bias %.1e", e_D, e_bias);
  }
  std::printf("\n");
}

// Past B*L*E*N = 32768 the kernels run on every thread.
const ScanShape kScanShapes[] = {{6, 37, 20, 5, true}, {5, 23, 3, 4, false}, {6, 80, 20, 16, true}};

TEST(DocBoundaries, ScanPackedRowEqualsOneCallPerDocumentF64) {
  for (const ScanShape& c : kScanShapes) check_scan_documents(DType::f64, c, 1e-12);
}

TEST(DocBoundaries, ScanPackedRowEqualsOneCallPerDocumentF32) {
  for (const ScanShape& c : kScanShapes) check_scan_documents(DType::f32, c, 1e-5);
}

// All-false flags, or flags at t = 0 only, set no boundary: the bits of the scan without doc_start.
TEST(DocBoundaries, ScanFlagsWithoutBoundaryChangeNothing) {
  Generator gen(2);
  const ScanShape c{3, 19, 6, 4, true};
  const kernels::SelectiveScanParams plain = random_scan(c, gen, DType::f32);
  Tensor dout = randn({c.B, c.L, c.E}, gen, DType::f32), dlast = randn({c.B, c.E, c.N}, gen, DType::f32);
  const kernels::SelectiveScanOutput ref = kernels::selective_scan_forward(plain);
  const kernels::SelectiveScanGrads gref = kernels::selective_scan_backward(plain, dout, dlast);
  std::vector<uint8_t> at_zero(c.B * c.L, 0);
  for (int64_t b = 0; b < c.B; ++b) at_zero[b * c.L] = 1;
  for (const std::vector<uint8_t>& flags : {std::vector<uint8_t>(c.B * c.L, 0), at_zero}) {
    kernels::SelectiveScanParams p = plain;
    p.doc_start = doc_start_of(flags, c.B, c.L);
    const kernels::SelectiveScanOutput got = kernels::selective_scan_forward(p);
    const kernels::SelectiveScanGrads g = kernels::selective_scan_backward(p, dout, dlast);
    EXPECT_TRUE(same_bits(got.out, ref.out));
    EXPECT_TRUE(same_bits(got.last_state, ref.last_state));
    for (auto [a, want] : {std::pair{g.du, gref.du}, {g.ddelta, gref.ddelta}, {g.dA, gref.dA}, {g.dB_ssm, gref.dB_ssm},
                           {g.dC_ssm, gref.dC_ssm}, {g.dD, gref.dD}, {g.dz, gref.dz},
                           {g.ddelta_bias, gref.ddelta_bias}, {g.dinitial_state, gref.dinitial_state}})
      EXPECT_TRUE(same_bits(a, want));
  }
}

// With a row order the sequence tensors are in grouped order and doc_start stays in token order: the
// results are the plain layout's, permuted, bit for bit.
TEST(DocBoundaries, ScanGroupedRowsEqualPermutedPlain) {
  Generator gen(3);
  const ScanShape c{5, 29, 7, 5, true};
  const int64_t T = c.B * c.L;
  const kernels::Routing routing = kernels::Routing::from_modalities(randint({T}, 0, 3, gen, DType::i32), 3);
  kernels::SelectiveScanParams plain = random_scan(c, gen, DType::f64);
  plain.doc_start = doc_start_of(random_flags(gen, c.B, c.L), c.B, c.L);
  Tensor dout = randn({c.B, c.L, c.E}, gen, DType::f64), dlast = randn({c.B, c.E, c.N}, gen, DType::f64);
  kernels::SelectiveScanParams g = plain;
  for (Tensor* t : {&g.u, &g.delta, &g.B_ssm, &g.C_ssm, &g.z}) *t = grouped(*t, routing);
  g.order = &routing;
  const kernels::SelectiveScanOutput ref = kernels::selective_scan_forward(plain),
                                     got = kernels::selective_scan_forward(g);
  EXPECT_TRUE(same_bits(got.out, grouped(ref.out, routing)));
  EXPECT_TRUE(same_bits(got.last_state, ref.last_state));
  const kernels::SelectiveScanGrads gref = kernels::selective_scan_backward(plain, dout, dlast);
  const kernels::SelectiveScanGrads ggot = kernels::selective_scan_backward(g, grouped(dout, routing), dlast);
  for (auto [a, want] :
       {std::pair{ggot.du, grouped(gref.du, routing)}, {ggot.ddelta, grouped(gref.ddelta, routing)},
        {ggot.dB_ssm, grouped(gref.dB_ssm, routing)}, {ggot.dC_ssm, grouped(gref.dC_ssm, routing)},
        {ggot.dz, grouped(gref.dz, routing)}, {ggot.dA, gref.dA}, {ggot.dD, gref.dD},
        {ggot.ddelta_bias, gref.ddelta_bias}, {ggot.dinitial_state, gref.dinitial_state}})
    EXPECT_TRUE(same_bits(a, want));
}

// Two chained calls split inside a document (last_state -> initial_state) against one call, through
// autograd: outputs bit for bit, gradients to rounding (the chain adds the same terms in another order).
TEST(DocBoundaries, ScanChunkedThroughADocumentEqualsOneCall) {
  Generator gen(4);
  const ScanShape c{5, 31, 6, 4, true};
  const int64_t L1 = 13, L2 = c.L - L1;
  const kernels::SelectiveScanParams data = random_scan(c, gen, DType::f64);
  const std::vector<uint8_t> flags = random_flags(gen, c.B, c.L, L1);
  const Tensor doc_start = doc_start_of(flags, c.B, c.L);
  Tensor w_out = randn({c.B, c.L, c.E}, gen, DType::f64), w_last = randn({c.B, c.E, c.N}, gen, DType::f64);

  auto inputs = [&](const Tensor& A, const Tensor& D, const Tensor& bias, int64_t start, int64_t length) {
    kernels::SelectiveScanParams in;
    in.u = leaf(data.u.narrow(1, start, length));
    in.delta = leaf(data.delta.narrow(1, start, length));
    in.B_ssm = leaf(data.B_ssm.narrow(1, start, length));
    in.C_ssm = leaf(data.C_ssm.narrow(1, start, length));
    in.z = leaf(data.z.narrow(1, start, length));
    in.doc_start = doc_start.narrow(1, start, length);  // strided: the autograd function makes it contiguous
    in.A = A;
    in.D = D;
    in.delta_bias = bias;
    in.delta_softplus = true;
    return in;
  };
  kernels::SelectiveScanParams whole = inputs(leaf(data.A), leaf(data.D), leaf(data.delta_bias), 0, c.L);
  whole.initial_state = leaf(data.initial_state);
  const SelectiveScanResult r = selective_scan(whole);
  backward({r.out, r.last_state}, {w_out, w_last});

  const Tensor A = leaf(data.A), D = leaf(data.D), bias = leaf(data.delta_bias), h0 = leaf(data.initial_state);
  kernels::SelectiveScanParams first = inputs(A, D, bias, 0, L1), second = inputs(A, D, bias, L1, L2);
  first.initial_state = h0;
  const SelectiveScanResult r1 = selective_scan(first);
  second.initial_state = r1.last_state;
  const SelectiveScanResult r2 = selective_scan(second);
  backward({r1.out, r2.out, r2.last_state}, {w_out.narrow(1, 0, L1).contiguous(), w_out.narrow(1, L1, L2).contiguous(),
                                             w_last});
  EXPECT_TRUE(same_bits(r1.out, r.out.detach().narrow(1, 0, L1)));
  EXPECT_TRUE(same_bits(r2.out, r.out.detach().narrow(1, L1, L2)));
  EXPECT_TRUE(same_bits(r2.last_state, r.last_state));
  for (auto [name, part, whole_grad] :
       {std::tuple{"u", first.u.grad(), whole.u.grad().narrow(1, 0, L1)},
        {"u", second.u.grad(), whole.u.grad().narrow(1, L1, L2)},
        {"delta", first.delta.grad(), whole.delta.grad().narrow(1, 0, L1)},
        {"B_ssm", first.B_ssm.grad(), whole.B_ssm.grad().narrow(1, 0, L1)},
        {"A", A.grad(), whole.A.grad()},
        {"D", D.grad(), whole.D.grad()},
        {"delta_bias", bias.grad(), whole.delta_bias.grad()},
        {"initial_state", h0.grad(), whole.initial_state.grad()}})
    EXPECT_LE(rel_error(part, whole_grad), 1e-12) << name;
}

// doc_start is saved for the backward like the inputs: changing it in place after the forward is an error.
TEST(DocBoundaries, ScanSavedDocStartChangedInPlaceIsAnError) {
  Generator gen(5);
  const kernels::SelectiveScanParams p = random_scan({2, 6, 3, 2, false}, gen, DType::f64);
  kernels::SelectiveScanParams in;
  in.u = leaf(p.u);
  in.delta = p.delta;
  in.A = p.A;
  in.B_ssm = p.B_ssm;
  in.C_ssm = p.C_ssm;
  in.doc_start = zeros({2, 6}, DType::boolean);
  const SelectiveScanResult r = selective_scan(in);
  in.doc_start.fill_(1.0);
  expect_error([&] { backward({r.out}, {ones({2, 6, 3}, DType::f64)}); }, "[selective_scan]");
}

TEST(DocBoundaries, ScanRejectsBadDocStart) {
  Generator gen(6);
  const kernels::SelectiveScanParams good = random_scan({2, 5, 4, 3, true}, gen, DType::f64);
  Tensor dout = randn({2, 5, 4}, gen, DType::f64);
  auto expect_rejected = [&](const Tensor& doc_start, const std::string& message) {
    kernels::SelectiveScanParams p = good;
    p.doc_start = doc_start;
    expect_error([&] { kernels::selective_scan_forward(p); }, message);
    expect_error([&] { kernels::selective_scan_backward(p, dout, Tensor()); }, message);
  };
  expect_rejected(zeros({2, 5}, DType::f32), "[selective_scan] doc_start must be bool, got float32");
  expect_rejected(zeros({2, 5}, DType::u8), "[selective_scan] doc_start must be bool, got uint8");
  expect_rejected(zeros({2, 5}, DType::i64), "[selective_scan] doc_start must be bool, got int64");
  expect_rejected(zeros({2, 6}, DType::boolean),
                  "[selective_scan] doc_start has shape (2, 6), expected (B, L) = (2, 5)");
  expect_rejected(zeros({10}, DType::boolean), "[selective_scan] doc_start has shape (10,), expected (B, L)");
  expect_rejected(zeros({2, 5, 1}, DType::boolean), "[selective_scan] doc_start has shape (2, 5, 1)");
  expect_rejected(zeros({5, 2}, DType::boolean).transpose(0, 1), "[selective_scan] doc_start must be contiguous");
  // Through the differentiable function.
  kernels::SelectiveScanParams in;
  in.u = leaf(good.u);
  in.delta = good.delta;
  in.A = good.A;
  in.B_ssm = good.B_ssm;
  in.C_ssm = good.C_ssm;
  in.doc_start = zeros({2, 5}, DType::f32);
  expect_error([&] { selective_scan(in); }, "[selective_scan] doc_start must be bool");
}

// ---- causal conv1d ----

struct ConvShape {
  int64_t B, L, E, W;
  bool bias, init, silu;
};

struct ConvInputs {
  Tensor x, w, bias, init, dy, dfinal;
};

ConvInputs random_conv(const ConvShape& c, Generator& gen, DType dt) {
  ConvInputs in;
  in.x = randn({c.B, c.L, c.E}, gen, dt);
  in.w = randn({c.E, c.W}, gen, dt, 0, 0.5);
  if (c.bias) in.bias = randn({c.E}, gen, dt);
  if (c.init) in.init = randn({c.B, c.W - 1, c.E}, gen, dt);
  in.dy = randn({c.B, c.L, c.E}, gen, dt);
  in.dfinal = randn({c.B, c.W - 1, c.E}, gen, dt);
  return in;
}

// As for the scan: y, the final window, dx and dinitial_window equal those of one call per document bit
// for bit; dweight and dbias the documents' sums to rounding (the packed call sums each channel's terms
// over b and t in one pass in double; one call per document rounds each document's sum to the input
// type before they are added here).
void check_conv_documents(DType dt, const ConvShape& c, double param_tol) {
  Generator gen(c.L * 100 + c.E * 10 + c.W);
  const ConvInputs in = random_conv(c, gen, dt);
  const std::vector<uint8_t> flags = random_flags(gen, c.B, c.L);
  const Tensor doc_start = doc_start_of(flags, c.B, c.L);
  const kernels::CausalConv1dOutput fwd =
      kernels::causal_conv1d_forward({in.x, in.w, in.bias, in.init, doc_start, c.silu});
  const kernels::CausalConv1dGrads grads =
      kernels::causal_conv1d_backward({in.x, in.w, in.bias, in.init, doc_start, c.silu}, in.dy, in.dfinal);

  Sum dweight, dbias;
  int documents = 0;
  for (int64_t b = 0; b < c.B; ++b) {
    const std::vector<Span> docs = test::document_spans(flags, b, c.L);
    for (size_t j = 0; j < docs.size(); ++j) {
      const Span s = docs[j];
      const bool first = j == 0, last = j + 1 == docs.size();
      SCOPED_TRACE("row " + std::to_string(b) + " document [" + std::to_string(s.begin) + ", " +
                   std::to_string(s.end) + ")");
      const Tensor x = piece(in.x, b, s), init = first ? row_of(in.init, b) : Tensor();
      const kernels::CausalConv1dOutput r = kernels::causal_conv1d_forward({x, in.w, in.bias, init, Tensor(), c.silu});
      EXPECT_TRUE(same_bits(r.y, piece(fwd.y, b, s)));
      if (last) {
        EXPECT_TRUE(same_bits(r.final_window, row_of(fwd.final_window, b)));
      }
      const kernels::CausalConv1dGrads g = kernels::causal_conv1d_backward(
          {x, in.w, in.bias, init, Tensor(), c.silu}, piece(in.dy, b, s), last ? row_of(in.dfinal, b) : Tensor());
      EXPECT_TRUE(same_bits(g.dx, piece(grads.dx, b, s)));
      if (first && c.init) {
        EXPECT_TRUE(same_bits(g.dinitial_window, row_of(grads.dinitial_window, b)));
      }
      dweight.add(g.dweight);
      dbias.add(g.dbias);
      ++documents;
    }
  }
  const double e_w = dweight.rel_error_of(grads.dweight);
  EXPECT_LE(e_w, param_tol);
  std::printf("  %s B=%lld L=%lld E=%lld W=%lld%s%s%s: %d documents; dweight rel err %.1e", dtype_name(dt),
              static_cast<long long>(c.B), static_cast<long long>(c.L), static_cast<long long>(c.E),
              static_cast<long long>(c.W), c.bias ? " bias" : "", c.init ? " init" : "", c.silu ? " silu" : "",
              documents, e_w);
  if (c.bias) {
    const double e_b = dbias.rel_error_of(grads.dbias);
    EXPECT_LE(e_b, param_tol);
    std::printf(", dbias %.1e", e_b);
  }
  std::printf("\n");
}

// W = 8 with documents shorter than the window; L = 5 < W-1 (final windows reaching into the initial
// one); past B*L*E*W = 32768 the OpenMP paths.
const ConvShape kConvShapes[] = {{6, 37, 5, 4, true, true, true},   {6, 29, 6, 8, true, true, false},
                                 {5, 23, 3, 2, false, true, true},  {6, 5, 4, 8, true, true, true},
                                 {5, 19, 4, 3, false, false, false}, {6, 50, 96, 4, true, true, true}};

TEST(DocBoundaries, ConvPackedRowEqualsOneCallPerDocumentF64) {
  for (const ConvShape& c : kConvShapes) check_conv_documents(DType::f64, c, 1e-12);
}

TEST(DocBoundaries, ConvPackedRowEqualsOneCallPerDocumentF32) {
  for (const ConvShape& c : kConvShapes) check_conv_documents(DType::f32, c, 1e-6);
}

TEST(DocBoundaries, ConvFlagsWithoutBoundaryChangeNothing) {
  Generator gen(7);
  const ConvShape c{3, 17, 5, 4, true, true, true};
  const ConvInputs in = random_conv(c, gen, DType::f32);
  const kernels::CausalConv1dOutput ref =
      kernels::causal_conv1d_forward({in.x, in.w, in.bias, in.init, Tensor(), true});
  const kernels::CausalConv1dGrads gref =
      kernels::causal_conv1d_backward({in.x, in.w, in.bias, in.init, Tensor(), true}, in.dy, in.dfinal);
  std::vector<uint8_t> at_zero(c.B * c.L, 0);
  for (int64_t b = 0; b < c.B; ++b) at_zero[b * c.L] = 1;
  for (const std::vector<uint8_t>& flags : {std::vector<uint8_t>(c.B * c.L, 0), at_zero}) {
    const Tensor doc_start = doc_start_of(flags, c.B, c.L);
    const kernels::CausalConv1dOutput got =
        kernels::causal_conv1d_forward({in.x, in.w, in.bias, in.init, doc_start, true});
    const kernels::CausalConv1dGrads g =
        kernels::causal_conv1d_backward({in.x, in.w, in.bias, in.init, doc_start, true}, in.dy, in.dfinal);
    EXPECT_TRUE(same_bits(got.y, ref.y));
    EXPECT_TRUE(same_bits(got.final_window, ref.final_window));
    EXPECT_TRUE(same_bits(g.dx, gref.dx));
    EXPECT_TRUE(same_bits(g.dweight, gref.dweight));
    EXPECT_TRUE(same_bits(g.dbias, gref.dbias));
    EXPECT_TRUE(same_bits(g.dinitial_window, gref.dinitial_window));
  }
}

TEST(DocBoundaries, ConvGroupedRowsEqualPermutedPlain) {
  for (const ConvShape& c : {ConvShape{5, 23, 4, 4, true, true, true}, ConvShape{6, 40, 96, 4, true, false, true}}) {
    Generator gen(8 + c.E);
    const kernels::Routing r = kernels::Routing::from_modalities(randint({c.B * c.L}, 0, 3, gen, DType::i32), 3);
    const ConvInputs in = random_conv(c, gen, DType::f64);
    const Tensor doc_start = doc_start_of(random_flags(gen, c.B, c.L), c.B, c.L);
    const kernels::CausalConv1dOutput plain =
        kernels::causal_conv1d_forward({in.x, in.w, in.bias, in.init, doc_start, c.silu});
    const kernels::CausalConv1dOutput rows =
        kernels::causal_conv1d_forward({grouped(in.x, r), in.w, in.bias, in.init, doc_start, c.silu, &r});
    EXPECT_TRUE(same_bits(rows.y, grouped(plain.y, r)));
    EXPECT_TRUE(same_bits(rows.final_window, plain.final_window));
    const kernels::CausalConv1dGrads pg =
        kernels::causal_conv1d_backward({in.x, in.w, in.bias, in.init, doc_start, c.silu}, in.dy, in.dfinal);
    const kernels::CausalConv1dGrads rg = kernels::causal_conv1d_backward(
        {grouped(in.x, r), in.w, in.bias, in.init, doc_start, c.silu, &r}, grouped(in.dy, r), in.dfinal);
    EXPECT_TRUE(same_bits(rg.dx, grouped(pg.dx, r)));
    EXPECT_TRUE(same_bits(rg.dweight, pg.dweight));
    EXPECT_TRUE(same_bits(rg.dbias, pg.dbias));
    EXPECT_TRUE(same_bits(rg.dinitial_window, pg.dinitial_window));
  }
}

// Chunks split inside a document, each final window fed to the next chunk, against one call, through
// autograd. A chunk shorter than W-1 (2) makes a final window reach back into the previous chunk's.
TEST(DocBoundaries, ConvChunkedThroughADocumentEqualsOneCall) {
  Generator gen(9);
  const ConvShape c{5, 31, 4, 4, true, true, true};
  const std::vector<int64_t> chunks = {12, 2, 17};
  const ConvInputs in = random_conv(c, gen, DType::f64);
  std::vector<uint8_t> flags = random_flags(gen, c.B, c.L, 12);
  for (int64_t b = 0; b < c.B; ++b) flags[b * c.L + 14] = 0;
  const Tensor doc_start = doc_start_of(flags, c.B, c.L);

  const Tensor x1 = leaf(in.x), w1 = leaf(in.w), b1 = leaf(in.bias), i1 = leaf(in.init);
  const CausalConv1dResult whole = causal_conv1d({x1, w1, b1, i1, doc_start, true});
  backward({whole.out, whole.final_window}, {in.dy, in.dfinal});

  const Tensor w2 = leaf(in.w), b2 = leaf(in.bias), i2 = leaf(in.init);
  std::vector<Tensor> xs, roots, grads;
  Tensor window = i2;
  int64_t start = 0;
  for (int64_t n : chunks) {
    xs.push_back(leaf(in.x.narrow(1, start, n)));
    const CausalConv1dResult r = causal_conv1d({xs.back(), w2, b2, window, doc_start.narrow(1, start, n), true});
    EXPECT_TRUE(same_bits(r.out, whole.out.detach().narrow(1, start, n))) << "chunk at " << start;
    roots.push_back(r.out);
    grads.push_back(in.dy.narrow(1, start, n).contiguous());
    window = r.final_window;
    start += n;
  }
  EXPECT_TRUE(same_bits(window, whole.final_window));
  roots.push_back(window);
  grads.push_back(in.dfinal);
  backward(roots, grads);
  start = 0;
  for (size_t k = 0; k < chunks.size(); ++k) {
    EXPECT_LE(rel_error(xs[k].grad(), x1.grad().narrow(1, start, chunks[k])), 1e-13) << "chunk " << k;
    start += chunks[k];
  }
  EXPECT_LE(rel_error(w2.grad(), w1.grad()), 1e-13);
  EXPECT_LE(rel_error(b2.grad(), b1.grad()), 1e-13);
  EXPECT_LE(rel_error(i2.grad(), i1.grad()), 1e-13);
}

TEST(DocBoundaries, ConvSavedDocStartChangedInPlaceIsAnError) {
  Generator gen(10);
  const Tensor x = leaf(randn({2, 6, 3}, gen, DType::f64)), w = randn({3, 4}, gen, DType::f64);
  Tensor doc_start = zeros({2, 6}, DType::boolean);
  const CausalConv1dResult r = causal_conv1d({x, w, Tensor(), Tensor(), doc_start});
  doc_start.fill_(1.0);
  expect_error([&] { backward({r.out}, {ones({2, 6, 3}, DType::f64)}); }, "[causal_conv1d]");
}

TEST(DocBoundaries, ConvRejectsBadDocStart) {
  const Tensor x = zeros({2, 5, 3}), w = zeros({3, 4}), dy = zeros({2, 5, 3});
  auto expect_rejected = [&](const Tensor& doc_start, const std::string& message) {
    expect_error([&] { kernels::causal_conv1d_forward({x, w, Tensor(), Tensor(), doc_start, false}); }, message);
    expect_error([&] { kernels::causal_conv1d_backward({x, w, Tensor(), Tensor(), doc_start, false}, dy, Tensor()); },
                 message);
  };
  expect_rejected(zeros({2, 5}), "[causal_conv1d] doc_start must be bool, got float32");
  expect_rejected(zeros({2, 5}, DType::u8), "[causal_conv1d] doc_start must be bool, got uint8");
  expect_rejected(zeros({2, 4}, DType::boolean), "[causal_conv1d] doc_start has shape (2, 4), expected (2, 5)");
  expect_rejected(zeros({10}, DType::boolean), "[causal_conv1d] doc_start has shape (10,), expected (2, 5)");
  expect_rejected(zeros({5, 2}, DType::boolean).transpose(0, 1), "[causal_conv1d] doc_start must be contiguous");
  // Through the differentiable function.
  const Tensor xl = leaf(x);
  expect_error([&] { causal_conv1d({xl, w, Tensor(), Tensor(), zeros({2, 5}, DType::i32)}); },
               "[causal_conv1d] doc_start must be bool, got int32");
}

}  // namespace
}  // namespace mom
