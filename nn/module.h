// Module: named parameters, buffers and submodules, as PyTorch's nn.Module.
//
// Names are hierarchical ("layers.3.mixer.in_proj.weight") and follow registration order; they drive
// checkpoints (state_dict), weight-decay groups and debugging. Parameters are leaf tensors that require
// grad; buffers are state that is saved but not trained. Submodules are held by shared_ptr.
// to(Device) and load_state_dict replace a parameter's data in place (same TensorImpl), so every holder
// of the handle sees the change, as PyTorch's param.data assignment does.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace mom::nn {

class Module {
 public:
  virtual ~Module() = default;

  std::vector<std::pair<std::string, Tensor>> named_parameters() const;
  std::vector<Tensor> parameters() const;
  std::vector<std::pair<std::string, Tensor>> named_buffers() const;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_children() const { return children_; }
  // Full names of the parameters registered without weight decay (A_log, D, biases, norms, embedding).
  std::vector<std::string> no_decay_parameters() const;
  int64_t num_parameters() const;

  void zero_grad();
  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }
  void to(Device device);

  // Parameters and buffers by full name.
  std::map<std::string, Tensor> state_dict() const;
  // Copies values in. Errors name the entry: missing, unexpected, shape or dtype mismatch.
  void load_state_dict(const std::map<std::string, Tensor>& state);

 protected:
  Tensor& register_parameter(const std::string& name, Tensor t, bool weight_decay = true);
  Tensor& register_buffer(const std::string& name, Tensor t);
  template <typename M> std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    check_name(name);
    children_.emplace_back(name, m);
    return m;
  }

 private:
  struct Param {
    std::string name;
    Tensor tensor;
    bool weight_decay;
  };
  void check_name(const std::string& name) const;
  void collect(const std::string& prefix, std::vector<std::pair<std::string, Tensor>>& params,
               std::vector<std::pair<std::string, Tensor>>* buffers, std::vector<std::string>* no_decay) const;

  std::vector<Param> params_;
  std::vector<std::pair<std::string, Tensor>> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

// Replaces t's data with src's (same shape), keeping t's TensorImpl, dtype, device and autograd flags.
void assign_data(const Tensor& t, const Tensor& src, const std::string& name);

}  // namespace mom::nn
