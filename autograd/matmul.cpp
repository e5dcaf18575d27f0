// Differentiable matmul: c = a @ b, batched with broadcast batch dims; linear: x @ W^T + b in one
// product (the bias added by the GEMM on CUDA).
//
// An input that is the transpose of contiguous data in its last two dims (mom::transpose(w, 0, 1), a
// weight used as W^T) goes to CBLAS as stored with a transpose flag, not copied. The forward saves a
// and b as the kernel reads them; the backward computes dc @ b^T and a^T @ dc with CBLAS flags, sums
// them over broadcast batch dims, and hands each back in its input's shape.
#include "autograd/function_util.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "kernels/elementwise.h"
#include "kernels/matmul.h"

namespace mom {

using autograd::kernel_input;
using autograd::make_node;
using autograd::needs_grad;
using autograd::Node;
using autograd::SavedTensor;
using autograd::set_history;

namespace {

// The data of x for the kernel: contiguous as is, or its last two dims swapped back (transposed = true)
// when that makes it contiguous, or else a contiguous copy.
Tensor gemm_operand(const Tensor& x, bool& transposed) {
  Tensor d = x.detach();
  transposed = false;
  if (d.is_contiguous() || d.dim() < 2) return kernel_input(x);
  Tensor t = d.transpose(-1, -2);
  if (t.is_contiguous()) {
    transposed = true;
    return t;
  }
  return d.contiguous();
}

// Inputs a, b and, for linear, the bias (its gradient: dc summed over every row).
struct MatmulBackward : Node {
  SavedTensor a, b;
  bool transpose_a, transpose_b;
  MatmulBackward(bool ta, bool tb) : transpose_a(ta), transpose_b(tb) {}
  std::string name() const override { return next_edges.size() == 3 ? "linear" : "matmul"; }
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
    const Tensor dc = kernel_input(g[0]);
    kernels::MatmulGrads grads = kernels::matmul_backward(dc, a.unpack(*this), b.unpack(*this), transpose_a,
                                                          transpose_b, next_edges[0].valid(), next_edges[1].valid());
    // A gradient computed in the stored (transposed) layout goes back as a view in the input's shape.
    if (grads.da.defined() && transpose_a) grads.da = grads.da.transpose(-1, -2);
    if (grads.db.defined() && transpose_b) grads.db = grads.db.transpose(-1, -2);
    if (next_edges.size() < 3) return {grads.da, grads.db};
    // The bias is of dc's accumulation dtype (float32 beside bf16): its gradient sums the widened dc.
    Tensor dbias = next_edges[2].valid() ? kernels::sum_to_shape(kernels::widen_bf16(dc), inputs[2].shape) : Tensor();
    return {grads.da, grads.db, dbias};
  }
  void release_saved() override { a.reset(); b.reset(); }
};

// a @ b (+ bias on every row, b 2-D).
Tensor matmul_bias(const Tensor& a_in, const Tensor& b_in, const Tensor& bias_in) {
  bool ta = false, tb = false;
  Tensor a = gemm_operand(a_in, ta), b = gemm_operand(b_in, tb);
  Tensor c = kernels::matmul(a, b, ta, tb, kernel_input(bias_in));
  const bool with_bias = bias_in.defined();
  if (with_bias ? needs_grad({a_in, b_in, bias_in}) : needs_grad({a_in, b_in})) {
    auto node = with_bias ? make_node<MatmulBackward>({a_in, b_in, bias_in}, ta, tb)
                          : make_node<MatmulBackward>({a_in, b_in}, ta, tb);
    node->a = SavedTensor(a);
    node->b = SavedTensor(b);
    set_history(node, {&c});
  }
  return c;
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  MOM_CHECK(a.defined() && b.defined(), "matmul", "a and b must be defined");
  return matmul_bias(a, b, Tensor());
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  MOM_CHECK(x.defined() && weight.defined(), "linear", "x and weight must be defined");
  MOM_CHECK(weight.dim() == 2, "linear", "weight must be 2-D (out, in), got " << shape_str(weight.shape()));
  return matmul_bias(x, transpose(weight, 0, 1), bias);
}

}  // namespace mom
