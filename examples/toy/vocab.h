// The vocabulary of the toy multimodal data, Chameleon-style: every modality is a run of discrete
// token ids in one vocabulary, and a token's modality follows from its id alone.
//
//   ids       range     modality  tokens
//   [0, 6)    special   text (0)  <pad> <bos> <eos> <text> <image> <speech>
//   [6, 27)   text      text (0)  21 words: a and at . | 6 colours | 5 shapes | top middle bottom left center right
//   [27, 34)  image     image (1) pixel colours: #bg (background) then the 6 colours
//   [34, 67)  speech    speech(2) sil (silence) then 32 units u0 .. u31
//
// A Vocab is the general description (ranges with a modality and a name) that a token file also
// carries; toy_vocab() is the one above, with a name for every token. Modality ids of a Vocab are
// 0 .. num_modalities()-1, each used by at least one range; ranges are contiguous and cover [0, size).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace mom::toy {

constexpr int32_t kNumModalities = 3;
inline constexpr std::array<const char*, kNumModalities> kModalityNames = {"text", "image", "speech"};
constexpr int32_t kModalityText = 0, kModalityImage = 1, kModalitySpeech = 2;

// Special tokens (modality text).
constexpr int32_t kPad = 0, kBos = 1, kEos = 2, kBeginText = 3, kBeginImage = 4, kBeginSpeech = 5;
constexpr int32_t kNumSpecials = 6;

// The scene's vocabulary: colours, shapes and the 3 x 3 grid of cells an object sits in.
constexpr int32_t kNumColours = 6;
constexpr int32_t kNumShapes = 5;
inline constexpr std::array<const char*, kNumColours> kColourNames = {"red",    "green",  "blue",
                                                                      "yellow", "purple", "orange"};
inline constexpr std::array<const char*, kNumShapes> kShapeNames = {"square", "ring", "plus", "cross", "triangle"};

// Text: word ids.
constexpr int32_t kTextBegin = kNumSpecials;
constexpr int32_t kWordA = kTextBegin, kWordAnd = kTextBegin + 1, kWordAt = kTextBegin + 2;
constexpr int32_t kWordPeriod = kTextBegin + 3;
constexpr int32_t kColourWordBegin = kTextBegin + 4;
constexpr int32_t kShapeWordBegin = kColourWordBegin + kNumColours;
constexpr int32_t kWordTop = kShapeWordBegin + kNumShapes, kWordMiddle = kWordTop + 1, kWordBottom = kWordTop + 2;
constexpr int32_t kWordLeft = kWordTop + 3, kWordCenter = kWordTop + 4, kWordRight = kWordTop + 5;
constexpr int32_t kTextEnd = kWordRight + 1;

// Image: one token per pixel colour.
constexpr int32_t kImageBegin = kTextEnd;
constexpr int32_t kPixelBackground = kImageBegin;
constexpr int32_t kPixelColourBegin = kImageBegin + 1;  // + colour index
constexpr int32_t kImageEnd = kPixelColourBegin + kNumColours;

// Speech: a silence unit, then the units words are spoken with.
constexpr int32_t kNumSpeechUnits = 32;
constexpr int32_t kSpeechBegin = kImageEnd;
constexpr int32_t kSilence = kSpeechBegin;
constexpr int32_t kSpeechUnitBegin = kSpeechBegin + 1;  // + unit index
constexpr int32_t kSpeechEnd = kSpeechUnitBegin + kNumSpeechUnits;

constexpr int32_t kToyVocabSize = kSpeechEnd;

// The largest vocabulary a Vocab (and so a token file) may have: 2^24 ids. Tables of one entry per id
// (the modality table, the embedding's rows) stay allocatable; real tokenisers use at most a few
// hundred thousand.
constexpr int32_t kMaxVocabSize = 1 << 24;

// The most modalities the trainer takes: each is an expert of every routed projection.
constexpr int32_t kMaxModalities = 8;

struct Vocab {
  struct Range {
    int32_t begin, end;  // ids [begin, end)
    int32_t modality;
    std::string name;
    bool operator==(const Range& o) const {
      return begin == o.begin && end == o.end && modality == o.modality && name == o.name;
    }
  };
  int32_t size = 0;
  std::vector<Range> ranges;
  std::vector<std::string> token_names;  // one per id, or empty (a vocabulary read from a token file)

  int32_t modality_of(int32_t id) const;  // throws [vocab] for an id outside [0, size)
  int32_t num_modalities() const;         // 1 + the largest modality of a range
  // One name per modality: the name of its largest range (the first of equal ones), so that the toy's
  // modality 0, the ranges "special" (6 ids) and "text" (21), is "text".
  std::vector<std::string> modality_names() const;
  // The token's name, or "<range name>:<id - range begin>" when the vocabulary has no token names.
  std::string token_str(int32_t id) const;
  // modality_of for every id, as a table of `size` entries.
  std::vector<int32_t> modality_table() const;
  // Throws "[<op>] <context>..." unless the size is in [1, kMaxVocabSize], the ranges are non-empty,
  // contiguous, cover [0, size), and use the modalities 0 .. M-1 each at least once.
  void validate(const std::string& op, const std::string& context = "") const;
};

const Vocab& toy_vocab();

// The word's id; throws [vocab] naming the known words for an unknown one.
int32_t word_id(const std::string& word);
// Splits on white space (a '.' also ends a word) and maps each word to its id: "a red ring at center."
std::vector<int32_t> encode_words(const std::string& text);

}  // namespace mom::toy
