// The Mamba block (dense) and the Mixture-of-Mamba block, one class: each of the four projections is
// split by modality (a ModalityLinear over the batch's Routing) or shared (a Linear) by its flag.
//
// With E = expand * D, R = dt_rank (ceil(D / 16) when 0), N = d_state, W = d_conv, m(t) = modality:
//     xz  = in_proj[m](x)                   (T, 2E)   -> x (T, E), z (T, E)
//     x   = silu(causal_conv1d(x))          depthwise, weight (E, 1, W), bias (E)       shared
//     dbc = x_proj[m](x)                    (T, R+2N) -> dt_low (T, R), B (T, N), C (T, N)
//     dt  = dt_proj[m](dt_low)              (T, E), with bias (per modality when split)
//     y   = selective_scan(x, dt, A = -exp(A_log), B, C, D, z, softplus on dt)           shared A_log, D
//     out = out_proj[m](y)                  (T, D)
// The dt bias is applied inside dt_proj (not as the scan's delta_bias) so that it can differ per
// modality; for a shared dt_proj the two are the same math. A shared dt_proj keeps its bias.
// When in_proj and out_proj are split, the rows between them stay in the routing's grouped order (the
// conv and the scan read them through routing.inverse): the same numbers, fewer row moves.
//
// Parameter names follow the published modules: in_proj.weight when shared,
// local_experts_in_proj.<m>.weight when split (likewise x_proj, dt_proj, out_proj), conv1d.weight
// (E, 1, W), conv1d.bias, A_log (E, N), D (E).
//
// Initialisation as the published code: A_log[e, n] = log(n + 1); D = 1; dt_proj weight U(+-R^-0.5);
// dt_proj bias = softplus^-1(dt) with dt log-uniform in [dt_min, dt_max], floored at dt_init_floor;
// the other projections U(+-1/sqrt(in)) (PyTorch's Linear). A_log and D get no weight decay.
#pragma once

#include <memory>

#include "nn/layers.h"

namespace mom::nn {

struct MambaConfig {
  int64_t d_model = 64;
  int64_t d_state = 16;
  int64_t d_conv = 4;
  int64_t expand = 2;
  int64_t dt_rank = 0;  // 0 = "auto" = ceil(d_model / 16)
  double dt_min = 1e-3;
  double dt_max = 0.1;
  double dt_init_floor = 1e-4;
  int64_t n_modalities = 1;
  bool split_in_proj = false;
  bool split_x_proj = false;
  bool split_dt_proj = false;
  bool split_out_proj = false;
  bool conv_bias = true;
  bool proj_bias = false;  // in_proj, x_proj and out_proj biases (mamba's `bias`)
  // Learned routing, the mixture-of-experts baseline: a router (`router.weight`, a Linear d_model ->
  // n_modalities experts without bias, on the block's input) picks each token's expert, top-1, in place
  // of its modality; the split projections route by that choice as they route by the modality, and the
  // block's output is scaled by the chosen expert's softmax probability (the gate, through which the
  // router learns). The block adds load_balance * M * sum_m f_m P_m to the model's auxiliary loss
  // (Switch Transformer's: f_m the share of tokens routed to expert m, P_m the mean probability of m).
  bool learned_routing = false;
  double load_balance = 0.01;

  int64_t d_inner() const { return expand * d_model; }
  int64_t rank() const { return dt_rank > 0 ? dt_rank : (d_model + 15) / 16; }
  bool any_split() const { return split_in_proj || split_x_proj || split_dt_proj || split_out_proj; }
  void validate() const;  // throws [MambaConfig] on a bad value
};

// The per-layer recurrent state: the conv window and the SSM state.
struct MambaLayerState {
  Tensor conv_window;  // (B, W-1, E)
  Tensor ssm;          // (B, E, N)
};

// A projection that is either shared (a Linear, registered as `name`) or split (a ModalityLinear,
// registered as local_experts_<name>).
struct Projection {
  std::shared_ptr<Linear> shared;
  std::shared_ptr<ModalityLinear> split;
  Tensor forward(const Tensor& x, const Routing& routing) const;  // x (T, In) -> (T, Out)
  // The output's columns in parts of split[i], without a copy to cut them (the forward_split of Linear
  // and of ModalityLinear, nn/layers.h), and the rows of x and of the parts in token or grouped order
  // (a shared Linear is row-wise: it takes and gives one order).
  std::vector<Tensor> forward_split(const Tensor& x, const Routing& routing, const std::vector<int64_t>& split,
                                    kernels::RowOrder order = {}) const;
  std::vector<std::shared_ptr<Linear>> linears() const;  // the expert(s)
};

class MambaBlock : public Module {
 public:
  MambaBlock(const MambaConfig& config, Generator& gen, DType dtype = DType::f32);

  // x (B, L, D), routing over the B*L tokens in row-major order -> (B, L, D). With a state, the
  // sequence continues from it and the state is replaced by the one after the last token.
  // doc_start (B, L) bool, or undefined: true at the first token of each document of a packed row; the
  // conv and the scan read nothing across it (kernels/selective_scan.h, kernels/causal_conv1d.h), so
  // each document's outputs are those of the document alone. A flag at t = 0 cuts nothing: a row
  // continuing a state that begins a new document must have that state zeroed (MambaLM does).
  // aux: with learned routing, the block's load-balancing term is added to *aux (defined or not).
  Tensor forward(const Tensor& x, const Routing& routing, MambaLayerState* state = nullptr,
                 const Tensor& doc_start = Tensor(), Tensor* aux = nullptr) const;
  // The conv window in the dtype of the activations (compute: bf16 under mixed precision), the SSM
  // state in the parameters' dtype (the scan's state stays float32 beside bf16).
  MambaLayerState allocate_state(int64_t batch, DType compute) const;
  MambaLayerState allocate_state(int64_t batch) const { return allocate_state(batch, dtype_); }

  const MambaConfig& config() const { return config_; }
  Projection in_proj, x_proj, dt_proj, out_proj;
  std::shared_ptr<CausalConv1d> conv1d;
  Tensor A_log, D;
  std::shared_ptr<Linear> router;  // learned routing only

 private:
  Projection make_projection(const std::string& name, bool split, int64_t in, int64_t out, bool bias, Generator& gen);
  MambaConfig config_;
  DType dtype_;
};

}  // namespace mom::nn
