// Generation for the toy data by step-by-step recurrent inference (MambaLM::step): prompts continued
// with a constrained segment (continue_prompts, as the trainer's accuracy evaluation uses), and a caption
// continued with the image and the speech it describes (generate_from_captions, as `mom generate` does).
//
// Sampling follows PyTorch / Hugging Face generate: the logits of the allowed tokens are divided by the
// temperature, then top-k keeps the k most likely, top-p the smallest set of the most likely whose
// probability reaches p (at least one token), and a token is drawn from what is left, renormalised.
// Temperature 0 is greedy: the argmax, whatever top-k and top-p say. Ties go to the first allowed
// token, so top-k 1 and top-p near 0 pick exactly what greedy picks.
//
// Segments are constrained (SegmentSpec): a row draws only its segment's tokens and stops at its stop
// tokens or its length. generate_from_captions draws, after <image>, exactly kImagePixels pixel tokens,
// and after <speech> speech units or <eos>, at most max_speech units.
//
// Batching: both functions run one row per prompt through one step call per position. Each row feeds
// its own sequence (its prompt, then what it draws) from position 0, so a row with a shorter prompt starts
// sampling earlier; rows never share state (every layer keeps a state per row), so a row sees exactly
// what a generation of that prompt alone would see, and greedy rows equal single generations. A finished
// row leaves the batch (its rows of the state are dropped) and draws nothing more from the generator, so
// a batch costs the sum of its rows' lengths rather than its longest row's times its rows.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "core/random.h"
#include "nn/lm.h"

namespace mom::toy {

struct SamplingOptions {
  double temperature = 0.0;  // 0: greedy
  int64_t top_k = 0;         // 0: off
  double top_p = 1.0;        // 1: off; in (0, 1]
};

// Throws "[generate] --temperature/--top-k/--top-p ..." for a value out of range: a temperature that is
// negative or not finite, a negative top-k, a top-p outside (0, 1].
void check_sampling_options(const SamplingOptions& options);

// Token ids [begin, end).
struct TokenRange {
  int32_t begin, end;
};

// A token of the allowed ranges (in their order, which decides ties), drawn from logits[0, vocab_size)
// under `options`; greedy draws nothing from gen, sampling one uniform. Throws [generate] for empty or
// out-of-vocabulary ranges and for a non-finite logit among the allowed tokens.
int32_t sample_token(const float* logits, int64_t vocab_size, const std::vector<TokenRange>& allowed,
                     const SamplingOptions& options, Generator& gen);

// What a row draws after its prompt. Candidates are `allowed`, then `stop` (so ties go to an allowed token).
// A drawn stop token ends the row and is not kept; a kept token of `last` ends it after being kept (a
// caption's "."); otherwise the row ends with max_length kept tokens. Without stop and last tokens a
// row keeps exactly max_length tokens (an image's kImagePixels). `abandon`, when set, sees the kept
// tokens after each one and ends the row when it returns true: for a caller that knows no continuation
// can be what it looks for (an accuracy's wrong speech), so that the row stops costing.
struct SegmentSpec {
  std::vector<TokenRange> allowed;
  std::vector<int32_t> stop;  // none of them in `allowed`
  std::vector<int32_t> last;  // each of them in `allowed`
  int64_t max_length = 0;
  std::function<bool(const std::vector<int32_t>& kept)> abandon = nullptr;
};

// The kept tokens of each prompt's continuation, drawn at once as a batch of prompts.size() rows; the
// rows draw from gen in row order at each position. Each row feeds its prompt from its first token
// (the document's <bos>) and continues it under specs[r], or under specs[0] for every row when one spec
// is given. doc_token is the run's document-start token (TrainConfig::doc_token, -1 for none): each
// row's state resets there, as in training. The model must have the toy vocabulary; it stays where it is
// (CPU or GPU). Throws [generate] for an empty prompt, a token outside the vocabulary, or a spec that
// allows no token, has a negative length, or a stop token among its allowed ones.
std::vector<std::vector<int32_t>> continue_prompts(const nn::MambaLM& model,
                                                   const std::vector<std::vector<int32_t>>& prompts,
                                                   const std::vector<SegmentSpec>& specs,
                                                   const SamplingOptions& options, Generator& gen, int64_t doc_token);

// What a row generated: kImagePixels pixel tokens, and the speech units before <eos> (at most max_speech).
struct SceneSample {
  std::vector<int32_t> image, speech;
};

// One sample per caption (caption words without the <text> marker, as caption_tokens gives), drawn at
// once as a batch of captions.size() rows; the rows draw from gen in row order at each position.
// doc_token is the run's document-start token (TrainConfig::doc_token, -1 for none): each row's state
// resets there, as in training. The model must have the toy vocabulary; it stays where it is (CPU or GPU).
std::vector<SceneSample> generate_from_captions(const nn::MambaLM& model,
                                                const std::vector<std::vector<int32_t>>& captions,
                                                const SamplingOptions& options, Generator& gen,
                                                int64_t max_speech, int64_t doc_token);

// Whether the image draws the caption's scene (the same objects, in any order), and whether the speech
// spells the caption's words; false for an ill-formed caption.
bool image_matches_caption(const std::vector<int32_t>& caption, const std::vector<int32_t>& image);
bool speech_matches_caption(const std::vector<int32_t>& caption, const std::vector<int32_t>& speech);

}  // namespace mom::toy
