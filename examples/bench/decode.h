// Recurrent decoding (nn::Decoder), shared by bench_cuda_decode and bench_decode_cpu: the models, the
// bytes and FLOPs of one step, and the timed loop.
//
// The shapes are those of the published Mamba checkpoints: 130M-class (d_model 768, 24 layers) and
// 1.4B-class (d_model 2048, 48 layers), vocabulary 50280, d_state 16, expand 2, d_conv 4, the head tied
// to the embedding. Dense, or MoM with three modalities and all four projections split (each token
// uses one expert of each). Weights are random (decoding speed does not depend on them).
//
// A step's floor is the larger of two: the bytes it must move over the copy rate (every weight the
// step's tokens use, read once: at batch 1 one expert of each split projection, at batch 64, whose rows
// cycle through the modalities, all of them; the tied embedding read whole as the head; each row's conv
// window and SSM state read and written once; activations, a few KB per row and layer, not counted), and
// its FLOPs over the GEMM rate of the weights' type at a large square shape (the device's dense rate).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/random.h"
#include "core/tensor.h"
#include "nn/decoder.h"
#include "nn/lm.h"

namespace mom::bench {

struct DecodeShape {
  const char* name;
  int64_t d_model, n_layers;
};
constexpr DecodeShape kDecode130M{"130M", 768, 24};
constexpr DecodeShape kDecode1_4B{"1.4B", 2048, 48};
constexpr int64_t kDecodeVocab = 50280;
constexpr int64_t kDecodeModalities = 3;

inline nn::LMConfig decode_config(const DecodeShape& s, bool mom) {
  nn::LMConfig c;
  c.vocab_size = kDecodeVocab;
  c.n_layers = s.n_layers;
  c.mixer.d_model = s.d_model;
  c.mixer.d_state = 16;
  c.mixer.d_conv = 4;
  c.mixer.expand = 2;
  c.mixer.n_modalities = mom ? kDecodeModalities : 1;
  c.mixer.split_in_proj = c.mixer.split_x_proj = c.mixer.split_dt_proj = c.mixer.split_out_proj = mom;
  return c;
}

// Bytes one step of `batch` rows moves at least, with weights of `weight_bytes` bytes per element and a
// state of `state_bytes` per element (see the header comment).
// Weight elements a step uses: every shared one, and `expert_share` of the split projections' experts.
inline double used_weight_elements(const nn::MambaLM& model, double expert_share) {
  double elements = 0;
  for (const auto& [name, t] : model.named_parameters())
    elements += static_cast<double>(t.numel()) * (name.find("local_experts_") != std::string::npos ? expert_share : 1.0);
  return elements;
}

inline double decode_step_bytes(const nn::MambaLM& model, int64_t batch, double weight_bytes, double state_bytes) {
  const int64_t M = model.config().mixer.n_modalities;
  const double elements =
      used_weight_elements(model, static_cast<double>(std::min<int64_t>(batch, M)) / static_cast<double>(M));
  const nn::MambaConfig& m = model.config().mixer;
  const double E = static_cast<double>(m.expand * m.d_model);
  const double state = static_cast<double>(model.config().n_layers) * static_cast<double>(batch) * E *
                       static_cast<double>(m.d_state + m.d_conv - 1);
  return elements * weight_bytes + 2.0 * state * state_bytes;
}

// FLOPs of one step of `batch` rows: a multiply-add per weight element each row uses (one expert of
// each split projection; the tied embedding as the head). The norms', conv's and scan's few elementwise
// operations per weight are counted alike, a small overcount.
inline double decode_step_flops(const nn::MambaLM& model, int64_t batch) {
  const double M = static_cast<double>(model.config().mixer.n_modalities);
  return 2.0 * used_weight_elements(model, 1.0 / M) * static_cast<double>(batch);
}

// Feeds `steps` tokens to the decoder's rows (random ids; row r's modality is r mod M, so a batch of 64
// uses every expert) after `warmup` untimed steps; `sync` waits for the device. Returns each timed
// step's milliseconds, sorted.
inline std::vector<double> time_decode(nn::Decoder& decoder, int64_t M, int steps, int warmup, Device device,
                                       const std::function<void()>& sync, uint64_t seed) {
  Generator gen(seed);
  const int64_t batch = decoder.batch();
  std::vector<int32_t> mods(batch);
  for (int64_t r = 0; r < batch; ++r) mods[r] = static_cast<int32_t>(r % M);
  const Tensor modality = from_vector<int32_t>(mods, {batch}).to(device);
  std::vector<double> ms;
  for (int i = 0; i < warmup + steps; ++i) {
    std::vector<int32_t> ids(batch);
    for (auto& id : ids) id = static_cast<int32_t>(gen.randint(static_cast<uint64_t>(kDecodeVocab)));
    const Tensor token = from_vector<int32_t>(ids, {batch}).to(device);
    sync();
    const auto t0 = std::chrono::steady_clock::now();
    decoder.step(token, modality);
    sync();
    const double t = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (i >= warmup) ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  return ms;
}

}  // namespace mom::bench
