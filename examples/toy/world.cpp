#include "examples/toy/world.h"

#include <algorithm>

#include "core/error.h"

namespace mom::toy {

namespace {

constexpr uint64_t kLexiconSeed = 0x5eec4;  // fixes the pronunciations; changing it changes every document

const std::array<std::array<uint8_t, 9>, kNumShapes> kPatterns = {{
    {1, 1, 1, 1, 1, 1, 1, 1, 1},  // square
    {1, 1, 1, 1, 0, 1, 1, 1, 1},  // ring
    {0, 1, 0, 1, 1, 1, 0, 1, 0},  // plus
    {1, 0, 1, 0, 1, 0, 1, 0, 1},  // cross
    {1, 0, 0, 1, 1, 0, 1, 1, 1},  // triangle
}};

int32_t draw(Generator& gen, int32_t n) { return static_cast<int32_t>(gen.randint(static_cast<uint64_t>(n))); }

// Each spoken word gets 2-4 units, neighbours distinct (so a run of equal units is one unit held long),
// and no two words the same sequence (so speech decodes back to words).
std::vector<std::vector<int32_t>> build_lexicon() {
  Generator gen(kLexiconSeed);
  std::vector<std::vector<int32_t>> lexicon(kTextEnd - kTextBegin);
  for (int32_t word = kTextBegin; word < kTextEnd; ++word) {
    if (word == kWordPeriod) continue;
    std::vector<int32_t> units;
    do {
      units.assign(static_cast<size_t>(2 + draw(gen, 3)), 0);
      for (size_t i = 0; i < units.size(); ++i) {
        do {
          units[i] = kSpeechUnitBegin + draw(gen, kNumSpeechUnits);
        } while (i > 0 && units[i] == units[i - 1]);
      }
    } while (std::find(lexicon.begin(), lexicon.end(), units) != lexicon.end());
    lexicon[word - kTextBegin] = units;
  }
  return lexicon;
}

const std::vector<std::vector<int32_t>>& lexicon() {
  static const std::vector<std::vector<int32_t>> table = build_lexicon();
  return table;
}

void append_cell_words(int32_t cell, std::vector<int32_t>& out) {
  static const int32_t rows[kGridSide] = {kWordTop, kWordMiddle, kWordBottom};
  static const int32_t cols[kGridSide] = {kWordLeft, kWordCenter, kWordRight};
  if (cell == 4) {
    out.push_back(kWordCenter);
    return;
  }
  out.push_back(rows[cell / kGridSide]);
  out.push_back(cols[cell % kGridSide]);
}

bool is_word(int32_t t) { return t >= kTextBegin && t < kTextEnd; }
bool is_pixel(int32_t t) { return t >= kImageBegin && t < kImageEnd; }
bool is_speech(int32_t t) { return t >= kSpeechBegin && t < kSpeechEnd; }

}  // namespace

const std::array<uint8_t, kCellSide * kCellSide>& shape_pattern(int32_t shape) {
  MOM_CHECK(shape >= 0 && shape < kNumShapes, "toy_world", "shape " << shape << " is not in [0, " << kNumShapes << ")");
  return kPatterns[shape];
}

const std::vector<int32_t>& pronunciation(int32_t word) {
  MOM_CHECK(is_word(word) && word != kWordPeriod, "toy_world", "token " << word << " is not a spoken word");
  return lexicon()[word - kTextBegin];
}

Scene random_scene(Generator& gen) {
  Scene scene;
  std::vector<int32_t> free_cells(kGridSide * kGridSide);
  for (int32_t c = 0; c < kGridSide * kGridSide; ++c) free_cells[c] = c;
  int32_t n = 1 + draw(gen, kMaxObjects);
  for (int32_t i = 0; i < n; ++i) {
    Object o;
    o.shape = draw(gen, kNumShapes);
    o.colour = draw(gen, kNumColours);
    int32_t k = draw(gen, static_cast<int32_t>(free_cells.size()));
    o.cell = free_cells[k];
    free_cells.erase(free_cells.begin() + k);
    scene.objects.push_back(o);
  }
  return scene;
}

std::vector<int32_t> caption_tokens(const Scene& scene) {
  std::vector<int32_t> words;
  for (size_t i = 0; i < scene.objects.size(); ++i) {
    const Object& o = scene.objects[i];
    if (i > 0) words.push_back(kWordAnd);
    words.push_back(kWordA);
    words.push_back(kColourWordBegin + o.colour);
    words.push_back(kShapeWordBegin + o.shape);
    words.push_back(kWordAt);
    append_cell_words(o.cell, words);
  }
  words.push_back(kWordPeriod);
  return words;
}

std::vector<int32_t> image_tokens(const Scene& scene) {
  std::vector<int32_t> pixels(kImagePixels, kPixelBackground);
  for (const Object& o : scene.objects) {
    const auto& pattern = shape_pattern(o.shape);
    int32_t top = (o.cell / kGridSide) * kCellSide, left = (o.cell % kGridSide) * kCellSide;
    for (int32_t r = 0; r < kCellSide; ++r)
      for (int32_t c = 0; c < kCellSide; ++c)
        if (pattern[r * kCellSide + c]) pixels[(top + r) * kImageSide + left + c] = kPixelColourBegin + o.colour;
  }
  return pixels;
}

const std::array<std::array<float, 3>, kNumColours + 1>& pixel_rgb() {
  // background, red, green, blue, yellow, purple, orange; RGB in [0, 1] mapped to [-1, 1]
  static const std::array<std::array<float, 3>, kNumColours + 1> rgb = {{{-1.f, -1.f, -1.f},
                                                                        {1.f, -1.f, -1.f},
                                                                        {-1.f, 1.f, -1.f},
                                                                        {-1.f, -1.f, 1.f},
                                                                        {1.f, 1.f, -1.f},
                                                                        {1.f, -1.f, 1.f},
                                                                        {1.f, 0.f, -1.f}}};
  return rgb;
}

namespace {
// The pixel (row, column) of value k of patch p.
int32_t patch_pixel(int32_t p, int32_t k) {
  const int32_t pixel = k / 3, top = (p / kGridSide) * kPatchSide, left = (p % kGridSide) * kPatchSide;
  return (top + pixel / kPatchSide) * kImageSide + left + pixel % kPatchSide;
}
}  // namespace

std::vector<float> pixels_to_patches(const std::vector<int32_t>& pixels) {
  MOM_CHECK(pixels.size() == static_cast<size_t>(kImagePixels), "toy world",
            "an image is " << kImagePixels << " pixel tokens, got " << pixels.size());
  const auto bad = std::find_if_not(pixels.begin(), pixels.end(), is_pixel);
  MOM_CHECK(bad == pixels.end(), "toy world", "token " << *bad << " is not a pixel");
  std::vector<float> patches(kNumPatches * kPatchDim);
  for (int32_t p = 0; p < kNumPatches; ++p)
    for (int32_t k = 0; k < kPatchDim; ++k)
      patches[p * kPatchDim + k] = pixel_rgb()[pixels[patch_pixel(p, k)] - kPixelBackground][k % 3];
  return patches;
}

std::vector<int32_t> patches_to_pixels(const std::vector<float>& patches) {
  MOM_CHECK(patches.size() == static_cast<size_t>(kNumPatches * kPatchDim), "toy world",
            "an image is " << kNumPatches * kPatchDim << " patch values, got " << patches.size());
  std::vector<int32_t> pixels(kImagePixels);
  for (int32_t p = 0; p < kNumPatches; ++p)
    for (int32_t k = 0; k < kPatchDim; k += 3) {
      const float* v = patches.data() + p * kPatchDim + k;
      int32_t best = 0;
      float best_d = 0;
      for (int32_t c = 0; c <= kNumColours; ++c) {
        float d = 0;
        for (int32_t ch = 0; ch < 3; ++ch) d += (v[ch] - pixel_rgb()[c][ch]) * (v[ch] - pixel_rgb()[c][ch]);
        if (c == 0 || d < best_d) best = c, best_d = d;
      }
      pixels[patch_pixel(p, k)] = kPixelBackground + best;
    }
  return pixels;
}

std::vector<int32_t> speech_tokens(const std::vector<int32_t>& caption_words, Generator& gen) {
  std::vector<int32_t> units;
  bool first = true;
  for (int32_t word : caption_words) {
    if (word == kWordPeriod) continue;
    if (!first) units.insert(units.end(), static_cast<size_t>(1 + draw(gen, 3)), kSilence);
    first = false;
    for (int32_t u : pronunciation(word)) units.insert(units.end(), static_cast<size_t>(1 + draw(gen, 3)), u);
  }
  return units;
}

std::optional<Scene> parse_caption(const std::vector<int32_t>& words) {
  Scene scene;
  size_t i = 0;
  auto next = [&]() -> int32_t { return i < words.size() ? words[i++] : -1; };
  while (true) {
    if (!scene.objects.empty() && next() != kWordAnd) return std::nullopt;
    Object o;
    if (next() != kWordA) return std::nullopt;
    o.colour = next() - kColourWordBegin;
    o.shape = next() - kShapeWordBegin;
    if (o.colour < 0 || o.colour >= kNumColours || o.shape < 0 || o.shape >= kNumShapes) return std::nullopt;
    if (next() != kWordAt) return std::nullopt;
    int32_t row_word = next();
    if (row_word == kWordCenter) {
      o.cell = 4;
    } else {
      int32_t row = row_word - kWordTop, col = next() - kWordLeft;
      if (row < 0 || row >= kGridSide || col < 0 || col >= kGridSide || (row == 1 && col == 1)) return std::nullopt;
      o.cell = row * kGridSide + col;
    }
    for (const Object& p : scene.objects)
      if (p.cell == o.cell) return std::nullopt;
    scene.objects.push_back(o);
    if (scene.objects.size() > static_cast<size_t>(kMaxObjects)) return std::nullopt;
    if (i < words.size() && words[i] == kWordPeriod) {
      ++i;
      break;
    }
  }
  if (i != words.size()) return std::nullopt;
  return scene;
}

std::optional<Scene> parse_image(const std::vector<int32_t>& pixels) {
  if (pixels.size() != static_cast<size_t>(kImagePixels)) return std::nullopt;
  if (!std::all_of(pixels.begin(), pixels.end(), is_pixel)) return std::nullopt;
  Scene scene;
  for (int32_t cell = 0; cell < kGridSide * kGridSide; ++cell) {
    int32_t top = (cell / kGridSide) * kCellSide, left = (cell % kGridSide) * kCellSide;
    std::array<uint8_t, 9> mask{};
    int32_t colour = -1;
    for (int32_t r = 0; r < kCellSide; ++r)
      for (int32_t c = 0; c < kCellSide; ++c) {
        int32_t p = pixels[(top + r) * kImageSide + left + c];
        if (p == kPixelBackground) continue;
        if (colour >= 0 && p - kPixelColourBegin != colour) return std::nullopt;
        colour = p - kPixelColourBegin;
        mask[r * kCellSide + c] = 1;
      }
    if (colour < 0) continue;
    auto it = std::find(kPatterns.begin(), kPatterns.end(), mask);
    if (it == kPatterns.end()) return std::nullopt;
    scene.objects.push_back({static_cast<int32_t>(it - kPatterns.begin()), colour, cell});
  }
  return scene;
}

std::optional<std::vector<int32_t>> parse_speech(const std::vector<int32_t>& units) {
  if (units.empty() || units.front() == kSilence || units.back() == kSilence) return std::nullopt;
  if (!std::all_of(units.begin(), units.end(), is_speech)) return std::nullopt;
  std::vector<int32_t> words;
  std::vector<int32_t> spoken;  // the current word's units, runs collapsed
  auto finish_word = [&]() -> bool {
    for (int32_t w = kTextBegin; w < kTextEnd; ++w)
      if (w != kWordPeriod && pronunciation(w) == spoken) {
        words.push_back(w);
        spoken.clear();
        return true;
      }
    return false;
  };
  for (size_t i = 0; i < units.size(); ++i) {
    if (i > 0 && units[i] == units[i - 1]) continue;
    if (units[i] == kSilence) {
      if (!finish_word()) return std::nullopt;
    } else {
      spoken.push_back(units[i]);
    }
  }
  if (!finish_word()) return std::nullopt;
  return words;
}

std::optional<Segments> split_document(const std::vector<int32_t>& document) {
  if (document.size() < 5 || document.front() != kBos || document.back() != kEos) return std::nullopt;
  Segments seg;
  std::vector<int32_t>* current = nullptr;
  bool (*belongs)(int32_t) = nullptr;
  int32_t n_segments = 0;
  bool seen[3] = {false, false, false};
  for (size_t i = 1; i + 1 < document.size(); ++i) {
    int32_t t = document[i];
    int32_t modality = t == kBeginText     ? kModalityText
                       : t == kBeginImage  ? kModalityImage
                       : t == kBeginSpeech ? kModalitySpeech
                                           : -1;
    if (modality >= 0) {
      if (seen[modality]) return std::nullopt;
      seen[modality] = true;
      seg.order[n_segments++] = modality;
      current = modality == kModalityText ? &seg.caption : modality == kModalityImage ? &seg.image : &seg.speech;
      belongs = modality == kModalityText ? is_word : modality == kModalityImage ? is_pixel : is_speech;
      continue;
    }
    if (current == nullptr || !belongs(t)) return std::nullopt;
    current->push_back(t);
  }
  if (n_segments != 3) return std::nullopt;
  return seg;
}

ToyWorld::ToyWorld(uint64_t seed) : gen_(seed) {}

std::vector<int32_t> ToyWorld::next_document() {
  static const std::array<std::array<int32_t, 3>, 6> orders = {
      {{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}}};
  Scene scene = random_scene(gen_);
  const std::array<int32_t, 3>& order = orders[draw(gen_, 6)];
  std::vector<int32_t> caption = caption_tokens(scene);
  std::vector<int32_t> speech = speech_tokens(caption, gen_);
  std::vector<int32_t> doc = {kBos};
  for (int32_t modality : order) {
    if (modality == kModalityText) {
      doc.push_back(kBeginText);
      doc.insert(doc.end(), caption.begin(), caption.end());
    } else if (modality == kModalityImage) {
      doc.push_back(kBeginImage);
      std::vector<int32_t> pixels = image_tokens(scene);
      doc.insert(doc.end(), pixels.begin(), pixels.end());
    } else {
      doc.push_back(kBeginSpeech);
      doc.insert(doc.end(), speech.begin(), speech.end());
    }
  }
  doc.push_back(kEos);
  return doc;
}

}  // namespace mom::toy
