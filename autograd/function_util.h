// Small helpers shared by the differentiable functions.
#pragma once

#include "core/tensor.h"

namespace mom::autograd {

// The data of x as a contiguous tensor without autograd history, ready for a kernel.
inline Tensor kernel_input(const Tensor& x) {
  if (!x.defined()) return x;
  Tensor d = x.detach();
  return d.is_contiguous() ? d : d.contiguous();
}

}  // namespace mom::autograd
