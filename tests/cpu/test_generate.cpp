// Generation for the toy data (examples/toy/generate.h): the sampler against the distribution it
// should draw from, greedy limits of top-k and top-p, seeds, segment constraints, a batch of different
// captions against one generation per caption, and the image grid as PPM and PNG.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>

#include "examples/toy/generate.h"
#include "examples/toy/render.h"
#include "examples/toy/world.h"
#include "tests/support.h"
#include "tests/toy_support.h"

namespace mom::toy {
namespace {

using test::expect_error;

// The tiny trainer config's MoM model of the toy vocabulary, untrained, with its final norm's weight
// scaled up: logits spread over several nats that depend on every token read, so that different captions
// lead to different greedy continuations (a briefly trained model continues every caption alike).
struct Model {
  std::shared_ptr<nn::MambaLM> model;
  int64_t doc_token;
};
const Model& sharp_model() {
  static const Model m = [] {
    TrainConfig c = test::tiny_train_config(test::scratch_path("unused"));
    Generator gen(17);
    auto model = std::make_shared<nn::MambaLM>(c.lm_config(kToyVocabSize), gen);
    float* w = model->norm_f->weight.data<float>();
    for (int64_t i = 0; i < model->norm_f->weight.numel(); ++i) w[i] *= 40;
    // A larger <eos> row (the head is tied to the embedding): some rows end their speech early.
    float* eos = model->embedding->weight.data<float>() + kEos * c.d_model;
    for (int64_t i = 0; i < c.d_model; ++i) eos[i] *= 10;
    return Model{model, c.doc_token};
  }();
  return m;
}

std::vector<int32_t> caption_of(const std::string& text) { return encode_words(text); }

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

uint32_t big_endian(const std::string& s, size_t at) {
  uint32_t v = 0;
  for (size_t i = 0; i < 4; ++i) v = v << 8 | static_cast<unsigned char>(s[at + i]);
  return v;
}

int32_t greedy(const std::vector<float>& logits, const std::vector<TokenRange>& allowed) {
  int32_t best = -1;
  for (const TokenRange& r : allowed)
    for (int32_t t = r.begin; t < r.end; ++t)
      if (best < 0 || logits[t] > logits[best]) best = t;
  return best;
}

TEST(GenerateSampling, TopKOneAndTinyTopPAreGreedy) {
  Generator gen(3), draws(4);
  const std::vector<TokenRange> allowed = {{10, 30}, {2, 3}};
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<float> logits(40);
    for (float& l : logits) l = static_cast<float>(3 * gen.normal());
    if (trial % 4 == 0) logits[17] = logits[12] = 50;  // a tie: the first allowed of equals wins
    const int32_t want = greedy(logits, allowed);
    EXPECT_EQ(sample_token(logits.data(), 40, allowed, {0.0, 0, 1.0}, draws), want);
    EXPECT_EQ(sample_token(logits.data(), 40, allowed, {1.5, 1, 1.0}, draws), want);
    EXPECT_EQ(sample_token(logits.data(), 40, allowed, {1.5, 0, 1e-9}, draws), want);
    EXPECT_EQ(sample_token(logits.data(), 40, allowed, {0.0, 5, 0.5}, draws), want);  // temperature 0 wins
    if (trial % 4 == 0) {
      EXPECT_EQ(want, 12);
    }
  }
}

TEST(GenerateSampling, DrawsTheTruncatedSoftmax) {
  // Probabilities 0.5 0.3 0.15 0.05 at temperature 1.
  const std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)};
  const std::vector<TokenRange> all = {{0, 4}};
  auto frequencies = [&](const SamplingOptions& o) {
    Generator gen(11);
    std::vector<double> f(4, 0);
    const int n = 40000;
    for (int i = 0; i < n; ++i) f[sample_token(logits.data(), 4, all, o, gen)] += 1.0 / n;
    return f;
  };
  auto expect_near = [](const std::vector<double>& got, const std::vector<double>& want) {
    for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], 0.01) << "token " << i;
  };
  expect_near(frequencies({1.0, 0, 1.0}), {0.5, 0.3, 0.15, 0.05});
  // Top-k 2: 0.5 and 0.3 renormalised.
  expect_near(frequencies({1.0, 2, 1.0}), {0.625, 0.375, 0, 0});
  // Top-p 0.7: 0.5 is short of it, 0.5 + 0.3 reaches it.
  expect_near(frequencies({1.0, 0, 0.7}), {0.625, 0.375, 0, 0});
  // Top-p 0.9 keeps three; top-k 3 and top-p 0.99 together keep three.
  expect_near(frequencies({1.0, 0, 0.9}), {0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0});
  expect_near(frequencies({1.0, 3, 0.99}), {0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0});
  // Temperature 2: probabilities proportional to sqrt(p); top-p applies after the temperature.
  const double z = std::sqrt(0.5) + std::sqrt(0.3) + std::sqrt(0.15) + std::sqrt(0.05);
  expect_near(frequencies({2.0, 0, 1.0}),
              {std::sqrt(0.5) / z, std::sqrt(0.3) / z, std::sqrt(0.15) / z, std::sqrt(0.05) / z});
  // Top-p 0.6 at temperature 2: the first is 0.38 of z, the first two 0.67.
  const double two = std::sqrt(0.5) + std::sqrt(0.3);
  expect_near(frequencies({2.0, 0, 0.6}), {std::sqrt(0.5) / two, std::sqrt(0.3) / two, 0, 0});
}

TEST(GenerateSampling, BadOptionsAndRangesAreRefused) {
  expect_error([] { check_sampling_options({0.0, -1, 1.0}); }, "[generate] --top-k -1 is negative");
  expect_error([] { check_sampling_options({0.0, 0, 0.0}); }, "[generate] --top-p 0 is not in (0, 1]");
  expect_error([] { check_sampling_options({0.0, 0, 1.5}); }, "[generate] --top-p 1.5 is not in (0, 1]");
  expect_error([] { check_sampling_options({-1.0, 0, 1.0}); }, "[generate] --temperature -1");
  expect_error([] { check_sampling_options({NAN, 0, 1.0}); }, "[generate] --temperature");
  check_sampling_options({0.5, 100, 1.0});
  std::vector<float> logits(8, 0.0f);
  Generator gen(0);
  expect_error([&] { sample_token(logits.data(), 8, {{6, 9}}, {}, gen); }, "[generate] allowed tokens [6, 9)");
  expect_error([&] { sample_token(logits.data(), 8, {{3, 3}}, {}, gen); }, "[generate] no token is allowed");
  logits[5] = NAN;
  expect_error([&] { sample_token(logits.data(), 8, {{4, 6}}, {}, gen); },
               "[generate] the model's logits are not finite");
  EXPECT_EQ(sample_token(logits.data(), 8, {{0, 5}}, {}, gen), 0);  // the NaN is not among the allowed
}

TEST(Generate, EverySampledTokenIsInItsSegment) {
  const Model& t = sharp_model();
  Generator gen(5);
  const std::vector<std::vector<int32_t>> captions(6, caption_of("a red square at top left ."));
  for (int64_t max_speech : {0, 12, 200}) {
    std::vector<SceneSample> out =
        generate_from_captions(*t.model, captions, {2.0, 0, 1.0}, gen, max_speech, t.doc_token);
    ASSERT_EQ(out.size(), captions.size());
    bool reached_cap = false;
    for (const SceneSample& s : out) {
      ASSERT_EQ(s.image.size(), static_cast<size_t>(kImagePixels));
      for (int32_t p : s.image) EXPECT_TRUE(p >= kImageBegin && p < kImageEnd) << p;
      EXPECT_LE(static_cast<int64_t>(s.speech.size()), max_speech);
      for (int32_t u : s.speech) EXPECT_TRUE(u >= kSpeechBegin && u < kSpeechEnd) << u;
      reached_cap = reached_cap || static_cast<int64_t>(s.speech.size()) == max_speech;
    }
    // Some row speaks 12 units without drawing <eos>, and max_speech 0 stops every row at once.
    if (max_speech <= 12) {
      EXPECT_TRUE(reached_cap) << max_speech;
    }
  }
}

TEST(Generate, SeedsRepeatAndDiffer) {
  const Model& t = sharp_model();
  const std::vector<std::vector<int32_t>> captions(3, caption_of("a blue ring at center ."));
  auto run = [&](uint64_t seed, const SamplingOptions& o) {
    Generator gen(seed);
    return generate_from_captions(*t.model, captions, o, gen, 40, t.doc_token);
  };
  auto same = [](const std::vector<SceneSample>& a, const std::vector<SceneSample>& b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
      if (a[i].image != b[i].image || a[i].speech != b[i].speech) return false;
    return true;
  };
  const SamplingOptions warm{0.9, 20, 0.95};
  EXPECT_TRUE(same(run(7, warm), run(7, warm)));
  EXPECT_FALSE(same(run(7, warm), run(8, warm)));
  // Rows of one batch draw differently too.
  std::vector<SceneSample> rows = run(7, warm);
  EXPECT_NE(rows[0].image, rows[1].image);
  // Greedy ignores the seed; top-k 1 and top-p near 0 at any temperature are greedy.
  const std::vector<SceneSample> g = run(1, {});
  EXPECT_TRUE(same(g, run(2, {})));
  EXPECT_TRUE(same(g, run(3, {1.5, 1, 1.0})));
  EXPECT_TRUE(same(g, run(4, {1.5, 0, 1e-9})));
  EXPECT_EQ(g[0].image, g[2].image);
  EXPECT_EQ(g[0].speech, g[2].speech);
}

TEST(Generate, ABatchOfCaptionsIsTheRowsGeneratedOneByOne) {
  const Model& t = sharp_model();
  Generator world(21);
  std::vector<std::vector<int32_t>> captions = {caption_of("a green cross at bottom right ."),
                                                caption_of("a red square at top left and a blue plus at center ."),
                                                caption_of("a yellow triangle at middle left .")};
  for (int i = 0; i < 3; ++i) captions.push_back(caption_tokens(random_scene(world)));
  ASSERT_NE(captions[0].size(), captions[1].size());
  for (const SamplingOptions& o : {SamplingOptions{}, SamplingOptions{0.7, 1, 1.0}}) {
    Generator gen(0);
    std::vector<SceneSample> batch = generate_from_captions(*t.model, captions, o, gen, 60, t.doc_token);
    ASSERT_EQ(batch.size(), captions.size());
    // The captions lead to different continuations, so a row that read another row's tokens would show.
    int differing = 0;
    for (size_t r = 1; r < captions.size(); ++r)
      differing += batch[r].image != batch[0].image || batch[r].speech != batch[0].speech;
    EXPECT_GE(differing, 3);
    // Rows end at different positions: captions of different lengths, and speech ended by <eos> or by
    // max_speech, so finished rows leave the batch while others run on.
    int ended_early = 0;
    for (const SceneSample& b : batch) ended_early += b.speech.size() < 60;
    EXPECT_GE(ended_early, 1);
    EXPECT_LT(ended_early, static_cast<int>(batch.size()));
    for (size_t r = 0; r < captions.size(); ++r) {
      std::vector<SceneSample> one = generate_from_captions(*t.model, {captions[r]}, o, gen, 60, t.doc_token);
      EXPECT_EQ(batch[r].image, one[0].image) << "row " << r;
      EXPECT_EQ(batch[r].speech, one[0].speech) << "row " << r;
    }
  }
}

TEST(Generate, BadInputIsRefused) {
  const Model& t = sharp_model();
  Generator gen(0);
  const std::vector<int32_t> caption = caption_of("a red ring at center .");
  expect_error([&] { generate_from_captions(*t.model, {}, {}, gen, 10, 1); }, "[generate] no caption");
  expect_error([&] { generate_from_captions(*t.model, {caption, {kImageBegin}}, {}, gen, 10, 1); },
               "[generate] caption 1 holds token 27");
  expect_error([&] { generate_from_captions(*t.model, {caption}, {}, gen, -1, 1); }, "[generate] --max-speech -1");
  expect_error([&] { generate_from_captions(*t.model, {caption}, {0.0, 0, 2.0}, gen, 10, 1); }, "[generate] --top-p 2");
  Generator init(0);
  nn::LMConfig other;
  other.vocab_size = 80;
  other.n_layers = 1;
  other.mixer.d_model = 8;
  nn::MambaLM wrong(other, init);
  expect_error([&] { generate_from_captions(wrong, {caption}, {}, gen, 10, 1); },
               "[generate] the model has 80 token ids");
}

TEST(Generate, CaptionChecks) {
  const std::vector<int32_t> caption = caption_of("a red triangle at top left and a blue plus at center .");
  Scene scene{{{kNumShapes - 1, 0, 0}, {2, 2, 4}}};
  std::vector<int32_t> image = image_tokens(scene);
  Generator gen(0);
  std::vector<int32_t> speech = speech_tokens(caption, gen);
  EXPECT_TRUE(image_matches_caption(caption, image));
  EXPECT_TRUE(speech_matches_caption(caption, speech));
  // The objects in the other order draw the same image.
  EXPECT_TRUE(image_matches_caption(caption_of("a blue plus at center and a red triangle at top left ."), image));
  EXPECT_FALSE(image_matches_caption(caption_of("a red triangle at top left ."), image));
  EXPECT_FALSE(speech_matches_caption(caption_of("a red triangle at top left ."), speech));
  image[0] = kPixelBackground + 2;
  EXPECT_FALSE(image_matches_caption(caption, image));
  EXPECT_FALSE(speech_matches_caption(caption, {}));
  EXPECT_FALSE(image_matches_caption({kWordA}, image_tokens(scene)));  // an ill-formed caption
}

TEST(GenerateImages, GridAsPpmAndPng) {
  Scene red{{{0, 0, 0}}}, blue{{{2, 2, 4}}};  // a red square at top left; a blue plus at center
  const std::vector<std::vector<int32_t>> images = {image_tokens(red), image_tokens(blue), {kWordA}};
  Raster grid = image_grid(images, 2);
  ASSERT_EQ(grid.width, 3 * 18 + 2);
  ASSERT_EQ(grid.height, 18);
  ASSERT_EQ(grid.rgb.size(), static_cast<size_t>(56 * 18 * 3));
  auto pixel = [&](int x, int y) {
    const unsigned char* p = &grid.rgb[(static_cast<size_t>(y) * grid.width + x) * 3];
    return std::vector<int>{p[0], p[1], p[2]};
  };
  EXPECT_EQ(pixel(0, 0), (std::vector<int>{220, 40, 40}));    // the red square's corner
  EXPECT_EQ(pixel(17, 17), (std::vector<int>{245, 245, 245}));  // background
  EXPECT_EQ(pixel(18, 5), (std::vector<int>{40, 40, 40}));    // the separator
  EXPECT_EQ(pixel(19 + 9, 9), (std::vector<int>{40, 80, 220}));  // the plus's centre
  EXPECT_EQ(pixel(19 + 6, 6), (std::vector<int>{245, 245, 245}));  // a plus leaves its cell's corners empty
  EXPECT_EQ(pixel(37, 0), (std::vector<int>{40, 40, 40}));
  EXPECT_EQ(pixel(38, 0), (std::vector<int>{128, 128, 128}));  // a word where a pixel should be
  EXPECT_EQ(pixel(40, 0), (std::vector<int>{245, 245, 245}));  // padded with background

  const std::string ppm_path = test::scratch_path("grid.ppm");
  write_ppm(ppm_path, grid);
  const std::string ppm = read_bytes(ppm_path);
  const std::string header = "P6\n56 18\n255\n";
  ASSERT_EQ(ppm.size(), header.size() + grid.rgb.size());
  EXPECT_EQ(ppm.substr(0, header.size()), header);
  EXPECT_EQ(ppm.substr(header.size()), std::string(grid.rgb.begin(), grid.rgb.end()));
  std::remove(ppm_path.c_str());

  // One image is the PPM writer's image.
  Raster one = image_grid({images[0]}, 16);
  EXPECT_EQ(one.width, 144);
  EXPECT_EQ(one.height, 144);
  write_image_ppm(ppm_path, images[0], 16);
  EXPECT_EQ(read_bytes(ppm_path).substr(15), std::string(one.rgb.begin(), one.rgb.end()));
  std::remove(ppm_path.c_str());
  expect_error([&] { image_grid({}, 2); }, "[render] a grid of 0 images");
  expect_error([&] { image_grid(images, 0); }, "[render] scale 0");

  const std::string png_path = test::scratch_path("grid.png");
  if (!png_supported()) {
    expect_error([&] { write_png(png_path, grid); },
                 "[render] " + png_path + ": built without libpng: install libpng-dev");
    return;
  }
  write_png(png_path, grid);
  const std::string png = read_bytes(png_path);
  std::remove(png_path.c_str());
  ASSERT_GT(png.size(), 33u);
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  EXPECT_EQ(big_endian(png, 8), 13u);  // the IHDR chunk's length
  EXPECT_EQ(png.substr(12, 4), "IHDR");
  EXPECT_EQ(big_endian(png, 16), 56u);  // width
  EXPECT_EQ(big_endian(png, 20), 18u);  // height
  EXPECT_EQ(png[24], 8);                // bits per channel
  EXPECT_EQ(png[25], 2);                // colour type: RGB
  EXPECT_EQ(png.substr(png.size() - 8, 4), "IEND");
}

}  // namespace
}  // namespace mom::toy
