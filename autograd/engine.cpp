#include "autograd/engine.h"

#include <deque>
#include <unordered_map>

#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "kernels/elementwise.h"

namespace mom {

using autograd::Edge;
using autograd::Node;

namespace {

// Number of gradients each node reachable from the roots will receive (iterative DFS).
std::unordered_map<Node*, int> count_dependencies(const std::vector<Edge>& roots) {
  std::unordered_map<Node*, int> deps;
  std::vector<Node*> stack;
  std::unordered_map<Node*, bool> seen;
  for (const Edge& e : roots) {
    if (!e.node || seen[e.node.get()]) continue;
    seen[e.node.get()] = true;
    stack.push_back(e.node.get());
  }
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const Edge& e : n->next_edges) {
      if (!e.node) continue;
      deps[e.node.get()] += 1;
      if (!seen[e.node.get()]) {
        seen[e.node.get()] = true;
        stack.push_back(e.node.get());
      }
    }
  }
  return deps;
}

void accumulate(std::vector<Tensor>& buffer, int slot, const Tensor& g) {
  if (!g.defined()) return;
  if (static_cast<int>(buffer.size()) <= slot) buffer.resize(slot + 1);
  buffer[slot] = buffer[slot].defined() ? kernels::add(buffer[slot].contiguous(), g.contiguous()) : g;
}

}  // namespace

void backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads, bool retain_graph) {
  MOM_CHECK(grads.empty() || grads.size() == roots.size(), "backward",
            roots.size() << " roots but " << grads.size() << " gradients");
  std::vector<Edge> root_edges;
  std::vector<Tensor> root_grads;
  for (size_t i = 0; i < roots.size(); ++i) {
    const Tensor& r = roots[i];
    MOM_CHECK(r.defined(), "backward", "root " << i << " is undefined");
    MOM_CHECK(r.requires_grad(), "backward",
              "root " << i << " does not require grad (no input requires grad, or it was computed under NoGradGuard)");
    Tensor g;
    if (grads.empty() || !grads[i].defined()) {
      MOM_CHECK(r.numel() == 1, "backward",
                "a gradient can be implied only for a one-element root; root " << i << " has shape "
                    << shape_str(r.shape()));
      g = ones(r.shape(), r.dtype(), r.device());
    } else {
      g = grads[i];
      MOM_CHECK(g.shape() == r.shape(), "backward",
                "gradient shape " << shape_str(g.shape()) << " does not match root shape " << shape_str(r.shape()));
    }
    root_edges.push_back(autograd::gradient_edge(r));
    root_grads.push_back(g);
  }

  NoGradGuard no_grad;
  std::unordered_map<Node*, int> deps = count_dependencies(root_edges);
  std::unordered_map<Node*, std::vector<Tensor>> buffers;
  std::unordered_map<Node*, std::shared_ptr<Node>> owners;  // keeps queued nodes alive
  std::deque<Node*> ready;
  for (size_t i = 0; i < root_edges.size(); ++i) {
    Node* n = root_edges[i].node.get();
    owners[n] = root_edges[i].node;
    accumulate(buffers[n], root_edges[i].input_nr, root_grads[i]);
  }
  for (const Edge& e : root_edges) {
    Node* n = e.node.get();
    if (deps[n] == 0 && owners.count(n)) {
      ready.push_back(n);
      deps[n] = -1;  // queued once
    }
  }

  while (!ready.empty()) {
    Node* n = ready.front();
    ready.pop_front();
    std::vector<Tensor> grad_out = std::move(buffers[n]);
    buffers.erase(n);
    grad_out.resize(std::max<size_t>(grad_out.size(), n->outputs.size()));
    bool any = false;
    for (const Tensor& g : grad_out) any = any || g.defined();
    // A node no gradient reached passes none on: its inputs keep undefined gradients.
    std::vector<Tensor> grad_in = any ? n->apply(std::move(grad_out)) : std::vector<Tensor>(n->next_edges.size());
    if (!retain_graph) n->release_saved();
    MOM_CHECK(grad_in.size() == n->next_edges.size() || n->next_edges.empty(), n->name(),
              "internal: backward returned " << grad_in.size() << " gradients for " << n->next_edges.size()
                                             << " inputs");
    for (size_t i = 0; i < n->next_edges.size(); ++i) {
      const Edge& e = n->next_edges[i];
      if (!e.node) continue;
      const Tensor& g = grad_in[i];
      if (g.defined()) {
        MOM_CHECK(g.shape() == n->inputs[i].shape, n->name(),
                  "internal: gradient for input " << i << " has shape " << shape_str(g.shape())
                                                  << ", the input has " << shape_str(n->inputs[i].shape));
        MOM_CHECK(g.dtype() == n->inputs[i].dtype, n->name(),
                  "internal: gradient for input " << i << " is " << dtype_name(g.dtype()) << ", the input is "
                                                  << dtype_name(n->inputs[i].dtype));
        accumulate(buffers[e.node.get()], e.input_nr, g);
      }
      owners.emplace(e.node.get(), e.node);
      if (--deps[e.node.get()] == 0) ready.push_back(e.node.get());
    }
    owners.erase(n);
  }
}

}  // namespace mom
