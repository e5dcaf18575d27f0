// CPU reference for kernels/decode.h; the argument checks shared with the CUDA version
// (kernels/cuda/decode.cu), which CUDA tensors go to after them. Each expert's rows go through one BLAS
// product in the model's dtype (rows_product: decode_linear's projection, dt_proj's in decode_ssm_step);
// the RMSNorm's and the conv's sums and dt's softplus run in float64, the SSM state's update and C . h
// in the model's dtype (a vectorised loop over the states); a bfloat16 weight stack is widened to
// float32 for the call (the reference, not a fast path).
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/exp.h"
#include "kernels/cpu/gemm.h"
#include "kernels/decode.h"
#include "kernels/elementwise.h"

namespace mom::kernels {

namespace {

constexpr const char* kLinear = "decode_linear";
constexpr const char* kSsm = "decode_ssm_step";
constexpr const char* kEmbed = "decode_embed";

void check_param(const Tensor& t, const Tensor& like, const Shape& shape, const char* op, const char* name) {
  check_defined(t, op, name);
  check_contiguous(t, op, name);
  check_same_dtype(t, like, op, name, "x");
  check_same_device(t, like, op, name, "x");
  check_shape(t, shape, op, name);
}

void check_optional(const Tensor& t, const Tensor& like, const Shape& shape, const char* op, const char* name) {
  if (t.defined()) check_param(t, like, shape, op, name);
}

void check_rows(const Tensor& t, DType dtype, int64_t B, const Tensor& like, const char* op, const char* name) {
  if (!t.defined()) return;
  check_contiguous(t, op, name);
  check_same_device(t, like, op, name, "x");
  MOM_CHECK(t.dtype() == dtype, op, name << " must be " << dtype_name(dtype) << ", got " << dtype_name(t.dtype()));
  check_shape(t, {B}, op, name);
}

// x (B, S) of the model's dtype (float32 or float64).
int64_t check_activation(const Tensor& x, const char* op, const char* name) {
  check_floating(x, op, name);
  check_contiguous(x, op, name);
  MOM_CHECK(x.dim() == 2, op, name << " must be (B, columns), got shape " << shape_str(x.shape()));
  return x.size(0);
}

void check_weight_stack(const Tensor& w, const Tensor& x, const char* op, const char* name) {
  check_defined(w, op, name);
  check_contiguous(w, op, name);
  check_same_device(w, x, op, name, "x");
  MOM_CHECK(w.dim() == 3, op, name << " must be a stack (M, Out, In), got shape " << shape_str(w.shape()));
  MOM_CHECK(w.dtype() == x.dtype() || (w.dtype() == DType::bf16 && x.dtype() == DType::f32), op,
            name << " must be of x's dtype, or bfloat16 beside float32; got " << dtype_name(w.dtype()) << " beside "
                 << dtype_name(x.dtype()));
}

// The conv over y's first E columns (E the window's channels, at most y's Out).
void check_conv(const DecodeConv& c, const Tensor& x, int64_t B, int64_t Out, const char* op) {
  MOM_CHECK(c.window.defined() && c.window.dim() == 3, op,
            "the conv window must be (B, W-1, E), got " << (c.window.defined() ? shape_str(c.window.shape()) : "none"));
  const int64_t W = c.window.size(1) + 1, E = c.window.size(2);
  MOM_CHECK(E <= Out, op, "the conv's " << E << " channels exceed y's " << Out << " columns");
  check_param(c.window, x, {B, W - 1, E}, op, "window");
  check_param(c.conv_weight, x, {E, W}, op, "conv_weight");
  check_optional(c.conv_bias, x, {E}, op, "conv_bias");
  check_rows(c.start, DType::boolean, B, x, op, "start");
  check_param(c.u, x, {B, E}, op, "u");
}

double silu(double v) { return v / (1.0 + std::exp(-v)); }
double softplus(double v) { return v > 20.0 ? v : std::log1p(std::exp(v)); }

// decode_linear's conv (decode.h) over y's first E columns for every row: u, then the window moves one
// token, after the row's reads of it.
template <typename P> void conv_and_move(const DecodeConv& c, const P* y, int64_t Out, int64_t B) {
  const int64_t E = c.window.size(2), W = c.window.size(1) + 1;
  const P *cw = c.conv_weight.data<P>(), *cb = c.conv_bias.defined() ? c.conv_bias.data<P>() : nullptr;
  const bool* start = c.start.defined() ? c.start.data<bool>() : nullptr;
  P *win = c.window.data<P>(), *u = c.u.data<P>();
  for (int64_t b = 0; b < B; ++b) {
    const bool reset = start && start[b];
    P* wb = win + b * (W - 1) * E;
    for (int64_t e = 0; e < E; ++e) {
      const P x = y[b * Out + e];
      double pre = cb ? static_cast<double>(cb[e]) : 0.0;
      if (!reset)
        for (int64_t j = 0; j < W - 1; ++j) pre += static_cast<double>(wb[j * E + e]) * cw[e * W + j];
      pre += static_cast<double>(x) * cw[e * W + W - 1];
      u[b * E + e] = static_cast<P>(silu(pre));
      for (int64_t j = 0; j + 1 < W - 1; ++j) wb[j * E + e] = reset ? P(0) : wb[(j + 1) * E + e];
      if (W > 1) wb[(W - 2) * E + e] = x;
    }
  }
}

// The rows b of expert m (ep[b] == m; every row is expert 0 when ep is null).
std::vector<int64_t> rows_of(const int32_t* ep, int64_t B, int64_t m) {
  std::vector<int64_t> rows;
  for (int64_t b = 0; b < B; ++b)
    if ((ep ? ep[b] : 0) == m) rows.push_back(b);
  return rows;
}

// out (rows, Out) = a's `rows` (their first K columns; a's rows lda apart) @ w (Out, K)^T: one BLAS
// product, gemv for a single row.
template <typename P>
std::vector<P> rows_product(const std::vector<int64_t>& rows, const P* a, int64_t lda, int64_t K, const P* w,
                            int64_t Out) {
  const int64_t n = static_cast<int64_t>(rows.size());
  std::vector<P> in(n * K), out(n * Out);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t k = 0; k < K; ++k) in[r * K + k] = a[rows[r] * lda + k];
  if (n == 1 && K > 0) cpu::gemv(Out, K, w, K, in.data(), out.data());
  else cpu::gemm(false, true, n, Out, K, in.data(), K, w, K, out.data(), Out);
  return out;
}

}  // namespace

void decode_linear(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& expert,
                   const DecodeInput& in, Tensor& y, bool accumulate, Tensor* workspace, const DecodeConv* conv) {
  const int64_t B = check_activation(x, kLinear, "x");
  check_weight_stack(weight, x, kLinear, "weight");
  const int64_t M = weight.size(0), Out = weight.size(1), In = weight.size(2);
  MOM_CHECK(x.size(1) == In, kLinear, "x has " << x.size(1) << " columns, the weight's In is " << In);
  check_optional(bias, x, {M, Out}, kLinear, "bias");
  check_rows(expert, DType::i32, B, x, kLinear, "expert");
  check_param(y, x, {B, Out}, kLinear, "y");
  if (in.kind == DecodeInput::Kind::norm) {
    check_param(in.norm_weight, x, {In}, kLinear, "norm_weight");
    MOM_CHECK(in.eps >= 0, kLinear, "eps must be >= 0, got " << in.eps);
  }
  if (conv) check_conv(*conv, x, B, Out, kLinear);
#ifdef MOM_WITH_CUDA
  if (x.device().is_cuda()) return cuda::decode_linear(x, weight, bias, expert, in, y, accumulate, workspace, conv);
#endif
  (void)workspace;
  check_cpu(x, kLinear, "x");
  const Tensor w = weight.dtype() == DType::bf16 ? weight.to(DType::f32) : weight;
  dispatch_float(x.dtype(), kLinear, [&](auto tag) {
    using P = MOM_TYPE(tag);
    // The input rows v (B, In).
    std::vector<P> v(B * In);
    const P* xp = x.data<P>();
    for (int64_t b = 0; b < B; ++b) {
      P* vb = v.data() + b * In;
      if (in.kind == DecodeInput::Kind::plain) {
        for (int64_t i = 0; i < In; ++i) vb[i] = xp[b * In + i];
      } else {
        const P* g = in.norm_weight.data<P>();
        double ss = 0;
        for (int64_t i = 0; i < In; ++i) ss += static_cast<double>(xp[b * In + i]) * xp[b * In + i];
        const double rstd = 1.0 / std::sqrt(ss / static_cast<double>(In) + in.eps);
        for (int64_t i = 0; i < In; ++i) vb[i] = static_cast<P>(xp[b * In + i] * rstd * g[i]);
      }
    }
    // Each expert's rows through one product; rows of an out-of-range expert get NaN.
    const int32_t* ep = expert.defined() ? expert.data<int32_t>() : nullptr;
    const P* wp = w.data<P>();
    const P* bp = bias.defined() ? bias.data<P>() : nullptr;
    P* yp = y.data<P>();
    for (int64_t b = 0; b < B; ++b)
      if (ep && (ep[b] < 0 || ep[b] >= M))
        for (int64_t o = 0; o < Out; ++o) yp[b * Out + o] = std::numeric_limits<P>::quiet_NaN();
    for (int64_t m = 0; m < M; ++m) {
      const std::vector<int64_t> rows = rows_of(ep, B, m);
      if (rows.empty()) continue;
      const std::vector<P> out = rows_product(rows, v.data(), In, In, wp + m * Out * In, Out);
      for (size_t r = 0; r < rows.size(); ++r) {
        P* yr = yp + rows[r] * Out;
        for (int64_t o = 0; o < Out; ++o) {
          const P add = out[r * Out + o] + (bp ? bp[m * Out + o] : P(0));
          yr[o] = accumulate ? yr[o] + add : add;
        }
      }
    }
    if (conv) conv_and_move<P>(*conv, yp, Out, B);
  });
}

void decode_ssm_step(const DecodeSsm& s) {
  const Tensor& xz = s.xz;
  const int64_t B = check_activation(xz, kSsm, "xz");
  MOM_CHECK(s.state.defined() && s.state.dim() == 3, kSsm,
            "state must be (B, E, N), got " << (s.state.defined() ? shape_str(s.state.shape()) : "none"));
  const int64_t E = s.state.size(1), N = s.state.size(2);
  check_param(xz, xz, {B, 2 * E}, kSsm, "xz");
  check_param(s.u, xz, {B, E}, kSsm, "u");
  check_param(s.state, xz, {B, E, N}, kSsm, "state");
  MOM_CHECK(s.dt_weight.defined() && s.dt_weight.dim() == 3 && s.dt_weight.size(1) == E, kSsm,
            "dt_weight must be a stack (M, E, R), got "
                << (s.dt_weight.defined() ? shape_str(s.dt_weight.shape()) : "none"));
  const int64_t M = s.dt_weight.size(0), R = s.dt_weight.size(2);
  check_param(s.dbc, xz, {B, R + 2 * N}, kSsm, "dbc");
  check_param(s.dt_weight, xz, {M, E, R}, kSsm, "dt_weight");
  check_param(s.dt_bias, xz, {M, E}, kSsm, "dt_bias");
  check_rows(s.dt_expert, DType::i32, B, xz, kSsm, "dt_expert");
  check_param(s.A_log, xz, {E, N}, kSsm, "A_log");
  check_param(s.D, xz, {E}, kSsm, "D");
  check_param(s.y, xz, {B, E}, kSsm, "y");
  check_rows(s.start, DType::boolean, B, xz, kSsm, "start");
#ifdef MOM_WITH_CUDA
  if (xz.device().is_cuda()) return cuda::decode_ssm_step(s);
#endif
  check_cpu(xz, kSsm, "xz");
  dispatch_float(xz.dtype(), kSsm, [&](auto tag) {
    using P = MOM_TYPE(tag);
    const P* up = s.u.data<P>();
    const P *xp = xz.data<P>(), *dbc = s.dbc.data<P>(), *wdt = s.dt_weight.data<P>(), *bdt = s.dt_bias.data<P>();
    const P *alog = s.A_log.data<P>(), *Dp = s.D.data<P>();
    const int32_t* ep = s.dt_expert.defined() ? s.dt_expert.data<int32_t>() : nullptr;
    const bool* start = s.start.defined() ? s.start.data<bool>() : nullptr;
    P *h = s.state.data<P>(), *yp = s.y.data<P>();
    std::vector<P> A(E * N);  // A = -exp(A_log), once per call
    for (int64_t i = 0; i < E * N; ++i) A[i] = static_cast<P>(-std::exp(static_cast<double>(alog[i])));
    // dt_proj's products (B, E): each expert's rows (their first R columns of dbc) through one product.
    std::vector<P> pre(B * E);
    for (int64_t m = 0; m < M; ++m) {
      const std::vector<int64_t> rows = rows_of(ep, B, m);
      if (rows.empty()) continue;
      const std::vector<P> out = rows_product(rows, dbc, R + 2 * N, R, wdt + m * E * R, E);
      for (size_t r = 0; r < rows.size(); ++r)
        for (int64_t e = 0; e < E; ++e) pre[rows[r] * E + e] = out[r * E + e];
    }
#pragma omp parallel for schedule(static) if (B * E * N > 32768)
    for (int64_t b = 0; b < B; ++b) {
      const int64_t m = ep ? ep[b] : 0;
      const bool reset = start && start[b];
      const P* row = dbc + b * (R + 2 * N);
      for (int64_t e = 0; e < E; ++e) {
        const double u = static_cast<double>(up[b * E + e]);
        if (m < 0 || m >= M) {
          yp[b * E + e] = std::numeric_limits<P>::quiet_NaN();
        } else {
          const double dt = softplus(static_cast<double>(pre[b * E + e]) + static_cast<double>(bdt[m * E + e]));
          // The states in the model's precision: the update in a loop the compiler vectorises
          // (fast_exp; at a start the state before is zero, so only dt B u remains), then C . h.
          const P dtp = static_cast<P>(dt), dtu = static_cast<P>(dt * u);
          const P *Ae = A.data() + e * N, *Bv = row + R, *Cv = row + R + N;
          P* hb = h + (b * E + e) * N;
          if (reset)
            for (int64_t n = 0; n < N; ++n) hb[n] = dtu * Bv[n];
          else
            for (int64_t n = 0; n < N; ++n) hb[n] = cpu::fast_exp(dtp * Ae[n]) * hb[n] + dtu * Bv[n];
          P ch = 0;
          for (int64_t n = 0; n < N; ++n) ch += Cv[n] * hb[n];
          const double y = static_cast<double>(Dp[e]) * u + static_cast<double>(ch);
          yp[b * E + e] = static_cast<P>(y * silu(static_cast<double>(xp[b * 2 * E + E + e])));
        }
      }
    }
  });
}

void decode_embed(const Tensor& token, const Tensor& table, Tensor& out) {
  check_contiguous(token, kEmbed, "token");
  MOM_CHECK(token.dtype() == DType::i32 && token.dim() == 1, kEmbed,
            "token must be int32 (B), got " << dtype_name(token.dtype()) << " " << shape_str(token.shape()));
  const int64_t B = token.size(0);
  check_floating(table, kEmbed, "table");
  check_contiguous(table, kEmbed, "table");
  MOM_CHECK(table.dim() == 2, kEmbed, "table must be (V, D), got " << shape_str(table.shape()));
  const int64_t V = table.size(0), D = table.size(1);
  check_same_device(token, table, kEmbed, "token", "table");
  check_same_device(out, table, kEmbed, "out", "table");
  check_same_dtype(out, table, kEmbed, "out", "table");
  check_contiguous(out, kEmbed, "out");
  check_shape(out, {B, D}, kEmbed, "out");
#ifdef MOM_WITH_CUDA
  if (table.device().is_cuda()) return cuda::decode_embed(token, table, out);
#endif
  check_cpu(table, kEmbed, "table");
  dispatch_float(table.dtype(), kEmbed, [&](auto tag) {
    using P = MOM_TYPE(tag);
    const int32_t* ids = token.data<int32_t>();
    const P* tp = table.data<P>();
    P* op = out.data<P>();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t d = 0; d < D; ++d)
        op[b * D + d] = ids[b] >= 0 && ids[b] < V ? tp[ids[b] * D + d] : std::numeric_limits<P>::quiet_NaN();
  });
}

}  // namespace mom::kernels
