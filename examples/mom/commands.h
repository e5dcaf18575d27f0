// The subcommands of the `mom` program; each registers its options on the CLI11 app and reports its
// exit code through the callback it installs.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <vector>

#include "examples/toy/train.h"

namespace mom::cli {

void add_train_command(CLI::App& app, int& exit_code);
void add_eval_command(CLI::App& app, int& exit_code);
void add_generate_command(CLI::App& app, int& exit_code);
void add_compare_command(CLI::App& app, int& exit_code);
void add_data_command(CLI::App& app, int& exit_code);
void add_gradcheck_command(CLI::App& app, int& exit_code);
void add_sweep_command(CLI::App& app, int& exit_code);

// A training option and how to copy its field from the parsed config into another one (--resume keeps
// the run's config and takes only the flags given).
struct BoundOption {
  CLI::Option* option;
  std::function<void(toy::TrainConfig& to, const toy::TrainConfig& from)> copy;
};
// Registers `mom train`'s options on cmd, writing into config (and each into bound, when not null).
// sweep: without --model, --split-*, --seed, --out and --stop-at, which a sweep sets per run.
void add_train_options(CLI::App* cmd, toy::TrainConfig& config, std::vector<BoundOption>* bound, bool sweep);

}  // namespace mom::cli
