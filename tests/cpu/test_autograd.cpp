// The autograd engine: gradients meeting at one input, leaf accumulation, deep chains without
// recursion, retain_graph, the saved-tensor version check, NoGradGuard, undefined grads, and a
// deliberately wrong backward that gradcheck must catch.
#include <gtest/gtest.h>

#include <cmath>

#include "autograd/engine.h"
#include "autograd/function_util.h"
#include "autograd/grad_mode.h"
#include "autograd/gradcheck.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "kernels/elementwise.h"
#include "tests/support.h"

namespace mom {
namespace {

Tensor leaf(std::vector<double> v) {
  Tensor t = from_vector<double>(v, {static_cast<int64_t>(v.size())});
  t.set_requires_grad(true);
  return t;
}

Tensor ones_like_f64(const Tensor& t) { return ones(t.shape(), DType::f64); }

TEST(Autograd, GradientsMeetAtOneInput) {
  Tensor x = leaf({1.0, 2.0, -0.5});
  // y = x*x + exp(x) + 3x: three paths from x; dy/dx = 2x + exp(x) + 3.
  Tensor y = x * x + exp(x) + x * 3.0;
  backward(y, ones_like_f64(y));
  std::vector<double> g = x.grad().to_vector<double>();
  std::vector<double> xv = {1.0, 2.0, -0.5};
  for (size_t i = 0; i < 3; ++i) EXPECT_NEAR(g[i], 2 * xv[i] + std::exp(xv[i]) + 3, 1e-12);
}

TEST(Autograd, LeafGradsAccumulateUntilZeroGrad) {
  Tensor x = leaf({1.0, 2.0});
  for (int i = 0; i < 3; ++i) {
    Tensor y = x * 2.0;
    backward(y, ones_like_f64(y));
  }
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{6.0, 6.0}));
  x.zero_grad();
  EXPECT_FALSE(x.grad().defined());
  Tensor y = x * 2.0;
  backward(y, ones_like_f64(y));
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{2.0, 2.0}));
}

TEST(Autograd, DeepChainRunsWithoutRecursion) {
  // 10,000 nodes: a recursive engine or a recursive graph destructor would overflow the stack.
  Tensor x = leaf({0.5});
  Tensor y = x;
  const int depth = 10000;
  for (int i = 0; i < depth; ++i) y = y * 1.0001;
  backward(y);
  EXPECT_NEAR(x.grad().item(), std::pow(1.0001, depth), 1e-9);
  y = Tensor();  // frees the whole chain
}

TEST(Autograd, SecondBackwardNeedsRetainGraph) {
  Tensor x = leaf({1.5});
  Tensor y = exp(x);
  backward(y, Tensor(), /*retain_graph=*/true);
  backward(y);
  EXPECT_NEAR(x.grad().item(), 2 * std::exp(1.5), 1e-12);
  test::expect_error([&] { backward(y); }, "[exp]");
}

TEST(Autograd, InPlaceChangeOfSavedTensorIsAnError) {
  Tensor x = leaf({1.0, 2.0});
  Tensor w = from_vector<double>({3.0, 4.0}, {2});
  Tensor y = x * w;  // saves w
  w.fill_(0.0);      // modified before backward
  test::expect_error([&] { backward(y, ones_like_f64(y)); }, "[mul]");
}

TEST(Autograd, NoGradGuardRecordsNothing) {
  Tensor x = leaf({1.0});
  {
    NoGradGuard guard;
    Tensor y = x * 2.0;
    EXPECT_FALSE(y.requires_grad());
    EXPECT_EQ(y.grad_fn(), nullptr);
  }
  Tensor y = x * 2.0;
  EXPECT_TRUE(y.requires_grad());
  test::expect_error([] { backward(from_vector<double>({1.0}, {1})); }, "[backward]");
}

TEST(Autograd, InputWithoutGradientKeepsUndefinedGrad) {
  Tensor a = leaf({1.0, 2.0});
  Tensor b = leaf({3.0, 4.0});
  Tensor y = a * 2.0;
  backward(y, ones_like_f64(y));
  EXPECT_TRUE(a.grad().defined());
  EXPECT_FALSE(b.grad().defined());
}

TEST(Autograd, BackwardChecksGradientShape) {
  Tensor x = leaf({1.0, 2.0});
  Tensor y = x * 2.0;
  test::expect_error([&] { backward(y); }, "[backward]");  // implied gradient needs one element
  test::expect_error([&] { backward(y, ones({3}, DType::f64)); }, "[backward]");
}

// A square whose backward forgets the factor 2: gradcheck must say so.
struct WrongSquareBackward : autograd::Node {
  autograd::SavedTensor x;
  std::string name() const override { return "wrong_square"; }
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
    return {kernels::mul(autograd::kernel_input(g[0]), x.unpack(*this))};
  }
};

Tensor wrong_square(const Tensor& x) {
  Tensor xd = x.detach();
  Tensor y = kernels::mul(xd, xd);
  if (autograd::needs_grad({x})) {
    auto node = autograd::make_node<WrongSquareBackward>({x});
    node->x = autograd::SavedTensor(xd);
    autograd::set_history(node, {&y});
  }
  return y;
}

TEST(Gradcheck, CatchesAWrongBackward) {
  Generator gen(1);
  auto fn = [](const std::vector<Tensor>& in) { return std::vector<Tensor>{wrong_square(in[0])}; };
  // Full-Jacobian path (tiny) and projection path (large).
  for (int64_t n : {4, 300}) {
    auto rows = autograd::gradcheck(fn, {randn({n}, gen, DType::f64)}, {"x"});
    ASSERT_EQ(rows.size(), 1u);
    EXPECT_FALSE(rows[0].ok) << "n=" << n << " max abs err " << rows[0].max_abs_err;
    EXPECT_GT(rows[0].max_rel_err, 0.3);
  }
  auto good = [](const std::vector<Tensor>& in) { return std::vector<Tensor>{in[0] * in[0]}; };
  for (int64_t n : {4, 300}) {
    auto rows = autograd::gradcheck(good, {randn({n}, gen, DType::f64)}, {"x"});
    EXPECT_TRUE(rows[0].ok) << "n=" << n << " max abs err " << rows[0].max_abs_err;
  }
}

// Every registered case of every op family, as its own test.
class RegisteredGradcheck : public ::testing::TestWithParam<size_t> {};

TEST_P(RegisteredGradcheck, MatchesFiniteDifferences) {
  const autograd::GradcheckCase& c = autograd::GradcheckRegistry::instance().cases()[GetParam()];
  Generator gen(1234 + GetParam());
  autograd::GradcheckProblem p = c.make(gen);
  auto rows = autograd::gradcheck(p.fn, p.inputs, p.names, p.opts);
  EXPECT_FALSE(rows.empty()) << c.op << ": no input was checked";
  for (const auto& r : rows) {
    EXPECT_GT(r.compared, 0) << c.op << " " << r.input;
    EXPECT_TRUE(r.ok) << c.op << " [" << c.variant << "] input " << r.input << ": max abs err " << r.max_abs_err
                      << ", max rel err " << r.max_rel_err;
  }
}

std::string case_name(const ::testing::TestParamInfo<size_t>& info) {
  std::string name = autograd::GradcheckRegistry::instance().cases()[info.param].op + "_" + std::to_string(info.param);
  for (char& ch : name)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return name;
}

INSTANTIATE_TEST_SUITE_P(AllOps, RegisteredGradcheck,
                         ::testing::Range<size_t>(0, autograd::GradcheckRegistry::instance().cases().size()),
                         case_name);

}  // namespace
}  // namespace mom
