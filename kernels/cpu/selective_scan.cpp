// CPU reference for kernels/selective_scan.h: argument checks, forward and backward.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "kernels/cpu/exp.h"
#include "kernels/elementwise.h"
#include "kernels/selective_scan.h"

namespace mom::kernels {

namespace {

constexpr const char* kOp = "selective_scan";

// ---- argument checks ----

// Every input is on u's device (u's device picks the implementation). The sequence tensors have u's
// dtype; the parameters and states (acc) its accumulation dtype: float32 beside bf16, u's own otherwise.
void check_input(const Tensor& t, const char* name, const char* layout, const Shape& expected, const Tensor& u,
                 bool acc = false) {
  check_defined(t, kOp, name);
  MOM_CHECK(t.shape() == expected, kOp,
            name << " has shape " << shape_str(t.shape()) << ", expected " << layout << " = " << shape_str(expected));
  const DType want = acc ? acc_dtype(u.dtype()) : u.dtype();
  MOM_CHECK(t.dtype() == want, kOp,
            name << " is " << dtype_name(t.dtype()) << " but must be " << dtype_name(want) << " beside "
                 << dtype_name(u.dtype()) << " u");
  check_contiguous(t, kOp, name);
  check_same_device(t, u, kOp, name, "u");
}

void check_optional(const Tensor& t, const char* name, const char* layout, const Shape& expected, const Tensor& u,
                    bool acc = false) {
  if (t.defined()) check_input(t, name, layout, expected, u, acc);
}

// doc_start: bool flags in token order, one per (b, t).
void check_doc_start(const Tensor& t, const SelectiveScanDims& d, const Tensor& u) {
  MOM_CHECK(t.dtype() == DType::boolean, kOp, "doc_start must be bool, got " << dtype_name(t.dtype()));
  MOM_CHECK(t.shape() == Shape({d.B, d.L}), kOp,
            "doc_start has shape " << shape_str(t.shape()) << ", expected (B, L) = " << shape_str({d.B, d.L}));
  check_contiguous(t, kOp, "doc_start");
  check_same_device(t, u, kOp, "doc_start", "u");
}

// ---- math shared by the forward and the backward ----

// State and accumulation type: the wider of float and the input type.
template <typename scalar_t>
using acc_type = std::conditional_t<(sizeof(scalar_t) > sizeof(float)), scalar_t, float>;

// exp(x) for the state decay exp(dt * A), the scan's hot spot (B * L * E * N of them per pass).
using cpu::fast_exp;

template <typename T> T sigmoid(T x) { return T(1) / (T(1) + std::exp(-x)); }
template <typename T> T softplus(T x) { return x > T(20) ? x : std::log1p(std::exp(x)); }
template <typename T> T softplus_grad(T x) { return x > T(20) ? T(1) : sigmoid(x); }

// Raw views of the contiguous inputs (null where an optional input is absent) and the dimensions.
template <typename scalar_t> struct ScanData {
  const scalar_t* u;              // (B, L, E)
  const scalar_t* delta;          // (B, L, E)
  const scalar_t* A;              // (E, N)
  const scalar_t* B_ssm;          // (B, L, N)
  const scalar_t* C_ssm;          // (B, L, N)
  const scalar_t* D;              // (E)
  const scalar_t* z;              // (B, L, E)
  const scalar_t* delta_bias;     // (E)
  const scalar_t* initial_state;  // (B, E, N)
  const bool* doc_start;          // (B, L) in token order, or null (no document boundaries)
  const int64_t* rows;            // (B*L): where the (b, t) row of the sequence tensors is, or null
  bool delta_softplus;
  SelectiveScanDims dims;
};

// The row of (b, t) in the (B*L, .) storage of u, delta, B_ssm, C_ssm, z, out and their gradients.
template <typename scalar_t> int64_t row_of(const ScanData<scalar_t>& s, int64_t b, int64_t t) {
  const int64_t bt = b * s.dims.L + t;
  return s.rows ? s.rows[bt] : bt;
}

template <typename T> T* optional_data(const Tensor& t) { return t.defined() ? t.data<T>() : nullptr; }

template <typename scalar_t> ScanData<scalar_t> scan_data(const SelectiveScanParams& p, const SelectiveScanDims& d) {
  ScanData<scalar_t> s;
  s.u = p.u.data<scalar_t>();
  s.delta = p.delta.data<scalar_t>();
  s.A = p.A.data<scalar_t>();
  s.B_ssm = p.B_ssm.data<scalar_t>();
  s.C_ssm = p.C_ssm.data<scalar_t>();
  s.D = optional_data<scalar_t>(p.D);
  s.z = optional_data<scalar_t>(p.z);
  s.delta_bias = optional_data<scalar_t>(p.delta_bias);
  s.initial_state = optional_data<scalar_t>(p.initial_state);
  s.doc_start = optional_data<bool>(p.doc_start);
  s.rows = p.order ? p.order->inverse.data<int64_t>() : nullptr;
  s.delta_softplus = p.delta_softplus;
  s.dims = d;
  return s;
}

// The pre-activation step size delta + delta_bias at (b, t, e).
template <typename acc_t, typename scalar_t>
acc_t step_input(const ScanData<scalar_t>& s, int64_t b, int64_t t, int64_t e) {
  const SelectiveScanDims& d = s.dims;
  acc_t x = static_cast<acc_t>(s.delta[row_of(s, b, t) * d.E + e]);
  if (s.delta_bias) x += static_cast<acc_t>(s.delta_bias[e]);
  return x;
}

template <typename acc_t, typename scalar_t> acc_t step_size(const ScanData<scalar_t>& s, acc_t x) {
  return s.delta_softplus ? softplus(x) : x;
}

// Whether step t of row b starts a document after the first: its h_{t-1} is then taken as zero (the
// carry is cut) and its gradient does not flow back to t-1. kDocs: the call has doc_start (one byte read
// per step); without it the check compiles away, and the loops are those of a scan without documents.
template <bool kDocs, typename scalar_t> bool cuts_carry(const ScanData<scalar_t>& s, int64_t b, int64_t t) {
  return kDocs && t > 0 && s.doc_start[b * s.dims.L + t];
}

// Loads h_{-1} of (b, e) into h (N).
template <typename acc_t, typename scalar_t>
void load_initial_state(const ScanData<scalar_t>& s, int64_t b, int64_t e, acc_t* h) {
  const int64_t N = s.dims.N;
  for (int64_t n = 0; n < N; ++n)
    h[n] = s.initial_state ? static_cast<acc_t>(s.initial_state[(b * s.dims.E + e) * N + n]) : acc_t(0);
}

// One token of one (b, e): h_next = exp(dt A) * h_prev + dt B_t u_t; returns y_t = C_t . h_next + D u_t.
// h_prev and h_next may be the same buffer. Used by the forward and by the backward's recompute, so
// both see the same states bit for bit.
template <typename acc_t, typename scalar_t>
acc_t scan_step(const ScanData<scalar_t>& s, int64_t b, int64_t t, int64_t e, acc_t dt, const acc_t* h_prev,
                acc_t* h_next) {
  const SelectiveScanDims& d = s.dims;
  const scalar_t* A_e = s.A + e * d.N;                   // (N)
  const int64_t r = row_of(s, b, t);
  const scalar_t* B_t = s.B_ssm + r * d.N;  // (N)
  const scalar_t* C_t = s.C_ssm + r * d.N;  // (N)
  const acc_t u_t = static_cast<acc_t>(s.u[r * d.E + e]);
  for (int64_t n = 0; n < d.N; ++n)  // vectorised: no reduction in this loop
    h_next[n] = fast_exp(dt * static_cast<acc_t>(A_e[n])) * h_prev[n] + dt * static_cast<acc_t>(B_t[n]) * u_t;
  acc_t y = 0;
  for (int64_t n = 0; n < d.N; ++n) y += static_cast<acc_t>(C_t[n]) * h_next[n];
  if (s.D) y += static_cast<acc_t>(s.D[e]) * u_t;
  return y;
}

// ---- forward ----

template <bool kDocs, typename scalar_t>
void forward_cpu(const ScanData<scalar_t>& s, scalar_t* out, scalar_t* last_state) {
  using acc_t = acc_type<scalar_t>;
  const SelectiveScanDims d = s.dims;
  const int64_t pairs = d.B * d.E;
#pragma omp parallel if (d.B * d.L * d.E * d.N > 32768)
  {
    std::vector<acc_t> h(d.N);  // the state of the current (b, e)
#pragma omp for schedule(static)
    for (int64_t be = 0; be < pairs; ++be) {
      const int64_t b = be / d.E, e = be % d.E;
      load_initial_state(s, b, e, h.data());
      for (int64_t t = 0; t < d.L; ++t) {
        // A document's first step starts from zero, as a call's first step without initial_state does.
        if (cuts_carry<kDocs>(s, b, t)) std::fill(h.begin(), h.end(), acc_t(0));
        const acc_t dt = step_size(s, step_input<acc_t>(s, b, t, e));
        const acc_t y = scan_step(s, b, t, e, dt, h.data(), h.data());
        const int64_t i = row_of(s, b, t) * d.E + e;
        if (s.z) {
          const acc_t zt = static_cast<acc_t>(s.z[i]);
          out[i] = static_cast<scalar_t>(y * zt * sigmoid(zt));
        } else {
          out[i] = static_cast<scalar_t>(y);
        }
      }
      for (int64_t n = 0; n < d.N; ++n) last_state[(b * d.E + e) * d.N + n] = static_cast<scalar_t>(h[n]);
    }
  }
}

// ---- backward ----

// Where the backward writes. The per-(b, e) outputs are indexed as their inputs and written by the
// task that owns (b, e); the partials are reduced in a fixed order once every task has finished.
template <typename scalar_t> struct BackwardBuffers {
  using acc_t = acc_type<scalar_t>;
  const scalar_t* dout;         // (B, L, E) or null (zero)
  const scalar_t* dlast_state;  // (B, E, N) or null (zero)
  scalar_t* du;                 // (B, L, E)
  scalar_t* ddelta;             // (B, L, E)
  scalar_t* dz;                 // (B, L, E) or null
  scalar_t* dinitial_state;     // (B, E, N) or null
  acc_t* dA_part;               // (B, E, N)    summed over b into dA (E, N)
  acc_t* dD_part;               // (B, E)       summed over b into dD (E)
  acc_t* ddelta_bias_part;      // (B, E)       summed over b into ddelta_bias (E)
  acc_t* dB_part;               // (B, G, L, N) summed over the groups into dB_ssm (B, L, N)
  acc_t* dC_part;               // (B, G, L, N) summed over the groups into dC_ssm (B, L, N)
  int64_t groups;               // G
};

// Scratch of one backward task, reused for each channel it owns.
template <typename acc_t> struct ChannelScratch {
  std::vector<acc_t> states;  // (L+2, N): row 0 holds h_{-1}, row t+1 holds h_t, row L+1 stays zero
  std::vector<acc_t> ys;      // (L)       y_t before the gate
  std::vector<acc_t> grad_h;  // (N)       dL/dh_t
  std::vector<acc_t> decay;      // (N)    exp(dt_t A) of the current step
  std::vector<acc_t> ddt_terms;  // (N)    the terms of dL/d(dt_t), summed after the loop over n
  std::vector<acc_t> du_terms;   // (N)    the terms of dL/du_t from the state
  // Row L+1 of states is the h_{t-1} of a step that starts a document (zero, never written).
  explicit ChannelScratch(const SelectiveScanDims& d)
      : states((d.L + 2) * d.N), ys(d.L), grad_h(d.N), decay(d.N), ddt_terms(d.N), du_terms(d.N) {}
};

// The backward of one (b, e) of channel group `group`: recomputes its states, then walks t from L-1
// down to 0 (see the header for the formulas).
template <bool kDocs, typename scalar_t>
void backward_channel(const ScanData<scalar_t>& s, const BackwardBuffers<scalar_t>& g, int64_t b, int64_t e,
                      int64_t group, ChannelScratch<acc_type<scalar_t>>& w) {
  using acc_t = acc_type<scalar_t>;
  const SelectiveScanDims& d = s.dims;
  const int64_t N = d.N;
  acc_t* states = w.states.data();
  acc_t* grad_h = w.grad_h.data();

  // Row t of states keeps the true h_{t-1} (dC_{t-1} needs it) also where step t starts a document;
  // that step reads the zero row L+1 instead.
  const acc_t* zero_state = states + (d.L + 1) * N;
  load_initial_state(s, b, e, states);
  for (int64_t t = 0; t < d.L; ++t) {
    const acc_t dt = step_size(s, step_input<acc_t>(s, b, t, e));
    const acc_t* h_prev = cuts_carry<kDocs>(s, b, t) ? zero_state : states + t * N;
    w.ys[t] = scan_step(s, b, t, e, dt, h_prev, states + (t + 1) * N);
  }

  for (int64_t n = 0; n < N; ++n)
    grad_h[n] = g.dlast_state ? static_cast<acc_t>(g.dlast_state[(b * d.E + e) * N + n]) : acc_t(0);
  const scalar_t* A_e = s.A + e * N;                           // (N)
  const acc_t D_e = s.D ? static_cast<acc_t>(s.D[e]) : acc_t(0);
  acc_t* dA_e = g.dA_part + (b * d.E + e) * N;                 // (N), zero on entry
  acc_t* dB_group = g.dB_part + (b * g.groups + group) * d.L * N;  // (L, N)
  acc_t* dC_group = g.dC_part + (b * g.groups + group) * d.L * N;  // (L, N)
  acc_t dD_sum = 0, ddelta_bias_sum = 0;

  for (int64_t t = d.L - 1; t >= 0; --t) {
    const bool cut = cuts_carry<kDocs>(s, b, t);
    const int64_t r = row_of(s, b, t), i = r * d.E + e;
    const acc_t x = step_input<acc_t>(s, b, t, e);
    const acc_t dt = step_size(s, x);
    const acc_t u_t = static_cast<acc_t>(s.u[i]);
    acc_t dy = g.dout ? static_cast<acc_t>(g.dout[i]) : acc_t(0);
    if (s.z) {
      const acc_t z_t = static_cast<acc_t>(s.z[i]);
      const acc_t sig = sigmoid(z_t);
      g.dz[i] = static_cast<scalar_t>(dy * w.ys[t] * sig * (acc_t(1) + z_t * (acc_t(1) - sig)));
      dy *= z_t * sig;
    }
    dD_sum += dy * u_t;
    acc_t du = dy * D_e;
    acc_t ddt = 0;
    const acc_t* h_prev = cut ? zero_state : states + t * N;  // h_{t-1} as step t used it
    const acc_t* h_t = states + (t + 1) * N;     // h_t
    const scalar_t* B_t = s.B_ssm + r * N;
    const scalar_t* C_t = s.C_ssm + r * N;
    acc_t* dB_t = dB_group + t * N;
    acc_t* dC_t = dC_group + t * N;
    acc_t* decay = w.decay.data();
    acc_t* ddt_terms = w.ddt_terms.data();
    acc_t* du_terms = w.du_terms.data();
    // Elementwise over n (vectorised); the two sums over n follow in their own loops, in the same
    // order as a single loop would add them. The arrays are distinct buffers (ivdep: no alias checks).
#pragma GCC ivdep
    for (int64_t n = 0; n < N; ++n) {
      const acc_t A_n = static_cast<acc_t>(A_e[n]);
      const acc_t B_n = static_cast<acc_t>(B_t[n]);
      decay[n] = fast_exp(dt * A_n);
      grad_h[n] += dy * static_cast<acc_t>(C_t[n]);  // now dL/dh_t in full
      dC_t[n] += dy * h_t[n];
      const acc_t through_decay = grad_h[n] * decay[n] * h_prev[n];  // dL/d(dt * A_n)
      ddt_terms[n] = through_decay * A_n + grad_h[n] * B_n * u_t;
      dA_e[n] += through_decay * dt;
      dB_t[n] += grad_h[n] * dt * u_t;
      du_terms[n] = grad_h[n] * dt * B_n;
      grad_h[n] *= decay[n];  // now dL/dh_{t-1}
    }
    // At a document's first step nothing flows back into the previous document: its last token starts
    // from a zero gradient, as the last token of a call without dlast_state does.
    if (cut) std::fill(grad_h, grad_h + N, acc_t(0));
    for (int64_t n = 0; n < N; ++n) ddt += ddt_terms[n];
    for (int64_t n = 0; n < N; ++n) du += du_terms[n];
    const acc_t ddelta = s.delta_softplus ? ddt * softplus_grad(x) : ddt;
    g.du[i] = static_cast<scalar_t>(du);
    g.ddelta[i] = static_cast<scalar_t>(ddelta);
    ddelta_bias_sum += ddelta;
  }

  g.dD_part[b * d.E + e] = dD_sum;
  g.ddelta_bias_part[b * d.E + e] = ddelta_bias_sum;
  if (g.dinitial_state)
    for (int64_t n = 0; n < N; ++n) g.dinitial_state[(b * d.E + e) * N + n] = static_cast<scalar_t>(grad_h[n]);
}

// out[j] = sum_k part[k * stride + j] for j < count, k in increasing order.
template <typename scalar_t, typename acc_t>
void sum_partials(const acc_t* part, int64_t parts, int64_t stride, int64_t count, scalar_t* out) {
#pragma omp parallel for schedule(static) if (parts * count > 32768)
  for (int64_t j = 0; j < count; ++j) {
    acc_t sum = 0;
    for (int64_t k = 0; k < parts; ++k) sum += part[k * stride + j];
    out[j] = static_cast<scalar_t>(sum);
  }
}

template <bool kDocs, typename scalar_t>
void backward_cpu(const ScanData<scalar_t>& s, BackwardBuffers<scalar_t> g, scalar_t* dA, scalar_t* dD,
                  scalar_t* ddelta_bias, scalar_t* dB_ssm, scalar_t* dC_ssm) {
  using acc_t = acc_type<scalar_t>;
  const SelectiveScanDims d = s.dims;
  const int64_t G = std::min(d.E, kScanChannelGroups);
  std::vector<acc_t> dA_part(d.B * d.E * d.N, acc_t(0)), dD_part(d.B * d.E), ddelta_bias_part(d.B * d.E);
  std::vector<acc_t> dB_part(d.B * G * d.L * d.N, acc_t(0)), dC_part(d.B * G * d.L * d.N, acc_t(0));
  g.dA_part = dA_part.data();
  g.dD_part = dD_part.data();
  g.ddelta_bias_part = ddelta_bias_part.data();
  g.dB_part = dB_part.data();
  g.dC_part = dC_part.data();
  g.groups = G;

  const int64_t tasks = d.B * G;
#pragma omp parallel if (d.B * d.L * d.E * d.N > 32768)
  {
    ChannelScratch<acc_t> scratch(d);
#pragma omp for schedule(static)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t b = task / G, group = task % G;
      const int64_t e_begin = group * d.E / G, e_end = (group + 1) * d.E / G;
      for (int64_t e = e_begin; e < e_end; ++e) backward_channel<kDocs>(s, g, b, e, group, scratch);
    }
  }

  sum_partials(dA_part.data(), d.B, d.E * d.N, d.E * d.N, dA);
  if (dD) sum_partials(dD_part.data(), d.B, d.E, d.E, dD);
  if (ddelta_bias) sum_partials(ddelta_bias_part.data(), d.B, d.E, d.E, ddelta_bias);
  // dB and dC in (b, t) order, then (with rows) each row moved to its place.
  std::vector<scalar_t> dB_tokens, dC_tokens;
  if (s.rows) {
    dB_tokens.resize(d.B * d.L * d.N);
    dC_tokens.resize(d.B * d.L * d.N);
  }
  scalar_t* dB_out = s.rows ? dB_tokens.data() : dB_ssm;
  scalar_t* dC_out = s.rows ? dC_tokens.data() : dC_ssm;
  for (int64_t b = 0; b < d.B; ++b) {
    const int64_t offset = b * G * d.L * d.N;
    sum_partials(dB_part.data() + offset, G, d.L * d.N, d.L * d.N, dB_out + b * d.L * d.N);
    sum_partials(dC_part.data() + offset, G, d.L * d.N, d.L * d.N, dC_out + b * d.L * d.N);
  }
  for (int64_t bt = 0; s.rows && bt < d.B * d.L; ++bt) {
    std::copy(dB_out + bt * d.N, dB_out + (bt + 1) * d.N, dB_ssm + s.rows[bt] * d.N);
    std::copy(dC_out + bt * d.N, dC_out + (bt + 1) * d.N, dC_ssm + s.rows[bt] * d.N);
  }
}

// The bf16 reference: the float32 scan of the widened sequence tensors (the parameters and the state
// are float32 already); the caller rounds each bf16 output once.
SelectiveScanParams widened(const SelectiveScanParams& p) {
  SelectiveScanParams q = p;
  for (Tensor* t : {&q.u, &q.delta, &q.B_ssm, &q.C_ssm, &q.z}) *t = widen_bf16(*t);
  return q;
}

}  // namespace

SelectiveScanDims check_selective_scan(const SelectiveScanParams& p) {
  check_compute(p.u, kOp, "u");
  MOM_CHECK(p.u.dim() == 3, kOp, "u must have 3 dimensions (B, L, E), got shape " << shape_str(p.u.shape()));
  check_defined(p.A, kOp, "A");
  MOM_CHECK(p.A.dim() == 2, kOp, "A must have 2 dimensions (E, N), got shape " << shape_str(p.A.shape()));
  const SelectiveScanDims d{p.u.size(0), p.u.size(1), p.u.size(2), p.A.size(1)};
  const Tensor& u = p.u;
  check_input(p.u, "u", "(B, L, E)", {d.B, d.L, d.E}, u);
  check_input(p.delta, "delta", "(B, L, E)", {d.B, d.L, d.E}, u);
  check_input(p.A, "A", "(E, N)", {d.E, d.N}, u, /*acc=*/true);
  check_input(p.B_ssm, "B_ssm", "(B, L, N)", {d.B, d.L, d.N}, u);
  check_input(p.C_ssm, "C_ssm", "(B, L, N)", {d.B, d.L, d.N}, u);
  check_optional(p.D, "D", "(E)", {d.E}, u, /*acc=*/true);
  check_optional(p.z, "z", "(B, L, E)", {d.B, d.L, d.E}, u);
  check_optional(p.delta_bias, "delta_bias", "(E)", {d.E}, u, /*acc=*/true);
  check_optional(p.initial_state, "initial_state", "(B, E, N)", {d.B, d.E, d.N}, u, /*acc=*/true);
  if (p.doc_start.defined()) check_doc_start(p.doc_start, d, u);
  if (p.order) {
    MOM_CHECK(p.order->num_tokens() == d.B * d.L && p.order->inverse.defined(), kOp,
              "the row order's routing has " << p.order->num_tokens() << " tokens, u has B*L = " << d.B * d.L);
    MOM_CHECK(p.order->device() == u.device(), kOp,
              "the row order's routing is on " << p.order->device().str() << " but u is on " << u.device().str());
  }
  return d;
}

SelectiveScanOutput selective_scan_forward(const SelectiveScanParams& p, bool save_checkpoints) {
  const SelectiveScanDims d = check_selective_scan(p);
#ifdef MOM_WITH_CUDA
  if (p.u.device().is_cuda()) {
    return cuda::selective_scan_forward(p, d, save_checkpoints);
  }
#endif
  (void)save_checkpoints;
  check_cpu(p.u, kOp, "u");
  if (p.u.dtype() == DType::bf16) {
    SelectiveScanOutput r = selective_scan_forward(widened(p));
    r.out = r.out.to(DType::bf16);
    return r;
  }
  SelectiveScanOutput r{empty({d.B, d.L, d.E}, p.u.dtype()), empty({d.B, d.E, d.N}, p.u.dtype()), Tensor()};
  dispatch_float(p.u.dtype(), kOp, [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    const ScanData<scalar_t> s = scan_data<scalar_t>(p, d);
    if (s.doc_start)
      forward_cpu<true>(s, r.out.data<scalar_t>(), r.last_state.data<scalar_t>());
    else
      forward_cpu<false>(s, r.out.data<scalar_t>(), r.last_state.data<scalar_t>());
  });
  return r;
}

SelectiveScanGrads selective_scan_backward(const SelectiveScanParams& p, const Tensor& dout, const Tensor& dlast_state,
                                           const Tensor& checkpoints, bool dz_over_dout) {
  const SelectiveScanDims d = check_selective_scan(p);
  const DType dt = p.u.dtype();
  check_optional(dout, "dout", "(B, L, E)", {d.B, d.L, d.E}, p.u);
  check_optional(dlast_state, "dlast_state", "(B, E, N)", {d.B, d.E, d.N}, p.u, /*acc=*/true);
#ifdef MOM_WITH_CUDA
  if (p.u.device().is_cuda()) {
    return cuda::selective_scan_backward(p, d, dout, dlast_state, checkpoints, dz_over_dout);
  }
#endif
  MOM_CHECK(!checkpoints.defined(), kOp, "checkpoints come only from a CUDA forward");
  check_cpu(p.u, kOp, "u");
  if (dt == DType::bf16) {
    SelectiveScanGrads r = selective_scan_backward(widened(p), widen_bf16(dout), dlast_state);
    for (Tensor* g : {&r.du, &r.ddelta, &r.dB_ssm, &r.dC_ssm, &r.dz}) *g = round_to(*g, DType::bf16);
    return r;
  }
  auto grad_like = [](const Tensor& t) { return t.defined() ? empty(t.shape(), t.dtype()) : Tensor(); };
  SelectiveScanGrads r;
  r.du = grad_like(p.u);
  r.ddelta = grad_like(p.delta);
  r.dA = grad_like(p.A);
  r.dB_ssm = grad_like(p.B_ssm);
  r.dC_ssm = grad_like(p.C_ssm);
  r.dD = grad_like(p.D);
  // dz over dout: backward_channel reads dout[i] before it writes dz[i], and no other task touches i.
  r.dz = dz_over_dout && p.z.defined() && dout.defined() ? dout : grad_like(p.z);
  r.ddelta_bias = grad_like(p.delta_bias);
  r.dinitial_state = grad_like(p.initial_state);
  dispatch_float(dt, kOp, [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    BackwardBuffers<scalar_t> g{};
    g.dout = optional_data<scalar_t>(dout);
    g.dlast_state = optional_data<scalar_t>(dlast_state);
    g.du = r.du.data<scalar_t>();
    g.ddelta = r.ddelta.data<scalar_t>();
    g.dz = optional_data<scalar_t>(r.dz);
    g.dinitial_state = optional_data<scalar_t>(r.dinitial_state);
    const ScanData<scalar_t> s = scan_data<scalar_t>(p, d);
    scalar_t *dA = r.dA.data<scalar_t>(), *dD = optional_data<scalar_t>(r.dD);
    scalar_t *ddelta_bias = optional_data<scalar_t>(r.ddelta_bias), *dB = r.dB_ssm.data<scalar_t>();
    scalar_t* dC = r.dC_ssm.data<scalar_t>();
    if (s.doc_start)
      backward_cpu<true>(s, g, dA, dD, ddelta_bias, dB, dC);
    else
      backward_cpu<false>(s, g, dA, dD, ddelta_bias, dB, dC);
  });
  return r;
}

}  // namespace mom::kernels
