// The toy world: seeded documents of three modalities that describe one scene.
//
// A scene is 1-3 objects, each a shape in a colour, in distinct cells of a 3 x 3 grid (cell = 3 * row +
// column, row 0 at the top). A document is
//
//     <bos>  S1 S2 S3  <eos>
//
// where S1 S2 S3 are the three segments below in one of the 6 orders (uniformly drawn), so that each
// modality is sometimes predicted from the others and sometimes predicts them:
//   caption  <text> a red square at top left and a blue plus at center .
//            objects in scene order, "and" between them; cell words: "<top|middle|bottom> <left|center|right>",
//            except the middle cell, which is "center".
//   image    <image> then 81 pixel tokens: a 9 x 9 raster in row-major order; each object draws its shape's
//            3 x 3 pattern in its colour over its cell, the rest is background.
//   speech   <speech> then the caption spoken: each word except "." becomes its fixed 2-4 unit
//            pronunciation (a deterministic lexicon), every unit repeated 1-3 times (a random duration),
//            and a silence of 1-3 units between words.
// Documents are about 120-280 tokens long (mean about 193). Everything random comes from one mom::Generator,
// so a seed gives the same documents on every machine, and state()/set_state() resume the stream.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <vector>

#include "core/random.h"
#include "examples/toy/vocab.h"

namespace mom::toy {

constexpr int32_t kGridSide = 3;   // cells per side
constexpr int32_t kCellSide = 3;   // pixels per cell side
constexpr int32_t kImageSide = kGridSide * kCellSide;
constexpr int32_t kImagePixels = kImageSide * kImageSide;
constexpr int32_t kMaxObjects = 3;

struct Object {
  int32_t shape;   // index into kShapeNames
  int32_t colour;  // index into kColourNames
  int32_t cell;    // 3 * row + column
  bool operator==(const Object& o) const { return shape == o.shape && colour == o.colour && cell == o.cell; }
};

struct Scene {
  std::vector<Object> objects;  // in caption order
};

// The 3 x 3 pattern of a shape, row-major, 1 = drawn.
const std::array<uint8_t, kCellSide * kCellSide>& shape_pattern(int32_t shape);
// The units (speech token ids) a word (text token id, not ".") is spoken with.
const std::vector<int32_t>& pronunciation(int32_t word);

Scene random_scene(Generator& gen);
// The caption's words, without the <text> marker.
std::vector<int32_t> caption_tokens(const Scene& scene);
// The 81 pixel tokens, without the <image> marker.
std::vector<int32_t> image_tokens(const Scene& scene);
// The speech units of the caption's words, without the <speech> marker; draws the durations from gen.
std::vector<int32_t> speech_tokens(const std::vector<int32_t>& caption_words, Generator& gen);

// The inverses, for tests and for checking generated segments: nullopt when the tokens are not what
// the functions above produce (an ill-formed caption, an image with a pattern that is no shape, speech
// whose units spell no word).
std::optional<Scene> parse_caption(const std::vector<int32_t>& words);
std::optional<Scene> parse_image(const std::vector<int32_t>& pixels);  // objects in raster order of cells
std::optional<std::vector<int32_t>> parse_speech(const std::vector<int32_t>& units);  // the spoken words

// Continuous images (the Transfusion setting): the raster as kNumPatches patches of kPatchDim values.
// Patch c is grid cell c (so a patch holds at most one object); its 3 x 3 pixels in row-major order,
// each pixel's R, G, B in [-1, 1] from pixel_rgb(). Background is black, the colours are corners and
// edge midpoints of the RGB cube, at least 1.0 apart, so a pixel within 0.5 of its colour snaps back.
constexpr int32_t kPatchSide = kCellSide;
constexpr int32_t kNumPatches = kGridSide * kGridSide;
constexpr int32_t kPatchDim = kPatchSide * kPatchSide * 3;
// The RGB of each pixel token, background first, then kColourNames' order.
const std::array<std::array<float, 3>, kNumColours + 1>& pixel_rgb();
// pixels (kImagePixels tokens, as image_tokens gives) -> kNumPatches * kPatchDim values.
std::vector<float> pixels_to_patches(const std::vector<int32_t>& pixels);
// The inverse for any values: each pixel becomes the token of the nearest colour (Euclidean in RGB).
// patches must hold kNumPatches * kPatchDim values.
std::vector<int32_t> patches_to_pixels(const std::vector<float>& patches);

// The segments of a document, without their markers; nullopt unless the document is <bos>, the three
// segments each exactly once, <eos>.
struct Segments {
  std::vector<int32_t> caption, image, speech;
  std::array<int32_t, 3> order{};  // the segments' modalities in document order
};
std::optional<Segments> split_document(const std::vector<int32_t>& document);

class ToyWorld {
 public:
  explicit ToyWorld(uint64_t seed);
  std::vector<int32_t> next_document();
  Generator::State state() const { return gen_.state(); }
  void set_state(const Generator::State& state) { gen_.set_state(state); }

 private:
  Generator gen_;
};

}  // namespace mom::toy
