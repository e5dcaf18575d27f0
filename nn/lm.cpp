#include "nn/lm.h"

#include <cmath>
#include <cstdio>
#include <map>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "kernels/optimizer.h"

namespace mom::nn {

namespace {
class LayerList : public Module {
 public:
  void add(const std::string& name, const std::shared_ptr<Module>& m) { register_module(name, m); }
};
}  // namespace

ResidualBlock::ResidualBlock(const LMConfig& config, Generator& gen, DType dtype) {
  mixer = register_module("mixer", std::make_shared<MambaBlock>(config.mixer, gen, dtype));
  norm = register_module("norm", std::make_shared<RMSNorm>(config.mixer.d_model, config.norm_eps, dtype));
}

Tensor ResidualBlock::forward(const Tensor& x, const Routing& routing, MambaLayerState* state,
                              const Tensor& doc_start, DType compute, Tensor* aux) const {
  return add(x, cast(mixer->forward(norm->forward(x, compute), routing, state, doc_start, aux), x.dtype()));
}

MambaLM::MambaLM(const LMConfig& config, Generator& gen, DType dtype)
    : config_(config), param_dtype_(dtype), compute_(dtype) {
  config_.mixer.validate();
  MOM_CHECK(config_.vocab_size >= 1 && config_.n_layers >= 1, "MambaLM", "vocab_size and n_layers must be positive");
  embedding = register_module("embedding", std::make_shared<Embedding>(config_.vocab_size, config_.mixer.d_model, gen, dtype));
  auto list = register_module("layers", std::make_shared<LayerList>());
  for (int64_t i = 0; i < config_.n_layers; ++i) {
    layers.push_back(std::make_shared<ResidualBlock>(config_, gen, dtype));
    list->add(std::to_string(i), layers.back());
  }
  norm_f = register_module("norm_f", std::make_shared<RMSNorm>(config_.mixer.d_model, config_.norm_eps, dtype));
  if (!config_.tie_embeddings)
    lm_head = register_module("lm_head", std::make_shared<Linear>(config_.mixer.d_model, config_.vocab_size, false, gen, dtype));
  // mamba's rescale of the pre-norm residual branch: out_proj weights / sqrt(n_layers).
  NoGradGuard no_grad;
  for (const auto& layer : layers)
    for (const auto& lin : layer->mixer->out_proj.linears())
      kernels::scale_inplace(lin->weight, 1.0 / std::sqrt(static_cast<double>(config_.n_layers)));
}

Tensor MambaLM::run(const Tensor& tokens, const Tensor& modalities, const Tensor& doc_start, LMState* state) const {
  MOM_CHECK(tokens.dim() == 2 && modalities.shape() == tokens.shape(), "MambaLM",
            "tokens and modalities must both be (B, L), got " << shape_str(tokens.shape()) << " and "
                                                             << shape_str(modalities.shape()));
  const int64_t B = tokens.size(0);
  Tensor starts;  // contiguous bool on the tokens' device, as the kernels take it
  if (doc_start.defined()) {
    MOM_CHECK(doc_start.dtype() == DType::boolean && doc_start.shape() == tokens.shape(), "MambaLM",
              "doc_start must be bool of the tokens' shape " << shape_str(tokens.shape()) << ", got "
                                                              << dtype_name(doc_start.dtype()) << " "
                                                              << shape_str(doc_start.shape()));
    starts = doc_start.to(tokens.device()).contiguous();
  }
  if (state && starts.defined() && tokens.size(1) > 0) {
    // Rows whose first token starts a document continue no state: zero theirs (a flag at t = 0 cuts
    // nothing in the kernels).
    // (A bf16 conv window is scaled in float32: the elementwise kernels take float32 and float64.)
    const DType dt = (*state)[0].ssm.dtype();
    Tensor keep = sub(scalar_tensor(1.0, dt).to(tokens.device()), starts.narrow(1, 0, 1).contiguous().to(dt));
    keep = reshape(keep, {B, 1, 1});
    for (MambaLayerState& s : *state) {
      s.conv_window = mul(s.conv_window.to(dt), keep).to(s.conv_window.dtype());
      s.ssm = mul(s.ssm, keep);
    }
  }
  Routing routing = Routing::from_modalities(modalities.contiguous().reshape({-1}), config_.mixer.n_modalities);
  Tensor h = embedding->forward(tokens);
  Tensor aux;
  for (size_t i = 0; i < layers.size(); ++i)
    h = layers[i]->forward(h, routing, state ? &(*state)[i] : nullptr, starts, compute_, &aux);
  aux_loss_ = aux;
  h = norm_f->forward(h, compute_);
  if (lm_head) return lm_head->forward(h);
  const int64_t L = tokens.size(1), D = config_.mixer.d_model;
  Tensor logits = matmul(reshape(h, {B * L, D}), transpose(weight_for(embedding->weight, h), 0, 1));
  return reshape(logits, {B, L, config_.vocab_size});
}

Tensor MambaLM::forward(const Tensor& tokens, const Tensor& modalities, const Tensor& doc_start) const {
  return run(tokens, modalities, doc_start, nullptr);
}

LMState MambaLM::allocate_state(int64_t batch) const {
  LMState s;
  for (const auto& layer : layers) s.push_back(layer->mixer->allocate_state(batch, compute_));
  return s;
}

void MambaLM::set_compute_dtype(DType dtype) {
  MOM_CHECK(dtype == param_dtype_ || (dtype == DType::bf16 && param_dtype_ == DType::f32), "MambaLM",
            "computes in its parameters' dtype, or in bfloat16 beside float32 parameters; got "
                << dtype_name(dtype) << " for " << dtype_name(param_dtype_) << " parameters");
  compute_ = dtype;
}

Tensor MambaLM::step(const Tensor& token, const Tensor& modality, LMState& state, const Tensor& doc_start) const {
  MOM_CHECK(token.dim() == 1 && modality.shape() == token.shape(), "MambaLM::step",
            "token and modality must both be (B), got " << shape_str(token.shape()) << " and " << shape_str(modality.shape()));
  MOM_CHECK(state.size() == layers.size(), "MambaLM::step", "state has " << state.size() << " layers, the model " << layers.size());
  const int64_t B = token.size(0);
  MOM_CHECK(!doc_start.defined() || doc_start.shape() == token.shape(), "MambaLM::step",
            "doc_start must be (B) like the token, got " << shape_str(doc_start.shape()));
  Tensor logits = run(token.reshape({B, 1}), modality.reshape({B, 1}),
                      doc_start.defined() ? doc_start.reshape({B, 1}) : Tensor(), &state);
  return logits.detach().reshape({B, config_.vocab_size}).to(param_dtype_);
}

Tensor MambaLM::prefill(const Tensor& tokens, const Tensor& modalities, LMState& state, const Tensor& doc_start) const {
  MOM_CHECK(tokens.dim() == 2, "MambaLM::prefill", "tokens must be (B, L), got " << shape_str(tokens.shape()));
  MOM_CHECK(state.size() == layers.size(), "MambaLM::prefill",
            "state has " << state.size() << " layers, the model " << layers.size());
  NoGradGuard no_grad;
  return run(tokens, modalities, doc_start, &state).detach();
}

std::string MambaLM::parameter_summary() const {
  // Group by component: embedding, per-layer kinds (norm, in_proj, conv1d, x_proj, dt_proj, out_proj,
  // A_log, D), norm_f, lm_head.
  std::map<std::string, int64_t> by;
  std::vector<std::string> order;
  int64_t total = 0;
  for (const auto& [name, t] : named_parameters()) {
    std::string key = name;
    if (name.rfind("layers.", 0) == 0) {
      std::string rest = name.substr(name.find('.', 7) + 1);  // drop "layers.<i>."
      if (rest.rfind("mixer.", 0) == 0) rest = rest.substr(6);
      key = "layers.*." + rest.substr(0, rest.find('.'));
      if (key == "layers.*.local_experts_in_proj" || key == "layers.*.in_proj") key = "layers.*.in_proj";
    } else {
      key = name.substr(0, name.find('.'));
    }
    for (const char* p : {"x_proj", "dt_proj", "out_proj"})
      if (key == std::string("layers.*.local_experts_") + p) key = std::string("layers.*.") + p;
    if (!by.count(key)) order.push_back(key);
    by[key] += t.numel();
    total += t.numel();
  }
  std::string out;
  char line[128];
  for (const std::string& k : order) {
    std::snprintf(line, sizeof line, "  %-22s %12lld  %5.1f%%\n", k.c_str(), static_cast<long long>(by[k]),
                  100.0 * static_cast<double>(by[k]) / static_cast<double>(total));
    out += line;
  }
  std::snprintf(line, sizeof line, "  %-22s %12lld\n", "total", static_cast<long long>(total));
  return out + line;
}

}  // namespace mom::nn
