// The Mamba / Mixture-of-Mamba modules: equivalences between dense and MoM, routing of gradients to
// experts, the split flags, recurrent inference against the parallel forward, and module gradchecks.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "nn/gradcheck_cases.h"
#include "nn/lm.h"
#include "tests/support.h"

namespace mom {
namespace {

using nn::LMConfig;
using nn::MambaBlock;
using nn::MambaConfig;
using nn::MambaLM;

MambaConfig small_config(int64_t M, bool split) {
  MambaConfig c;
  c.d_model = 8;
  c.d_state = 4;
  c.d_conv = 4;
  c.expand = 2;
  c.n_modalities = M;
  c.split_in_proj = c.split_x_proj = c.split_dt_proj = c.split_out_proj = split;
  return c;
}

// Copies every dense weight into the matching MoM parameter(s): "in_proj.weight" feeds every
// "local_experts_in_proj.<m>.weight".
void copy_dense_into_mom(const nn::Module& dense, nn::Module& mom_model) {
  std::map<std::string, Tensor> dense_sd = dense.state_dict(), out;
  for (auto& [name, t] : mom_model.state_dict()) {
    std::string key = name;
    size_t pos = key.find("local_experts_");
    if (pos != std::string::npos) {
      key.erase(pos, std::string("local_experts_").size());
      size_t dot = key.find('.', pos);          // "<proj>.<m>.weight" -> "<proj>.weight"
      size_t dot2 = key.find('.', dot + 1);
      key.erase(dot, dot2 - dot);
    }
    ASSERT_TRUE(dense_sd.count(key)) << name << " -> " << key;
    out[name] = dense_sd.at(key);
  }
  mom_model.load_state_dict(out);
}

Tensor modality_ids(const std::vector<int32_t>& ids, int64_t B, int64_t L) { return from_vector<int32_t>(ids, {B, L}); }

// Linear::forward_split equals split(forward(x)) in values and gradients, whether it takes one
// product per part (parts wider than the input) or one product and a copy.
TEST(Linear, ForwardSplitEqualsSplitOfForward) {
  Generator gen(7);
  for (const auto& split : {std::vector<int64_t>{6, 6}, std::vector<int64_t>{1, 2, 1}}) {
    const int64_t out = split.size() == 2 ? 12 : 4;
    nn::Linear lin(5, out, true, gen, DType::f64);
    Tensor x = randn({3, 2, 5}, gen, DType::f64);
    x.set_requires_grad(true);
    std::vector<Tensor> ref = mom::split(lin.forward(x), split, -1), parts = lin.forward_split(x, split);
    ASSERT_EQ(parts.size(), split.size());
    std::vector<Tensor> dys;
    Tensor loss_ref = zeros({}, DType::f64), loss = zeros({}, DType::f64);
    for (size_t k = 0; k < split.size(); ++k) {
      EXPECT_EQ(parts[k].shape(), (Shape{3, 2, split[k]}));
      EXPECT_LT(test::rel_error(parts[k], ref[k]), 1e-14) << "part " << k;
      Tensor dy = randn(parts[k].shape(), gen, DType::f64);
      loss_ref = add(loss_ref, sum(mul(ref[k], dy)));
      loss = add(loss, sum(mul(parts[k], dy)));
    }
    backward(loss_ref);
    Tensor dx_ref = x.grad(), dw_ref = lin.weight.grad(), db_ref = lin.bias.grad();
    lin.zero_grad();
    x.zero_grad();
    backward(loss);
    EXPECT_LT(test::rel_error(x.grad(), dx_ref), 1e-14);
    EXPECT_LT(test::rel_error(lin.weight.grad(), dw_ref), 1e-14);
    EXPECT_LT(test::rel_error(lin.bias.grad(), db_ref), 1e-14);
  }
  nn::Linear lin(5, 4, false, gen, DType::f64);
  test::expect_error([&] { lin.forward_split(zeros({2, 5}, DType::f64), {1, 2}); },
                     "[Linear] split sizes sum to 3, the layer has 4 outputs");
}

TEST(Mamba, MoMWithOneModalityEqualsDense) {
  Generator gen(1);
  MambaBlock dense(small_config(1, false), gen, DType::f64);
  MambaBlock mom1(small_config(1, true), gen, DType::f64);
  copy_dense_into_mom(dense, mom1);
  Tensor x = randn({2, 7, 8}, gen, DType::f64);
  Routing r = Routing::from_modalities(zeros({14}, DType::i32), 1);
  double err = test::rel_error(mom1.forward(x, r), dense.forward(x, r));
  std::printf("MoM(M=1) vs dense: rel err %.3e\n", err);
  EXPECT_LT(err, 1e-13);
}

TEST(Mamba, MoMWithIdenticalExpertsEqualsDense) {
  Generator gen(2);
  MambaBlock dense(small_config(3, false), gen, DType::f64);
  MambaBlock mom3(small_config(3, true), gen, DType::f64);
  copy_dense_into_mom(dense, mom3);
  Tensor x = randn({2, 6, 8}, gen, DType::f64);
  Routing r = Routing::from_modalities(from_vector<int32_t>({0, 0, 1, 1, 2, 2, 2, 1, 0, 0, 1, 2}, {12}), 3);
  double err = test::rel_error(mom3.forward(x, r), dense.forward(x, r));
  std::printf("MoM(identical experts) vs dense: rel err %.3e\n", err);
  EXPECT_LT(err, 1e-13);
}

TEST(Mamba, TokenGradientReachesOnlyItsModalitysExperts) {
  Generator gen(3);
  MambaBlock block(small_config(3, true), gen, DType::f64);
  // L = 1: tokens do not interact through the scan, so token 1's output depends only on expert 1.
  Tensor x = randn({4, 1, 8}, gen, DType::f64);
  Routing r = Routing::from_modalities(from_vector<int32_t>({0, 1, 0, 1}, {4}), 3);  // modality 2 absent
  Tensor y = block.forward(x, r);
  Tensor dy = zeros({4, 1, 8}, DType::f64);
  dy.narrow(0, 1, 1).fill_(1.0);  // gradient from token 1 (modality 1) only
  backward(y, dy);
  int checked = 0;
  for (auto& [name, t] : block.named_parameters()) {
    if (name.find("local_experts_") == std::string::npos) continue;
    bool expert1 = name.find(".1.") != std::string::npos;
    bool expert2 = name.find(".2.") != std::string::npos;
    Tensor g = t.grad();
    if (expert2) {
      EXPECT_FALSE(g.defined()) << name << ": an absent modality's expert must get no gradient";
    } else if (expert1) {
      ASSERT_TRUE(g.defined()) << name;
      EXPECT_GT(test::max_abs_diff(g, zeros_like(g)), 0.0) << name;
    } else {
      ASSERT_TRUE(g.defined()) << name;
      EXPECT_EQ(test::max_abs_diff(g, zeros_like(g)), 0.0) << name << ": token 1 must not reach expert 0";
    }
    ++checked;
  }
  EXPECT_EQ(checked, 15);  // 3 experts x (in, x, dt, out weights + the dt bias)
}

TEST(Mamba, EachSplitFlagSplitsExactlyItsProjection) {
  Generator gen(4);
  auto names_of = [&](const MambaConfig& c) {
    std::set<std::string> s;
    for (auto& [n, t] : MambaBlock(c, gen).named_parameters()) s.insert(n);
    return s;
  };
  MambaConfig dense = small_config(2, false);
  std::set<std::string> base = names_of(dense);
  const char* projs[] = {"in_proj", "x_proj", "dt_proj", "out_proj"};
  for (int i = 0; i < 4; ++i) {
    MambaConfig c = dense;
    bool* flags[] = {&c.split_in_proj, &c.split_x_proj, &c.split_dt_proj, &c.split_out_proj};
    *flags[i] = true;
    std::set<std::string> names = names_of(c), removed, added;
    for (const auto& n : base)
      if (!names.count(n)) removed.insert(n);
    for (const auto& n : names)
      if (!base.count(n)) added.insert(n);
    std::string p = projs[i];
    std::set<std::string> want_removed = {p + ".weight"}, want_added = {"local_experts_" + p + ".0.weight", "local_experts_" + p + ".1.weight"};
    if (p == "dt_proj") {
      want_removed.insert(p + ".bias");  // a shared dt_proj keeps its bias
      want_added.insert("local_experts_dt_proj.0.bias");
      want_added.insert("local_experts_dt_proj.1.bias");
    }
    EXPECT_EQ(removed, want_removed) << p;
    EXPECT_EQ(added, want_added) << p;
  }
}

TEST(Mamba, InitialisationFollowsThePublishedCode) {
  Generator gen(5);
  MambaConfig c = small_config(2, true);
  MambaBlock block(c, gen);
  std::vector<float> a = block.A_log.to_vector<float>();
  for (int64_t e = 0; e < c.d_inner(); ++e)
    for (int64_t n = 0; n < c.d_state; ++n) EXPECT_FLOAT_EQ(a[e * c.d_state + n], std::log(static_cast<float>(n + 1)));
  for (float d : block.D.to_vector<float>()) EXPECT_EQ(d, 1.0f);
  for (const auto& lin : block.dt_proj.linears()) {
    for (float b : lin->bias.to_vector<float>()) {
      double dt = std::log1p(std::exp(static_cast<double>(b)));  // softplus(bias) is the initial dt
      EXPECT_GE(dt, c.dt_min * 0.999);
      EXPECT_LE(dt, c.dt_max * 1.001);
    }
    double bound = 1.0 / std::sqrt(static_cast<double>(c.rank()));
    for (float w : lin->weight.to_vector<float>()) EXPECT_LE(std::fabs(w), bound);
  }
  std::vector<std::string> no_decay = block.no_decay_parameters();
  EXPECT_NE(std::find(no_decay.begin(), no_decay.end(), "A_log"), no_decay.end());
  EXPECT_NE(std::find(no_decay.begin(), no_decay.end(), "D"), no_decay.end());
}

void expect_step_equals_forward(bool split, DType dtype, double tol) {
  Generator gen(6);
  LMConfig cfg;
  cfg.mixer = small_config(3, split);
  cfg.vocab_size = 11;
  cfg.n_layers = 2;
  MambaLM lm(cfg, gen, dtype);
  const int64_t B = 2, L = 9;
  Tensor tokens = randint({B, L}, 0, cfg.vocab_size, gen, DType::i64);
  // Modality changes several times along each row.
  Tensor mods = modality_ids({0, 0, 1, 1, 1, 2, 0, 2, 2, 1, 2, 2, 0, 0, 1, 1, 2, 0}, B, L);
  NoGradGuard no_grad;
  Tensor full = lm.forward(tokens, mods);  // (B, L, V)
  nn::LMState state = lm.allocate_state(B);
  double worst = 0;
  for (int64_t t = 0; t < L; ++t) {
    Tensor tok = tokens.narrow(1, t, 1).contiguous().reshape({B});
    Tensor mod = mods.narrow(1, t, 1).contiguous().reshape({B});
    Tensor step_logits = lm.step(tok, mod, state);
    Tensor ref = full.narrow(1, t, 1).contiguous().reshape({B, cfg.vocab_size});
    worst = std::max(worst, test::rel_error(step_logits, ref));
    if (t > 0) {  // the comparison can tell positions apart: the state really carries the sequence
      Tensor prev = full.narrow(1, t - 1, 1).contiguous().reshape({B, cfg.vocab_size});
      EXPECT_GT(test::rel_error(step_logits, prev), 1e-3) << "t=" << t;
    }
  }
  std::printf("%s %s: step vs parallel, worst rel err %.3e\n", split ? "MoM" : "dense", dtype_name(dtype), worst);
  EXPECT_LT(worst, tol);
}

TEST(MambaLM, StepByStepInferenceEqualsParallelForward) {
  expect_step_equals_forward(false, DType::f64, 1e-12);
  expect_step_equals_forward(true, DType::f64, 1e-12);
  expect_step_equals_forward(false, DType::f32, 1e-5);
  expect_step_equals_forward(true, DType::f32, 1e-5);
}

// Packed documents: the logits of a packed row with doc_start equal those of each document run alone
// (in float64, to the GEMMs' rounding: the projections see other row counts), and differ from reading
// across the boundary; the gradients of every parameter equal the sums over the documents run alone.
// Step-by-step inference that resets at each start equals the packed forward.
void expect_documents_are_independent(bool split) {
  Generator gen(12);
  LMConfig cfg;
  cfg.mixer = small_config(3, split);
  cfg.vocab_size = 11;
  cfg.n_layers = 2;
  MambaLM lm(cfg, gen, DType::f64);
  const int64_t B = 2, L = 13;
  Tensor tokens = randint({B, L}, 0, cfg.vocab_size, gen, DType::i64);
  Tensor mods = randint({B, L}, 0, 3, gen, DType::i32);
  // Row 0: documents [0, 4), [4, 5), [5, 12), [12, 13); row 1: a flag at 0 only (one document).
  std::vector<uint8_t> flags(B * L, 0);
  for (int64_t t : {0, 4, 5, 12}) flags[t] = 1;
  flags[L] = 1;
  Tensor starts = from_vector<uint8_t>(flags, {B, L}).to(DType::boolean);
  const std::vector<std::vector<std::pair<int64_t, int64_t>>> docs = {{{0, 4}, {4, 5}, {5, 12}, {12, 13}}, {{0, 13}}};

  // Packed forward and backward of sum(logits * w), w fixed and random.
  Tensor w = randn({B, L, cfg.vocab_size}, gen, DType::f64);
  Tensor packed_out = lm.forward(tokens, mods, starts);
  backward(sum(mul(packed_out, w)));
  const Tensor packed = packed_out.detach();
  std::map<std::string, Tensor> packed_grads;
  for (auto& [name, p] : lm.named_parameters()) packed_grads[name] = p.grad().clone();
  lm.zero_grad();

  double worst = 0;
  for (int64_t b = 0; b < B; ++b)
    for (auto [begin, end] : docs[b]) {
      auto piece = [&](const Tensor& t) { return t.narrow(0, b, 1).narrow(1, begin, end - begin).contiguous(); };
      Tensor alone = lm.forward(piece(tokens), piece(mods));
      worst = std::max(worst, test::rel_error(piece(packed), alone));
      backward(sum(mul(alone, piece(w))));  // gradients accumulate over the documents
    }
  EXPECT_LT(worst, 1e-12);
  for (auto& [name, p] : lm.named_parameters()) {
    ASSERT_EQ(p.grad().defined(), packed_grads[name].defined()) << name;
    if (p.grad().defined()) {
      EXPECT_LT(test::rel_error(packed_grads[name], p.grad()), 1e-11) << name;
    }
  }
  lm.zero_grad();
  NoGradGuard no_grad;
  // Reading across the boundary changes the second document's logits.
  Tensor across = lm.forward(tokens, mods);
  EXPECT_GT(test::rel_error(across.narrow(1, 5, 7), packed.narrow(1, 5, 7)), 1e-3);
  // Step inference resetting at every start: the packed logits, though the state carried before it.
  nn::LMState state = lm.allocate_state(B);
  double step_worst = 0;
  for (int64_t t = 0; t < L; ++t) {
    Tensor tok = tokens.narrow(1, t, 1).contiguous().reshape({B});
    Tensor mod = mods.narrow(1, t, 1).contiguous().reshape({B});
    Tensor start = starts.narrow(1, t, 1).contiguous().reshape({B});
    Tensor logits = lm.step(tok, mod, state, start);
    step_worst = std::max(step_worst, test::rel_error(logits, packed.narrow(1, t, 1).contiguous().reshape({B, cfg.vocab_size})));
  }
  EXPECT_LT(step_worst, 1e-12);
  std::printf("%s: documents alone vs packed, worst rel err %.1e; step with resets %.1e\n", split ? "MoM" : "dense",
              worst, step_worst);
  test::expect_error([&] { lm.forward(tokens, mods, zeros({B, L}, DType::i32)); }, "[MambaLM] doc_start must be bool");
  test::expect_error([&] { lm.step(tokens.narrow(1, 0, 1).reshape({B}), mods.narrow(1, 0, 1).reshape({B}), state,
                                   zeros({B + 1}, DType::boolean)); },
                     "[MambaLM::step] doc_start must be (B)");
}

TEST(MambaLM, PackedDocumentsAreIndependent) {
  expect_documents_are_independent(false);
  expect_documents_are_independent(true);
}

TEST(MambaLM, ParameterNamesFollowThePublishedModule) {
  Generator gen(7);
  LMConfig cfg;
  cfg.mixer = small_config(3, true);
  cfg.vocab_size = 11;
  MambaLM lm(cfg, gen);
  auto sd = lm.state_dict();
  for (const char* name : {"embedding.weight", "layers.0.norm.weight", "layers.0.mixer.local_experts_in_proj.1.weight",
                           "layers.0.mixer.conv1d.weight", "layers.0.mixer.conv1d.bias", "layers.0.mixer.A_log",
                           "layers.0.mixer.D", "layers.1.mixer.local_experts_dt_proj.2.bias",
                           "layers.1.mixer.local_experts_out_proj.0.weight", "norm_f.weight"})
    EXPECT_TRUE(sd.count(name)) << name;
  EXPECT_EQ(sd.at("layers.0.mixer.conv1d.weight").shape(), (Shape{16, 1, 4}));
  std::string summary = lm.parameter_summary();
  EXPECT_NE(summary.find("layers.*.in_proj"), std::string::npos) << summary;
  EXPECT_NE(summary.find("total"), std::string::npos);
}

TEST(MambaLM, BadInputGivesClearErrors) {
  Generator gen(8);
  LMConfig cfg;
  cfg.mixer = small_config(3, true);
  cfg.vocab_size = 11;
  MambaLM lm(cfg, gen);
  Tensor tokens = zeros({2, 3}, DType::i64);
  test::expect_error([&] { lm.forward(tokens, full({2, 3}, 3, DType::i32)); }, "[routing]");
  test::expect_error([&] { lm.forward(tokens, zeros({2, 4}, DType::i32)); }, "[MambaLM]");
  test::expect_error([&] { lm.forward(full({2, 3}, 11, DType::i64), zeros({2, 3}, DType::i32)); }, "[embedding]");
  MambaConfig bad = small_config(1, false);
  bad.d_conv = 9;
  test::expect_error([&] { MambaBlock b(bad, gen); }, "[MambaConfig]");
}

TEST(Mamba, ModuleGradchecks) {
  for (const auto& c : nn::module_gradcheck_cases()) {
    Generator gen(9);
    autograd::GradcheckProblem p = c.make(gen);
    auto rows = autograd::gradcheck(p.fn, p.inputs, p.names, p.opts);
    EXPECT_EQ(rows.size(), p.inputs.size());
    for (const auto& r : rows)
      EXPECT_TRUE(r.ok) << c.variant << " " << r.input << ": abs " << r.max_abs_err << " rel " << r.max_rel_err;
  }
}

}  // namespace
}  // namespace mom
