#include "examples/toy/sweep.h"

#include <algorithm>
#include <cstdint>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "examples/toy/compare.h"

namespace mom::toy {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// "0.5523 +- 0.0021", "0.5523" with one value, "-" with none.
std::string format_spread(const Spread& s, const char* format = "%.4f") {
  if (s.count == 0) return "-";
  char a[64], b[64];
  std::snprintf(a, sizeof a, format, s.mean);
  if (s.count < 2) return a;
  std::snprintf(b, sizeof b, format, s.std);
  return std::string(a) + " +- " + b;
}

// The curve with each evaluation's training seconds in place of its FLOPs: flops_to_match on two such
// curves gives the share of seconds.
std::vector<EvalPoint> by_time(std::vector<EvalPoint> curve) {
  for (EvalPoint& p : curve) p.flops = p.time;
  return curve;
}

// The value of `key` in the run log's last line of kind `kind`, NaN when there is none.
double last_logged(const std::string& run_dir, const std::string& kind, const std::string& key) {
  std::ifstream in((std::filesystem::path(run_dir) / "log.jsonl").string());
  double v = kNaN;
  std::string line;
  while (std::getline(in, line)) {
    auto r = nlohmann::json::parse(line, nullptr, false);
    if (!r.is_discarded() && r.is_object() && r.value("kind", "") == kind && r.contains(key) && r[key].is_number())
      v = r[key].get<double>();
  }
  return v;
}

}  // namespace

const std::vector<SweepVariant>& sweep_variants() {
  static const std::vector<SweepVariant> all = {
      {"dense", 0, 0, 0, 0},  {"mom", 1, 1, 1, 1},      {"in_proj", 1, 0, 0, 0},        {"x_proj", 0, 1, 0, 0},
      {"dt_proj", 0, 0, 1, 0}, {"out_proj", 0, 0, 0, 1}, {"learned", 1, 1, 1, 1, true},
  };
  return all;
}

std::vector<SweepVariant> select_variants(const std::vector<std::string>& names) {
  std::vector<SweepVariant> out;
  for (const std::string& n : names) {
    const auto& all = sweep_variants();
    const bool known = std::any_of(all.begin(), all.end(), [&](const SweepVariant& v) { return v.name == n; });
    MOM_CHECK(known, "sweep", "unknown variant '" << n << "' (dense, mom, in_proj, x_proj, dt_proj, out_proj, learned)");
    MOM_CHECK(std::count(names.begin(), names.end(), n) == 1, "sweep", "variant '" << n << "' is named twice");
  }
  for (const SweepVariant& v : sweep_variants())
    if (v.name == "dense" || std::find(names.begin(), names.end(), v.name) != names.end()) out.push_back(v);
  return out;
}

std::string sweep_run_dir(const std::string& out, const std::string& variant, uint64_t seed) {
  return (std::filesystem::path(out) / variant / ("seed-" + std::to_string(seed))).string();
}

TrainConfig sweep_run_config(const TrainConfig& base, const SweepVariant& v, uint64_t seed, const std::string& out) {
  TrainConfig c = base;
  c.model = v.learned ? "learned" : v.split_in_proj + v.split_x_proj + v.split_dt_proj + v.split_out_proj == 0 ? "dense" : "mom";
  c.split_in_proj = v.split_in_proj;
  c.split_x_proj = v.split_x_proj;
  c.split_dt_proj = v.split_dt_proj;
  c.split_out_proj = v.split_out_proj;
  c.seed = seed;
  c.out = sweep_run_dir(out, v.name, seed);
  return c;
}

bool sweep_run_done(const std::string& run_dir, int64_t steps) {
  std::ifstream in((std::filesystem::path(run_dir) / "log.jsonl").string());
  if (!in.good()) return false;
  std::string line;
  while (std::getline(in, line)) {
    auto r = nlohmann::json::parse(line, nullptr, false);
    if (!r.is_discarded() && r.is_object() && r.value("kind", "") == "eval" && r.value("step", int64_t(-1)) == steps)
      return true;
  }
  return false;
}

TrainConfig read_run_config(const std::string& run_dir) {
  const std::string path = (std::filesystem::path(run_dir) / "config.json").string();
  std::ifstream in(path);
  MOM_CHECK(in.good(), "sweep", "cannot read " << path);
  std::stringstream text;
  text << in.rdbuf();
  try {
    return TrainConfig::from_json(text.str());
  } catch (const Error& e) {
    MOM_THROW("sweep", path << ": " << e.what());
  }
}

std::string sweep_run_mismatch(const TrainConfig& c) {
  if (!std::filesystem::exists(std::filesystem::path(c.out) / "config.json")) return "";
  const nlohmann::json have = nlohmann::json::parse(read_run_config(c.out).to_json());
  const nlohmann::json want = nlohmann::json::parse(c.to_json());
  for (auto it = want.begin(); it != want.end(); ++it) {
    const std::string& k = it.key();
    if (k == "device" || k == "log_every" || k == "ckpt_every" || k == "modalities") continue;
    if (!have.contains(k) || have[k] != it.value()) return k;
  }
  return "";
}

Spread spread(const std::vector<double>& values) {
  Spread s;
  double sum = 0;
  for (double v : values)
    if (std::isfinite(v)) sum += v, ++s.count;
  if (s.count == 0) return {kNaN, kNaN, 0};
  s.mean = sum / s.count;
  if (s.count < 2) {
    s.std = kNaN;
    return s;
  }
  double sq = 0;
  for (double v : values)
    if (std::isfinite(v)) sq += (v - s.mean) * (v - s.mean);
  s.std = std::sqrt(sq / (s.count - 1));
  return s;
}

std::vector<VariantReport> sweep_report(const std::string& out, const std::vector<SweepVariant>& variants,
                                        const std::vector<uint64_t>& seeds, const std::vector<std::string>& modalities) {
  MOM_CHECK(!seeds.empty(), "sweep", "no seeds");
  const size_t S = modalities.size() + 1;  // total, then each modality
  std::vector<std::vector<EvalPoint>> dense;
  for (uint64_t seed : seeds) dense.push_back(read_eval_curve(sweep_run_dir(out, "dense", seed), modalities));
  std::vector<VariantReport> rows;
  for (const SweepVariant& v : variants) {
    std::vector<std::vector<double>> loss(S), flops(S), time(S), acc(kNumTasks);
    std::vector<double> rate, memory, decode;
    for (size_t k = 0; k < seeds.size(); ++k) {
      const std::string dir = sweep_run_dir(out, v.name, seeds[k]);
      const std::vector<EvalPoint> curve = read_eval_curve(dir, modalities);
      memory.push_back(last_logged(dir, "train", "peak_memory_mib"));
      decode.push_back(last_logged(dir, "eval", "decode_ms_per_token"));
      const std::vector<MatchRow> f = flops_to_match(curve, dense[k], modalities);
      const std::vector<MatchRow> t = flops_to_match(by_time(curve), by_time(dense[k]), modalities);
      for (size_t i = 0; i < S; ++i) {
        loss[i].push_back(curve.back().loss[i]);
        flops[i].push_back(f[i].flops_fraction);
        time[i].push_back(t[i].flops_fraction);
      }
      rate.push_back(curve.back().time > 0 ? curve.back().tokens / curve.back().time : kNaN);
      for (size_t j = 0; j < kNumTasks; ++j) acc[j].push_back(curve.back().accuracy[j]);
    }
    VariantReport r;
    r.name = v.name;
    r.seeds = static_cast<int>(seeds.size());
    for (size_t i = 0; i < S; ++i) {
      r.final_loss.push_back(spread(loss[i]));
      r.flops_to_match.push_back(spread(flops[i]));
      r.time_to_match.push_back(spread(time[i]));
    }
    r.tokens_per_second.push_back(spread(rate));
    r.peak_memory_mib = spread(memory);
    r.decode_ms = spread(decode);
    for (size_t j = 0; j < kNumTasks; ++j) r.accuracy.push_back(spread(acc[j]));
    rows.push_back(r);
  }
  return rows;
}

std::string format_sweep_report(const std::vector<VariantReport>& rows, const std::vector<std::string>& modalities) {
  std::ostringstream o;
  std::vector<std::string> series = {"total"};
  series.insert(series.end(), modalities.begin(), modalities.end());
  auto header = [&](const std::string& first) {
    o << "| " << first << " |";
    for (const std::string& s : series) o << " " << s << " |";
    o << "\n|---|";
    for (size_t i = 0; i < series.size(); ++i) o << "---|";
    o << "\n";
  };
  const int seeds = rows.empty() ? 0 : rows.front().seeds;
  o << "Final eval loss (nats per token), mean +- std over " << seeds << " seed" << (seeds == 1 ? "" : "s") << ":\n\n";
  header("variant");
  for (const VariantReport& r : rows) {
    o << "| " << r.name << " |";
    for (const Spread& s : r.final_loss) o << " " << format_spread(s) << " |";
    o << "\n";
  }
  for (int pass = 0; pass < 2; ++pass) {
    o << "\nShare of dense's training " << (pass == 0 ? "FLOPs" : "seconds")
      << " at which the variant first reaches dense's final eval loss (same seed; below 1: it gets there "
         "sooner), mean +- std over the seeds that reach it (reached/seeds):\n\n";
    header("variant");
    for (const VariantReport& r : rows) {
      if (r.name == "dense") continue;
      o << "| " << r.name << " |";
      for (const Spread& s : pass == 0 ? r.flops_to_match : r.time_to_match)
        o << " " << format_spread(s, "%.2f") << " (" << s.count << "/" << r.seeds << ") |";
      o << "\n";
    }
  }
  const bool any_accuracy = std::any_of(rows.begin(), rows.end(), [](const VariantReport& r) {
    return std::any_of(r.accuracy.begin(), r.accuracy.end(), [](const Spread& s) { return s.count > 0; });
  });
  o << "\nTraining speed, peak device memory (CUDA runs), decoding ms per token (nn::Decoder, one row)"
    << (any_accuracy ? " and the final evaluation's generation accuracies (share exact)" : "")
    << ":\n\n| variant | tokens/s | peak MiB | decode ms |";
  if (any_accuracy)
    for (Task t : kTasks) o << " " << task_name(t) << " |";
  o << "\n|---|---|---|---|";
  if (any_accuracy)
    for (size_t j = 0; j < kNumTasks; ++j) o << "---|";
  o << "\n";
  for (const VariantReport& r : rows) {
    o << "| " << r.name << " | " << format_spread(r.tokens_per_second[0], "%.0f") << " | "
      << format_spread(r.peak_memory_mib, "%.0f") << " | " << format_spread(r.decode_ms, "%.3f") << " |";
    if (any_accuracy)
      for (const Spread& s : r.accuracy) o << " " << format_spread(s, "%.3f") << " |";
    o << "\n";
  }
  return o.str();
}

std::vector<LossCurve> sweep_curves(const std::string& out, const std::vector<SweepVariant>& variants,
                                    const std::vector<uint64_t>& seeds, const std::vector<std::string>& modalities) {
  std::vector<LossCurve> curves;
  for (const SweepVariant& v : variants) {
    std::vector<std::vector<EvalPoint>> runs;
    size_t n = SIZE_MAX;
    for (uint64_t seed : seeds) {
      runs.push_back(read_eval_curve(sweep_run_dir(out, v.name, seed), modalities));
      n = std::min(n, runs.back().size());
    }
    LossCurve c;
    c.name = v.name;
    for (size_t j = 0; j < n; ++j) {
      EvalPoint mean = runs[0][j], low = mean, high = mean;
      for (size_t i = 0; i < mean.loss.size(); ++i) {
        std::vector<double> at;
        for (const auto& run : runs) at.push_back(run[j].loss[i]);
        mean.loss[i] = spread(at).mean;
        low.loss[i] = *std::min_element(at.begin(), at.end());
        high.loss[i] = *std::max_element(at.begin(), at.end());
      }
      c.points.push_back(mean);
      c.low.push_back(low);
      c.high.push_back(high);
    }
    curves.push_back(std::move(c));
  }
  return curves;
}

}  // namespace mom::toy
