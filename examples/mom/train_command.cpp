// `mom train`: train dense Mamba or Mixture-of-Mamba on the toy multimodal data (or a token file).
//
// With --resume the run's own config.json is the starting point and only the flags given on the
// command line change it; the trainer then refuses any change a resumed run cannot make (anything
// but --steps, --stop-at, --lr, --clip, --device, --tf32, --precision, --save-dtype, --accuracy-docs and
// the reporting cadences), naming the flag.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include "core/error.h"
#include "examples/mom/commands.h"
#include "examples/mom/options.h"
#include "examples/toy/train.h"

namespace mom::cli {

namespace {

toy::TrainConfig config_for_resume(const toy::TrainConfig& parsed, const std::vector<BoundOption>& options) {
  const std::string path = (std::filesystem::path(parsed.out) / "config.json").string();
  std::ifstream in(path);
  MOM_CHECK(in.good(), "train", "--resume: cannot read " << path << " (is --out " << parsed.out
                                                         << " the directory of a run?)");
  std::stringstream text;
  text << in.rdbuf();
  toy::TrainConfig c;
  try {
    c = toy::TrainConfig::from_json(text.str());
  } catch (const Error& e) {
    MOM_THROW("train", "--resume: " << path << ": " << e.what());
  }
  for (const BoundOption& b : options)
    if (b.option->count() > 0) b.copy(c, parsed);
  c.out = parsed.out;
  c.resume = true;
  return c;
}

}  // namespace

void add_train_options(CLI::App* cmd, toy::TrainConfig& config, std::vector<BoundOption>* bound, bool sweep) {
  toy::TrainConfig* c = &config;
  auto add = [&](const char* flag, auto member, const std::string& help) {
    CLI::Option* o = cmd->add_option(flag, (*c).*member, help);
    if (bound) bound->push_back({o, [member](toy::TrainConfig& to, const toy::TrainConfig& from) { to.*member = from.*member; }});
    return o;
  };
  // The integer flags' ranges are the trainer's own (TrainConfig::limits).
  auto limit = [](const char* flag) {
    for (const toy::TrainConfig::Limit& l : toy::TrainConfig::limits())
      if (std::string(flag) == l.flag) return integer_in<int64_t>(l.lo, l.hi);
    throw std::logic_error(std::string("no limit for ") + flag);
  };
  using TC = toy::TrainConfig;
  if (!sweep) {  // a sweep sets the model, the seed and the run directory of each run itself
    add("--model", &TC::model,
        "dense | mom (all four projections split by modality) | learned (split likewise, routed by a learned "
        "top-1 router: the mixture-of-experts baseline)")
        ->check(CLI::IsMember({"dense", "mom", "learned"}))->capture_default_str();
    for (auto [flag, member] : {std::pair{"--split-in-proj", &TC::split_in_proj}, {"--split-x-proj", &TC::split_x_proj},
                                {"--split-dt-proj", &TC::split_dt_proj}, {"--split-out-proj", &TC::split_out_proj}})
      add(flag, member, "0 or 1: override --model for this projection")->check(integer_in<int>(0, 1));
  }
  add("--layers", &TC::n_layers, "number of layers")->check(limit("--layers"))->capture_default_str();
  add("--d-model", &TC::d_model, "model width D")->check(limit("--d-model"))->capture_default_str();
  add("--d-state", &TC::d_state, "SSM state size N")->check(limit("--d-state"))->capture_default_str();
  add("--expand", &TC::expand, "E = expand * D")->check(limit("--expand"))->capture_default_str();
  add("--data", &TC::data, "toy (generated) or a token file (format: examples/toy/token_file.h)")
      ->check(non_empty())->capture_default_str();
  add("--eval-data", &TC::eval_data,
      "token file for evaluation (default: a held-out toy seed for toy data; for a token file, whole documents "
      "it holds out of training, 5% of each modality mix)")
      ->check(non_empty());
  add("--batch", &TC::batch, "rows per batch B")->check(limit("--batch"))->capture_default_str();
  add("--seq-len", &TC::seq_len, "tokens per row L")->check(limit("--seq-len"))->capture_default_str();
  add("--doc-token", &TC::doc_token,
      "token id that starts a document: the state resets there (1 = the toy's <bos>); -1 reads across documents")
      ->check(limit("--doc-token"))->capture_default_str();
  add("--steps", &TC::steps, "optimiser steps")->check(limit("--steps"))->capture_default_str();
  add("--lr", &TC::lr, "peak learning rate")->check(number_in(0, 1e30))->capture_default_str();
  add("--warmup", &TC::warmup, "linear warmup steps")->check(limit("--warmup"))->capture_default_str();
  add("--min-lr-ratio", &TC::min_lr_ratio, "final lr / peak lr of the cosine decay")
      ->check(number_in(0, 1))->capture_default_str();
  add("--weight-decay", &TC::weight_decay, "AdamW weight decay")->check(number_in(0, 1e30))->capture_default_str();
  add("--clip", &TC::clip, "global gradient-norm clip")->check(number_in(0, 1e30))->capture_default_str();
  if (!sweep)
    add("--seed", &TC::seed, "seed of the weights, of the toy data and of a token file's document order")
        ->check(integer_in<uint64_t>(0, UINT64_MAX))->capture_default_str();
  add("--device", &TC::device, "auto (the GPU when one is visible) | cpu | cuda | cuda:N")->capture_default_str();
  add("--precision", &TC::precision,
      "f32 | bf16: mixed precision (float32 master weights and optimiser state, bf16 activations and products)")
      ->check(CLI::IsMember({"f32", "bf16"}))->capture_default_str();
  add("--save-dtype", &TC::save_dtype, "f32 | bf16: the dtype of model.safetensors (the checkpoint stays f32)")
      ->check(CLI::IsMember({"f32", "bf16"}))->capture_default_str();
  if (!sweep)
    add("--out", &TC::out, "run directory (config.json, log.jsonl, checkpoint, model)")
        ->check(non_empty())->capture_default_str();
  add("--eval-every", &TC::eval_every, "steps between evaluations")->check(limit("--eval-every"))->capture_default_str();
  add("--eval-batches", &TC::eval_batches, "batches in the held-out set")
      ->check(limit("--eval-batches"))->capture_default_str();
  add("--ckpt-every", &TC::ckpt_every, "steps between checkpoints")->check(limit("--ckpt-every"))->capture_default_str();
  add("--log-every", &TC::log_every, "steps between progress lines")->check(limit("--log-every"))->capture_default_str();
  add("--accuracy-docs", &TC::accuracy_docs,
      "held-out scenes on which every evaluation scores greedy generation (caption -> image, caption -> speech, "
      "image -> caption, speech -> caption; toy vocabulary only); 0: off")
      ->check(limit("--accuracy-docs"))->capture_default_str();
  if (!sweep)
    add("--stop-at", &TC::stop_at, "stop after this step (checkpointed); finish later with --resume")
        ->check(limit("--stop-at"));
  CLI::Option* shuffle = cmd->add_flag("--no-shuffle{false}", c->shuffle,
                                       "read a token file in its order (by default each pass reads its documents, "
                                       "which start at --doc-token, in a new order drawn from --seed)");
  CLI::Option* tf32 = cmd->add_flag("--tf32", c->tf32,
                                    "allow TF32 tensor-core matmuls for float32 on CUDA (faster, ~1e-3 relative error)");
  if (bound) {
    bound->push_back({shuffle, [](TC& to, const TC& from) { to.shuffle = from.shuffle; }});
    bound->push_back({tf32, [](TC& to, const TC& from) { to.tf32 = from.tf32; }});
  }
  cmd->add_flag("--quiet", c->quiet, "no progress lines");
}

void add_train_command(CLI::App& app, int& exit_code) {
  auto c = std::make_shared<toy::TrainConfig>();
  auto bound = std::make_shared<std::vector<BoundOption>>();
  CLI::App* cmd = app.add_subcommand("train", "train dense Mamba or Mixture-of-Mamba on toy multimodal data");
  add_train_options(cmd, *c, bound.get(), false);
  cmd->add_flag("--resume", c->resume,
                "continue the run in --out from its checkpoint, with its config; flags given change it where a "
                "resumed run can (--steps, --stop-at, --lr, --clip, --device, --tf32, --precision, --save-dtype, "
                "--eval-every, --ckpt-every, --log-every, --accuracy-docs)");
  cmd->callback([c, bound, &exit_code] {
    toy::TrainConfig config = *c;
    if (c->resume) {
      config = config_for_resume(*c, *bound);
      config.quiet = c->quiet;
    }
    toy::TrainResult r = toy::train(config);
    if (!config.quiet && r.steps == config.steps)
      std::printf("done: %lld steps, final eval %s%s; run in %s\n", static_cast<long long>(r.steps),
                  toy::format_losses(r.last_eval, r.modalities).c_str(),
                  r.last_generation ? (" | " + toy::format_generation_accuracy(*r.last_generation)).c_str() : "",
                  config.out.c_str());
    exit_code = 0;
  });
}

}  // namespace mom::cli
