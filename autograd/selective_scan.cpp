// Differentiable selective scan: records a node whose backward calls kernels::selective_scan_backward,
// and the gradient-check cases of the family.
#include "autograd/selective_scan.h"

#include <optional>
#include <string>

#include "autograd/function_util.h"
#include "autograd/grad_perturbation.h"
#include "autograd/gradcheck.h"
#include "autograd/node.h"
#include "kernels/selective_scan.h"

namespace mom {

using autograd::kernel_input;
using autograd::make_node;
using autograd::needs_grad;
using autograd::Node;
using autograd::SavedTensor;
using autograd::set_history;

namespace {

// The node's inputs, in the order of make_node and of the gradients apply returns, and its outputs.
enum ScanInput : size_t { kU, kDelta, kA, kBssm, kCssm, kD, kZ, kDeltaBias, kInitialState, kNumScanInputs };
enum ScanOutput : size_t { kOut, kLastState };

// Input i: its tensor in the parameters, its gradient in the kernel's gradients, its name.
struct ScanField {
  Tensor kernels::SelectiveScanParams::*param;
  Tensor kernels::SelectiveScanGrads::*grad;
  const char* name;
};
using P = kernels::SelectiveScanParams;
using G = kernels::SelectiveScanGrads;
constexpr ScanField kScanFields[kNumScanInputs] = {
    {&P::u, &G::du, "u"},         {&P::delta, &G::ddelta, "delta"},
    {&P::A, &G::dA, "A"},         {&P::B_ssm, &G::dB_ssm, "B_ssm"},
    {&P::C_ssm, &G::dC_ssm, "C_ssm"}, {&P::D, &G::dD, "D"},
    {&P::z, &G::dz, "z"},         {&P::delta_bias, &G::ddelta_bias, "delta_bias"},
    {&P::initial_state, &G::dinitial_state, "initial_state"}};

struct SelectiveScanBackward : Node {
  SavedTensor u, delta, A, B_ssm, C_ssm, D, z, delta_bias, initial_state;
  SavedTensor doc_start;  // not an input of make_node: no gradient
  Tensor checkpoints;  // the CUDA forward's chunk-start states (private to this node), or undefined
  bool delta_softplus = false;
  std::optional<kernels::Routing> order;  // a copy of the forward's row order, if it had one

  std::string name() const override { return "selective_scan"; }

  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override {
    kernels::SelectiveScanParams p;
    p.u = u.unpack(*this);
    p.delta = delta.unpack(*this);
    p.A = A.unpack(*this);
    p.B_ssm = B_ssm.unpack(*this);
    p.C_ssm = C_ssm.unpack(*this);
    p.D = D.unpack(*this);
    p.z = z.unpack(*this);
    p.delta_bias = delta_bias.unpack(*this);
    p.initial_state = initial_state.unpack(*this);
    p.doc_start = doc_start.unpack(*this);
    p.delta_softplus = delta_softplus;
    p.order = order ? &*order : nullptr;
    // dz goes over dout when dout is this node's own (autograd::take_owned) and z needs a gradient.
    const Tensor owned = autograd::take_owned(grads, kOut);
    const Tensor dout = owned.defined() ? owned : kernel_input(grads[kOut]);
    kernels::SelectiveScanGrads d = kernels::selective_scan_backward(p, dout, kernel_input(grads[kLastState]), checkpoints,
                                                                     owned.defined() && next_edges[kZ].valid());
    std::vector<Tensor> result(kNumScanInputs);
    const char* names[kNumScanInputs];
    for (size_t i = 0; i < kNumScanInputs; ++i) {
      result[i] = d.*kScanFields[i].grad;
      names[i] = kScanFields[i].name;
    }
    autograd::perturb_grads("selective_scan", names, result);  // test-only; off: one relaxed load
    return result;
  }

  void release_saved() override {
    for (SavedTensor* s : {&u, &delta, &A, &B_ssm, &C_ssm, &D, &z, &delta_bias, &initial_state, &doc_start})
      s->reset();
    checkpoints = Tensor();
  }
};

}  // namespace

SelectiveScanResult selective_scan(const kernels::SelectiveScanParams& in) {
  kernels::SelectiveScanParams p = in;  // the kernels take detached, contiguous tensors
  for (Tensor* t : {&p.u, &p.delta, &p.A, &p.B_ssm, &p.C_ssm, &p.D, &p.z, &p.delta_bias, &p.initial_state, &p.doc_start})
    *t = kernel_input(*t);
  std::vector<Tensor> inputs(kNumScanInputs);  // in ScanInput order
  for (size_t i = 0; i < kNumScanInputs; ++i) inputs[i] = in.*kScanFields[i].param;
  const bool record = needs_grad(inputs);
  // On CUDA a recorded forward keeps its chunk-start states (the size of u at N = 16): the backward
  // then skips a forward pass of its own.
  kernels::SelectiveScanOutput r = kernels::selective_scan_forward(p, record);
  SelectiveScanResult result{r.out, r.last_state};

  if (record) {
    auto node = make_node<SelectiveScanBackward>(inputs);
    node->u = SavedTensor(p.u);
    node->delta = SavedTensor(p.delta);
    node->A = SavedTensor(p.A);
    node->B_ssm = SavedTensor(p.B_ssm);
    node->C_ssm = SavedTensor(p.C_ssm);
    node->D = SavedTensor(p.D);
    node->z = SavedTensor(p.z);
    node->delta_bias = SavedTensor(p.delta_bias);
    node->initial_state = SavedTensor(p.initial_state);
    node->doc_start = SavedTensor(p.doc_start);
    node->checkpoints = r.checkpoints;
    node->delta_softplus = in.delta_softplus;
    if (in.order) node->order = *in.order;
    set_history(node, {&result.out, &result.last_state});
  }
  return result;
}

// ---- gradient-check cases ----

namespace autograd {

namespace {

struct ScanCaseConfig {
  int64_t B, L, E, N;
  bool D, z, delta_bias, initial_state, softplus;
  bool last_state_only = false;  // check the gradient reaching the inputs from last_state alone
  bool grouped = false;          // rows in the grouped order of a 3-modality routing
  bool documents = false;        // packed rows: doc_start of gradcheck_doc_starts
};

std::string describe(const ScanCaseConfig& c) {
  std::string s = "B=" + std::to_string(c.B) + " L=" + std::to_string(c.L) + " E=" + std::to_string(c.E) +
                  " N=" + std::to_string(c.N);
  if (c.D && c.z && c.delta_bias && c.initial_state) {
    s += " all";
  } else {
    if (c.D) s += " D";
    if (c.z) s += " z";
    if (c.delta_bias) s += " bias";
    if (c.initial_state) s += " h0";
  }
  if (c.softplus) s += " sp";
  if (c.last_state_only) s += " state-only";
  if (c.grouped) s += " grouped rows";
  if (c.documents) s += " docs";
  return s;
}

GradcheckProblem make_scan_problem(const ScanCaseConfig& c, Generator& gen) {
  GradcheckProblem p;
  auto add = [&](const char* name, Tensor t) {
    p.inputs.push_back(t);
    p.names.push_back(name);
  };
  const DType f64 = DType::f64;
  add("u", randn({c.B, c.L, c.E}, gen, f64));
  add("delta", c.softplus ? rand({c.B, c.L, c.E}, gen, f64, -1.0, 1.0) : rand({c.B, c.L, c.E}, gen, f64, 0.1, 0.6));
  add("A", rand({c.E, c.N}, gen, f64, -1.5, -0.3));
  add("B_ssm", randn({c.B, c.L, c.N}, gen, f64));
  add("C_ssm", randn({c.B, c.L, c.N}, gen, f64));
  if (c.D) add("D", randn({c.E}, gen, f64));
  if (c.z) add("z", randn({c.B, c.L, c.E}, gen, f64));
  if (c.delta_bias) add("delta_bias", rand({c.E}, gen, f64, -0.3, 0.3));
  if (c.initial_state) add("initial_state", randn({c.B, c.E, c.N}, gen, f64));
  // An input (not differentiated), so that a device check moves it with the others.
  if (c.documents) add("doc_start", gradcheck_doc_starts(c.B, c.L));
  p.fn = [c](const std::vector<Tensor>& in) {
    size_t next = 0;
    kernels::SelectiveScanParams s;
    s.u = in[next++];
    s.delta = in[next++];
    s.A = in[next++];
    s.B_ssm = in[next++];
    s.C_ssm = in[next++];
    if (c.D) s.D = in[next++];
    if (c.z) s.z = in[next++];
    if (c.delta_bias) s.delta_bias = in[next++];
    if (c.initial_state) s.initial_state = in[next++];
    if (c.documents) s.doc_start = in[next++];
    s.delta_softplus = c.softplus;
    kernels::Routing routing;
    if (c.grouped) {
      std::vector<int32_t> ids(c.B * c.L);
      for (size_t t = 0; t < ids.size(); ++t) ids[t] = static_cast<int32_t>((t * 7 + t / 3) % 3);
      routing = kernels::Routing::from_modalities(
          from_vector<int32_t>(ids, {static_cast<int64_t>(ids.size())}).to(s.u.device()), 3);
      s.order = &routing;
    }
    SelectiveScanResult r = selective_scan(s);
    return c.last_state_only ? std::vector<Tensor>{r.last_state} : std::vector<Tensor>{r.out, r.last_state};
  };
  return p;
}

}  // namespace

void add_selective_scan_gradcheck_cases(std::vector<GradcheckCase>& cases) {
  // Tiny shapes take the full Jacobian; the others random projections. L = 7 and 13 and E = 5, N = 3
  // avoid every power of two; each optional input appears alone, all together and not at all.
  // Variant names: "all" = D, z, delta_bias and initial_state (h0); "sp" = delta_softplus; "state-only"
  // differentiates last_state alone; "docs" packs documents into the rows (gradcheck_doc_starts: length-1
  // documents, boundaries at 0 and L-1, a whole-row document, one row per pattern). Every other case
  // differentiates out and last_state together.
  static const ScanCaseConfig configs[] = {
      {1, 3, 2, 2, true, true, true, true, true},
      {1, 1, 3, 2, false, false, false, false, false},
      {1, 1, 5, 3, true, true, true, true, true},
      {2, 7, 5, 3, false, false, false, false, true},
      {2, 7, 5, 3, true, false, false, false, false},
      {2, 7, 5, 3, false, true, false, false, true},
      {2, 7, 5, 3, false, false, true, false, true},
      {2, 7, 5, 3, false, false, false, true, false},
      {2, 13, 5, 3, true, true, true, true, true},
      {1, 13, 5, 4, true, true, true, true, false},
      {2, 7, 5, 3, true, true, true, true, true, true},
      {2, 7, 5, 3, true, true, true, true, true, false, true},
      {2, 6, 2, 2, true, true, true, true, true, false, false, true},
      {3, 9, 5, 3, true, true, true, true, true, false, false, true},
      {3, 8, 4, 3, false, false, false, false, false, false, false, true},
      {3, 9, 5, 3, true, true, true, true, true, true, false, true},
      {3, 9, 5, 3, true, true, true, true, true, false, true, true},
  };
  for (const ScanCaseConfig& c : configs) {
    cases.push_back({"selective_scan", describe(c), [c](Generator& gen) { return make_scan_problem(c, gen); }});
  }
}

}  // namespace autograd
}  // namespace mom
