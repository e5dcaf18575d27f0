// The backward engine.
//
// backward(roots, grads): counts, without recursion, how many gradients each reachable node will
// receive; then runs nodes in dependency order from a ready queue, summing gradients that meet at one
// input, and writes leaf gradients into .grad (accumulating across calls until zero_grad()). A node
// receives its gradients by move and the engine keeps none (autograd::take_owned, autograd/node.h,
// says when one is the node's to overwrite). Saved
// tensors are freed after each node runs unless retain_graph is set; a second backward through a
// freed graph is an error.
#pragma once

#include <vector>

#include "core/tensor.h"

namespace mom {

// roots[i] gets gradient grads[i]; an omitted gradient means ones (the root must have one element).
void backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads = {},
              bool retain_graph = false);
inline void backward(const Tensor& root, const Tensor& grad = Tensor(), bool retain_graph = false) {
  backward(std::vector<Tensor>{root}, grad.defined() ? std::vector<Tensor>{grad} : std::vector<Tensor>{},
           retain_graph);
}

}  // namespace mom
