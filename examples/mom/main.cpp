// mom: the command-line program of the Mixture-of-Mamba framework. Every failure ends as one line on
// stderr, "error: [component] message", and exit code 1 (CLI11's own usage errors keep its codes).
#include <unistd.h>

#include <cstdlib>
#include <exception>
#include <filesystem>
#include <iostream>
#include <new>

#include "core/error.h"
#include "examples/mom/commands.h"

namespace {

// OpenMP worker threads spin at every barrier by default, so on a machine whose cores other work
// shares, a waiting thread takes the time that the thread it waits for needs. Measured on the 2-core
// machine, `mom train` on the CPU with one other busy process: 5.4k tokens/s spinning, 12.4k with
// passive waits; idle, 23.2-23.8k either way. libgomp reads the policy from the environment before
// main runs, so when the user has not chosen one, the program sets it and starts itself again, once.
void prefer_passive_openmp_waits(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") || std::getenv("GOMP_SPINCOUNT")) return;
  if (::setenv("OMP_WAIT_POLICY", "passive", 1) != 0) return;
  ::execv("/proc/self/exe", argv);  // returns only on failure: carry on with the default policy
}

}  // namespace

int main(int argc, char** argv) {
  prefer_passive_openmp_waits(argv);
  CLI::App app{"mom: train and check Mixture-of-Mamba models"};
  app.require_subcommand(1);
  int exit_code = 0;
  mom::cli::add_train_command(app, exit_code);
  mom::cli::add_eval_command(app, exit_code);
  mom::cli::add_generate_command(app, exit_code);
  mom::cli::add_compare_command(app, exit_code);
  mom::cli::add_data_command(app, exit_code);
  mom::cli::add_gradcheck_command(app, exit_code);
  mom::cli::add_sweep_command(app, exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const mom::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  } catch (const std::bad_alloc&) {
    std::cerr << "error: [memory] out of host memory (an allocation failed; try a smaller model, --batch or "
                 "--seq-len)\n";
    return 1;
  } catch (const std::filesystem::filesystem_error& e) {
    std::cerr << "error: [file] " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    // Every expected failure is a mom::Error; anything else is a defect of the program, reported as one.
    std::cerr << "error: [mom] unexpected " << e.what() << " (please report this with the command line)\n";
    return 1;
  }
  return exit_code;
}
