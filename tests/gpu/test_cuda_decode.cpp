// Recurrent decoding on the GPU: the fused kernels of kernels/decode.h against the CPU reference in
// float64 on fresh random inputs (every input kind, experts mixed in a batch, several row passes, rows
// whose length is not whole 16-byte vectors), float32 and bf16 weights, and nn::Decoder's graph
// replays against the parallel forward and the CPU decoder.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "autograd/grad_mode.h"
#include "kernels/decode.h"
#include "nn/decoder.h"
#include "tests/gpu/cuda_support.h"
#include "tests/support.h"

namespace mom {
namespace {

using kernels::DecodeInput;
using test::Cuda;
using test::rel_error;
using test::test_seed;

const Device kGpu = Device::cuda(0);

Tensor random_ids(int64_t B, int64_t limit, Generator& gen) {
  std::vector<int32_t> v(B);
  for (auto& x : v) x = static_cast<int32_t>(gen.randint(static_cast<uint64_t>(limit)));
  return from_vector<int32_t>(v, {B});
}

Tensor random_starts(int64_t B, Generator& gen) {
  std::vector<uint8_t> v(B);
  for (auto& x : v) x = gen.randint(3) == 0;
  return from_vector<uint8_t>(v, {B}).to(DType::boolean);
}

// decode_linear on both devices from the same inputs, with the conv over y's first (Out + 1) / 2 columns
// when `conv`; returns the largest relative error of the GPU's y, u and window.
double linear_error(int64_t B, int64_t In, int64_t Out, int64_t M, DecodeInput::Kind kind, bool conv, bool bias,
                    bool accumulate, DType dtype, DType weight_dtype, Generator& gen) {
  const int64_t W = 4, E = (Out + 1) / 2;
  const Tensor x = randn({B, In}, gen, dtype);
  Tensor w = randn({M, Out, In}, gen, dtype, 0.0, 0.3);
  if (weight_dtype == DType::bf16) w = w.to(DType::bf16);
  const Tensor b = bias ? randn({M, Out}, gen, dtype) : Tensor();
  const Tensor expert = M > 1 ? random_ids(B, M, gen) : Tensor();
  DecodeInput in;
  in.kind = kind;
  in.norm_weight = randn({In}, gen, dtype, 1.0, 0.2);
  in.eps = 1e-5;
  kernels::DecodeConv c;
  c.window = randn({B, W - 1, E}, gen, dtype);
  c.conv_weight = randn({E, W}, gen, dtype, 0.0, 0.5);
  c.conv_bias = randn({E}, gen, dtype);
  c.start = random_starts(B, gen);
  c.u = zeros({B, E}, dtype);
  const Tensor y0 = randn({B, Out}, gen, dtype);
  Tensor y_cpu = y0.clone(), y_gpu = y0.to(kGpu);
  DecodeInput gin = in;
  gin.norm_weight = in.norm_weight.to(kGpu);
  kernels::DecodeConv g = c;
  for (Tensor* t : {&g.window, &g.conv_weight, &g.conv_bias, &g.start, &g.u}) *t = t->to(kGpu);
  kernels::decode_linear(x, w, b, expert, in, y_cpu, accumulate, nullptr, conv ? &c : nullptr);
  kernels::decode_linear(x.to(kGpu), w.to(kGpu), bias ? b.to(kGpu) : Tensor(), M > 1 ? expert.to(kGpu) : Tensor(), gin,
                         y_gpu, accumulate, nullptr, conv ? &g : nullptr);
  double e = rel_error(y_gpu, y_cpu);
  if (conv) e = std::max({e, rel_error(g.u, c.u), rel_error(g.window, c.window)});
  return e;
}

TEST_F(Cuda, DecodeLinearMatchesCpu) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  double worst64 = 0, worst32 = 0, worst_bf16 = 0;
  for (DecodeInput::Kind kind : {DecodeInput::Kind::plain, DecodeInput::Kind::norm})
    for (bool conv : {false, true})
      for (int64_t B : {1, 5, 13})   // 13: through cuBLAS
        for (int64_t In : {24, 7})   // 7: not whole vectors, the scalar loop
          for (int64_t M : {1, 3})
            for (int64_t Out : {19, 1100}) {  // 1100: a warp per output on an H100/H200, 19: eight
              SCOPED_TRACE("kind " + std::to_string(static_cast<int>(kind)) + (conv ? " conv" : "") + " B " +
                           std::to_string(B) + " In " + std::to_string(In) + " M " + std::to_string(M) + " Out " +
                           std::to_string(Out));
              const bool bias = (B + M) % 2 == 0, acc = B != 5;
              const double e = linear_error(B, In, Out, M, kind, conv, bias, acc, DType::f64, DType::f64, gen);
              EXPECT_LT(e, 1e-13);
              worst64 = std::max(worst64, e);
            }
  double batched_bf16 = 0;
  for (int64_t B : {1, 9}) {  // 9: through cuBLAS
    const double e32 =
        linear_error(B, 768, 200, 3, DecodeInput::Kind::norm, true, true, false, DType::f32, DType::f32, gen);
    const double e16 =
        linear_error(B, 768, 200, 3, DecodeInput::Kind::plain, true, false, true, DType::f32, DType::bf16, gen);
    EXPECT_LT(e32, 1e-5);
    worst32 = std::max(worst32, e32);
    if (B == 1) {
      EXPECT_LT(e16, 1e-5);
      worst_bf16 = e16;
    } else {
      // the GEMM's bf16 operands: the staged inputs are rounded to bf16 (8 bits of mantissa)
      EXPECT_LT(e16, 1e-2);
      EXPECT_GT(e16, 1e-6);
      batched_bf16 = e16;
    }
  }
  std::printf("decode_linear GPU vs CPU: float64 %.1e, float32 %.1e, bf16 weights %.1e (%.1e with bf16 inputs, 9 rows)\n",
              worst64, worst32, worst_bf16, batched_bf16);
}

TEST_F(Cuda, DecodeSsmStepAndEmbedMatchCpu) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  Generator gen(seed);
  for (int64_t B : {1, 6}) {
    // E: two blocks of channels, the second partial; N 5: a state per lane, 40: several
    const int64_t E = 140, N = B == 1 ? 5 : 40, R = 3, M = 3;
    kernels::DecodeSsm s;
    s.xz = randn({B, 2 * E}, gen, DType::f64);
    s.u = randn({B, E}, gen, DType::f64);
    s.dbc = randn({B, R + 2 * N}, gen, DType::f64);
    s.state = randn({B, E, N}, gen, DType::f64);
    s.dt_weight = randn({M, E, R}, gen, DType::f64, 0.0, 0.5);
    s.dt_bias = randn({M, E}, gen, DType::f64);
    s.dt_expert = random_ids(B, M, gen);
    s.A_log = randn({E, N}, gen, DType::f64, 0.0, 0.5);
    s.D = randn({E}, gen, DType::f64);
    s.start = random_starts(B, gen);
    s.y = zeros({B, E}, DType::f64);
    kernels::DecodeSsm g = s;
    for (Tensor* t : {&g.xz, &g.u, &g.dbc, &g.state, &g.dt_weight, &g.dt_bias, &g.dt_expert, &g.A_log, &g.D, &g.start,
                      &g.y})
      *t = t->to(kGpu);
    kernels::decode_ssm_step(s);
    kernels::decode_ssm_step(g);
    EXPECT_LT(rel_error(g.y, s.y), 1e-13);
    EXPECT_LT(rel_error(g.state, s.state), 1e-13);
  }
  const Tensor table = randn({11, 33}, gen, DType::f32);
  const Tensor ids = from_vector<int32_t>({3, 10, 11, 0}, {4});
  Tensor out_cpu = zeros({4, 33}, DType::f32), out_gpu = zeros({4, 33}, DType::f32, kGpu);
  kernels::decode_embed(ids, table, out_cpu);
  kernels::decode_embed(ids.to(kGpu), table.to(kGpu), out_gpu);
  const std::vector<float> a = out_cpu.to_vector<float>(), b = out_gpu.to_vector<float>();
  for (size_t i = 0; i < a.size(); ++i) {
    if (i / 33 == 2) {
      EXPECT_TRUE(std::isnan(b[i]));  // id 11 of 11 rows
    } else {
      EXPECT_EQ(a[i], b[i]);
    }
  }
}

nn::LMConfig small_lm(bool mom) {
  nn::LMConfig c;
  c.vocab_size = 61;
  c.n_layers = 3;
  c.mixer.d_model = 48;
  c.mixer.d_state = 16;
  c.mixer.n_modalities = 3;
  c.mixer.split_in_proj = c.mixer.split_x_proj = c.mixer.split_dt_proj = c.mixer.split_out_proj = mom;
  return c;
}

// The decoder's graph replays (every step after the first) against the GPU's parallel forward and the
// CPU decoder, with document starts and modalities mixed in the batch; bf16 weights against the CPU.
TEST_F(Cuda, DecoderGraphStepsEqualTheParallelForward) {
  const uint64_t seed = test_seed();
  SCOPED_TRACE(test::seed_note(seed));
  for (bool mom : {false, true})
    for (int64_t B : {4, 12}) {  // 12: the projections through cuBLAS
      SCOPED_TRACE(std::string(mom ? "MoM" : "dense") + ", B " + std::to_string(B));
      Generator a(seed), b(seed), gen(seed + 1);
      nn::MambaLM cpu(small_lm(mom), a), gpu(small_lm(mom), b);
      gpu.to(kGpu);
      const int64_t L = 17, V = 61;
      std::vector<int32_t> tok(B * L), mod(B * L);
      std::vector<uint8_t> st(B * L);
      for (int64_t i = 0; i < B * L; ++i) {
        tok[i] = static_cast<int32_t>(gen.randint(V));
        mod[i] = static_cast<int32_t>(gen.randint(3));
        st[i] = i % L > 0 && gen.randint(7) == 0;
      }
      const Tensor tokens = from_vector<int32_t>(tok, {B, L}), mods = from_vector<int32_t>(mod, {B, L});
      const Tensor starts = from_vector<uint8_t>(st, {B, L}).to(DType::boolean);
      NoGradGuard no_grad;
      const Tensor full = gpu.forward(tokens.to(kGpu), mods.to(kGpu), starts.to(kGpu));
      nn::Decoder dg(gpu, B), dc(cpu, B), dg16(gpu, B, DType::bf16), dc16(cpu, B, DType::bf16);
      double worst_forward = 0, worst_cpu = 0, worst_bf16 = 0;
      auto col = [&](const Tensor& t, int64_t c) { return t.narrow(1, c, 1).contiguous().reshape({B}); };
      for (int64_t t = 0; t < L; ++t) {
        const Tensor tk = col(tokens, t), md = col(mods, t), sd = col(starts, t);
        const Tensor lg = dg.step(tk.to(kGpu), md.to(kGpu), sd.to(kGpu)).clone();
        const Tensor lc = dc.step(tk, md, sd);
        worst_forward = std::max(worst_forward, rel_error(lg, full.narrow(1, t, 1).contiguous().reshape({B, V})));
        worst_cpu = std::max(worst_cpu, rel_error(lg, lc));
        const Tensor g16 = dg16.step(tk, md, sd).clone();  // ids from the host, checked there
        worst_bf16 = std::max(worst_bf16, rel_error(g16, dc16.step(tk, md, sd)));
      }
      EXPECT_LT(worst_forward, 1e-5);
      EXPECT_LT(worst_cpu, 1e-5);
      EXPECT_LT(worst_bf16, B > 8 ? 2e-2 : 1e-5);  // more than 8 rows: bf16 GEMM inputs
      // A prompt's state from the parallel scan, given to every row, then restored from a snapshot.
      const Tensor last = dg.prefill(tokens.narrow(0, 0, 1), mods.narrow(0, 0, 1));
      const nn::LMState snap = dg.state();
      const Tensor next = dg.step(col(tokens, 0).to(kGpu), col(mods, 0).to(kGpu)).clone();
      dg.set_state(snap);
      EXPECT_EQ(rel_error(dg.step(col(tokens, 0).to(kGpu), col(mods, 0).to(kGpu)), next), 0.0);
      const Tensor prompt = gpu.forward(tokens.narrow(0, 0, 1).to(kGpu), mods.narrow(0, 0, 1).to(kGpu));
      EXPECT_LT(rel_error(last, prompt.narrow(1, L - 1, 1).contiguous().reshape({1, V})), 1e-6);
      // An id out of range on the device: that row's logits are NaN, the others are numbers.
      std::vector<int32_t> bad(B, 1);
      bad[2] = static_cast<int32_t>(V);
      const std::vector<float> lv =
          dg.step(from_vector<int32_t>(bad, {B}).to(kGpu), col(mods, 0).to(kGpu)).to_vector<float>();
      EXPECT_TRUE(std::isnan(lv[2 * V]));
      EXPECT_FALSE(std::isnan(lv[0]));
      std::printf("%s decoder on the GPU (graph), %lld rows, %lld steps: worst rel error %.1e against the parallel "
                  "forward, %.1e against the CPU decoder, bf16 weights %.1e against the CPU's\n",
                  mom ? "MoM" : "dense", static_cast<long long>(B), static_cast<long long>(L), worst_forward, worst_cpu,
                  worst_bf16);
    }
}

}  // namespace
}  // namespace mom
