#include "examples/toy/compare.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace mom::toy {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Series 0 is the total, series i > 0 modality i - 1.
std::string series_name(size_t i, const std::vector<std::string>& modalities) {
  return i == 0 ? "total" : modalities[i - 1];
}

std::string key_of(size_t i, const std::vector<std::string>& modalities) {
  return i == 0 ? "loss" : "loss_" + modalities[i - 1];
}

}  // namespace

std::vector<EvalPoint> read_eval_curve(const std::string& run_dir, const std::vector<std::string>& modalities) {
  std::string path = (std::filesystem::path(run_dir) / "log.jsonl").string();
  std::ifstream in(path);
  MOM_CHECK(in.good(), "compare", "cannot read " << path << " (is " << run_dir << " a run directory of mom train?)");
  std::vector<EvalPoint> out;
  std::string line;
  int64_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty()) continue;
    auto r = nlohmann::json::parse(line, nullptr, false);
    MOM_CHECK(!r.is_discarded() && r.is_object(), "compare", path << ": line " << n << " is not a JSON object");
    if (r.value("kind", "") != "eval") continue;
    EvalPoint p;
    p.flops = r.value("flops", 0.0);
    p.time = r.value("time", 0.0);
    p.tokens = r.value("tokens", 0.0);
    for (size_t k = 0; k < kTasks.size(); ++k) {
      const std::string key = std::string("acc_") + task_key(kTasks[k]);
      p.accuracy[k] = r.contains(key) && r[key].is_number() ? r[key].get<double>() : kNaN;
    }
    for (size_t i = 0; i <= modalities.size(); ++i) {
      const std::string key = key_of(i, modalities);
      p.loss.push_back(r.contains(key) && r[key].is_number() ? r[key].get<double>() : kNaN);
    }
    out.push_back(p);
  }
  MOM_CHECK(!out.empty(), "compare", path << " has no evaluation yet");
  return out;
}

std::vector<MatchRow> flops_to_match(const std::vector<EvalPoint>& a, const std::vector<EvalPoint>& b,
                                     const std::vector<std::string>& modalities) {
  std::vector<MatchRow> rows;
  for (size_t i = 0; i <= modalities.size(); ++i) {
    MatchRow r{series_name(i, modalities), a.back().loss[i], b.back().loss[i], kNaN};
    double bar = r.final_b;
    if (std::isfinite(bar)) {
      double prev_f = 0, prev_l = kNaN;
      for (const EvalPoint& p : a) {
        double l = p.loss[i];
        if (std::isfinite(l) && l <= bar) {
          double f = p.flops;
          if (std::isfinite(prev_l) && prev_l > bar) f = prev_f + (p.flops - prev_f) * (prev_l - bar) / (prev_l - l);
          r.flops_fraction = f / b.back().flops;
          break;
        }
        prev_f = p.flops;
        prev_l = l;
      }
    }
    rows.push_back(r);
  }
  return rows;
}

std::string format_match_table(const std::vector<MatchRow>& rows, const std::string& name_a, const std::string& name_b) {
  std::string out;
  char line[256];
  std::snprintf(line, sizeof line, "%-8s %14s %14s   %s\n", "", ("final " + name_a).c_str(), ("final " + name_b).c_str(),
                ("FLOPs for " + name_a + " to reach " + name_b + "'s final loss").c_str());
  out += line;
  for (const MatchRow& r : rows) {
    std::string frac = std::isfinite(r.flops_fraction) ? std::to_string(static_cast<int>(std::round(100 * r.flops_fraction))) + "% of " + name_b + "'s"
                                                       : "not reached";
    std::snprintf(line, sizeof line, "%-8s %14.4f %14.4f   %s\n", r.name.c_str(), r.final_a, r.final_b, frac.c_str());
    out += line;
  }
  return out;
}

std::vector<AccuracyRow> flops_to_accuracy(const std::vector<EvalPoint>& a, const std::vector<EvalPoint>& b,
                                           double bar) {
  // Whether the run measured the task, and where it first reached the bar.
  auto first = [bar](const std::vector<EvalPoint>& run, size_t k, bool& measured, double& flops, double& time) {
    measured = false;
    flops = time = kNaN;
    for (const EvalPoint& p : run) {
      if (std::isnan(p.accuracy[k])) continue;
      measured = true;
      if (p.accuracy[k] >= bar) {
        flops = p.flops;
        time = p.time;
        return;
      }
    }
  };
  std::vector<AccuracyRow> rows;
  for (size_t k = 0; k < kTasks.size(); ++k) {
    AccuracyRow r{kTasks[k]};
    first(a, k, r.measured_a, r.flops_a, r.time_a);
    first(b, k, r.measured_b, r.flops_b, r.time_b);
    rows.push_back(r);
  }
  return rows;
}

std::string format_accuracy_table(const std::vector<AccuracyRow>& rows, const std::string& name_a,
                                  const std::string& name_b, double bar) {
  if (std::none_of(rows.begin(), rows.end(), [](const AccuracyRow& r) { return r.measured_a || r.measured_b; }))
    return "";
  auto cell = [](bool measured, double flops, double time) -> std::string {
    if (!measured) return "";
    if (std::isnan(flops)) return "not reached";
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.3g (%.0f s)", flops, time);
    return buf;
  };
  const std::string ratio_head = name_a + " / " + name_b;
  std::string out;
  char line[256];
  std::snprintf(line, sizeof line, "greedy generation on held-out scenes: training FLOPs (seconds) at the first eval "
                "with %.0f%% exact\n", 100 * bar);
  out += line;
  std::snprintf(line, sizeof line, "%-18s %-22s %-22s %s\n", "", name_a.c_str(), name_b.c_str(), ratio_head.c_str());
  out += line;
  for (const AccuracyRow& r : rows) {
    std::string ratio;
    if (!std::isnan(r.flops_a) && !std::isnan(r.flops_b)) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.2f", r.flops_a / r.flops_b);
      ratio = buf;
    }
    std::snprintf(line, sizeof line, "%-18s %-22s %-22s %s", task_name(r.task),
                  cell(r.measured_a, r.flops_a, r.time_a).c_str(), cell(r.measured_b, r.flops_b, r.time_b).c_str(),
                  ratio.c_str());
    std::string text = line;
    text.erase(text.find_last_not_of(' ') + 1);
    out += text + "\n";
  }
  return out;
}

void write_loss_svg(const std::string& path, const std::vector<LossCurve>& curves,
                    const std::vector<std::string>& modalities) {
  MOM_CHECK(!curves.empty(), "compare", "no curve to plot in " << path);
  const int panels = static_cast<int>(modalities.size()) + 1, pw = 320, ph = 240, margin = 50;
  std::ofstream out(path);
  MOM_CHECK(out.good(), "compare", "cannot write " << path);
  out << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << panels * pw << "\" height=\"" << ph + 30
      << "\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  static const char* colours[] = {"#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"};
  auto colour = [&](size_t c) { return colours[c % (sizeof colours / sizeof colours[0])]; };
  double max_f = 0;
  for (const LossCurve& c : curves)
    if (!c.points.empty()) max_f = std::max(max_f, c.points.back().flops);
  for (int i = 0; i < panels; ++i) {
    double lo = INFINITY, hi = -INFINITY;
    for (const LossCurve& c : curves)
      for (const auto* run : {&c.points, &c.low, &c.high})
        for (const EvalPoint& p : *run)
          if (std::isfinite(p.loss[i])) lo = std::min(lo, p.loss[i]), hi = std::max(hi, p.loss[i]);
    if (!std::isfinite(lo)) continue;
    if (hi - lo < 1e-9) hi = lo + 1;
    int x0 = i * pw + margin, y0 = 20, w = pw - margin - 10, h = ph - 50;
    auto px = [&](double f) { return x0 + w * f / max_f; };
    auto py = [&](double l) { return y0 + h * (hi - l) / (hi - lo); };
    out << "<rect x=\"" << x0 << "\" y=\"" << y0 << "\" width=\"" << w << "\" height=\"" << h
        << "\" fill=\"none\" stroke=\"#888\"/>\n<text x=\"" << x0 + w / 2 << "\" y=\"14\" text-anchor=\"middle\">"
        << series_name(i, modalities) << " eval loss</text>\n";
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.3f", hi);
    out << "<text x=\"" << x0 - 4 << "\" y=\"" << y0 + 10 << "\" text-anchor=\"end\">" << buf << "</text>\n";
    std::snprintf(buf, sizeof buf, "%.3f", lo);
    out << "<text x=\"" << x0 - 4 << "\" y=\"" << y0 + h << "\" text-anchor=\"end\">" << buf << "</text>\n";
    std::snprintf(buf, sizeof buf, "%.2g FLOPs", max_f);
    out << "<text x=\"" << x0 + w << "\" y=\"" << y0 + h + 14 << "\" text-anchor=\"end\">" << buf << "</text>\n";
    for (size_t c = 0; c < curves.size(); ++c) {
      const LossCurve& curve = curves[c];
      if (!curve.low.empty() && curve.low.size() == curve.high.size()) {  // the band: along high, back along low
        out << "<polygon fill=\"" << colour(c) << "\" fill-opacity=\"0.15\" stroke=\"none\" points=\"";
        for (const EvalPoint& p : curve.high)
          if (std::isfinite(p.loss[i])) out << px(p.flops) << "," << py(p.loss[i]) << " ";
        for (auto it = curve.low.rbegin(); it != curve.low.rend(); ++it)
          if (std::isfinite(it->loss[i])) out << px(it->flops) << "," << py(it->loss[i]) << " ";
        out << "\"/>\n";
      }
      out << "<polyline fill=\"none\" stroke-width=\"2\" stroke=\"" << colour(c) << "\" points=\"";
      for (const EvalPoint& p : curve.points)
        if (std::isfinite(p.loss[i])) out << px(p.flops) << "," << py(p.loss[i]) << " ";
      out << "\"/>\n";
    }
  }
  for (size_t c = 0; c < curves.size(); ++c)
    out << "<text x=\"" << 10 + 110 * c << "\" y=\"" << ph + 20 << "\" fill=\"" << colour(c) << "\">" << curves[c].name
        << "</text>";
  out << "\n</svg>\n";
}

}  // namespace mom::toy
