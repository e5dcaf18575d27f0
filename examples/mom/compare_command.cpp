// `mom compare RUN_A RUN_B`: FLOPs for A to reach B's final eval loss, per modality, and an SVG plot.
#include <cstdio>
#include <filesystem>

#include "examples/mom/commands.h"
#include "examples/toy/compare.h"

namespace mom::cli {

void add_compare_command(CLI::App& app, int& exit_code) {
  auto a = std::make_shared<std::string>(), b = std::make_shared<std::string>(), svg = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand("compare", "FLOPs-to-match of run A against run B, per modality, and a loss plot");
  cmd->add_option("run_a", *a, "run directory A (e.g. runs/mom)")->required();
  cmd->add_option("run_b", *b, "run directory B (e.g. runs/dense)")->required();
  cmd->add_option("--svg", *svg, "plot path (default: <run_a>/compare.svg)");
  cmd->callback([a, b, svg, &exit_code] {
    auto curve_a = toy::read_eval_curve(*a), curve_b = toy::read_eval_curve(*b);
    std::string name_a = std::filesystem::path(*a).filename().string(), name_b = std::filesystem::path(*b).filename().string();
    if (name_a == name_b) name_a = "A", name_b = "B";
    std::printf("%s", toy::format_match_table(toy::flops_to_match(curve_a, curve_b), name_a, name_b).c_str());
    std::string path = svg->empty() ? (std::filesystem::path(*a) / "compare.svg").string() : *svg;
    toy::write_loss_svg(path, curve_a, curve_b, name_a, name_b);
    std::printf("plot: %s\n", path.c_str());
    exit_code = 0;
  });
}

}  // namespace mom::cli
