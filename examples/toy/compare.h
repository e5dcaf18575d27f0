// `mom compare RUN_A RUN_B`: how much of B's training compute A needs to match B.
//
// For each modality (and the total), with B's final eval loss as the bar: the training FLOPs at which
// A's eval loss first reaches the bar (linear interpolation between A's evaluations), as a fraction of
// B's training FLOPs at its final evaluation ("FLOPs to match", as the Mixture-of-Mamba paper reports
// it; below 1 means A gets there with less compute). Also writes an SVG plot of the eval-loss curves
// against training FLOPs, one panel per modality.
#pragma once

#include <string>
#include <vector>

namespace mom::toy {

struct EvalPoint {
  double flops = 0;
  std::vector<double> loss;  // total, then per modality (NaN where absent)
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
void write_loss_svg(const std::string& path, const std::vector<EvalPoint>& a, const std::vector<EvalPoint>& b,
                    const std::vector<std::string>& modalities, const std::string& name_a, const std::string& name_b);

}  // namespace mom::toy
