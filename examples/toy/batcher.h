// Batches of packed documents, as llm.c packs them: the token stream (documents end to end, each
// delimited by its own <bos> ... <eos>) is cut into rows of L+1 consecutive tokens; a row's inputs
// are its first L tokens and its targets its last L, and the next row starts where this row's inputs
// ended (the stream advances by L per row, so every token is a target exactly once): no padding, and
// a row holds the end of one document and the beginning of the next. Given the token that starts a
// document (doc_token, the toy's <bos>), a batch flags every input equal to it in doc_start, and the
// model resets its state there, so that no prediction depends on another document; without one (-1)
// the flags are absent and a model reads across documents, as in llm.c.
//
// The stream comes from a TokenSource: the toy world (endless, seeded) or a token file (pass after
// pass, its documents in a new seeded order each pass unless shuffling is off).
// state_dict() holds everything that decides the following batches (the source's position, for the
// world its generator state and the document being read, and the one token carried from the last
// row), so a Batcher built the same way and given load_state_dict() continues with identical batches.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
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

// The tokens of a token file, pass after pass (epochs). Unshuffled, each pass reads the file in order.
// Shuffled (a seed given), the file is cut into documents, each beginning at a doc_token (the tokens
// before the first one form a document too), and pass e reads the documents in an order drawn from the
// seed and e alone, so that a resumed run draws the same orders. State: "epoch", "position" (the next
// token's index within the pass), "n_tokens" and "hash" (FNV-1a of the tokens), the last two checked
// against the file on load, so a run resumes only on the data it was reading.
class TokenFileSource : public TokenSource {
 public:
  // Throws [batcher] for a file without tokens.
  explicit TokenFileSource(TokenFile file, std::optional<uint64_t> shuffle_seed = std::nullopt, int64_t doc_token = -1);
  const Vocab& vocab() const override { return file_.vocab; }
  void read(int64_t n, std::vector<int32_t>& out) override;
  std::map<std::string, Tensor> state_dict() const override;
  void load_state_dict(const std::map<std::string, Tensor>& state) override;

 private:
  void start_epoch(int64_t epoch);  // the pass's document order and its prefix sums

  TokenFile file_;
  std::optional<uint64_t> seed_;
  std::vector<int64_t> starts_;  // document d is tokens [starts_[d], starts_[d + 1])
  uint64_t hash_ = 0;
  int64_t epoch_ = 0, position_ = 0;
  std::vector<int64_t> order_;   // this pass's documents, in reading order
  std::vector<int64_t> before_;  // before_[i]: tokens of order_[0 .. i) (before_.back() = the file's size)
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
