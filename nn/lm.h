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
//
// Mixed precision (set_compute_dtype(bf16)): see set_compute_dtype below; step() returns float32 logits
// whatever the compute dtype.
//
// Packed documents: doc_start (B, L) bool marks the first token of each document (the trainer sets it
// at every <bos>); no state crosses a start, in every layer, so each document's logits are those of the
// document alone. With a carried state, a row whose first token starts a document begins from a zero
// state: step(token, modality, state, doc_start) resets the rows whose token starts a document.
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
  // x + mixer(norm(x)); the mixer runs in dtype `compute` (norm's output dtype), its output is added to
  // the residual stream in x's dtype.
  Tensor forward(const Tensor& x, const Routing& routing, MambaLayerState* state, const Tensor& doc_start,
                 DType compute, Tensor* aux = nullptr) const;
  std::shared_ptr<RMSNorm> norm;
  std::shared_ptr<MambaBlock> mixer;
};

using LMState = std::vector<MambaLayerState>;

class MambaLM : public Module {
 public:
  MambaLM(const LMConfig& config, Generator& gen, DType dtype = DType::f32);

  // tokens, modalities (B, L) int32/int64, doc_start (B, L) bool or undefined -> logits (B, L, V).
  Tensor forward(const Tensor& tokens, const Tensor& modalities, const Tensor& doc_start = Tensor()) const;
  LMState allocate_state(int64_t batch) const;

  // The dtype of the activations: the parameters' dtype (default), or bf16 beside float32 parameters
  // (mixed precision): the embedding and the residual stream stay float32, each norm writes bf16, the
  // projections multiply bf16 copies of the float32 weights (nn::weight_for), the conv and the scan take
  // bf16 sequences beside their float32 parameters and state, and the logits are bf16.
  void set_compute_dtype(DType dtype);
  DType compute_dtype() const { return compute_; }
  // token, modality (B), doc_start (B) bool or undefined -> logits (B, V); advances state by one token,
  // from a zero state in the rows whose token starts a document.
  Tensor step(const Tensor& token, const Tensor& modality, LMState& state, const Tensor& doc_start = Tensor()) const;
  // tokens, modalities (B, L), doc_start (B, L) or undefined -> logits (B, L, V), the rows continuing from
  // state (B rows), which becomes the state after their last token: a prompt through the parallel scan.
  Tensor prefill(const Tensor& tokens, const Tensor& modalities, LMState& state, const Tensor& doc_start = Tensor()) const;

  // With learned routing (MambaConfig::learned_routing): the routers' load-balancing loss of the last
  // forward, summed over the layers, a differentiable scalar to add to the training loss; undefined
  // otherwise.
  const Tensor& aux_loss() const { return aux_loss_; }

  // One line per component: name, parameter count, share of the total.
  std::string parameter_summary() const;
  const LMConfig& config() const { return config_; }

  std::shared_ptr<Embedding> embedding;
  std::vector<std::shared_ptr<ResidualBlock>> layers;
  std::shared_ptr<RMSNorm> norm_f;
  std::shared_ptr<Linear> lm_head;  // null when tied

 private:
  Tensor run(const Tensor& tokens, const Tensor& modalities, const Tensor& doc_start, LMState* state) const;
  LMConfig config_;
  DType param_dtype_, compute_;
  mutable Tensor aux_loss_;
};

}  // namespace mom::nn
