// Document boundaries (doc_start) of the CUDA selective scan and causal conv1d: packed rows with random
// documents of random lengths (1 to 120 tokens, across the kernels' chunk edges: the scan's 16 and 8 steps,
// the conv's 16 and 64, a flag at t = 0, a length-1 document at the last step, a row of one document) against
// the CPU in float64, in float32 and float64, plain and grouped rows, every optional input on; and a packed
// row against one CUDA call per document, in float32.
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "kernels/causal_conv1d.h"
#include "kernels/index.h"
#include "kernels/routing.h"
#include "kernels/selective_scan.h"
#include "tests/gpu/cuda_support.h"
#include "tests/support.h"

namespace mom {
namespace {

using kernels::SelectiveScanGrads;
using kernels::SelectiveScanParams;
using kernels::SelectiveScanOutput;
using test::Cuda;
using test::rel_error;
using test::Span;
using test::test_seed;

const Device kGpu = Device::cuda(0);
const Device kCpu = Device::cpu();

// Row 0: a flag at t = 0, documents of 1-120 tokens, a length-1 document at L-1; row 1: one document; the
// other rows documents of 1-120 tokens, or of 1-4 on odd rows.
std::vector<uint8_t> random_flags(Generator& gen, int64_t B, int64_t L) {
  std::vector<uint8_t> flags(B * L, 0);
  for (int64_t b = 0; b < B; ++b) {
    if (b == 1) continue;
    uint8_t* row = flags.data() + b * L;
    const uint64_t longest = b % 2 && b > 1 ? 4 : 120;
    for (int64_t t = static_cast<int64_t>(gen.randint(longest)); t < L;
         t += 1 + static_cast<int64_t>(gen.randint(longest)))
      row[t] = 1;
    if (b == 0) row[0] = row[L - 1] = 1;
  }
  return flags;
}

// Calls f(b, document, first, last) for every document of every row, under a trace naming it; returns how
// many there were.
template <typename F>
int for_each_document(const std::vector<uint8_t>& flags, int64_t B, int64_t L, F&& f) {
  int documents = 0;
  for (int64_t b = 0; b < B; ++b) {
    const std::vector<Span> docs = test::document_spans(flags, b, L);
    for (size_t j = 0; j < docs.size(); ++j, ++documents) {
      SCOPED_TRACE("row " + std::to_string(b) + " [" + std::to_string(docs[j].begin) + ", " +
                   std::to_string(docs[j].end) + ")");
      f(b, docs[j], j == 0, j + 1 == docs.size());
    }
  }
  return documents;
}

Tensor doc_start_of(const std::vector<uint8_t>& flags, int64_t B, int64_t L, Device dev) {
  return from_vector<uint8_t>(flags, {B, L}).to(DType::boolean).to(dev);
}

Tensor moved(const Tensor& t, Device d, DType dt) { return t.defined() ? t.to(dt).to(d) : Tensor(); }
Tensor piece(const Tensor& t, int64_t b, Span s) {
  return t.narrow(0, b, 1).narrow(1, s.begin, s.end - s.begin).contiguous();
}
Tensor row_of(const Tensor& t, int64_t b) { return t.defined() ? t.narrow(0, b, 1).contiguous() : Tensor(); }

Tensor grouped(const Tensor& t, const kernels::Routing& r) {
  const int64_t B = t.size(0), L = t.size(1), C = t.size(2);
  return kernels::index_select(t.contiguous().view({B * L, C}), 0, r.perm).view({B, L, C});
}

void expect_close(const char* what, const Tensor& got, const Tensor& ref, double tol, double& worst) {
  ASSERT_EQ(got.defined(), ref.defined()) << what;
  if (!got.defined()) return;
  ASSERT_EQ(got.shape(), ref.shape()) << what;
  const double e = rel_error(got.to(kCpu).to(DType::f64), ref.to(kCpu).to(DType::f64));
  EXPECT_LT(e, tol) << what;
  worst = std::max(worst, e);
}

// ---- selective scan ----

SelectiveScanParams random_scan(int64_t B, int64_t L, int64_t E, int64_t N, Generator& gen) {
  SelectiveScanParams p;
  const DType dt = DType::f32;  // values both devices and both dtypes hold exactly
  p.u = randn({B, L, E}, gen, dt);
  p.delta = randn({B, L, E}, gen, dt, -1.0, 1.0);
  p.A = rand({E, N}, gen, dt, -4.0, -0.1);
  p.B_ssm = randn({B, L, N}, gen, dt);
  p.C_ssm = randn({B, L, N}, gen, dt);
  p.D = randn({E}, gen, dt);
  p.z = randn({B, L, E}, gen, dt);
  p.delta_bias = rand({E}, gen, dt, -0.5, 0.5);
  p.initial_state = randn({B, E, N}, gen, dt);
  p.delta_softplus = true;
  return p;
}

SelectiveScanParams scan_on(const SelectiveScanParams& p, Device d, DType dt) {
  SelectiveScanParams q = p;
  for (Tensor* t : {&q.u, &q.delta, &q.A, &q.B_ssm, &q.C_ssm, &q.D, &q.z, &q.delta_bias, &q.initial_state})
    *t = moved(*t, d, dt);
  if (p.doc_start.defined()) q.doc_start = p.doc_start.to(d);
  return q;
}

const std::pair<const char*, Tensor SelectiveScanGrads::*> kScanGrads[] = {
    {"du", &SelectiveScanGrads::du},
    {"ddelta", &SelectiveScanGrads::ddelta},
    {"dA", &SelectiveScanGrads::dA},
    {"dB", &SelectiveScanGrads::dB_ssm},
    {"dC", &SelectiveScanGrads::dC_ssm},
    {"dD", &SelectiveScanGrads::dD},
    {"dz", &SelectiveScanGrads::dz},
    {"ddelta_bias", &SelectiveScanGrads::ddelta_bias},
    {"dinitial_state", &SelectiveScanGrads::dinitial_state}};

TEST_F(Cuda, ScanWithDocumentsMatchesCpu) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  struct Shape {
    int64_t B, L, E, N;
  };
  for (Shape s : {Shape{4, 300, 40, 16}, Shape{5, 77, 9, 5}, Shape{3, 1000, 64, 16}}) {
    SelectiveScanParams p = random_scan(s.B, s.L, s.E, s.N, gen);
    p.doc_start = doc_start_of(random_flags(gen, s.B, s.L), s.B, s.L, kCpu);
    Tensor dout = randn({s.B, s.L, s.E}, gen, DType::f32), dlast = randn({s.B, s.E, s.N}, gen, DType::f32);
    for (bool group : {false, true}) {
      kernels::Routing routing;
      Tensor ids;
      SelectiveScanParams base = p;
      Tensor dout_in = dout;
      if (group) {  // the same tokens in a routing's grouped order; doc_start
                    // stays in token order
        ids = randint({s.B * s.L}, 0, 3, gen, DType::i32);
        routing = kernels::Routing::from_modalities(ids, 3);
        for (Tensor* t : {&base.u, &base.delta, &base.z, &base.B_ssm, &base.C_ssm}) *t = grouped(*t, routing);
        dout_in = grouped(dout, routing);
      }
      const SelectiveScanParams cpu = scan_on(base, kCpu, DType::f64);
      SelectiveScanParams ref_p = cpu;
      if (group) ref_p.order = &routing;
      const SelectiveScanOutput ref = kernels::selective_scan_forward(ref_p);
      const SelectiveScanGrads gref =
          kernels::selective_scan_backward(ref_p, dout_in.to(DType::f64), dlast.to(DType::f64));
      const kernels::Routing gpu_routing =
          group ? kernels::Routing::from_modalities(ids.to(kGpu), 3) : kernels::Routing();
      for (DType dt : {DType::f32, DType::f64}) {
        SCOPED_TRACE(std::string(dtype_name(dt)) + (group ? " grouped" : " plain") + " L=" + std::to_string(s.L));
        SelectiveScanParams gpu = scan_on(base, kGpu, dt);
        if (group) gpu.order = &gpu_routing;
        const SelectiveScanOutput got = kernels::selective_scan_forward(gpu, true);
        const SelectiveScanGrads ggot =
            kernels::selective_scan_backward(gpu, dout_in.to(dt).to(kGpu), dlast.to(dt).to(kGpu), got.checkpoints);
        const double out_tol = dt == DType::f32 ? 1e-5 : 1e-11, grad_tol = dt == DType::f32 ? 1e-4 : 1e-10;
        double worst_out = 0, worst_grad = 0;
        expect_close("out", got.out, ref.out, out_tol, worst_out);
        expect_close("last_state", got.last_state, ref.last_state, out_tol, worst_out);
        for (auto [name, field] : kScanGrads) expect_close(name, ggot.*field, gref.*field, grad_tol, worst_grad);
        std::printf(
            "  scan docs %s %s B=%lld L=%lld E=%lld N=%lld: worst rel "
            "err out %.1e grads %.1e\n",
            dtype_name(dt), group ? "grouped" : "plain", (long long)s.B, (long long)s.L, (long long)s.E, (long long)s.N,
            worst_out, worst_grad);
      }
    }
  }
}

// One CUDA call per document against the packed call, in float32: outputs, last states and per-token
// gradients agree to float32 rounding (the chunks fall elsewhere in the two), dinitial_state only from the
// first document.
TEST_F(Cuda, ScanPackedRowEqualsOneCallPerDocument) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  const int64_t B = 4, L = 257, E = 24, N = 16;
  const std::vector<uint8_t> flags = random_flags(gen, B, L);
  SelectiveScanParams p = scan_on(random_scan(B, L, E, N, gen), kGpu, DType::f32);
  p.doc_start = doc_start_of(flags, B, L, kGpu);
  Tensor dout = randn({B, L, E}, gen, DType::f32).to(kGpu), dlast = randn({B, E, N}, gen, DType::f32).to(kGpu);
  const SelectiveScanOutput fwd = kernels::selective_scan_forward(p);
  const SelectiveScanGrads grads = kernels::selective_scan_backward(p, dout, dlast);
  double worst = 0;
  const int documents = for_each_document(flags, B, L, [&](int64_t b, Span s, bool first, bool last) {
    SelectiveScanParams q = p;
    q.u = piece(p.u, b, s);
    q.delta = piece(p.delta, b, s);
    q.B_ssm = piece(p.B_ssm, b, s);
    q.C_ssm = piece(p.C_ssm, b, s);
    q.z = piece(p.z, b, s);
    q.initial_state = first ? row_of(p.initial_state, b) : Tensor();
    q.doc_start = Tensor();
    const SelectiveScanOutput r = kernels::selective_scan_forward(q);
    const SelectiveScanGrads g =
        kernels::selective_scan_backward(q, piece(dout, b, s), last ? row_of(dlast, b) : Tensor());
    expect_close("out", piece(fwd.out, b, s), r.out, 1e-5, worst);
    if (last) expect_close("last_state", row_of(fwd.last_state, b), r.last_state, 1e-5, worst);
    expect_close("du", piece(grads.du, b, s), g.du, 1e-5, worst);
    expect_close("ddelta", piece(grads.ddelta, b, s), g.ddelta, 1e-5, worst);
    expect_close("dB", piece(grads.dB_ssm, b, s), g.dB_ssm, 1e-5, worst);
    expect_close("dC", piece(grads.dC_ssm, b, s), g.dC_ssm, 1e-5, worst);
    expect_close("dz", piece(grads.dz, b, s), g.dz, 1e-5, worst);
    if (first) expect_close("dinitial_state", row_of(grads.dinitial_state, b), g.dinitial_state, 1e-5, worst);
  });
  std::printf(
      "  scan: %d documents, worst rel err of a packed row against its "
      "documents %.1e\n",
      documents, worst);
}

// ---- causal conv1d ----

struct ConvResults {
  Tensor y, final_window, dx, dweight, dbias, dinit;
};

struct ConvInputs {
  Tensor x, w, b, init, dy, dfinal, doc_start;
};

// float32 values (exact in float64 too), on the CPU.
ConvInputs random_conv(int64_t B, int64_t L, int64_t E, int64_t W, const std::vector<uint8_t>& flags, Generator& gen) {
  ConvInputs in;
  in.x = randn({B, L, E}, gen, DType::f32);
  in.w = randn({E, W}, gen, DType::f32, 0.0, 0.5);
  in.b = randn({E}, gen, DType::f32);
  in.init = randn({B, W - 1, E}, gen, DType::f32);
  in.dy = randn({B, L, E}, gen, DType::f32);
  in.dfinal = randn({B, W - 1, E}, gen, DType::f32);
  in.doc_start = doc_start_of(flags, B, L, kCpu);
  return in;
}

ConvResults run_conv(const ConvInputs& in, DType dt, Device dev, bool silu, const kernels::Routing* order) {
  Tensor x = moved(in.x, dev, dt), w = moved(in.w, dev, dt), b = moved(in.b, dev, dt), init = moved(in.init, dev, dt);
  Tensor dy = moved(in.dy, dev, dt), dfinal = moved(in.dfinal, dev, dt), docs = in.doc_start.to(dev);
  kernels::CausalConv1dOutput out = kernels::causal_conv1d_forward({x, w, b, init, docs, silu, order});
  kernels::CausalConv1dGrads g = kernels::causal_conv1d_backward({x, w, b, init, docs, silu, order}, dy, dfinal);
  return {out.y, out.final_window, g.dx, g.dweight, g.dbias, g.dinitial_window};
}

TEST_F(Cuda, ConvWithDocumentsMatchesCpu) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  struct Shape {
    int64_t B, L, E, W;
    bool silu;
  };
  // E = 32 takes the packed kernels, E = 7 the one-channel ones; L = 2 and 5 end inside the halo.
  for (Shape s : {Shape{4, 300, 32, 4, true}, Shape{4, 300, 7, 4, false}, Shape{3, 200, 16, 8, true},
                  Shape{5, 77, 12, 2, true}, Shape{4, 5, 8, 4, true}}) {
    ConvInputs in = random_conv(s.B, s.L, s.E, s.W, random_flags(gen, s.B, s.L), gen);
    for (bool group : {false, true}) {
      kernels::Routing routing, gpu_routing;
      ConvInputs base = in;
      if (group) {
        const Tensor ids = randint({s.B * s.L}, 0, 3, gen, DType::i32);
        routing = kernels::Routing::from_modalities(ids, 3);
        gpu_routing = kernels::Routing::from_modalities(ids.to(kGpu), 3);
        base.x = grouped(in.x, routing);
        base.dy = grouped(in.dy, routing);
      }
      const ConvResults ref = run_conv(base, DType::f64, kCpu, s.silu, group ? &routing : nullptr);
      for (DType dt : {DType::f32, DType::f64}) {
        SCOPED_TRACE(std::string(dtype_name(dt)) + (group ? " grouped" : " plain") + " L=" + std::to_string(s.L) +
                     " E=" + std::to_string(s.E) + " W=" + std::to_string(s.W));
        const ConvResults got = run_conv(base, dt, kGpu, s.silu, group ? &gpu_routing : nullptr);
        const double tol = dt == DType::f32 ? 1e-5 : 1e-12;
        double worst = 0;
        expect_close("y", got.y, ref.y, tol, worst);
        expect_close("final_window", got.final_window, ref.final_window, tol, worst);
        expect_close("dx", got.dx, ref.dx, tol, worst);
        expect_close("dweight", got.dweight, ref.dweight, tol, worst);
        expect_close("dbias", got.dbias, ref.dbias, tol, worst);
        expect_close("dinitial_window", got.dinit, ref.dinit, tol, worst);
        std::printf(
            "  conv docs %s %s B=%lld L=%lld E=%lld W=%lld: worst rel "
            "err %.1e\n",
            dtype_name(dt), group ? "grouped" : "plain", (long long)s.B, (long long)s.L, (long long)s.E, (long long)s.W,
            worst);
      }
    }
  }
}

// One CUDA call per document against the packed call, in float32: y, the final window and dx agree to the
// sign of a zero (compared as values here), dinitial_window only from the first document.
TEST_F(Cuda, ConvPackedRowEqualsOneCallPerDocument) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  const int64_t B = 4, L = 333, E = 16, W = 4;
  const std::vector<uint8_t> flags = random_flags(gen, B, L);
  const ConvInputs in = random_conv(B, L, E, W, flags, gen);
  const ConvResults packed = run_conv(in, DType::f32, kGpu, true, nullptr);
  const int documents = for_each_document(flags, B, L, [&](int64_t b, Span s, bool first, bool last) {
    ConvInputs one = in;
    one.x = piece(in.x, b, s);
    one.dy = piece(in.dy, b, s);
    one.init = first ? row_of(in.init, b) : zeros({1, W - 1, E}, DType::f32);
    one.dfinal = last ? row_of(in.dfinal, b) : zeros({1, W - 1, E}, DType::f32);
    one.doc_start = zeros({1, s.end - s.begin}, DType::boolean);
    const ConvResults r = run_conv(one, DType::f32, kGpu, true, nullptr);
    EXPECT_EQ(test::max_abs_diff(piece(packed.y, b, s).to(kCpu), r.y.to(kCpu)), 0.0);
    EXPECT_EQ(test::max_abs_diff(piece(packed.dx, b, s).to(kCpu), r.dx.to(kCpu)), 0.0);
    if (last) {
      EXPECT_EQ(test::max_abs_diff(row_of(packed.final_window, b).to(kCpu), r.final_window.to(kCpu)), 0.0);
    }
    if (first) {
      EXPECT_EQ(test::max_abs_diff(row_of(packed.dinit, b).to(kCpu), r.dinit.to(kCpu)), 0.0);
    }
  });
  std::printf("  conv: %d documents, each equal to its packed rows\n", documents);
}

}  // namespace
}  // namespace mom
