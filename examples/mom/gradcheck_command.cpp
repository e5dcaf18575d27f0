// `mom gradcheck`: finite-difference check of every registered differentiable op.
#include <cstdio>
#include <iostream>

#include "autograd/gradcheck.h"
#include "core/error.h"
#include "examples/mom/commands.h"
#include "nn/gradcheck_cases.h"

namespace mom::cli {

namespace {

struct GradcheckArgs {
  std::string op;
  uint64_t seed = 0;
  bool list = false;
};

int run_gradcheck(const GradcheckArgs& args) {
  auto& registry = autograd::GradcheckRegistry::instance();
  registry.add_cases(nn::module_gradcheck_cases());
  if (args.list) {
    for (const std::string& op : registry.ops()) std::printf("%s\n", op.c_str());
    return 0;
  }
  bool found = false;
  int failed = 0, total = 0;
  std::printf("%-16s %-34s %-14s %12s %12s  %s\n", "op", "case", "input", "max abs err", "max rel err", "ok");
  for (const autograd::GradcheckCase& c : registry.cases()) {
    if (!args.op.empty() && c.op != args.op) continue;
    found = true;
    Generator gen(args.seed * 1000003 + std::hash<std::string>{}(c.op + c.variant) % 1000003);
    autograd::GradcheckProblem problem = c.make(gen);
    problem.opts.seed = args.seed;
    std::vector<autograd::GradcheckRow> rows;
    try {
      rows = autograd::gradcheck(problem.fn, problem.inputs, problem.names, problem.opts);
    } catch (const Error& e) {
      std::printf("%-16s %-34s %-14s %12s %12s  FAIL (%s)\n", c.op.c_str(), c.variant.c_str(), "-", "-", "-", e.what());
      ++failed, ++total;
      continue;
    }
    for (const auto& r : rows) {
      std::printf("%-16s %-34s %-14s %12.3e %12.3e  %s\n", c.op.c_str(), c.variant.c_str(), r.input.c_str(),
                  r.max_abs_err, r.max_rel_err, r.ok ? "ok" : "FAIL");
      ++total;
      if (!r.ok) ++failed;
    }
  }
  MOM_CHECK(found, "gradcheck", "no op named '" << args.op << "'; `mom gradcheck --list` names them");
  std::printf("%d rows, %d failed\n", total, failed);
  return failed ? 1 : 0;
}

}  // namespace

void add_gradcheck_command(CLI::App& app, int& exit_code) {
  auto args = std::make_shared<GradcheckArgs>();
  CLI::App* cmd = app.add_subcommand("gradcheck", "check every op's backward against finite differences (f64, CPU)");
  cmd->add_option("--op", args->op, "check only this op (see --list)");
  cmd->add_option("--seed", args->seed, "seed of the random inputs")->capture_default_str();
  cmd->add_flag("--list", args->list, "print the names of the checked ops and exit");
  cmd->callback([args, &exit_code] { exit_code = run_gradcheck(*args); });
}

}  // namespace mom::cli
