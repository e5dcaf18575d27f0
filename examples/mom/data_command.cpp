// `mom data`: writes documents of the toy world to a token file and summarises them per modality.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>

#include "examples/mom/commands.h"
#include "examples/mom/options.h"
#include "examples/toy/render.h"
#include "examples/toy/token_file.h"
#include "examples/toy/world.h"

namespace mom::cli {

namespace {

struct DataArgs {
  std::string out;
  int64_t docs = 1000;
  uint64_t seed = 0;
  int64_t show = 1;
};

void print_summary(const std::vector<int32_t>& tokens, const std::vector<int64_t>& lengths) {
  const toy::Vocab& vocab = toy::toy_vocab();
  std::vector<int64_t> count_by_id(static_cast<size_t>(vocab.size), 0);
  for (int32_t t : tokens) ++count_by_id[t];
  std::printf("document length: min %lld, mean %.1f, max %lld tokens\n",
              static_cast<long long>(*std::min_element(lengths.begin(), lengths.end())),
              static_cast<double>(tokens.size()) / static_cast<double>(lengths.size()),
              static_cast<long long>(*std::max_element(lengths.begin(), lengths.end())));
  std::printf("%-8s %10s %7s %9s %16s\n", "modality", "tokens", "share", "ids used", "unigram entropy");
  for (int32_t m = 0; m < toy::kNumModalities; ++m) {
    int64_t n = 0, ids = 0, used = 0;
    for (int32_t id = 0; id < vocab.size; ++id)
      if (vocab.modality_of(id) == m) {
        n += count_by_id[id];
        ++ids;
        used += count_by_id[id] > 0;
      }
    double entropy = 0;
    for (int32_t id = 0; id < vocab.size; ++id)
      if (vocab.modality_of(id) == m && count_by_id[id] > 0) {
        double p = static_cast<double>(count_by_id[id]) / static_cast<double>(n);
        entropy -= p * std::log2(p);
      }
    std::printf("%-8s %10lld %6.1f%% %5lld/%-3lld %11.2f bits\n", toy::kModalityNames[m], static_cast<long long>(n),
                100.0 * static_cast<double>(n) / static_cast<double>(tokens.size()), static_cast<long long>(used),
                static_cast<long long>(ids), entropy);
  }
}

int run_data(const DataArgs& args) {
  toy::ToyWorld world(args.seed);
  std::vector<int32_t> tokens;
  std::vector<int64_t> lengths;
  std::vector<std::vector<int32_t>> shown;
  for (int64_t i = 0; i < args.docs; ++i) {
    std::vector<int32_t> doc = world.next_document();
    if (i < args.show) shown.push_back(doc);
    tokens.insert(tokens.end(), doc.begin(), doc.end());
    lengths.push_back(static_cast<int64_t>(doc.size()));
  }
  toy::write_token_file(args.out, toy::toy_vocab(), tokens);
  std::printf("wrote %lld documents, %zu tokens (%.1f MB) to %s (seed %llu)\n", static_cast<long long>(args.docs),
              tokens.size(), static_cast<double>(tokens.size()) * 4.0 / 1e6, args.out.c_str(),
              static_cast<unsigned long long>(args.seed));
  print_summary(tokens, lengths);
  for (size_t i = 0; i < shown.size(); ++i)
    std::printf("\ndocument %zu (%zu tokens):\n%s", i, shown[i].size(), toy::render_document(shown[i]).c_str());
  return 0;
}

}  // namespace

void add_data_command(CLI::App& app, int& exit_code) {
  auto args = std::make_shared<DataArgs>();
  CLI::App* cmd = app.add_subcommand("data", "write toy multimodal documents to a token file and summarise them");
  cmd->add_option("--out", args->out, "the token file to write")->required()->check(non_empty());
  cmd->add_option("--docs", args->docs, "number of documents")
      ->check(integer_in<int64_t>(1, 100000000))
      ->capture_default_str();
  cmd->add_option("--seed", args->seed, "seed of the toy world")
      ->check(integer_in<uint64_t>(0, UINT64_MAX))->capture_default_str();
  cmd->add_option("--show", args->show, "print the first N documents")
      ->check(integer_in<int64_t>(0, 100000000))
      ->capture_default_str();
  cmd->callback([args, &exit_code] { exit_code = run_data(*args); });
}

}  // namespace mom::cli
