// gradcheck: compares the gradients backward computes with central finite differences in f64 on
// the CPU.
//
// For small problems (every checked input and every output at most `full_jacobian_max` elements) it
// builds the whole Jacobian both ways: one backward per output element (a one-hot gradient) against
// two pairs of perturbed forwards per input element. For larger ones it compares random projections:
// for `projections` random output weightings w, the gradient of L = sum(w * out) along random
// directions and along random single coordinates of each input.
//
// The criterion: each compared number is judged against an estimate of its own finite-difference
// error, so that an error in a gradient as small as 0.1% fails wherever the differences can resolve
// it. The derivative along v comes from central differences D(s) = (f(x + s v) - f(x - s v)) / 2s at
// the steps s = h and 2h (h = eps), whose errors are
//   - truncation: D(s) = f' + c3 s^2 + c5 s^4 + ..., so D(h) - D(2h) = -3 c3 h^2 + O(h^4). The
//     Richardson estimate of D(h)'s truncation error is |D(h) - D(2h)| / 3, and the compared numeric
//     value is the extrapolation n = (4 D(h) - D(2h)) / 3 = f' - 4 c5 h^4 + ..., whose truncation error
//     lies far below that estimate (by about (h / the function's length scale)^2); the estimate serves
//     as its bound.
//   - round-off: a forward value is off by at most delta, so D(s) by delta / s and n by
//     (4 delta / h + delta / 2h) / 3 = 1.5 delta / h, with delta = c u M (u = 2^-53, c = roundoff_ulps).
//     M is the magnitude the value is computed at: for a Jacobian entry the max |out| of its output
//     tensor (scale-aware: an element that cancels to near zero still carries the round-off of the
//     terms it came from), for a projection sum |w| max |out| (the weighted sum itself is compensated
//     and adds no error of its own). Being deterministic, a second evaluation would repeat the same
//     round-off, so the bound comes from the magnitude rather than from a measurement.
// An entry passes when
//     |a - n| <= K (|D(h) - D(2h)| / 3 + 1.5 delta / h) + rho |n|        (K = safety, rho = rel_slack)
// where rho is a backstop for what the estimate leaves out (the analytic side's own rounding, around
// 1e-14 relative): a 0.1% error passes only where K times the estimated finite-difference error is
// itself about 0.1% of the value. Differences are taken over the realized steps (divided by x+ - x- as
// stored; a direction's analytic value is taken along the stored displacement), so the rounding of
// x +- h v adds no error.
//
// The defaults are calibrated on every registered case (op families and Mamba block) over seeds 0-9:
// the observed errors stay below a tenth of K times the estimate (the largest round-off seen is about
// 7 u M, against c = 16), while a gradient of a mission kernel made 0.1% too large exceeds its
// tolerance about 100 times over through the Mamba block and 1e3 to 1e5 times over in the kernels' own
// cases (tests/cpu/test_gradcheck_strict.cpp, through autograd/grad_perturbation.h). At h = 1e-5 the round-off term dominates for inputs and derivatives of
// order one; a larger h trades it for truncation and puts the 2h stencil nearer any kink. Within 2h of
// a kink (a tie of max, softplus's threshold) the expansion does not hold and the check means nothing
// either way, so cases keep their inputs away from kinks.
//
// The report gives, per input, the max absolute error, the max relative error (the max absolute error
// over the row's max |numeric|, scale-aware like device_check) and the max error / tolerance ratio.
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
  double eps = 1e-5;           // h: the central differences take steps h and 2h
  double safety = 4;           // K: the multiple of the estimated finite-difference error allowed
  double roundoff_ulps = 16;   // c: the round-off of each output, in units of u * max |output|
  double rel_slack = 1e-8;     // rho: |numeric| times this is allowed on top
  int64_t full_jacobian_max = 64;
  int projections = 3;
  int directions = 6;  // random directions and as many random coordinates, per input and projection
  uint64_t seed = 0;
};

struct GradcheckRow {
  std::string input;
  double max_abs_err = 0;  // max |analytic - numeric|
  double max_rel_err = 0;  // max_abs_err / max |numeric| over the row (scale-aware)
  double max_ratio = 0;    // max |analytic - numeric| / tolerance: ok when <= 1
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
  GradcheckOptions opts;  // per-case settings where the op needs them
};

struct GradcheckCase {
  std::string op;       // "selective_scan"
  std::string variant;  // "B=2 L=7 E=5 N=3, z, D"
  std::function<GradcheckProblem(Generator&)> make;
};

// Every case of every op family registered so far. cases() adds the op families' own cases on first
// use, through the add_*_gradcheck_cases functions below (autograd/gradcheck.cpp calls them); the
// module-level cases of nn/gradcheck_cases.cpp (nn::module_gradcheck_cases) come in through add_cases,
// which `mom gradcheck` calls.
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

// The document starts of the packed-row cases of the scan and the conv: (B, L) bool. Row b % 3 == 0
// holds documents starting at 0, 1, 4, 5 and L-1 (those below L): a flagged position 0, documents of
// length 1 at both ends and inside; row b % 3 == 1 is one document over the whole row, unflagged; row
// b % 3 == 2 has one boundary, at L / 2 (when L >= 2).
Tensor gradcheck_doc_starts(int64_t B, int64_t L);

// The op families of autograd/ (one function per family, defined beside each family's code).
void add_elementwise_gradcheck_cases(std::vector<GradcheckCase>& cases);
void add_reduce_shape_gradcheck_cases(std::vector<GradcheckCase>& cases);
void add_nn_ops_gradcheck_cases(std::vector<GradcheckCase>& cases);
void add_selective_scan_gradcheck_cases(std::vector<GradcheckCase>& cases);
void add_causal_conv1d_gradcheck_cases(std::vector<GradcheckCase>& cases);
void add_masked_linear_gradcheck_cases(std::vector<GradcheckCase>& cases);

}  // namespace mom::autograd
