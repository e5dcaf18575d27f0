// Differentiable reductions: sum and mean (over all elements or a set of dims) and max (over all
// elements or one dim). The backward of sum and mean broadcasts dy back over the reduced dims (mean
// divides by the count); max saves the int64 argmax and sends dy to the first maximum only.
#include "autograd/function_util.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "kernels/reduce.h"

namespace mom {

using autograd::kernel_input;
using autograd::make_node;
using autograd::needs_grad;
using autograd::Node;
using autograd::SavedTensor;
using autograd::set_history;

namespace {

struct SumMeanBackward : Node {
  bool is_mean;
  std::vector<int64_t> dims;
  bool keepdim;
  SumMeanBackward(bool m, std::vector<int64_t> d, bool k) : is_mean(m), dims(std::move(d)), keepdim(k) {}
  std::string name() const override { return is_mean ? "mean" : "sum"; }
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
    Tensor dy = kernel_input(g[0]);
    const Shape& x_shape = inputs[0].shape;
    return {is_mean ? kernels::mean_backward(dy, x_shape, dims, keepdim)
                    : kernels::sum_backward(dy, x_shape, dims, keepdim)};
  }
};

Tensor record_sum_mean(const Tensor& x_in, const std::vector<int64_t>& dims, bool keepdim, bool is_mean) {
  Tensor x = kernel_input(x_in);
  Tensor y = is_mean ? kernels::mean(x, dims, keepdim) : kernels::sum(x, dims, keepdim);
  if (needs_grad({x_in})) set_history(make_node<SumMeanBackward>({x_in}, is_mean, dims, keepdim), {&y});
  return y;
}

struct MaxBackward : Node {
  bool all;  // over every element (index is flat) or over `dim`
  int64_t dim;
  bool keepdim;
  SavedTensor indices;
  MaxBackward(bool a, int64_t d, bool k) : all(a), dim(d), keepdim(k) {}
  std::string name() const override { return "max"; }
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
    Tensor dy = kernel_input(g[0]);
    const Shape& x_shape = inputs[0].shape;
    Tensor idx = indices.unpack(*this);
    return {all ? kernels::max_all_backward(dy, idx, x_shape) : kernels::max_backward(dy, idx, x_shape, dim, keepdim)};
  }
  void release_saved() override { indices.reset(); }
};

Tensor record_max(const Tensor& x_in, bool all, int64_t dim, bool keepdim) {
  Tensor x = kernel_input(x_in);
  kernels::MaxResult r = all ? kernels::max_all(x) : kernels::max(x, dim, keepdim);
  if (needs_grad({x_in})) {
    auto node = make_node<MaxBackward>({x_in}, all, dim, keepdim);
    node->indices = SavedTensor(r.indices);
    set_history(node, {&r.values});
  }
  return r.values;
}

}  // namespace

Tensor sum(const Tensor& x) { return record_sum_mean(x, kernels::all_dims(x.dim()), false, false); }
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return record_sum_mean(x, dims, keepdim, false);
}
Tensor mean(const Tensor& x) { return record_sum_mean(x, kernels::all_dims(x.dim()), false, true); }
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return record_sum_mean(x, dims, keepdim, true);
}
Tensor max(const Tensor& x) { return record_max(x, true, 0, false); }
Tensor max(const Tensor& x, int64_t dim, bool keepdim) { return record_max(x, false, dim, keepdim); }

}  // namespace mom
