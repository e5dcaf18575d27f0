// Global-norm gradient clipping (torch.nn.utils.clip_grad_norm_): the L2 norm over every defined
// gradient; when it exceeds max_norm, every gradient is scaled in place by max_norm / (norm + 1e-6).
// Returns the norm before clipping. Parameters without a gradient are ignored; gradients must be
// contiguous (the engine's always are).
//
// clip_grad_norm_async returns the norm as a () float64 tensor on the gradients' device and never
// waits for the device: the sum of squares, the decision and the scaling all run there, in a few
// multi-tensor launches (kernels/optimizer.h). clip_grad_norm is the same followed by reading the norm
// (one host synchronisation on CUDA). Gradients on several devices are summed on the first one's.
// On the CPU both give the bits of summing each gradient's sum of squares in parameter order.
#pragma once

#include <vector>

#include "core/tensor.h"

namespace mom::optim {

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm);
Tensor clip_grad_norm_async(const std::vector<Tensor>& params, double max_norm);  // a CPU zero without gradients

}  // namespace mom::optim
