// Fast recurrent decoding of a MambaLM: B rows, each with its own state, one token per row per step,
// through the fused kernels of kernels/decode.h (four per layer, plus the embedding and the head). On
// CUDA the first step runs the kernels as they come and records them in a CUDA graph; every later step
// copies its inputs into the decoder's buffers and replays that graph with one launch. On the CPU the
// same kernels run one after the other.
//
// Per-token routing: a split projection takes row b's expert from its modality (MoM), a shared one takes
// its single weight; a batch may mix modalities freely. A model with learned routing (its routers pick
// the experts) steps through MambaLM::step with the same interface and state, without the fused
// kernels or the graph; it checks its ids on the device (a wait) where the fused path gives NaN.
// doc_start (B) marks rows whose token starts a document: their conv window and SSM state are read as
// zeros first (as in MambaLM::step).
//
// The decoder copies what it needs when it is built: the projections stacked per expert (M, Out, In)
// and, with bf16 weights, bf16 copies of them and of the head. A model trained further after that
// needs a new Decoder. Activations and states are in the model's parameter dtype (float32 or float64),
// whatever the compute dtype.
//
// Prompts: prefill(tokens, modalities) runs a prompt through the parallel forward (MambaLM::prefill,
// the selective scan over its L tokens) and sets the state after it, from one prompt row for every
// row (one prompt, many samples) or from B rows; state() and set_state() snapshot and restore it.
#pragma once

#include <memory>

#include "nn/lm.h"

namespace mom::nn {

class Decoder {
 public:
  // weight_dtype: the parameters' dtype, or bf16 beside float32 parameters.
  Decoder(const MambaLM& model, int64_t batch, DType weight_dtype);
  // Weights in bf16 when the model computes in bf16 (set_compute_dtype), else in its parameters' dtype.
  Decoder(const MambaLM& model, int64_t batch);
  ~Decoder();
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;

  int64_t batch() const { return batch_; }
  DType weight_dtype() const { return weight_dtype_; }

  // token, modality (B) int32 or int64 on any device, doc_start (B) bool or undefined -> logits (B, V)
  // in the parameters' dtype on the model's device: the decoder's buffer, overwritten by the next step.
  // Ids and modalities given on the CPU are checked; on the GPU an id or a modality out of range gives
  // that row NaN logits (a check there would make every step wait for the device).
  const Tensor& step(const Tensor& token, const Tensor& modality, const Tensor& doc_start = Tensor());

  // tokens, modalities (P, L) with P = 1 or P = B, doc_start (P, L) or undefined, on any device: runs the prompt from a
  // zero state through the parallel forward and sets every row's state to the one after it (the one
  // prompt row's when P = 1). Returns the last position's logits (P, V).
  Tensor prefill(const Tensor& tokens, const Tensor& modalities, const Tensor& doc_start = Tensor());

  LMState state() const;              // a copy: per layer the conv window (B, W-1, E) and the SSM state (B, E, N)
  void set_state(const LMState& s);   // s of B rows, or of 1 row given to every row
  void reset();                       // every row back to the zero state

 private:
  struct Layer;
  void run();          // one step over the buffers through the fused kernels
  void run_generic();  // one step through MambaLM::step (learned routing)

  const MambaLM& model_;
  int64_t batch_;
  DType dtype_, weight_dtype_;
  std::vector<Layer> layers_;
  Tensor embedding_, head_, norm_f_;
  Tensor token_, modality_, start_, resid_, xz_, u_, dbc_, y_, logits_;
  Tensor workspace_;  // decode_linear's scratch (CUDA, more than 8 rows), sized by the first step
  bool generic_;  // learned routing: its routers, not the modality, pick the experts
  bool start_set_ = false;
  struct GraphHolder;
  std::unique_ptr<GraphHolder> graph_;
};

}  // namespace mom::nn
