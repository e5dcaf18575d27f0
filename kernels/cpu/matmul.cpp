// CPU version of kernels/matmul.h: one CBLAS GEMM per batch matrix (OpenBLAS threads each GEMM), or
// one GEMM in all when a 2-D b lets the batch dims of a fold into the rows. Also the argument checks
// of both devices, the dispatch to kernels/cuda/matmul.cu, and the TF32 switch.

#include <algorithm>
#include <atomic>
#include <limits>

#include "kernels/cpu/gemm.h"
#include "kernels/elementwise.h"
#include "kernels/matmul.h"
#include "kernels/reduce.h"

namespace mom::kernels {

namespace {

using cpu::gemm;

std::atomic<bool> tf32_allowed{false};

void check_operand(const Tensor& t, const char* name) {
  check_compute(t, "matmul", name);
  check_contiguous(t, "matmul", name);
  MOM_CHECK(t.dim() >= 2, "matmul",
            name << " must have at least 2 dims, got shape " << shape_str(t.shape()) << "; unsqueeze a vector first");
  for (int64_t s : t.shape())
    MOM_CHECK(s <= std::numeric_limits<int>::max(), "matmul",
              name << " has a dim of size " << s << ", more than CBLAS can index");
}

Shape batch_of(const Tensor& t) { return Shape(t.shape().begin(), t.shape().end() - 2); }

// The stored matrix (rows, cols) and its product view op(t): (m, k) with m the rows of op(t).
struct Operand {
  int64_t rows, cols;  // as stored
  int64_t op_rows, op_cols;
};

Operand operand(const Tensor& t, bool transposed) {
  int64_t r = t.size(-2), c = t.size(-1);
  return transposed ? Operand{r, c, c, r} : Operand{r, c, r, c};
}

}  // namespace

Shape matmul_output_shape(const Tensor& a, const Tensor& b, bool ta, bool tb) {
  Operand oa = operand(a, ta), ob = operand(b, tb);
  MOM_CHECK(oa.op_cols == ob.op_rows, "matmul",
            "a " << shape_str(a.shape()) << (ta ? " (transposed)" : "") << " has " << oa.op_cols
                 << " columns but b " << shape_str(b.shape()) << (tb ? " (transposed)" : "") << " has "
                 << ob.op_rows << " rows");
  Shape ba = batch_of(a), bb = batch_of(b);
  size_t n = std::max(ba.size(), bb.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - ba.size() ? 1 : ba[i - (n - ba.size())];
    int64_t db = i < n - bb.size() ? 1 : bb[i - (n - bb.size())];
    MOM_CHECK(da == db || da == 1 || db == 1, "matmul",
              "batch dims " << shape_str(ba) << " of a " << shape_str(a.shape()) << " and " << shape_str(bb)
                            << " of b " << shape_str(b.shape()) << " cannot broadcast");
    out[i] = da == 1 ? db : da;
  }
  out.push_back(oa.op_rows);
  out.push_back(ob.op_cols);
  return out;
}

std::vector<int64_t> matmul_batch_index_map(const Shape& in, const Shape& batch) {
  Shape st = contiguous_strides(in);
  size_t lead = batch.size() - in.size();
  int64_t n = shape_numel(batch);
  std::vector<int64_t> map(n);
  for (int64_t i = 0; i < n; ++i) {
    int64_t rem = i, idx = 0;
    for (size_t d = batch.size(); d-- > lead;) {
      int64_t k = rem % batch[d];
      rem /= batch[d];
      if (in[d - lead] != 1) idx += k * st[d - lead];
    }
    map[i] = idx;
  }
  return map;
}

namespace {

// Sums a gradient of shape (batch, r, c) over the batch dims that broadcasting expanded to reach
// `shape` (= (batch_in, r, c)).
Tensor sum_to_batch(const Tensor& g, const Shape& shape) {
  if (g.shape() == shape) return g;
  std::vector<int64_t> dims;
  size_t lead = g.shape().size() - shape.size();
  for (size_t i = 0; i + 2 < g.shape().size(); ++i)
    if (i < lead || (shape[i - lead] == 1 && g.shape()[i] != 1)) dims.push_back(static_cast<int64_t>(i));
  return sum(g, dims, true).view(shape);
}

}  // namespace

void set_allow_tf32(bool allow) { tf32_allowed.store(allow); }
bool allow_tf32() { return tf32_allowed.load(); }

Tensor matmul(const Tensor& a, const Tensor& b, bool transpose_a, bool transpose_b, const Tensor& bias) {
  check_operand(a, "a");
  check_operand(b, "b");
  check_same_dtype(a, b, "matmul", "a", "b");
  check_same_device(a, b, "matmul", "a", "b");
  Shape out_shape = matmul_output_shape(a, b, transpose_a, transpose_b);
  Operand oa = operand(a, transpose_a), ob = operand(b, transpose_b);
  int64_t m = oa.op_rows, k = oa.op_cols, n = ob.op_cols;
  if (bias.defined()) {
    MOM_CHECK(b.dim() == 2 && !transpose_a, "matmul",
              "a bias is added to x @ W^T: b must be 2-D and a not transposed, got b " << shape_str(b.shape()));
    check_contiguous(bias, "matmul", "bias");
    check_acc_dtype(bias, a, "matmul", "bias", "a");
    check_same_device(a, bias, "matmul", "a", "bias");
    check_shape(bias, Shape{n}, "matmul", "bias");
  }
  if (shape_numel(out_shape) == 0 || k == 0) {
    Tensor c = zeros(out_shape, acc_dtype(a.dtype()), a.device());
    return round_to(bias.defined() && shape_numel(out_shape) > 0 ? add(c, bias) : c, a.dtype());
  }
#ifdef MOM_WITH_CUDA
  if (a.device().is_cuda()) return cuda::matmul(a, b, transpose_a, transpose_b, bias);
#endif
  check_cpu(a, "matmul", "a");
  if (a.dtype() == DType::bf16)
    return matmul(widen_bf16(a), widen_bf16(b), transpose_a, transpose_b, bias).to(DType::bf16);
  Tensor c = empty(out_shape, a.dtype());
  Shape ba = batch_of(a), bb = batch_of(b), batch(out_shape.begin(), out_shape.end() - 2);
  dispatch_float(a.dtype(), "matmul", [&](auto tag) {
    using scalar_t = MOM_TYPE(tag);
    const scalar_t* ap = a.data<scalar_t>();
    const scalar_t* bp = b.data<scalar_t>();
    scalar_t* cp = c.data<scalar_t>();
    if (bb.empty() && !transpose_a) {
      // Every matrix of a times the one b: the batch dims fold into the rows of one GEMM.
      const int64_t rows = shape_numel(ba) * m;
      gemm(false, transpose_b, rows, n, k, ap, oa.cols, bp, ob.cols, cp, n);
      if (bias.defined()) {
        const scalar_t* bias_p = bias.data<scalar_t>();
#pragma omp parallel for schedule(static) if (rows * n > 32768)
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t j = 0; j < n; ++j) cp[r * n + j] += bias_p[j];
      }
      return;
    }
    std::vector<int64_t> ia = matmul_batch_index_map(ba, batch), ib = matmul_batch_index_map(bb, batch);
    for (size_t i = 0; i < ia.size(); ++i)
      gemm(transpose_a, transpose_b, m, n, k, ap + ia[i] * oa.rows * oa.cols, oa.cols, bp + ib[i] * ob.rows * ob.cols,
           ob.cols, cp + static_cast<int64_t>(i) * m * n, n);
  });
  return c;
}

MatmulGrads matmul_backward(const Tensor& dc, const Tensor& a, const Tensor& b, bool transpose_a, bool transpose_b,
                            bool need_a, bool need_b) {
  check_operand(a, "a");
  check_operand(b, "b");
  check_same_dtype(a, b, "matmul", "a", "b");
  check_same_device(a, b, "matmul", "a", "b");
  check_contiguous(dc, "matmul", "dc");
  check_same_dtype(dc, a, "matmul", "dc", "a");
  check_same_device(dc, a, "matmul", "dc", "a");
  check_shape(dc, matmul_output_shape(a, b, transpose_a, transpose_b), "matmul", "dc");
#ifdef MOM_WITH_CUDA
  if (a.device().is_cuda()) return cuda::matmul_backward(dc, a, b, transpose_a, transpose_b, need_a, need_b);
#endif
  check_cpu(a, "matmul", "a");
  if (a.dtype() == DType::bf16) {
    MatmulGrads g = matmul_backward(widen_bf16(dc), widen_bf16(a), widen_bf16(b), transpose_a, transpose_b, need_a,
                                    need_b);
    return {round_to(g.da, DType::bf16), round_to(g.db, DType::bf16)};
  }
  MatmulGrads g;
  if (need_a) {
    // stored da = dc @ op(b)^T, or its transpose op(b) @ dc^T when a is read transposed.
    Tensor full = transpose_a ? matmul(b, dc, transpose_b, true) : matmul(dc, b, false, !transpose_b);
    g.da = sum_to_batch(full, a.shape());
  }
  if (need_b) {
    // stored db = op(a)^T @ dc, or its transpose dc^T @ op(a) when b is read transposed.
    Tensor a_use = a.detach(), dc_use = dc.detach();
    if (b.dim() == 2 && !transpose_a) {
      // The batch dims fold into the rows, as in the forward: one GEMM sums over every row.
      a_use = a_use.view({-1, a.size(-1)});
      dc_use = dc_use.view({-1, dc.size(-1)});
    }
    Tensor full = transpose_b ? matmul(dc_use, a_use, true, transpose_a) : matmul(a_use, dc_use, !transpose_a, false);
    g.db = sum_to_batch(full, b.shape());
  }
  return g;
}

}  // namespace mom::kernels
