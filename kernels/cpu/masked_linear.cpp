// CPU reference for kernels/masked_linear.h: counting-sort routing, gather, one CBLAS GEMM per
// modality into a grouped-order buffer, rows moved to token order (bias added on the way).
// Also the argument checks of both devices and the dispatch to kernels/cuda/masked_linear.cu.
#include "kernels/masked_linear.h"

#include <algorithm>
#include <string>

#include "kernels/cpu/gemm.h"
#include "kernels/elementwise.h"
#include "kernels/index.h"

namespace mom::kernels {

namespace {

using cpu::gemm;

constexpr const char* kOp = "masked_linear";

struct LinearDims {
  int64_t T, In, Out, M;
};

std::string expert_name(const char* what, int64_t m) { return std::string(what) + "[" + std::to_string(m) + "]"; }

// A weight or gradient of x's dtype; a bias (acc) of its accumulation dtype (float32 beside bf16).
void check_expert(const Tensor& t, const Tensor& x, const std::string& name, bool acc = false) {
  check_compute(t, kOp, name.c_str());
  if (acc)
    check_acc_dtype(t, x, kOp, name.c_str(), "x");
  else
    check_same_dtype(t, x, kOp, name.c_str(), "x");
  check_contiguous(t, kOp, name.c_str());
  check_same_device(t, x, kOp, name.c_str(), "x");
}

LinearDims check_linear_inputs(const Tensor& x, const Routing& routing, const std::vector<Tensor>& weight,
                               const std::vector<Tensor>& bias) {
  check_compute(x, kOp, "x");
  check_contiguous(x, kOp, "x");
  MOM_CHECK(x.dim() == 2, kOp, "x must be (T, In), got shape " << shape_str(x.shape()));
  LinearDims d{x.size(0), x.size(1), 0, routing.num_modalities};
  MOM_CHECK(d.M >= 1 && routing.counts.size() == static_cast<size_t>(d.M) &&
                routing.offsets.size() == static_cast<size_t>(d.M + 1) && routing.perm.defined() &&
                routing.perm.dtype() == DType::i64 && routing.perm.is_contiguous() &&
                routing.perm.numel() == routing.num_tokens(),
            kOp, "the routing is empty or inconsistent; build it with Routing::from_modalities");
  MOM_CHECK(routing.num_tokens() == d.T, kOp,
            "x has " << d.T << " tokens (rows), the routing has " << routing.num_tokens());
  MOM_CHECK(routing.device() == x.device(), kOp,
            "the routing is on " << routing.device().str() << " but x is on " << x.device().str()
                                 << "; build it from modality ids on x's device");
  MOM_CHECK(d.In >= 1, kOp, "x has 0 columns");
  MOM_CHECK(weight.size() == static_cast<size_t>(d.M), kOp,
            "got " << weight.size() << " expert weights for M = " << d.M << " modalities");
  for (int64_t m = 0; m < d.M; ++m) {
    std::string name = expert_name("weight", m);
    check_expert(weight[m], x, name);
    MOM_CHECK(weight[m].dim() == 2, kOp, name << " must be (Out, In), got shape " << shape_str(weight[m].shape()));
    if (m == 0) d.Out = weight[0].size(0);
    MOM_CHECK(weight[m].size(1) == d.In, kOp,
              "x has " << d.In << " columns, " << name << " expects " << weight[m].size(1));
    MOM_CHECK(weight[m].size(0) == d.Out, kOp,
              name << " has " << weight[m].size(0) << " rows (Out), weight[0] has " << d.Out);
  }
  MOM_CHECK(d.Out >= 1, kOp, "the experts have 0 output rows");
  MOM_CHECK(bias.empty() || bias.size() == static_cast<size_t>(d.M), kOp,
            "got " << bias.size() << " expert biases for M = " << d.M << " modalities (give none or one per modality)");
  for (size_t m = 0; m < bias.size(); ++m) {
    std::string name = expert_name("bias", static_cast<int64_t>(m));
    check_expert(bias[m], x, name, /*acc=*/true);
    check_shape(bias[m], {d.Out}, kOp, name.c_str());
  }
  return d;
}

// The row moves are memory-bound. They run on every OpenMP thread when OpenBLAS is its OpenMP build
// (MOM_BLAS_OPENMP): the GEMMs then use the same threads. With the pthreads build they stay on one
// thread: OpenBLAS's own workers, still spinning after a GEMM, would take the cores from OpenMP copies
// (measured on 2 cores: 1.4x-1.8x of a plain GEMM's time with parallel copies, 1.1x without).
#ifdef MOM_BLAS_OPENMP
constexpr bool kParallelMoves = true;
#else
constexpr bool kParallelMoves = false;
#endif
constexpr int64_t kParallelMoveElems = 1 << 16;  // smaller moves stay on one thread

// dst[p, :] = src[perm[p], :] for p in [0, T): token order -> grouped order. Rows of C values.
template <typename S> void gather_rows(const S* src, const int64_t* perm, int64_t T, int64_t C, S* dst) {
#pragma omp parallel for schedule(static) if (kParallelMoves && T * C > kParallelMoveElems)
  for (int64_t p = 0; p < T; ++p) std::copy(src + perm[p] * C, src + (perm[p] + 1) * C, dst + p * C);
}

// dst[perm[p], :] = src[p, :] (+ bias[m] for the rows of modality m's block, when a bias is given):
// grouped order -> token order.
template <typename S>
void scatter_rows(const S* src, const Routing& routing, int64_t C, const std::vector<Tensor>& bias, S* dst) {
  const int64_t* perm = routing.perm.data<int64_t>();
  for (int64_t m = 0; m < routing.num_modalities; ++m) {
    const int64_t begin = routing.offsets[m], end = routing.offsets[m + 1];
    const S* b = bias.empty() ? nullptr : bias[m].data<S>();
#pragma omp parallel for schedule(static) if (kParallelMoves && (end - begin) * C > kParallelMoveElems)
    for (int64_t p = begin; p < end; ++p) {
      const S* row = src + p * C;
      S* out = dst + perm[p] * C;
      if (b)
        for (int64_t j = 0; j < C; ++j) out[j] = row[j] + b[j];
      else
        std::copy(row, row + C, out);
    }
  }
}

// out[j] = sum over rows p in [begin, end) of g[p, j], rows in order, in double.
template <typename S> void column_sums(const S* g, int64_t begin, int64_t end, int64_t C, S* out) {
  std::vector<double> acc(C, 0.0);
  for (int64_t p = begin; p < end; ++p)
    for (int64_t j = 0; j < C; ++j) acc[j] += g[p * C + j];
  for (int64_t j = 0; j < C; ++j) out[j] = static_cast<S>(acc[j]);
}

}  // namespace


namespace {

std::vector<Tensor> widened(const std::vector<Tensor>& ts) {
  std::vector<Tensor> out;
  for (const Tensor& t : ts) out.push_back(widen_bf16(t));
  return out;
}

// The CPU forward, rows of x and y in the given orders: y is computed in grouped order (x gathered
// into it unless it is there already), then its rows are moved to token order with the bias added,
// or, for a grouped y, the bias is added in place. bf16: the float32 forward of the widened x and
// weights, y rounded once.
Tensor forward_rows(const Tensor& x, const Routing& routing, const std::vector<Tensor>& weight,
                    const std::vector<Tensor>& bias, RowOrder order, const LinearDims& d) {
  check_cpu(x, kOp, "x");
  if (x.dtype() == DType::bf16)
    return forward_rows(widen_bf16(x), routing, widened(weight), bias, order, d).to(DType::bf16);
  Tensor y = empty({d.T, d.Out}, x.dtype());
  dispatch_float(x.dtype(), kOp, [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    Tensor xg_t = order.x_grouped ? x : empty({d.T, d.In}, x.dtype());   // x in grouped order
    Tensor yg_t = order.y_grouped ? y : empty({d.T, d.Out}, x.dtype());  // y in grouped order
    scalar_t* xg = xg_t.data<scalar_t>();
    scalar_t* yg = yg_t.data<scalar_t>();
    if (!order.x_grouped) gather_rows(x.data<scalar_t>(), routing.perm.data<int64_t>(), d.T, d.In, xg);
    for (int64_t m = 0; m < d.M; ++m) {
      const int64_t off = routing.offsets[m], n = routing.counts[m];
      if (n == 0) continue;
      // y_m (n, Out) = x_m (n, In) @ weight[m]^T
      gemm(false, true, n, d.Out, d.In, xg + off * d.In, d.In, weight[m].data<scalar_t>(), d.In, yg + off * d.Out,
           d.Out);
      if (!order.y_grouped || bias.empty()) continue;
      const scalar_t* b = bias[m].data<scalar_t>();
      for (int64_t p = off; p < off + n; ++p)
        for (int64_t j = 0; j < d.Out; ++j) yg[p * d.Out + j] += b[j];
    }
    if (!order.y_grouped) scatter_rows(yg, routing, d.Out, bias, y.data<scalar_t>());
  });
  return y;
}

// The CPU backward, rows of dy and x (and dx) in the given orders. bf16: the float32 backward of the
// widened inputs, dx and dweight rounded once, dbias (float32) as it is.
MaskedLinearGrads backward_rows(const Tensor& dy, const Tensor& x, const Routing& routing,
                                const std::vector<Tensor>& weight, bool has_bias, bool need_dx, bool need_dparams,
                                RowOrder order, const LinearDims& d) {
  check_cpu(x, kOp, "x");
  if (x.dtype() == DType::bf16) {
    MaskedLinearGrads g = backward_rows(widen_bf16(dy), widen_bf16(x), routing, widened(weight), has_bias, need_dx,
                                        need_dparams, order, d);
    g.dx = round_to(g.dx, DType::bf16);
    for (Tensor& w : g.dweight) w = round_to(w, DType::bf16);
    return g;
  }
  MaskedLinearGrads grads;
  grads.dweight.resize(d.M);
  if (has_bias) grads.dbias.resize(d.M);
  if (need_dx) grads.dx = empty({d.T, d.In}, x.dtype());
  dispatch_float(x.dtype(), kOp, [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    const int64_t* perm = routing.perm.data<int64_t>();
    // dy and x in grouped order; dx is computed in grouped order, then moved to token order.
    Tensor dyg_t = order.y_grouped ? dy : empty({d.T, d.Out}, x.dtype());
    Tensor xg_t = !need_dparams ? Tensor() : order.x_grouped ? x : empty({d.T, d.In}, x.dtype());
    Tensor dxg_t = !need_dx ? Tensor() : order.x_grouped ? grads.dx : empty({d.T, d.In}, x.dtype());
    scalar_t* dyg = dyg_t.data<scalar_t>();
    scalar_t* xg = need_dparams ? xg_t.data<scalar_t>() : nullptr;
    scalar_t* dxg = need_dx ? dxg_t.data<scalar_t>() : nullptr;
    if (!order.y_grouped) gather_rows(dy.data<scalar_t>(), perm, d.T, d.Out, dyg);
    if (need_dparams && !order.x_grouped) gather_rows(x.data<scalar_t>(), perm, d.T, d.In, xg);
    for (int64_t m = 0; m < d.M; ++m) {
      const int64_t off = routing.offsets[m], n = routing.counts[m];
      if (n == 0) continue;  // an absent expert: no FLOPs, undefined gradients
      const scalar_t* dy_m = dyg + off * d.Out;
      // dx_m (n, In) = dy_m (n, Out) @ weight[m] (Out, In)
      if (need_dx)
        gemm(false, false, n, d.In, d.Out, dy_m, d.Out, weight[m].data<scalar_t>(), d.In, dxg + off * d.In, d.In);
      if (!need_dparams) continue;
      // dweight[m] (Out, In) = dy_m^T (Out, n) @ x_m (n, In)
      grads.dweight[m] = empty({d.Out, d.In}, x.dtype());
      gemm(true, false, d.Out, d.In, n, dy_m, d.Out, xg + off * d.In, d.In, grads.dweight[m].data<scalar_t>(),
           d.In);
      if (has_bias) {
        grads.dbias[m] = empty({d.Out}, x.dtype());
        column_sums(dyg, off, off + n, d.Out, grads.dbias[m].data<scalar_t>());
      }
    }
    if (need_dx && !order.x_grouped) scatter_rows(dxg, routing, d.In, {}, grads.dx.data<scalar_t>());
  });
  return grads;
}

void check_split(const std::vector<int64_t>& split, int64_t Out) {
  int64_t total = 0;
  for (int64_t cols : split) {
    MOM_CHECK(cols >= 1, kOp, "split sizes must be positive, got " << cols);
    total += cols;
  }
  MOM_CHECK(!split.empty() && split.size() <= 4, kOp, "split must have 1 to 4 parts, got " << split.size());
  MOM_CHECK(total == Out, kOp, "split sizes sum to " << total << ", the experts have " << Out << " output rows");
}

}  // namespace

Tensor masked_linear_forward(const Tensor& x, const Routing& routing, const std::vector<Tensor>& weight,
                             const std::vector<Tensor>& bias) {
  LinearDims d = check_linear_inputs(x, routing, weight, bias);
#ifdef MOM_WITH_CUDA
  if (x.device().is_cuda()) return cuda::masked_linear_forward(x, routing, weight, bias, {d.Out}, {})[0];
#endif
  return forward_rows(x, routing, weight, bias, {}, d);
}

MaskedLinearGrads masked_linear_backward(const Tensor& dy, const Tensor& x, const Routing& routing,
                                         const std::vector<Tensor>& weight, bool has_bias, bool need_dx,
                                         bool need_dparams) {
  LinearDims d = check_linear_inputs(x, routing, weight, {});
  check_expert(dy, x, "dy");
  check_shape(dy, {d.T, d.Out}, kOp, "dy");
#ifdef MOM_WITH_CUDA
  if (x.device().is_cuda())
    return cuda::masked_linear_backward({dy}, x, routing, weight, has_bias, need_dx, need_dparams, {});
#endif
  return backward_rows(dy, x, routing, weight, has_bias, need_dx, need_dparams, {}, d);
}

std::vector<Tensor> masked_linear_forward_split(const Tensor& x, const Routing& routing,
                                                const std::vector<Tensor>& weight, const std::vector<Tensor>& bias,
                                                const std::vector<int64_t>& split, RowOrder order) {
  LinearDims d = check_linear_inputs(x, routing, weight, bias);
  check_split(split, d.Out);
#ifdef MOM_WITH_CUDA
  if (x.device().is_cuda()) return cuda::masked_linear_forward(x, routing, weight, bias, split, order);
#endif
  return kernels::split(forward_rows(x, routing, weight, bias, order, d), split, 1);
}

MaskedLinearGrads masked_linear_backward_split(const std::vector<Tensor>& dy, const Tensor& x, const Routing& routing,
                                               const std::vector<Tensor>& weight, bool has_bias, bool need_dx,
                                               bool need_dparams, RowOrder order) {
  LinearDims d = check_linear_inputs(x, routing, weight, {});
  std::vector<int64_t> split;
  for (size_t i = 0; i < dy.size(); ++i) {
    const std::string name = "dy[" + std::to_string(i) + "]";
    MOM_CHECK(dy[i].defined(), kOp, name << " is undefined (give zeros for a part without a gradient)");
    check_expert(dy[i], x, name);
    MOM_CHECK(dy[i].dim() == 2 && dy[i].size(0) == d.T, kOp,
              name << " must be (" << d.T << ", cols), got shape " << shape_str(dy[i].shape()));
    split.push_back(dy[i].size(1));
  }
  check_split(split, d.Out);
#ifdef MOM_WITH_CUDA
  if (x.device().is_cuda())
    return cuda::masked_linear_backward(dy, x, routing, weight, has_bias, need_dx, need_dparams, order);
#endif
  return backward_rows(dy.size() == 1 ? dy[0] : kernels::cat(dy, 1), x, routing, weight, has_bias, need_dx,
                       need_dparams, order, d);
}

}  // namespace mom::kernels
