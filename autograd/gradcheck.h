// gradcheck: compares the gradients backward computes with central finite differences in f64 on
// the CPU.
//
// For small problems (every checked input and every output at most `full_jacobian_max` elements) it
// builds the whole Jacobian both ways: one backward per output element (a one-hot gradient) against
// one pair of perturbed forwards per input element. For larger ones it compares random projections:
// for `projections` random output weightings w, the gradient of L = sum(w * out) along random
// directions and along random single coordinates of each input.
//
// An entry passes when |analytic - numeric| <= atol + rtol * |numeric|. The report gives, per input,
// the max absolute error and the max relative error |a - n| / max(|a|, |n|, 1e-3).
//
// Op families register cases (a small problem built from a seed) with GradcheckRegistry so that
// `mom gradcheck` and the test suite run every one of them.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace mom::autograd {

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-5;
  double rtol = 1e-3;
  int64_t full_jacobian_max = 64;
  int projections = 3;
  int directions = 6;  // random directions and as many random coordinates, per input and projection
  uint64_t seed = 0;
};

struct GradcheckRow {
  std::string input;
  double max_abs_err = 0;
  double max_rel_err = 0;
  int64_t compared = 0;
  bool ok = true;
};

using GradcheckFn = std::function<std::vector<Tensor>(const std::vector<Tensor>&)>;

// Checks every floating input of `inputs` (f64, CPU); integer inputs (ids) are passed through.
// Inputs are copied into fresh leaves, except leaves that already require grad (a module's
// parameters): those are perturbed in place and restored, so `fn` may close over them.
std::vector<GradcheckRow> gradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs,
                                    const std::vector<std::string>& names, const GradcheckOptions& opts = {});

// device_check: the same function on another device or dtype against the CPU in float64. Runs `fn`
// on copies of the inputs on `device` in `dtype` (floating inputs cast and made leaves; integer inputs
// moved; leaves that already require grad, a module's parameters that fn closes over, are moved in
// place for the run and restored after it), takes the gradients of L = sum(w * out) for one fixed
// random projection w (normal, drawn from `seed`), and compares the outputs and the input gradients
// with the same computed on the CPU in float64. One row per output ("out 0", ...) and per floating
// input. An entry's max_rel_err is max |x - ref| / max |ref| over the tensor (scale-aware: an element
// near zero is judged against the tensor's magnitude); ok when it is <= rtol. An input that gets a
// gradient on one side and none on the other (an absent expert) is not ok.
std::vector<GradcheckRow> device_check(const GradcheckFn& fn, const std::vector<Tensor>& inputs,
                                       const std::vector<std::string>& names, Device device, DType dtype, double rtol,
                                       uint64_t seed);

struct GradcheckProblem {
  GradcheckFn fn;
  std::vector<Tensor> inputs;
  std::vector<std::string> names;
  GradcheckOptions opts;  // per-case tolerances where the op needs them
};

struct GradcheckCase {
  std::string op;       // "selective_scan"
  std::string variant;  // "B=2 L=7 E=5 N=3, z, D"
  std::function<GradcheckProblem(Generator&)> make;
};

// Every case of every op family registered so far; families add theirs through the functions in
// autograd/gradcheck_cases.cpp (and nn/ adds module-level cases through add_cases).
class GradcheckRegistry {
 public:
  static GradcheckRegistry& instance();
  void add_cases(const std::vector<GradcheckCase>& cases);
  const std::vector<GradcheckCase>& cases();
  std::vector<std::string> ops();

 private:
  std::vector<GradcheckCase> cases_;
  bool builtin_added_ = false;
};

// The op families of autograd/ (one function per family, defined beside each family's code).
void add_elementwise_gradcheck_cases(std::vector<GradcheckCase>& cases);
void add_reduce_shape_gradcheck_cases(std::vector<GradcheckCase>& cases);
void add_nn_ops_gradcheck_cases(std::vector<GradcheckCase>& cases);
void add_selective_scan_gradcheck_cases(std::vector<GradcheckCase>& cases);
void add_causal_conv1d_gradcheck_cases(std::vector<GradcheckCase>& cases);
void add_masked_linear_gradcheck_cases(std::vector<GradcheckCase>& cases);

}  // namespace mom::autograd
