#include "nn/mamba.h"

#include <cmath>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "autograd/selective_scan.h"
#include "kernels/reduce.h"

namespace mom::nn {

void MambaConfig::validate() const {
  MOM_CHECK(d_model >= 1 && d_state >= 1 && expand >= 1, "MambaConfig",
            "d_model, d_state and expand must be positive (got " << d_model << ", " << d_state << ", " << expand << ")");
  MOM_CHECK(d_conv >= 2 && d_conv <= 8, "MambaConfig", "d_conv must be in [2, 8], got " << d_conv);
  MOM_CHECK(dt_rank >= 0, "MambaConfig", "dt_rank must be positive or 0 (auto), got " << dt_rank);
  MOM_CHECK(dt_min > 0 && dt_max >= dt_min && dt_init_floor > 0, "MambaConfig",
            "need 0 < dt_min <= dt_max and dt_init_floor > 0");
  MOM_CHECK(n_modalities >= 1, "MambaConfig", "n_modalities must be at least 1, got " << n_modalities);
  MOM_CHECK(!learned_routing || (n_modalities >= 2 && any_split()), "MambaConfig",
            "learned routing needs at least 2 experts (n_modalities) and a split projection");
  MOM_CHECK(load_balance >= 0 && std::isfinite(load_balance), "MambaConfig",
            "load_balance must be a finite number >= 0, got " << load_balance);
}

Tensor Projection::forward(const Tensor& x, const Routing& routing) const {
  return split ? split->forward(x, routing) : shared->forward(x);
}

std::vector<Tensor> Projection::forward_split(const Tensor& x, const Routing& routing,
                                             const std::vector<int64_t>& split_sizes, kernels::RowOrder order) const {
  if (split) return split->forward_split(x, routing, split_sizes, order);
  MOM_CHECK(order.x_grouped == order.y_grouped, "Projection", "a shared projection keeps the row order of its input");
  return shared->forward_split(x, split_sizes);
}

std::vector<std::shared_ptr<Linear>> Projection::linears() const {
  return split ? split->experts : std::vector<std::shared_ptr<Linear>>{shared};
}

Projection MambaBlock::make_projection(const std::string& name, bool split, int64_t in, int64_t out, bool bias,
                                       Generator& gen) {
  Projection p;
  if (split)
    p.split = register_module("local_experts_" + name,
                              std::make_shared<ModalityLinear>(in, out, config_.n_modalities, bias, gen, dtype_));
  else
    p.shared = register_module(name, std::make_shared<Linear>(in, out, bias, gen, dtype_));
  return p;
}

MambaBlock::MambaBlock(const MambaConfig& config, Generator& gen, DType dtype) : config_(config), dtype_(dtype) {
  config_.validate();
  const int64_t D_model = config_.d_model, E = config_.d_inner(), N = config_.d_state, R = config_.rank();
  in_proj = make_projection("in_proj", config_.split_in_proj, D_model, 2 * E, config_.proj_bias, gen);
  conv1d = register_module("conv1d", std::make_shared<CausalConv1d>(E, config_.d_conv, config_.conv_bias, gen, dtype));
  x_proj = make_projection("x_proj", config_.split_x_proj, E, R + 2 * N, false, gen);
  dt_proj = make_projection("dt_proj", config_.split_dt_proj, R, E, true, gen);
  out_proj = make_projection("out_proj", config_.split_out_proj, E, D_model, config_.proj_bias, gen);

  // dt_proj: weight U(+-R^-0.5); bias = softplus^-1(dt), dt log-uniform in [dt_min, dt_max], floored.
  NoGradGuard no_grad;
  double std = 1.0 / std::sqrt(static_cast<double>(R));
  for (const auto& lin : dt_proj.linears()) {
    assign_data(lin->weight, uniform({E, R}, -std, std, gen, dtype), "dt_proj.weight");
    std::vector<double> b(E);
    for (double& v : b) {
      double dt = std::exp(gen.uniform() * (std::log(config_.dt_max) - std::log(config_.dt_min)) + std::log(config_.dt_min));
      dt = std::max(dt, config_.dt_init_floor);
      v = dt + std::log(-std::expm1(-dt));  // softplus^-1(dt)
    }
    assign_data(lin->bias, from_vector<double>(b, {E}).to(dtype), "dt_proj.bias");
  }
  std::vector<double> a_log(E * N);
  for (int64_t e = 0; e < E; ++e)
    for (int64_t n = 0; n < N; ++n) a_log[e * N + n] = std::log(static_cast<double>(n + 1));
  A_log = register_parameter("A_log", from_vector<double>(a_log, {E, N}).to(dtype), /*weight_decay=*/false);
  D = register_parameter("D", ones({E}, dtype), /*weight_decay=*/false);
  if (config_.learned_routing)
    router = register_module("router", std::make_shared<Linear>(D_model, config_.n_modalities, false, gen, dtype));
}

MambaLayerState MambaBlock::allocate_state(int64_t batch, DType compute) const {
  return {zeros({batch, config_.d_conv - 1, config_.d_inner()}, compute, A_log.device()),
          zeros({batch, config_.d_inner(), config_.d_state}, dtype_, A_log.device())};
}

Tensor MambaBlock::forward(const Tensor& x, const Routing& given, MambaLayerState* state,
                           const Tensor& doc_start, Tensor* aux) const {
  MOM_CHECK(x.dim() == 3 && x.size(2) == config_.d_model, "MambaBlock",
            "input must be (B, L, " << config_.d_model << "), got " << shape_str(x.shape()));
  const int64_t B = x.size(0), L = x.size(1), T = B * L;
  const int64_t E = config_.d_inner(), N = config_.d_state, R = config_.rank();
  // Learned routing: each token's expert is the router's argmax over its input (computed in the
  // parameters' dtype), the gate that expert's probability.
  Routing learned;
  Tensor gate;
  if (router) {
    const int64_t M = config_.n_modalities;
    const DType pdt = router->weight.dtype();
    const Tensor xr = cast(reshape(x, {T, config_.d_model}), pdt);
    const Tensor probs = softmax(router->forward(xr), 1);  // (T, M)
    const Tensor expert = kernels::max(probs.detach(), 1, false).indices;
    learned = Routing::from_modalities(expert, M);
    gate = gather(probs, 1, expert.reshape({T, 1}));  // (T, 1)
    if (aux) {
      std::vector<double> share(M);
      for (int64_t m = 0; m < M; ++m) share[m] = static_cast<double>(learned.counts[m]) / static_cast<double>(T);
      const Tensor f = from_vector<double>(share, {M}).to(pdt).to(x.device());
      const Tensor term = mul(sum(mul(mean(probs, {0}), f)), config_.load_balance * static_cast<double>(M));
      *aux = aux->defined() ? add(*aux, term) : term;
    }
  }
  const Routing& routing = router ? learned : given;
  MOM_CHECK(routing.num_tokens() == T, "MambaBlock", "routing covers " << routing.num_tokens() << " tokens, the input has " << T);

  // Grouped rows: when in_proj and out_proj are routed, the activations between them keep the
  // routing's grouped order (row p is token routing.perm[p]); the conv and the scan read and write their
  // rows through routing.inverse, so only in_proj's gather and out_proj's scatter move rows.
  const bool grouped = config_.split_in_proj && config_.split_out_proj;
  const Routing* order = grouped ? &routing : nullptr;
  const kernels::RowOrder in_order{false, grouped}, inner{grouped, grouped}, out_order{grouped, false};
  std::vector<Tensor> xz = in_proj.forward_split(reshape(x, {T, config_.d_model}), routing, {E, E}, in_order);
  CausalConv1dResult conv =
      conv1d->forward(reshape(xz[0], {B, L, E}), state ? state->conv_window : Tensor(), true, order, doc_start);
  std::vector<Tensor> dbc = x_proj.forward_split(reshape(conv.out, {T, E}), routing, {R, N, N}, inner);
  Tensor dt = dt_proj.forward_split(dbc[0], routing, {E}, inner)[0];

  kernels::SelectiveScanParams in;
  in.u = conv.out;
  in.delta = reshape(dt, {B, L, E});
  in.A = neg(exp(A_log));
  in.B_ssm = reshape(dbc[1], {B, L, N});
  in.C_ssm = reshape(dbc[2], {B, L, N});
  in.D = D;
  in.z = reshape(xz[1], {B, L, E});
  in.initial_state = state ? state->ssm : Tensor();
  in.delta_softplus = true;
  in.order = order;
  in.doc_start = doc_start;
  SelectiveScanResult scan = selective_scan(in);
  if (state) {
    state->conv_window = conv.final_window.detach();
    state->ssm = scan.last_state.detach();
  }
  Tensor out = out_proj.forward_split(reshape(scan.out, {T, E}), routing, {config_.d_model}, out_order)[0];
  // The gate multiplies in its own dtype, so that its gradient (a sum over the row) runs in float32 or
  // float64 under bf16 compute as well.
  if (gate.defined()) out = cast(mul(cast(out, gate.dtype()), gate), out.dtype());
  return reshape(out, {B, L, config_.d_model});
}

}  // namespace mom::nn
