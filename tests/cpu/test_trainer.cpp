// The trainer end to end on tiny configs: the loss falls, resume continues bit-exactly, bad
// configurations are refused, and compare's FLOPs-to-match.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "examples/toy/compare.h"
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
  for (int m = 0; m < toy::kNumModalities; ++m) EXPECT_TRUE(std::isfinite(r.last_eval.by_modality[m]));
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

TEST(Compare, FlopsToMatchInterpolatesBetweenEvaluations) {
  auto point = [](double f, double l) {
    toy::EvalPoint p;
    p.flops = f;
    p.loss = {l, l, l + 1, NAN};
    return p;
  };
  std::vector<toy::EvalPoint> b = {point(100, 3.0), point(200, 2.0)};
  std::vector<toy::EvalPoint> a = {point(50, 2.5), point(100, 1.5), point(200, 1.0)};
  auto rows = toy::flops_to_match(a, b);
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[0].name, "total");
  // A crosses 2.0 half way between 50 (2.5) and 100 (1.5): at 75 FLOPs, 37.5% of B's 200.
  EXPECT_NEAR(rows[0].flops_fraction, 0.375, 1e-12);
  EXPECT_NEAR(rows[2].flops_fraction, 0.375, 1e-12);  // image: same curves shifted by 1
  EXPECT_TRUE(std::isnan(rows[3].flops_fraction));    // speech: no values at all
  std::vector<toy::EvalPoint> never = {point(100, 5.0), point(200, 4.0)};
  EXPECT_TRUE(std::isnan(toy::flops_to_match(never, b)[0].flops_fraction));
}

}  // namespace
}  // namespace mom
