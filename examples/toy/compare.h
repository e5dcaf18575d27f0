// `mom compare RUN_A RUN_B`: how much of B's training compute A needs to match B.
//
// For each modality (and the total), with B's final eval loss as the bar: the training FLOPs at which
// A's eval loss first reaches the bar (linear interpolation between A's evaluations), as a fraction of
// B's training FLOPs at its final evaluation ("FLOPs to match", as the Mixture-of-Mamba paper reports
// it; below 1 means A gets there with less compute). Also writes an SVG plot of the eval-loss curves
// against training FLOPs, one panel per modality.
//
// For a run whose evaluations scored generation (log.jsonl's acc_<task>, examples/toy/accuracy.h), also
// the training FLOPs and seconds at which each run's first evaluation with at least kAccuracyBar of a
// task exact comes: the evaluation itself, not interpolated, since an accuracy is a count of scenes that
// may jump between evaluations.
#pragma once

#include <array>
#include <limits>
#include <string>
#include <vector>

#include "examples/toy/accuracy.h"

namespace mom::toy {

constexpr double kNotMeasured = std::numeric_limits<double>::quiet_NaN();

struct EvalPoint {
  double flops = 0;
  double time = 0;           // training seconds ("time")
  double tokens = 0;         // training tokens so far ("tokens")
  std::vector<double> loss;  // total, then per modality (NaN where absent)
  // The shares of generation exact (acc_<task>), in kTasks' order; NaN where absent.
  std::array<double, kNumTasks> accuracy{kNotMeasured, kNotMeasured, kNotMeasured, kNotMeasured};
};

// The run's evaluations, with the losses of the named modalities (the run's config's `modalities`).
// Throws [compare] for a bad run.
std::vector<EvalPoint> read_eval_curve(const std::string& run_dir, const std::vector<std::string>& modalities);

struct MatchRow {
  std::string name;           // "total", "text", ...
  double final_a = 0, final_b = 0;
  double flops_fraction = 0;  // NaN when A never reaches B's final loss
};

std::vector<MatchRow> flops_to_match(const std::vector<EvalPoint>& a, const std::vector<EvalPoint>& b,
                                     const std::vector<std::string>& modalities);
std::string format_match_table(const std::vector<MatchRow>& rows, const std::string& name_a, const std::string& name_b);

constexpr double kAccuracyBar = 0.9;

struct AccuracyRow {
  Task task;
  // Of each run: whether its log has this task's accuracy at all, and the FLOPs and seconds of its first
  // evaluation at or above the bar (NaN: not reached).
  bool measured_a = false, measured_b = false;
  double flops_a = kNotMeasured, time_a = kNotMeasured, flops_b = kNotMeasured, time_b = kNotMeasured;
};
std::vector<AccuracyRow> flops_to_accuracy(const std::vector<EvalPoint>& a, const std::vector<EvalPoint>& b,
                                           double bar = kAccuracyBar);
// The table of the rows: "not reached", or FLOPs and seconds, and A's FLOPs over B's where both reach
// the bar; a run that measured no accuracy has empty cells. Empty when neither run measured any.
std::string format_accuracy_table(const std::vector<AccuracyRow>& rows, const std::string& name_a,
                                  const std::string& name_b, double bar = kAccuracyBar);
// An SVG of eval loss against training FLOPs, one panel per series (total, then each modality), one line
// per curve in its own colour, with the band between `low` and `high` shaded where they are given (a
// sweep's spread over seeds).
struct LossCurve {
  std::string name;
  std::vector<EvalPoint> points;
  std::vector<EvalPoint> low, high;  // empty, or as many points as `points`
};
void write_loss_svg(const std::string& path, const std::vector<LossCurve>& curves,
                    const std::vector<std::string>& modalities);

}  // namespace mom::toy
