// CPU reference for kernels/optimizer.h; CUDA tensors go to kernels/cuda/optimizer.cu after the checks.
#include <cmath>
#include <string>

#include "kernels/elementwise.h"
#include "kernels/optimizer.h"

namespace mom::kernels {

namespace {

constexpr const char* kAdamW = "adamw";
constexpr const char* kClip = "clip_grad_norm";

// `which` names the parameter in a list ("" for the single-tensor call).
void check_adamw(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v, int64_t step,
                 const std::string& which) {
  const std::string param = "param" + which, grad = "grad" + which, exp_avg = "exp_avg" + which,
                    exp_avg_sq = "exp_avg_sq" + which;
  check_floating(p, kAdamW, param.c_str());
  for (const auto& [t, name] : {std::pair<const Tensor&, const std::string&>{g, grad}, {m, exp_avg}, {v, exp_avg_sq}}) {
    check_shape(t, p.shape(), kAdamW, name.c_str());
    check_same_dtype(t, p, kAdamW, name.c_str(), param.c_str());
    check_same_device(t, p, kAdamW, name.c_str(), param.c_str());
    check_contiguous(t, kAdamW, name.c_str());
  }
  check_contiguous(p, kAdamW, param.c_str());
  MOM_CHECK(step >= 1, kAdamW, "step counts from 1, got " << step << which);
}

void check_grad(const Tensor& g, const std::string& name) {
  check_floating(g, kClip, name.c_str());
  check_contiguous(g, kClip, name.c_str());
}

// The gradients of a list: floating, contiguous, all on the device of the first.
void check_grad_list(const std::vector<Tensor>& gs) {
  for (size_t i = 0; i < gs.size(); ++i) {
    const std::string name = "grad " + std::to_string(i);
    check_grad(gs[i], name);
    check_same_device(gs[i], gs[0], kClip, name.c_str(), "grad 0");
  }
}

void adamw_cpu(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v, int64_t step, const AdamWHyper& h) {
  check_cpu(p, kAdamW, "param");
  double bias1 = 1.0 - std::pow(h.beta1, static_cast<double>(step));
  double bias2 = 1.0 - std::pow(h.beta2, static_cast<double>(step));
  double step_size = h.lr / bias1;
  double bias2_sqrt = std::sqrt(bias2);
  double decay = 1.0 - h.lr * h.weight_decay;
  dispatch_float(p.dtype(), kAdamW, [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    scalar_t* pp = p.data<scalar_t>();
    const scalar_t* gp = g.data<scalar_t>();
    scalar_t* mp = m.data<scalar_t>();
    scalar_t* vp = v.data<scalar_t>();
    int64_t n = p.numel();
#pragma omp parallel for schedule(static) if (n > 32768)
    for (int64_t i = 0; i < n; ++i) {
      double gi = gp[i];
      double mi = h.beta1 * mp[i] + (1.0 - h.beta1) * gi;
      double vi = h.beta2 * vp[i] + (1.0 - h.beta2) * gi * gi;
      double pi = pp[i] * decay;
      pi -= step_size * mi / (std::sqrt(vi) / bias2_sqrt + h.eps);
      mp[i] = static_cast<scalar_t>(mi);
      vp[i] = static_cast<scalar_t>(vi);
      pp[i] = static_cast<scalar_t>(pi);
    }
  });
}

double sum_of_squares_cpu(const Tensor& g) {
  check_cpu(g, kClip, "grad");
  return dispatch_float(g.dtype(), kClip, [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    const scalar_t* gp = g.data<scalar_t>();
    double s = 0;
    for (int64_t i = 0; i < g.numel(); ++i) s += static_cast<double>(gp[i]) * gp[i];
    return s;
  });
}

void scale_cpu(const Tensor& g, double s) {
  check_cpu(g, kClip, "grad");
  dispatch_float(g.dtype(), kClip, [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    scalar_t* gp = g.data<scalar_t>();
    int64_t n = g.numel();
#pragma omp parallel for schedule(static) if (n > 32768)
    for (int64_t i = 0; i < n; ++i) gp[i] = static_cast<scalar_t>(gp[i] * s);
  });
}

}  // namespace

void adamw_step(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v, int64_t step, const AdamWHyper& h) {
  check_adamw(p, g, m, v, step, "");
  p.bump_version();
  m.bump_version();
  v.bump_version();
#ifdef MOM_WITH_CUDA
  if (p.device().is_cuda()) return cuda::adamw_step(p, g, m, v, step, h);
#endif
  adamw_cpu(p, g, m, v, step, h);
}

void adamw_step_multi(const std::vector<Tensor>& p, const std::vector<Tensor>& g, const std::vector<Tensor>& m,
                      const std::vector<Tensor>& v, const std::vector<int64_t>& steps, const AdamWHyper& h) {
  MOM_CHECK(g.size() == p.size() && m.size() == p.size() && v.size() == p.size() && steps.size() == p.size(), kAdamW,
            "lists of different lengths: " << p.size() << " params, " << g.size() << " grads, " << m.size()
                                           << " exp_avg, " << v.size() << " exp_avg_sq, " << steps.size() << " steps");
  if (p.empty()) return;
  for (size_t i = 0; i < p.size(); ++i) {
    const std::string which = " " + std::to_string(i);
    check_adamw(p[i], g[i], m[i], v[i], steps[i], which);
    check_same_device(p[i], p[0], kAdamW, ("param" + which).c_str(), "param 0");
  }
  for (size_t i = 0; i < p.size(); ++i) {
    p[i].bump_version();
    m[i].bump_version();
    v[i].bump_version();
  }
#ifdef MOM_WITH_CUDA
  if (p[0].device().is_cuda()) return cuda::adamw_step_multi(p, g, m, v, steps, h);
#endif
  for (size_t i = 0; i < p.size(); ++i) adamw_cpu(p[i], g[i], m[i], v[i], steps[i], h);
}

double sum_of_squares(const Tensor& g) {
  check_grad(g, "grad");
#ifdef MOM_WITH_CUDA
  if (g.device().is_cuda()) return cuda::sum_of_squares(g);
#endif
  return sum_of_squares_cpu(g);
}

void scale_inplace(const Tensor& g, double s) {
  check_grad(g, "grad");
  g.bump_version();
#ifdef MOM_WITH_CUDA
  if (g.device().is_cuda()) return cuda::scale_inplace(g, s);
#endif
  scale_cpu(g, s);
}

Tensor sum_of_squares_multi(const std::vector<Tensor>& gs) {
  check_grad_list(gs);
  if (gs.empty()) return zeros({}, DType::f64);
#ifdef MOM_WITH_CUDA
  if (gs[0].device().is_cuda()) return cuda::sum_of_squares_multi(gs);
#endif
  double total = 0;
  for (const Tensor& g : gs) total += sum_of_squares_cpu(g);
  return full({}, total, DType::f64);
}

void clip_by_total_norm(const std::vector<Tensor>& gs, const Tensor& total_sq, double max_norm) {
  check_grad_list(gs);
  if (gs.empty()) return;
  check_defined(total_sq, kClip, "total_sq");
  MOM_CHECK(total_sq.numel() == 1 && total_sq.dtype() == DType::f64, kClip,
            "total_sq must be one float64, got " << shape_str(total_sq.shape()) << " " << dtype_name(total_sq.dtype()));
  check_same_device(total_sq, gs[0], kClip, "total_sq", "grad 0");
  for (const Tensor& g : gs) g.bump_version();
#ifdef MOM_WITH_CUDA
  if (gs[0].device().is_cuda()) return cuda::clip_by_total_norm(gs, total_sq.contiguous(), max_norm);
#endif
  double norm = std::sqrt(total_sq.item());
  if (!(norm > max_norm)) return;
  double coef = max_norm / (norm + 1e-6);
  for (const Tensor& g : gs) scale_cpu(g, coef);
}

}  // namespace mom::kernels
