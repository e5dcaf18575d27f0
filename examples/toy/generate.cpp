#include "examples/toy/generate.h"

#include <algorithm>
#include <cmath>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/error.h"
#include "examples/toy/vocab.h"
#include "examples/toy/world.h"
#include "nn/decoder.h"

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

// A row's sequence: parts, each tokens to feed and then a segment to draw. continue_prompts is one part
// (the prompt, its continuation); generate_from_captions two (the caption prompt and the pixels, then
// <speech> and the units), so that the speech follows the image in the same state. A stop token ends the
// row, whatever parts follow.
struct Part {
  std::vector<int32_t> feed;
  const SegmentSpec* draw;
  std::vector<TokenRange> candidates;  // draw->allowed, then draw->stop
};

// Where a row is in its parts.
struct Row {
  const std::vector<Part>* parts = nullptr;
  size_t part = 0, fed = 0;       // the part, and how many of its feed tokens went in
  bool segment_over = false;      // the part's segment ended (its length or a last token)
  bool done = false;
  int32_t next = kPad;            // the token this row feeds at the next position
  std::vector<std::vector<int32_t>> out;  // the kept tokens of each part
};

bool contains(const std::vector<int32_t>& tokens, int32_t t) {
  return std::find(tokens.begin(), tokens.end(), t) != tokens.end();
}

bool allows(const std::vector<TokenRange>& ranges, int32_t t) {
  return std::any_of(ranges.begin(), ranges.end(), [t](const TokenRange& r) { return t >= r.begin && t < r.end; });
}

void check_spec(const SegmentSpec& s, int64_t V, size_t index) {
  MOM_CHECK(s.max_length >= 0, "generate", "segment spec " << index << ": max_length " << s.max_length << " is negative");
  MOM_CHECK(!s.allowed.empty() || !s.stop.empty() || s.max_length == 0, "generate",
            "segment spec " << index << " allows no token");
  for (const TokenRange& r : s.allowed)
    MOM_CHECK(r.begin >= 0 && r.begin <= r.end && r.end <= V, "generate",
              "segment spec " << index << ": allowed tokens [" << r.begin << ", " << r.end
                              << ") are outside the vocabulary [0, " << V << ")");
  for (int32_t t : s.stop) {
    MOM_CHECK(t >= 0 && t < V, "generate",
              "segment spec " << index << ": stop token " << t << " is outside the vocabulary [0, " << V << ")");
    MOM_CHECK(!allows(s.allowed, t), "generate",
              "segment spec " << index << ": stop token " << t << " is also an allowed token (it would be drawn twice)");
  }
  for (int32_t t : s.last)
    MOM_CHECK(allows(s.allowed, t), "generate",
              "segment spec " << index << ": last token " << t << " is not among the allowed tokens");
}

// What the row feeds after the token it just fed (whose logits are l): the next feed token, or a token
// drawn for its segment, or nothing (done).
void advance(Row& row, const float* l, int64_t V, const SamplingOptions& options, Generator& gen) {
  while (true) {
    const Part& p = (*row.parts)[row.part];
    if (row.fed < p.feed.size()) {
      row.next = p.feed[row.fed++];
      return;
    }
    std::vector<int32_t>& out = row.out[row.part];
    const bool last_part = row.part + 1 == row.parts->size();
    if (!row.segment_over && static_cast<int64_t>(out.size()) < p.draw->max_length) {
      const int32_t t = sample_token(l, V, p.candidates, options, gen);
      if (contains(p.draw->stop, t)) {
        row.done = true;
        return;
      }
      out.push_back(t);
      row.next = t;
      if (p.draw->abandon && p.draw->abandon(out)) {
        row.done = true;
        return;
      }
      row.segment_over = contains(p.draw->last, t) || static_cast<int64_t>(out.size()) == p.draw->max_length;
      row.done = row.segment_over && last_part;  // nothing depends on feeding the row's final token
      return;
    }
    if (last_part) {
      row.done = true;
      return;
    }
    ++row.part;
    row.fed = 0;
    row.segment_over = false;
  }
}

// Runs the rows' parts as one batch through an nn::Decoder: one step per position until every row is
// done. A row that is done keeps a place in the batch (the decoder's rows are fixed, and its step is one
// graph launch on the GPU); its logits are not read.
std::vector<std::vector<std::vector<int32_t>>> run_rows(const nn::MambaLM& model,
                                                        const std::vector<std::vector<Part>>& plans,
                                                        const SamplingOptions& options, Generator& gen,
                                                        int64_t doc_token) {
  const Vocab& vocab = toy_vocab();
  const int64_t V = model.config().vocab_size;
  const int64_t B = static_cast<int64_t>(plans.size());
  std::vector<Row> rows(B);
  for (int64_t r = 0; r < B; ++r) {
    rows[r].parts = &plans[r];
    rows[r].out.resize(plans[r].size());
    rows[r].next = plans[r].front().feed.front();
    rows[r].fed = 1;
  }

  NoGradGuard no_grad;
  nn::Decoder decoder(model, B);
  auto running = [&] { return std::any_of(rows.begin(), rows.end(), [](const Row& r) { return !r.done; }); };
  while (running()) {
    std::vector<int32_t> tokens(B), modalities(B);
    std::vector<uint8_t> starts(B);
    for (int64_t i = 0; i < B; ++i) {
      tokens[i] = rows[i].next;
      modalities[i] = vocab.modality_of(tokens[i]);
      starts[i] = tokens[i] == doc_token;
    }
    const Tensor start = doc_token >= 0 ? from_vector<uint8_t>(starts, {B}).to(DType::boolean) : Tensor();
    const std::vector<float> logits =
        decoder.step(from_vector<int32_t>(tokens, {B}), from_vector<int32_t>(modalities, {B}), start)
            .to_vector<float>();
    for (int64_t i = 0; i < B; ++i)
      if (!rows[i].done) advance(rows[i], logits.data() + i * V, V, options, gen);
  }
  std::vector<std::vector<std::vector<int32_t>>> out;
  for (Row& row : rows) out.push_back(std::move(row.out));
  return out;
}

void check_toy_model(const nn::MambaLM& model) {
  const int64_t V = model.config().vocab_size;
  MOM_CHECK(V == toy_vocab().size, "generate", "the model has " << V << " token ids, the toy vocabulary "
                                                                << toy_vocab().size << ": it was not trained on it");
}

Part make_part(std::vector<int32_t> feed, const SegmentSpec& draw) {
  Part p{std::move(feed), &draw, draw.allowed};
  for (int32_t t : draw.stop) p.candidates.push_back({t, t + 1});
  return p;
}

}  // namespace

std::vector<std::vector<int32_t>> continue_prompts(const nn::MambaLM& model,
                                                   const std::vector<std::vector<int32_t>>& prompts,
                                                   const std::vector<SegmentSpec>& specs,
                                                   const SamplingOptions& options, Generator& gen, int64_t doc_token) {
  check_sampling_options(options);
  check_toy_model(model);
  const int64_t V = model.config().vocab_size;
  MOM_CHECK(!prompts.empty(), "generate", "no prompt to continue");
  MOM_CHECK(specs.size() == 1 || specs.size() == prompts.size(), "generate",
            specs.size() << " segment specs for " << prompts.size() << " prompts: give one, or one per prompt");
  for (size_t i = 0; i < specs.size(); ++i) check_spec(specs[i], V, i);
  std::vector<std::vector<Part>> plans;
  for (size_t r = 0; r < prompts.size(); ++r) {
    MOM_CHECK(!prompts[r].empty(), "generate", "prompt " << r << " is empty: a row starts from its first token (<bos>)");
    for (int32_t t : prompts[r])
      MOM_CHECK(t >= 0 && t < V, "generate",
                "prompt " << r << " holds token " << t << ", outside the vocabulary [0, " << V << ")");
    plans.push_back({make_part(prompts[r], specs[specs.size() == 1 ? 0 : r])});
  }
  std::vector<std::vector<int32_t>> out;
  for (auto& parts : run_rows(model, plans, options, gen, doc_token)) out.push_back(std::move(parts[0]));
  return out;
}

std::vector<SceneSample> generate_from_captions(const nn::MambaLM& model,
                                                const std::vector<std::vector<int32_t>>& captions,
                                                const SamplingOptions& options, Generator& gen,
                                                int64_t max_speech, int64_t doc_token) {
  check_sampling_options(options);
  check_toy_model(model);
  MOM_CHECK(!captions.empty(), "generate", "no caption to continue");
  MOM_CHECK(max_speech >= 0, "generate", "--max-speech " << max_speech << " is negative");
  for (size_t r = 0; r < captions.size(); ++r)
    for (int32_t w : captions[r])
      MOM_CHECK(w >= kTextBegin && w < kTextEnd, "generate",
                "caption " << r << " holds token " << w << ", which is no word of the toy vocabulary");

  const SegmentSpec pixels{{{kImageBegin, kImageEnd}}, {}, {}, kImagePixels};
  const SegmentSpec speech{{{kSpeechBegin, kSpeechEnd}}, {kEos}, {}, max_speech};
  std::vector<std::vector<Part>> plans;
  for (const std::vector<int32_t>& caption : captions) {
    std::vector<int32_t> prompt = {kBos, kBeginText};
    prompt.insert(prompt.end(), caption.begin(), caption.end());
    prompt.push_back(kBeginImage);
    plans.push_back({make_part(std::move(prompt), pixels), make_part({kBeginSpeech}, speech)});
  }
  std::vector<SceneSample> out;
  for (auto& parts : run_rows(model, plans, options, gen, doc_token))
    out.push_back({std::move(parts[0]), std::move(parts[1])});
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
