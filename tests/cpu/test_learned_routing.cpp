// The learned-routing baseline (MambaConfig::learned_routing): the block routes each token to its
// router's argmax and scales by that expert's probability, the load-balancing loss is Switch
// Transformer's, the LM sums it over the layers, and the trainer, the sweep and the decoder run the
// variant. Its gradients are checked with the other module cases (`mom gradcheck --op mamba_block`).
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "autograd/grad_mode.h"
#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "examples/toy/sweep.h"
#include "examples/toy/train.h"
#include "nn/decoder.h"
#include "nn/gradcheck_cases.h"
#include "nn/lm.h"
#include "tests/support.h"

namespace mom {
namespace {

nn::MambaConfig routed(bool learned) {
  nn::MambaConfig c;
  c.d_model = 8;
  c.d_state = 4;
  c.expand = 2;
  c.n_modalities = 3;
  c.split_in_proj = c.split_x_proj = c.split_dt_proj = c.split_out_proj = true;
  c.learned_routing = learned;
  c.load_balance = 0.25;
  return c;
}

TEST(LearnedRouting, TheRoutersArgmaxPicksTheExpertAndItsProbabilityScales) {
  Generator gen(4);
  nn::MambaBlock block(routed(true), gen, DType::f64);
  Generator gen2(4);
  nn::MambaBlock modality(routed(false), gen2, DType::f64);
  {  // the same experts: the modality-routed block takes the learned block's weights
    NoGradGuard no_grad;
    std::map<std::string, Tensor> sd = block.state_dict();
    for (auto& [name, p] : modality.named_parameters()) p.copy_(sd.at(name));
  }
  const int64_t B = 2, L = 7, T = B * L, M = 3;
  const Tensor x = randn({B, L, 8}, gen, DType::f64);
  const std::vector<double> w = block.router->weight.to_vector<double>(), xs = x.to_vector<double>();
  // The router by hand: logits, softmax, argmax, the gate, and the load-balancing loss.
  std::vector<int32_t> expert(T);
  std::vector<double> gate(T), mean_p(M, 0.0), share(M, 0.0);
  for (int64_t t = 0; t < T; ++t) {
    std::vector<double> p(M);
    double z = 0;
    for (int64_t m = 0; m < M; ++m) {
      double logit = 0;
      for (int64_t d = 0; d < 8; ++d) logit += w[m * 8 + d] * xs[t * 8 + d];
      p[m] = std::exp(logit);
      z += p[m];
    }
    int32_t best = 0;
    for (int64_t m = 0; m < M; ++m) {
      p[m] /= z;
      mean_p[m] += p[m] / T;
      if (p[m] > p[best]) best = static_cast<int32_t>(m);
    }
    expert[t] = best;
    gate[t] = p[best];
    share[best] += 1.0 / T;
  }
  double aux_expect = 0;
  for (int64_t m = 0; m < M; ++m) aux_expect += 0.25 * M * share[m] * mean_p[m];

  const kernels::Routing ignored = kernels::Routing::from_modalities(zeros({T}, DType::i32), M);
  Tensor aux;
  const Tensor out = block.forward(x, ignored, nullptr, Tensor(), &aux);
  const Tensor by_modality = modality.forward(x, kernels::Routing::from_modalities(from_vector<int32_t>(expert, {T}), M));
  const Tensor expect = mul(by_modality, from_vector<double>(gate, {B, L, 1}));
  EXPECT_LT(test::rel_error(out, expect), 1e-13);
  ASSERT_TRUE(aux.defined());
  EXPECT_NEAR(aux.item(), aux_expect, 1e-14);
  // More than one expert in use, so the comparison above routed tokens differently.
  EXPECT_GT(*std::max_element(expert.begin(), expert.end()), *std::min_element(expert.begin(), expert.end()));
}

// `mom gradcheck --device cuda` builds each module case in float64 and reruns it with its parameters
// cast to float32: the router then runs in the parameters' dtype, not the one the block was built in.
// The same check on the CPU: every module case in float32 against float64.
TEST(LearnedRouting, ModuleCasesRunInTheDtypeTheirParametersAreCastTo) {
  for (const autograd::GradcheckCase& c : nn::module_gradcheck_cases()) {
    Generator gen(3);
    autograd::GradcheckProblem p = c.make(gen);
    const std::vector<autograd::GradcheckRow> rows =
        autograd::device_check(p.fn, p.inputs, p.names, Device::cpu(), DType::f32, 1e-4, 3);
    ASSERT_EQ(rows.size(), p.inputs.size() + (c.variant.find("learned") == 0 ? 2u : 1u)) << c.variant;
    for (const autograd::GradcheckRow& r : rows)
      EXPECT_TRUE(r.ok) << c.variant << " " << r.input << ": " << r.max_rel_err;
  }
}

TEST(LearnedRouting, TheLMSumsTheLayersLossAndTheTrainerSweepAndDecoderKnowTheVariant) {
  nn::LMConfig c;
  c.vocab_size = 17;
  c.n_layers = 3;
  c.mixer = routed(true);
  Generator gen(9);
  nn::MambaLM lm(c, gen, DType::f64);
  const Tensor tokens = from_vector<int64_t>({1, 5, 7, 2, 16, 0}, {2, 3});
  const Tensor mods = zeros({2, 3}, DType::i32);
  lm.forward(tokens, mods);
  ASSERT_TRUE(lm.aux_loss().defined());
  double layers = 0;
  {
    NoGradGuard no_grad;
    Tensor h = lm.embedding->forward(tokens);
    const kernels::Routing r = kernels::Routing::from_modalities(mods.reshape({6}), 3);
    for (const auto& layer : lm.layers) {
      Tensor aux;
      h = layer->forward(h, r, nullptr, Tensor(), DType::f64, &aux);
      layers += aux.item();
    }
  }
  EXPECT_NEAR(lm.aux_loss().item(), layers, 1e-14);
  c.mixer.learned_routing = false;
  nn::MambaLM plain(c, gen, DType::f64);
  plain.forward(tokens, mods);
  EXPECT_FALSE(plain.aux_loss().defined());

  // The Decoder steps it through MambaLM::step: the same logits, its state carried in the decoder's.
  nn::LMState state = lm.allocate_state(2);
  nn::Decoder decoder(lm, 2);
  for (int64_t t = 0; t < 3; ++t) {
    const Tensor tok = tokens.narrow(1, t, 1).contiguous().reshape({2}), mod = zeros({2}, DType::i32);
    const Tensor want = lm.step(tok, mod, state);
    EXPECT_EQ(want.size(1), 17);
    EXPECT_EQ(test::rel_error(decoder.step(tok, mod), want), 0.0) << "step " << t;
  }
  EXPECT_EQ(test::rel_error(decoder.state()[2].ssm, state[2].ssm), 0.0);
  nn::MambaConfig bad = routed(true);
  bad.n_modalities = 1;
  test::expect_error([&] { bad.validate(); }, "[MambaConfig] learned routing needs at least 2 experts");

  toy::TrainConfig t;
  t.model = "learned";
  t.validate();
  const nn::LMConfig lc = t.lm_config(40);
  EXPECT_TRUE(lc.mixer.learned_routing);
  EXPECT_TRUE(lc.mixer.split_in_proj && lc.mixer.split_x_proj && lc.mixer.split_dt_proj && lc.mixer.split_out_proj);
  EXPECT_EQ(toy::TrainConfig::from_json(t.to_json()).model, "learned");
  t.model = "router";
  test::expect_error([&] { t.validate(); }, "[train] --model must be dense, mom or learned");
  // The router's FLOPs: 2 D M per token and layer, and its softmax and gate.
  toy::TrainConfig m;
  const double more = toy::flops_per_token(lc) - toy::flops_per_token(m.lm_config(40));
  EXPECT_NEAR(more, 2.0 * (2 * 64 * 3 + 4 * 3 + 64), 1e-9);

  const std::vector<toy::SweepVariant> v = toy::select_variants({"learned"});
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(toy::sweep_run_config(t, v[1], 1, "/o").model, "learned");
  EXPECT_EQ(toy::sweep_variants().back().name, "learned");
}

}  // namespace
}  // namespace mom
