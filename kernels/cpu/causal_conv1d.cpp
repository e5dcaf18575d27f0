// CPU reference for kernels/causal_conv1d.h, the argument checks, and the dispatch of CUDA tensors to
// kernels/cuda/causal_conv1d.cu.
#include "kernels/causal_conv1d.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/elementwise.h"

namespace mom::kernels {

namespace {

constexpr const char* kOp = "causal_conv1d";

struct ConvDims {
  int64_t B, L, E, W;
};

// A sequence tensor of x's dtype, or (acc) a parameter of its accumulation dtype: float32 beside bf16.
void check_input(const Tensor& t, const Tensor& x, const char* name, bool acc = false) {
  check_compute(t, kOp, name);
  if (acc)
    check_acc_dtype(t, x, kOp, name, "x");
  else
    check_same_dtype(t, x, kOp, name, "x");
  check_contiguous(t, kOp, name);
  check_same_device(t, x, kOp, name, "x");
}

ConvDims check_conv_inputs(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& initial_window) {
  check_compute(x, kOp, "x");
  MOM_CHECK(x.dim() == 3, kOp, "x must be (B, L, E), got shape " << shape_str(x.shape()));
  ConvDims d{x.size(0), x.size(1), x.size(2), 0};
  MOM_CHECK(d.L >= 1, kOp, "x has length L = 0; each row needs at least one step");
  check_contiguous(x, kOp, "x");
  check_input(weight, x, "weight", /*acc=*/true);
  MOM_CHECK(weight.dim() == 2, kOp, "weight must be (E, W), got shape " << shape_str(weight.shape()));
  MOM_CHECK(weight.size(0) == d.E, kOp, "weight has " << weight.size(0) << " channels, x has E = " << d.E);
  d.W = weight.size(1);
  MOM_CHECK(d.W >= 2 && d.W <= 8, kOp, "conv width W = " << d.W << " is outside [2, 8]");
  if (bias.defined()) {
    check_input(bias, x, "bias", /*acc=*/true);
    check_shape(bias, {d.E}, kOp, "bias");
  }
  if (initial_window.defined()) {
    check_input(initial_window, x, "initial_window");
    check_shape(initial_window, {d.B, d.W - 1, d.E}, kOp, "initial_window");
  }
  return d;
}

// doc_start, when there is one: bool flags in token order, one per (b, t), on x's device.
void check_doc_start(const Tensor& doc_start, const Tensor& x, const ConvDims& d) {
  if (!doc_start.defined()) return;
  MOM_CHECK(doc_start.dtype() == DType::boolean, kOp, "doc_start must be bool, got " << dtype_name(doc_start.dtype()));
  check_shape(doc_start, {d.B, d.L}, kOp, "doc_start");
  check_contiguous(doc_start, kOp, "doc_start");
  check_same_device(doc_start, x, kOp, "doc_start", "x");
}

// The grouped row order, when there is one: inverse (B*L) int64 on x's device, one index per token.
// Its values are trusted (Routing::from_modalities built and checked the permutation).
void check_order(const Routing* order, const Tensor& x, const ConvDims& d) {
  if (!order) return;
  const Tensor& inv = order->inverse;
  MOM_CHECK(inv.defined() && inv.dtype() == DType::i64 && inv.is_contiguous() && inv.dim() == 1 &&
                inv.numel() == order->num_tokens(),
            kOp, "the routing is empty or inconsistent; build it with Routing::from_modalities");
  MOM_CHECK(order->num_tokens() == d.B * d.L, kOp,
            "the routing has " << order->num_tokens() << " tokens, x has B*L = " << d.B * d.L);
  MOM_CHECK(inv.device() == x.device(), kOp,
            "the routing is on " << inv.device().str() << " but x is on " << x.device().str());
}

template <typename T> T sigmoid(T v) { return T(1) / (T(1) + std::exp(-v)); }

// The inputs of one call, with the row arithmetic of the extended sequence xe in one place.
template <typename T> struct ConvData {
  ConvDims d;
  const T* x;     // (B, L, E), token (b, t) at row at(b*L + t)
  const T* init;  // (B, W-1, E) or null
  const T* bias;  // (E) or null
  const bool* starts;   // (B, L) doc_start in token order, or null (no document boundaries)
  const int64_t* rows;  // (B*L) the grouped row of each token, or null for the plain layout
  std::vector<T> wt;  // weight transposed to (W, E), so the inner loops over e are contiguous

  ConvData(const ConvDims& dims, const Tensor& xt, const Tensor& weight, const Tensor& b, const Tensor& iw,
           const Tensor& doc_start, const Routing* order)
      : d(dims), x(xt.data<T>()), init(iw.defined() ? iw.data<T>() : nullptr),
        bias(b.defined() ? b.data<T>() : nullptr), starts(doc_start.defined() ? doc_start.data<bool>() : nullptr),
        rows(order ? order->inverse.data<int64_t>() : nullptr), wt(dims.W * dims.E) {
    const T* w = weight.data<T>();
    for (int64_t e = 0; e < d.E; ++e)
      for (int64_t k = 0; k < d.W; ++k) wt[k * d.E + e] = w[e * d.W + k];
  }

  // The storage row of token bt = b*L + t in x, y, dy, dx (and the backward's dpre).
  int64_t at(int64_t bt) const { return rows ? rows[bt] : bt; }

  // Row s of batch row b of xe, s in [-(W-1), L): E values, or null where xe is zero.
  const T* row(int64_t b, int64_t s) const {
    if (s >= 0) return x + at(b * d.L + s) * d.E;
    return init ? init + (b * (d.W - 1) + s + d.W - 1) * d.E : nullptr;
  }

  // The first tap k that output t reads: the taps at positions before the start of t's document (a
  // start s in (t - (W-1), t], s > 0) read zero and are skipped. At most W-1 flags per output.
  int64_t first_tap(int64_t b, int64_t t) const {
    if (!starts) return 0;
    const bool* row_starts = starts + b * d.L;
    for (int64_t s = t; s > 0 && s > t - (d.W - 1); --s)
      if (row_starts[s]) return s - (t - (d.W - 1));
    return 0;
  }

  // One past the last output that reads position s (s in [-(W-1), L)), capped at `end` <= min(s + W, L):
  // the first start in (max(s, 0), end), where s's document ends, else end. Position s < 0, in the
  // initial window, belongs to the row's first document (doc_start[b, 0] is not a boundary).
  int64_t document_end(int64_t b, int64_t s, int64_t end) const {
    if (!starts) return end;
    const bool* row_starts = starts + b * d.L;
    for (int64_t t = std::max<int64_t>(s, 0) + 1; t < end; ++t)
      if (row_starts[t]) return t;
    return end;
  }

  // pre[b, t, :] = bias + sum_k weight[:, k] * xe[b, t - (W-1) + k, :], summed from the bias, k ascending,
  // over the taps within t's document.
  void pre_row(int64_t b, int64_t t, T* out) const {
    for (int64_t e = 0; e < d.E; ++e) out[e] = bias ? bias[e] : T(0);
    for (int64_t k = first_tap(b, t); k < d.W; ++k) {
      const T* xr = row(b, t - (d.W - 1) + k);
      if (!xr) continue;
      const T* wk = wt.data() + k * d.E;
      for (int64_t e = 0; e < d.E; ++e) out[e] += wk[e] * xr[e];
    }
  }
};

// The last W-1 positions of each row, zero where they precede the row's last document.
template <typename T> void write_final_window(const ConvData<T>& c, T* fw) {
  const ConvDims& d = c.d;
  for (int64_t b = 0; b < d.B; ++b)
    for (int64_t j = 0; j < d.W - 1; ++j) {
      const int64_t s = d.L - (d.W - 1) + j;
      const T* src = c.document_end(b, s, d.L) == d.L ? c.row(b, s) : nullptr;
      T* dst = fw + (b * (d.W - 1) + j) * d.E;
      for (int64_t e = 0; e < d.E; ++e) dst[e] = src ? src[e] : T(0);
    }
}

// dxe for every row s in [-(W-1), L) of every batch row; rows of the initial window only when it exists.
// dpre and dx are stored like x (rows through c.at). Row s takes the terms of the outputs of its own
// document, and dfinal only when that document is the row's last.
template <typename T>
void input_gradients(const ConvData<T>& c, const T* dpre, const T* dfinal, T* dx, T* dinit) {
  const ConvDims& d = c.d;
  const int64_t rows_per_b = d.L + d.W - 1;
  const int64_t n = d.B * rows_per_b;
#pragma omp parallel for schedule(static) if (n * d.E * d.W > 32768)
  for (int64_t r = 0; r < n; ++r) {
    const int64_t b = r / rows_per_b, s = r % rows_per_b - (d.W - 1);
    T* out = s >= 0 ? dx + c.at(b * d.L + s) * d.E : (dinit ? dinit + (b * (d.W - 1) + s + d.W - 1) * d.E : nullptr);
    if (!out) continue;
    // Outputs t in [s, t_end) read s; t_end = L means s's document runs to the end of the row.
    const int64_t t_end = c.document_end(b, s, std::min(s + d.W, d.L));
    for (int64_t e = 0; e < d.E; ++e) out[e] = T(0);
    for (int64_t k = 0; k < d.W; ++k) {
      const int64_t t = s + (d.W - 1) - k;
      if (t < 0 || t >= t_end) continue;
      const T* g = dpre + c.at(b * d.L + t) * d.E;
      const T* wk = c.wt.data() + k * d.E;
      for (int64_t e = 0; e < d.E; ++e) out[e] += wk[e] * g[e];
    }
    const int64_t j = s - d.L + (d.W - 1);
    if (dfinal && j >= 0 && t_end == d.L) {
      const T* g = dfinal + (b * (d.W - 1) + j) * d.E;
      for (int64_t e = 0; e < d.E; ++e) out[e] += g[e];
    }
  }
}

// dweight and dbias: each channel block is owned by one thread, which sums over b then t in double.
template <typename T> void parameter_gradients(const ConvData<T>& c, const T* dpre, T* dweight, T* dbias) {
  const ConvDims& d = c.d;
  constexpr int64_t kBlock = 64;
  const int64_t blocks = (d.E + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (d.B * d.L * d.E * d.W > 32768)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t e0 = blk * kBlock, ne = std::min(kBlock, d.E - e0);
    std::vector<double> acc_w(d.W * ne, 0.0), acc_b(ne, 0.0);
    for (int64_t b = 0; b < d.B; ++b)
      for (int64_t t = 0; t < d.L; ++t) {
        const T* g = dpre + c.at(b * d.L + t) * d.E + e0;
        for (int64_t i = 0; i < ne; ++i) acc_b[i] += g[i];
        for (int64_t k = c.first_tap(b, t); k < d.W; ++k) {
          const T* xr = c.row(b, t - (d.W - 1) + k);
          if (!xr) continue;
          xr += e0;
          double* a = acc_w.data() + k * ne;
          for (int64_t i = 0; i < ne; ++i) a[i] += static_cast<double>(g[i]) * static_cast<double>(xr[i]);
        }
      }
    for (int64_t i = 0; i < ne; ++i) {
      for (int64_t k = 0; k < d.W; ++k) dweight[(e0 + i) * d.W + k] = static_cast<T>(acc_w[k * ne + i]);
      if (dbias) dbias[e0 + i] = static_cast<T>(acc_b[i]);
    }
  }
}

// The bf16 reference: the float32 op on the widened x and windows (the parameters are float32
// already), every bf16 output rounded once.
CausalConv1dParams widened(const CausalConv1dParams& p) {
  CausalConv1dParams q = p;
  q.x = widen_bf16(p.x);
  q.initial_window = widen_bf16(p.initial_window);
  return q;
}

CausalConv1dOutput widened_forward(const CausalConv1dParams& p) {
  CausalConv1dOutput o = causal_conv1d_forward(widened(p));
  return {o.y.to(DType::bf16), o.final_window.to(DType::bf16)};
}

CausalConv1dGrads widened_backward(const CausalConv1dParams& p, const Tensor& dy, const Tensor& dfinal_window) {
  CausalConv1dGrads g = causal_conv1d_backward(widened(p), widen_bf16(dy), widen_bf16(dfinal_window));
  g.dx = g.dx.to(DType::bf16);
  g.dinitial_window = round_to(g.dinitial_window, DType::bf16);
  return g;
}

}  // namespace

CausalConv1dOutput causal_conv1d_forward(const CausalConv1dParams& p) {
  const Tensor &x = p.x, &weight = p.weight, &bias = p.bias, &initial_window = p.initial_window, &doc_start = p.doc_start;
  const bool silu = p.silu;
  const Routing* order = p.order;
  ConvDims d = check_conv_inputs(x, weight, bias, initial_window);
  check_doc_start(doc_start, x, d);
  check_order(order, x, d);
#ifdef MOM_WITH_CUDA
  if (x.device().is_cuda()) {
    return cuda::causal_conv1d_forward(p);
  }
#endif
  check_cpu(x, kOp, "x");
  if (x.dtype() == DType::bf16) return widened_forward(p);
  CausalConv1dOutput out{empty_like(x), empty({d.B, d.W - 1, d.E}, x.dtype())};
  dispatch_float(x.dtype(), kOp, [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    ConvData<scalar_t> c(d, x, weight, bias, initial_window, doc_start, order);
    scalar_t* y = out.y.data<scalar_t>();
    const int64_t n = d.B * d.L;
#pragma omp parallel for schedule(static) if (n * d.E * d.W > 32768)
    for (int64_t bt = 0; bt < n; ++bt) {
      scalar_t* yr = y + c.at(bt) * d.E;
      c.pre_row(bt / d.L, bt % d.L, yr);
      if (silu)
        for (int64_t e = 0; e < d.E; ++e) yr[e] = yr[e] * sigmoid(yr[e]);
    }
    write_final_window(c, out.final_window.data<scalar_t>());
  });
  return out;
}

CausalConv1dGrads causal_conv1d_backward(const CausalConv1dParams& p, const Tensor& dy, const Tensor& dfinal_window) {
  const Tensor &x = p.x, &weight = p.weight, &bias = p.bias, &initial_window = p.initial_window, &doc_start = p.doc_start;
  const bool silu = p.silu;
  const Routing* order = p.order;
  ConvDims d = check_conv_inputs(x, weight, bias, initial_window);
  check_input(dy, x, "dy");
  check_shape(dy, x.shape(), kOp, "dy");
  if (dfinal_window.defined()) {
    check_input(dfinal_window, x, "dfinal_window");
    check_shape(dfinal_window, {d.B, d.W - 1, d.E}, kOp, "dfinal_window");
  }
  check_doc_start(doc_start, x, d);
  check_order(order, x, d);
#ifdef MOM_WITH_CUDA
  if (x.device().is_cuda()) {
    return cuda::causal_conv1d_backward(p, dy, dfinal_window);
  }
#endif
  check_cpu(x, kOp, "x");
  if (x.dtype() == DType::bf16) return widened_backward(p, dy, dfinal_window);
  CausalConv1dGrads grads;
  grads.dx = empty_like(x);
  grads.dweight = empty_like(weight);
  if (bias.defined()) grads.dbias = empty_like(bias);
  if (initial_window.defined()) grads.dinitial_window = empty_like(initial_window);
  dispatch_float(x.dtype(), kOp, [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    ConvData<scalar_t> c(d, x, weight, bias, initial_window, doc_start, order);
    const scalar_t* g = dy.data<scalar_t>();
    // dpre = dy * silu'(pre), pre recomputed row by row, stored in dy's row order; without silu dpre
    // is dy itself.
    std::vector<scalar_t> dpre_buf;
    if (silu) {
      dpre_buf.resize(d.B * d.L * d.E);
      const int64_t n = d.B * d.L;
#pragma omp parallel for schedule(static) if (n * d.E * d.W > 32768)
      for (int64_t bt = 0; bt < n; ++bt) {
        scalar_t* pr = dpre_buf.data() + c.at(bt) * d.E;
        c.pre_row(bt / d.L, bt % d.L, pr);
        const scalar_t* gr = g + c.at(bt) * d.E;
        for (int64_t e = 0; e < d.E; ++e) {
          scalar_t s = sigmoid(pr[e]);
          pr[e] = gr[e] * s * (scalar_t(1) + pr[e] * (scalar_t(1) - s));
        }
      }
    }
    const scalar_t* dpre = silu ? dpre_buf.data() : g;
    const scalar_t* dfinal = dfinal_window.defined() ? dfinal_window.data<scalar_t>() : nullptr;
    scalar_t* dinit = grads.dinitial_window.defined() ? grads.dinitial_window.data<scalar_t>() : nullptr;
    input_gradients(c, dpre, dfinal, grads.dx.data<scalar_t>(), dinit);
    scalar_t* dbias = grads.dbias.defined() ? grads.dbias.data<scalar_t>() : nullptr;
    parameter_gradients(c, dpre, grads.dweight.data<scalar_t>(), dbias);
  });
  return grads;
}

}  // namespace mom::kernels
