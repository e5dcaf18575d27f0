// `mom data`: writes documents of the toy world to a token file and summarises them per modality.
// `mom data pack`: a user's JSON Lines documents into a token file; `mom data inspect`: what a token
// file holds (examples/toy/pack.h).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>

#include "core/error.h"
#include "examples/mom/commands.h"
#include "examples/mom/options.h"
#include "examples/toy/pack.h"
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

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  MOM_CHECK(in.good(), "pack", "cannot read " << path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

struct PackArgs {
  std::string vocab, documents, out;
};

int run_pack(const PackArgs& a) {
  std::ifstream lines(a.documents);
  MOM_CHECK(lines.good(), "pack", "cannot read " << a.documents);
  const toy::PackedData packed = toy::pack_jsonl(read_text(a.vocab), a.vocab, lines, a.documents);
  toy::write_token_file(a.out, packed.file.vocab, packed.file.tokens);
  std::printf("packed %lld documents, %zu tokens, into %s%s\n", static_cast<long long>(packed.documents),
              packed.file.tokens.size(), a.out.c_str(),
              packed.doc_token >= 0 ? (" (each starts with token " + std::to_string(packed.doc_token) + ")").c_str()
                                    : " (no document start token: fewer than 2 specials)");
  std::printf("%s", toy::inspect_token_file(packed.file, a.out, packed.doc_token, 0).c_str());
  return 0;
}

}  // namespace

void add_data_command(CLI::App& app, int& exit_code) {
  auto args = std::make_shared<DataArgs>();
  CLI::App* cmd = app.add_subcommand("data", "write toy multimodal documents to a token file and summarise them; "
                                             "pack your own documents; inspect a token file");
  cmd->add_option("--out", args->out, "the token file to write")->check(non_empty());
  cmd->add_option("--docs", args->docs, "number of documents")
      ->check(integer_in<int64_t>(1, 100000000))
      ->capture_default_str();
  cmd->add_option("--seed", args->seed, "seed of the toy world")
      ->check(integer_in<uint64_t>(0, UINT64_MAX))->capture_default_str();
  cmd->add_option("--show", args->show, "print the first N documents")
      ->check(integer_in<int64_t>(0, 100000000))
      ->capture_default_str();
  auto pack = std::make_shared<PackArgs>();
  CLI::App* pack_cmd = cmd->add_subcommand("pack", "pack JSON Lines documents into a token file (format: "
                                                   "examples/toy/pack.h, docs/token-files.md)");
  pack_cmd->add_option("vocab", pack->vocab, "the vocabulary declaration (JSON)")->required();
  pack_cmd->add_option("documents", pack->documents, "the documents, one JSON object per line")->required();
  pack_cmd->add_option("--out", pack->out, "the token file to write")->required()->check(non_empty());
  pack_cmd->callback([pack, &exit_code] { exit_code = run_pack(*pack); });
  auto file = std::make_shared<std::string>();
  auto doc_token = std::make_shared<int64_t>(1);
  auto show = std::make_shared<int64_t>(1);
  CLI::App* inspect_cmd = cmd->add_subcommand("inspect", "what a token file holds, and any problem found");
  inspect_cmd->add_option("file", *file, "the token file")->required();
  inspect_cmd->add_option("--doc-token", *doc_token, "the token that starts a document (-1: none)")
      ->check(integer_in<int64_t>(-1, toy::kMaxVocabSize - 1))->capture_default_str();
  inspect_cmd->add_option("--show", *show, "print the first N documents")
      ->check(integer_in<int64_t>(0, 1000000))->capture_default_str();
  inspect_cmd->callback([file, doc_token, show, &exit_code] {
    std::printf("%s", toy::inspect_token_file(toy::read_token_file(*file), *file, *doc_token, *show).c_str());
    exit_code = 0;
  });
  cmd->callback([cmd, args, &exit_code] {
    if (cmd->got_subcommand("pack") || cmd->got_subcommand("inspect")) return;
    MOM_CHECK(!args->out.empty(), "data", "give --out FILE (the toy documents' token file), or `mom data pack` / "
              "`mom data inspect`");
    exit_code = run_data(*args);
  });
}

}  // namespace mom::cli
