// `mom eval`: a trained model on the held-out set of its run: the loss per modality, and for a run of the
// toy vocabulary the greedy generation accuracies on the set's first --accuracy-docs scenes
// (examples/toy/accuracy.h).
#include <cmath>
#include <cstdio>

#include "core/error.h"
#include "examples/mom/options.h"
#include "examples/mom/commands.h"
#include "examples/toy/accuracy.h"
#include "examples/toy/train.h"

namespace mom::cli {

void add_eval_command(CLI::App& app, int& exit_code) {
  auto path = std::make_shared<std::string>();
  auto batches = std::make_shared<int64_t>(0);
  auto doc_token = std::make_shared<int64_t>(-2);
  auto accuracy_docs = std::make_shared<int64_t>(64);
  CLI::App* cmd = app.add_subcommand("eval", "evaluate a run (or a model.safetensors) on its held-out set");
  cmd->add_option("checkpoint", *path, "run directory, its checkpoint.safetensors or its model.safetensors")->required();
  cmd->add_option("--batches", *batches, "held-out batches (default: the run's --eval-batches)")
      ->check(integer_in<int64_t>(1, 100000));
  cmd->add_option("--doc-token", *doc_token,
                  "token id where the state resets (default: the run's --doc-token); -1 reads across documents")
      ->check(integer_in<int64_t>(-1, toy::kMaxVocabSize - 1));
  cmd->add_option("--accuracy-docs", *accuracy_docs,
                  "held-out scenes on which to score greedy generation (toy vocabulary only); 0: none")
      ->check(integer_in<int64_t>(0, 65536))
      ->capture_default_str();
  cmd->callback([path, batches, doc_token, accuracy_docs, &exit_code] {
    toy::LoadedModel m = toy::load_model(*path);
    if (*batches > 0) m.config.eval_batches = *batches;
    if (*doc_token >= -1) m.config.doc_token = *doc_token;
    m.config.validate();
    std::string held_out;
    toy::Losses l = toy::evaluate(*m.model, toy::eval_set(m.config, &held_out));
    MOM_CHECK(std::isfinite(l.total), "eval", *path << ": the held-out loss is " << l.total
                                                    << ": the model's outputs are not finite");
    std::printf("%s (%s, %lld parameters) on %lld held-out batches of %lldx%lld tokens from %s, %s\n",
                path->c_str(), m.config.model.c_str(), static_cast<long long>(m.model->num_parameters()),
                static_cast<long long>(m.config.eval_batches), static_cast<long long>(m.config.batch),
                static_cast<long long>(m.config.seq_len), held_out.c_str(),
                m.config.doc_token >= 0 ? ("state reset at token " + std::to_string(m.config.doc_token)).c_str()
                                        : "reading across documents");
    std::printf("loss %.4f", l.total);
    for (size_t i = 0; i < m.config.modalities.size(); ++i)
      std::printf(" | %s %.4f", m.config.modalities[i].c_str(), l.by_modality[i]);
    std::printf("\n");
    const std::vector<std::vector<int32_t>> scenes = toy::held_out_scenes(m.config, *accuracy_docs);
    if (!scenes.empty()) {
      const toy::GenerationAccuracy a =
          toy::evaluate_generation(*m.model, scenes, m.config.doc_token, toy::kAccuracyRowsPerBatch);
      std::printf("greedy generation on the held-out set's first %zu scenes:\n", scenes.size());
      for (toy::Task t : toy::kTasks) {
        const toy::TaskScore& s = a[t];
        std::printf("  %-18s %4lld/%lld exact (%5.1f%%)", toy::task_name(t), static_cast<long long>(s.exact),
                    static_cast<long long>(s.count), 100 * s.share());
        if (t == toy::Task::caption_image) std::printf(", %.1f%% of the pixels right", 100 * s.pixel_share());
        std::printf("\n");
      }
    } else if (*accuracy_docs > 0) {
      std::printf("no generation accuracies: they need toy documents, in the toy vocabulary\n");
    }
    exit_code = 0;
  });
}

}  // namespace mom::cli
