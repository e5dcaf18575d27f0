// A run's checkpoint file (<run>/checkpoint.safetensors): everything `mom train --resume` needs to
// continue bit-exactly, validated as a whole before any of it is used.
//
// Tensors: "model.<name>" (the weights, published names), "optim.<...>" (AdamW's moments, step counts
// and hyper-parameters), "data.<...>" (the batcher's position). Metadata (strings, as safetensors
// requires): "step" (a decimal integer >= 1), "tokens", "flops", "elapsed" (finite, non-negative
// decimals) and "config" (the TrainConfig as JSON).
//
// read_checkpoint checks all of it: every metadata field present and a number of the right kind, the
// config valid (TrainConfig::validate, model-size limits included), no tensor outside the three
// groups, every model and optimiser tensor finite, the optimiser state complete for every parameter
// and its hyper-parameters in range, and the data state's sizes bounded. It does not build the model:
// the caller's load_state_dict checks names and shapes against the architecture.
// write_checkpoint refuses non-finite model or optimiser tensors, so a diverged model never replaces
// a good checkpoint. Errors are "[checkpoint] <path>: ...".
#pragma once

#include <map>
#include <string>

#include "core/tensor.h"
#include "examples/toy/train.h"

namespace mom::toy {

struct Checkpoint {
  TrainConfig config;
  int64_t step = 0;
  double tokens = 0, flops = 0, elapsed = 0;
  std::map<std::string, Tensor> model, optim, data;  // without their prefixes
};

Checkpoint read_checkpoint(const std::string& path);
void write_checkpoint(const std::string& path, const Checkpoint& checkpoint);

// Non-finite (NaN, inf) elements of a floating tensor on any device (0 for integer tensors).
int64_t count_non_finite(const Tensor& t);
// Throws "[op] <path>: <what> '<name>' holds k non-finite values of n" for the first such tensor.
void check_finite(const std::map<std::string, Tensor>& tensors, const std::string& what, const char* op,
                  const std::string& path);

}  // namespace mom::toy
