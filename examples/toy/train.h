// The trainer behind `mom train` and `mom eval`: builds the model from a TrainConfig, trains it with
// AdamW (warmup + cosine schedule, global-norm clipping), evaluates on a fixed held-out set, logs
// every step to <out>/log.jsonl, and checkpoints everything needed to resume bit-exactly.
//
// Files of a run directory:
//   config.json                 the TrainConfig
//   log.jsonl                   one JSON object per logged step ("kind": "train") and per evaluation
//                               ("kind": "eval"): step, tokens, flops, losses per modality, lr, grad_norm,
//                               time, tokens_per_second (over the steps since the last line) and, on
//                               CUDA, peak_memory_mib (the device's peak since the run started) and mfu
//                               (training FLOP/s over the GPU's bf16 GEMM rate, measured at the start);
//                               an eval line of a toy-vocabulary run also has the generation accuracies
//                               (accuracy_docs): acc_caption_image, pixel_acc_caption_image,
//                               acc_caption_speech, acc_image_caption, acc_speech_caption, shares in [0, 1];
//                               the last step's eval line also has decode_ms_per_token: the trained
//                               model's recurrent decoding (nn::Decoder, one row) on the run's device
//   checkpoint.safetensors      model ("model.<name>"), optimiser ("optim.<...>"), data position
//                               ("data.<...>"); metadata: step, tokens, flops, elapsed time, config
//   model.safetensors           the final weights under the published module's names (float32, or bf16
//                               with save_dtype "bf16")
//
// FLOPs are counted analytically per token (flops_per_token): training = 3 x forward (the backward
// costs about twice the forward). Dense and Mixture-of-Mamba count the same per token: a token goes
// through one expert of each projection.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <vector>

#include "examples/toy/accuracy.h"
#include "examples/toy/batcher.h"
#include "nn/lm.h"

namespace mom::toy {

struct TrainConfig {
  // Model.
  // "dense", "mom" (all four projections split by modality) or "learned" (split likewise, each token's
  // expert chosen by a learned top-1 router: the mixture-of-experts baseline, nn/mamba.h); the split
  // flags below override per projection
  std::string model = "mom";
  int split_in_proj = -1, split_x_proj = -1, split_dt_proj = -1, split_out_proj = -1;  // -1: from `model`
  int64_t n_layers = 2, d_model = 64, d_state = 16, expand = 2, d_conv = 4;
  // Data.
  std::string data = "toy";  // "toy" or a token file
  std::string eval_data;     // token file for evaluation (default: the toy world's held-out seed, or `data`)
  int64_t batch = 8, seq_len = 256;
  // The token that starts a document (the toy's <bos>): the model's state resets there in training, eval
  // and generation, so no prediction depends on another document. -1 reads across documents.
  int64_t doc_token = kBos;
  // The data's modalities, by name (Vocab::modality_names): one expert each in every routed projection,
  // one loss each in the logs. train() sets them from --data; a config without them is the toy's.
  std::vector<std::string> modalities{"text", "image", "speech"};
  // A token file's documents (starting at doc_token) are read in a new order each pass, drawn from the
  // seed and the pass; false reads the file in order. The toy world is random anyway.
  bool shuffle = true;
  // Optimisation.
  int64_t steps = 600, warmup = 60;
  double lr = 3e-3, min_lr_ratio = 0.1, weight_decay = 0.1, beta1 = 0.9, beta2 = 0.95, clip = 1.0;
  uint64_t seed = 1;
  // Run.
  std::string device = "auto";  // "auto": the first GPU when one is visible, else the CPU
  std::string out = "runs/mom";
  int64_t eval_every = 100, eval_batches = 8, ckpt_every = 100, log_every = 10;
  // Held-out scenes whose greedy generations every evaluation scores (evaluate_generation): the first
  // accuracy_docs documents of the held-out set, when the run's vocabulary is the toy vocabulary; 0 is
  // off (and what a config without the field reads as).
  int64_t accuracy_docs = 32;
  bool resume = false;
  int64_t stop_at = 0;  // > 0: stop after this step (checkpointed) as if interrupted; --resume continues
  bool quiet = false;
  bool tf32 = false;  // allow TF32 tensor-core GEMMs on CUDA (kernels::set_allow_tf32); no effect on the CPU
  // "f32", or "bf16": mixed precision (nn::MambaLM::set_compute_dtype): float32 master weights and AdamW
  // state, bf16 activations and products, float32 sums, states, norms and losses.
  std::string precision = "f32";
  // The dtype of model.safetensors' weights: "f32", or "bf16" for a half-size file (rounded once from
  // the float32 master weights; the checkpoint keeps float32).
  std::string save_dtype = "f32";

  nn::LMConfig lm_config(int64_t vocab_size) const;  // with one modality per name of `modalities`
  std::string to_json() const;
  // Every field present, with its JSON type (an integer field must hold a whole number); throws
  // [train] naming the field. Ranges are validate()'s.
  static TrainConfig from_json(const std::string& json);
  // Throws [train] naming the flag for any value outside its range (the table below, and for the real
  // numbers: finite, lr > 0, min-lr-ratio in [0, 1], weight decay >= 0, clip > 0, betas in [0, 1)); the device string must parse. It does not look for the device itself (train does).
  void validate() const;

  // The integer flags' ranges: what validate() enforces and what `mom train` checks on the command line.
  struct Limit {
    const char* flag;
    int64_t lo, hi;
    int64_t (*get)(const TrainConfig&);
  };
  static const std::vector<Limit>& limits();
};

// Limits that keep every size product far from overflow and every allocation sane; a config beyond
// them is refused before anything is allocated.
constexpr int64_t kMaxSteps = int64_t{1} << 40;
constexpr int64_t kMaxEvalTokens = int64_t{1} << 26;   // the held-out set, kept in host memory
constexpr double kMaxParameters = 4294967296.0;       // 2^32 (16 GiB of f32 weights, 48 GiB with AdamW's state)

// Throws "[op] <where> declares 9 modalities..." (or "<where>: ...") unless there are 1 to kMaxModalities
// names, none empty, no two alike.
void check_modality_names(const std::vector<std::string>& names, const char* op, const std::string& where);

// Throws [train] when the model of `config` would exceed the vocabulary (kMaxVocabSize, as token files)
// or parameter limits.
void check_model_size(const nn::LMConfig& config);

// "--weight-decay" for the config key "weight_decay" ("--layers" for "n_layers").
std::string flag_of(const std::string& config_key);

struct Losses {
  double total = 0;
  std::vector<double> by_modality;  // one per modality, NaN where the modality had no target
};

// "loss 0.5523 | text 0.960 image 0.296 speech 0.686": the total, then each modality by name.
std::string format_losses(const Losses& l, const std::vector<std::string>& modalities);

struct TrainResult {
  int64_t steps = 0;
  std::vector<std::string> modalities;  // the data's, as the losses are ordered
  Losses last_train, last_eval;
  std::optional<GenerationAccuracy> last_generation;  // the last evaluation's, when it measured them
  double tokens_per_second = 0;
  double decode_ms_per_token = 0;  // nn::Decoder, one row, on the run's device, at the last step's eval
};

// Forward FLOPs per token of the language model (multiply-adds count 2).
double flops_per_token(const nn::LMConfig& config);

TrainResult train(const TrainConfig& config);

// Mean losses of `model` on the batches, per modality of the target token.
Losses evaluate(const nn::MambaLM& model, const std::vector<Batch>& batches);

// Loads a run's model: `path` is a run directory (its checkpoint) or a model.safetensors whose
// metadata carries the config.
struct LoadedModel {
  TrainConfig config;
  std::shared_ptr<nn::MambaLM> model;
};
LoadedModel load_model(const std::string& path);

// The run's held-out batches: the toy world at a seed no training run draws from, --eval-data, or the
// documents a token file holds out (split_documents). `description` (if given) says which.
std::vector<Batch> eval_set(const TrainConfig& config, std::string* description = nullptr);

// The first n documents of the run's held-out set that hold a scene (split_document: <bos>, a caption,
// an image and speech, <eos>), in order, for evaluate_generation; none when the run's vocabulary (the
// held-out data's) is not the toy vocabulary, or n is 0. Documents start at each <bos>; one that does
// not split (a document cut by the held-out set's start) is passed over.
std::vector<std::vector<int32_t>> held_out_scenes(const TrainConfig& config, int64_t n);

// Rows per batch of the trainer's and `mom eval`'s generation accuracies.
constexpr int64_t kAccuracyRowsPerBatch = 128;

// The held-out documents of a token file trained on without --eval-data. Documents start at each
// doc_token (and at the file's first token); they are grouped by their mix of modalities, and within
// each mix, in file order, every kHeldOutEvery-th document is held out (the middle one of a mix of fewer
// documents, so that every mix is evaluated, a mix of one document too). Without a document token
// (-1) the file's last eval_tokens tokens are held out instead. Training reads `train`, evaluation
// `held_out`: no token is in both.
constexpr int64_t kHeldOutEvery = 20;  // 5% of the documents
struct DocumentSplit {
  std::vector<int32_t> train, held_out;  // the tokens of the kept and of the held-out documents, in order
  int64_t documents = 0, held_out_documents = 0;
};
DocumentSplit split_documents(const TokenFile& file, int64_t doc_token, int64_t eval_tokens);

}  // namespace mom::toy
