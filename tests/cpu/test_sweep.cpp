// `mom sweep`'s parts: the spread over seeds, the variants and their run configs, the done check, the
// report read from run directories, and a whole sweep of tiny runs through the trainer.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "examples/toy/sweep.h"
#include "tests/support.h"

namespace mom::toy {
namespace {

using json = nlohmann::json;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

TEST(Sweep, SpreadIsTheMeanAndSampleStdOfTheFiniteValues) {
  const Spread a = spread({1.0, 2.0, 3.0, kNaN});
  EXPECT_EQ(a.count, 3);
  EXPECT_DOUBLE_EQ(a.mean, 2.0);
  EXPECT_DOUBLE_EQ(a.std, 1.0);
  const Spread one = spread({5.0});
  EXPECT_EQ(one.count, 1);
  EXPECT_DOUBLE_EQ(one.mean, 5.0);
  EXPECT_TRUE(std::isnan(one.std));
  EXPECT_EQ(spread({}).count, 0);
  EXPECT_EQ(spread({kNaN}).count, 0);
}

TEST(Sweep, VariantsKeepTheirOrderAlwaysIncludeDenseAndSetTheSplits) {
  const std::vector<SweepVariant> v = select_variants({"out_proj", "mom"});
  ASSERT_EQ(v.size(), 3u);
  EXPECT_EQ(v[0].name, "dense");
  EXPECT_EQ(v[1].name, "mom");
  EXPECT_EQ(v[2].name, "out_proj");
  test::expect_error([] { select_variants({"router"}); }, "[sweep] unknown variant 'router'");
  test::expect_error([] { select_variants({"mom", "mom"}); }, "[sweep] variant 'mom' is named twice");

  TrainConfig base;
  base.lr = 1e-3;
  const TrainConfig x = sweep_run_config(base, select_variants({"x_proj"})[1], 7, "/o");
  EXPECT_EQ(x.model, "mom");
  EXPECT_EQ(x.split_in_proj, 0);
  EXPECT_EQ(x.split_x_proj, 1);
  EXPECT_EQ(x.split_dt_proj, 0);
  EXPECT_EQ(x.split_out_proj, 0);
  EXPECT_EQ(x.seed, 7u);
  EXPECT_EQ(x.lr, 1e-3);
  EXPECT_EQ(x.out, (std::filesystem::path("/o") / "x_proj" / "seed-7").string());
  const TrainConfig d = sweep_run_config(base, sweep_variants()[0], 7, "/o");
  EXPECT_EQ(d.model, "dense");
  EXPECT_EQ(d.split_in_proj + d.split_x_proj + d.split_dt_proj + d.split_out_proj, 0);
}

// A run's log: eval records of (step, flops, time, loss), the same loss for every modality; the last
// one also with its tokens and, when given (not NaN), the decoding speed, after a train line with the
// peak memory.
void write_log(const std::string& dir, const std::vector<std::array<double, 4>>& evals, double tokens,
               double peak_mib = kNaN, double decode_ms = kNaN) {
  std::filesystem::create_directories(dir);
  std::ofstream out(dir + "/log.jsonl");
  out << R"({"kind": "train", "step": 1, "flops": 5.0, "loss": 4.0, "peak_memory_mib": 1.0})" << "\n";
  for (size_t i = 0; i < evals.size(); ++i) {
    const auto& [step, flops, time, loss] = evals[i];
    json e = {{"kind", "eval"},    {"step", step},      {"flops", flops},      {"time", time},
              {"loss", loss},      {"loss_text", loss}, {"loss_image", loss}, {"loss_speech", loss}};
    if (i + 1 == evals.size()) {
      e["tokens"] = tokens;
      if (!std::isnan(decode_ms)) e["decode_ms_per_token"] = decode_ms;
      if (!std::isnan(peak_mib)) out << json{{"kind", "train"}, {"step", step}, {"peak_memory_mib", peak_mib}}.dump() << "\n";
    }
    out << e.dump() << "\n";
  }
}

TEST(Sweep, ReportAveragesTheSeedsAndMatchesEachAgainstDenseOnItsSeed) {
  const std::string out = test::scratch_path("sweep");
  std::filesystem::remove_all(out);
  write_log(sweep_run_dir(out, "dense", 1), {{1, 1e9, 10, 2.0}, {2, 2e9, 20, 1.0}}, 1000);
  write_log(sweep_run_dir(out, "dense", 2), {{1, 1e9, 10, 2.0}, {2, 2e9, 20, 1.2}}, 1000);
  write_log(sweep_run_dir(out, "mom", 1), {{1, 1e9, 15, 1.5}, {2, 2e9, 30, 0.5}}, 3000, 100, 0.25);
  write_log(sweep_run_dir(out, "mom", 2), {{1, 1e9, 15, 1.5}, {2, 2e9, 30, 0.7}}, 6000, 120, 0.35);
  EXPECT_TRUE(sweep_run_done(sweep_run_dir(out, "mom", 1), 2));
  EXPECT_FALSE(sweep_run_done(sweep_run_dir(out, "mom", 1), 3));
  EXPECT_FALSE(sweep_run_done(sweep_run_dir(out, "x_proj", 1), 2));

  const std::vector<std::string> modalities = {"text", "image", "speech"};
  const std::vector<VariantReport> rows = sweep_report(out, select_variants({"mom"}), {1, 2}, modalities);
  ASSERT_EQ(rows.size(), 2u);
  const VariantReport& dense = rows[0];
  const VariantReport& mom = rows[1];
  EXPECT_EQ(dense.name, "dense");
  EXPECT_NEAR(dense.final_loss[0].mean, 1.1, 1e-12);
  EXPECT_NEAR(dense.flops_to_match[0].mean, 1.0, 1e-12);  // dense reaches its own final loss at its end
  ASSERT_EQ(mom.final_loss.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_NEAR(mom.final_loss[i].mean, 0.6, 1e-12);
    EXPECT_NEAR(mom.final_loss[i].std, std::sqrt(0.02), 1e-12);
    // Seed 1 reaches 1.0 halfway between its evaluations (1.5e9 of dense's 2e9), seed 2 reaches 1.2
    // three eighths of the way (1.375e9).
    EXPECT_EQ(mom.flops_to_match[i].count, 2);
    EXPECT_NEAR(mom.flops_to_match[i].mean, (0.75 + 0.6875) / 2, 1e-12);
    EXPECT_NEAR(mom.flops_to_match[i].std, 0.0625 / std::sqrt(2.0), 1e-12);
    // In seconds: 22.5 and 20.625 of dense's 20.
    EXPECT_NEAR(mom.time_to_match[i].mean, (1.125 + 1.03125) / 2, 1e-12);
  }
  EXPECT_NEAR(mom.tokens_per_second[0].mean, 150.0, 1e-9);
  EXPECT_NEAR(mom.peak_memory_mib.mean, 110.0, 1e-9);  // the last train line's, not the first's
  EXPECT_NEAR(mom.decode_ms.mean, 0.3, 1e-12);
  EXPECT_EQ(dense.peak_memory_mib.count, 2);  // its only train line says 1 MiB
  EXPECT_EQ(dense.decode_ms.count, 0);        // no decode line
  for (const Spread& a : mom.accuracy) EXPECT_EQ(a.count, 0);

  const std::string md = format_sweep_report(rows, modalities);
  EXPECT_NE(md.find("| mom | 0.6000 +- 0.1414 | 0.6000 +- 0.1414 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| mom | 0.72 +- 0.04 (2/2) |"), std::string::npos) << md;
  EXPECT_NE(md.find("| mom | 150 +- 71 | 110 +- 14 | 0.300 +- 0.071 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| dense | 50 +- 0 | 1 +- 0 | - |"), std::string::npos) << md;

  // The plot: per variant the mean curve and the band of its seeds.
  const std::vector<LossCurve> curves = sweep_curves(out, select_variants({"mom"}), {1, 2}, modalities);
  ASSERT_EQ(curves.size(), 2u);
  ASSERT_EQ(curves[1].points.size(), 2u);
  EXPECT_NEAR(curves[1].points[1].loss[2], 0.6, 1e-12);
  EXPECT_NEAR(curves[1].low[1].loss[2], 0.5, 1e-12);
  EXPECT_NEAR(curves[1].high[1].loss[2], 0.7, 1e-12);
  const std::string svg = out + "/report.svg";
  write_loss_svg(svg, curves, modalities);
  std::ifstream in(svg);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t bands = 0;
  for (size_t at = text.find("<polygon"); at != std::string::npos; at = text.find("<polygon", at + 1)) ++bands;
  EXPECT_EQ(bands, 2u * 4u);  // two variants, four panels
  EXPECT_NE(text.find(">mom</text>"), std::string::npos);
  EXPECT_EQ(md.find("caption -> image"), std::string::npos) << md;  // no accuracies measured

  // A run that never reaches dense's final loss is counted apart.
  write_log(sweep_run_dir(out, "mom", 2), {{1, 1e9, 15, 1.5}, {2, 2e9, 30, 1.3}}, 6000);
  const VariantReport late = sweep_report(out, select_variants({"mom"}), {1, 2}, modalities)[1];
  EXPECT_EQ(late.flops_to_match[0].count, 1);
  EXPECT_NEAR(late.flops_to_match[0].mean, 0.75, 1e-12);
  test::expect_error([&] { sweep_report(out, select_variants({"x_proj"}), {1, 2}, modalities); }, "[compare] cannot read");
}

TEST(Sweep, ARunOfAnotherConfigIsNamedAndTinyRunsTrainEndToEnd) {
  const std::string out = test::scratch_path("sweep_runs");
  std::filesystem::remove_all(out);
  TrainConfig base;
  base.n_layers = 1;
  base.d_model = 16;
  base.batch = 2;
  base.seq_len = 32;
  base.steps = 4;
  base.warmup = 1;
  base.eval_every = 2;
  base.eval_batches = 1;
  base.ckpt_every = 4;
  base.accuracy_docs = 0;
  base.device = "cpu";
  base.quiet = true;
  const std::vector<SweepVariant> variants = select_variants({"dt_proj"});
  for (uint64_t seed : {1, 2})
    for (const SweepVariant& v : variants) {
      const TrainConfig c = sweep_run_config(base, v, seed, out);
      EXPECT_EQ(sweep_run_mismatch(c), "");
      train(c);
      EXPECT_TRUE(sweep_run_done(c.out, c.steps));
      EXPECT_EQ(sweep_run_mismatch(c), "");
    }
  TrainConfig other = sweep_run_config(base, variants[1], 1, out);
  other.lr = 1e-4;
  EXPECT_EQ(sweep_run_mismatch(other), "lr");
  other = sweep_run_config(base, variants[1], 1, out);
  other.device = "cuda";
  other.log_every = 3;
  EXPECT_EQ(sweep_run_mismatch(other), "");

  const std::vector<VariantReport> rows = sweep_report(out, variants, {1, 2}, {"text", "image", "speech"});
  ASSERT_EQ(rows.size(), 2u);
  for (const VariantReport& r : rows) {
    EXPECT_EQ(r.seeds, 2);
    for (const Spread& s : r.final_loss) {
      EXPECT_EQ(s.count, 2);
      EXPECT_GT(s.mean, 0.0);
      EXPECT_GT(s.std, 0.0);  // two seeds, two different runs
    }
    EXPECT_GT(r.tokens_per_second[0].mean, 0.0);
    EXPECT_EQ(r.decode_ms.count, 2);  // the trainer logs the trained model's decoding speed
    EXPECT_GT(r.decode_ms.mean, 0.0);
    EXPECT_EQ(r.peak_memory_mib.count, 0);  // the CPU keeps no count
  }
}

}  // namespace
}  // namespace mom::toy
