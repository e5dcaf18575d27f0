#include "autograd/gradcheck.h"

#include <algorithm>
#include <cmath>
#include <memory>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"

namespace mom::autograd {

namespace {

struct Checked {
  size_t index;  // position in inputs
  Tensor leaf;   // f64 contiguous leaf requiring grad
};

// The unit roundoff of float64.
constexpr double kUnitRoundoff = 0x1p-53;

// Outputs are copied: an op that returns a view of an input would otherwise change under the next
// perturbation.
std::vector<Tensor> eval(const GradcheckFn& fn, const std::vector<Tensor>& inputs) {
  NoGradGuard guard;
  std::vector<Tensor> outs = fn(inputs);
  for (Tensor& t : outs)
    if (t.defined()) t = t.clone();
  return outs;
}

// sum(w * out), summed with Neumaier's compensation so that the sum adds no rounding error of its own
// beyond about one ulp of the result, however many outputs there are: the error of the weighted sum
// is then that of the outputs themselves, which the round-off bound counts.
double weighted_sum(const std::vector<Tensor>& outs, const std::vector<std::vector<double>>& w) {
  double s = 0, c = 0;
  for (size_t o = 0; o < outs.size(); ++o) {
    if (!outs[o].defined()) continue;
    std::vector<double> v = outs[o].to_vector<double>();
    for (size_t i = 0; i < v.size(); ++i) {
      double x = w[o][i] * v[i], t = s + x;
      c += std::fabs(s) >= std::fabs(x) ? (s - t) + x : (x - t) + s;
      s = t;
    }
  }
  return s + c;
}

// Analytic gradient of sum(w * out) for every checked input (zeros where none reached it).
std::vector<std::vector<double>> analytic(const GradcheckFn& fn, const std::vector<Tensor>& inputs,
                                          std::vector<Checked>& checked, const std::vector<std::vector<double>>& w) {
  for (Checked& c : checked) c.leaf.zero_grad();
  std::vector<Tensor> outs = fn(inputs);
  std::vector<Tensor> roots, grads;
  for (size_t o = 0; o < outs.size(); ++o) {
    if (!outs[o].defined() || !outs[o].requires_grad()) continue;
    roots.push_back(outs[o]);
    std::vector<double> wo = w[o];
    grads.push_back(from_vector<double>(wo, outs[o].shape()).to(outs[o].dtype()));
  }
  if (!roots.empty()) backward(roots, grads);
  std::vector<std::vector<double>> result;
  for (Checked& c : checked) {
    Tensor g = c.leaf.grad();
    result.push_back(g.defined() ? g.to_vector<double>() : std::vector<double>(c.leaf.numel(), 0.0));
  }
  return result;
}

// A row being filled: the public row and the scale of its numeric values.
struct RowAcc {
  GradcheckRow row;
  double scale = 0;  // max |numeric|
};

// One compared number. d1, d2: the central differences with steps h and 2h; a1, a2: the analytic
// derivative along the same realized steps (equal but for the rounding of x +- h v); noise: a bound
// on the round-off error of one forward value, divided by h. See gradcheck.h for the criterion.
void compare(RowAcc& acc, double a1, double a2, double d1, double d2, double noise, const GradcheckOptions& opts) {
  const double a = a1 == a2 ? a1 : (4 * a1 - a2) / 3, n = (4 * d1 - d2) / 3;
  const double fd_err = std::fabs(d1 - d2) / 3 + 1.5 * noise;
  const double tol = opts.safety * fd_err + opts.rel_slack * std::fabs(n);
  double err = std::fabs(a - n);
  GradcheckRow& row = acc.row;
  if (!(err <= tol)) row.ok = false;  // NaN fails too
  if (std::isnan(err)) err = INFINITY;
  const double ratio = err == 0 ? 0.0 : tol > 0 ? err / tol : INFINITY;  // NaN tolerance: infinity too
  row.max_abs_err = std::max(row.max_abs_err, err);
  row.max_ratio = std::max(row.max_ratio, ratio);
  if (std::isfinite(n)) acc.scale = std::max(acc.scale, std::fabs(n));
  row.compared += 1;
}

GradcheckRow finish(const RowAcc& acc) {
  GradcheckRow row = acc.row;
  row.max_rel_err = row.max_abs_err == 0 ? 0.0 : acc.scale > 0 ? row.max_abs_err / acc.scale : INFINITY;
  return row;
}

}  // namespace

std::vector<GradcheckRow> gradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs_in,
                                    const std::vector<std::string>& names, const GradcheckOptions& opts) {
  MOM_CHECK(names.size() == inputs_in.size(), "gradcheck", inputs_in.size() << " inputs but " << names.size() << " names");
  MOM_CHECK(opts.eps > 0 && opts.safety > 0 && opts.rel_slack >= 0 && opts.roundoff_ulps >= 0, "gradcheck",
            "needs eps > 0, safety > 0, rel_slack >= 0 and roundoff_ulps >= 0");
  std::vector<Tensor> inputs;
  std::vector<Checked> checked;
  for (size_t i = 0; i < inputs_in.size(); ++i) {
    const Tensor& t = inputs_in[i];
    if (t.defined() && is_floating(t.dtype())) {
      MOM_CHECK(t.dtype() == DType::f64 && t.device().is_cpu(), "gradcheck",
                "input '" << names[i] << "' must be float64 on the CPU, got " << dtype_name(t.dtype()) << " on "
                          << t.device().str());
      // A leaf that already requires grad (a module's parameter) is checked in place, so that a
      // function closing over it sees the perturbations; anything else is copied into a new leaf.
      bool in_place = t.is_leaf() && t.requires_grad() && t.is_contiguous();
      Tensor leaf = in_place ? t : t.detach().clone();
      if (!in_place) leaf.set_requires_grad(true);
      inputs.push_back(leaf);
      checked.push_back({i, leaf});
    } else {
      inputs.push_back(t);
    }
  }
  std::vector<Tensor> outs0 = eval(fn, inputs);
  std::vector<int64_t> out_sizes;
  std::vector<double> out_scale;  // max |out| per output: the magnitude its round-off is relative to
  int64_t total_out = 0;
  for (const Tensor& o : outs0) {
    out_sizes.push_back(o.defined() ? o.numel() : 0);
    double m = 0;
    if (o.defined())
      for (double v : o.to_vector<double>()) m = std::max(m, std::fabs(v));
    out_scale.push_back(m);
    total_out += out_sizes.back();
  }
  int64_t max_in = 0;
  for (const Checked& c : checked) max_in = std::max(max_in, c.leaf.numel());

  std::vector<RowAcc> rows;
  for (const Checked& c : checked) rows.push_back({GradcheckRow{names[c.index]}});
  auto finished = [&] {
    std::vector<GradcheckRow> result;
    for (const RowAcc& r : rows) result.push_back(finish(r));
    return result;
  };
  Generator gen(opts.seed * 7919 + 17);
  const double h = opts.eps, ulps = opts.roundoff_ulps * kUnitRoundoff;

  auto zero_weights = [&] {
    std::vector<std::vector<double>> w;
    for (int64_t n : out_sizes) w.emplace_back(n, 0.0);
    return w;
  };

  if (total_out <= opts.full_jacobian_max && max_in <= opts.full_jacobian_max) {
    // Full Jacobian: row k (output element) analytic by backward, column j numeric by perturbation.
    std::vector<std::vector<std::vector<double>>> jac_a;  // [out element][checked input][elem]
    for (size_t o = 0; o < out_sizes.size(); ++o)
      for (int64_t k = 0; k < out_sizes[o]; ++k) {
        auto w = zero_weights();
        w[o][k] = 1.0;
        jac_a.push_back(analytic(fn, inputs, checked, w));
      }
    for (size_t ci = 0; ci < checked.size(); ++ci) {
      Tensor& leaf = checked[ci].leaf;
      double* x = leaf.data<double>();
      for (int64_t j = 0; j < leaf.numel(); ++j) {
        // Column j of the Jacobian: two pairs of forwards (steps h and 2h) give every output's
        // derivative. Each difference is divided by the realized step x+ - x-, so the rounding of
        // x +- h costs nothing.
        const double saved = x[j];
        std::vector<Tensor> plus[2], minus[2];
        double step[2];
        for (int s = 0; s < 2; ++s) {
          const double hs = h * (s + 1);
          const double xp = saved + hs, xm = saved - hs;
          x[j] = xp;
          plus[s] = eval(fn, inputs);
          x[j] = xm;
          minus[s] = eval(fn, inputs);
          step[s] = xp - xm;
        }
        x[j] = saved;
        size_t row_k = 0;
        for (size_t o = 0; o < out_sizes.size(); ++o) {
          if (out_sizes[o] == 0) continue;
          std::vector<double> p1 = plus[0][o].to_vector<double>(), m1 = minus[0][o].to_vector<double>();
          std::vector<double> p2 = plus[1][o].to_vector<double>(), m2 = minus[1][o].to_vector<double>();
          const double noise = ulps * out_scale[o] / h;
          for (int64_t k = 0; k < out_sizes[o]; ++k, ++row_k) {
            const double a = jac_a[row_k][ci][j];
            compare(rows[ci], a, a, (p1[k] - m1[k]) / step[0], (p2[k] - m2[k]) / step[1], noise, opts);
          }
        }
      }
    }
    return finished();
  }

  for (int p = 0; p < opts.projections; ++p) {
    auto w = zero_weights();
    double w_scale = 0;  // sum |w| max |out|: the magnitude of sum(w * out) that round-off is relative to
    for (size_t o = 0; o < w.size(); ++o)
      for (double& x : w[o]) {
        x = gen.normal();
        w_scale += std::fabs(x) * out_scale[o];
      }
    const double noise = ulps * w_scale / h;
    std::vector<std::vector<double>> ga = analytic(fn, inputs, checked, w);
    for (size_t ci = 0; ci < checked.size(); ++ci) {
      Tensor& leaf = checked[ci].leaf;
      const int64_t n = leaf.numel();
      double* x = leaf.data<double>();
      const std::vector<double> saved(x, x + n);
      for (int d = 0; d < 2 * opts.directions; ++d) {
        std::vector<double> v(n, 0.0);
        if (d % 2 == 0) {
          for (double& e : v) e = gen.normal();
        } else {
          v[gen.randint(static_cast<uint64_t>(n))] = 1.0;
        }
        // d/dt sum(w * fn(x + t v)) at t = 0 by central differences with steps h and 2h, and the
        // analytic derivative along the realized displacements (x + t v rounded) of each.
        double num[2], ana[2];
        for (int s = 0; s < 2; ++s) {
          const double hs = h * (s + 1);
          std::vector<double> xp(n), xm(n);
          for (int64_t i = 0; i < n; ++i) {
            xp[i] = saved[i] + hs * v[i];
            xm[i] = saved[i] - hs * v[i];
          }
          std::copy(xp.begin(), xp.end(), x);
          const double fp = weighted_sum(eval(fn, inputs), w);
          std::copy(xm.begin(), xm.end(), x);
          const double fm = weighted_sum(eval(fn, inputs), w);
          double a = 0;
          for (int64_t i = 0; i < n; ++i) a += ga[ci][i] * (xp[i] - xm[i]);
          num[s] = (fp - fm) / (2 * hs);
          ana[s] = a / (2 * hs);
        }
        std::copy(saved.begin(), saved.end(), x);
        compare(rows[ci], ana[0], ana[1], num[0], num[1], noise, opts);
      }
    }
  }
  return finished();
}

namespace {

// A leaf that fn closes over, moved in place for a run on another device or dtype and put back by the
// destructor (also when the run throws).
class InPlaceMove {
 public:
  InPlaceMove(const Tensor& t, Device device, DType dtype) : t_(t) {
    TensorImpl* impl = t.impl();
    storage_ = impl->storage;
    strides_ = impl->strides;
    offset_ = impl->offset;
    dtype_ = impl->dtype;
    Tensor moved = t.detach().to(dtype).to(device).clone();
    impl->storage = moved.storage();
    impl->strides = moved.strides();
    impl->offset = moved.offset();
    impl->dtype = dtype;
    impl->grad = nullptr;
  }
  ~InPlaceMove() {
    TensorImpl* impl = t_.impl();
    impl->storage = storage_;
    impl->strides = strides_;
    impl->offset = offset_;
    impl->dtype = dtype_;
    impl->grad = nullptr;
  }
  InPlaceMove(const InPlaceMove&) = delete;
  InPlaceMove& operator=(const InPlaceMove&) = delete;

 private:
  Tensor t_;
  std::shared_ptr<Storage> storage_;
  Shape strides_;
  int64_t offset_ = 0;
  DType dtype_ = DType::f64;
};

struct DeviceRun {
  std::vector<Tensor> outs;   // CPU float64 copies (undefined where fn returned none)
  std::vector<Tensor> grads;  // per floating input, CPU float64; undefined where no gradient arrived
};

// fn on `device` in `dtype`; w: the output weights (drawn here, in float64, when empty).
DeviceRun run_on(const GradcheckFn& fn, const std::vector<Tensor>& inputs_in, Device device, DType dtype,
                 std::vector<Tensor>& w, Generator& gen) {
  std::vector<Tensor> inputs;
  std::vector<Tensor> leaves;  // the floating inputs as fn sees them
  std::vector<std::unique_ptr<InPlaceMove>> moved;
  for (const Tensor& t : inputs_in) {
    if (!t.defined()) {
      inputs.push_back(t);
    } else if (!is_floating(t.dtype())) {
      inputs.push_back(t.to(device));
    } else if (t.is_leaf() && t.requires_grad() && t.is_contiguous()) {
      moved.push_back(std::make_unique<InPlaceMove>(t, device, dtype));
      inputs.push_back(t);
      leaves.push_back(t);
    } else {
      Tensor leaf = t.detach().to(dtype).to(device).clone();
      leaf.set_requires_grad(true);
      inputs.push_back(leaf);
      leaves.push_back(leaf);
    }
  }
  std::vector<Tensor> outs = fn(inputs);
  if (w.empty())
    for (const Tensor& o : outs) w.push_back(o.defined() ? randn(o.shape(), gen, DType::f64) : Tensor());
  std::vector<Tensor> roots, grads;
  for (size_t o = 0; o < outs.size(); ++o) {
    if (!outs[o].defined() || !outs[o].requires_grad()) continue;
    roots.push_back(outs[o]);
    grads.push_back(w[o].to(outs[o].dtype()).to(outs[o].device()));
  }
  if (!roots.empty()) backward(roots, grads);
  DeviceRun run;
  for (const Tensor& o : outs) run.outs.push_back(o.defined() ? o.detach().to(Device::cpu()).to(DType::f64) : Tensor());
  for (const Tensor& l : leaves) {
    Tensor g = l.grad();
    run.grads.push_back(g.defined() ? g.to(Device::cpu()).to(DType::f64) : Tensor());
  }
  return run;  // `moved` puts the closed-over leaves back
}

// One row: x against ref (both CPU float64, or both undefined).
GradcheckRow compare_tensors(const std::string& name, const Tensor& x, const Tensor& ref, double rtol) {
  GradcheckRow row{name};
  if (x.defined() != ref.defined()) {
    row.ok = false;
    row.max_abs_err = row.max_rel_err = INFINITY;
    return row;
  }
  if (!x.defined()) return row;
  std::vector<double> a = x.to_vector<double>(), r = ref.to_vector<double>();
  double scale = 0;
  for (double v : r) scale = std::max(scale, std::fabs(v));
  for (size_t i = 0; i < a.size(); ++i) {
    double err = std::fabs(a[i] - r[i]);
    if (std::isnan(err)) err = INFINITY;
    row.max_abs_err = std::max(row.max_abs_err, err);
  }
  row.max_rel_err = row.max_abs_err / std::max(scale, 1e-30);
  row.compared = static_cast<int64_t>(a.size());
  row.ok = row.max_rel_err <= rtol;
  return row;
}

}  // namespace

std::vector<GradcheckRow> device_check(const GradcheckFn& fn, const std::vector<Tensor>& inputs,
                                       const std::vector<std::string>& names, Device device, DType dtype, double rtol,
                                       uint64_t seed) {
  MOM_CHECK(names.size() == inputs.size(), "gradcheck", inputs.size() << " inputs but " << names.size() << " names");
  MOM_CHECK(is_floating(dtype), "gradcheck", "device_check needs a floating dtype, got " << dtype_name(dtype));
  std::vector<std::string> checked;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& t = inputs[i];
    if (!t.defined() || !is_floating(t.dtype())) continue;
    MOM_CHECK(t.dtype() == DType::f64 && t.device().is_cpu(), "gradcheck",
              "input '" << names[i] << "' must be float64 on the CPU, got " << dtype_name(t.dtype()) << " on "
                        << t.device().str());
    checked.push_back(names[i]);
  }
  Generator gen(seed * 7919 + 29);
  std::vector<Tensor> w;
  DeviceRun ref = run_on(fn, inputs, Device::cpu(), DType::f64, w, gen);
  DeviceRun run = run_on(fn, inputs, device, dtype, w, gen);
  std::vector<GradcheckRow> rows;
  for (size_t o = 0; o < ref.outs.size(); ++o)
    rows.push_back(compare_tensors("out " + std::to_string(o), o < run.outs.size() ? run.outs[o] : Tensor(), ref.outs[o], rtol));
  for (size_t i = 0; i < checked.size(); ++i) rows.push_back(compare_tensors(checked[i], run.grads[i], ref.grads[i], rtol));
  return rows;
}

Tensor gradcheck_doc_starts(int64_t B, int64_t L) {
  std::vector<uint8_t> flags(B * L, 0);
  for (int64_t b = 0; b < B; ++b) {
    uint8_t* row = flags.data() + b * L;
    if (b % 3 == 0) {
      for (int64_t t : {int64_t(0), int64_t(1), int64_t(4), int64_t(5), L - 1})
        if (t < L) row[t] = 1;
    } else if (b % 3 == 2 && L >= 2) {
      row[L / 2] = 1;
    }
  }
  return from_vector<uint8_t>(flags, {B, L}).to(DType::boolean);
}

GradcheckRegistry& GradcheckRegistry::instance() {
  static GradcheckRegistry registry;
  return registry;
}

void GradcheckRegistry::add_cases(const std::vector<GradcheckCase>& cases) {
  cases_.insert(cases_.end(), cases.begin(), cases.end());
}

const std::vector<GradcheckCase>& GradcheckRegistry::cases() {
  if (!builtin_added_) {
    builtin_added_ = true;
    std::vector<GradcheckCase> builtin;
    add_elementwise_gradcheck_cases(builtin);
    add_reduce_shape_gradcheck_cases(builtin);
    add_nn_ops_gradcheck_cases(builtin);
    add_selective_scan_gradcheck_cases(builtin);
    add_causal_conv1d_gradcheck_cases(builtin);
    add_masked_linear_gradcheck_cases(builtin);
    cases_.insert(cases_.begin(), builtin.begin(), builtin.end());
  }
  return cases_;
}

std::vector<std::string> GradcheckRegistry::ops() {
  std::vector<std::string> names;
  for (const GradcheckCase& c : cases())
    if (std::find(names.begin(), names.end(), c.op) == names.end()) names.push_back(c.op);
  return names;
}

}  // namespace mom::autograd
