// mom: the command-line program of the Mixture-of-Mamba framework.
#include <iostream>

#include "core/error.h"
#include "examples/mom/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"mom: train and check Mixture-of-Mamba models"};
  app.require_subcommand(1);
  int exit_code = 0;
  mom::cli::add_train_command(app, exit_code);
  mom::cli::add_eval_command(app, exit_code);
  mom::cli::add_generate_command(app, exit_code);
  mom::cli::add_compare_command(app, exit_code);
  mom::cli::add_data_command(app, exit_code);
  mom::cli::add_gradcheck_command(app, exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const mom::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return exit_code;
}
