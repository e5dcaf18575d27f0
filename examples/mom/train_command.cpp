// `mom train`: the toy multimodal trainer.
#include <cstdio>

#include "examples/mom/commands.h"

namespace mom::cli {

void add_train_command(CLI::App& app, int& exit_code) {
  CLI::App* cmd = app.add_subcommand("train", "train dense Mamba and Mixture-of-Mamba on toy multimodal data");
  cmd->allow_extras();
  cmd->callback([&exit_code] {
    std::fprintf(stderr,
                 "mom train: not yet. The trainer comes with the nn and trainer issues; today the framework has the\n"
                 "tensor core, autograd and gradient checks (try `mom gradcheck`).\n");
    exit_code = 2;
  });
}

}  // namespace mom::cli
