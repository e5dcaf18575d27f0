// CPU reference for kernels/cross_entropy.h; the argument checks shared with the CUDA version
// (kernels/cuda/cross_entropy.cu), which CUDA tensors go to after them. Target and weight values are
// checked where they are read: here for the CPU, on the device for CUDA (same messages).
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cross_entropy.h"
#include "kernels/elementwise.h"

namespace mom::kernels {

namespace {

constexpr const char* kOp = "cross_entropy";

// The validated per-token targets and weights (w_t = 0 for ignored tokens) and W = sum_t w_t.
struct Tokens {
  std::vector<int64_t> target;
  std::vector<double> w;
  double total = 0;
};

// Shapes, dtypes, layouts and devices of logits, targets and weight.
void check_args(const Tensor& logits, const Tensor& targets, const Tensor& weight) {
  check_compute(logits, kOp, "logits");
  MOM_CHECK(logits.dim() == 2, kOp, "logits must have 2 dimensions (T, V), got shape " << shape_str(logits.shape()));
  check_contiguous(logits, kOp, "logits");
  const int64_t T = logits.size(0), V = logits.size(1);
  MOM_CHECK(V >= 1, kOp, "logits has 0 classes");
  check_defined(targets, kOp, "targets");
  MOM_CHECK(targets.dtype() == DType::i32 || targets.dtype() == DType::i64, kOp,
            "targets must be int32 or int64, got " << dtype_name(targets.dtype()));
  check_shape(targets, {T}, kOp, "targets");
  check_contiguous(targets, kOp, "targets");
  check_same_device(targets, logits, kOp, "targets", "logits");
  if (weight.defined()) {
    check_acc_dtype(weight, logits, kOp, "weight", "logits");
    check_shape(weight, {T}, kOp, "weight");
    check_contiguous(weight, kOp, "weight");
    check_same_device(weight, logits, kOp, "weight", "logits");
  }
}

// The values, read on the CPU: targets in [0, V) or ignore_index, weights >= 0.
Tokens read_tokens(const Tensor& logits, const Tensor& targets, int64_t ignore_index, const Tensor& weight) {
  check_cpu(logits, kOp, "logits");
  const int64_t T = logits.size(0), V = logits.size(1);
  Tokens tok;
  tok.target = targets.to_vector<int64_t>();
  tok.w.assign(T, 1.0);
  if (weight.defined()) tok.w = weight.to_vector<double>();
  for (int64_t t = 0; t < T; ++t) {
    int64_t c = tok.target[t];
    if (c == ignore_index) {
      tok.w[t] = 0;
      continue;
    }
    MOM_CHECK(c >= 0 && c < V, kOp, "target " << c << " at position " << t << " is out of range for " << V << " classes");
    MOM_CHECK(tok.w[t] >= 0, kOp, "weight " << tok.w[t] << " at position " << t << " must be >= 0");
    tok.total += tok.w[t];
  }
  return tok;
}

}  // namespace

CrossEntropyForward cross_entropy_forward(const Tensor& logits, const Tensor& targets, int64_t ignore_index,
                                          const Tensor& weight) {
  check_args(logits, targets, weight);
#ifdef MOM_WITH_CUDA
  if (logits.device().is_cuda()) return cuda::cross_entropy_forward(logits, targets, ignore_index, weight);
#endif
  // bf16 logits on the CPU (the reference of the CUDA kernels): the float32 op on the widened logits;
  // loss and lse are float32.
  if (logits.dtype() == DType::bf16) return cross_entropy_forward(widen_bf16(logits), targets, ignore_index, weight);
  Tokens tok = read_tokens(logits, targets, ignore_index, weight);
  const int64_t T = logits.size(0), V = logits.size(1);
  CrossEntropyForward out{empty({}, logits.dtype()), empty({T}, logits.dtype())};
  std::vector<double> nll(T, 0.0);
  dispatch_float(logits.dtype(), kOp, [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    const scalar_t* xp = logits.data<scalar_t>();
    scalar_t* lp = out.lse.data<scalar_t>();
#pragma omp parallel for schedule(static) if (T * V > 32768)
    for (int64_t t = 0; t < T; ++t) {
      const scalar_t* row = xp + t * V;
      double m = -std::numeric_limits<double>::infinity();
      for (int64_t v = 0; v < V; ++v) m = std::max(m, static_cast<double>(row[v]));
      double s = 0;
      for (int64_t v = 0; v < V; ++v) s += std::exp(static_cast<double>(row[v]) - m);
      double lse = m + std::log(s);
      lp[t] = static_cast<scalar_t>(lse);
      if (tok.w[t] != 0) nll[t] = lse - static_cast<double>(row[tok.target[t]]);
    }
    double acc = 0;
    for (int64_t t = 0; t < T; ++t) acc += tok.w[t] * nll[t];
    out.loss.data<scalar_t>()[0] = static_cast<scalar_t>(tok.total > 0 ? acc / tok.total : 0.0);
  });
  return out;
}

Tensor cross_entropy_backward(const Tensor& dloss, const Tensor& logits, const Tensor& targets, const Tensor& lse,
                              int64_t ignore_index, const Tensor& weight) {
  check_args(logits, targets, weight);
  const int64_t T = logits.size(0), V = logits.size(1);
  check_shape(dloss, {}, kOp, "dloss");
  check_acc_dtype(dloss, logits, kOp, "dloss", "logits");
  check_same_device(dloss, logits, kOp, "dloss", "logits");
  check_shape(lse, {T}, kOp, "lse");
  check_contiguous(lse, kOp, "lse");
  check_acc_dtype(lse, logits, kOp, "lse", "logits");
  check_same_device(lse, logits, kOp, "lse", "logits");
#ifdef MOM_WITH_CUDA
  if (logits.device().is_cuda()) return cuda::cross_entropy_backward(dloss, logits, targets, lse, ignore_index, weight);
#endif
  // bf16 logits on the CPU: the float32 op on the widened logits, dlogits rounded once.
  if (logits.dtype() == DType::bf16)
    return cross_entropy_backward(dloss, widen_bf16(logits), targets, lse, ignore_index, weight).to(DType::bf16);
  Tokens tok = read_tokens(logits, targets, ignore_index, weight);
  Tensor dlogits = empty_like(logits);
  dispatch_float(logits.dtype(), kOp, [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    const scalar_t* xp = logits.data<scalar_t>();
    const scalar_t* lp = lse.data<scalar_t>();
    scalar_t* dp = dlogits.data<scalar_t>();
    const double g = tok.total > 0 ? static_cast<double>(dloss.item()) / tok.total : 0.0;
#pragma omp parallel for schedule(static) if (T * V > 32768)
    for (int64_t t = 0; t < T; ++t) {
      const scalar_t* row = xp + t * V;
      scalar_t* drow = dp + t * V;
      const double c = g * tok.w[t];
      if (c == 0) {
        std::fill(drow, drow + V, scalar_t(0));
        continue;
      }
      const double l = static_cast<double>(lp[t]);
      for (int64_t v = 0; v < V; ++v) drow[v] = static_cast<scalar_t>(c * std::exp(static_cast<double>(row[v]) - l));
      drow[tok.target[t]] = static_cast<scalar_t>(c * (std::exp(static_cast<double>(row[tok.target[t]]) - l) - 1.0));
    }
  });
  return dlogits;
}

}  // namespace mom::kernels
