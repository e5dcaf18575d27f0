// bf16 mixed precision on the CPU: the bf16 versions of the ops give the documented dtypes and stay
// within bf16 rounding of the float64 result of the same inputs; they refuse a float32 parameter where
// a bf16 activation belongs and the reverse; cast's gradient comes back in the input's dtype; a model
// computing in bf16 has float32 gradients for every parameter, tracking the float32 model's; and a
// bf16 training run follows the float32 run.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/safetensors.h"
#include "kernels/causal_conv1d.h"
#include "kernels/cross_entropy.h"
#include "kernels/masked_linear.h"
#include "kernels/matmul.h"
#include "kernels/rms_norm.h"
#include "kernels/selective_scan.h"
#include "nn/lm.h"
#include "tests/support.h"
#include "tests/toy_support.h"
#include "examples/toy/train.h"

namespace mom {
namespace {

// Random values already on the bf16 grid (so the float64 reference sees exactly the op's inputs).
Tensor bf16_randn(const Shape& shape, Generator& gen, double std = 1.0) {
  return randn(shape, gen, DType::f32, 0.0, std).to(DType::bf16);
}

// Every element within `rel` of the float64 reference, relative to the reference's scale (its RMS):
// a bf16 output carries one rounding (2^-9 relative) on top of float32 arithmetic.
void expect_close(const Tensor& got, const Tensor& ref, double rel, const std::string& what) {
  std::vector<double> g = got.to_vector<double>(), r = ref.to_vector<double>();
  ASSERT_EQ(g.size(), r.size()) << what;
  double ss = 0;
  for (double v : r) ss += v * v;
  const double scale = std::sqrt(ss / std::max<size_t>(r.size(), 1));
  ASSERT_GT(scale, 0) << what << ": the reference is all zeros";
  double worst = 0;
  for (size_t i = 0; i < g.size(); ++i) worst = std::max(worst, std::fabs(g[i] - r[i]) / (std::fabs(r[i]) + scale));
  EXPECT_LT(worst, rel) << what;
}

Tensor f64(const Tensor& t) { return t.defined() ? t.to(DType::f64) : t; }

TEST(MixedPrecision, MatmulAndMaskedLinear) {
  Generator gen(1);
  Tensor x = bf16_randn({37, 24}, gen), w = bf16_randn({19, 24}, gen, 0.2);
  Tensor bias = randn({19}, gen, DType::f32);
  Tensor y = kernels::matmul(x, w, false, true, bias);
  EXPECT_EQ(y.dtype(), DType::bf16);
  expect_close(y, kernels::matmul(f64(x), f64(w), false, true, f64(bias)), 4e-3, "matmul");
  Tensor dy = bf16_randn({37, 19}, gen);
  kernels::MatmulGrads g = kernels::matmul_backward(dy, x, w, false, true);
  kernels::MatmulGrads g64 = kernels::matmul_backward(f64(dy), f64(x), f64(w), false, true);
  EXPECT_EQ(g.da.dtype(), DType::bf16);
  EXPECT_EQ(g.db.dtype(), DType::bf16);
  expect_close(g.da, g64.da, 4e-3, "matmul da");
  expect_close(g.db, g64.db, 4e-3, "matmul db");
  test::expect_error([&] { kernels::matmul(x, w, false, true, bias.to(DType::bf16)); },
                     "[matmul] bias must be float32 beside bfloat16 a, got bfloat16");
  test::expect_error([&] { kernels::matmul(x, w.to(DType::f32), false, true); }, "[matmul] a is bfloat16 but b is float32");

  // masked_linear: three experts, one without a token.
  Tensor ids = from_vector<int32_t>(std::vector<int32_t>(37, 0), {37});
  for (int64_t t = 0; t < 37; t += 3) ids.data<int32_t>()[t] = 2;
  Routing r = Routing::from_modalities(ids, 3);
  std::vector<Tensor> ws, ws64, bs, bs64;
  for (int m = 0; m < 3; ++m) {
    ws.push_back(bf16_randn({19, 24}, gen, 0.2));
    bs.push_back(randn({19}, gen, DType::f32));
    ws64.push_back(f64(ws.back()));
    bs64.push_back(f64(bs.back()));
  }
  Tensor ym = kernels::masked_linear_forward(x, r, ws, bs);
  EXPECT_EQ(ym.dtype(), DType::bf16);
  expect_close(ym, kernels::masked_linear_forward(f64(x), r, ws64, bs64), 4e-3, "masked_linear");
  kernels::MaskedLinearGrads mg = kernels::masked_linear_backward(dy, x, r, ws, true, true, true);
  kernels::MaskedLinearGrads mg64 = kernels::masked_linear_backward(f64(dy), f64(x), r, ws64, true, true, true);
  EXPECT_EQ(mg.dx.dtype(), DType::bf16);
  expect_close(mg.dx, mg64.dx, 4e-3, "masked_linear dx");
  EXPECT_FALSE(mg.dweight[1].defined());  // the absent expert
  for (int m : {0, 2}) {
    EXPECT_EQ(mg.dweight[m].dtype(), DType::bf16);
    EXPECT_EQ(mg.dbias[m].dtype(), DType::f32);
    expect_close(mg.dweight[m], mg64.dweight[m], 4e-3, "masked_linear dweight");
    expect_close(mg.dbias[m], mg64.dbias[m], 1e-5, "masked_linear dbias");
  }
  test::expect_error([&] { kernels::masked_linear_forward(x, r, ws, {bs[0], bs[1], bs[2].to(DType::bf16)}); },
                     "[masked_linear] bias[2] must be float32 beside bfloat16 x, got bfloat16");
}

TEST(MixedPrecision, ConvAndScan) {
  Generator gen(2);
  const int64_t B = 2, L = 33, E = 12, N = 4, W = 4;
  kernels::CausalConv1dParams c;
  c.x = bf16_randn({B, L, E}, gen);
  c.weight = randn({E, W}, gen, DType::f32, 0.0, 0.5);
  c.bias = randn({E}, gen, DType::f32);
  c.initial_window = bf16_randn({B, W - 1, E}, gen);
  c.silu = true;
  kernels::CausalConv1dParams c64 = c;
  for (Tensor* t : {&c64.x, &c64.weight, &c64.bias, &c64.initial_window}) *t = f64(*t);
  kernels::CausalConv1dOutput o = kernels::causal_conv1d_forward(c), o64 = kernels::causal_conv1d_forward(c64);
  EXPECT_EQ(o.y.dtype(), DType::bf16);
  EXPECT_EQ(o.final_window.dtype(), DType::bf16);
  expect_close(o.y, o64.y, 4e-3, "conv y");
  EXPECT_EQ(test::max_abs_diff(o.final_window, o64.final_window), 0.0);  // copies of inputs
  Tensor dy = bf16_randn({B, L, E}, gen);
  kernels::CausalConv1dGrads cg = kernels::causal_conv1d_backward(c, dy, Tensor());
  kernels::CausalConv1dGrads cg64 = kernels::causal_conv1d_backward(c64, f64(dy), Tensor());
  EXPECT_EQ(cg.dx.dtype(), DType::bf16);
  EXPECT_EQ(cg.dweight.dtype(), DType::f32);
  EXPECT_EQ(cg.dbias.dtype(), DType::f32);
  EXPECT_EQ(cg.dinitial_window.dtype(), DType::bf16);
  expect_close(cg.dx, cg64.dx, 4e-3, "conv dx");
  expect_close(cg.dweight, cg64.dweight, 1e-5, "conv dweight");
  expect_close(cg.dbias, cg64.dbias, 1e-5, "conv dbias");
  kernels::CausalConv1dParams wrong = c;
  wrong.weight = c.weight.to(DType::bf16);
  test::expect_error([&] { kernels::causal_conv1d_forward(wrong); },
                     "[causal_conv1d] weight must be float32 beside bfloat16 x, got bfloat16");

  kernels::SelectiveScanParams s;
  s.u = bf16_randn({B, L, E}, gen);
  s.delta = rand({B, L, E}, gen, DType::f32, -4.0, -1.0).to(DType::bf16);
  s.A = neg(exp(randn({E, N}, gen, DType::f32, 0.0, 0.5)));
  s.B_ssm = bf16_randn({B, L, N}, gen);
  s.C_ssm = bf16_randn({B, L, N}, gen);
  s.D = randn({E}, gen, DType::f32);
  s.z = bf16_randn({B, L, E}, gen);
  s.delta_bias = randn({E}, gen, DType::f32, 0.0, 0.1);
  s.initial_state = randn({B, E, N}, gen, DType::f32);
  s.delta_softplus = true;
  kernels::SelectiveScanParams s64 = s;
  for (Tensor* t : {&s64.u, &s64.delta, &s64.A, &s64.B_ssm, &s64.C_ssm, &s64.D, &s64.z, &s64.delta_bias,
                    &s64.initial_state})
    *t = f64(*t);
  kernels::SelectiveScanOutput so = kernels::selective_scan_forward(s), so64 = kernels::selective_scan_forward(s64);
  EXPECT_EQ(so.out.dtype(), DType::bf16);
  EXPECT_EQ(so.last_state.dtype(), DType::f32);
  expect_close(so.out, so64.out, 4e-3, "scan out");
  expect_close(so.last_state, so64.last_state, 1e-5, "scan last_state");
  Tensor dout = bf16_randn({B, L, E}, gen), dlast = randn({B, E, N}, gen, DType::f32);
  kernels::SelectiveScanGrads sg = kernels::selective_scan_backward(s, dout, dlast);
  kernels::SelectiveScanGrads sg64 = kernels::selective_scan_backward(s64, f64(dout), f64(dlast));
  for (auto [got, ref, name, dtype] :
       {std::tuple{sg.du, sg64.du, "du", DType::bf16}, {sg.ddelta, sg64.ddelta, "ddelta", DType::bf16},
        {sg.dB_ssm, sg64.dB_ssm, "dB", DType::bf16}, {sg.dC_ssm, sg64.dC_ssm, "dC", DType::bf16},
        {sg.dz, sg64.dz, "dz", DType::bf16}, {sg.dA, sg64.dA, "dA", DType::f32}, {sg.dD, sg64.dD, "dD", DType::f32},
        {sg.ddelta_bias, sg64.ddelta_bias, "ddelta_bias", DType::f32},
        {sg.dinitial_state, sg64.dinitial_state, "dinitial_state", DType::f32}}) {
    EXPECT_EQ(got.dtype(), dtype) << name;
    expect_close(got, ref, dtype == DType::bf16 ? 4e-3 : 1e-4, std::string("scan ") + name);
  }
  kernels::SelectiveScanParams wrong_scan = s;
  wrong_scan.D = s.D.to(DType::bf16);
  test::expect_error([&] { kernels::selective_scan_forward(wrong_scan); },
                     "[selective_scan] D is bfloat16 but must be float32 beside bfloat16 u");
}

TEST(MixedPrecision, NormLossAndCast) {
  Generator gen(3);
  Tensor x = randn({6, 16}, gen, DType::f32), w = rand({16}, gen, DType::f32, 0.5, 1.5);
  kernels::RmsNormForward f = kernels::rms_norm_forward(x, w, 1e-5, DType::bf16);
  kernels::RmsNormForward f64f = kernels::rms_norm_forward(f64(x), f64(w), 1e-5);
  EXPECT_EQ(f.y.dtype(), DType::bf16);
  EXPECT_EQ(f.rstd.dtype(), DType::f32);
  expect_close(f.y, f64f.y, 4e-3, "rms_norm y");
  Tensor dy = bf16_randn({6, 16}, gen);
  kernels::RmsNormBackward b = kernels::rms_norm_backward(dy, x, w, f.rstd);
  kernels::RmsNormBackward b64 = kernels::rms_norm_backward(f64(dy), f64(x), f64(w), f64f.rstd);
  EXPECT_EQ(b.dx.dtype(), DType::f32);
  expect_close(b.dx, b64.dx, 1e-5, "rms_norm dx");
  expect_close(b.dweight, b64.dweight, 1e-5, "rms_norm dweight");
  test::expect_error([&] { kernels::rms_norm_forward(x.to(DType::f64), f64(w), 1e-5, DType::bf16); },
                     "[rms_norm] y must be of x's dtype, or bfloat16 beside a float32 x");

  Tensor logits = bf16_randn({9, 7}, gen, 2.0);
  Tensor targets = randint({9}, 0, 7, gen, DType::i64);
  kernels::CrossEntropyForward ce = kernels::cross_entropy_forward(logits, targets, -100, Tensor());
  kernels::CrossEntropyForward ce64 = kernels::cross_entropy_forward(f64(logits), targets, -100, Tensor());
  EXPECT_EQ(ce.loss.dtype(), DType::f32);
  EXPECT_NEAR(ce.loss.item(), ce64.loss.item(), 1e-5 * std::fabs(ce64.loss.item()));
  Tensor dl = kernels::cross_entropy_backward(scalar_tensor(1.0), logits, targets, ce.lse, -100, Tensor());
  EXPECT_EQ(dl.dtype(), DType::bf16);
  expect_close(dl, kernels::cross_entropy_backward(scalar_tensor(1.0, DType::f64), f64(logits), targets, ce64.lse, -100,
                                                   Tensor()),
               4e-3, "cross_entropy dlogits");

  // cast: values rounded once, the gradient back in the input's dtype; a cast to the same dtype is the
  // tensor itself.
  Tensor p = test::leaf(from_vector<float>({1.0f + 1.0f / 512, -3.0f, 0.1f}, {3}));
  Tensor q = cast(p, DType::bf16);
  EXPECT_EQ(q.dtype(), DType::bf16);
  EXPECT_EQ(q.to_vector<double>()[0], 1.0);  // a tie rounds to even
  backward(sum(mul(cast(q, DType::f32), from_vector<float>({2.0f, 3.0f, 4.0f}, {3}))));
  ASSERT_TRUE(p.grad().defined());
  EXPECT_EQ(p.grad().dtype(), DType::f32);
  EXPECT_EQ(p.grad().to_vector<double>(), (std::vector<double>{2.0, 3.0, 4.0}));
  EXPECT_TRUE(cast(p, DType::f32).is_same(p));
  test::expect_error([&] { cast(from_vector<int32_t>({1}, {1}), DType::bf16); }, "[cast] casts convert between floating");
}

// The same model (same weights) computing in float32 and in bf16: bf16 logits, float32 gradients for
// every parameter, each within a few bf16 roundings of the float32 gradient.
void expect_bf16_tracks_f32(bool split) {
  Generator gen(4);
  nn::LMConfig cfg;
  cfg.vocab_size = 13;
  cfg.n_layers = 2;
  cfg.mixer.d_model = 16;
  cfg.mixer.d_state = 4;
  cfg.mixer.n_modalities = 3;
  cfg.mixer.split_in_proj = cfg.mixer.split_x_proj = cfg.mixer.split_dt_proj = cfg.mixer.split_out_proj = split;
  nn::MambaLM lm(cfg, gen);
  const int64_t B = 2, L = 24;
  Tensor tokens = randint({B, L}, 0, cfg.vocab_size, gen, DType::i64);
  Tensor mods = randint({B, L}, 0, 3, gen, DType::i64);
  Tensor starts = zeros({B, L}, DType::boolean);
  starts.data<bool>()[10] = true;
  Tensor targets = randint({B * L}, 0, cfg.vocab_size, gen, DType::i64);
  std::vector<std::vector<Tensor>> grads(2);
  std::vector<double> losses;
  for (DType compute : {DType::f32, DType::bf16}) {
    lm.set_compute_dtype(compute);
    lm.zero_grad();
    Tensor logits = lm.forward(tokens, mods, starts);
    EXPECT_EQ(logits.dtype(), compute);
    Tensor loss = cross_entropy(reshape(logits, {B * L, cfg.vocab_size}), targets);
    EXPECT_EQ(loss.dtype(), DType::f32);
    losses.push_back(loss.item());
    backward(loss);
    for (const auto& [name, prm] : lm.named_parameters()) {
      ASSERT_TRUE(prm.grad().defined()) << name;
      EXPECT_EQ(prm.grad().dtype(), DType::f32) << name;
      grads[compute == DType::bf16].push_back(prm.grad().clone());
    }
  }
  EXPECT_NEAR(losses[1], losses[0], 5e-3 * losses[0]);
  EXPECT_NE(losses[1], losses[0]);  // the bf16 path really rounds
  double worst = 0;
  for (size_t i = 0; i < grads[0].size(); ++i) worst = std::max(worst, test::rel_error(grads[1][i], grads[0][i]));
  std::printf("%s: bf16 vs float32 loss %.6f / %.6f, worst gradient rel error %.3e\n", split ? "MoM" : "dense",
              losses[1], losses[0], worst);
  EXPECT_LT(worst, 5e-2);  // a bf16 rounding (2^-9) in each of a dozen ops on the path, forward and back
  lm.set_compute_dtype(DType::f32);
  test::expect_error([&] { lm.set_compute_dtype(DType::f64); }, "[MambaLM] computes in its parameters' dtype");
}

TEST(MixedPrecision, ModelTracksFloat32) {
  expect_bf16_tracks_f32(false);
  expect_bf16_tracks_f32(true);
}

// Step-by-step decoding in bf16 follows the bf16 parallel forward (both round, in other orders).
TEST(MixedPrecision, StepFollowsParallelForward) {
  Generator gen(5);
  nn::LMConfig cfg;
  cfg.vocab_size = 11;
  cfg.mixer.d_model = 16;
  cfg.mixer.d_state = 4;
  cfg.mixer.n_modalities = 2;
  cfg.mixer.split_in_proj = cfg.mixer.split_x_proj = cfg.mixer.split_dt_proj = cfg.mixer.split_out_proj = true;
  nn::MambaLM lm(cfg, gen);
  lm.set_compute_dtype(DType::bf16);
  const int64_t B = 2, L = 7;
  Tensor tokens = randint({B, L}, 0, cfg.vocab_size, gen, DType::i64);
  Tensor mods = randint({B, L}, 0, 2, gen, DType::i64);
  NoGradGuard no_grad;
  Tensor full = lm.forward(tokens, mods).to(DType::f32);
  nn::LMState state = lm.allocate_state(B);
  EXPECT_EQ(state[0].conv_window.dtype(), DType::bf16);
  EXPECT_EQ(state[0].ssm.dtype(), DType::f32);
  for (int64_t t = 0; t < L; ++t) {
    Tensor logits = lm.step(tokens.narrow(1, t, 1).contiguous().reshape({B}), mods.narrow(1, t, 1).contiguous().reshape({B}),
                            state);
    EXPECT_EQ(logits.dtype(), DType::f32);
    EXPECT_LT(test::rel_error(logits, full.narrow(1, t, 1).contiguous().reshape({B, cfg.vocab_size})), 2e-2) << t;
  }
}

// The learned-routing baseline trains in bf16 too: its gate multiplies in float32, whose gradient sums
// a row (a reduction bf16 tensors do not take), and the run follows the float32 one.
TEST(MixedPrecision, LearnedRoutingTrainsInBf16) {
  toy::TrainConfig cfg = test::tiny_train_config(test::scratch_path("learned_f32"));
  cfg.model = "learned";
  cfg.steps = 20;
  toy::TrainResult f32 = toy::train(cfg);
  cfg.out = test::scratch_path("learned_bf16");
  cfg.precision = "bf16";
  toy::TrainResult bf = toy::train(cfg);
  ASSERT_TRUE(std::isfinite(bf.last_eval.total));
  EXPECT_NEAR(bf.last_eval.total, f32.last_eval.total, 0.03 * f32.last_eval.total);
}

// A short training run in bf16 follows the float32 run of the same config; precision is recorded in the
// config and may change on resume.
TEST(MixedPrecision, TrainingFollowsFloat32) {
  toy::TrainConfig cfg = test::tiny_train_config(test::scratch_path("f32"));
  cfg.steps = 30;
  toy::TrainResult f32 = toy::train(cfg);
  cfg.out = test::scratch_path("bf16");
  cfg.precision = "bf16";
  cfg.save_dtype = "bf16";
  toy::TrainResult bf = toy::train(cfg);
  ASSERT_TRUE(std::isfinite(bf.last_eval.total));
  std::printf("eval loss after %lld steps: float32 %.5f, bf16 %.5f\n", static_cast<long long>(cfg.steps),
              f32.last_eval.total, bf.last_eval.total);
  EXPECT_NEAR(bf.last_eval.total, f32.last_eval.total, 0.015 * f32.last_eval.total);
  EXPECT_LT(bf.last_eval.total, 0.8 * std::log(static_cast<double>(toy::kToyVocabSize)));  // it learned
  EXPECT_EQ(toy::TrainConfig::from_json(cfg.to_json()).precision, "bf16");

  // --save-dtype bf16: model.safetensors holds the weights rounded once to bf16 (half the bytes), and it
  // loads into the float32 model with the logits of the float32 checkpoint to bf16 rounding.
  const std::string model_file = cfg.out + "/model.safetensors";
  SafetensorsFile saved = load_safetensors(model_file);
  int64_t weights = 0;
  for (const auto& [name, t] : saved.tensors) {
    EXPECT_EQ(t.dtype(), DType::bf16) << name;
    weights += t.numel();
  }
  // 2 bytes fewer per weight; the two files' JSON headers differ by a few hundred bytes at most.
  const double f32_bytes = std::filesystem::file_size(test::scratch_path("f32") + "/model.safetensors");
  EXPECT_NEAR(f32_bytes - std::filesystem::file_size(model_file), 2.0 * weights, 256.0);
  toy::LoadedModel half = toy::load_model(model_file), full = toy::load_model(cfg.out);
  const auto f32_weights = full.model->state_dict();
  for (const auto& [name, t] : half.model->state_dict()) {
    EXPECT_EQ(t.dtype(), DType::f32) << name;
    EXPECT_EQ(test::max_abs_diff(t, f32_weights.at(name).to(DType::bf16)), 0.0) << name;  // rounded once
  }
  Generator gen(9);
  Tensor tokens = randint({1, 20}, 0, toy::kToyVocabSize, gen, DType::i64), mods = zeros({1, 20}, DType::i64);
  NoGradGuard no_grad;
  EXPECT_LT(test::rel_error(half.model->forward(tokens, mods), full.model->forward(tokens, mods)), 2e-2);
  EXPECT_EQ(toy::TrainConfig::from_json(cfg.to_json()).save_dtype, "bf16");
  cfg.precision = "f16";
  test::expect_error([&] { cfg.validate(); }, "[train] --precision must be f32 or bf16");
}

}  // namespace
}  // namespace mom
