// The language model: embedding -> n_layers x (RMSNorm -> MambaBlock -> residual) -> RMSNorm -> head.
// The head is tied to the embedding by default (logits = h @ embedding.weight^T).
//
// Names follow mamba's MambaLMHeadModel without its "backbone." prefix: embedding.weight,
// layers.<i>.norm.weight, layers.<i>.mixer.<...>, norm_f.weight, and lm_head.weight when untied.
// Routing: computed once per forward from the modality ids and shared by every layer.
//
// Recurrent inference: allocate_state(batch), then step(token, modality, state) -> logits per token;
// each layer carries its conv window and SSM state, for dense and MoM alike, and the logits equal the
// parallel forward's.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "nn/mamba.h"

namespace mom::nn {

struct LMConfig {
  MambaConfig mixer;
  int64_t vocab_size = 256;
  int64_t n_layers = 2;
  bool tie_embeddings = true;
  double norm_eps = 1e-5;
};

class ResidualBlock : public Module {
 public:
  ResidualBlock(const LMConfig& config, Generator& gen, DType dtype);
  Tensor forward(const Tensor& x, const Routing& routing, MambaLayerState* state) const;  // x + mixer(norm(x))
  std::shared_ptr<RMSNorm> norm;
  std::shared_ptr<MambaBlock> mixer;
};

using LMState = std::vector<MambaLayerState>;

class MambaLM : public Module {
 public:
  MambaLM(const LMConfig& config, Generator& gen, DType dtype = DType::f32);

  // tokens, modalities (B, L) int32/int64 -> logits (B, L, V).
  Tensor forward(const Tensor& tokens, const Tensor& modalities) const;
  LMState allocate_state(int64_t batch) const;
  // token, modality (B) -> logits (B, V); advances state by one token.
  Tensor step(const Tensor& token, const Tensor& modality, LMState& state) const;

  // One line per component: name, parameter count, share of the total.
  std::string parameter_summary() const;
  const LMConfig& config() const { return config_; }

  std::shared_ptr<Embedding> embedding;
  std::vector<std::shared_ptr<ResidualBlock>> layers;
  std::shared_ptr<RMSNorm> norm_f;
  std::shared_ptr<Linear> lm_head;  // null when tied

 private:
  Tensor run(const Tensor& tokens, const Tensor& modalities, LMState* state) const;
  LMConfig config_;
};

}  // namespace mom::nn
