// A user's own data: `mom data pack` (JSON Lines documents and a vocabulary declaration into a token
// file) on the example under examples/data and on every kind of malformed input, and `mom data inspect`.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

#include "examples/toy/pack.h"
#include "tests/support.h"

namespace mom {
namespace {

using test::expect_error;
using toy::PackedData;

const char* const kVocab = R"({"specials": ["<pad>", "<bos>", "<eos>"],
  "modalities": [{"name": "text", "tokens": 10}, {"name": "image", "tokens": 4}]})";

PackedData pack(const std::string& vocab, const std::string& lines) {
  std::istringstream in(lines);
  return toy::pack_jsonl(vocab, "vocab.json", in, "docs.jsonl");
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(Pack, DocumentsBecomeTokensOfTheDeclaredRanges) {
  const PackedData p = pack(kVocab,
                            R"({"segments": [{"modality": "text", "tokens": [0, 9]}, {"modality": "image", "tokens": [3]}]})"
                            "\n\n"
                            R"({"segments": [{"modality": "image", "tokens": [0, 1]}, {"modality": "special", "tokens": [2]}]})"
                            "\n");
  EXPECT_EQ(p.documents, 2);
  EXPECT_EQ(p.doc_token, 1);
  ASSERT_EQ(p.file.vocab.ranges.size(), 3u);
  EXPECT_EQ(p.file.vocab.size, 17);
  EXPECT_EQ(p.file.vocab.modality_names(), (std::vector<std::string>{"text", "image"}));
  // text ids 3 .. 12, image ids 13 .. 16; each document begins with <bos> = 1.
  EXPECT_EQ(p.file.tokens, (std::vector<int32_t>{1, 3, 12, 16, 1, 13, 14, 2}));
}

TEST(Pack, TheShippedExamplePacksAndInspects) {
  const std::string dir = std::string(MOM_SOURCE_DIR) + "/examples/data/";
  std::ifstream lines(dir + "documents.jsonl");
  const PackedData p = toy::pack_jsonl(read_file(dir + "vocab.json"), "vocab.json", lines, "documents.jsonl");
  EXPECT_EQ(p.documents, 200);
  EXPECT_EQ(p.file.vocab.modality_names(), (std::vector<std::string>{"text", "image", "audio"}));
  const std::string report = toy::inspect_token_file(p.file, "example.tok", p.doc_token, 1);
  EXPECT_NE(report.find("200 documents (starting at token 1)"), std::string::npos) << report;
  EXPECT_NE(report.find("text+image+audio"), std::string::npos) << report;
  EXPECT_NE(report.find("problems: none found"), std::string::npos) << report;
  EXPECT_NE(report.find("document 0 ("), std::string::npos) << report;
}

TEST(Pack, MalformedInputGivesTheFileTheLineAndWhat) {
  const std::string ok = R"({"segments": [{"modality": "text", "tokens": [1]}]})";
  auto bad_line = [&](const std::string& line, const std::string& message) {
    expect_error([&] { pack(kVocab, ok + "\n" + line + "\n"); }, "[pack] docs.jsonl:2: " + message);
  };
  bad_line("{\"segments\": [", "not valid JSON");
  bad_line("[1, 2]", "a document must be {\"segments\": [...]}");
  bad_line(R"({"segments": [], "x": 1})", "a document must be");
  bad_line(R"({"segments": []})", "the document has no segments");
  bad_line(R"({"segments": [{"modality": "video", "tokens": [1]}]})", "segment 0 has modality 'video'");
  bad_line(R"({"segments": [{"modality": "text", "tokens": [10]}]})", "segment 0 token 0 is 10, outside 'text' ids 0 .. 9");
  bad_line(R"({"segments": [{"modality": "text", "tokens": [1, -1]}]})", "segment 0 token 1 is -1");
  bad_line(R"({"segments": [{"modality": "text", "tokens": [1.5]}]})", "segment 0 token 0 is 1.5, not an integer");
  bad_line(R"({"segments": [{"modality": "text"}]})", "segment 0 must be");
  expect_error([&] { pack(kVocab, "\n\n"); }, "[pack] docs.jsonl: no documents");
  auto bad_vocab = [&](const std::string& vocab, const std::string& message) {
    expect_error([&] { pack(vocab, ok); }, "[pack] vocab.json: " + message);
  };
  bad_vocab("[]", "not a JSON object");
  bad_vocab(R"({"specials": ["<pad>"], "modalities": [], "x": 1})", "unknown key 'x'");
  bad_vocab(R"({"specials": [], "modalities": [{"name": "text", "tokens": 5}]})", "0 specials");
  bad_vocab(R"({"specials": ["a"], "modalities": []})", "0 modalities; the trainer takes 1 to 8");
  bad_vocab(R"({"specials": ["a", "b"], "modalities": [{"name": "text", "tokens": 2}]})",
            "the first modality ('text', 2 tokens) must have more tokens than there are specials (2)");
  bad_vocab(R"({"specials": ["a"], "modalities": [{"name": "t", "tokens": 5}, {"name": "t", "tokens": 5}]})",
            "two modalities are named 't'");
  bad_vocab(R"({"specials": ["a"], "modalities": [{"name": "special", "tokens": 5}]})", "modality 0's name");
  bad_vocab(R"({"specials": ["a"], "modalities": [{"name": "t", "tokens": 0}]})", "modality 't' has 0 tokens");
  bad_vocab(R"({"specials": ["a"], "modalities": [{"name": "t", "tokens": 16777216}]})", "the vocabulary passes");
}

TEST(Pack, InspectFindsProblems) {
  toy::TokenFile file;
  file.vocab.size = 8;
  file.vocab.ranges = {{0, 2, 0, "special"}, {2, 6, 0, "text"}, {6, 8, 1, "image"}};
  file.tokens = {3, 4, 1, 5, 2, 2};  // never an image token; starts without <bos>
  const std::string report = toy::inspect_token_file(file, "f.tok", 1, 0);
  EXPECT_NE(report.find("range 'image' is never used"), std::string::npos) << report;
  EXPECT_NE(report.find("the file's first token is not 1"), std::string::npos) << report;
  EXPECT_NE(report.find("2 documents (starting at token 1): length min 2, median 4"), std::string::npos) << report;
  file.tokens = {3, 4, 5};
  EXPECT_NE(toy::inspect_token_file(file, "f.tok", 1, 0).find("no token 1 starts a document"), std::string::npos);
}

}  // namespace
}  // namespace mom
