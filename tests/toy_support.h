// The trainer's smallest useful configuration, shared by the trainer tests and the fuzz harness.
#pragma once

#include <filesystem>
#include <string>

#include "examples/toy/train.h"

namespace mom::test {

// One layer of width 16, 12 steps of 2 x 48 tokens on the CPU, quiet, logging every step; its run
// directory `dir` is emptied first.
inline toy::TrainConfig tiny_train_config(const std::string& dir) {
  toy::TrainConfig c;
  c.model = "mom";
  c.n_layers = 1;
  c.d_model = 16;
  c.d_state = 4;
  c.batch = 2;
  c.seq_len = 48;
  c.steps = 12;
  c.warmup = 2;
  c.lr = 1e-2;
  c.eval_every = 4;
  c.eval_batches = 1;
  c.ckpt_every = 100;
  c.log_every = 1;
  c.quiet = true;
  c.device = "cpu";
  c.out = dir;
  std::filesystem::remove_all(c.out);
  return c;
}

}  // namespace mom::test
