#include "examples/toy/vocab.h"

#include <algorithm>
#include <cctype>

#include "core/error.h"

namespace mom::toy {

namespace {

constexpr const char* kOp = "vocab";

Vocab build_toy_vocab() {
  Vocab v;
  v.size = kToyVocabSize;
  v.ranges = {{0, kTextBegin, kModalityText, "special"},
              {kTextBegin, kTextEnd, kModalityText, "text"},
              {kImageBegin, kImageEnd, kModalityImage, "image"},
              {kSpeechBegin, kSpeechEnd, kModalitySpeech, "speech"}};
  v.token_names = {"<pad>", "<bos>", "<eos>", "<text>", "<image>", "<speech>", "a", "and", "at", "."};
  for (const char* c : kColourNames) v.token_names.push_back(c);
  for (const char* s : kShapeNames) v.token_names.push_back(s);
  for (const char* p : {"top", "middle", "bottom", "left", "center", "right"}) v.token_names.push_back(p);
  v.token_names.push_back("#bg");
  for (const char* c : kColourNames) v.token_names.push_back(std::string("#") + c);
  v.token_names.push_back("sil");
  for (int32_t u = 0; u < kNumSpeechUnits; ++u) v.token_names.push_back("u" + std::to_string(u));
  v.validate(kOp, "toy vocabulary: ");
  MOM_CHECK(static_cast<int32_t>(v.token_names.size()) == v.size, kOp, "toy vocabulary names "
            << v.token_names.size() << " tokens, expected " << v.size);
  return v;
}

}  // namespace

int32_t Vocab::modality_of(int32_t id) const {
  for (const Range& r : ranges)
    if (id >= r.begin && id < r.end) return r.modality;
  MOM_THROW(kOp, "token id " << id << " is outside the vocabulary [0, " << size << ")");
}

int32_t Vocab::num_modalities() const {
  int32_t m = 0;
  for (const Range& r : ranges) m = std::max(m, r.modality + 1);
  return m;
}

std::vector<std::string> Vocab::modality_names() const {
  const int32_t M = num_modalities();
  std::vector<std::string> names(static_cast<size_t>(M));
  std::vector<int64_t> largest(static_cast<size_t>(M), 0);
  for (const Range& r : ranges)
    if (int64_t(r.end) - r.begin > largest[r.modality]) {
      largest[r.modality] = int64_t(r.end) - r.begin;
      names[r.modality] = r.name;
    }
  return names;
}

std::string Vocab::token_str(int32_t id) const {
  for (const Range& r : ranges)
    if (id >= r.begin && id < r.end)
      return token_names.empty() ? r.name + ":" + std::to_string(id - r.begin) : token_names[id];
  MOM_THROW(kOp, "token id " << id << " is outside the vocabulary [0, " << size << ")");
}

std::vector<int32_t> Vocab::modality_table() const {
  std::vector<int32_t> table(static_cast<size_t>(size));
  for (const Range& r : ranges)
    for (int32_t id = r.begin; id < r.end; ++id) table[id] = r.modality;
  return table;
}

void Vocab::validate(const std::string& op, const std::string& context) const {
  MOM_CHECK(size > 0 && size <= kMaxVocabSize, op, context << "vocabulary size is " << size << ", expected 1 .. "
            << kMaxVocabSize << " (2^24)");
  MOM_CHECK(!ranges.empty(), op, context << "vocabulary has no ranges");
  int32_t expected_begin = 0;
  for (size_t i = 0; i < ranges.size(); ++i) {
    const Range& r = ranges[i];
    MOM_CHECK(r.begin == expected_begin, op, context << "range " << i << " ('" << r.name << "') begins at " << r.begin
              << ", expected " << expected_begin << " (ranges must be contiguous, in order, from 0)");
    MOM_CHECK(r.end > r.begin, op, context << "range " << i << " ('" << r.name << "') [" << r.begin << ", " << r.end
              << ") is empty");
    MOM_CHECK(r.modality >= 0 && r.modality < static_cast<int32_t>(ranges.size()), op, context << "range " << i
              << " ('" << r.name << "') has modality " << r.modality << ", expected 0 .. " << ranges.size() - 1
              << " (modalities are numbered from 0 without gaps)");
    MOM_CHECK(!r.name.empty(), op, context << "range " << i << " has an empty name");
    expected_begin = r.end;
  }
  MOM_CHECK(expected_begin == size, op,
            context << "ranges cover [0, " << expected_begin << "), the vocabulary size is " << size);
  // One pass over the ranges (a token file may hold 65536 of them), not one per modality.
  const int32_t n_modalities = num_modalities();
  std::vector<bool> used(static_cast<size_t>(n_modalities), false);
  for (const Range& r : ranges) used[r.modality] = true;
  for (int32_t m = 0; m < n_modalities; ++m)
    MOM_CHECK(used[m], op, context << "modality " << m << " has no range (modalities must be 0 .. " << n_modalities - 1
              << " without gaps)");
  MOM_CHECK(token_names.empty() || static_cast<int32_t>(token_names.size()) == size, op, context <<
            token_names.size() << " token names for a vocabulary of " << size);
}

const Vocab& toy_vocab() {
  static const Vocab vocab = build_toy_vocab();
  return vocab;
}

int32_t word_id(const std::string& word) {
  const Vocab& v = toy_vocab();
  for (int32_t id = kTextBegin; id < kTextEnd; ++id)
    if (v.token_names[id] == word) return id;
  std::string known;
  for (int32_t id = kTextBegin; id < kTextEnd; ++id) known += (id > kTextBegin ? " " : "") + v.token_names[id];
  MOM_THROW(kOp, "unknown word '" << word << "'; the words are: " << known);
}

std::vector<int32_t> encode_words(const std::string& text) {
  std::vector<int32_t> ids;
  std::string word;
  auto flush = [&] {
    if (!word.empty()) ids.push_back(word_id(word));
    word.clear();
  };
  for (char ch : text) {
    if (std::isspace(static_cast<unsigned char>(ch))) {
      flush();
    } else if (ch == '.') {
      flush();
      ids.push_back(kWordPeriod);
    } else {
      word += ch;
    }
  }
  flush();
  return ids;
}

}  // namespace mom::toy
