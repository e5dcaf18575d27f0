// `mom gradcheck`: finite-difference check of every registered differentiable op (f64, CPU; one row per
// case and input with the max absolute and relative errors and the max error / tolerance, where the
// tolerance comes from the estimated finite-difference error: autograd/gradcheck.h), or with
// --device cuda, every registered case run on the GPU (f64 and f32) against the CPU in f64: outputs and
// input gradients for a fixed random output projection (autograd::device_check).
#include <cstdio>
#include <iostream>

#include "autograd/gradcheck.h"
#include "core/error.h"
#include "examples/mom/commands.h"
#include "examples/mom/options.h"
#include "nn/gradcheck_cases.h"

namespace mom::cli {

namespace {

struct GradcheckArgs {
  std::string op;
  uint64_t seed = 0;
  bool list = false;
  std::string device = "cpu";
};

// Tolerances of the device check (max error over max |reference| per tensor): f64 differs from the
// CPU only by summation order and libm; f32 by its rounding.
constexpr double kDeviceRtolF64 = 1e-9;
constexpr double kDeviceRtolF32 = 1e-4;

Generator case_generator(const GradcheckArgs& args, const autograd::GradcheckCase& c) {
  return Generator(args.seed * 1000003 + std::hash<std::string>{}(c.op + c.variant) % 1000003);
}

int run_device_check(const GradcheckArgs& args, Device device) {
#ifndef MOM_WITH_CUDA
  (void)device;
  MOM_THROW("gradcheck", "built without CUDA: --device " << args.device << " needs a CUDA build");
#else
  MOM_CHECK(cuda_available(), "gradcheck", "no CUDA device is visible to this process");
  auto& registry = autograd::GradcheckRegistry::instance();
  bool found = false;
  int failed = 0, total = 0;
  std::printf("%-16s %-34s %-7s %-14s %12s %12s  %s\n", "op", "case", "dtype", "tensor", "max abs err", "max rel err",
              "ok");
  for (const autograd::GradcheckCase& c : registry.cases()) {
    if (!args.op.empty() && c.op != args.op) continue;
    found = true;
    for (DType dtype : {DType::f64, DType::f32}) {
      Generator gen = case_generator(args, c);
      const char* dt = dtype_name(dtype);
      std::vector<autograd::GradcheckRow> rows;
      try {
        autograd::GradcheckProblem problem = c.make(gen);
        rows = autograd::device_check(problem.fn, problem.inputs, problem.names, device, dtype,
                                      dtype == DType::f64 ? kDeviceRtolF64 : kDeviceRtolF32, args.seed);
      } catch (const Error& e) {
        std::printf("%-16s %-34s %-7s %-14s %12s %12s  FAIL (%s)\n", c.op.c_str(), c.variant.c_str(), dt, "-", "-", "-",
                    e.what());
        ++failed, ++total;
        continue;
      }
      for (const auto& r : rows) {
        std::printf("%-16s %-34s %-7s %-14s %12.3e %12.3e  %s\n", c.op.c_str(), c.variant.c_str(), dt, r.input.c_str(),
                    r.max_abs_err, r.max_rel_err, r.ok ? "ok" : "FAIL");
        ++total;
        if (!r.ok) ++failed;
      }
    }
  }
  MOM_CHECK(found, "gradcheck", "no op named '" << args.op << "'; `mom gradcheck --list` names them");
  std::printf("%d rows on %s, %d failed\n", total, device.str().c_str(), failed);
  return failed ? 1 : 0;
#endif
}

int run_gradcheck(const GradcheckArgs& args) {
  auto& registry = autograd::GradcheckRegistry::instance();
  registry.add_cases(nn::module_gradcheck_cases());
  if (args.list) {
    for (const std::string& op : registry.ops()) std::printf("%s\n", op.c_str());
    return 0;
  }
  const Device device = parse_device(args.device);
  if (device.is_cuda()) return run_device_check(args, device);
  bool found = false;
  int failed = 0, total = 0;
  std::printf("%-16s %-34s %-14s %12s %12s %10s  %s\n", "op", "case", "input", "max abs err", "max rel err",
              "err/tol", "ok");
  for (const autograd::GradcheckCase& c : registry.cases()) {
    if (!args.op.empty() && c.op != args.op) continue;
    found = true;
    Generator gen = case_generator(args, c);
    autograd::GradcheckProblem problem = c.make(gen);
    problem.opts.seed = args.seed;
    std::vector<autograd::GradcheckRow> rows;
    try {
      rows = autograd::gradcheck(problem.fn, problem.inputs, problem.names, problem.opts);
    } catch (const Error& e) {
      std::printf("%-16s %-34s %-14s %12s %12s %10s  FAIL (%s)\n", c.op.c_str(), c.variant.c_str(), "-", "-", "-", "-",
                  e.what());
      ++failed, ++total;
      continue;
    }
    for (const auto& r : rows) {
      std::printf("%-16s %-34s %-14s %12.3e %12.3e %10.3f  %s\n", c.op.c_str(), c.variant.c_str(), r.input.c_str(),
                  r.max_abs_err, r.max_rel_err, r.max_ratio, r.ok ? "ok" : "FAIL");
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
  CLI::App* cmd = app.add_subcommand("gradcheck", "check every op's backward against finite differences (f64, CPU), or the GPU against the CPU");
  cmd->add_option("--op", args->op, "check only this op (see --list)");
  cmd->add_option("--seed", args->seed, "seed of the random inputs")
      ->check(integer_in<uint64_t>(0, UINT64_MAX))->capture_default_str();
  cmd->add_flag("--list", args->list, "print the names of the checked ops and exit");
  cmd->add_option("--device", args->device,
                  "cpu: finite differences in f64; cuda | cuda:N: every case on the GPU (f64, f32) against the CPU")
      ->capture_default_str();
  cmd->callback([args, &exit_code] { exit_code = run_gradcheck(*args); });
}

}  // namespace mom::cli
