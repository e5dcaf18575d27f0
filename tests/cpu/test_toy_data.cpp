// The toy multimodal data: vocabulary, world generator, token files, batches and rendering.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <set>

#include "core/safetensors.h"
#include "examples/toy/batcher.h"
#include "examples/toy/render.h"
#include "examples/toy/token_file.h"
#include "examples/toy/vocab.h"
#include "examples/toy/world.h"
#include "tests/support.h"

namespace mom::toy {
namespace {

using mom::test::expect_error;

std::string temp_path(const std::string& name) { return test::scratch_path(name); }

std::vector<int32_t> generate_stream(uint64_t seed, int n_docs) {
  ToyWorld world(seed);
  std::vector<int32_t> stream;
  for (int i = 0; i < n_docs; ++i) {
    std::vector<int32_t> doc = world.next_document();
    stream.insert(stream.end(), doc.begin(), doc.end());
  }
  return stream;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

void put_u32_at(std::string& bytes, size_t offset, uint32_t v) {
  for (int i = 0; i < 4; ++i) bytes[offset + i] = static_cast<char>((v >> (8 * i)) & 0xff);
}

void expect_same_batch(const Batch& a, const Batch& b) {
  EXPECT_EQ(a.tokens.to_vector<int64_t>(), b.tokens.to_vector<int64_t>());
  EXPECT_EQ(a.targets.to_vector<int64_t>(), b.targets.to_vector<int64_t>());
  EXPECT_EQ(a.modalities.to_vector<int32_t>(), b.modalities.to_vector<int32_t>());
  EXPECT_EQ(a.target_modalities.to_vector<int32_t>(), b.target_modalities.to_vector<int32_t>());
}

std::vector<Object> sorted_by_cell(std::vector<Object> objects) {
  std::sort(objects.begin(), objects.end(), [](const Object& a, const Object& b) { return a.cell < b.cell; });
  return objects;
}

TEST(ToyDataVocab, RangesAndModalityOfEveryId) {
  const Vocab& v = toy_vocab();
  EXPECT_EQ(v.size, 67);
  ASSERT_EQ(v.ranges.size(), 4u);
  EXPECT_EQ(v.num_modalities(), kNumModalities);
  std::vector<int32_t> table = v.modality_table();
  for (int32_t id = 0; id < v.size; ++id) {
    int32_t expected = id < kImageBegin ? kModalityText : id < kSpeechBegin ? kModalityImage : kModalitySpeech;
    EXPECT_EQ(v.modality_of(id), expected) << v.token_str(id);
    EXPECT_EQ(table[id], expected);
  }
  EXPECT_EQ(v.token_str(kBos), "<bos>");
  EXPECT_EQ(v.token_str(kColourWordBegin + 2), "blue");
  EXPECT_EQ(v.token_str(kShapeWordBegin + 4), "triangle");
  EXPECT_EQ(v.token_str(kPixelBackground), "#bg");
  EXPECT_EQ(v.token_str(kSilence), "sil");
  EXPECT_EQ(v.token_str(kSpeechEnd - 1), "u31");
  expect_error([&] { v.modality_of(-1); }, "[vocab]");
  expect_error([&] { v.modality_of(v.size); }, "[vocab]");
  EXPECT_EQ(encode_words("a red ring at center."),
            (std::vector<int32_t>{kWordA, kColourWordBegin, kShapeWordBegin + 1, kWordAt, kWordCenter, kWordPeriod}));
  expect_error([] { encode_words("a red circle"); }, "[vocab] unknown word 'circle'");
}

TEST(ToyDataVocab, ValidateRejectsBadRanges) {
  Vocab v;
  v.size = 10;
  v.ranges = {{0, 4, 0, "a"}, {4, 10, 1, "b"}};
  v.validate("test");
  v.ranges[1].begin = 5;
  expect_error([&] { v.validate("test"); }, "[test] range 1 ('b') begins at 5");
  v.ranges[1] = {4, 9, 1, "b"};
  expect_error([&] { v.validate("test"); }, "[test] ranges cover [0, 9)");
  v.ranges[1] = {4, 10, 2, "b"};
  expect_error([&] { v.validate("test"); }, "[test] range 1 ('b') has modality 2");
  v.ranges = {{0, 4, 0, "a"}, {4, 6, 2, "b"}, {6, 10, 2, "c"}};
  expect_error([&] { v.validate("test"); }, "[test] modality 1 has no range");
}

TEST(ToyDataWorld, SameSeedSameDocumentsAndPinnedStart) {
  std::vector<int32_t> a = generate_stream(0, 20), b = generate_stream(0, 20), c = generate_stream(1, 20);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  // Pinned: a change of the generator or the document layout changes every experiment.
  ToyWorld world(0);
  std::vector<int32_t> first = world.next_document(), second = world.next_document(), third = world.next_document();
  EXPECT_EQ(first.size(), 197u);
  EXPECT_EQ(second.size(), 198u);
  EXPECT_EQ(third.size(), 143u);
  EXPECT_EQ(render_text(first), "<bos> <image> [81 pixels] <speech> [98 units] <text> a red cross at middle left and "
                                "a orange cross at center . <eos>");
  EXPECT_EQ(render_text(second), "<bos> <text> a blue plus at middle left and a green triangle at middle right . "
                                 "<image> [81 pixels] <speech> [98 units] <eos>");
}

TEST(ToyDataWorld, StateResumesTheStream) {
  ToyWorld world(5);
  for (int i = 0; i < 7; ++i) world.next_document();
  Generator::State state = world.state();
  std::vector<int32_t> expected = world.next_document();
  ToyWorld other(99);
  other.set_state(state);
  EXPECT_EQ(other.next_document(), expected);
}

TEST(ToyDataWorld, DocumentsAreWellFormed) {
  ToyWorld world(3);
  std::set<std::array<int32_t, 3>> orders;
  std::set<size_t> object_counts;
  size_t total = 0, min_len = 1 << 30, max_len = 0;
  const int n_docs = 300;
  for (int d = 0; d < n_docs; ++d) {
    std::vector<int32_t> doc = world.next_document();
    total += doc.size();
    min_len = std::min(min_len, doc.size());
    max_len = std::max(max_len, doc.size());
    std::optional<Segments> seg = split_document(doc);
    ASSERT_TRUE(seg.has_value()) << render_document(doc);
    orders.insert(seg->order);
    std::optional<Scene> scene = parse_caption(seg->caption);
    ASSERT_TRUE(scene.has_value()) << render_text(seg->caption);
    object_counts.insert(scene->objects.size());
    EXPECT_EQ(caption_tokens(*scene), seg->caption);
    ASSERT_EQ(seg->image.size(), static_cast<size_t>(kImagePixels));
    EXPECT_EQ(seg->image, image_tokens(*scene));
    std::optional<Scene> drawn = parse_image(seg->image);
    ASSERT_TRUE(drawn.has_value()) << render_image_ascii(seg->image);
    EXPECT_EQ(drawn->objects, sorted_by_cell(scene->objects));
    std::optional<std::vector<int32_t>> spoken = parse_speech(seg->speech);
    ASSERT_TRUE(spoken.has_value()) << render_speech(seg->speech);
    std::vector<int32_t> words = seg->caption;
    words.erase(std::remove(words.begin(), words.end(), kWordPeriod), words.end());
    EXPECT_EQ(*spoken, words);
  }
  EXPECT_EQ(orders.size(), 6u);
  EXPECT_EQ(object_counts, (std::set<size_t>{1, 2, 3}));
  double mean = static_cast<double>(total) / n_docs;
  EXPECT_GT(mean, 150);
  EXPECT_LT(mean, 250);
  EXPECT_GE(min_len, 100u);
  EXPECT_LE(max_len, 320u);
}

TEST(ToyDataWorld, ParsersRejectWhatTheWorldDoesNotMake) {
  EXPECT_FALSE(parse_caption(encode_words("a red square at center")).has_value());  // no "."
  EXPECT_FALSE(parse_caption(encode_words("a red square at middle center .")).has_value());
  EXPECT_FALSE(parse_caption(encode_words("a red square at center and a blue ring at center .")).has_value());
  EXPECT_TRUE(parse_caption(encode_words("a red square at center and a blue ring at top right .")).has_value());
  std::vector<int32_t> image(kImagePixels, kPixelBackground);
  image[0] = kPixelColourBegin;  // one pixel is no shape
  EXPECT_FALSE(parse_image(image).has_value());
  EXPECT_FALSE(parse_image(std::vector<int32_t>(80, kPixelBackground)).has_value());
  EXPECT_FALSE(parse_speech({kSilence, kSpeechUnitBegin}).has_value());
  EXPECT_FALSE(split_document({kBos, kBeginText, kWordPeriod, kBeginImage, kEos}).has_value());
  EXPECT_FALSE(split_document({kBos, kBeginText, kPixelBackground, kBeginImage, kBeginSpeech, kEos}).has_value());
}

TEST(ToyDataWorld, ShapesAndPronunciationsAreDistinct) {
  std::set<std::array<uint8_t, 9>> patterns;
  for (int32_t s = 0; s < kNumShapes; ++s) patterns.insert(shape_pattern(s));
  EXPECT_EQ(patterns.size(), static_cast<size_t>(kNumShapes));
  std::set<std::vector<int32_t>> spoken;
  for (int32_t w = kTextBegin; w < kTextEnd; ++w) {
    if (w == kWordPeriod) continue;
    const std::vector<int32_t>& units = pronunciation(w);
    EXPECT_GE(units.size(), 2u);
    EXPECT_LE(units.size(), 4u);
    for (size_t i = 0; i < units.size(); ++i) {
      EXPECT_TRUE(units[i] >= kSpeechUnitBegin && units[i] < kSpeechEnd);
      if (i > 0) {
        EXPECT_NE(units[i], units[i - 1]);
      }
    }
    spoken.insert(units);
  }
  EXPECT_EQ(spoken.size(), static_cast<size_t>(kTextEnd - kTextBegin - 1));
}

// The modalities differ as real ones do: images are mostly background (low entropy) and mostly equal
// the pixel above and to the left; speech holds each unit for 1-3 steps; text words rarely repeat.
TEST(ToyDataWorld, ModalitiesDifferInStatistics) {
  ToyWorld world(11);
  std::vector<std::vector<int64_t>> counts(kNumModalities, std::vector<int64_t>(kToyVocabSize, 0));
  int64_t same_above = 0, same_left = 0, pixel_pairs = 0;
  int64_t speech_repeats = 0, speech_steps = 0, text_repeats = 0, text_steps = 0;
  for (int d = 0; d < 200; ++d) {
    std::optional<Segments> seg = split_document(world.next_document());
    ASSERT_TRUE(seg.has_value());
    for (int32_t t : seg->caption) ++counts[kModalityText][t];
    for (int32_t t : seg->image) ++counts[kModalityImage][t];
    for (int32_t t : seg->speech) ++counts[kModalitySpeech][t];
    for (int32_t p = 0; p < kImagePixels; ++p) {
      if (p >= kImageSide) same_above += seg->image[p] == seg->image[p - kImageSide];
      if (p % kImageSide) same_left += seg->image[p] == seg->image[p - 1];
    }
    pixel_pairs += kImageSide * (kImageSide - 1);  // vertical pairs, and as many horizontal ones
    for (size_t i = 1; i < seg->speech.size(); ++i, ++speech_steps)
      speech_repeats += seg->speech[i] == seg->speech[i - 1];
    for (size_t i = 1; i < seg->caption.size(); ++i, ++text_steps)
      text_repeats += seg->caption[i] == seg->caption[i - 1];
  }
  std::vector<double> entropy(kNumModalities, 0.0);
  for (int32_t m = 0; m < kNumModalities; ++m) {
    double n = 0;
    for (int64_t c : counts[m]) n += static_cast<double>(c);
    for (int64_t c : counts[m])
      if (c > 0) entropy[m] -= c / n * std::log2(c / n);
  }
  EXPECT_LT(entropy[kModalityImage], 1.5);
  EXPECT_GT(entropy[kModalityText], 3.5);
  EXPECT_GT(entropy[kModalitySpeech], 3.5);
  EXPECT_GT(static_cast<double>(same_above) / pixel_pairs, 0.8);
  EXPECT_GT(static_cast<double>(same_left) / pixel_pairs, 0.8);
  EXPECT_GT(static_cast<double>(speech_repeats) / speech_steps, 0.4);
  EXPECT_LT(static_cast<double>(speech_repeats) / speech_steps, 0.7);
  EXPECT_LT(static_cast<double>(text_repeats) / text_steps, 0.05);
}

// Continuous images: a scene's pixels as patches snap back to the same pixels, also through noise up to
// 0.2 per channel (at most 0.35 from the colour, under half the palette's least distance, 1.0); the
// palette's colours are that far apart; patch c holds cell c; bad sizes and tokens give errors.
TEST(ToyDataWorld, ImagePatchesSnapBackToThePixels) {
  const auto& rgb = toy::pixel_rgb();
  for (size_t a = 0; a < rgb.size(); ++a)
    for (size_t b = 0; b < a; ++b) {
      double d = 0;
      for (int ch = 0; ch < 3; ++ch) d += (rgb[a][ch] - rgb[b][ch]) * (rgb[a][ch] - rgb[b][ch]);
      EXPECT_GE(std::sqrt(d), 1.0) << a << " " << b;
    }
  Generator gen(11), noise(12);
  for (int i = 0; i < 50; ++i) {
    const toy::Scene scene = toy::random_scene(gen);
    const std::vector<int32_t> pixels = toy::image_tokens(scene);
    std::vector<float> patches = toy::pixels_to_patches(pixels);
    ASSERT_EQ(patches.size(), static_cast<size_t>(toy::kNumPatches * toy::kPatchDim));
    EXPECT_EQ(toy::patches_to_pixels(patches), pixels);
    for (float& v : patches) v += static_cast<float>(0.4 * noise.uniform() - 0.2);
    EXPECT_EQ(toy::patches_to_pixels(patches), pixels);
    // Each object's colour fills the patch of its cell where its shape draws, and no other patch.
    for (const toy::Object& o : scene.objects) {
      const float* p = patches.data() + o.cell * toy::kPatchDim;
      const auto& pattern = toy::shape_pattern(o.shape);
      for (int k = 0; k < toy::kPatchSide * toy::kPatchSide; ++k) {
        const auto& want = rgb[pattern[k] ? 1 + o.colour : 0];
        for (int ch = 0; ch < 3; ++ch) EXPECT_NEAR(p[3 * k + ch], want[ch], 0.2 + 1e-6);
      }
    }
  }
  test::expect_error([] { toy::pixels_to_patches(std::vector<int32_t>(80, toy::kPixelBackground)); },
                     "[toy world] an image is 81 pixel tokens, got 80");
  test::expect_error([] { toy::pixels_to_patches(std::vector<int32_t>(81, toy::kBos)); },
                     "[toy world] token 1 is not a pixel");
  test::expect_error([] { toy::patches_to_pixels(std::vector<float>(242)); },
                     "[toy world] an image is 243 patch values, got 242");
}

TEST(ToyDataTokenFile, RoundTrip) {
  std::string path = temp_path("round_trip.tok");
  std::vector<int32_t> tokens = generate_stream(2, 10);
  write_token_file(path, toy_vocab(), tokens);
  TokenFile f = read_token_file(path);
  EXPECT_EQ(f.vocab.size, toy_vocab().size);
  EXPECT_EQ(f.vocab.ranges, toy_vocab().ranges);
  EXPECT_TRUE(f.vocab.token_names.empty());
  EXPECT_EQ(f.vocab.token_str(kImageBegin + 2), "image:2");
  EXPECT_EQ(f.tokens, tokens);
  // Header: 8 magic + 3 u32 + per range 4 x 4 bytes + name, + u64 count; then 4 bytes per token.
  size_t header = 8 + 12 + 8;
  for (const auto& r : toy_vocab().ranges) header += 16 + r.name.size();
  EXPECT_EQ(read_bytes(path).size(), header + 4 * tokens.size());

  Vocab user;  // a user's vocabulary: two modalities, one token file without tokens
  user.size = 300;
  user.ranges = {{0, 256, 0, "bytes"}, {256, 300, 1, "codes"}};
  write_token_file(path, user, {});
  TokenFile g = read_token_file(path);
  EXPECT_EQ(g.vocab.ranges, user.ranges);
  EXPECT_EQ(g.vocab.num_modalities(), 2);
  EXPECT_TRUE(g.tokens.empty());
  std::remove(path.c_str());
}

TEST(ToyDataTokenFile, MalformedFilesGiveClearErrors) {
  std::string good_path = temp_path("good.tok"), path = temp_path("bad.tok");
  write_token_file(good_path, toy_vocab(), generate_stream(4, 2));
  const std::string good = read_bytes(good_path);
  auto expect_bad = [&](const std::string& bytes, const std::string& what) {
    write_bytes(path, bytes);
    expect_error([&] { read_token_file(path); }, "[token_file] " + path + ": " + what);
  };
  std::string b = good;
  b[3] = 'X';
  expect_bad(b, "not a token file");
  b = good;
  put_u32_at(b, 8, 2);
  expect_bad(b, "format version 2");
  expect_bad(good.substr(0, good.size() - 3), "truncated");
  expect_bad(good.substr(0, 30), "truncated: the file ends inside");
  expect_bad(good + "xyzw", "4 unexpected bytes after the last");
  b = good;
  put_u32_at(b, 12, 70);  // vocabulary size larger than the ranges cover
  expect_bad(b, "ranges cover [0, 67), the vocabulary size is 70");
  b = good;
  put_u32_at(b, 20 + 4, 7);  // the first range ends at 7, the second still begins at 6
  expect_bad(b, "range 1 ('text') begins at 6, expected 7");
  b = good;
  put_u32_at(b, b.size() - 4, 67);  // the last token
  expect_bad(b, "token ");
  b = good;
  put_u32_at(b, 16, 0);
  expect_bad(b, "0 vocabulary ranges");
  expect_error([&] { read_token_file(temp_path("missing.tok")); }, "[token_file]");
  expect_error([&] { write_token_file(path, toy_vocab(), {1, 2, 67}); }, "[token_file] " + path + ": token 2 is 67");
  std::remove(good_path.c_str());
  std::remove(path.c_str());
}

TEST(ToyDataBatcher, ShapesTargetsAndModalities) {
  const int64_t B = 3, L = 17;
  Batcher batcher(std::make_shared<ToyWorldSource>(0), B, L);
  std::vector<int32_t> expected = generate_stream(0, 5);
  std::vector<int64_t> stream;  // inputs of every row, in order
  int64_t last_target = -1;
  for (int step = 0; step < 4; ++step) {
    Batch batch = batcher.next();
    EXPECT_EQ(batch.tokens.shape(), (Shape{B, L}));
    EXPECT_EQ(batch.tokens.dtype(), DType::i64);
    EXPECT_EQ(batch.targets.dtype(), DType::i64);
    EXPECT_EQ(batch.modalities.dtype(), DType::i32);
    EXPECT_EQ(batch.target_modalities.shape(), (Shape{B, L}));
    std::vector<int64_t> x = batch.tokens.to_vector<int64_t>(), y = batch.targets.to_vector<int64_t>();
    std::vector<int32_t> mx = batch.modalities.to_vector<int32_t>(), my = batch.target_modalities.to_vector<int32_t>();
    for (int64_t b = 0; b < B; ++b) {
      if (last_target >= 0) {
        EXPECT_EQ(x[b * L], last_target);  // a row continues where the previous ended
      }
      for (int64_t l = 0; l < L; ++l) {
        int64_t i = b * L + l;
        if (l + 1 < L) {
          EXPECT_EQ(y[i], x[i + 1]);
        }
        EXPECT_EQ(mx[i], toy_vocab().modality_of(static_cast<int32_t>(x[i])));
        EXPECT_EQ(my[i], toy_vocab().modality_of(static_cast<int32_t>(y[i])));
        stream.push_back(x[i]);
      }
      last_target = y[b * L + L - 1];
    }
  }
  ASSERT_LE(stream.size(), expected.size());
  EXPECT_EQ(stream, std::vector<int64_t>(expected.begin(), expected.begin() + stream.size()));
  expect_error([] { Batcher(std::make_shared<ToyWorldSource>(0), 0, 4); }, "[batcher]");
}

// With a document token, doc_start flags exactly the inputs equal to it; without one it is absent.
TEST(ToyDataBatcher, FlagsDocumentStarts) {
  Batcher flagged(std::make_shared<ToyWorldSource>(3), 4, 200, kBos), plain(std::make_shared<ToyWorldSource>(3), 4, 200);
  int64_t starts = 0;
  for (int step = 0; step < 3; ++step) {
    Batch a = flagged.next(), b = plain.next();
    EXPECT_FALSE(b.doc_start.defined());
    expect_same_batch(a, b);  // the same tokens
    ASSERT_TRUE(a.doc_start.defined());
    EXPECT_EQ(a.doc_start.dtype(), DType::boolean);
    EXPECT_EQ(a.doc_start.shape(), a.tokens.shape());
    std::vector<int64_t> x = a.tokens.to_vector<int64_t>();
    std::vector<uint8_t> f = a.doc_start.to_vector<uint8_t>();
    for (size_t i = 0; i < x.size(); ++i) {
      EXPECT_EQ(f[i] != 0, x[i] == kBos) << i;
      starts += f[i];
    }
  }
  EXPECT_GT(starts, 2);  // documents are far shorter than the 2400 tokens read
  EXPECT_TRUE(make_eval_set(5, 1, 2, 16, kBos)[0].doc_start.defined());
  expect_error([] { Batcher(std::make_shared<ToyWorldSource>(0), 1, 4, kToyVocabSize); }, "[batcher] the document token");
}

TEST(ToyDataBatcher, FileSourceCyclesThroughTheFile) {
  TokenFile file{toy_vocab(), {kBos, kBeginText, kWordA, kWordPeriod, kEos}};
  Batcher batcher(std::make_shared<TokenFileSource>(file), 1, 7);
  std::vector<int64_t> x = batcher.next().tokens.to_vector<int64_t>();
  EXPECT_EQ(x, (std::vector<int64_t>{kBos, kBeginText, kWordA, kWordPeriod, kEos, kBos, kBeginText}));
  expect_error([] { TokenFileSource(TokenFile{toy_vocab(), {}}); }, "[batcher] the token file has no tokens");
}

// state_dict after k batches, saved through safetensors as a checkpoint would, loaded into a fresh
// batcher: the following batches are identical.
void expect_resumes(const std::function<std::shared_ptr<TokenSource>()>& make_source, int64_t B, int64_t L) {
  Batcher original(make_source(), B, L);
  for (int i = 0; i < 5; ++i) original.next();
  std::string path = temp_path("batcher_state.safetensors");
  save_safetensors(path, original.state_dict());
  std::map<std::string, Tensor> state = load_safetensors(path).tensors;
  std::remove(path.c_str());
  Batcher resumed(make_source(), B, L);
  resumed.next();  // its own position does not matter
  resumed.load_state_dict(state);
  for (int i = 0; i < 4; ++i) expect_same_batch(original.next(), resumed.next());
}

TEST(ToyDataBatcher, ResumesWorldSource) {
  expect_resumes([] { return std::make_shared<ToyWorldSource>(7); }, 2, 50);
}

TEST(ToyDataBatcher, ResumesFileSource) {
  TokenFile file{toy_vocab(), generate_stream(8, 3)};
  expect_resumes([&] { return std::make_shared<TokenFileSource>(file); }, 2, 64);  // wraps around the file
}

// Shuffled, each pass reads every document once, whole, in an order drawn from the seed and the pass:
// passes differ, seeds differ, the same seed repeats; a state saved mid-pass (and across passes)
// resumes the same stream; a state of other tokens of the same size is refused.
TEST(ToyDataBatcher, ShufflesDocumentsPerPassResumably) {
  TokenFile file{toy_vocab(), generate_stream(4, 12)};
  std::vector<std::vector<int32_t>> docs;  // the file's documents, each from its <bos>
  for (int32_t t : file.tokens) {
    if (t == kBos) docs.emplace_back();
    docs.back().push_back(t);
  }
  ASSERT_EQ(docs.size(), 12u);
  const int64_t n = static_cast<int64_t>(file.tokens.size());
  auto pass_documents = [&](const std::vector<int32_t>& stream) {
    std::vector<std::vector<int32_t>> out;
    for (int32_t t : stream) {
      if (t == kBos) out.emplace_back();
      out.back().push_back(t);
    }
    return out;
  };
  TokenFileSource a(file, uint64_t{7}, kBos), same(file, uint64_t{7}, kBos), other(file, uint64_t{8}, kBos);
  std::vector<int32_t> p1, p2, q1, r1;
  a.read(n, p1);
  a.read(n, p2);
  same.read(n, q1);
  other.read(n, r1);
  EXPECT_EQ(p1, q1);
  EXPECT_NE(p1, p2);
  EXPECT_NE(p1, r1);
  EXPECT_NE(p1, file.tokens);
  for (const auto& pass : {p1, p2, r1}) {
    std::vector<std::vector<int32_t>> got = pass_documents(pass), want = docs;
    std::sort(got.begin(), got.end());
    std::sort(want.begin(), want.end());
    EXPECT_EQ(got, want);  // every document once, whole
  }
  // Unshuffled: the file in order, pass after pass.
  TokenFileSource plain(file);
  std::vector<int32_t> in_order;
  plain.read(n + 5, in_order);
  EXPECT_TRUE(std::equal(file.tokens.begin(), file.tokens.end(), in_order.begin()));
  EXPECT_TRUE(std::equal(in_order.begin() + n, in_order.end(), file.tokens.begin()));
  // Resume mid-pass, then across the next pass's start.
  TokenFileSource b(file, uint64_t{7}, kBos);
  std::vector<int32_t> skip, rest, resumed_rest;
  b.read(n / 3, skip);
  const std::map<std::string, Tensor> state = b.state_dict();
  b.read(n, rest);
  TokenFileSource c(file, uint64_t{7}, kBos);
  c.load_state_dict(state);
  c.read(n, resumed_rest);
  EXPECT_EQ(rest, resumed_rest);
  // The same number of tokens, another content.
  TokenFile changed = file;
  std::swap(changed.tokens[1], changed.tokens[2]);
  TokenFileSource d(changed, uint64_t{7}, kBos);
  expect_error([&] { d.load_state_dict(state); }, "[batcher] the data state is for other tokens");
}

TEST(ToyDataBatcher, RejectsAStateOfAnotherSource) {
  Batcher world(std::make_shared<ToyWorldSource>(0), 1, 8);
  TokenFile file{toy_vocab(), generate_stream(0, 2)};
  Batcher from_file(std::make_shared<TokenFileSource>(file), 1, 8);
  expect_error([&] { from_file.load_state_dict(world.state_dict()); }, "[batcher] the data state has no 'n_tokens'");
  expect_error([&] { world.load_state_dict(from_file.state_dict()); }, "[batcher] the data state has no 'rng'");
  TokenFile shorter{toy_vocab(), generate_stream(0, 1)};
  Batcher other_file(std::make_shared<TokenFileSource>(shorter), 1, 8);
  expect_error([&] { other_file.load_state_dict(from_file.state_dict()); },
               "[batcher] the data state is for a token file of");
}

TEST(ToyDataBatcher, EvalSetIsFixedAndSeparate) {
  std::vector<Batch> a = make_eval_set(1234, 2, 2, 32), b = make_eval_set(1234, 2, 2, 32);
  std::vector<Batch> c = make_eval_set(0, 2, 2, 32);
  ASSERT_EQ(a.size(), 2u);
  for (size_t i = 0; i < a.size(); ++i) expect_same_batch(a[i], b[i]);
  EXPECT_NE(a[0].tokens.to_vector<int64_t>(), c[0].tokens.to_vector<int64_t>());
}

TEST(ToyDataRender, TextSpeechImageAndPpm) {
  Scene scene{{{kNumShapes - 1, 0, 0}, {2, 2, 4}}};  // a red triangle at top left and a blue plus at center
  std::vector<int32_t> caption = caption_tokens(scene);
  EXPECT_EQ(render_text(caption), "a red triangle at top left and a blue plus at center .");
  std::vector<int32_t> pixels = image_tokens(scene);
  EXPECT_EQ(render_text({kBos, kBeginImage, pixels[0], pixels[1], kBeginSpeech, kSilence, kEos}),
            "<bos> <image> [2 pixels] <speech> [1 units] <eos>");
  EXPECT_EQ(render_speech({kSpeechUnitBegin + 1, kSpeechUnitBegin + 1, kSpeechUnitBegin + 1, kSilence, kSilence,
                           kSpeechUnitBegin + 2}),
            "u1*3 | u2");
  std::string art = render_image_ascii(pixels);
  EXPECT_EQ(art.substr(0, 18), "r . . . . . . . .\n");
  EXPECT_EQ(art.substr(18 * 3, 18), ". . . . b . . . .\n");
  EXPECT_EQ(render_image_ascii({kPixelColourBegin, kWordA}).substr(0, 6), "r ? . ");  // padded, '?' for no pixel

  std::string path = temp_path("image.ppm");
  write_image_ppm(path, pixels, 4);
  std::string ppm = read_bytes(path);
  std::remove(path.c_str());
  const std::string header = "P6\n36 36\n255\n";
  ASSERT_EQ(ppm.size(), header.size() + 36 * 36 * 3);
  EXPECT_EQ(ppm.substr(0, header.size()), header);
  EXPECT_EQ(static_cast<unsigned char>(ppm[header.size()]), 220);  // red
  expect_error([&] { write_image_ppm(path, pixels, 0); }, "[render]");

  ToyWorld world(0);
  std::string doc = render_document(world.next_document());
  EXPECT_NE(doc.find("<image>\n    "), std::string::npos) << doc;
  EXPECT_NE(doc.find("<text> a "), std::string::npos) << doc;
}

}  // namespace
}  // namespace mom::toy
