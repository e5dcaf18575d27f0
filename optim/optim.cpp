#include <algorithm>
#include <cmath>
#include <set>

#include "autograd/grad_mode.h"
#include "optim/adamw.h"
#include "optim/clip.h"
#include "optim/schedule.h"

namespace mom::optim {

AdamW::AdamW(std::vector<ParamGroup> groups) : groups_(std::move(groups)) {
  std::set<std::string> seen;
  for (const ParamGroup& g : groups_)
    for (const auto& [name, p] : g.params) {
      MOM_CHECK(seen.insert(name).second, "adamw", "parameter '" << name << "' appears twice");
      MOM_CHECK(p.defined() && p.is_leaf() && p.requires_grad(), "adamw", "'" << name << "' is not a leaf that requires grad");
    }
}

AdamW AdamW::from_module(const nn::Module& module, const AdamWOptions& options) {
  std::vector<std::string> no_decay_names = module.no_decay_parameters();
  std::set<std::string> no_decay(no_decay_names.begin(), no_decay_names.end());
  ParamGroup decay{{}, options}, plain{{}, options};
  plain.options.weight_decay = 0.0;
  for (auto& [name, p] : module.named_parameters()) (no_decay.count(name) ? plain : decay).params.emplace_back(name, p);
  return AdamW({decay, plain});
}

void AdamW::step() {
  NoGradGuard guard;
  for (const ParamGroup& g : groups_) {
    kernels::AdamWHyper h{g.options.lr, g.options.beta1, g.options.beta2, g.options.eps, g.options.weight_decay};
    for (const auto& [name, p] : g.params) {
      Tensor grad = p.grad();
      if (!grad.defined()) continue;
      State& s = state_[name];
      if (!s.exp_avg.defined()) {
        s.exp_avg = zeros_like(p);
        s.exp_avg_sq = zeros_like(p);
      }
      s.step += 1;
      kernels::adamw_step(p, grad.contiguous(), s.exp_avg, s.exp_avg_sq, s.step, h);
    }
  }
}

void AdamW::zero_grad() {
  for (ParamGroup& g : groups_)
    for (auto& [name, p] : g.params) p.zero_grad();
}

void AdamW::set_lr(double lr) {
  for (ParamGroup& g : groups_) g.options.lr = lr;
}

std::map<std::string, Tensor> AdamW::state_dict() const {
  std::map<std::string, Tensor> out;
  for (const auto& [name, s] : state_) {
    out["state." + name + ".exp_avg"] = s.exp_avg;
    out["state." + name + ".exp_avg_sq"] = s.exp_avg_sq;
    out["state." + name + ".step"] = from_vector<int64_t>({s.step}, {1});
  }
  for (size_t i = 0; i < groups_.size(); ++i) {
    const AdamWOptions& o = groups_[i].options;
    out["groups." + std::to_string(i)] = from_vector<double>({o.lr, o.beta1, o.beta2, o.eps, o.weight_decay}, {5});
  }
  return out;
}

void AdamW::load_state_dict(const std::map<std::string, Tensor>& state) {
  std::map<std::string, State> loaded;
  std::map<std::string, Tensor> params;
  for (const ParamGroup& g : groups_)
    for (const auto& [name, p] : g.params) params[name] = p;
  for (size_t i = 0; i < groups_.size(); ++i) {
    auto it = state.find("groups." + std::to_string(i));
    MOM_CHECK(it != state.end() && it->second.numel() == 5 && it->second.dtype() == DType::f64, "adamw",
              "optimiser state lacks a valid entry for group " << i);
  }
  for (const auto& [key, t] : state) {
    if (key.rfind("groups.", 0) == 0) continue;
    MOM_CHECK(key.rfind("state.", 0) == 0, "adamw", "unexpected optimiser state entry '" << key << "'");
    size_t dot = key.rfind('.');
    std::string name = key.substr(6, dot - 6), field = key.substr(dot + 1);
    auto p = params.find(name);
    MOM_CHECK(p != params.end(), "adamw", "optimiser state for unknown parameter '" << name << "'");
    State& s = loaded[name];
    if (field == "step") {
      MOM_CHECK(t.dtype() == DType::i64 && t.numel() == 1, "adamw", "'" << key << "' must be one int64");
      s.step = t.to_vector<int64_t>()[0];
      continue;
    }
    MOM_CHECK(field == "exp_avg" || field == "exp_avg_sq", "adamw", "unexpected optimiser state entry '" << key << "'");
    MOM_CHECK(t.shape() == p->second.shape() && t.dtype() == p->second.dtype(), "adamw",
              "'" << key << "' has shape " << shape_str(t.shape()) << " " << dtype_name(t.dtype()) << ", the parameter is "
                  << shape_str(p->second.shape()) << " " << dtype_name(p->second.dtype()));
    (field == "exp_avg" ? s.exp_avg : s.exp_avg_sq) = t.detach().contiguous().to(p->second.device()).clone();
  }
  for (const auto& [name, s] : loaded)
    MOM_CHECK(s.exp_avg.defined() && s.exp_avg_sq.defined() && s.step > 0, "adamw", "incomplete optimiser state for '" << name << "'");
  for (size_t i = 0; i < groups_.size(); ++i) {
    std::vector<double> o = state.at("groups." + std::to_string(i)).to_vector<double>();
    groups_[i].options = {o[0], o[1], o[2], o[3], o[4]};
  }
  state_ = std::move(loaded);
}

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  NoGradGuard guard;
  double sq = 0;
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (g.defined()) sq += kernels::sum_of_squares(g.contiguous());
  }
  double norm = std::sqrt(sq);
  if (norm > max_norm) {
    double coef = max_norm / (norm + 1e-6);
    for (const Tensor& p : params) {
      Tensor g = p.grad();
      if (!g.defined()) continue;
      MOM_CHECK(g.is_contiguous(), "clip_grad_norm", "gradient of '" << p.name() << "' is not contiguous");
      kernels::scale_inplace(g, coef);
    }
  }
  return norm;
}

double WarmupCosine::lr_at(int64_t step) const {
  if (warmup > 0 && step <= warmup) return lr * static_cast<double>(step) / static_cast<double>(warmup);
  if (step >= total) return lr * min_lr_ratio;
  double progress = static_cast<double>(step - warmup) / static_cast<double>(std::max<int64_t>(1, total - warmup));
  double cosine = 0.5 * (1.0 + std::cos(M_PI * progress));
  return lr * (min_lr_ratio + (1.0 - min_lr_ratio) * cosine);
}

}  // namespace mom::optim
