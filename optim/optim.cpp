#include <algorithm>
#include <cmath>
#include <set>

#include "autograd/grad_mode.h"
#include "kernels/elementwise.h"
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
    // The parameters with a gradient, one list per device (in order of first appearance), each
    // updated by one multi-tensor call; step counts advance once the call has accepted its list.
    struct Lists {
      Device device;
      std::vector<Tensor> p, grad, m, v;
      std::vector<int64_t> steps;
      std::vector<State*> states;
    };
    std::vector<Lists> lists;
    for (const auto& [name, p] : g.params) {
      Tensor grad = p.grad();
      if (!grad.defined()) continue;
      State& s = state_[name];
      if (!s.exp_avg.defined()) {
        s.exp_avg = zeros_like(p);
        s.exp_avg_sq = zeros_like(p);
      }
      auto it = std::find_if(lists.begin(), lists.end(), [&](const Lists& l) { return l.device == p.device(); });
      if (it == lists.end()) it = lists.insert(lists.end(), Lists{p.device(), {}, {}, {}, {}, {}, {}});
      it->p.push_back(p);
      it->grad.push_back(grad.contiguous());
      it->m.push_back(s.exp_avg);
      it->v.push_back(s.exp_avg_sq);
      it->steps.push_back(s.step + 1);
      it->states.push_back(&s);
    }
    for (Lists& l : lists) {
      kernels::adamw_step_multi(l.p, l.grad, l.m, l.v, l.steps, h);
      for (State* s : l.states) s->step += 1;
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
    if (key.rfind("groups.", 0) == 0) {
      bool known = false;
      for (size_t i = 0; i < groups_.size(); ++i) known = known || key == "groups." + std::to_string(i);
      MOM_CHECK(known, "adamw", "unexpected optimiser state entry '" << key << "' (the optimiser has " << groups_.size()
                                                                    << " groups)");
      continue;
    }
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
  for (const auto& [name, s] : loaded) {
    Tensor v = s.exp_avg_sq.to(Device::cpu()).to(DType::f64);
    const std::vector<double> values = v.to_vector<double>();
    MOM_CHECK(std::all_of(values.begin(), values.end(), [](double x) { return x >= 0; }), "adamw",
              "'state." << name << ".exp_avg_sq' holds negative values: a second moment is a mean of squares");
  }
  std::vector<AdamWOptions> options;
  for (size_t i = 0; i < groups_.size(); ++i) {
    std::vector<double> o = state.at("groups." + std::to_string(i)).to_vector<double>();
    AdamWOptions opt{o[0], o[1], o[2], o[3], o[4]};
    auto finite_at_least = [](double x, double lo) { return std::isfinite(x) && x >= lo; };
    MOM_CHECK(finite_at_least(opt.lr, 0) && finite_at_least(opt.beta1, 0) && opt.beta1 < 1 &&
                  finite_at_least(opt.beta2, 0) && opt.beta2 < 1 && finite_at_least(opt.eps, 0) && opt.eps > 0 &&
                  finite_at_least(opt.weight_decay, 0),
              "adamw", "group " << i << "'s hyper-parameters are out of range: lr " << opt.lr << " (>= 0), betas "
                                << opt.beta1 << ", " << opt.beta2 << " ([0, 1)), eps " << opt.eps << " (> 0), weight decay "
                                << opt.weight_decay << " (>= 0)");
    options.push_back(opt);
  }
  for (size_t i = 0; i < groups_.size(); ++i) groups_[i].options = options[i];
  state_ = std::move(loaded);
}

std::vector<std::string> AdamW::parameters_without_state() const {
  std::vector<std::string> out;
  for (const ParamGroup& g : groups_)
    for (const auto& [name, p] : g.params)
      if (!state_.count(name)) out.push_back(name);
  return out;
}

Tensor clip_grad_norm_async(const std::vector<Tensor>& params, double max_norm) {
  NoGradGuard guard;
  std::vector<Device> devices;
  std::vector<std::vector<Tensor>> grads;  // per device, in parameter order
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    MOM_CHECK(g.is_contiguous(), "clip_grad_norm", "gradient of '" << p.name() << "' is not contiguous");
    size_t d = std::find(devices.begin(), devices.end(), g.device()) - devices.begin();
    if (d == devices.size()) {
      devices.push_back(g.device());
      grads.emplace_back();
    }
    grads[d].push_back(g);
  }
  if (devices.empty()) return zeros({}, DType::f64);
  Tensor total_sq = kernels::sum_of_squares_multi(grads[0]);
  for (size_t d = 1; d < devices.size(); ++d)
    total_sq = kernels::add(total_sq, kernels::sum_of_squares_multi(grads[d]).to(devices[0]));
  for (size_t d = 0; d < devices.size(); ++d) kernels::clip_by_total_norm(grads[d], total_sq.to(devices[d]), max_norm);
  return kernels::unary(kernels::UnaryOp::sqrt, total_sq);
}

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  return clip_grad_norm_async(params, max_norm).item();
}

double WarmupCosine::lr_at(int64_t step) const {
  if (warmup > 0 && step <= warmup) return lr * static_cast<double>(step) / static_cast<double>(warmup);
  if (step >= total) return lr * min_lr_ratio;
  double progress = static_cast<double>(step - warmup) / static_cast<double>(std::max<int64_t>(1, total - warmup));
  double cosine = 0.5 * (1.0 + std::cos(M_PI * progress));
  return lr * (min_lr_ratio + (1.0 - min_lr_ratio) * cosine);
}

}  // namespace mom::optim
