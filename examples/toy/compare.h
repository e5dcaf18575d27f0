// `mom compare RUN_A RUN_B`: how much of B's training compute A needs to match B.
//
// For each modality (and the total), with B's final eval loss as the bar: the training FLOPs at which
// A's eval loss first reaches the bar (linear interpolation between A's evaluations), as a fraction of
// B's training FLOPs at its final evaluation ("FLOPs to match", as the Mixture-of-Mamba paper reports
// it; below 1 means A gets there with less compute). Also writes an SVG plot of the eval-loss curves
// against training FLOPs, one panel per modality.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "examples/toy/vocab.h"

namespace mom::toy {

struct EvalPoint {
  double flops = 0;
  std::array<double, kNumModalities + 1> loss{};  // total, then per modality (NaN where absent)
};

std::vector<EvalPoint> read_eval_curve(const std::string& run_dir);  // throws [compare] for a bad run

struct MatchRow {
  std::string name;           // "total", "text", ...
  double final_a = 0, final_b = 0;
  double flops_fraction = 0;  // NaN when A never reaches B's final loss
};

std::vector<MatchRow> flops_to_match(const std::vector<EvalPoint>& a, const std::vector<EvalPoint>& b);
std::string format_match_table(const std::vector<MatchRow>& rows, const std::string& name_a, const std::string& name_b);
void write_loss_svg(const std::string& path, const std::vector<EvalPoint>& a, const std::vector<EvalPoint>& b,
                    const std::string& name_a, const std::string& name_b);

}  // namespace mom::toy
