// masked_linear on the CPU against its floor: one plain GEMM of the same total size (T tokens through
// one (Out, In) weight), which does exactly the FLOPs the routed projection does.
//
//   bench_masked_linear_cpu [T In Out]      (defaults 4096 512 1024; M = 3 with 60% / 30% / 10% of the
//                                            tokens, interleaved at random)
//
// Prints GFLOP/s of the masked forward (2 T In Out FLOPs) and backward (dx and dweight: 4 T In Out), of
// the plain GEMMs doing the same work (into preallocated outputs), and the time ratio masked / plain.
// Target: ratio <= 1.3.
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <vector>

#include "kernels/masked_linear.h"

namespace {

using mom::Tensor;

double seconds(const std::function<void()>& f) {
  auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Runs masked and plain alternately (after one warm-up each), so that the load of a shared machine
// falls on both alike; prints the median times, the median of the per-pair ratios and the ratio of the
// best times.
void compare(const char* what, double flops, const std::function<void()>& masked, const std::function<void()>& plain,
             int reps) {
  masked();
  plain();
  std::vector<double> tm, tp, ratio;
  for (int i = 0; i < reps; ++i) {
    tm.push_back(seconds(masked));
    tp.push_back(seconds(plain));
    ratio.push_back(tm.back() / tp.back());
  }
  double m = median(tm), p = median(tp), r = median(ratio);
  double best = *std::min_element(tm.begin(), tm.end()) / *std::min_element(tp.begin(), tp.end());
  std::printf("%-9s masked %7.2f ms %6.1f GFLOP/s | plain GEMM %7.2f ms %6.1f GFLOP/s | ratio %.2fx (best %.2fx) %s\n",
              what, m * 1e3, flops / m * 1e-9, p * 1e3, flops / p * 1e-9, r, best,
              r <= 1.3 ? "within the 1.3x target" : "above the 1.3x target");
}

}  // namespace

int main(int argc, char** argv) {
  int64_t T = 4096, In = 512, Out = 1024;
  if (argc == 4) {
    T = std::atoll(argv[1]);
    In = std::atoll(argv[2]);
    Out = std::atoll(argv[3]);
  } else if (argc != 1) {
    std::fprintf(stderr, "usage: %s [T In Out]\n", argv[0]);
    return 2;
  }
  const int64_t M = 3;
  const int reps = 15;
  mom::Generator gen(0);
  std::vector<int32_t> ids(T);
  for (int32_t& id : ids) {
    uint64_t r = gen.randint(10);
    id = r < 6 ? 0 : (r < 9 ? 1 : 2);
  }
  mom::kernels::Routing routing = mom::kernels::Routing::from_modalities(mom::from_vector<int32_t>(ids, {T}), M);
  Tensor x = mom::randn({T, In}, gen), dy = mom::randn({T, Out}, gen);
  std::vector<Tensor> weight, bias;
  for (int64_t m = 0; m < M; ++m) {
    weight.push_back(mom::randn({Out, In}, gen, mom::DType::f32, 0, 0.05));
    bias.push_back(mom::randn({Out}, gen));
  }
  std::printf("masked_linear f32, T=%lld In=%lld Out=%lld, M=%lld with %lld / %lld / %lld tokens\n", (long long)T,
              (long long)In, (long long)Out, (long long)M, (long long)routing.counts[0], (long long)routing.counts[1],
              (long long)routing.counts[2]);

  const float* xp = x.data<float>();
  const float* dyp = dy.data<float>();
  const float* w0 = weight[0].data<float>();
  Tensor y = mom::empty({T, Out}), dx = mom::empty({T, In}), dw = mom::empty({Out, In});

  const double flops = 2.0 * T * In * Out;
  compare(
      "forward", flops, [&] { mom::kernels::masked_linear_forward(x, routing, weight, bias); },
      [&] {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, Out, In, 1.0f, xp, In, w0, In, 0.0f,
                    y.data<float>(), Out);
      },
      reps);
  compare(
      "backward", 2 * flops, [&] { mom::kernels::masked_linear_backward(dy, x, routing, weight, true, true, true); },
      [&] {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, In, Out, 1.0f, dyp, Out, w0, In, 0.0f,
                    dx.data<float>(), In);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Out, In, T, 1.0f, dyp, Out, xp, In, 0.0f,
                    dw.data<float>(), In);
      },
      reps);
  return 0;
}
