// `mom compare RUN_A RUN_B`: FLOPs for A to reach B's final eval loss, per modality, the FLOPs at which
// each run's greedy generation first gets 90% of a task exact (where its log has accuracies), and an
// SVG plot.
// The two runs must have been evaluated on the same held-out set; other differences of their configs
// besides the model's shape are printed, so that a table is never read as what it is not.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "examples/mom/commands.h"
#include "examples/toy/compare.h"
#include "examples/toy/train.h"

namespace mom::cli {

namespace {

nlohmann::json run_config(const std::string& run) {
  const std::string path = (std::filesystem::path(run) / "config.json").string();
  std::ifstream in(path);
  MOM_CHECK(in.good(), "compare", "cannot read " << path << " (is " << run << " a run directory of mom train?)");
  std::stringstream text;
  text << in.rdbuf();
  try {
    return nlohmann::json::parse(toy::TrainConfig::from_json(text.str()).to_json());
  } catch (const Error& e) {
    MOM_THROW("compare", path << ": " << e.what());
  }
}

// Checks that the runs can be compared and returns their modalities' names.
std::vector<std::string> check_comparable(const std::string& a, const std::string& b) {
  const nlohmann::json ca = run_config(a), cb = run_config(b);
  // What decides the held-out set (the toy world's held-out seed follows the training seed).
  std::vector<std::string> eval_keys = {"data", "eval_data", "batch", "seq_len", "eval_batches", "doc_token",
                                        "modalities"};
  if (ca["data"] == "toy" && ca["eval_data"] == "") eval_keys.push_back("seed");
  for (const std::string& k : eval_keys)
    MOM_CHECK(ca[k] == cb[k], "compare", "the runs were evaluated on different held-out sets: " << a << " has "
              << toy::flag_of(k) << " " << ca[k].dump() << ", " << b << " has " << cb[k].dump()
              << "; their losses are not comparable");
  std::string notes;
  for (auto it = ca.begin(); it != ca.end(); ++it) {
    const std::string& k = it.key();
    bool expected = k == "model" || k.rfind("split_", 0) == 0 || k == "out" || k == "device";
    if (!expected && cb.contains(k) && cb[k] != it.value())
      notes += " " + toy::flag_of(k) + " " + it.value().dump() + " vs " + cb[k].dump() + ";";
  }
  if (!notes.empty()) std::printf("note: the runs also differ in:%s\n", notes.c_str());
  return ca["modalities"].get<std::vector<std::string>>();
}

}  // namespace

void add_compare_command(CLI::App& app, int& exit_code) {
  auto a = std::make_shared<std::string>(), b = std::make_shared<std::string>(), svg = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand("compare", "FLOPs-to-match of run A against run B, per modality, FLOPs to 90% "
                                                "generation accuracy per task, and a loss plot");
  cmd->add_option("run_a", *a, "run directory A (e.g. runs/mom)")->required();
  cmd->add_option("run_b", *b, "run directory B (e.g. runs/dense)")->required();
  cmd->add_option("--svg", *svg, "plot path (default: <run_a>/compare.svg)");
  cmd->callback([a, b, svg, &exit_code] {
    const std::vector<std::string> modalities = check_comparable(*a, *b);
    auto curve_a = toy::read_eval_curve(*a, modalities), curve_b = toy::read_eval_curve(*b, modalities);
    std::string name_a = std::filesystem::path(*a).filename().string(), name_b = std::filesystem::path(*b).filename().string();
    if (name_a == name_b) name_a = "A", name_b = "B";
    std::printf("%s",
                toy::format_match_table(toy::flops_to_match(curve_a, curve_b, modalities), name_a, name_b).c_str());
    std::printf("%s", toy::format_accuracy_table(toy::flops_to_accuracy(curve_a, curve_b), name_a, name_b).c_str());
    std::string path = svg->empty() ? (std::filesystem::path(*a) / "compare.svg").string() : *svg;
    toy::write_loss_svg(path, {{name_a, curve_a, {}, {}}, {name_b, curve_b, {}, {}}}, modalities);
    std::printf("plot: %s\n", path.c_str());
    exit_code = 0;
  });
}

}  // namespace mom::cli
