// AdamW against a hand-computed reference, clipping, the schedule, and Module's bookkeeping.
#include <gtest/gtest.h>

#include <cmath>

#include "nn/module.h"
#include "optim/adamw.h"
#include "optim/clip.h"
#include "optim/schedule.h"
#include "tests/support.h"

namespace mom {
namespace {

struct Toy : nn::Module {
  Tensor w, b;
  std::shared_ptr<Toy> child;
  explicit Toy(bool with_child) {
    w = register_parameter("weight", from_vector<double>({0.5, -1.0, 2.0}, {3}));
    b = register_parameter("bias", from_vector<double>({0.1}, {1}), /*weight_decay=*/false);
    register_buffer("count", from_vector<int64_t>({7}, {1}));
    if (with_child) child = register_module("inner", std::make_shared<Toy>(false));
  }
};

// One AdamW step written out from PyTorch's documented algorithm, in double.
struct RefAdamW {
  double lr, b1, b2, eps, wd;
  std::vector<double> m, v;
  int t = 0;
  void step(std::vector<double>& p, const std::vector<double>& g) {
    if (m.empty()) m.assign(p.size(), 0), v.assign(p.size(), 0);
    ++t;
    for (size_t i = 0; i < p.size(); ++i) {
      p[i] -= lr * wd * p[i];
      m[i] = b1 * m[i] + (1 - b1) * g[i];
      v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
      double mhat = m[i] / (1 - std::pow(b1, t));
      double vhat = v[i] / (1 - std::pow(b2, t));
      p[i] -= lr * mhat / (std::sqrt(vhat) + eps);
    }
  }
};

TEST(AdamW, MatchesHandComputedReferenceWithAndWithoutDecayAndSkipsParamsWithoutGrad) {
  Toy toy(false);
  optim::AdamWOptions opts{0.1, 0.9, 0.95, 1e-8, 0.1};
  optim::AdamW opt = optim::AdamW::from_module(toy, opts);
  ASSERT_EQ(opt.groups().size(), 2u);
  EXPECT_EQ(opt.groups()[0].params.size(), 1u);  // weight: decay
  EXPECT_EQ(opt.groups()[1].params.size(), 1u);  // bias: no decay
  RefAdamW ref_w{0.1, 0.9, 0.95, 1e-8, 0.1, {}, {}}, ref_b{0.1, 0.9, 0.95, 1e-8, 0.0, {}, {}};
  std::vector<double> pw = {0.5, -1.0, 2.0}, pb = {0.1};
  Generator gen(3);
  for (int step = 1; step <= 5; ++step) {
    std::vector<double> gw = {gen.normal(), gen.normal(), gen.normal()};
    toy.w.set_grad(from_vector<double>(gw, {3}));
    ref_w.step(pw, gw);
    if (step != 3) {  // step 3: the bias gets no gradient and must not move, nor count a step
      std::vector<double> gb = {gen.normal()};
      toy.b.set_grad(from_vector<double>(gb, {1}));
      ref_b.step(pb, gb);
    }
    opt.step();
    opt.zero_grad();
    std::vector<double> w = toy.w.to_vector<double>(), b = toy.b.to_vector<double>();
    for (size_t i = 0; i < 3; ++i) EXPECT_NEAR(w[i], pw[i], 1e-14) << "step " << step;
    EXPECT_NEAR(b[0], pb[0], 1e-14) << "step " << step;
  }
  EXPECT_EQ(ref_b.t, 4);
}

TEST(AdamW, StateRoundTripsAndResumesExactly) {
  optim::AdamWOptions opts{0.05, 0.9, 0.95, 1e-8, 0.1};
  Toy a(false), b(false);
  optim::AdamW oa = optim::AdamW::from_module(a, opts);
  auto grads = [](int step) { return from_vector<double>({0.1 * step, -0.2, 0.3 / step}, {3}); };
  for (int s = 1; s <= 2; ++s) {
    a.w.set_grad(grads(s));
    oa.step();
  }
  b.load_state_dict(a.state_dict());
  optim::AdamW ob = optim::AdamW::from_module(b, {1.0, 0.5, 0.5, 1.0, 0.0});  // overwritten by the load
  ob.load_state_dict(oa.state_dict());
  for (int s = 3; s <= 4; ++s) {
    a.w.set_grad(grads(s));
    b.w.set_grad(grads(s));
    oa.step();
    ob.step();
  }
  EXPECT_EQ(a.w.to_vector<double>(), b.w.to_vector<double>());
  auto bad = oa.state_dict();
  bad.erase("groups.0");
  test::expect_error([&] { ob.load_state_dict(bad); }, "[adamw]");
}

TEST(ClipGradNorm, ScalesOnlyAboveTheLimitAndReturnsTheNorm) {
  Toy toy(false);
  toy.w.set_grad(from_vector<double>({3.0, 0.0, 0.0}, {3}));
  toy.b.set_grad(from_vector<double>({4.0}, {1}));
  double norm = optim::clip_grad_norm(toy.parameters(), 1.0);
  EXPECT_DOUBLE_EQ(norm, 5.0);
  EXPECT_NEAR(toy.w.grad().to_vector<double>()[0], 3.0 / (5.0 + 1e-6), 1e-15);
  EXPECT_NEAR(toy.b.grad().to_vector<double>()[0], 4.0 / (5.0 + 1e-6), 1e-15);
  double again = optim::clip_grad_norm(toy.parameters(), 10.0);
  EXPECT_NEAR(again, 5.0 / (5.0 + 1e-6), 1e-12);  // the norm after the first clip
  EXPECT_NEAR(toy.b.grad().to_vector<double>()[0], 4.0 / (5.0 + 1e-6), 1e-15);  // unchanged under the limit
}

TEST(WarmupCosine, WarmsUpLinearlyThenDecaysToTheFloor) {
  optim::WarmupCosine s{1.0, 10, 110, 0.1};
  EXPECT_DOUBLE_EQ(s.lr_at(1), 0.1);
  EXPECT_DOUBLE_EQ(s.lr_at(10), 1.0);
  EXPECT_NEAR(s.lr_at(60), 0.1 + 0.9 * 0.5, 1e-12);  // half way through the cosine
  EXPECT_NEAR(s.lr_at(110), 0.1, 1e-12);
  EXPECT_NEAR(s.lr_at(500), 0.1, 1e-12);
  for (int i = 11; i < 110; ++i) EXPECT_LT(s.lr_at(i + 1), s.lr_at(i));
}

TEST(Module, HierarchicalNamesStateDictAndErrors) {
  Toy toy(true);
  std::vector<std::string> names;
  for (auto& [n, t] : toy.named_parameters()) names.push_back(n);
  EXPECT_EQ(names, (std::vector<std::string>{"weight", "bias", "inner.weight", "inner.bias"}));
  EXPECT_EQ(toy.no_decay_parameters(), (std::vector<std::string>{"bias", "inner.bias"}));
  EXPECT_EQ(toy.num_parameters(), 8);
  auto sd = toy.state_dict();
  EXPECT_EQ(sd.size(), 6u);  // 4 parameters, 2 buffers
  EXPECT_TRUE(sd.count("inner.count"));

  Toy other(true);
  sd["inner.weight"] = from_vector<double>({9, 9, 9}, {3});
  other.load_state_dict(sd);
  EXPECT_EQ(other.child->w.to_vector<double>(), (std::vector<double>{9, 9, 9}));
  EXPECT_TRUE(other.child->w.requires_grad());

  auto missing = sd;
  missing.erase("bias");
  test::expect_error([&] { other.load_state_dict(missing); }, "[load_state_dict] missing entries: bias");
  auto unexpected = sd;
  unexpected["extra"] = zeros({1});
  test::expect_error([&] { other.load_state_dict(unexpected); }, "[load_state_dict] unexpected entries: extra");
  auto misshaped = sd;
  misshaped["weight"] = zeros({4}, DType::f64);
  test::expect_error([&] { other.load_state_dict(misshaped); }, "[load_state_dict] 'weight' has shape");
  auto wrong_dtype = sd;
  wrong_dtype["weight"] = zeros({3}, DType::f32);
  test::expect_error([&] { other.load_state_dict(wrong_dtype); }, "[load_state_dict] 'weight' is float32");
  // A failed load changes nothing.
  EXPECT_EQ(other.child->w.to_vector<double>(), (std::vector<double>{9, 9, 9}));
}

}  // namespace
}  // namespace mom
