// A user's own data: JSON Lines documents packed into a token file (`mom data pack`), and a token
// file's summary (`mom data inspect`).
//
// The vocabulary declaration (a JSON object):
//     {"specials": ["<pad>", "<bos>", "<eos>"],               ids 0 .. 2, of the first modality
//      "modalities": [{"name": "text", "tokens": 1000},      ids 3 .. 1002
//                     {"name": "image", "tokens": 256}]}     ids 1003 .. 1258
// gives the token file's ranges: "special" [0, S) of modality 0, then one range per modality, named by
// it, in the order given (so the trainer names each modality as declared: a modality is named by its
// largest range, and the first modality must have more tokens than there are specials). 1 to 8
// modalities (the trainer's limit), names unique and not "special", 1 to 16 specials, at most 2^24
// ids in all.
//
// Each line of the JSON Lines file is one document: a list of segments, each a modality (or
// "special") and its tokens as ids within that modality (0 .. its count - 1):
//     {"segments": [{"modality": "text", "tokens": [17, 4, 250]}, {"modality": "image", "tokens": [3, 3, 9]}]}
// The packed document is specials[1] (the document start, "<bos>" above, which --doc-token 1 names), then
// the segments' tokens in order; with fewer than 2 specials there is no document start. Empty lines are
// skipped. Every malformed line is an error naming the file, the line and what is wrong.
#pragma once

#include <cstdint>
#include <istream>
#include <string>
#include <vector>

#include "examples/toy/token_file.h"

namespace mom::toy {

struct PackedData {
  TokenFile file;
  int64_t documents = 0;
  int32_t doc_token = -1;  // the id every document starts with, -1 without one
};

// vocab_json: the declaration's text; lines: the JSON Lines; the paths name them in errors ("[pack] ...").
PackedData pack_jsonl(const std::string& vocab_json, const std::string& vocab_path, std::istream& lines,
                      const std::string& lines_path);

// What a token file holds: its ranges and modality names, its documents (starting at doc_token; -1:
// one stream) with their lengths, the tokens and ids used per modality, the documents per mix of
// modalities, any problem found (an unused range, no document start, a first token that starts no
// document), and the first `show` documents token by token.
std::string inspect_token_file(const TokenFile& file, const std::string& path, int64_t doc_token, int64_t show);

}  // namespace mom::toy
