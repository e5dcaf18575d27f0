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

// Outputs are copied: an op that returns a view of an input would otherwise change under the next
// perturbation.
std::vector<Tensor> eval(const GradcheckFn& fn, const std::vector<Tensor>& inputs) {
  NoGradGuard guard;
  std::vector<Tensor> outs = fn(inputs);
  for (Tensor& t : outs)
    if (t.defined()) t = t.clone();
  return outs;
}

double weighted_sum(const std::vector<Tensor>& outs, const std::vector<std::vector<double>>& w) {
  double s = 0;
  for (size_t o = 0; o < outs.size(); ++o) {
    if (!outs[o].defined()) continue;
    std::vector<double> v = outs[o].to_vector<double>();
    for (size_t i = 0; i < v.size(); ++i) s += w[o][i] * v[i];
  }
  return s;
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

// d/dt sum(w * fn(x + t v)) at t = 0 by central differences.
double directional(const GradcheckFn& fn, const std::vector<Tensor>& inputs, Tensor& leaf,
                   const std::vector<double>& v, const std::vector<std::vector<double>>& w, double eps) {
  double* p = leaf.data<double>();
  std::vector<double> saved(p, p + leaf.numel());
  for (size_t i = 0; i < v.size(); ++i) p[i] = saved[i] + eps * v[i];
  double plus = weighted_sum(eval(fn, inputs), w);
  for (size_t i = 0; i < v.size(); ++i) p[i] = saved[i] - eps * v[i];
  double minus = weighted_sum(eval(fn, inputs), w);
  std::copy(saved.begin(), saved.end(), p);
  return (plus - minus) / (2 * eps);
}

void compare(GradcheckRow& row, double a, double n, const GradcheckOptions& opts) {
  double err = std::fabs(a - n);
  if (!(err <= opts.atol + opts.rtol * std::fabs(n))) row.ok = false;  // NaN fails too
  if (std::isnan(err)) err = INFINITY;
  row.max_abs_err = std::max(row.max_abs_err, err);
  row.max_rel_err = std::max(row.max_rel_err, err / std::max({std::fabs(a), std::fabs(n), 1e-3}));
  row.compared += 1;
}

}  // namespace

std::vector<GradcheckRow> gradcheck(const GradcheckFn& fn, const std::vector<Tensor>& inputs_in,
                                    const std::vector<std::string>& names, const GradcheckOptions& opts) {
  MOM_CHECK(names.size() == inputs_in.size(), "gradcheck", inputs_in.size() << " inputs but " << names.size() << " names");
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
  int64_t total_out = 0;
  for (const Tensor& o : outs0) {
    out_sizes.push_back(o.defined() ? o.numel() : 0);
    total_out += out_sizes.back();
  }
  int64_t max_in = 0;
  for (const Checked& c : checked) max_in = std::max(max_in, c.leaf.numel());

  std::vector<GradcheckRow> rows;
  for (const Checked& c : checked) rows.push_back({names[c.index]});
  Generator gen(opts.seed * 7919 + 17);

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
        // Column j of the Jacobian: one pair of forwards gives every output's derivative.
        double saved = x[j];
        x[j] = saved + opts.eps;
        std::vector<Tensor> plus = eval(fn, inputs);
        x[j] = saved - opts.eps;
        std::vector<Tensor> minus = eval(fn, inputs);
        x[j] = saved;
        size_t row_k = 0;
        for (size_t o = 0; o < out_sizes.size(); ++o) {
          if (out_sizes[o] == 0) continue;
          std::vector<double> p = plus[o].to_vector<double>(), m = minus[o].to_vector<double>();
          for (int64_t k = 0; k < out_sizes[o]; ++k, ++row_k)
            compare(rows[ci], jac_a[row_k][ci][j], (p[k] - m[k]) / (2 * opts.eps), opts);
        }
      }
    }
    return rows;
  }

  for (int p = 0; p < opts.projections; ++p) {
    auto w = zero_weights();
    for (auto& wo : w)
      for (double& x : wo) x = gen.normal();
    std::vector<std::vector<double>> ga = analytic(fn, inputs, checked, w);
    for (size_t ci = 0; ci < checked.size(); ++ci) {
      Tensor& leaf = checked[ci].leaf;
      int64_t n = leaf.numel();
      for (int d = 0; d < 2 * opts.directions; ++d) {
        std::vector<double> v(n, 0.0);
        if (d % 2 == 0) {
          for (double& x : v) x = gen.normal();
        } else {
          v[gen.randint(static_cast<uint64_t>(n))] = 1.0;
        }
        double a = 0;
        for (int64_t i = 0; i < n; ++i) a += ga[ci][i] * v[i];
        compare(rows[ci], a, directional(fn, inputs, leaf, v, w, opts.eps), opts);
      }
    }
  }
  return rows;
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
