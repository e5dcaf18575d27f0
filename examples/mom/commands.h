// The subcommands of the `mom` program; each registers its options on the CLI11 app and reports its
// exit code through the callback it installs.
#pragma once

#include <CLI/CLI.hpp>

namespace mom::cli {

void add_train_command(CLI::App& app, int& exit_code);
void add_eval_command(CLI::App& app, int& exit_code);
void add_generate_command(CLI::App& app, int& exit_code);
void add_compare_command(CLI::App& app, int& exit_code);
void add_data_command(CLI::App& app, int& exit_code);
void add_gradcheck_command(CLI::App& app, int& exit_code);

}  // namespace mom::cli
