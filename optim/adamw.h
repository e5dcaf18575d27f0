// AdamW with decoupled weight decay, PyTorch's semantics (torch.optim.AdamW): defaults lr 1e-3,
// betas (0.9, 0.999), eps 1e-8, weight_decay 1e-2; our configs use betas (0.9, 0.95).
//
// Parameters come in groups, each with its own hyper-parameters; from_module() makes the usual two:
// decay for weights, none for what the module registered without decay (A_log, D, biases, norm
// weights, the embedding). A parameter whose grad is undefined is skipped entirely: its moments and
// step count stay as they were, as PyTorch does. The state (moments, per-parameter step counts,
// hyper-parameters) round-trips through state_dict() so training resumes exactly.
//
// step() updates each group's parameters that have a gradient with one multi-tensor call per device
// (kernels::adamw_step_multi: a few CUDA launches for the whole group, the per-tensor loop on the
// CPU), with the bits of one adamw_step per parameter. The moments live on their parameter's device
// (created there, and moved there by load_state_dict); nothing is read back to the host.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "kernels/optimizer.h"
#include "nn/module.h"

namespace mom::optim {

struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-2;
};

struct ParamGroup {
  std::vector<std::pair<std::string, Tensor>> params;  // names key the optimiser state
  AdamWOptions options;
};

class AdamW {
 public:
  explicit AdamW(std::vector<ParamGroup> groups);
  // Two groups over module.named_parameters(): weight decay as `options`, and none for the module's
  // no_decay_parameters().
  static AdamW from_module(const nn::Module& module, const AdamWOptions& options);

  void step();
  void zero_grad();
  void set_lr(double lr);  // every group (the schedule's value)
  std::vector<ParamGroup>& groups() { return groups_; }

  std::map<std::string, Tensor> state_dict() const;
  // All or nothing: every entry must belong to a parameter, with moments of its shape, a step count
  // >= 1, second moments >= 0, and each group's hyper-parameters in range; throws [adamw] otherwise.
  void load_state_dict(const std::map<std::string, Tensor>& state);
  // The parameters that have no state yet (no gradient has reached them since the start).
  std::vector<std::string> parameters_without_state() const;

 private:
  struct State {
    Tensor exp_avg, exp_avg_sq;
    int64_t step = 0;
  };
  std::vector<ParamGroup> groups_;
  std::map<std::string, State> state_;
};

}  // namespace mom::optim
