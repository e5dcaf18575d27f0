#include "examples/toy/batcher.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"

namespace mom::toy {

namespace {

constexpr const char* kOp = "batcher";
constexpr int64_t kMaxDocumentTokens = int64_t{1} << 20;

// The entry `key` of a state, checked to be a CPU tensor of `dtype` with `numel` elements (any when -1).
std::vector<int64_t> state_i64(const std::map<std::string, Tensor>& state, const std::string& key, int64_t numel) {
  auto it = state.find(key);
  MOM_CHECK(it != state.end(), kOp, "the data state has no '" << key
            << "' (was it saved with another data source?)");
  const Tensor& t = it->second;
  MOM_CHECK(t.defined() && t.dtype() == DType::i64 && (numel < 0 || t.numel() == numel), kOp,
            "the data state's '" << key << "' should be i64 with " << numel << " elements");
  return t.to_vector<int64_t>();
}

Tensor i64_tensor(const std::vector<int64_t>& values) {
  return from_vector<int64_t>(values, {static_cast<int64_t>(values.size())});
}

std::vector<int64_t> generator_to_i64(const Generator::State& st) {
  std::vector<int64_t> v(6);
  for (int i = 0; i < 4; ++i) std::memcpy(&v[i], &st.s[i], 8);
  v[4] = st.has_spare ? 1 : 0;
  std::memcpy(&v[5], &st.spare, 8);
  return v;
}

// A saved generator state, checked: xoshiro256** never leaves the all-zero state (it would draw 0
// forever, and the world would never finish a scene), and the Box-Muller spare is a flag and a finite
// number.
Generator::State generator_from_i64(const std::vector<int64_t>& v) {
  Generator::State st{};
  for (int i = 0; i < 4; ++i) std::memcpy(&st.s[i], &v[i], 8);
  MOM_CHECK(st.s[0] | st.s[1] | st.s[2] | st.s[3], kOp, "the data state's generator is all zeros, a state no "
            "generator reaches (a damaged checkpoint?)");
  MOM_CHECK(v[4] == 0 || v[4] == 1, kOp, "the data state's generator has a spare flag of " << v[4] << ", not 0 or 1");
  st.has_spare = v[4] != 0;
  std::memcpy(&st.spare, &v[5], 8);
  MOM_CHECK(std::isfinite(st.spare), kOp, "the data state's generator holds a non-finite spare normal");
  return st;
}

// The state's keys must be exactly `keys`: an entry this source does not know means the state was
// saved by another source (or is damaged), and ignoring it would resume somewhere else.
void check_keys(const std::map<std::string, Tensor>& state, std::initializer_list<const char*> keys) {
  for (const auto& [key, t] : state) {
    bool known = false;
    for (const char* k : keys) known = known || key == k;
    MOM_CHECK(known, kOp, "the data state has an unexpected entry '" << key.substr(0, 80)
              << "' (was it saved with another data source?)");
  }
}

}  // namespace

ToyWorldSource::ToyWorldSource(uint64_t seed) : world_(seed), document_(world_.next_document()) {}

void ToyWorldSource::read(int64_t n, std::vector<int32_t>& out) {
  while (n > 0) {
    if (position_ == static_cast<int64_t>(document_.size())) {
      document_ = world_.next_document();
      position_ = 0;
    }
    int64_t take = std::min<int64_t>(n, static_cast<int64_t>(document_.size()) - position_);
    out.insert(out.end(), document_.begin() + position_, document_.begin() + position_ + take);
    position_ += take;
    n -= take;
  }
}

std::map<std::string, Tensor> ToyWorldSource::state_dict() const {
  return {{"rng", i64_tensor(generator_to_i64(world_.state()))},
          {"document", from_vector<int32_t>(document_, {static_cast<int64_t>(document_.size())})},
          {"position", i64_tensor({position_})}};
}

void ToyWorldSource::load_state_dict(const std::map<std::string, Tensor>& state) {
  Generator::State rng = generator_from_i64(state_i64(state, "rng", 6));
  int64_t position = state_i64(state, "position", 1)[0];
  check_keys(state, {"rng", "document", "position"});
  auto it = state.find("document");
  MOM_CHECK(it != state.end() && it->second.defined() && it->second.dtype() == DType::i32 && it->second.numel() > 0,
            kOp, "the data state has no i32 'document' (was it saved with another data source?)");
  MOM_CHECK(it->second.numel() <= kMaxDocumentTokens, kOp, "the data state's document has " << it->second.numel()
            << " tokens; a toy document has at most " << kMaxDocumentTokens);
  std::vector<int32_t> document = it->second.to_vector<int32_t>();
  MOM_CHECK(position >= 0 && position <= static_cast<int64_t>(document.size()), kOp,
            "the data state's position " << position << " is outside its document of " << document.size() << " tokens");
  for (int32_t t : document)
    MOM_CHECK(t >= 0 && t < kToyVocabSize, kOp, "the data state's document has token " << t
              << ", outside the vocabulary");
  world_.set_state(rng);
  document_ = std::move(document);
  position_ = position;
}

TokenFileSource::TokenFileSource(TokenFile file, std::optional<uint64_t> shuffle_seed, int64_t doc_token)
    : file_(std::move(file)), seed_(shuffle_seed) {
  MOM_CHECK(!file_.tokens.empty(), kOp, "the token file has no tokens");
  const int64_t n = static_cast<int64_t>(file_.tokens.size());
  hash_ = 0xcbf29ce484222325ull;  // FNV-1a over the tokens' little-endian bytes
  for (int32_t t : file_.tokens)
    for (int k = 0; k < 4; ++k) hash_ = (hash_ ^ ((static_cast<uint32_t>(t) >> (8 * k)) & 0xffu)) * 0x100000001b3ull;
  // Unshuffled, the file reads as one document, in order.
  starts_ = seed_ ? document_starts(file_.tokens, doc_token) : std::vector<int64_t>{0, n};
  start_epoch(0);
}

void TokenFileSource::start_epoch(int64_t epoch) {
  epoch_ = epoch;
  const int64_t D = static_cast<int64_t>(starts_.size()) - 1;
  order_.resize(D);
  for (int64_t d = 0; d < D; ++d) order_[d] = d;
  if (seed_) {  // Fisher-Yates from a generator of the seed and the epoch alone
    Generator gen(*seed_ * 0x9e3779b97f4a7c15ull + static_cast<uint64_t>(epoch) + 1);
    for (int64_t i = D - 1; i > 0; --i) std::swap(order_[i], order_[gen.randint(static_cast<uint64_t>(i) + 1)]);
  }
  before_.assign(D + 1, 0);
  for (int64_t i = 0; i < D; ++i) before_[i + 1] = before_[i] + starts_[order_[i] + 1] - starts_[order_[i]];
}

void TokenFileSource::read(int64_t n, std::vector<int32_t>& out) {
  const int64_t size = static_cast<int64_t>(file_.tokens.size());
  while (n > 0) {
    // The document holding the pass's position, and where in it.
    const int64_t i = std::upper_bound(before_.begin(), before_.end(), position_) - before_.begin() - 1;
    const int64_t d = order_[i], offset = position_ - before_[i];
    const int64_t take = std::min(n, starts_[d + 1] - starts_[d] - offset);
    const auto from = file_.tokens.begin() + starts_[d] + offset;
    out.insert(out.end(), from, from + take);
    position_ += take;
    n -= take;
    if (position_ == size) {
      position_ = 0;
      start_epoch(epoch_ + 1);
    }
  }
}

std::map<std::string, Tensor> TokenFileSource::state_dict() const {
  int64_t hash;
  std::memcpy(&hash, &hash_, 8);
  return {{"position", i64_tensor({position_})},
          {"n_tokens", i64_tensor({static_cast<int64_t>(file_.tokens.size())})},
          {"epoch", i64_tensor({epoch_})},
          {"hash", i64_tensor({hash})}};
}

void TokenFileSource::load_state_dict(const std::map<std::string, Tensor>& state) {
  int64_t n_tokens = state_i64(state, "n_tokens", 1)[0];
  int64_t position = state_i64(state, "position", 1)[0];
  int64_t epoch = state_i64(state, "epoch", 1)[0];
  int64_t hash = state_i64(state, "hash", 1)[0];
  check_keys(state, {"position", "n_tokens", "epoch", "hash"});
  MOM_CHECK(n_tokens == static_cast<int64_t>(file_.tokens.size()), kOp, "the data state is for a token file of "
            << n_tokens << " tokens, this one has " << file_.tokens.size());
  uint64_t saved_hash;
  std::memcpy(&saved_hash, &hash, 8);
  MOM_CHECK(saved_hash == hash_, kOp, "the data state is for other tokens than this token file's (same size, "
            "another content hash): the run would not resume on the data it was reading");
  MOM_CHECK(position >= 0 && position < n_tokens, kOp, "the data state's position " << position
            << " is outside the file's " << n_tokens << " tokens");
  MOM_CHECK(epoch >= 0 && epoch < (int64_t{1} << 40), kOp, "the data state's epoch " << epoch << " is out of range");
  start_epoch(epoch);
  position_ = position;
}

Batcher::Batcher(std::shared_ptr<TokenSource> source, int64_t B, int64_t L, int64_t doc_token)
    : source_(std::move(source)), B_(B), L_(L), doc_token_(doc_token) {
  MOM_CHECK(source_ != nullptr, kOp, "no token source");
  MOM_CHECK(doc_token >= -1 && doc_token < source_->vocab().size, kOp, "the document token " << doc_token
            << " is outside the vocabulary [0, " << source_->vocab().size << ") (-1: no document starts)");
  MOM_CHECK(B > 0 && L > 0 && B <= kMaxBatchTokens && L <= kMaxBatchTokens && B * L <= kMaxBatchTokens, kOp,
            "batch size " << B << " and sequence length " << L << " must be positive, with at most " << kMaxBatchTokens
                          << " tokens per batch");
  modality_ = source_->vocab().modality_table();
  row_.reserve(static_cast<size_t>(L));
  source_->read(1, row_);
  next_token_ = row_[0];
}

Batch Batcher::next() {
  const int64_t T = B_ * L_;
  std::vector<int64_t> tokens(T), targets(T);
  std::vector<int32_t> modalities(T), target_modalities(T);
  std::vector<uint8_t> starts(doc_token_ >= 0 ? T : 0);
  for (int64_t b = 0; b < B_; ++b) {
    row_.clear();
    source_->read(L_, row_);
    for (int64_t l = 0; l < L_; ++l) {
      int32_t input = l == 0 ? next_token_ : row_[l - 1], target = row_[l];
      tokens[b * L_ + l] = input;
      targets[b * L_ + l] = target;
      modalities[b * L_ + l] = modality_[input];
      target_modalities[b * L_ + l] = modality_[target];
      if (doc_token_ >= 0) starts[b * L_ + l] = input == doc_token_;
    }
    next_token_ = row_[L_ - 1];
  }
  return {from_vector(tokens, {B_, L_}), from_vector(targets, {B_, L_}), from_vector(modalities, {B_, L_}),
          from_vector(target_modalities, {B_, L_}),
          doc_token_ >= 0 ? from_vector(starts, {B_, L_}).to(DType::boolean) : Tensor()};
}

std::map<std::string, Tensor> Batcher::state_dict() const {
  std::map<std::string, Tensor> state = {{"next_token", i64_tensor({next_token_})}};
  for (auto& [key, t] : source_->state_dict()) state["source." + key] = t;
  return state;
}

void Batcher::load_state_dict(const std::map<std::string, Tensor>& state) {
  for (const auto& [key, t] : state)
    MOM_CHECK(key == "next_token" || key.rfind("source.", 0) == 0, kOp, "the data state has an unexpected entry '"
              << key.substr(0, 80) << "'");
  int64_t next_token = state_i64(state, "next_token", 1)[0];
  MOM_CHECK(next_token >= 0 && next_token < vocab().size, kOp, "the data state's next token " << next_token
            << " is outside the vocabulary [0, " << vocab().size << ")");
  std::map<std::string, Tensor> source_state;
  for (const auto& [key, t] : state)
    if (key.rfind("source.", 0) == 0) source_state[key.substr(7)] = t;
  source_->load_state_dict(source_state);
  next_token_ = static_cast<int32_t>(next_token);
}

std::vector<Batch> make_eval_set(uint64_t seed, int64_t n_batches, int64_t B, int64_t L, int64_t doc_token) {
  MOM_CHECK(n_batches > 0, kOp, "an eval set of " << n_batches << " batches");
  Batcher batcher(std::make_shared<ToyWorldSource>(seed), B, L, doc_token);
  std::vector<Batch> batches;
  for (int64_t i = 0; i < n_batches; ++i) batches.push_back(batcher.next());
  return batches;
}

}  // namespace mom::toy
