// CPU reference for kernels/optimizer.h; CUDA tensors go to kernels/cuda/optimizer.cu after the checks.
#include <cmath>

#include "kernels/elementwise.h"
#include "kernels/optimizer.h"

namespace mom::kernels {

void adamw_step(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v, int64_t step, const AdamWHyper& h) {
  const char* op = "adamw";
  check_floating(p, op, "param");
  for (const auto& [t, name] : {std::pair<const Tensor&, const char*>{g, "grad"}, {m, "exp_avg"}, {v, "exp_avg_sq"}}) {
    check_shape(t, p.shape(), op, name);
    check_same_dtype(t, p, op, name, "param");
    check_same_device(t, p, op, name, "param");
    check_contiguous(t, op, name);
  }
  check_contiguous(p, op, "param");
  MOM_CHECK(step >= 1, op, "step counts from 1, got " << step);
  p.bump_version();
  m.bump_version();
  v.bump_version();
#ifdef MOM_WITH_CUDA
  if (p.device().is_cuda()) return cuda::adamw_step(p, g, m, v, step, h);
#endif
  check_cpu(p, op, "param");
  double bias1 = 1.0 - std::pow(h.beta1, static_cast<double>(step));
  double bias2 = 1.0 - std::pow(h.beta2, static_cast<double>(step));
  double step_size = h.lr / bias1;
  double bias2_sqrt = std::sqrt(bias2);
  double decay = 1.0 - h.lr * h.weight_decay;
  dispatch_float(p.dtype(), op, [&](auto tag) {
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

double sum_of_squares(const Tensor& g) {
  check_floating(g, "clip_grad_norm", "grad");
  check_contiguous(g, "clip_grad_norm", "grad");
#ifdef MOM_WITH_CUDA
  if (g.device().is_cuda()) return cuda::sum_of_squares(g);
#endif
  check_cpu(g, "clip_grad_norm", "grad");
  return dispatch_float(g.dtype(), "clip_grad_norm", [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    const scalar_t* gp = g.data<scalar_t>();
    double s = 0;
    for (int64_t i = 0; i < g.numel(); ++i) s += static_cast<double>(gp[i]) * gp[i];
    return s;
  });
}

void scale_inplace(const Tensor& g, double s) {
  check_floating(g, "clip_grad_norm", "grad");
  check_contiguous(g, "clip_grad_norm", "grad");
  g.bump_version();
#ifdef MOM_WITH_CUDA
  if (g.device().is_cuda()) return cuda::scale_inplace(g, s);
#endif
  check_cpu(g, "clip_grad_norm", "grad");
  dispatch_float(g.dtype(), "clip_grad_norm", [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    scalar_t* gp = g.data<scalar_t>();
    int64_t n = g.numel();
#pragma omp parallel for schedule(static) if (n > 32768)
    for (int64_t i = 0; i < n; ++i) gp[i] = static_cast<scalar_t>(gp[i] * s);
  });
}

}  // namespace mom::kernels
