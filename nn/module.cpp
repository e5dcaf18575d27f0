#include "nn/module.h"

#include <algorithm>
#include <set>

#include "autograd/grad_mode.h"

namespace mom::nn {

void Module::check_name(const std::string& name) const {
  MOM_CHECK(!name.empty() && name.find('.') == std::string::npos, "Module", "bad name '" << name << "'");
  bool taken = std::any_of(params_.begin(), params_.end(), [&](const Param& p) { return p.name == name; }) ||
               std::any_of(buffers_.begin(), buffers_.end(), [&](const auto& b) { return b.first == name; }) ||
               std::any_of(children_.begin(), children_.end(), [&](const auto& c) { return c.first == name; });
  MOM_CHECK(!taken, "Module", "name '" << name << "' is registered twice");
}

Tensor& Module::register_parameter(const std::string& name, Tensor t, bool weight_decay) {
  check_name(name);
  MOM_CHECK(t.defined() && is_floating(t.dtype()), "Module", "parameter '" << name << "' must be a floating tensor");
  t.set_requires_grad(true);
  t.set_name(name);
  params_.push_back({name, t, weight_decay});
  return params_.back().tensor;
}

Tensor& Module::register_buffer(const std::string& name, Tensor t) {
  check_name(name);
  buffers_.emplace_back(name, t);
  return buffers_.back().second;
}

void Module::collect(const std::string& prefix, std::vector<std::pair<std::string, Tensor>>& params,
                     std::vector<std::pair<std::string, Tensor>>* buffers, std::vector<std::string>* no_decay) const {
  for (const Param& p : params_) {
    params.emplace_back(prefix + p.name, p.tensor);
    if (no_decay && !p.weight_decay) no_decay->push_back(prefix + p.name);
  }
  if (buffers)
    for (const auto& [name, t] : buffers_) buffers->emplace_back(prefix + name, t);
  for (const auto& [name, child] : children_) child->collect(prefix + name + ".", params, buffers, no_decay);
}

std::vector<std::pair<std::string, Tensor>> Module::named_parameters() const {
  std::vector<std::pair<std::string, Tensor>> out;
  collect("", out, nullptr, nullptr);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [name, t] : named_parameters()) out.push_back(t);
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::named_buffers() const {
  std::vector<std::pair<std::string, Tensor>> params, buffers;
  collect("", params, &buffers, nullptr);
  return buffers;
}

std::vector<std::string> Module::no_decay_parameters() const {
  std::vector<std::pair<std::string, Tensor>> params;
  std::vector<std::string> names;
  collect("", params, nullptr, &names);
  return names;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto& [name, t] : named_parameters()) n += t.numel();
  return n;
}

void Module::zero_grad() {
  for (Tensor& t : parameters()) t.zero_grad();
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [name, child] : children_) child->train(on);
}

void Module::to(Device device) {
  NoGradGuard guard;
  auto move = [&](const Tensor& t) {
    if (t.device() == device) return;
    Tensor moved = t.detach().to(device);
    TensorImpl* impl = t.impl();
    impl->storage = moved.storage();
    impl->strides = moved.strides();
    impl->offset = moved.offset();
    if (impl->grad) impl->grad = Tensor(impl->grad).to(device).impl_ptr();
  };
  for (auto& [name, t] : named_parameters()) move(t);
  for (auto& [name, t] : named_buffers()) move(t);
}

std::map<std::string, Tensor> Module::state_dict() const {
  std::map<std::string, Tensor> out;
  for (auto& [name, t] : named_parameters()) out[name] = t.detach();
  for (auto& [name, t] : named_buffers()) out[name] = t.detach();
  return out;
}

namespace {
void check_entry(const Tensor& t, const Tensor& src, const std::string& name) {
  MOM_CHECK(src.defined(), "load_state_dict", "'" << name << "' is undefined in the checkpoint");
  MOM_CHECK(src.shape() == t.shape(), "load_state_dict",
            "'" << name << "' has shape " << shape_str(src.shape()) << " in the checkpoint, the model expects "
                << shape_str(t.shape()));
  MOM_CHECK(src.dtype() == t.dtype(), "load_state_dict",
            "'" << name << "' is " << dtype_name(src.dtype()) << " in the checkpoint, the model expects "
                << dtype_name(t.dtype()));
}
}  // namespace

void assign_data(const Tensor& t, const Tensor& src, const std::string& name) {
  check_entry(t, src, name);
  Tensor data = src.detach().contiguous().to(t.device()).clone();
  TensorImpl* impl = t.impl();
  data.bump_version();
  impl->storage = data.storage();
  impl->strides = data.strides();
  impl->offset = data.offset();
}

void Module::load_state_dict(const std::map<std::string, Tensor>& state) {
  std::map<std::string, Tensor> own;  // the live tensors (state_dict() holds detached aliases)
  for (auto& [name, t] : named_parameters()) own[name] = t;
  for (auto& [name, t] : named_buffers()) own[name] = t;
  std::vector<std::string> missing, unexpected;
  for (const auto& [name, t] : own)
    if (!state.count(name)) missing.push_back(name);
  for (const auto& [name, t] : state)
    if (!own.count(name)) unexpected.push_back(name);
  auto join = [](const std::vector<std::string>& v) {
    std::string s;
    for (size_t i = 0; i < v.size() && i < 8; ++i) s += (i ? ", " : "") + v[i];
    if (v.size() > 8) s += ", ... (" + std::to_string(v.size()) + " in all)";
    return s;
  };
  MOM_CHECK(missing.empty(), "load_state_dict", "missing entries: " << join(missing));
  MOM_CHECK(unexpected.empty(), "load_state_dict", "unexpected entries: " << join(unexpected));
  for (const auto& [name, t] : own) check_entry(t, state.at(name), name);  // all or nothing
  for (const auto& [name, t] : own) assign_data(t, state.at(name), name);
}

}  // namespace mom::nn
