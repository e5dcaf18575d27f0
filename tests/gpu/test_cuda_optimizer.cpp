// The multi-tensor optimiser kernels on CUDA against the CPU's per-tensor reference: AdamW over many
// odd-sized tensors (f32 and f64 mixed, per-tensor step counts, more tensors than one launch takes,
// aligned and misaligned), optim::AdamW skipping parameters without a gradient, and global-norm
// clipping (the norm, the scaled gradients, the case under the limit, repeatability); bad lists.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "kernels/optimizer.h"
#include "nn/module.h"
#include "optim/adamw.h"
#include "optim/clip.h"
#include "tests/gpu/cuda_support.h"
#include "tests/support.h"

namespace mom {
namespace {

using test::Cuda;
using test::same_bits;
using test::expect_error;
using test::test_seed;
using test::rel_error;

const Device kGpu = Device::cuda(0);
const Device kCpu = Device::cpu();

double tolerance(DType dt) { return dt == DType::f32 ? 1e-6 : 1e-12; }

// The values of h on the GPU, 4 or 8 bytes past a 16-byte boundary (the scalar path) when `misaligned`.
Tensor gpu_copy(const Tensor& h, bool misaligned) {
  if (!misaligned) return h.to(kGpu);
  Tensor padded = empty({h.numel() + 1}, h.dtype(), kGpu);
  Tensor view = padded.narrow(0, 1, h.numel()).view(h.shape());
  view.copy_(h.to(kGpu));
  return view;
}

// Sizes around the chunk (16384) and vector widths, and a tensor spanning many chunks.
const int64_t kSizes[] = {1, 7, 3, 257, 4099, 16383, 16384, 16385, 49153, 1000003};

struct ParamSet {
  std::vector<Tensor> p, g, m, v;
  std::vector<int64_t> steps;
};

// n_tensors tensors cycling through kSizes, dtypes alternating in runs, every fifth misaligned on the GPU.
void make_sets(int n_tensors, Generator& gen, ParamSet& cpu, ParamSet& gpu) {
  for (int i = 0; i < n_tensors; ++i) {
    const int64_t n = kSizes[i % (sizeof(kSizes) / sizeof(kSizes[0]))];
    const DType dt = (i / 3) % 2 ? DType::f64 : DType::f32;
    const bool misaligned = i % 5 == 4;
    Tensor p = randn({n}, gen, dt), g = randn({n}, gen, dt, 0.0, 0.5), m = randn({n}, gen, dt, 0.0, 0.1);
    Tensor v = rand({n}, gen, dt, 1e-6, 0.5);
    cpu.p.push_back(p.clone());
    cpu.g.push_back(g.clone());
    cpu.m.push_back(m.clone());
    cpu.v.push_back(v.clone());
    gpu.p.push_back(gpu_copy(p, misaligned));
    gpu.g.push_back(gpu_copy(g, misaligned));
    gpu.m.push_back(gpu_copy(m, misaligned));
    gpu.v.push_back(gpu_copy(v, misaligned));
    const int64_t step = 1 + static_cast<int64_t>(gen.randint(2000));
    cpu.steps.push_back(step);
    gpu.steps.push_back(step);
  }
}

TEST_F(Cuda, AdamWMultiMatchesPerTensorCpu) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  kernels::AdamWHyper h;
  h.lr = 3e-3;
  h.beta1 = 0.85;
  h.beta2 = 0.99;
  h.eps = 1e-7;
  h.weight_decay = 0.1;
  // 113 tensors: three launches of up to 48 (per dtype), both dtypes, both paths.
  ParamSet cpu, gpu;
  make_sets(113, gen, cpu, gpu);
  for (int round = 0; round < 3; ++round) {
    for (size_t i = 0; i < cpu.p.size(); ++i)
      kernels::adamw_step(cpu.p[i], cpu.g[i], cpu.m[i], cpu.v[i], cpu.steps[i], h);
    kernels::adamw_step_multi(gpu.p, gpu.g, gpu.m, gpu.v, gpu.steps, h);
    for (size_t i = 0; i < cpu.steps.size(); ++i) cpu.steps[i] = gpu.steps[i] = cpu.steps[i] + 1 + int64_t(i % 3);
  }
  double worst[2] = {0, 0};
  int identical = 0;
  for (size_t i = 0; i < cpu.p.size(); ++i) {
    const DType dt = cpu.p[i].dtype();
    SCOPED_TRACE("tensor " + std::to_string(i) + " " + dtype_name(dt) + " n=" + std::to_string(cpu.p[i].numel()));
    ASSERT_EQ(gpu.p[i].device(), kGpu);
    for (auto [d, c] : {std::pair{gpu.p[i], cpu.p[i]}, {gpu.m[i], cpu.m[i]}, {gpu.v[i], cpu.v[i]}}) {
      double e = rel_error(d, c);
      EXPECT_LT(e, tolerance(dt));
      worst[dt == DType::f64] = std::max(worst[dt == DType::f64], e);
    }
    identical += same_bits(gpu.p[i], cpu.p[i]) && same_bits(gpu.m[i], cpu.m[i]) && same_bits(gpu.v[i], cpu.v[i]);
  }
  std::printf("adamw multi vs cpu: worst rel error f32 %.3e, f64 %.3e; %d of %zu tensors bit-identical\n", worst[0],
              worst[1], identical, cpu.p.size());
}

TEST_F(Cuda, AdamWMultiRepeatsBitForBit) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  ParamSet cpu, a;
  make_sets(20, gen, cpu, a);
  ParamSet b;
  for (size_t i = 0; i < a.p.size(); ++i) {
    b.p.push_back(a.p[i].clone());
    b.g.push_back(a.g[i].clone());
    b.m.push_back(a.m[i].clone());
    b.v.push_back(a.v[i].clone());
  }
  b.steps = a.steps;
  kernels::adamw_step_multi(a.p, a.g, a.m, a.v, a.steps, {});
  kernels::adamw_step_multi(b.p, b.g, b.m, b.v, b.steps, {});
  for (size_t i = 0; i < a.p.size(); ++i) EXPECT_TRUE(same_bits(a.p[i], b.p[i]) && same_bits(a.v[i], b.v[i])) << i;
}

struct Params : nn::Module {
  std::vector<Tensor> ts;
  Params(Generator& gen, DType dt) {
    int k = 0;
    for (int64_t n : {int64_t(5), int64_t(16385), int64_t(1), int64_t(300), int64_t(4099), int64_t(77)}) {
      const std::string name = "p" + std::to_string(k);
      ts.push_back(register_parameter(name, randn({n}, gen, dt), /*weight_decay=*/k % 2 == 0));
      ++k;
    }
  }
};

// optim::AdamW on the GPU and on the CPU from identical modules: parameters without a gradient are
// skipped (their state and step count untouched), the others match after several steps.
TEST_F(Cuda, OptimiserOnGpuMatchesCpuAndSkipsParametersWithoutGrad) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  for (DType dt : {DType::f32, DType::f64}) {
    SCOPED_TRACE(dtype_name(dt));
    Generator init(seed);
    Params cpu(init, dt);
    Generator init2(seed);
    Params gpu(init2, dt);
    gpu.to(kGpu);
    optim::AdamWOptions o{2e-2, 0.9, 0.95, 1e-8, 0.1};
    optim::AdamW oc = optim::AdamW::from_module(cpu, o), og = optim::AdamW::from_module(gpu, o);
    Generator gen(seed + 1);
    for (int step = 0; step < 4; ++step) {
      for (size_t i = 0; i < cpu.ts.size(); ++i) {
        if ((i + step) % 3 == 0) continue;  // no gradient this step
        Tensor g = randn(cpu.ts[i].shape(), gen, dt);
        cpu.ts[i].set_grad(g);
        gpu.ts[i].set_grad(g.to(kGpu));
      }
      oc.step();
      og.step();
      oc.zero_grad();
      og.zero_grad();
    }
    for (size_t i = 0; i < cpu.ts.size(); ++i) {
      EXPECT_EQ(gpu.ts[i].device(), kGpu);
      EXPECT_LT(rel_error(gpu.ts[i], cpu.ts[i]), tolerance(dt)) << "p" << i;
    }
    auto sc = oc.state_dict(), sg = og.state_dict();
    ASSERT_EQ(sc.size(), sg.size());
    for (const auto& [key, t] : sc) {
      ASSERT_TRUE(sg.count(key)) << key;
      if (t.dtype() == DType::i64) {
        EXPECT_EQ(sg.at(key).to_vector<int64_t>(), t.to_vector<int64_t>()) << key;  // step counts
      } else if (key.rfind("state.", 0) == 0) {
        EXPECT_EQ(sg.at(key).device(), kGpu) << key;
        EXPECT_LT(rel_error(sg.at(key), t), tolerance(dt)) << key;
      }
    }
  }
}

TEST_F(Cuda, ClipGradNormMatchesCpu) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  for (double max_norm : {0.5, 1e9}) {  // clipped, and under the limit (nothing written)
    SCOPED_TRACE("max_norm " + std::to_string(max_norm));
    std::vector<Tensor> cpu, gpu;
    for (int i = 0; i < 130; ++i) {  // two launches of up to 96 per dtype
      const int64_t n = kSizes[i % (sizeof(kSizes) / sizeof(kSizes[0]))];
      const DType dt = i % 4 == 3 ? DType::f64 : DType::f32;
      Tensor p = zeros({n}, dt);
      p.set_requires_grad(true);
      Tensor g = randn({n}, gen, dt, 0.0, 0.01);
      p.set_grad(g.clone());
      Tensor pd = zeros({n}, dt, kGpu);
      pd.set_requires_grad(true);
      pd.set_grad(gpu_copy(g, i % 7 == 6));
      cpu.push_back(p);
      gpu.push_back(pd);
    }
    // One parameter without a gradient on each side.
    Tensor skipped = zeros({9});
    skipped.set_requires_grad(true);
    cpu.push_back(skipped);
    Tensor skipped_d = zeros({9}, DType::f32, kGpu);
    skipped_d.set_requires_grad(true);
    gpu.push_back(skipped_d);

    std::vector<Tensor> before;
    for (const Tensor& p : gpu)
      if (p.grad().defined()) before.push_back(p.grad().clone());
    const double norm_cpu = optim::clip_grad_norm(cpu, max_norm);
    Tensor norm_t = optim::clip_grad_norm_async(gpu, max_norm);
    EXPECT_EQ(norm_t.device(), kGpu);
    EXPECT_EQ(norm_t.dtype(), DType::f64);
    const double norm_gpu = norm_t.item();
    std::printf("clip: norm cpu %.17g gpu %.17g (rel %.2e)\n", norm_cpu, norm_gpu, std::fabs(norm_gpu - norm_cpu) / norm_cpu);
    EXPECT_NEAR(norm_gpu, norm_cpu, 1e-12 * norm_cpu);
    size_t k = 0;
    for (size_t i = 0; i < cpu.size(); ++i) {
      if (!cpu[i].grad().defined()) {
        EXPECT_FALSE(gpu[i].grad().defined());
        continue;
      }
      EXPECT_LT(rel_error(gpu[i].grad(), cpu[i].grad()), tolerance(cpu[i].dtype())) << i;
      if (max_norm > norm_cpu) {
        EXPECT_TRUE(same_bits(gpu[i].grad(), before[k])) << "changed under the limit: " << i;
      }
      ++k;
    }
  }
}

TEST_F(Cuda, SumOfSquaresMultiRepeatsBitForBitAndMatchesCpu) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  std::vector<Tensor> cpu, gpu, gpu_misaligned;
  for (int i = 0; i < 40; ++i) {
    const int64_t n = kSizes[i % (sizeof(kSizes) / sizeof(kSizes[0]))];
    Tensor g = randn({n}, gen, i % 2 ? DType::f64 : DType::f32);
    cpu.push_back(g);
    gpu.push_back(g.to(kGpu));
    gpu_misaligned.push_back(gpu_copy(g, true));
  }
  const double ref = kernels::sum_of_squares_multi(cpu).item();
  const double a = kernels::sum_of_squares_multi(gpu).item(), b = kernels::sum_of_squares_multi(gpu).item();
  const double c = kernels::sum_of_squares_multi(gpu_misaligned).item();
  EXPECT_NEAR(a, ref, 1e-12 * ref);
  EXPECT_EQ(std::memcmp(&a, &b, sizeof a), 0);
  // The vector and scalar paths add in the same order.
  EXPECT_EQ(std::memcmp(&a, &c, sizeof a), 0);
  EXPECT_EQ(kernels::sum_of_squares_multi({}).item(), 0.0);
}

TEST_F(Cuda, BadOptimiserListsAreRejected) {
  Tensor p = ones({5}, DType::f32, kGpu), h = ones({5});
  auto gpu5 = [] { return ones({5}, DType::f32, kGpu); };
  expect_error([&] { kernels::adamw_step_multi({p, h}, {gpu5(), h}, {gpu5(), ones({5})}, {gpu5(), ones({5})}, {1, 1}, {}); },
               "[adamw]");
  expect_error([&] { kernels::adamw_step_multi({p}, {gpu5()}, {gpu5()}, {gpu5()}, {1, 2}, {}); }, "[adamw]");
  expect_error([&] { kernels::adamw_step_multi({p}, {gpu5()}, {gpu5()}, {gpu5()}, {0}, {}); }, "[adamw]");
  expect_error([&] { kernels::sum_of_squares_multi({p, h}); }, "[clip_grad_norm]");
  expect_error([&] { kernels::clip_by_total_norm({p}, zeros({}, DType::f64), 1.0); }, "[clip_grad_norm]");
  expect_error([&] { kernels::clip_by_total_norm({p}, zeros({}, DType::f32, kGpu), 1.0); }, "[clip_grad_norm]");
}

}  // namespace
}  // namespace mom
