// `mom sweep`: the same training run for several models and seeds, and a report over the seeds.
//
// Variants: "dense" (no projection split), "mom" (all four split by modality), each single split
// ("in_proj", "x_proj", "dt_proj", "out_proj": that projection split, the other three shared), the
// Mixture-of-Mamba paper's ablation, and "learned" (all four split, each token's expert chosen by a
// learned top-1 router with a load-balancing loss: the mixture-of-experts baseline at MoM's FLOPs). Every variant trains on each seed with the same config otherwise,
// in <out>/<variant>/seed-<s>; a run whose log already holds its last evaluation is not trained again,
// so an interrupted sweep continues where it stopped.
//
// The report, per variant over the seeds (mean +- sample standard deviation; the standard deviation is
// blank with one seed): the final eval loss of each modality and the total; against dense on the same
// seed (the same held-out set: the toy's follows the seed), the share of dense's training FLOPs and of
// its training seconds at which the variant's eval loss first reaches dense's final one (compare.h's
// "to match"; a pair that never reaches it counts in "reached k/n" and not in the mean); training
// tokens per second; the device's peak memory (CUDA runs; the CPU keeps no count); the trained model's
// decoding ms per token (nn::Decoder, one row, in the last eval line); the final generation
// accuracies where the runs measured them. Beside it, report.svg: each variant's eval-loss curve
// against training FLOPs, the mean over the seeds with the band from their lowest to highest.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "examples/toy/compare.h"
#include "examples/toy/train.h"

namespace mom::toy {

struct SweepVariant {
  std::string name;
  int split_in_proj = 0, split_x_proj = 0, split_dt_proj = 0, split_out_proj = 0;
  bool learned = false;  // routed by a learned router instead of the modality (--model learned)
};

// Every variant, in the report's order.
const std::vector<SweepVariant>& sweep_variants();
// The variants named in `names` (a subset of sweep_variants' names, each at most once), in the report's
// order; "dense" is added when absent, since every comparison is against it. Throws [sweep].
std::vector<SweepVariant> select_variants(const std::vector<std::string>& names);

// The config of one run: `base` with the variant's splits, the seed and <out>/<variant>/seed-<seed>.
TrainConfig sweep_run_config(const TrainConfig& base, const SweepVariant& v, uint64_t seed, const std::string& out);
std::string sweep_run_dir(const std::string& out, const std::string& variant, uint64_t seed);

// Whether the run directory's log holds the evaluation of step `steps` (the run is complete).
bool sweep_run_done(const std::string& run_dir, int64_t steps);
// The config.json of a run directory. Throws [sweep] when it is missing or bad.
TrainConfig read_run_config(const std::string& run_dir);
// The first config key in which the run already in c.out differs from c ("" when there is none, or no
// run yet), ignoring the device, the reporting cadences and the modalities (which the data sets).
std::string sweep_run_mismatch(const TrainConfig& c);

// Mean and sample standard deviation of the finite values (count = how many; std NaN below two).
struct Spread {
  double mean = 0, std = 0;
  int count = 0;
};
Spread spread(const std::vector<double>& values);

struct VariantReport {
  std::string name;
  int seeds = 0;
  std::vector<Spread> final_loss;     // total, then per modality
  std::vector<Spread> flops_to_match;  // total, then per modality; against dense on the same seed
  std::vector<Spread> time_to_match;
  std::vector<Spread> tokens_per_second;  // one element
  Spread peak_memory_mib;                 // count 0 where the runs logged none (the CPU)
  Spread decode_ms;                       // nn::Decoder, one row, ms per token
  std::vector<Spread> accuracy;           // kTasks' order; count 0 where no run measured it
};

// Reads every run of `variants` x `seeds` under `out` and summarises them (see the header comment).
// Throws [compare] / [sweep] for a missing or unfinished run.
std::vector<VariantReport> sweep_report(const std::string& out, const std::vector<SweepVariant>& variants,
                                        const std::vector<uint64_t>& seeds, const std::vector<std::string>& modalities);
// The report as Markdown tables: losses, the match shares against dense, speed, memory, decoding and
// accuracies.
std::string format_sweep_report(const std::vector<VariantReport>& rows, const std::vector<std::string>& modalities);

// Each variant's eval-loss curve over the seeds: the mean at each evaluation, and the lowest and highest
// (the seeds' runs evaluate at the same steps; a longer one is cut to the shortest).
std::vector<LossCurve> sweep_curves(const std::string& out, const std::vector<SweepVariant>& variants,
                                    const std::vector<uint64_t>& seeds, const std::vector<std::string>& modalities);

}  // namespace mom::toy
