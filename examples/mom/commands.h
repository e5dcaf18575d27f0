// The subcommands of the `mom` program; each registers its options on the CLI11 app and returns the
// exit code through the callback it installs.
#pragma once

#include <CLI/CLI.hpp>

namespace mom::cli {

void add_gradcheck_command(CLI::App& app, int& exit_code);
void add_train_command(CLI::App& app, int& exit_code);

}  // namespace mom::cli
