// The trainer end to end on tiny configs: the loss falls, resume continues bit-exactly, bad
// configurations are refused, and compare's FLOPs-to-match.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "examples/toy/compare.h"
#include "examples/toy/token_file.h"
#include "examples/toy/train.h"
#include "tests/support.h"
#include "tests/toy_support.h"

namespace mom {
namespace {

toy::TrainConfig tiny(const std::string& name) {
  return test::tiny_train_config(test::scratch_path(name));
}

std::vector<nlohmann::json> read_log(const std::string& dir) {
  std::ifstream in(dir + "/log.jsonl");
  std::vector<nlohmann::json> out;
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

TEST(Trainer, ShortRunLossFalls) {
  toy::TrainConfig c = tiny("falls");
  c.steps = 40;
  c.eval_every = 40;
  toy::TrainResult r = toy::train(c);
  auto log = read_log(c.out);
  double first = log.front()["loss"], last = r.last_train.total;
  std::printf("train loss %.4f -> %.4f, eval %.4f\n", first, last, r.last_eval.total);
  EXPECT_LT(last, first - 0.5);
  EXPECT_LT(r.last_eval.total, first - 0.5);
  EXPECT_EQ(r.modalities, (std::vector<std::string>{"text", "image", "speech"}));
  ASSERT_EQ(r.last_eval.by_modality.size(), 3u);
  for (double l : r.last_eval.by_modality) EXPECT_TRUE(std::isfinite(l));
  EXPECT_TRUE(std::filesystem::exists(c.out + "/model.safetensors"));
  // The saved model evaluates to the same held-out loss.
  toy::LoadedModel m = toy::load_model(c.out + "/model.safetensors");
  EXPECT_DOUBLE_EQ(toy::evaluate(*m.model, toy::eval_set(m.config)).total, r.last_eval.total);
}

TEST(Trainer, ResumeContinuesBitExactly) {
  toy::TrainConfig whole = tiny("whole");
  toy::train(whole);
  toy::TrainConfig parts = tiny("parts");
  parts.stop_at = 5;
  toy::train(parts);
  parts.stop_at = 0;
  parts.resume = true;
  toy::train(parts);
  auto a = read_log(whole.out), b = read_log(parts.out);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i]["kind"], b[i]["kind"]);
    EXPECT_EQ(a[i]["step"], b[i]["step"]);
    for (const char* k : {"loss", "loss_text", "loss_image", "loss_speech", "grad_norm", "lr", "flops"}) {
      if (a[i].contains(k)) {
        EXPECT_EQ(a[i][k], b[i][k]) << "line " << i << " " << k;
      }
    }
  }
}

TEST(Trainer, BadConfigurationsAreRefused) {
  toy::TrainConfig c = tiny("bad");
  c.model = "transformer";
  test::expect_error([&] { toy::train(c); }, "[train] --model");
  c = tiny("bad");
  c.lr = -1;
  test::expect_error([&] { toy::train(c); }, "[train]");
  c = tiny("bad");
  c.device = "tpu";
  test::expect_error([&] { toy::train(c); }, "[device]");
  c = tiny("bad");
  c.data = c.out + "/missing.tok";
  test::expect_error([&] { toy::train(c); }, "[token_file]");
  c = tiny("bad");
  c.resume = true;
  test::expect_error([&] { toy::train(c); }, "[train] --resume");  // no checkpoint to resume from
}

TEST(Trainer, DivergingLossStopsWithAClearMessage) {
  toy::TrainConfig c = tiny("nan");
  c.lr = 1e30;
  c.clip = 1e30;
  c.warmup = 0;
  c.steps = 20;
  try {
    toy::train(c);
    FAIL() << "a loss of inf or nan must stop the run";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("[train] the loss is", 0), 0u) << e.what();
  }
}

// A token file of M modalities: a "special" range of 4 ids (modality 0; id 1 starts a document), then
// one range of 8 ids per modality, named by `names`. Documents: <1>, then 2-4 segments of 3-12 tokens
// of random modalities.
std::string modality_file(const std::string& path, const std::vector<std::string>& names, Generator& gen) {
  toy::Vocab v;
  v.ranges.push_back({0, 4, 0, "special"});
  for (size_t m = 0; m < names.size(); ++m) {
    const int32_t begin = 4 + 8 * static_cast<int32_t>(m);
    v.ranges.push_back({begin, begin + 8, static_cast<int32_t>(m), names[m]});
  }
  v.size = v.ranges.back().end;
  std::vector<int32_t> tokens;
  while (tokens.size() < 6000) {
    tokens.push_back(1);
    for (uint64_t s = 0, n = 2 + gen.randint(3); s < n; ++s) {
      const int32_t begin = 4 + 8 * static_cast<int32_t>(gen.randint(names.size()));
      for (uint64_t i = 0, len = 3 + gen.randint(10); i < len; ++i)
        tokens.push_back(begin + static_cast<int32_t>(gen.randint(8)));
    }
  }
  toy::write_token_file(path, v, tokens);
  return path;
}

// The modalities are the data's, by name, from 1 to 8: experts, losses, logs, eval and compare.
TEST(Trainer, AnyNumberOfModalitiesFromTheData) {
  Generator gen(5);
  const std::vector<std::string> four = {"words", "pixels", "audio", "motion"};
  toy::TrainConfig c = tiny("four");
  std::filesystem::create_directories(c.out + "-data");
  c.data = modality_file(c.out + "-data/four.tok", four, gen);
  c.steps = 8;
  c.eval_every = 4;
  const toy::TrainResult r = toy::train(c);
  EXPECT_EQ(r.modalities, four);
  ASSERT_EQ(r.last_eval.by_modality.size(), 4u);
  for (double l : r.last_eval.by_modality) EXPECT_TRUE(std::isfinite(l));
  const nlohmann::json last = read_log(c.out).back();
  for (const std::string& name : four) EXPECT_TRUE(last.contains("loss_" + name)) << name;
  EXPECT_FALSE(last.contains("loss_text"));
  toy::LoadedModel m = toy::load_model(c.out);
  EXPECT_EQ(m.config.modalities, four);
  EXPECT_EQ(m.model->config().mixer.n_modalities, 4);
  EXPECT_TRUE(m.model->state_dict().count("layers.0.mixer.local_experts_in_proj.3.weight"));
  EXPECT_DOUBLE_EQ(toy::evaluate(*m.model, toy::eval_set(m.config)).total, r.last_eval.total);
  const std::vector<toy::EvalPoint> curve = toy::read_eval_curve(c.out, four);
  ASSERT_EQ(curve.back().loss.size(), 5u);
  EXPECT_DOUBLE_EQ(curve.back().loss[4], r.last_eval.by_modality[3]);
  EXPECT_EQ(toy::flops_to_match(curve, curve, four)[4].name, "motion");

  // One modality: MoM has one expert per projection, the FLOPs of dense.
  toy::TrainConfig one = tiny("one");
  std::filesystem::create_directories(one.out + "-data");
  one.data = modality_file(one.out + "-data/one.tok", {"tokens"}, gen);
  one.steps = 4;
  EXPECT_EQ(toy::train(one).modalities, std::vector<std::string>{"tokens"});
  one.modalities = {"tokens"};
  EXPECT_EQ(one.lm_config(20).mixer.n_modalities, 1);
  toy::TrainConfig dense = one;
  dense.model = "dense";
  EXPECT_EQ(toy::flops_per_token(one.lm_config(20)), toy::flops_per_token(dense.lm_config(20)));

  // Nine modalities, or two of one name: refused before anything is made, naming the file and the limit.
  toy::TrainConfig bad = tiny("nine");
  std::filesystem::create_directories(bad.out + "-data");
  bad.data = modality_file(bad.out + "-data/nine.tok", {"a", "b", "c", "d", "e", "f", "g", "h", "i"}, gen);
  test::expect_error([&] { toy::train(bad); }, "[train] " + bad.data + " declares 9 modalities; the trainer takes 1 to 8");
  bad.data = modality_file(bad.out + "-data/twice.tok", {"a", "a"}, gen);
  test::expect_error([&] { toy::train(bad); }, "[train] " + bad.data + ": modalities 0 and 1 are both named 'a'");
  EXPECT_FALSE(std::filesystem::exists(bad.out));
}

// Without --eval-data a token file holds out whole documents: every 20th of each modality mix (one of a
// mix of 1-19), none in both parts; evaluation reads them and training the others.
TEST(Trainer, TokenFileHoldsOutWholeDocuments) {
  Generator gen(6);
  toy::TrainConfig c = tiny("held_out");
  std::filesystem::create_directories(c.out + "-data");
  c.data = modality_file(c.out + "-data/data.tok", {"words", "pixels", "audio"}, gen);
  const toy::TokenFile file = toy::read_token_file(c.data);
  const toy::DocumentSplit s = toy::split_documents(file, 1, 97);
  EXPECT_EQ(s.train.size() + s.held_out.size(), file.tokens.size());
  auto documents = [](const std::vector<int32_t>& t) {
    std::vector<std::vector<int32_t>> docs;
    for (int32_t x : t) {
      if (x == 1) docs.emplace_back();
      docs.back().push_back(x);
    }
    return docs;
  };
  const auto all = documents(file.tokens), train = documents(s.train), held = documents(s.held_out);
  EXPECT_EQ(static_cast<int64_t>(all.size()), s.documents);
  EXPECT_EQ(static_cast<int64_t>(held.size()), s.held_out_documents);
  EXPECT_EQ(train.size() + held.size(), all.size());  // whole documents only
  EXPECT_GE(held.size(), all.size() / 25);
  EXPECT_LE(held.size(), all.size() / 15 + 7);  // 5%, and at most one more per mix of 2-19 documents
  // Every held-out document is in the file and the training part keeps the file's order of the others.
  size_t i = 0;
  for (const auto& d : all) {
    if (i < train.size() && d == train[i]) ++i;
  }
  EXPECT_EQ(i, train.size());
  // Evaluation reads the held-out tokens, in order.
  std::string what;
  const std::vector<toy::Batch> evals = toy::eval_set(c, &what);
  const std::vector<int64_t> first = evals[0].tokens.to_vector<int64_t>();
  for (size_t k = 0; k < first.size() / 2; ++k) ASSERT_EQ(first[k], s.held_out[k]) << k;
  EXPECT_NE(what.find("the held-out " + std::to_string(held.size()) + " of " + std::to_string(all.size()) +
                      " documents of " + c.data),
            std::string::npos)
      << what;
  // Every mix is evaluated: of three text documents the middle one, and the only one with pixels.
  toy::TokenFile small{file.vocab, {1, 4, 5, 1, 6, 1, 7, 1, 12, 13}};
  const toy::DocumentSplit mixes = toy::split_documents(small, 1, 1);
  EXPECT_EQ(mixes.held_out, (std::vector<int32_t>{1, 6, 1, 12, 13}));
  EXPECT_EQ(mixes.train, (std::vector<int32_t>{1, 4, 5, 1, 7}));
  // Without a document token: the file's tail.
  const toy::DocumentSplit tail = toy::split_documents(file, -1, 97);
  EXPECT_EQ(tail.held_out, std::vector<int32_t>(file.tokens.end() - 97, file.tokens.end()));
  // A held-out set larger than the held-out documents: refused, saying what to do.
  c.eval_batches = 20;
  c.seq_len = 256;
  test::expect_error([&] { toy::eval_set(c); }, "[train] the held-out " + std::to_string(held.size()));
}

TEST(Compare, FlopsToMatchInterpolatesBetweenEvaluations) {
  auto point = [](double f, double l) {
    toy::EvalPoint p;
    p.flops = f;
    p.loss = {l, l, l + 1, NAN};
    return p;
  };
  std::vector<toy::EvalPoint> b = {point(100, 3.0), point(200, 2.0)};
  std::vector<toy::EvalPoint> a = {point(50, 2.5), point(100, 1.5), point(200, 1.0)};
  const std::vector<std::string> names = {"text", "image", "speech"};
  auto rows = toy::flops_to_match(a, b, names);
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[0].name, "total");
  // A crosses 2.0 half way between 50 (2.5) and 100 (1.5): at 75 FLOPs, 37.5% of B's 200.
  EXPECT_NEAR(rows[0].flops_fraction, 0.375, 1e-12);
  EXPECT_NEAR(rows[2].flops_fraction, 0.375, 1e-12);  // image: same curves shifted by 1
  EXPECT_TRUE(std::isnan(rows[3].flops_fraction));    // speech: no values at all
  std::vector<toy::EvalPoint> never = {point(100, 5.0), point(200, 4.0)};
  EXPECT_TRUE(std::isnan(toy::flops_to_match(never, b, names)[0].flops_fraction));
}

}  // namespace
}  // namespace mom
