// nn::Decoder and the fused kernels of kernels/decode.h on the CPU: a step equals the parallel forward
// (dense and MoM, mixed modalities in a batch, document resets), bf16 weights equal float32 weights
// rounded to bf16, prompts through prefill (one row for many samples), snapshots, and bad input.
#include <gtest/gtest.h>

#include <cmath>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "kernels/decode.h"
#include "nn/decoder.h"
#include "tests/support.h"

namespace mom {
namespace {

nn::LMConfig tiny(bool mom, int64_t M = 3) {
  nn::LMConfig c;
  c.vocab_size = 29;
  c.n_layers = 2;
  c.mixer.d_model = 16;
  c.mixer.d_state = 4;
  c.mixer.d_conv = 4;
  c.mixer.expand = 2;
  c.mixer.n_modalities = M;
  c.mixer.split_in_proj = c.mixer.split_x_proj = c.mixer.split_dt_proj = c.mixer.split_out_proj = mom;
  return c;
}

struct Sequence {
  Tensor tokens, modalities, starts;  // (B, L)
};

Sequence random_sequence(int64_t B, int64_t L, int64_t V, int64_t M, Generator& gen) {
  std::vector<int64_t> tok(B * L), mod(B * L);
  std::vector<uint8_t> start(B * L, 0);
  for (int64_t i = 0; i < B * L; ++i) {
    tok[i] = static_cast<int64_t>(gen.randint(static_cast<uint64_t>(V)));
    mod[i] = static_cast<int64_t>(gen.randint(static_cast<uint64_t>(M)));
    start[i] = i % L > 0 && gen.randint(6) == 0;
  }
  return {from_vector<int64_t>(tok, {B, L}), from_vector<int64_t>(mod, {B, L}),
          from_vector<uint8_t>(start, {B, L}).to(DType::boolean)};
}

Tensor column(const Tensor& t, int64_t c) { return t.narrow(1, c, 1).contiguous().reshape({t.size(0)}); }

// Steps a Decoder through seq and returns the worst relative error against the parallel forward.
double step_error(nn::Decoder& dec, const nn::MambaLM& lm, const Sequence& seq) {
  NoGradGuard no_grad;
  const Tensor full = lm.forward(seq.tokens, seq.modalities, seq.starts);
  const int64_t B = seq.tokens.size(0), L = seq.tokens.size(1), V = lm.config().vocab_size;
  double worst = 0;
  for (int64_t t = 0; t < L; ++t) {
    const Tensor logits = dec.step(column(seq.tokens, t), column(seq.modalities, t), column(seq.starts, t));
    worst = std::max(worst, test::rel_error(logits, full.narrow(1, t, 1).contiguous().reshape({B, V})));
  }
  return worst;
}

TEST(Decoder, StepEqualsTheParallelForward) {
  for (bool mom : {false, true}) {
    SCOPED_TRACE(mom ? "MoM" : "dense");
    Generator gen(11);
    nn::MambaLM lm(tiny(mom), gen, DType::f64);
    const Sequence seq = random_sequence(5, 13, 29, 3, gen);
    nn::Decoder dec(lm, 5);
    EXPECT_EQ(dec.weight_dtype(), DType::f64);
    const double err = step_error(dec, lm, seq);
    EXPECT_LT(err, 1e-12);
    // float32: the same within float32's rounding.
    Generator gen32(11);
    nn::MambaLM lm32(tiny(mom), gen32, DType::f32);
    nn::Decoder dec32(lm32, 5);
    const double err32 = step_error(dec32, lm32, seq);
    EXPECT_LT(err32, 2e-5);
    std::printf("%s: decoder steps against the parallel forward, worst rel error %.1e (float64), %.1e (float32)\n",
                mom ? "MoM" : "dense", err, err32);
  }
}

TEST(Decoder, DocumentStartsReset) {
  // Without the starts the steps read across documents: the logits differ from the packed forward.
  Generator gen(5);
  nn::MambaLM lm(tiny(true), gen, DType::f64);
  Sequence seq = random_sequence(3, 11, 29, 3, gen);
  nn::Decoder dec(lm, 3);
  NoGradGuard no_grad;
  const Tensor full = lm.forward(seq.tokens, seq.modalities, seq.starts);
  double worst_without = 0;
  for (int64_t t = 0; t < 11; ++t) {
    const Tensor logits = dec.step(column(seq.tokens, t), column(seq.modalities, t));
    worst_without = std::max(worst_without, test::rel_error(logits, full.narrow(1, t, 1).contiguous().reshape({3, 29})));
  }
  EXPECT_GT(worst_without, 1e-3);
  dec.reset();
  EXPECT_LT(step_error(dec, lm, seq), 1e-12);
}

TEST(Decoder, Bf16WeightsEqualFloat32WeightsRoundedToBf16) {
  nn::LMConfig c = tiny(true);
  c.tie_embeddings = false;  // the embedding's rows stay float32 in a bf16 decoder; an untied head is rounded
  Generator gen(3);
  nn::MambaLM lm(c, gen, DType::f32);
  Generator gen_r(3);
  nn::MambaLM rounded(c, gen_r, DType::f32);
  {
    NoGradGuard no_grad;
    const auto params = lm.named_parameters();
    for (auto& [name, p] : rounded.named_parameters()) {
      const bool projection = name.find("proj") != std::string::npos && name.find("dt_proj") == std::string::npos &&
                              name.find("weight") != std::string::npos;
      if (projection || name == "lm_head.weight") p.copy_(p.to(DType::bf16).to(DType::f32));
    }
  }
  const Sequence seq = random_sequence(4, 9, 29, 3, gen);
  nn::Decoder bf(lm, 4, DType::bf16);
  nn::Decoder f32(rounded, 4, DType::f32);
  double worst = 0, moved = 0;
  NoGradGuard no_grad;
  const Tensor full = lm.forward(seq.tokens, seq.modalities, seq.starts);
  for (int64_t t = 0; t < 9; ++t) {
    const Tensor a = bf.step(column(seq.tokens, t), column(seq.modalities, t), column(seq.starts, t)).clone();
    const Tensor b = f32.step(column(seq.tokens, t), column(seq.modalities, t), column(seq.starts, t));
    worst = std::max(worst, test::rel_error(a, b));
    moved = std::max(moved, test::rel_error(a, full.narrow(1, t, 1).contiguous().reshape({4, 29})));
  }
  EXPECT_LT(worst, 1e-5);
  EXPECT_GT(moved, 1e-6);  // bf16 weights do change the logits
  EXPECT_LT(moved, 5e-2);
  std::printf("bf16 weights: %.1e from float32 weights rounded to bf16, %.1e from the float32 model\n", worst, moved);
  test::expect_error([&] { nn::Decoder bad(nn::MambaLM(tiny(false), gen, DType::f64), 2, DType::bf16); },
                     "[Decoder] weights must be of the parameters' dtype, or bfloat16 beside float32");
}

TEST(Decoder, PrefillOnePromptForManySamples) {
  Generator gen(7);
  nn::MambaLM lm(tiny(true), gen, DType::f64);
  const int64_t B = 4, P = 6, L = 5;
  const Sequence prompt = random_sequence(1, P, 29, 3, gen);
  const Sequence next = random_sequence(B, L, 29, 3, gen);
  nn::Decoder dec(lm, B);
  const Tensor last = dec.prefill(prompt.tokens, prompt.modalities);
  NoGradGuard no_grad;
  const Tensor prompt_logits = lm.forward(prompt.tokens, prompt.modalities);
  EXPECT_LT(test::rel_error(last, prompt_logits.narrow(1, P - 1, 1).contiguous().reshape({1, 29})), 1e-12);
  // Each row continues the prompt with its own tokens: the parallel forward over prompt + continuation.
  const nn::LMState after_prompt = dec.state();
  for (int64_t b = 0; b < B; ++b) {
    auto row = [&](const Tensor& t) { return t.narrow(0, b, 1); };
    const Tensor tokens = cat({prompt.tokens, row(next.tokens)}, 1);
    const Tensor mods = cat({prompt.modalities, row(next.modalities)}, 1);
    const Tensor full = lm.forward(tokens, mods);
    double worst = 0;
    dec.set_state(after_prompt);
    for (int64_t t = 0; t < L; ++t) {
      const Tensor logits = dec.step(column(next.tokens, t), column(next.modalities, t));
      worst = std::max(worst, test::rel_error(logits.narrow(0, b, 1),
                                              full.narrow(1, P + t, 1).contiguous().reshape({1, 29})));
    }
    EXPECT_LT(worst, 1e-12) << "row " << b;
  }
  // A snapshot restores exactly.
  const nn::LMState s = dec.state();
  const Tensor a = dec.step(column(next.tokens, 0), column(next.modalities, 0)).clone();
  dec.set_state(s);
  const Tensor b = dec.step(column(next.tokens, 0), column(next.modalities, 0));
  EXPECT_EQ(test::rel_error(a, b), 0.0);
  dec.reset();
  for (const auto& layer : dec.state()) {
    for (double v : layer.ssm.to_vector<double>()) EXPECT_EQ(v, 0.0);
    for (double v : layer.conv_window.to_vector<double>()) EXPECT_EQ(v, 0.0);
  }
}

TEST(Decoder, BadInputNamesTheComponent) {
  Generator gen(1);
  nn::MambaLM lm(tiny(true), gen, DType::f32);
  nn::Decoder dec(lm, 2);
  const Tensor mods = from_vector<int32_t>({0, 2}, {2});
  test::expect_error([&] { dec.step(from_vector<int32_t>({1, 29}, {2}), mods); },
                     "[Decoder] token 29 is out of range [0, 29)");
  test::expect_error([&] { dec.step(from_vector<int32_t>({1, 2}, {2}), from_vector<int32_t>({0, 3}, {2})); },
                     "[Decoder] modality 3 is out of range [0, 3)");
  test::expect_error([&] { dec.step(from_vector<int32_t>({1, 2, 3}, {3}), mods); }, "[Decoder] token must be (2)");
  test::expect_error([&] { dec.prefill(zeros({3, 4}, DType::i64), zeros({3, 4}, DType::i64)); },
                     "[Decoder] a prompt must be (1, L) or (2, L)");
  nn::LMState wrong = lm.allocate_state(3);
  test::expect_error([&] { dec.set_state(wrong); }, "[Decoder] layer 0's conv window must be");
  test::expect_error([&] { nn::Decoder none(lm, 0); }, "[Decoder] batch must be >= 1");
}

TEST(DecodeKernels, ExpertOutOfRangeGivesNaNRowsAndBadShapesThrow) {
  Generator gen(2);
  const Tensor x = randn({3, 8}, gen, DType::f32);
  const Tensor w = randn({2, 5, 8}, gen, DType::f32);
  Tensor y = zeros({3, 5}, DType::f32);
  kernels::decode_linear(x, w, Tensor(), from_vector<int32_t>({1, 2, -1}, {3}), kernels::DecodeInput{}, y, false);
  const std::vector<float> v = y.to_vector<float>();
  for (int o = 0; o < 5; ++o) {
    EXPECT_FALSE(std::isnan(v[o]));
    EXPECT_TRUE(std::isnan(v[5 + o]));
    EXPECT_TRUE(std::isnan(v[10 + o]));
  }
  // Row 0 is expert 1's product, written (not accumulated) and then accumulated.
  const Tensor expect = matmul(x.narrow(0, 0, 1), transpose(w.narrow(0, 1, 1).reshape({5, 8}), 0, 1));
  EXPECT_LT(test::rel_error(y.narrow(0, 0, 1), expect), 1e-6);
  kernels::decode_linear(x, w, Tensor(), from_vector<int32_t>({1, 1, 1}, {3}), kernels::DecodeInput{}, y, true);
  EXPECT_LT(test::rel_error(y.narrow(0, 0, 1), mul(expect, scalar_tensor(2.0, DType::f32))), 1e-6);
  Tensor bad = zeros({3, 4}, DType::f32);
  test::expect_error([&] { kernels::decode_linear(x, w, Tensor(), Tensor(), kernels::DecodeInput{}, bad, false); },
                     "[decode_linear] y has shape (3, 4), expected (3, 5)");
  test::expect_error(
      [&] { kernels::decode_linear(x, w.to(DType::f64), Tensor(), Tensor(), kernels::DecodeInput{}, y, false); },
      "[decode_linear] weight must be of x's dtype, or bfloat16 beside float32");
  kernels::DecodeConv conv;
  conv.window = zeros({3, 3, 6}, DType::f32);
  conv.conv_weight = zeros({6, 4}, DType::f32);
  conv.u = zeros({3, 6}, DType::f32);
  test::expect_error(
      [&] { kernels::decode_linear(x, w, Tensor(), Tensor(), kernels::DecodeInput{}, y, false, nullptr, &conv); },
      "[decode_linear] the conv's 6 channels exceed y's 5 columns");
  conv.window = zeros({3, 3, 4}, DType::f32);
  test::expect_error(
      [&] { kernels::decode_linear(x, w, Tensor(), Tensor(), kernels::DecodeInput{}, y, false, nullptr, &conv); },
      "[decode_linear] conv_weight has shape (6, 4), expected (4, 4)");
  Tensor out = zeros({2, 8}, DType::f32);
  kernels::decode_embed(from_vector<int32_t>({0, 7}, {2}), randn({7, 8}, gen, DType::f32), out);
  EXPECT_TRUE(std::isnan(out.to_vector<float>()[8]));
  EXPECT_FALSE(std::isnan(out.to_vector<float>()[0]));
}

}  // namespace
}  // namespace mom
