// Generation measured as accuracies (examples/toy/accuracy.h): the scoring of hand-made generations,
// continue_prompts' segments (allowed tokens, stops, lengths, a batch against single rows and against a
// step-by-step reference), the trainer's accuracy records and config field, and compare's FLOPs to 90%.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "autograd/grad_mode.h"
#include "examples/toy/accuracy.h"
#include "examples/toy/compare.h"
#include "examples/toy/generate.h"
#include "examples/toy/token_file.h"
#include "examples/toy/train.h"
#include "examples/toy/world.h"
#include "tests/support.h"
#include "tests/toy_support.h"

namespace mom::toy {
namespace {

using test::expect_error;

// An untrained model of the toy vocabulary with a sharpened final norm, so that its greedy continuations
// depend on every token read (as test_generate's), and a larger <eos> row, so that some rows stop early.
const nn::MambaLM& sharp_model() {
  static const std::shared_ptr<nn::MambaLM> model = [] {
    TrainConfig c = test::tiny_train_config(test::scratch_path("unused"));
    Generator gen(17);
    auto m = std::make_shared<nn::MambaLM>(c.lm_config(kToyVocabSize), gen);
    float* w = m->norm_f->weight.data<float>();
    for (int64_t i = 0; i < m->norm_f->weight.numel(); ++i) w[i] *= 40;
    float* eos = m->embedding->weight.data<float>() + kEos * c.d_model;
    for (int64_t i = 0; i < c.d_model; ++i) eos[i] *= 10;
    return m;
  }();
  return *model;
}

// A document of the scene, segments in the world's first order, with speech durations from `seed`.
Segments document_of(const Scene& scene, uint64_t seed) {
  Generator gen(seed);
  Segments d;
  d.caption = caption_tokens(scene);
  d.image = image_tokens(scene);
  d.speech = speech_tokens(d.caption, gen);
  d.order = {kModalityText, kModalityImage, kModalitySpeech};
  return d;
}

// A red square at top left and a blue plus at center; a green ring at bottom right.
const Scene kTwo{{{0, 0, 0}, {2, 2, 4}}};
const Scene kOne{{{1, 1, 8}}};

TEST(AccuracyScoring, CaptionToImageCountsScenesAndPixels) {
  const Segments two = document_of(kTwo, 1), one = document_of(kOne, 2);
  std::vector<int32_t> off_by_one = two.image;
  off_by_one[40] = kPixelBackground;  // the plus's centre: no shape any more
  std::vector<int32_t> moved = image_tokens(Scene{{{0, 0, 0}, {2, 2, 5}}});  // the plus one cell right
  const TaskScore s =
      score_task(Task::caption_image, {two, two, two, one, one},
                 {two.image, off_by_one, moved, one.image, {kPixelBackground, kPixelBackground}});
  EXPECT_EQ(s.count, 5);
  EXPECT_EQ(s.exact, 2);
  EXPECT_DOUBLE_EQ(s.share(), 0.4);
  // Pixels: 81, 80, 81 - 2 x 5 (the plus's five pixels drawn one cell over, on background), 81, and the
  // two-pixel image's two, background like the top left of the ring's image.
  ASSERT_EQ(one.image[0], kPixelBackground);
  ASSERT_EQ(one.image[1], kPixelBackground);
  EXPECT_EQ(s.pixels, 5 * kImagePixels);
  EXPECT_EQ(s.pixels_right, 81 + 80 + 71 + 81 + 2);
  EXPECT_DOUBLE_EQ(s.pixel_share(), 315.0 / 405.0);
}

TEST(AccuracyScoring, CaptionToSpeechNeedsTheCaptionsWords) {
  const Segments two = document_of(kTwo, 1);
  Generator other(99);
  const std::vector<int32_t> other_durations = speech_tokens(two.caption, other);
  ASSERT_NE(other_durations, two.speech);
  const std::vector<int32_t> one_object = speech_tokens(caption_tokens(Scene{{kTwo.objects[0]}}), other);
  std::vector<int32_t> trailing = two.speech;
  trailing.push_back(kSilence);
  const TaskScore s =
      score_task(Task::caption_speech, {two, two, two, two, two}, {two.speech, other_durations, one_object, trailing, {}});
  EXPECT_EQ(s.count, 5);
  EXPECT_EQ(s.exact, 2);
  EXPECT_EQ(s.pixels, 0);
  EXPECT_TRUE(std::isnan(s.pixel_share()));
}

TEST(AccuracyScoring, SpeechThatNoContinuationMakesRightIsKnownEarly) {
  const Segments two = document_of(kTwo, 1);
  for (size_t n = 0; n <= two.speech.size(); ++n)
    ASSERT_TRUE(speech_may_match_caption(two.caption, {two.speech.begin(), two.speech.begin() + n})) << n;
  std::vector<int32_t> held = two.speech;
  held.insert(held.begin() + 1, 40, two.speech[0]);  // a unit held long still parses
  EXPECT_TRUE(speech_may_match_caption(two.caption, held));
  EXPECT_TRUE(speech_matches_caption(two.caption, held));
  // The second word's first unit in the place of the first word's second: wrong from there on.
  const std::vector<int32_t>& a = pronunciation(kWordA);
  const std::vector<int32_t>& red = pronunciation(kColourWordBegin);
  EXPECT_TRUE(speech_may_match_caption(two.caption, {a[0], a[1]}));
  EXPECT_FALSE(speech_may_match_caption(two.caption, {a[0], red[0]}));
  EXPECT_FALSE(speech_may_match_caption(two.caption, {kSilence}));  // speech starts with a word
  std::vector<int32_t> more = two.speech;
  more.push_back(kSilence);
  more.push_back(a[0]);
  EXPECT_FALSE(speech_may_match_caption(two.caption, more));  // a word after the last
  EXPECT_FALSE(speech_may_match_caption(two.caption, {kWordA}));  // no speech unit
  EXPECT_FALSE(speech_may_match_caption({kWordA}, {}));           // an ill-formed caption
  // caption -> speech rows end at their first wrong unit.
  const SegmentSpec spec = task_segment(Task::caption_speech, two);
  ASSERT_TRUE(static_cast<bool>(spec.abandon));
  EXPECT_FALSE(spec.abandon({a[0], a[1]}));
  EXPECT_TRUE(spec.abandon({a[0], red[0]}));
}

TEST(AccuracyScoring, ImageToCaptionComparesScenesNotStrings) {
  const Segments two = document_of(kTwo, 1);
  const std::vector<int32_t> reordered = encode_words("a blue plus at center and a red square at top left .");
  ASSERT_NE(reordered, two.caption);
  std::vector<int32_t> no_period = two.caption;
  no_period.pop_back();
  const std::vector<int32_t> missing = encode_words("a red square at top left .");
  const std::vector<int32_t> wrong_colour = encode_words("a red square at top left and a green plus at center .");
  const std::vector<int32_t> repeated =
      encode_words("a red square at top left and a blue plus at center and a blue plus at center .");
  const TaskScore s = score_task(Task::image_caption, std::vector<Segments>(6, two),
                                 {two.caption, reordered, no_period, missing, wrong_colour, repeated});
  EXPECT_EQ(s.count, 6);
  EXPECT_EQ(s.exact, 2);
}

TEST(AccuracyScoring, SpeechToCaptionNeedsTheSpokenWordsThenAPeriod) {
  const Segments two = document_of(kTwo, 1);
  const std::vector<int32_t> reordered = encode_words("a blue plus at center and a red square at top left .");
  std::vector<int32_t> no_period = two.caption;
  no_period.pop_back();
  std::vector<int32_t> two_periods = two.caption;
  two_periods.push_back(kWordPeriod);
  // The speech spells the caption's order, so the other order is wrong here (unlike image -> caption).
  const TaskScore s = score_task(Task::speech_caption, std::vector<Segments>(5, two),
                                 {two.caption, reordered, no_period, two_periods, {kWordPeriod}});
  EXPECT_EQ(s.count, 5);
  EXPECT_EQ(s.exact, 1);
  EXPECT_DOUBLE_EQ(s.share(), 0.2);
  // No documents: no share.
  EXPECT_TRUE(std::isnan(score_task(Task::speech_caption, {}, {}).share()));
  expect_error([&] { score_task(Task::speech_caption, {two}, {}); },
               "[accuracy] speech -> caption: 0 generations for 1 documents");
}

TEST(AccuracyScoring, PromptsSegmentsAndTheProgressLine) {
  const Segments one = document_of(kOne, 2);
  std::vector<int32_t> want = {kBos, kBeginText};
  want.insert(want.end(), one.caption.begin(), one.caption.end());
  want.push_back(kBeginImage);
  EXPECT_EQ(task_prompt(Task::caption_image, one), want);
  want.back() = kBeginSpeech;
  EXPECT_EQ(task_prompt(Task::caption_speech, one), want);
  want = {kBos, kBeginSpeech};
  want.insert(want.end(), one.speech.begin(), one.speech.end());
  want.push_back(kBeginText);
  EXPECT_EQ(task_prompt(Task::speech_caption, one), want);
  EXPECT_EQ(task_prompt(Task::image_caption, one).size(), 3u + kImagePixels);

  EXPECT_EQ(task_segment(Task::caption_image, one).max_length, kImagePixels);
  EXPECT_TRUE(task_segment(Task::caption_image, one).stop.empty());
  const SegmentSpec speech = task_segment(Task::caption_speech, one);
  EXPECT_EQ(speech.max_length, 4 * static_cast<int64_t>(one.speech.size()) + 16);
  EXPECT_EQ(speech.stop, (std::vector<int32_t>{kEos, kBeginText, kBeginImage}));
  const SegmentSpec caption = task_segment(Task::image_caption, one);
  EXPECT_EQ(caption.max_length, 40);
  EXPECT_EQ(caption.last, std::vector<int32_t>{kWordPeriod});
  EXPECT_EQ(caption.stop, (std::vector<int32_t>{kEos, kBeginImage, kBeginSpeech}));

  GenerationAccuracy a;
  a.tasks[0] = {32, 12, 32 * 81, 2203};
  a.tasks[1] = {32, 3, 0, 0};
  a.tasks[2] = {32, 20, 0, 0};
  a.tasks[3] = {32, 28, 0, 0};
  EXPECT_EQ(format_generation_accuracy(a), "gen c>i 12/32 px 0.85 c>s 3/32 i>c 20/32 s>c 28/32");
  EXPECT_STREQ(task_key(Task::speech_caption), "speech_caption");
}

// One row's greedy continuation, step by step at batch 1: the reference continue_prompts must equal.
std::vector<int32_t> reference_greedy(const nn::MambaLM& model, const std::vector<int32_t>& prompt,
                                      const SegmentSpec& spec) {
  NoGradGuard no_grad;
  const Vocab& vocab = toy_vocab();
  nn::LMState state = model.allocate_state(1);
  auto feed = [&](int32_t t) {
    Tensor start = from_vector<uint8_t>({static_cast<uint8_t>(t == kBos)}, {1}).to(DType::boolean);
    return model.step(from_vector<int64_t>({t}, {1}), from_vector<int32_t>({vocab.modality_of(t)}, {1}), state, start)
        .to_vector<float>();
  };
  std::vector<float> logits;
  for (int32_t t : prompt) logits = feed(t);
  std::vector<int32_t> out;
  while (static_cast<int64_t>(out.size()) < spec.max_length) {
    int32_t best = -1;
    auto consider = [&](int32_t t) {
      if (best < 0 || logits[t] > logits[best]) best = t;
    };
    for (const TokenRange& r : spec.allowed)
      for (int32_t t = r.begin; t < r.end; ++t) consider(t);
    for (int32_t t : spec.stop) consider(t);
    if (std::find(spec.stop.begin(), spec.stop.end(), best) != spec.stop.end()) break;
    out.push_back(best);
    if (spec.abandon && spec.abandon(out)) break;
    if (std::find(spec.last.begin(), spec.last.end(), best) != spec.last.end()) break;
    logits = feed(best);
  }
  return out;
}

TEST(ContinuePrompts, RowsKeepToTheirSegments) {
  const nn::MambaLM& model = sharp_model();
  Generator gen(3);
  const std::vector<int32_t> prompt = {kBos, kBeginText, kWordA, kBeginSpeech};
  const int32_t lo = kSpeechUnitBegin + 3, hi = kSpeechUnitBegin + 9;
  // Sampled hot, a few units or a stop: rows end at the stop (not kept) or at the length.
  const SegmentSpec units{{{lo, hi}}, {kEos, kBeginImage}, {}, 8};
  const std::vector<std::vector<int32_t>> out =
      continue_prompts(model, std::vector<std::vector<int32_t>>(24, prompt), {units}, {3.0, 0, 1.0}, gen, kBos);
  ASSERT_EQ(out.size(), 24u);
  int stopped = 0, full = 0;
  for (const std::vector<int32_t>& row : out) {
    for (int32_t t : row) EXPECT_TRUE(t >= lo && t < hi) << t;
    EXPECT_LE(row.size(), 8u);
    stopped += row.size() < 8;
    full += row.size() == 8;
  }
  EXPECT_GE(stopped, 1);
  EXPECT_GE(full, 1);
  // Without stops, exactly the length; a length of 0 draws nothing.
  const SegmentSpec exact{{{kImageBegin, kImageEnd}}, {}, {}, 17};
  for (const auto& row : continue_prompts(model, {prompt, {kBos}}, {exact}, {2.0, 0, 1.0}, gen, kBos)) {
    EXPECT_EQ(row.size(), 17u);
    for (int32_t t : row) EXPECT_TRUE(t >= kImageBegin && t < kImageEnd) << t;
  }
  const SegmentSpec none{{{kImageBegin, kImageEnd}}, {kEos}, {}, 0};
  EXPECT_EQ(continue_prompts(model, {prompt}, {none}, {}, gen, kBos), std::vector<std::vector<int32_t>>{{}});
  // Only a stop allowed: it is drawn at once and not kept.
  const SegmentSpec only_stop{{}, {kEos}, {}, 10};
  EXPECT_EQ(continue_prompts(model, {prompt}, {only_stop}, {}, gen, kBos), std::vector<std::vector<int32_t>>{{}});
  // Last tokens end a row once kept: with every word allowed and every word "last", one word a row.
  const SegmentSpec one_word{{{kTextBegin, kTextEnd}}, {}, {}, 40};
  SegmentSpec any_last = one_word;
  for (int32_t w = kTextBegin; w < kTextEnd; ++w) any_last.last.push_back(w);
  for (const auto& row : continue_prompts(model, {prompt, prompt}, {any_last}, {2.0, 0, 1.0}, gen, kBos))
    EXPECT_EQ(row.size(), 1u);
  // `abandon` ends a row after the kept tokens it refuses, here the third, or the first of a row given
  // a spec that refuses anything.
  SegmentSpec three = exact;
  three.abandon = [](const std::vector<int32_t>& kept) { return kept.size() == 3; };
  SegmentSpec at_once = exact;
  at_once.abandon = [](const std::vector<int32_t>&) { return true; };
  const std::vector<std::vector<int32_t>> cut =
      continue_prompts(model, {prompt, prompt, prompt}, {three, at_once, exact}, {2.0, 0, 1.0}, gen, kBos);
  EXPECT_EQ(cut[0].size(), 3u);
  EXPECT_EQ(cut[1].size(), 1u);
  EXPECT_EQ(cut[2].size(), 17u);
}

TEST(ContinuePrompts, GreedyIsTheStepByStepArgmaxAndABatchIsItsRows) {
  const nn::MambaLM& model = sharp_model();
  std::vector<Segments> docs;
  ToyWorld world(8);
  while (docs.size() < 3) docs.push_back(*split_document(world.next_document()));
  // Rows of every task, prompts of different lengths and segments of different ends.
  TaskRows rows = task_rows(docs);
  std::vector<std::vector<int32_t>>& prompts = rows.prompts;
  std::vector<SegmentSpec>& specs = rows.specs;
  // A short caption segment whose rows the period, a stop or the length ends.
  prompts.push_back({kBos, kBeginImage, kPixelBackground, kBeginText});
  specs.push_back({{{kTextBegin, kTextEnd}}, {kEos}, {kWordPeriod, kWordAnd}, 5});
  Generator gen(0);
  const std::vector<std::vector<int32_t>> batch = continue_prompts(model, prompts, specs, {}, gen, kBos);
  ASSERT_EQ(batch.size(), prompts.size());
  std::set<size_t> lengths;
  for (size_t r = 0; r < prompts.size(); ++r) {
    EXPECT_EQ(batch[r], reference_greedy(model, prompts[r], specs[r])) << "row " << r;
    EXPECT_EQ(continue_prompts(model, {prompts[r]}, {specs[r]}, {}, gen, kBos)[0], batch[r]) << "row " << r;
    lengths.insert(batch[r].size());
  }
  EXPECT_GE(lengths.size(), 3u);  // rows end at different positions
}

TEST(ContinuePrompts, BadInputIsRefused) {
  const nn::MambaLM& model = sharp_model();
  Generator gen(0);
  const SegmentSpec ok{{{kTextBegin, kTextEnd}}, {kEos}, {kWordPeriod}, 5};
  expect_error([&] { continue_prompts(model, {}, {ok}, {}, gen, kBos); }, "[generate] no prompt to continue");
  expect_error([&] { continue_prompts(model, {{kBos}, {}}, {ok}, {}, gen, kBos); }, "[generate] prompt 1 is empty");
  expect_error([&] { continue_prompts(model, {{kBos, 67}}, {ok}, {}, gen, kBos); },
               "[generate] prompt 0 holds token 67, outside the vocabulary [0, 67)");
  expect_error([&] { continue_prompts(model, {{kBos}, {kBos}, {kBos}}, {ok, ok}, {}, gen, kBos); },
               "[generate] 2 segment specs for 3 prompts");
  expect_error([&] { continue_prompts(model, {{kBos}}, {{{{kTextBegin, kTextEnd}}, {kWordA}, {}, 5}}, {}, gen, kBos); },
               "[generate] segment spec 0: stop token 6 is also an allowed token");
  expect_error([&] { continue_prompts(model, {{kBos}}, {{{{kTextBegin, kTextEnd}}, {}, {kEos}, 5}}, {}, gen, kBos); },
               "[generate] segment spec 0: last token 2 is not among the allowed tokens");
  expect_error([&] { continue_prompts(model, {{kBos}}, {{{{kTextBegin, kTextEnd}}, {}, {}, -1}}, {}, gen, kBos); },
               "[generate] segment spec 0: max_length -1 is negative");
  expect_error([&] { continue_prompts(model, {{kBos}}, {{{{60, 70}}, {}, {}, 3}}, {}, gen, kBos); },
               "[generate] segment spec 0: allowed tokens [60, 70) are outside the vocabulary");
  expect_error([&] { continue_prompts(model, {{kBos}}, {{{}, {}, {}, 3}}, {}, gen, kBos); },
               "[generate] segment spec 0 allows no token");
}

TEST(AccuracyEvaluation, CountsEveryTaskAndIsTheSameInAnyBatching) {
  const nn::MambaLM& model = sharp_model();
  ToyWorld world(4);
  std::vector<std::vector<int32_t>> docs;
  for (int i = 0; i < 5; ++i) docs.push_back(world.next_document());
  const GenerationAccuracy all = evaluate_generation(model, docs, kBos, 128);
  const GenerationAccuracy one = evaluate_generation(model, docs, kBos, 1);
  const GenerationAccuracy three = evaluate_generation(model, docs, kBos, 3);
  for (Task t : kTasks) {
    EXPECT_EQ(all[t].count, 5) << task_name(t);
    EXPECT_GE(all[t].exact, 0);
    EXPECT_LE(all[t].exact, 5);
    for (const GenerationAccuracy* other : {&one, &three}) {
      EXPECT_EQ((*other)[t].exact, all[t].exact) << task_name(t);
      EXPECT_EQ((*other)[t].pixels_right, all[t].pixels_right) << task_name(t);
    }
  }
  EXPECT_EQ(all[Task::caption_image].pixels, 5 * kImagePixels);
  EXPECT_GT(all[Task::caption_image].pixels_right, 0);  // some background pixel is right
  // The scores are those of the documents' continuations.
  std::vector<Segments> segments;
  std::vector<std::vector<int32_t>> prompts;
  std::vector<SegmentSpec> specs;
  for (const auto& d : docs) {
    segments.push_back(*split_document(d));
    prompts.push_back(task_prompt(Task::caption_image, segments.back()));
    specs.push_back(task_segment(Task::caption_image, segments.back()));
  }
  Generator gen(0);
  const TaskScore direct = score_task(Task::caption_image, segments, continue_prompts(model, prompts, specs, {}, gen, kBos));
  EXPECT_EQ(direct.pixels_right, all[Task::caption_image].pixels_right);

  expect_error([&] { evaluate_generation(model, {}, kBos, 8); }, "[accuracy] no document");
  expect_error([&] { evaluate_generation(model, docs, kBos, 0); }, "[accuracy] max_rows_per_batch 0 is below 1");
  std::vector<std::vector<int32_t>> bad = docs;
  bad[2].pop_back();  // no <eos>
  expect_error([&] { evaluate_generation(model, bad, kBos, 8); }, "[accuracy] document 2 (");
}

std::vector<nlohmann::json> eval_records(const std::string& dir) {
  std::ifstream in(dir + "/log.jsonl");
  std::vector<nlohmann::json> out;
  std::string line;
  while (std::getline(in, line)) {
    nlohmann::json r = nlohmann::json::parse(line);
    if (r["kind"] == "eval") out.push_back(r);
  }
  return out;
}

const char* const kAccuracyKeys[] = {"acc_caption_image", "pixel_acc_caption_image", "acc_caption_speech",
                                     "acc_image_caption", "acc_speech_caption"};

TEST(AccuracyTrainer, EveryEvaluationRecordsTheAccuraciesAndZeroRecordsNone) {
  TrainConfig c = test::tiny_train_config(test::scratch_path("acc"));
  c.accuracy_docs = 4;
  const TrainResult r = train(c);
  const std::vector<nlohmann::json> evals = eval_records(c.out);
  ASSERT_EQ(evals.size(), 3u);  // steps 4, 8 and 12
  for (const nlohmann::json& e : evals)
    for (const char* key : kAccuracyKeys) {
      ASSERT_TRUE(e.contains(key) && e[key].is_number()) << key << " at step " << e["step"];
      const double v = e[key].get<double>();
      EXPECT_GE(v, 0.0) << key;
      EXPECT_LE(v, 1.0) << key;
      // A share of 4 scenes, or of 4 x 81 pixels.
      const double n = std::string(key).rfind("pixel", 0) == 0 ? 4.0 * kImagePixels : 4.0;
      EXPECT_NEAR(v * n, std::round(v * n), 1e-9) << key;
    }
  // The records are the measurement of the final model on the held-out set's first 4 scenes.
  ASSERT_TRUE(r.last_generation.has_value());
  const LoadedModel m = load_model(c.out);
  const GenerationAccuracy again = evaluate_generation(*m.model, held_out_scenes(c, 4), c.doc_token, 128);
  for (Task t : kTasks) {
    EXPECT_EQ(again[t].exact, (*r.last_generation)[t].exact) << task_name(t);
    EXPECT_DOUBLE_EQ(evals.back()[std::string("acc_") + task_key(t)].get<double>(), again[t].share());
  }
  EXPECT_DOUBLE_EQ(evals.back()["pixel_acc_caption_image"].get<double>(), again[Task::caption_image].pixel_share());

  TrainConfig off = test::tiny_train_config(test::scratch_path("off"));
  off.accuracy_docs = 0;
  EXPECT_FALSE(train(off).last_generation.has_value());
  const std::vector<nlohmann::json> quiet = eval_records(off.out);
  ASSERT_EQ(quiet.size(), 3u);
  for (const nlohmann::json& e : quiet)
    for (const char* key : kAccuracyKeys) EXPECT_FALSE(e.contains(key)) << key;

  // accuracy_docs changes on resume, like the reporting cadences.
  off.steps = 16;
  off.resume = true;
  off.accuracy_docs = 2;
  train(off);
  const std::vector<nlohmann::json> resumed = eval_records(off.out);
  ASSERT_EQ(resumed.size(), 4u);
  EXPECT_FALSE(resumed[2].contains("acc_caption_image"));
  EXPECT_TRUE(resumed[3].contains("acc_caption_image"));
  EXPECT_NEAR(resumed[3]["acc_image_caption"].get<double>() * 2, std::round(resumed[3]["acc_image_caption"].get<double>() * 2), 1e-9);
}

TEST(AccuracyTrainer, TheScenesAreTheHeldOutSetsFirstDocuments) {
  TrainConfig c = test::tiny_train_config(test::scratch_path("scenes"));
  c.seq_len = 300;  // longer than a toy document
  const std::vector<std::vector<int32_t>> scenes = held_out_scenes(c, 3);
  ASSERT_EQ(scenes.size(), 3u);
  EXPECT_TRUE(held_out_scenes(c, 0).empty());
  const std::vector<int64_t> row = eval_set(c)[0].tokens.to_vector<int64_t>();
  ASSERT_LT(scenes[0].size(), row.size());
  for (size_t i = 0; i < scenes[0].size(); ++i) ASSERT_EQ(row[i], scenes[0][i]) << i;
  EXPECT_EQ(row[scenes[0].size()], kBos);  // the next document follows
  for (const auto& d : scenes) EXPECT_TRUE(split_document(d).has_value());

  // A token file of the toy vocabulary: its held-out documents, in order, skipping none that splits.
  std::filesystem::create_directories(c.out);
  ToyWorld world(3);
  std::vector<int32_t> tokens;
  while (tokens.size() < 40000) {
    const std::vector<int32_t> d = world.next_document();
    tokens.insert(tokens.end(), d.begin(), d.end());
  }
  c.data = c.out + "/toy.tok";
  write_token_file(c.data, toy_vocab(), tokens);
  const DocumentSplit split = split_documents(read_token_file(c.data), c.doc_token, 1);
  const std::vector<std::vector<int32_t>> from_file = held_out_scenes(c, 2);
  ASSERT_EQ(from_file.size(), 2u);
  std::vector<int32_t> joined = from_file[0];
  joined.insert(joined.end(), from_file[1].begin(), from_file[1].end());
  EXPECT_EQ(joined, std::vector<int32_t>(split.held_out.begin(), split.held_out.begin() + joined.size()));
  // A token file of another vocabulary has no scenes.
  Vocab other = toy_vocab();
  other.token_names.clear();
  other.ranges.back().name = "audio";
  c.data = c.out + "/other.tok";
  write_token_file(c.data, other, tokens);
  EXPECT_TRUE(held_out_scenes(c, 2).empty());
}

TEST(AccuracyTrainer, ConfigRoundTripsAndOlderConfigsMeasureNothing) {
  TrainConfig c;
  EXPECT_EQ(c.accuracy_docs, 32);
  c.accuracy_docs = 7;
  EXPECT_EQ(TrainConfig::from_json(c.to_json()).accuracy_docs, 7);
  nlohmann::json j = nlohmann::json::parse(c.to_json());
  j.erase("accuracy_docs");
  EXPECT_EQ(TrainConfig::from_json(j.dump()).accuracy_docs, 0);
  j["accuracy_docs"] = 2.5;
  expect_error([&] { TrainConfig::from_json(j.dump()); }, "[train] config 'accuracy_docs' must be a whole number");
  c.accuracy_docs = -1;
  expect_error([&] { c.validate(); }, "[train] --accuracy-docs must be in [0, 65536], got -1");
  EXPECT_EQ(flag_of("accuracy_docs"), "--accuracy-docs");
}

// A run directory with a log.jsonl of eval records (flops, time, and accuracies where given).
std::string write_run(const std::string& name, const std::vector<nlohmann::json>& evals) {
  const std::string dir = test::scratch_path(name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::ofstream out(dir + "/log.jsonl");
  out << R"({"kind": "train", "step": 1, "flops": 5.0, "loss": 4.0})" << "\n";
  for (nlohmann::json e : evals) {
    e["kind"] = "eval";
    e["loss"] = 1.0;
    out << e.dump() << "\n";
  }
  return dir;
}

TEST(CompareAccuracy, FlopsAtTheFirstEvaluationWithNinetyPercentExact) {
  const std::vector<std::string> modalities = {"text", "image", "speech"};
  using json = nlohmann::json;
  auto record = [](double flops, double time, double ci, double cs, double ic, double sc) {
    return json{{"flops", flops}, {"time", time}, {"acc_caption_image", ci}, {"acc_caption_speech", cs},
                {"acc_image_caption", ic}, {"acc_speech_caption", sc}};
  };
  const std::string a = write_run("a", {record(1e9, 10, 0.5, 0, 0.95, 0.1), record(2e9, 21, 0.9, 0.2, 0.5, 0.875)});
  const std::string b = write_run("b", {record(1e9, 12, 0.1, 0, 0.2, 0.3), record(4e9, 50, 0.96875, 0, 1, 0.5)});
  const std::vector<EvalPoint> ca = read_eval_curve(a, modalities), cb = read_eval_curve(b, modalities);
  ASSERT_EQ(ca.size(), 2u);
  EXPECT_DOUBLE_EQ(ca[1].time, 21.0);
  EXPECT_DOUBLE_EQ(ca[1].accuracy[3], 0.875);
  const std::vector<AccuracyRow> rows = flops_to_accuracy(ca, cb);
  ASSERT_EQ(rows.size(), 4u);
  // caption -> image: A at its second eval (exactly 90%), B at its second.
  EXPECT_EQ(rows[0].task, Task::caption_image);
  EXPECT_DOUBLE_EQ(rows[0].flops_a, 2e9);
  EXPECT_DOUBLE_EQ(rows[0].time_a, 21.0);
  EXPECT_DOUBLE_EQ(rows[0].flops_b, 4e9);
  // caption -> speech: neither; image -> caption: A at its first eval (a later drop does not matter).
  EXPECT_TRUE(std::isnan(rows[1].flops_a) && std::isnan(rows[1].flops_b));
  EXPECT_TRUE(rows[1].measured_a && rows[1].measured_b);
  EXPECT_DOUBLE_EQ(rows[2].flops_a, 1e9);
  EXPECT_DOUBLE_EQ(rows[2].flops_b, 4e9);
  EXPECT_TRUE(std::isnan(rows[3].flops_a));  // 87.5% is short of 90%
  const std::string table = format_accuracy_table(rows, "mom", "dense");
  EXPECT_EQ(table,
            "greedy generation on held-out scenes: training FLOPs (seconds) at the first eval with 90% exact\n"
            "                   mom                    dense                  mom / dense\n"
            "caption -> image   2e+09 (21 s)           4e+09 (50 s)           0.50\n"
            "caption -> speech  not reached            not reached\n"
            "image -> caption   1e+09 (10 s)           4e+09 (50 s)           0.25\n"
            "speech -> caption  not reached            not reached\n");

  // A run without accuracy records shows nothing for them; two such runs, no table at all.
  const std::string none = write_run("none", {json{{"flops", 1e9}, {"time", 10.0}}});
  const std::vector<EvalPoint> cn = read_eval_curve(none, modalities);
  EXPECT_TRUE(std::isnan(cn[0].accuracy[0]));
  const std::vector<AccuracyRow> half = flops_to_accuracy(ca, cn);
  EXPECT_FALSE(half[0].measured_b);
  const std::string half_table = format_accuracy_table(half, "mom", "old");
  EXPECT_NE(half_table.find("caption -> image   2e+09 (21 s)\n"), std::string::npos) << half_table;
  EXPECT_NE(half_table.find("caption -> speech  not reached\n"), std::string::npos) << half_table;
  EXPECT_EQ(format_accuracy_table(flops_to_accuracy(cn, cn), "a", "b"), "");
}

}  // namespace
}  // namespace mom::toy
