// Batches of packed documents, as llm.c packs them: the token stream (documents end to end, each
// delimited by its own <bos> ... <eos>) is cut into rows of L+1 consecutive tokens; a row's inputs
// are its first L tokens and its targets its last L, and the next row starts where this row's inputs
// ended (the stream advances by L per row, so every token is a target exactly once): no padding, and
// a row holds the end of one document and the beginning of the next. Given the token that starts a
// document (doc_token, the toy's <bos>), a batch flags every input equal to it in doc_start, and the
// model resets its state there, so that no prediction depends on another document; without one (-1)
// the flags are absent and a model reads across documents, as in llm.c.
//
// The stream comes from a TokenSource: the toy world (endless, seeded) or a token file (cycled).
// state_dict() holds everything that decides the following batches (the source's position, for the
// world its generator state and the document being read, and the one token carried from the last
// row), so a Batcher built the same way and given load_state_dict() continues with identical batches.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "examples/toy/token_file.h"
#include "examples/toy/world.h"

namespace mom::toy {

// The most tokens (B x L) one batch may hold.
constexpr int64_t kMaxBatchTokens = int64_t{1} << 24;

struct Batch {
  Tensor tokens;             // (B, L) i64, the inputs
  Tensor targets;            // (B, L) i64, the next token of each input
  Tensor modalities;         // (B, L) i32, modality of each input token (routes the experts)
  Tensor target_modalities;  // (B, L) i32, modality of each target token (per-modality losses)
  Tensor doc_start;          // (B, L) bool, true where the input starts a document; undefined without doc_token
};

class TokenSource {
 public:
  virtual ~TokenSource() = default;
  virtual const Vocab& vocab() const = 0;
  // Appends the next n tokens of the stream to out.
  virtual void read(int64_t n, std::vector<int32_t>& out) = 0;
  virtual std::map<std::string, Tensor> state_dict() const = 0;
  virtual void load_state_dict(const std::map<std::string, Tensor>& state) = 0;
};

// The documents of ToyWorld(seed), endlessly. State: "rng" (i64 (6): the generator), "document" (i32,
// the document being read), "position" (i64 (1): its next token).
class ToyWorldSource : public TokenSource {
 public:
  explicit ToyWorldSource(uint64_t seed);
  const Vocab& vocab() const override { return toy_vocab(); }
  void read(int64_t n, std::vector<int32_t>& out) override;
  std::map<std::string, Tensor> state_dict() const override;
  void load_state_dict(const std::map<std::string, Tensor>& state) override;

 private:
  ToyWorld world_;
  std::vector<int32_t> document_;
  int64_t position_ = 0;
};

// The tokens of a token file, from the start again after the last. State: "position" (i64 (1)) and
// "n_tokens" (i64 (1), checked against the file on load).
class TokenFileSource : public TokenSource {
 public:
  explicit TokenFileSource(TokenFile file);  // throws [batcher] for a file without tokens
  const Vocab& vocab() const override { return file_.vocab; }
  void read(int64_t n, std::vector<int32_t>& out) override;
  std::map<std::string, Tensor> state_dict() const override;
  void load_state_dict(const std::map<std::string, Tensor>& state) override;

 private:
  TokenFile file_;
  int64_t position_ = 0;
};

class Batcher {
 public:
  // doc_token: the id that starts a document (flagged in Batch::doc_start), or -1 for none.
  Batcher(std::shared_ptr<TokenSource> source, int64_t B, int64_t L, int64_t doc_token = -1);
  Batch next();
  const Vocab& vocab() const { return source_->vocab(); }
  int64_t batch_size() const { return B_; }
  int64_t seq_len() const { return L_; }

  // "next_token" (i64 (1)) and the source's state under "source.".
  std::map<std::string, Tensor> state_dict() const;
  void load_state_dict(const std::map<std::string, Tensor>& state);  // throws [batcher] for a bad state

 private:
  std::shared_ptr<TokenSource> source_;
  int64_t B_, L_, doc_token_;
  std::vector<int32_t> modality_;  // by token id
  int32_t next_token_;             // the first input of the next row: the last target of the previous one
  std::vector<int32_t> row_;
};

// A fixed held-out set: the first n_batches batches of ToyWorldSource(seed), documents flagged at
// doc_token as the Batcher does. Give it a seed that no training run uses.
std::vector<Batch> make_eval_set(uint64_t seed, int64_t n_batches, int64_t B, int64_t L, int64_t doc_token = -1);

}  // namespace mom::toy
