// `mom sweep`: train dense, MoM, the single-split variants and the learned-routing baseline on several
// seeds with one config, each run in a process of its own, and report each variant over the seeds
// (examples/toy/sweep.h) in <out>/report.md and <out>/report.svg.
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "examples/mom/commands.h"
#include "examples/mom/options.h"
#include "examples/toy/sweep.h"

namespace mom::cli {

namespace {

struct SweepOptions {
  toy::TrainConfig base;
  int64_t seeds = 3;
  uint64_t first_seed = 1;
  std::vector<std::string> variants;  // default: every one of toy::sweep_variants()
  std::string out = "runs/sweep";
};

// Trains `run` in a child process and returns its exit status: no run inherits another's device
// memory, cuBLAS workspaces or caches, so each run's peak memory and speed are those of `mom train`
// alone (the sweep's own process touches no device, which a child may then initialise afresh).
int train_alone(const toy::TrainConfig& run) {
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = fork();
  MOM_CHECK(pid >= 0, "sweep", "cannot start a process for " << run.out << ": " << std::strerror(errno));
  if (pid == 0) {
    int code = 0;
    try {
      const toy::TrainResult r = toy::train(run);
      if (run.quiet) std::printf("  final eval %s\n", toy::format_losses(r.last_eval, r.modalities).c_str());
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s\n", e.what());
      code = 1;
    }
    std::fflush(stdout);
    std::fflush(stderr);
    _exit(code);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    MOM_CHECK(errno == EINTR, "sweep", "waiting for the run in " << run.out << ": " << std::strerror(errno));
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace

void add_sweep_command(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<SweepOptions>();
  for (const toy::SweepVariant& v : toy::sweep_variants()) o->variants.push_back(v.name);
  CLI::App* cmd = app.add_subcommand(
      "sweep", "train dense, MoM, each single split and learned routing on several seeds; report mean +- std "
               "over the seeds");
  cmd->add_option("--seeds", o->seeds, "seeds per variant")->check(integer_in<int64_t>(1, 1000))->capture_default_str();
  cmd->add_option("--first-seed", o->first_seed, "the seeds are first-seed, first-seed + 1, ...")
      ->check(integer_in<uint64_t>(0, UINT64_MAX - 1000))->capture_default_str();
  cmd->add_option("--variants", o->variants,
                  "among dense, mom (all four projections split), in_proj, x_proj, dt_proj, out_proj (that one "
                  "split), learned (all four split, routed by a learned router); dense is always trained, as the "
                  "reference")
      ->delimiter(',')->capture_default_str();
  cmd->add_option("--out", o->out, "directory of the runs (<out>/<variant>/seed-<s>) and of report.md")
      ->check(non_empty())->capture_default_str();
  add_train_options(cmd, o->base, nullptr, true);
  cmd->callback([o, &exit_code] {
    const std::vector<toy::SweepVariant> variants = toy::select_variants(o->variants);
    std::vector<uint64_t> seeds;
    for (int64_t k = 0; k < o->seeds; ++k) seeds.push_back(o->first_seed + static_cast<uint64_t>(k));
    const size_t total = variants.size() * seeds.size();
    size_t n = 0;
    for (uint64_t seed : seeds)
      for (const toy::SweepVariant& v : variants) {
        const toy::TrainConfig c = toy::sweep_run_config(o->base, v, seed, o->out);
        ++n;
        const std::string differs = toy::sweep_run_mismatch(c);
        MOM_CHECK(differs.empty(), "sweep", c.out << " holds a run whose " << toy::flag_of(differs)
                                                  << " differs from this sweep's; give another --out");
        if (toy::sweep_run_done(c.out, c.steps)) {
          std::printf("[%zu/%zu] %s seed %llu: done before, in %s\n", n, total, v.name.c_str(),
                      static_cast<unsigned long long>(seed), c.out.c_str());
          continue;
        }
        std::printf("[%zu/%zu] %s seed %llu -> %s\n", n, total, v.name.c_str(), static_cast<unsigned long long>(seed),
                    c.out.c_str());
        std::fflush(stdout);
        const bool partial = std::filesystem::exists(std::filesystem::path(c.out) / "checkpoint.safetensors");
        toy::TrainConfig run = c;
        run.resume = partial;  // an interrupted run continues from its checkpoint
        const int rc = train_alone(run);
        MOM_CHECK(rc == 0, "sweep", v.name << " seed " << seed << " failed (exit status " << rc << "); " << c.out
                                           << " keeps its last checkpoint: run the sweep again to continue");
      }
    const std::vector<std::string> modalities = toy::read_run_config(toy::sweep_run_dir(o->out, "dense", seeds.front())).modalities;
    const std::string report =
        toy::format_sweep_report(toy::sweep_report(o->out, variants, seeds, modalities), modalities);
    const std::string path = (std::filesystem::path(o->out) / "report.md").string();
    std::ofstream f(path);
    MOM_CHECK(f.good(), "sweep", "cannot write " << path);
    f << report;
    f.close();
    MOM_CHECK(f.good(), "sweep", "cannot write " << path);
    const std::string svg = (std::filesystem::path(o->out) / "report.svg").string();
    toy::write_loss_svg(svg, toy::sweep_curves(o->out, variants, seeds, modalities), modalities);
    std::printf("\n%s\nreport: %s, plot: %s\n", report.c_str(), path.c_str(), svg.c_str());
    exit_code = 0;
  });
}

}  // namespace mom::cli
