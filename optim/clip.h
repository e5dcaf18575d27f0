// Global-norm gradient clipping (torch.nn.utils.clip_grad_norm_): the L2 norm over every defined
// gradient; when it exceeds max_norm, every gradient is scaled in place by max_norm / (norm + 1e-6).
// Returns the norm before clipping. Parameters without a gradient are ignored.
#pragma once

#include <vector>

#include "core/tensor.h"

namespace mom::optim {

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm);

}  // namespace mom::optim
