// Token files: a stream of token ids with the vocabulary that gives each id its modality, so that a
// user can train on their own tokenised data. `mom data` writes one from the toy world.
//
// Format, version 1 (every integer little-endian):
//
//   offset  bytes  field
//   0       8      magic, the ASCII bytes "MOMTOKS1"
//   8       4      u32 version = 1
//   12      4      u32 vocab_size V (1 .. 2^24, kMaxVocabSize of vocab.h)
//   16      4      u32 n_ranges (1 .. 65536)
//   20      ...    n_ranges times: i32 begin, i32 end, i32 modality, u32 name_length (1 .. 256), name bytes
//                  (UTF-8, no terminator). The ranges are in order, contiguous, and cover [0, V); the
//                  modalities are 0 .. M-1, each used by at least one range.
//   ...     8      u64 n_tokens
//   ...     4 * n  the tokens, i32 each, every one in [0, V); the file ends after the last token
//
// Documents are delimited by tokens of the data's own choosing (the toy world uses <bos> ... <eos>);
// the reader and the batcher treat the file as one stream. i32 tokens keep the format to one case at
// the cost of twice the size of u16 for small vocabularies.
//
// write_token_file writes a temporary file beside `path` and renames it over `path`, so a failed write
// leaves no half-written file. read_token_file reads untrusted files: it checks everything above (the
// path a regular file; every field against the bounds given and against the bytes left in the file
// before anything is allocated for it, so a file allocates at most its own size plus a table of V
// entries for its users) and throws "[token_file] <path>: ..." saying what is wrong.
#pragma once

#include <string>
#include <vector>

#include "examples/toy/vocab.h"

namespace mom::toy {

struct TokenFile {
  Vocab vocab;  // without token names
  std::vector<int32_t> tokens;
};

void write_token_file(const std::string& path, const Vocab& vocab, const std::vector<int32_t>& tokens);
TokenFile read_token_file(const std::string& path);

// Where the documents of a token stream begin: 0, every later position holding doc_token (none when
// doc_token is -1), then the stream's size, so document d is [starts[d], starts[d + 1]).
std::vector<int64_t> document_starts(const std::vector<int32_t>& tokens, int64_t doc_token);

}  // namespace mom::toy
