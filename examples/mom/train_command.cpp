// `mom train`: train dense Mamba or Mixture-of-Mamba on the toy multimodal data (or a token file).
#include <cstdio>

#include "core/error.h"
#include "examples/mom/commands.h"
#include "examples/toy/train.h"

namespace mom::cli {

void add_train_command(CLI::App& app, int& exit_code) {
  auto c = std::make_shared<toy::TrainConfig>();
  CLI::App* cmd = app.add_subcommand("train", "train dense Mamba or Mixture-of-Mamba on toy multimodal data");
  cmd->add_option("--model", c->model, "dense | mom (all four projections split by modality)")
      ->check(CLI::IsMember({"dense", "mom"}))->capture_default_str();
  for (auto [flag, field] : {std::pair{"--split-in-proj", &c->split_in_proj}, {"--split-x-proj", &c->split_x_proj},
                             {"--split-dt-proj", &c->split_dt_proj}, {"--split-out-proj", &c->split_out_proj}})
    cmd->add_option(flag, *field, "0 or 1: override --model for this projection")->check(CLI::Range(0, 1));
  cmd->add_option("--layers", c->n_layers, "number of layers")->capture_default_str();
  cmd->add_option("--d-model", c->d_model, "model width D")->capture_default_str();
  cmd->add_option("--d-state", c->d_state, "SSM state size N")->capture_default_str();
  cmd->add_option("--expand", c->expand, "E = expand * D")->capture_default_str();
  cmd->add_option("--data", c->data, "toy (generated) or a token file written by `mom data`")->capture_default_str();
  cmd->add_option("--eval-data", c->eval_data, "token file for evaluation (default: a held-out toy seed)");
  cmd->add_option("--batch", c->batch, "rows per batch B")->capture_default_str();
  cmd->add_option("--seq-len", c->seq_len, "tokens per row L")->capture_default_str();
  cmd->add_option("--steps", c->steps, "optimiser steps")->capture_default_str();
  cmd->add_option("--lr", c->lr, "peak learning rate")->capture_default_str();
  cmd->add_option("--warmup", c->warmup, "linear warmup steps")->capture_default_str();
  cmd->add_option("--min-lr-ratio", c->min_lr_ratio, "final lr / peak lr of the cosine decay")->capture_default_str();
  cmd->add_option("--weight-decay", c->weight_decay, "AdamW weight decay")->capture_default_str();
  cmd->add_option("--clip", c->clip, "global gradient-norm clip")->capture_default_str();
  cmd->add_option("--seed", c->seed, "seed of the weights and the data")->capture_default_str();
  cmd->add_option("--device", c->device, "auto (the GPU when one is visible) | cpu | cuda | cuda:N")->capture_default_str();
  cmd->add_option("--out", c->out, "run directory (log.jsonl, checkpoint, model)")->capture_default_str();
  cmd->add_option("--eval-every", c->eval_every, "steps between evaluations")->capture_default_str();
  cmd->add_option("--eval-batches", c->eval_batches, "batches in the held-out set")->capture_default_str();
  cmd->add_option("--ckpt-every", c->ckpt_every, "steps between checkpoints")->capture_default_str();
  cmd->add_option("--log-every", c->log_every, "steps between progress lines")->capture_default_str();
  cmd->add_flag("--resume", c->resume, "continue the run in --out from its checkpoint");
  cmd->add_option("--stop-at", c->stop_at, "stop after this step (checkpointed); finish later with --resume");
  cmd->add_flag("--quiet", c->quiet, "no progress lines");
  cmd->add_flag("--tf32", c->tf32, "allow TF32 tensor-core matmuls for float32 on CUDA (faster, ~1e-3 relative error)");
  cmd->callback([c, &exit_code] {
    toy::TrainResult r = toy::train(*c);
    if (!c->quiet)
      std::printf("done: %lld steps, final eval loss %.4f (text %.4f, image %.4f, speech %.4f); run in %s\n",
                  static_cast<long long>(r.steps), r.last_eval.total, r.last_eval.by_modality[0],
                  r.last_eval.by_modality[1], r.last_eval.by_modality[2], c->out.c_str());
    exit_code = 0;
  });
}

}  // namespace mom::cli
