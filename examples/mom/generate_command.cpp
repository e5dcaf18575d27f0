// `mom generate`: continue a caption with the image and the speech it describes, by step-by-step
// recurrent inference, --samples times at once as a batch (examples/toy/generate.h): each segment is
// sampled within its modality's token range, at --temperature with optional --top-k and --top-p.
// Writes the images side by side as one PNG (or PPM) and, for several samples, each one beside it.
#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "core/error.h"
#include "examples/mom/commands.h"
#include "examples/mom/options.h"
#include "examples/toy/generate.h"
#include "examples/toy/render.h"
#include "examples/toy/train.h"
#include "examples/toy/world.h"

namespace mom::cli {

namespace {

constexpr int64_t kMaxSamples = 256;
constexpr int kPixelScale = 16;

struct GenerateArgs {
  std::string checkpoint, prompt = "a red square at top left and a blue plus at center .", out = "generated.png";
  toy::SamplingOptions sampling;
  uint64_t seed = 0;
  int64_t samples = 1;
  int64_t max_speech = 200;
};

// The text of a whole number or of a finite number; its range is checked with the other settings, so
// that the message names the flag and says what the value means.
CLI::Validator whole_number() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        int64_t v = 0;
        auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
        return s.empty() || ptr != s.data() + s.size() || ec != std::errc() ? "'" + s + "' is not a whole number"
                                                                            : "";
      },
      "INT");
}
CLI::Validator finite_number() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        char* end = nullptr;
        const double v = s.empty() ? 0.0 : std::strtod(s.c_str(), &end);
        return s.empty() || end != s.c_str() + s.size() || std::isspace(static_cast<unsigned char>(s[0])) ||
                       !std::isfinite(v)
                   ? "'" + s + "' is not a finite number"
                   : "";
      },
      "NUMBER");
}

std::vector<int32_t> parse_prompt(const std::string& prompt) {
  const toy::Vocab& v = toy::toy_vocab();
  std::vector<int32_t> ids;
  std::istringstream in(prompt);
  std::string word;
  while (in >> word) {
    int32_t id = -1;
    for (int32_t t = toy::kTextBegin; t < toy::kTextEnd; ++t)
      if (v.token_str(t) == word) id = t;
    MOM_CHECK(id >= 0, "generate", "'" << word << "' is not a word of the toy vocabulary");
    ids.push_back(id);
  }
  MOM_CHECK(!ids.empty(), "generate", "the prompt is empty");
  return ids;
}

// PNG unless the name ends in .ppm (any case); a name ending in neither is refused, as its reader would
// expect another format.
bool wants_ppm(const std::string& out) {
  std::string ext = std::filesystem::path(out).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  MOM_CHECK(ext == ".png" || ext == ".ppm", "generate", "--out " << out << ": give a name ending in .png or .ppm");
  return ext == ".ppm";
}

// OUT's name with "-<i>" before its extension: the file of sample i (1-based).
std::string sample_path(const std::string& out, int64_t i) {
  std::filesystem::path p(out);
  return (p.parent_path() / (p.stem().string() + "-" + std::to_string(i) + p.extension().string())).string();
}

int run_generate(const GenerateArgs& args) {
  // Every setting is checked before the model is read.
  toy::check_sampling_options(args.sampling);
  MOM_CHECK(args.samples >= 1 && args.samples <= kMaxSamples, "generate",
            "--samples " << args.samples << " is not in [1, " << kMaxSamples << "]");
  const bool ppm = wants_ppm(args.out);
  MOM_CHECK(ppm || toy::png_supported(), "generate",
            "built without libpng: install libpng-dev (apt-get install libpng-dev) and rebuild, or give an --out "
            "ending in .ppm");
  std::vector<int32_t> caption = parse_prompt(args.prompt);

  toy::LoadedModel m = toy::load_model(args.checkpoint);
  MOM_CHECK(m.model->config().vocab_size == toy::toy_vocab().size, "generate",
            "the model was not trained on the toy vocabulary");
  Generator gen(args.seed);
  std::vector<toy::SceneSample> samples = toy::generate_from_captions(
      *m.model, std::vector<std::vector<int32_t>>(args.samples, caption), args.sampling, gen, args.max_speech,
      m.config.doc_token);

  const toy::SamplingOptions& s = args.sampling;
  if (s.temperature == 0)
    std::printf("sampling: greedy\n");
  else
    std::printf("sampling: temperature %g, top-k %lld, top-p %g, seed %llu\n", s.temperature,
                static_cast<long long>(s.top_k), s.top_p, static_cast<unsigned long long>(args.seed));
  std::printf("caption: %s\n", toy::render_text(caption).c_str());
  const int64_t n = args.samples;
  int64_t images_ok = 0, speech_ok = 0;
  std::vector<std::vector<int32_t>> images;
  for (int64_t i = 0; i < n; ++i) {
    const toy::SceneSample& sample = samples[i];
    const bool image_ok = toy::image_matches_caption(caption, sample.image);
    const bool spoken_ok = toy::speech_matches_caption(caption, sample.speech);
    images_ok += image_ok;
    speech_ok += spoken_ok;
    images.push_back(sample.image);
    if (n > 1) std::printf("\nsample %lld of %lld\n", static_cast<long long>(i + 1), static_cast<long long>(n));
    std::printf("image:\n%sspeech:  %s\n", toy::render_image_ascii(sample.image).c_str(),
                toy::render_speech(sample.speech).c_str());
    std::printf("image draws the caption's scene: %s\nspeech spells the caption:       %s\n", image_ok ? "yes" : "no",
                spoken_ok ? "yes" : "no");
  }

  auto write = [&](const std::string& path, const toy::Raster& raster) {
    ppm ? toy::write_ppm(path, raster) : toy::write_png(path, raster);
  };
  write(args.out, toy::image_grid(images, kPixelScale));
  if (n == 1) {
    std::printf("\n(written to %s)\n", args.out.c_str());
  } else {
    for (int64_t i = 0; i < n; ++i) write(sample_path(args.out, i + 1), toy::image_grid({images[i]}, kPixelScale));
    std::printf("\n(written to %s, the %lld images side by side, and each to %s ... %s)\n", args.out.c_str(),
                static_cast<long long>(n), sample_path(args.out, 1).c_str(), sample_path(args.out, n).c_str());
  }
  std::printf("%lld sample%s: image correct %lld/%lld, speech correct %lld/%lld\n", static_cast<long long>(n),
              n == 1 ? "" : "s", static_cast<long long>(images_ok), static_cast<long long>(n),
              static_cast<long long>(speech_ok), static_cast<long long>(n));
  return 0;
}

}  // namespace

void add_generate_command(CLI::App& app, int& exit_code) {
  auto a = std::make_shared<GenerateArgs>();
  CLI::App* cmd = app.add_subcommand("generate", "continue a caption with its image (PNG or PPM) and its speech");
  cmd->add_option("checkpoint", a->checkpoint, "run directory or model.safetensors")->required();
  cmd->add_option("--prompt", a->prompt, "caption words of the toy vocabulary")->capture_default_str();
  cmd->add_option("--out", a->out, "image file: PNG, or binary PPM for a name ending in .ppm; with --samples N > 1 "
                                   "the N images side by side, and each in OUT-1 ... OUT-N")
      ->check(non_empty())->capture_default_str();
  cmd->add_option("--samples", a->samples, "samples of the prompt, drawn at once as a batch (1 to 256)")
      ->check(whole_number())->capture_default_str();
  cmd->add_option("--temperature", a->sampling.temperature, "0 = greedy")
      ->check(number_in(0, 100))->capture_default_str();
  cmd->add_option("--top-k", a->sampling.top_k, "sample among the K most likely tokens (0 = all)")
      ->check(whole_number())->capture_default_str();
  cmd->add_option("--top-p", a->sampling.top_p, "sample among the most likely tokens of total probability P, in (0, 1] "
                                                "(1 = all)")
      ->check(finite_number())->capture_default_str();
  cmd->add_option("--seed", a->seed, "sampling seed")
      ->check(integer_in<uint64_t>(0, UINT64_MAX))->capture_default_str();
  cmd->add_option("--max-speech", a->max_speech, "most speech units to generate")
      ->check(integer_in<int64_t>(0, 100000))->capture_default_str();
  cmd->callback([a, &exit_code] { exit_code = run_generate(*a); });
}

}  // namespace mom::cli
