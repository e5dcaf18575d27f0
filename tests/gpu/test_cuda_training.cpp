// Training on the GPU against the CPU, end to end: a MambaLM step (dense and Mixture-of-Mamba) gives
// the CPU's loss, gradients and updated parameters in float32; a 30-step run of the trainer's loop
// (AdamW, warmup + cosine, global-norm clipping) follows the CPU's loss curve; an absent modality's
// experts get no gradient on the GPU either. Models are initialised on the CPU from one seed and moved
// with Module::to, so both devices start from identical weights.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/safetensors.h"
#include "examples/toy/vocab.h"
#include "nn/lm.h"
#include "optim/adamw.h"
#include "optim/clip.h"
#include "optim/schedule.h"
#include "tests/gpu/cuda_support.h"
#include "tests/support.h"

namespace mom {
namespace {

using test::Cuda;
using test::same_bits;
using test::test_seed;
using test::rel_error;

const Device kGpu = Device::cuda(0);
const Device kCpu = Device::cpu();
constexpr int64_t kVocab = toy::kToyVocabSize;

nn::LMConfig tiny_lm(bool mom, int64_t n_layers, int64_t d_model, int64_t d_state) {
  nn::LMConfig c;
  c.vocab_size = kVocab;
  c.n_layers = n_layers;
  c.mixer.d_model = d_model;
  c.mixer.d_state = d_state;
  c.mixer.n_modalities = toy::kNumModalities;
  c.mixer.split_in_proj = c.mixer.split_x_proj = c.mixer.split_dt_proj = c.mixer.split_out_proj = mom;
  return c;
}

struct HostBatch {
  Tensor tokens, targets, modalities;  // (B, L) i64, i64, i32
};

// Toy-like rows: spans of 1..12 tokens of one modality (drawn from `allowed`), each token from its
// modality's range of the toy vocabulary; the target of token t is t + 1 (mod V), something to learn.
HostBatch random_batch(int64_t B, int64_t L, Generator& gen, const std::vector<int32_t>& allowed = {0, 1, 2}) {
  const int32_t begin[] = {toy::kTextBegin, toy::kImageBegin, toy::kSpeechBegin};
  const int32_t end[] = {toy::kTextEnd, toy::kImageEnd, toy::kSpeechEnd};
  std::vector<int64_t> tokens, targets;
  std::vector<int32_t> mods;
  while (static_cast<int64_t>(mods.size()) < B * L) {
    const int32_t m = allowed[gen.randint(allowed.size())];
    const int64_t span = 1 + static_cast<int64_t>(gen.randint(12));
    for (int64_t i = 0; i < span && static_cast<int64_t>(mods.size()) < B * L; ++i) {
      mods.push_back(m);
      tokens.push_back(begin[m] + static_cast<int64_t>(gen.randint(end[m] - begin[m])));
      targets.push_back((tokens.back() + 1) % kVocab);
    }
  }
  return {from_vector<int64_t>(tokens, {B, L}), from_vector<int64_t>(targets, {B, L}), from_vector<int32_t>(mods, {B, L})};
}

// Mean cross-entropy of the model on the batch (moved to the model's device), differentiable.
Tensor lm_loss(const nn::MambaLM& model, const HostBatch& hb) {
  const Device d = model.embedding->weight.device();
  const int64_t T = hb.tokens.numel();
  Tensor logits = model.forward(hb.tokens.to(d), hb.modalities.to(d));
  return cross_entropy(reshape(logits, {T, kVocab}), hb.targets.to(d).reshape({T}));
}

// Two identical models: one on the CPU, one moved to the GPU.
struct Pair {
  std::unique_ptr<nn::MambaLM> cpu, gpu;
  Pair(const nn::LMConfig& c, uint64_t seed) {
    Generator a(seed), b(seed);
    cpu = std::make_unique<nn::MambaLM>(c, a);
    gpu = std::make_unique<nn::MambaLM>(c, b);
    gpu->to(kGpu);
  }
};

// (a) One training step: loss, every gradient, and the parameters after one AdamW step.
TEST_F(Cuda, MambaLMStepMatchesCpu) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  for (bool mom : {false, true}) {
    SCOPED_TRACE(mom ? "mom" : "dense");
    Pair m(tiny_lm(mom, 2, 32, 16), seed);
    Generator gen(seed + 1);
    HostBatch hb = random_batch(2, 37, gen);
    Tensor loss_c = lm_loss(*m.cpu, hb), loss_g = lm_loss(*m.gpu, hb);
    ASSERT_EQ(loss_g.device(), kGpu);
    const double lc = loss_c.item(), lg = loss_g.item();
    EXPECT_NEAR(lg, lc, 1e-5 * std::fabs(lc));
    backward(loss_c);
    backward(loss_g);
    auto pc = m.cpu->named_parameters(), pg = m.gpu->named_parameters();
    ASSERT_EQ(pc.size(), pg.size());
    double worst_grad = 0;
    std::string worst_name;
    for (size_t i = 0; i < pc.size(); ++i) {
      SCOPED_TRACE(pc[i].first);
      Tensor gc = pc[i].second.grad(), gg = pg[i].second.grad();
      ASSERT_EQ(gc.defined(), gg.defined());
      if (!gc.defined()) continue;
      EXPECT_EQ(gg.device(), kGpu);
      const double e = rel_error(gg, gc);
      EXPECT_LT(e, 1e-4);
      if (e > worst_grad) worst_grad = e, worst_name = pc[i].first;
    }
    optim::AdamWOptions o{1e-3, 0.9, 0.95, 1e-8, 0.1};
    optim::AdamW oc = optim::AdamW::from_module(*m.cpu, o), og = optim::AdamW::from_module(*m.gpu, o);
    oc.step();
    og.step();
    double worst_param = 0;
    for (size_t i = 0; i < pc.size(); ++i) {
      const double e = rel_error(pg[i].second, pc[i].second);
      EXPECT_LT(e, 1e-5) << pc[i].first;
      worst_param = std::max(worst_param, e);
    }
    std::printf("%s step: loss cpu %.8f gpu %.8f (rel %.2e); worst grad rel %.2e (%s); worst param rel after AdamW %.2e\n",
                mom ? "mom" : "dense", lc, lg, std::fabs(lg - lc) / std::fabs(lc), worst_grad, worst_name.c_str(),
                worst_param);
  }
}

// (b) 30 steps of the trainer's loop on both devices from one seed: the loss curves agree.
TEST_F(Cuda, ShortRunFollowsTheCpuLossCurve) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  const int64_t steps = 30;
  std::vector<double> curves[2];
  for (int side = 0; side < 2; ++side) {
    Generator init(seed);
    nn::MambaLM model(tiny_lm(true, 1, 16, 4), init);
    model.to(side ? kGpu : kCpu);
    optim::AdamW opt = optim::AdamW::from_module(model, {1e-2, 0.9, 0.95, 1e-8, 0.1});
    optim::WarmupCosine schedule{1e-2, 2, steps, 0.1};
    const auto params = model.parameters();
    Generator data(seed + 7);
    for (int64_t step = 1; step <= steps; ++step) {
      HostBatch hb = random_batch(2, 48, data);
      opt.set_lr(schedule.lr_at(step));
      Tensor loss = lm_loss(model, hb);
      backward(loss);
      optim::clip_grad_norm_async(params, 1.0);
      opt.step();
      opt.zero_grad();
      curves[side].push_back(loss.item());
    }
  }
  double worst = 0;
  for (int64_t s = 0; s < steps; ++s) {
    const double rel = std::fabs(curves[1][s] - curves[0][s]) / std::fabs(curves[0][s]);
    EXPECT_LT(rel, 1e-3) << "step " << s + 1 << ": cpu " << curves[0][s] << " gpu " << curves[1][s];
    worst = std::max(worst, rel);
  }
  std::printf("30 steps: loss %.4f -> %.4f (cpu), %.4f -> %.4f (gpu); worst rel difference %.2e\n", curves[0].front(),
              curves[0].back(), curves[1].front(), curves[1].back(), worst);
  EXPECT_LT(curves[1].back(), curves[1].front());
}

std::map<std::string, Tensor> with_prefix(const std::string& prefix, const std::map<std::string, Tensor>& m) {
  std::map<std::string, Tensor> out;
  for (const auto& [k, v] : m) out[prefix + k] = v;
  return out;
}

std::map<std::string, Tensor> strip_prefix(const std::string& prefix, const std::map<std::string, Tensor>& m) {
  std::map<std::string, Tensor> out;
  for (const auto& [k, v] : m)
    if (k.rfind(prefix, 0) == 0) out[k.substr(prefix.size())] = v;
  return out;
}

// Module::to keeps every handle (a parameter's TensorImpl) and moves its data and gradient.
TEST_F(Cuda, ModuleToMovesDataAndGradsInPlace) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  nn::MambaLM model(tiny_lm(true, 1, 16, 4), gen);
  auto params = model.named_parameters();
  std::vector<Tensor> values;
  for (auto& [name, t] : params) values.push_back(t.detach().clone());
  params[0].second.set_grad(randn(params[0].second.shape(), gen));
  Tensor grad0 = params[0].second.grad().clone();
  model.to(kGpu);
  auto moved = model.named_parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    EXPECT_TRUE(moved[i].second.is_same(params[i].second)) << params[i].first;
    EXPECT_EQ(params[i].second.device(), kGpu) << params[i].first;
    EXPECT_TRUE(params[i].second.requires_grad());
    EXPECT_TRUE(same_bits(params[i].second, values[i])) << params[i].first;
  }
  EXPECT_EQ(params[0].second.grad().device(), kGpu);
  EXPECT_TRUE(same_bits(params[0].second.grad(), grad0));
  model.to(kCpu);
  for (size_t i = 0; i < params.size(); ++i) EXPECT_TRUE(same_bits(params[i].second, values[i])) << params[i].first;
}

// A checkpoint written from the GPU (model and optimiser through safetensors) and loaded into a fresh
// GPU model and optimiser continues bit for bit like the run that was not interrupted.
TEST_F(Cuda, CheckpointFromTheGpuResumesBitExactly) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  const nn::LMConfig config = tiny_lm(true, 2, 16, 4);
  const std::string path = ::testing::TempDir() + "mom_gpu_resume.safetensors";
  auto run_steps = [&](nn::MambaLM& model, optim::AdamW& opt, Generator& data, int n) {
    for (int i = 0; i < n; ++i) {
      HostBatch hb = random_batch(2, 29, data);
      backward(lm_loss(model, hb));
      optim::clip_grad_norm_async(model.parameters(), 1.0);
      opt.step();
      opt.zero_grad();
    }
  };
  const optim::AdamWOptions o{3e-3, 0.9, 0.95, 1e-8, 0.1};
  Generator init(seed);
  nn::MambaLM whole(config, init);
  whole.to(kGpu);
  optim::AdamW opt_whole = optim::AdamW::from_module(whole, o);
  Generator data(seed + 5);
  run_steps(whole, opt_whole, data, 3);
  std::map<std::string, Tensor> ck = with_prefix("model.", whole.state_dict());
  for (auto& [k, v] : with_prefix("optim.", opt_whole.state_dict())) ck[k] = v;
  save_safetensors(path, ck, {});
  Generator data_copy = data;  // the data position at the checkpoint
  run_steps(whole, opt_whole, data, 3);

  Generator other(seed + 99);  // different initial weights: everything must come from the file
  nn::MambaLM resumed(config, other);
  resumed.to(kGpu);
  optim::AdamW opt_resumed = optim::AdamW::from_module(resumed, o);
  SafetensorsFile f = load_safetensors(path);
  resumed.load_state_dict(strip_prefix("model.", f.tensors));
  opt_resumed.load_state_dict(strip_prefix("optim.", f.tensors));
  run_steps(resumed, opt_resumed, data_copy, 3);
  auto a = whole.named_parameters(), b = resumed.named_parameters();
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(b[i].second.device(), kGpu);
    EXPECT_TRUE(same_bits(a[i].second, b[i].second)) << a[i].first;
  }
}

// (c) A modality absent from the batch: its experts keep undefined gradients on the GPU as on the CPU.
TEST_F(Cuda, AbsentModalityExpertsGetNoGradient) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Pair m(tiny_lm(true, 2, 32, 16), seed);
  Generator gen(seed + 3);
  HostBatch hb = random_batch(2, 37, gen, {0, 2});  // no image token
  backward(lm_loss(*m.cpu, hb));
  backward(lm_loss(*m.gpu, hb));
  auto pc = m.cpu->named_parameters(), pg = m.gpu->named_parameters();
  int absent = 0;
  for (size_t i = 0; i < pc.size(); ++i) {
    const std::string& name = pc[i].first;
    // "layers.<i>.mixer.local_experts_<proj>.<m>.<weight|bias>": expert m = 1 is the image's.
    const size_t at = name.find("local_experts_");
    const bool image_expert = at != std::string::npos && name.compare(name.find('.', at) + 1, 2, "1.") == 0;
    EXPECT_EQ(pg[i].second.grad().defined(), pc[i].second.grad().defined()) << name;
    if (image_expert) {
      EXPECT_FALSE(pg[i].second.grad().defined()) << name;
      ++absent;
    } else {
      EXPECT_TRUE(pg[i].second.grad().defined()) << name;
    }
  }
  EXPECT_EQ(absent, 2 * (4 + 1));  // per layer: 4 expert weights, and the dt_proj expert's bias
  // AdamW skips them: after a step their values are unchanged.
  std::vector<Tensor> before;
  for (auto& [name, t] : pg) before.push_back(t.to(kCpu));
  optim::AdamW opt = optim::AdamW::from_module(*m.gpu, {});
  opt.step();
  for (size_t i = 0; i < pg.size(); ++i) {
    if (!pg[i].second.grad().defined()) {
      EXPECT_EQ(rel_error(pg[i].second, before[i]), 0.0) << pg[i].first;
    }
  }
}

// Recurrent decoding on the GPU: one MambaLM::step per position, with documents starting mid-row (at
// 7 in row 0, at 1 in row 1, at the last position in row 2), gives the logits of the GPU's parallel
// forward over the same packed rows, and those of the same steps on the CPU.
TEST_F(Cuda, StepDecodingEqualsTheParallelForward) {
  uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  NoGradGuard no_grad;
  for (bool mom : {false, true}) {
    SCOPED_TRACE(mom ? "mom" : "dense");
    Pair m(tiny_lm(mom, 2, 32, 16), seed);
    Generator gen(seed + 3);
    const int64_t B = 3, L = 19;
    const HostBatch hb = random_batch(B, L, gen);
    std::vector<uint8_t> flags(B * L, 0);
    flags[0 * L + 7] = flags[1 * L + 1] = flags[2 * L + L - 1] = 1;
    const Tensor doc = from_vector<uint8_t>(flags, {B, L}).to(DType::boolean);
    const Tensor full = m.gpu->forward(hb.tokens.to(kGpu), hb.modalities.to(kGpu), doc.to(kGpu));  // (B, L, V)
    nn::LMState state_gpu = m.gpu->allocate_state(B), state_cpu = m.cpu->allocate_state(B);
    double worst_forward = 0, worst_cpu = 0;
    for (int64_t t = 0; t < L; ++t) {
      auto column = [&](const Tensor& x) { return x.narrow(1, t, 1).contiguous().reshape({B}); };
      const Tensor on_gpu = m.gpu->step(column(hb.tokens).to(kGpu), column(hb.modalities).to(kGpu), state_gpu,
                                        column(doc).to(kGpu));
      const Tensor on_cpu = m.cpu->step(column(hb.tokens), column(hb.modalities), state_cpu, column(doc));
      ASSERT_EQ(on_gpu.device(), kGpu);
      const Tensor parallel = full.narrow(1, t, 1).contiguous().reshape({B, kVocab});
      worst_forward = std::max(worst_forward, rel_error(on_gpu, parallel));
      worst_cpu = std::max(worst_cpu, rel_error(on_gpu, on_cpu));
    }
    EXPECT_LT(worst_forward, 1e-5);
    EXPECT_LT(worst_cpu, 1e-5);
    std::printf("%s decoding on the GPU, %lld steps: worst rel error against the parallel forward %.2e, against the "
                "CPU's steps %.2e\n",
                mom ? "mom" : "dense", static_cast<long long>(L), worst_forward, worst_cpu);
  }
}

}  // namespace
}  // namespace mom
