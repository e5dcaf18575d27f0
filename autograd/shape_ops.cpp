// Differentiable shape and index ops, and the gradient-check cases of the reductions, matmul and
// these ops.
//
// reshape, transpose, permute, slice, narrow, squeeze, unsqueeze and expand return views: the output
// shares x's storage (like PyTorch; reshape of a non-contiguous x copies) and carries a Node whose
// backward maps dy back to x's shape: reshape back, the inverse permutation, dy written into zeros at
// the viewed positions (slice, narrow), or summed over the broadcast dims (expand). Those backwards
// save nothing but shapes and may return strided views of dy.
// contiguous copies (identity backward); cat and split copy (backward split / cat, the missing
// gradients of split as zeros); index_select and gather copy and save the index, and their
// backwards scatter-add dy into zeros in a fixed order.

#include "autograd/function_util.h"
#include "autograd/gradcheck.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "kernels/elementwise.h"
#include "kernels/index.h"

namespace mom {

using autograd::kernel_input;
using autograd::make_node;
using autograd::needs_grad;
using autograd::Node;
using autograd::SavedTensor;
using autograd::set_history;

namespace {

template <typename NodeT, typename... Args> Tensor record_view(const Tensor& x, Tensor y, Args&&... args) {
  if (needs_grad({x})) set_history(make_node<NodeT>({x}, std::forward<Args>(args)...), {&y});
  return y;
}

struct ReshapeBackward : Node {
  std::string name() const override { return "reshape"; }
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override { return {g[0].reshape(inputs[0].shape)}; }
};

struct PermuteBackward : Node {
  std::vector<int64_t> inverse;
  explicit PermuteBackward(std::vector<int64_t> inv) : inverse(std::move(inv)) {}
  std::string name() const override { return "permute"; }
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override { return {g[0].permute(inverse)}; }
};

struct TransposeBackward : Node {
  int64_t d0, d1;
  TransposeBackward(int64_t a, int64_t b) : d0(a), d1(b) {}
  std::string name() const override { return "transpose"; }
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override { return {g[0].transpose(d0, d1)}; }
};

// slice and narrow: dy goes into zeros of x's shape through the same view of them.
struct SliceBackward : Node {
  int64_t dim, start, end, step;
  bool is_narrow;  // (start, end) is (start, length)
  SliceBackward(int64_t d, int64_t s, int64_t e, int64_t st, bool n) : dim(d), start(s), end(e), step(st), is_narrow(n) {}
  std::string name() const override { return is_narrow ? "narrow" : "slice"; }
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
    Tensor dx = zeros(inputs[0].shape, inputs[0].dtype, inputs[0].device);
    (is_narrow ? dx.narrow(dim, start, end) : dx.slice(dim, start, end, step)).copy_(g[0]);
    return {dx};
  }
};

struct SqueezeBackward : Node {
  int64_t dim;
  explicit SqueezeBackward(int64_t d) : dim(d) {}
  std::string name() const override { return "squeeze"; }
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
    return {inputs[0].shape[dim] == 1 ? g[0].unsqueeze(dim) : g[0]};
  }
};

struct UnsqueezeBackward : Node {
  int64_t dim;
  explicit UnsqueezeBackward(int64_t d) : dim(d) {}
  std::string name() const override { return "unsqueeze"; }
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override { return {g[0].squeeze(dim)}; }
};

struct ExpandBackward : Node {
  std::string name() const override { return "expand"; }
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
    return {kernels::sum_to_shape(kernel_input(g[0]), inputs[0].shape)};
  }
};

struct ContiguousBackward : Node {
  std::string name() const override { return "contiguous"; }
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override { return {g[0]}; }
};

// The gradient of a cast goes back in the input's dtype (a bf16 gradient widened exactly, a float32
// one rounded once).
struct CastBackward : Node {
  std::string name() const override { return "cast"; }
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override { return {g[0].to(inputs[0].dtype)}; }
};

struct CatBackward : Node {
  std::vector<int64_t> sizes;
  int64_t dim;
  CatBackward(std::vector<int64_t> s, int64_t d) : sizes(std::move(s)), dim(d) {}
  std::string name() const override { return "cat"; }
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
    return kernels::split(kernel_input(g[0]), sizes, dim);
  }
};

struct SplitBackward : Node {
  int64_t dim;
  explicit SplitBackward(int64_t d) : dim(d) {}
  std::string name() const override { return "split"; }
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
    std::vector<Tensor> pieces;
    for (size_t i = 0; i < outputs.size(); ++i) pieces.push_back(kernel_input(grad_or_zeros(g, i)));
    return {kernels::cat(pieces, dim)};
  }
};

struct IndexBackward : Node {
  bool is_gather;  // gather, else index_select
  int64_t dim;
  SavedTensor index;
  IndexBackward(bool gth, int64_t d) : is_gather(gth), dim(d) {}
  std::string name() const override { return is_gather ? "gather" : "index_select"; }
  std::vector<Tensor> apply(std::vector<Tensor>&& g) override {
    Tensor dy = kernel_input(g[0]), idx = index.unpack(*this);
    const Shape& x_shape = inputs[0].shape;
    return {is_gather ? kernels::gather_backward(dy, idx, x_shape, dim)
                      : kernels::index_select_backward(dy, idx, x_shape, dim)};
  }
  void release_saved() override { index.reset(); }
};

Tensor record_index(const Tensor& x, int64_t dim, const Tensor& index, bool is_gather) {
  Tensor xd = kernel_input(x);
  Tensor y = is_gather ? kernels::gather(xd, dim, index) : kernels::index_select(xd, dim, index);
  if (needs_grad({x})) {
    auto node = make_node<IndexBackward>({x}, is_gather, dim);
    node->index = SavedTensor(index);
    set_history(node, {&y});
  }
  return y;
}

}  // namespace

Tensor reshape(const Tensor& x, const Shape& shape) {
  return record_view<ReshapeBackward>(x, x.detach().reshape(shape));
}

Tensor transpose(const Tensor& x, int64_t d0, int64_t d1) {
  int64_t a = wrap_dim(d0, x.dim(), "transpose"), b = wrap_dim(d1, x.dim(), "transpose");
  return record_view<TransposeBackward>(x, x.detach().transpose(a, b), a, b);
}

Tensor permute(const Tensor& x, const std::vector<int64_t>& dims) {
  MOM_CHECK(static_cast<int64_t>(dims.size()) == x.dim(), "permute",
            "got " << dims.size() << " dims for x " << shape_str(x.shape()));
  std::vector<int64_t> inverse(dims.size(), -1);
  for (size_t i = 0; i < dims.size(); ++i) {
    int64_t d = wrap_dim(dims[i], x.dim(), "permute");
    MOM_CHECK(inverse[d] < 0, "permute", "dim " << dims[i] << " appears twice in " << shape_str(dims));
    inverse[d] = static_cast<int64_t>(i);
  }
  return record_view<PermuteBackward>(x, x.detach().permute(dims), std::move(inverse));
}

Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step) {
  int64_t d = wrap_dim(dim, x.dim(), "slice");
  return record_view<SliceBackward>(x, x.detach().slice(d, start, end, step), d, start, end, step, false);
}

Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length) {
  int64_t d = wrap_dim(dim, x.dim(), "narrow");
  return record_view<SliceBackward>(x, x.detach().narrow(d, start, length), d, start, length, int64_t{1}, true);
}

Tensor squeeze(const Tensor& x, int64_t dim) {
  int64_t d = wrap_dim(dim, x.dim(), "squeeze");
  return record_view<SqueezeBackward>(x, x.detach().squeeze(d), d);
}

Tensor unsqueeze(const Tensor& x, int64_t dim) {
  int64_t d = wrap_dim(dim, x.dim() + 1, "unsqueeze");
  return record_view<UnsqueezeBackward>(x, x.detach().unsqueeze(d), d);
}

Tensor expand(const Tensor& x, const Shape& shape) {
  return record_view<ExpandBackward>(x, x.detach().expand(shape));
}

Tensor contiguous(const Tensor& x) {
  if (x.is_contiguous()) return x;
  return record_view<ContiguousBackward>(x, x.detach().contiguous());
}

Tensor cast(const Tensor& x, DType dtype) {
  MOM_CHECK(x.defined(), "cast", "x is undefined");
  if (x.dtype() == dtype) return x;
  MOM_CHECK(is_floating(x.dtype()) && is_floating(dtype), "cast",
            "casts convert between floating dtypes, got " << dtype_name(x.dtype()) << " to " << dtype_name(dtype));
  return record_view<CastBackward>(x, x.detach().to(dtype));
}

Tensor cat(const std::vector<Tensor>& xs, int64_t dim) {
  std::vector<Tensor> data;
  for (const Tensor& x : xs) data.push_back(kernel_input(x));
  Tensor y = kernels::cat(data, dim);
  if (needs_grad(xs)) {
    int64_t d = wrap_dim(dim, y.dim(), "cat");
    std::vector<int64_t> sizes;
    for (const Tensor& x : xs) sizes.push_back(x.size(d));
    set_history(make_node<CatBackward>(xs, std::move(sizes), d), {&y});
  }
  return y;
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  std::vector<Tensor> pieces = kernels::split(kernel_input(x), sizes, dim);
  if (needs_grad({x})) {
    std::vector<Tensor*> outs;
    for (Tensor& p : pieces) outs.push_back(&p);
    set_history(make_node<SplitBackward>({x}, wrap_dim(dim, x.dim(), "split")), outs);
  }
  return pieces;
}

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) { return record_index(x, dim, index, false); }
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) { return record_index(x, dim, index, true); }

// ---- gradient-check cases ----

namespace autograd {

namespace {

using Fn = std::function<std::vector<Tensor>(const std::vector<Tensor>&)>;

// One case: f64 normal inputs of the given shapes (named as in the API) and the function to check.
void add_case(std::vector<GradcheckCase>& cases, const char* op, const char* variant, std::vector<Shape> shapes,
              std::vector<std::string> names, Fn fn) {
  cases.push_back({op, variant, [shapes, names, fn](Generator& gen) {
                     GradcheckProblem p;
                     for (const Shape& s : shapes) p.inputs.push_back(randn(s, gen, DType::f64));
                     p.names = names;
                     p.fn = fn;
                     return p;
                   }});
}

void add_unary(std::vector<GradcheckCase>& cases, const char* op, const char* variant, const Shape& shape,
               std::function<Tensor(const Tensor&)> f) {
  add_case(cases, op, variant, {shape}, {"x"}, [f](const std::vector<Tensor>& in) { return std::vector<Tensor>{f(in[0])}; });
}

void add_binary(std::vector<GradcheckCase>& cases, const char* op, const char* variant, const Shape& sa,
                const Shape& sb, std::function<Tensor(const Tensor&, const Tensor&)> f) {
  add_case(cases, op, variant, {sa, sb}, {"a", "b"},
           [f](const std::vector<Tensor>& in) { return std::vector<Tensor>{f(in[0], in[1])}; });
}

void add_reduce_cases(std::vector<GradcheckCase>& cases) {
  add_unary(cases, "sum", "all (2, 3)", {2, 3}, [](const Tensor& x) { return sum(x); });
  add_unary(cases, "sum", "dims {0, -1} keepdim (2, 3, 4)", {2, 3, 4}, [](const Tensor& x) { return sum(x, {0, -1}, true); });
  add_unary(cases, "sum", "dim -2 (2, 3, 4)", {2, 3, 4}, [](const Tensor& x) { return sum(x, {-2}); });
  add_unary(cases, "mean", "all (2, 3)", {2, 3}, [](const Tensor& x) { return mean(x); });
  add_unary(cases, "mean", "dims {2, 0} (2, 3, 4)", {2, 3, 4}, [](const Tensor& x) { return mean(x, {2, 0}); });
  add_unary(cases, "mean", "dim -1 keepdim (3, 4)", {3, 4}, [](const Tensor& x) { return mean(x, {-1}, true); });
  add_unary(cases, "max", "all (3, 4)", {3, 4}, [](const Tensor& x) { return max(x); });
  add_unary(cases, "max", "dim 1 keepdim (2, 3, 4)", {2, 3, 4}, [](const Tensor& x) { return max(x, 1, true); });
  add_unary(cases, "max", "dim -1 (3, 5)", {3, 5}, [](const Tensor& x) { return max(x, -1); });
}

void add_matmul_cases(std::vector<GradcheckCase>& cases) {
  add_binary(cases, "matmul", "(3, 4) @ (4, 2)", {3, 4}, {4, 2}, [](const Tensor& a, const Tensor& b) { return matmul(a, b); });
  add_binary(cases, "matmul", "(2, 1, 3, 4) @ (3, 4, 2) broadcast", {2, 1, 3, 4}, {3, 4, 2},
             [](const Tensor& a, const Tensor& b) { return matmul(a, b); });
  add_binary(cases, "matmul", "(3, 4) @ (2, 4, 2) broadcast a", {3, 4}, {2, 4, 2},
             [](const Tensor& a, const Tensor& b) { return matmul(a, b); });
  add_binary(cases, "matmul", "(2, 3, 4) @ (4, 2) folded rows", {2, 3, 4}, {4, 2},
             [](const Tensor& a, const Tensor& b) { return matmul(a, b); });
  add_binary(cases, "matmul", "transpose(a (4, 3)) @ b (4, 2)", {4, 3}, {4, 2},
             [](const Tensor& a, const Tensor& b) { return matmul(transpose(a, 0, 1), b); });
  add_binary(cases, "matmul", "(2, 3, 4) @ transpose(b (2, 4))", {2, 3, 4}, {2, 4},
             [](const Tensor& a, const Tensor& b) { return matmul(a, transpose(b, 0, 1)); });
  add_binary(cases, "matmul", "both transposed, batched", {2, 4, 3}, {1, 2, 4},
             [](const Tensor& a, const Tensor& b) { return matmul(transpose(a, -1, -2), transpose(b, 1, 2)); });
  add_binary(cases, "matmul", "permuted a (copied)", {3, 2, 4}, {4, 2},
             [](const Tensor& a, const Tensor& b) { return matmul(permute(a, {1, 0, 2}), b); });
  add_binary(cases, "matmul", "slice of transpose @ b", {5, 3}, {4, 2},
             [](const Tensor& a, const Tensor& b) { return matmul(slice(transpose(a, 0, 1), 1, 1, 5), b); });
  add_case(cases, "linear", "x (3, 4), W (5, 4), b (5)", {{3, 4}, {5, 4}, {5}}, {"x", "weight", "bias"},
           [](const std::vector<Tensor>& in) { return std::vector<Tensor>{linear(in[0], in[1], in[2])}; });
  add_case(cases, "linear", "x (2, 3, 4), narrowed W and b", {{2, 3, 4}, {6, 4}, {6}}, {"x", "weight", "bias"},
           [](const std::vector<Tensor>& in) {
             return std::vector<Tensor>{linear(in[0], narrow(in[1], 0, 1, 3), narrow(in[2], 0, 1, 3))};
           });
  add_case(cases, "linear", "no bias", {{3, 4}, {2, 4}}, {"x", "weight"},
           [](const std::vector<Tensor>& in) { return std::vector<Tensor>{linear(in[0], in[1], Tensor())}; });
}

void add_shape_cases(std::vector<GradcheckCase>& cases) {
  add_unary(cases, "reshape", "(2, 3, 4) -> (4, -1)", {2, 3, 4}, [](const Tensor& x) { return reshape(x, {4, -1}); });
  add_unary(cases, "reshape", "of a transpose (copies)", {3, 4}, [](const Tensor& x) { return reshape(transpose(x, 0, 1), {2, 6}); });
  add_unary(cases, "transpose", "(2, 3, 4) dims 0, -1", {2, 3, 4}, [](const Tensor& x) { return transpose(x, 0, -1); });
  add_unary(cases, "permute", "(2, 3, 4) {2, 0, 1}", {2, 3, 4}, [](const Tensor& x) { return permute(x, {2, 0, 1}); });
  add_unary(cases, "permute", "(2, 3, 4) {-1, -3, 1}", {2, 3, 4}, [](const Tensor& x) { return permute(x, {-1, -3, 1}); });
  add_unary(cases, "slice", "(5, 4) dim 0, 1:5:2", {5, 4}, [](const Tensor& x) { return slice(x, 0, 1, 5, 2); });
  add_unary(cases, "slice", "(3, 5) dim -1, -3:-1", {3, 5}, [](const Tensor& x) { return slice(x, -1, -3, -1); });
  add_unary(cases, "narrow", "(3, 5) dim 1, start 1, length 3", {3, 5}, [](const Tensor& x) { return narrow(x, 1, 1, 3); });
  add_unary(cases, "narrow", "(4, 2) dim -2, start 2, length 2", {4, 2}, [](const Tensor& x) { return narrow(x, -2, 2, 2); });
  add_unary(cases, "squeeze", "(3, 1, 2) dim 1", {3, 1, 2}, [](const Tensor& x) { return squeeze(x, 1); });
  add_unary(cases, "squeeze", "(3, 2) dim 0 (no-op)", {3, 2}, [](const Tensor& x) { return squeeze(x, 0); });
  add_unary(cases, "unsqueeze", "(3, 2) dim -1", {3, 2}, [](const Tensor& x) { return unsqueeze(x, -1); });
  add_unary(cases, "unsqueeze", "(3, 2) dim 1", {3, 2}, [](const Tensor& x) { return unsqueeze(x, 1); });
  add_unary(cases, "expand", "(3, 1) -> (2, 3, 4)", {3, 1}, [](const Tensor& x) { return expand(x, {2, 3, 4}); });
  add_unary(cases, "contiguous", "of a transpose (3, 4)", {3, 4}, [](const Tensor& x) { return contiguous(transpose(x, 0, 1)); });
}

void add_index_cases(std::vector<GradcheckCase>& cases) {
  add_case(cases, "cat", "3 inputs, dim -1", {{2, 1}, {2, 3}, {2, 2}}, {"xs[0]", "xs[1]", "xs[2]"},
           [](const std::vector<Tensor>& in) { return std::vector<Tensor>{cat(in, -1)}; });
  add_case(cases, "cat", "dim 0 with a constant", {{2, 3}, {1, 3}}, {"xs[0]", "xs[2]"},
           [](const std::vector<Tensor>& in) {
             return std::vector<Tensor>{cat({in[0], full({2, 3}, 0.5, in[0].dtype(), in[0].device()), in[1]}, 0)};
           });
  add_case(cases, "split", "(7, 2) into 2, 4, 1 along 0", {{7, 2}}, {"x"},
           [](const std::vector<Tensor>& in) { return split(in[0], {2, 4, 1}, 0); });
  add_case(cases, "split", "(2, 5) into 3, 0, 2 along -1, 1 used", {{2, 5}}, {"x"},
           [](const std::vector<Tensor>& in) {
             std::vector<Tensor> pieces = split(in[0], {3, 0, 2}, -1);
             return std::vector<Tensor>{pieces[0]};
           });
  auto index_case = [&cases](const char* op, const char* variant, Shape x_shape, int64_t dim, Tensor index) {
    cases.push_back({op, variant, [x_shape, dim, index, op](Generator& gen) {
                       GradcheckProblem p;
                       p.inputs = {randn(x_shape, gen, DType::f64), index};
                       p.names = {"x", "index"};
                       bool is_gather = std::string(op) == "gather";
                       p.fn = [dim, is_gather](const std::vector<Tensor>& in) {
                         return std::vector<Tensor>{is_gather ? gather(in[0], dim, in[1]) : index_select(in[0], dim, in[1])};
                       };
                       return p;
                     }});
  };
  index_case("index_select", "(4, 3) dim 0, repeats, int64", {4, 3}, 0, from_vector<int64_t>({3, 0, 3, 1, 3}, {5}));
  index_case("index_select", "(2, 5, 2) dim -2, int32", {2, 5, 2}, -2, from_vector<int32_t>({4, 1, 1}, {3}));
  index_case("gather", "(3, 4) dim 1, index (3, 2)", {3, 4}, 1, from_vector<int64_t>({0, 3, 2, 2, 1, 0}, {3, 2}));
  index_case("gather", "(4, 3) dim 0, index (3, 2), int32", {4, 3}, 0, from_vector<int32_t>({3, 0, 3, 3, 1, 0}, {3, 2}));
  index_case("gather", "(2, 3, 4) dim -1, index (2, 2, 3)", {2, 3, 4}, -1,
             from_vector<int64_t>({0, 3, 3, 1, 1, 2, 0, 0, 0, 3, 2, 1}, {2, 2, 3}));
}

}  // namespace

void add_reduce_shape_gradcheck_cases(std::vector<GradcheckCase>& cases) {
  add_reduce_cases(cases);
  add_matmul_cases(cases);
  add_shape_cases(cases);
  add_index_cases(cases);
}

}  // namespace autograd
}  // namespace mom
