// The gradient check catches a 0.1% error in any gradient of the mission kernels: with the test-only
// perturbation hook (autograd/grad_perturbation.h) scaling one input's gradient by 1 + 1e-3 in an
// op's backward, every registered case of that op fails on that input's row, and only there; without
// it every row passes. The same through the Mamba block's module cases.
#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "autograd/grad_perturbation.h"
#include "autograd/gradcheck.h"
#include "nn/gradcheck_cases.h"

namespace mom {
namespace {

constexpr double kFactor = 1e-3;
constexpr uint64_t kSeeds[] = {0, 1};

std::vector<autograd::GradcheckCase> registered(const std::set<std::string>& ops) {
  std::vector<autograd::GradcheckCase> cases;
  for (const autograd::GradcheckCase& c : autograd::GradcheckRegistry::instance().cases())
    if (ops.count(c.op)) cases.push_back(c);
  return cases;
}

struct CaseRun {
  std::map<std::string, autograd::GradcheckRow> rows;  // by row name
  std::set<int32_t> modalities;                         // the ids of a masked_linear case (its input "ids")
};

// One case at one seed, its inputs drawn as `mom gradcheck --seed` draws them; with `op` non-empty,
// under a perturbation of op's gradient for `input`. The unperturbed runs are shared by the tests of
// every input.
CaseRun run_case(const autograd::GradcheckCase& c, uint64_t seed, const std::string& op = "",
                 const std::string& input = "") {
  static std::map<std::string, CaseRun> clean_runs;
  const std::string key = c.op + " [" + c.variant + "] " + std::to_string(seed);
  if (op.empty() && clean_runs.count(key)) return clean_runs[key];
  Generator gen(seed * 1000003 + std::hash<std::string>{}(c.op + c.variant) % 1000003);
  autograd::GradcheckProblem p = c.make(gen);
  p.opts.seed = seed;
  CaseRun run;
  for (size_t i = 0; i < p.names.size(); ++i)
    if (p.names[i] == "ids")
      for (int32_t m : p.inputs[i].to_vector<int32_t>()) run.modalities.insert(m);
  std::vector<autograd::GradcheckRow> rows;
  if (op.empty()) {
    rows = autograd::gradcheck(p.fn, p.inputs, p.names, p.opts);
  } else {
    autograd::ScopedGradPerturbation perturb(op, input, kFactor);
    rows = autograd::gradcheck(p.fn, p.inputs, p.names, p.opts);
  }
  for (const autograd::GradcheckRow& r : rows) run.rows[r.input] = r;
  if (op.empty()) clean_runs[key] = run;
  return run;
}

std::string describe(const autograd::GradcheckCase& c, uint64_t seed, const autograd::GradcheckRow& r) {
  std::ostringstream s;
  s << c.op << " [" << c.variant << "] seed " << seed << " row " << r.input << ": max abs err " << r.max_abs_err
    << ", err/tol " << r.max_ratio;
  return s.str();
}

// For every case of `ops` and seed: unperturbed, every row passes; with op's gradient for `input`
// perturbed, exactly the rows that `expected` names fail. `expected` may name no row for a case where
// the gradient is identically zero (then the perturbation changes nothing and every row must pass).
// Returns how many rows were expected to fail, so that a test can insist that something was checked.
using ExpectedRows = std::function<std::set<std::string>(const autograd::GradcheckCase&, const CaseRun&)>;

int expect_caught(const std::set<std::string>& ops, const std::string& op, const std::string& input,
                  const ExpectedRows& expected) {
  int failing = 0;
  for (const autograd::GradcheckCase& c : registered(ops)) {
    for (uint64_t seed : kSeeds) {
      CaseRun clean = run_case(c, seed);
      for (const auto& [name, r] : clean.rows) EXPECT_TRUE(r.ok) << "unperturbed: " << describe(c, seed, r);
      std::set<std::string> want = expected(c, clean);
      CaseRun bad = run_case(c, seed, op, input);
      EXPECT_EQ(bad.rows.size(), clean.rows.size());
      for (const auto& [name, r] : bad.rows) {
        if (want.count(name)) {
          EXPECT_FALSE(r.ok) << op << "." << input << " * (1 + 1e-3) went unseen: " << describe(c, seed, r);
          // The error is the 0.1% itself, not noise: well above the tolerance.
          EXPECT_GT(r.max_ratio, 10.0) << describe(c, seed, r);
        } else {
          EXPECT_TRUE(r.ok) << op << "." << input << " perturbed, another row failed: " << describe(c, seed, r);
        }
      }
      for (const std::string& w : want)
        EXPECT_TRUE(bad.rows.count(w)) << c.op << " [" << c.variant << "] has no row " << w;
      failing += static_cast<int>(want.size());
    }
  }
  return failing;
}

// ---- selective_scan: every differentiable input ----

class StrictScan : public ::testing::TestWithParam<const char*> {};

TEST_P(StrictScan, CatchesA0_1PercentError) {
  const std::string input = GetParam();
  auto expected = [&](const autograd::GradcheckCase& c, const CaseRun& run) {
    // Gradients that are identically zero stay zero under the perturbation. last_state does not
    // depend on C_ssm, D or z (they act on the output only); with one token and no initial state, the
    // decay exp(delta A) multiplies a zero state, so nothing depends on A.
    const bool state_only = c.variant.find("state-only") != std::string::npos;
    if (state_only && (input == "C_ssm" || input == "D" || input == "z")) return std::set<std::string>{};
    if (input == "A" && c.variant.find(" L=1 ") != std::string::npos && !run.rows.count("initial_state"))
      return std::set<std::string>{};
    return run.rows.count(input) ? std::set<std::string>{input} : std::set<std::string>{};
  };
  int failing = expect_caught({"selective_scan"}, "selective_scan", input, expected);
  EXPECT_GE(failing, 2) << "no case checks " << input;
}

INSTANTIATE_TEST_SUITE_P(Inputs, StrictScan,
                         ::testing::Values("u", "delta", "A", "B_ssm", "C_ssm", "D", "z", "delta_bias",
                                           "initial_state"));

// ---- causal_conv1d ----

class StrictConv : public ::testing::TestWithParam<const char*> {};

TEST_P(StrictConv, CatchesA0_1PercentError) {
  const std::string input = GetParam();
  auto expected = [&](const autograd::GradcheckCase&, const CaseRun& run) {
    return run.rows.count(input) ? std::set<std::string>{input} : std::set<std::string>{};
  };
  int failing = expect_caught({"causal_conv1d"}, "causal_conv1d", input, expected);
  EXPECT_GE(failing, 2) << "no case checks " << input;
}

INSTANTIATE_TEST_SUITE_P(Inputs, StrictConv, ::testing::Values("x", "weight", "bias", "initial_window"));

// ---- masked_linear and masked_linear_split ----

class StrictMaskedLinear : public ::testing::TestWithParam<const char*> {};

TEST_P(StrictMaskedLinear, CatchesA0_1PercentError) {
  const std::string input = GetParam();
  auto expected = [&](const autograd::GradcheckCase&, const CaseRun& run) {
    if (input == "x") return std::set<std::string>{"x"};
    // One row per expert, "weight[m]"; an expert whose modality is absent gets no gradient at all.
    std::set<std::string> want;
    for (int32_t m : run.modalities) {
      const std::string row = input + "[" + std::to_string(m) + "]";
      if (run.rows.count(row)) want.insert(row);
    }
    return want;
  };
  // Both registered ops run through the one node, masked_linear.
  int failing = expect_caught({"masked_linear", "masked_linear_split"}, "masked_linear", input, expected);
  EXPECT_GE(failing, 4) << "no case checks " << input;
}

INSTANTIATE_TEST_SUITE_P(Inputs, StrictMaskedLinear, ::testing::Values("x", "weight", "bias"));

// ---- the Mamba block (nn/gradcheck_cases.cpp) ----

struct ModuleProbe {
  const char* op;
  const char* input;
  const char* row_prefix;  // the parameter rows that must fail: names starting with this
  const char* row_suffix;  // ... and ending with this
  bool split_only;         // masked_linear runs only in the MoM cases (the dense block uses Linear)
};

void PrintTo(const ModuleProbe& p, std::ostream* os) { *os << p.op << "." << p.input; }

class StrictMamba : public ::testing::TestWithParam<ModuleProbe> {};

TEST_P(StrictMamba, CatchesA0_1PercentError) {
  const ModuleProbe probe = GetParam();
  int failing = 0;
  for (const autograd::GradcheckCase& c : nn::module_gradcheck_cases()) {
    const bool split = c.variant.find("MoM") != std::string::npos;
    if (probe.split_only && !split) continue;
    const bool absent_2 = c.variant.find("modality 2 absent") != std::string::npos;
    for (uint64_t seed : kSeeds) {
      CaseRun clean = run_case(c, seed);
      for (const auto& [name, r] : clean.rows) EXPECT_TRUE(r.ok) << "unperturbed: " << describe(c, seed, r);
      CaseRun bad = run_case(c, seed, probe.op, probe.input);
      for (const auto& [name, r] : bad.rows) {
        const std::string prefix = probe.row_prefix, suffix = probe.row_suffix;
        bool want = name.rfind(prefix, 0) == 0 && name.size() >= prefix.size() + suffix.size() &&
                    name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
        // Modality 2's experts get no gradient when it is absent.
        if (absent_2 && name.find(".2.") != std::string::npos) want = false;
        if (want) {
          ++failing;
          EXPECT_FALSE(r.ok) << probe.op << "." << probe.input << " * (1 + 1e-3) went unseen: "
                             << describe(c, seed, r);
          EXPECT_GT(r.max_ratio, 10.0) << describe(c, seed, r);
        } else {
          EXPECT_TRUE(r.ok) << probe.op << "." << probe.input << " perturbed, another row failed: "
                            << describe(c, seed, r);
        }
      }
    }
  }
  EXPECT_GE(failing, 2);
}

std::string probe_name(const ::testing::TestParamInfo<ModuleProbe>& info) {
  return std::string(info.param.op) + "_" + info.param.input;
}

// The scan's A reaches only A_log (A = -exp(A_log)); the conv's weight only conv1d.weight; the masked
// projections' weights every present expert's weight of in_proj, x_proj, dt_proj and out_proj.
INSTANTIATE_TEST_SUITE_P(Module, StrictMamba,
                         ::testing::Values(ModuleProbe{"selective_scan", "A", "A_log", "", false},
                                           ModuleProbe{"causal_conv1d", "weight", "conv1d.weight", "", false},
                                           ModuleProbe{"masked_linear", "weight", "local_experts_", ".weight", true}),
                         probe_name);

// The hook itself: off by default, scoped, and only for the named op and input.
TEST(GradPerturbation, ScopedAndTargeted) {
  EXPECT_FALSE(autograd::grad_perturbation_active());
  std::vector<Tensor> grads = {full({2}, 2.0, DType::f64), full({2}, 3.0, DType::f64), Tensor()};
  static const char* const names[] = {"a", "b", "c"};
  {
    autograd::ScopedGradPerturbation p("op", "b", 0.5);
    EXPECT_TRUE(autograd::grad_perturbation_active());
    std::vector<Tensor> other = grads;
    autograd::perturb_grads("other_op", names, other);
    EXPECT_EQ(other[1].to_vector<double>(), (std::vector<double>{3.0, 3.0}));
    autograd::perturb_grads("op", names, grads);
  }
  EXPECT_FALSE(autograd::grad_perturbation_active());
  EXPECT_EQ(grads[0].to_vector<double>(), (std::vector<double>{2.0, 2.0}));
  EXPECT_EQ(grads[1].to_vector<double>(), (std::vector<double>{4.5, 4.5}));
  EXPECT_FALSE(grads[2].defined());
  autograd::perturb_grads("op", names, grads);  // cleared: nothing changes
  EXPECT_EQ(grads[1].to_vector<double>(), (std::vector<double>{4.5, 4.5}));
}

}  // namespace
}  // namespace mom
