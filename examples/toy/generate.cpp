#include "examples/toy/generate.h"

#include <algorithm>
#include <cmath>

#include "autograd/grad_mode.h"
#include "core/error.h"
#include "examples/toy/vocab.h"
#include "examples/toy/world.h"

namespace mom::toy {

void check_sampling_options(const SamplingOptions& o) {
  MOM_CHECK(std::isfinite(o.temperature) && o.temperature >= 0, "generate",
            "--temperature " << o.temperature << " is not a finite number >= 0 (0 is greedy)");
  MOM_CHECK(o.top_k >= 0, "generate", "--top-k " << o.top_k << " is negative (0 keeps every token)");
  MOM_CHECK(o.top_p > 0 && o.top_p <= 1, "generate",
            "--top-p " << o.top_p << " is not in (0, 1] (1 keeps every token; near 0 is greedy)");
}

int32_t sample_token(const float* logits, int64_t vocab_size, const std::vector<TokenRange>& allowed,
                     const SamplingOptions& options, Generator& gen) {
  check_sampling_options(options);
  std::vector<int32_t> ids;
  for (const TokenRange& r : allowed) {
    MOM_CHECK(r.begin >= 0 && r.begin <= r.end && r.end <= vocab_size, "generate",
              "allowed tokens [" << r.begin << ", " << r.end << ") are outside the vocabulary [0, " << vocab_size
                                 << ")");
    for (int32_t t = r.begin; t < r.end; ++t) ids.push_back(t);
  }
  MOM_CHECK(!ids.empty(), "generate", "no token is allowed");
  for (int32_t t : ids)
    MOM_CHECK(std::isfinite(logits[t]), "generate",
              "the model's logits are not finite (its weights or state hold NaN or inf)");
  // Candidates most likely first; equal logits keep the allowed order, so that the first of equals wins.
  std::stable_sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  if (options.temperature == 0) return ids.front();
  if (options.top_k > 0 && static_cast<size_t>(options.top_k) < ids.size()) ids.resize(options.top_k);
  // Probabilities at the temperature, in double: relative to the largest, so that exp never overflows.
  std::vector<double> p(ids.size());
  double z = 0;
  for (size_t i = 0; i < ids.size(); ++i) z += p[i] = std::exp((logits[ids[i]] - logits[ids[0]]) / options.temperature);
  if (options.top_p < 1) {
    size_t keep = 0;
    double mass = 0;
    while (keep < ids.size() && (keep == 0 || mass < options.top_p * z)) mass += p[keep++];
    ids.resize(keep);
    p.resize(keep);
    z = mass;
  }
  double u = gen.uniform() * z;
  for (size_t i = 0; i < ids.size(); ++i)
    if ((u -= p[i]) < 0) return ids[i];
  return ids.back();  // u within rounding of z
}

namespace {

// Where a row is: feeding its prompt, drawing pixels, drawing speech, or done.
struct Row {
  std::vector<int32_t> prompt;  // <bos> <text> caption <image>
  size_t fed = 0;               // prompt tokens fed so far
  bool speech_started = false;  // <speech> fed
  bool done = false;
  int32_t next = kBos;          // the token this row feeds at the next position
  SceneSample out;
};

}  // namespace

std::vector<SceneSample> generate_from_captions(const nn::MambaLM& model,
                                                const std::vector<std::vector<int32_t>>& captions,
                                                const SamplingOptions& options, Generator& gen,
                                                int64_t max_speech, int64_t doc_token) {
  check_sampling_options(options);
  const Vocab& vocab = toy_vocab();
  const int64_t V = model.config().vocab_size;
  MOM_CHECK(V == vocab.size, "generate",
            "the model has " << V << " token ids, the toy vocabulary " << vocab.size << ": it was not trained on it");
  MOM_CHECK(!captions.empty(), "generate", "no caption to continue");
  MOM_CHECK(max_speech >= 0, "generate", "--max-speech " << max_speech << " is negative");
  for (size_t r = 0; r < captions.size(); ++r)
    for (int32_t w : captions[r])
      MOM_CHECK(w >= kTextBegin && w < kTextEnd, "generate",
                "caption " << r << " holds token " << w << ", which is no word of the toy vocabulary");

  const int64_t B = static_cast<int64_t>(captions.size());
  std::vector<Row> rows(B);
  for (int64_t r = 0; r < B; ++r) {
    rows[r].prompt = {kBos, kBeginText};
    rows[r].prompt.insert(rows[r].prompt.end(), captions[r].begin(), captions[r].end());
    rows[r].prompt.push_back(kBeginImage);
  }
  const std::vector<TokenRange> pixels = {{kImageBegin, kImageEnd}};
  const std::vector<TokenRange> speech = {{kSpeechBegin, kSpeechEnd}, {kEos, kEos + 1}};

  NoGradGuard no_grad;
  const Device device = model.embedding->weight.device();
  nn::LMState state = model.allocate_state(B);
  std::vector<int64_t> tokens(B);
  std::vector<int32_t> modalities(B);
  std::vector<uint8_t> starts(B);
  auto running = [&] { return std::any_of(rows.begin(), rows.end(), [](const Row& r) { return !r.done; }); };
  while (running()) {
    for (int64_t r = 0; r < B; ++r) {
      tokens[r] = rows[r].done ? kPad : rows[r].next;
      modalities[r] = vocab.modality_of(static_cast<int32_t>(tokens[r]));
      starts[r] = tokens[r] == doc_token;
    }
    Tensor start = doc_token >= 0 ? from_vector<uint8_t>(starts, {B}).to(DType::boolean).to(device) : Tensor();
    std::vector<float> logits = model
                                    .step(from_vector<int64_t>(tokens, {B}).to(device),
                                          from_vector<int32_t>(modalities, {B}).to(device), state, start)
                                    .to_vector<float>();
    for (int64_t r = 0; r < B; ++r) {
      Row& row = rows[r];
      if (row.done) continue;
      const float* l = logits.data() + r * V;
      if (row.fed < row.prompt.size()) ++row.fed;
      if (row.fed < row.prompt.size()) {
        row.next = row.prompt[row.fed];
      } else if (row.out.image.size() < static_cast<size_t>(kImagePixels)) {
        row.next = sample_token(l, V, pixels, options, gen);
        row.out.image.push_back(row.next);
      } else if (!row.speech_started) {
        row.speech_started = true;
        row.next = kBeginSpeech;
      } else if (static_cast<int64_t>(row.out.speech.size()) >= max_speech) {
        row.done = true;
      } else {
        row.next = sample_token(l, V, speech, options, gen);
        if (row.next == kEos)
          row.done = true;
        else
          row.out.speech.push_back(row.next);
      }
    }
  }
  std::vector<SceneSample> out;
  for (Row& row : rows) out.push_back(std::move(row.out));
  return out;
}

bool image_matches_caption(const std::vector<int32_t>& caption, const std::vector<int32_t>& image) {
  auto want = parse_caption(caption);
  auto got = parse_image(image);
  if (!want || !got || want->objects.size() != got->objects.size()) return false;
  for (const Object& o : want->objects)
    if (std::find(got->objects.begin(), got->objects.end(), o) == got->objects.end()) return false;
  return true;
}

bool speech_matches_caption(const std::vector<int32_t>& caption, const std::vector<int32_t>& speech) {
  if (!parse_caption(caption)) return false;
  auto spoken = parse_speech(speech);
  // Speech spells every word but the period (speech_tokens).
  std::vector<int32_t> words;
  for (int32_t w : caption)
    if (w != kWordPeriod) words.push_back(w);
  return spoken && *spoken == words;
}

}  // namespace mom::toy
