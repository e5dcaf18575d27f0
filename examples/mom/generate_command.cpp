// `mom generate`: continue a caption with the image and the speech it describes, by step-by-step
// recurrent inference. Each segment is sampled within its modality's token range (after <image>,
// only pixel tokens; after <speech>, speech units or <eos>).
#include <cmath>
#include <cstdio>
#include <sstream>

#include "autograd/grad_mode.h"
#include "core/error.h"
#include "examples/mom/commands.h"
#include "examples/mom/options.h"
#include "examples/toy/render.h"
#include "examples/toy/train.h"
#include "examples/toy/world.h"

namespace mom::cli {

namespace {

struct GenerateArgs {
  std::string checkpoint, prompt = "a red square at top left and a blue plus at center .", out = "generated.ppm";
  double temperature = 0.0;
  uint64_t seed = 0;
  int64_t max_speech = 200;
};

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

// Picks a token in [lo, hi) (plus `extra` when >= 0) from the logits: argmax at temperature 0.
int32_t pick(const std::vector<float>& logits, int32_t lo, int32_t hi, int32_t extra, double temperature, Generator& gen) {
  std::vector<int32_t> allowed;
  for (int32_t t = lo; t < hi; ++t) allowed.push_back(t);
  if (extra >= 0) allowed.push_back(extra);
  int32_t best = allowed[0];
  for (int32_t t : allowed)
    if (logits[t] > logits[best]) best = t;
  if (temperature <= 0) return best;
  double z = 0;
  std::vector<double> p;
  for (int32_t t : allowed) z += p.emplace_back(std::exp((logits[t] - logits[best]) / temperature));
  double u = gen.uniform() * z;
  for (size_t i = 0; i < allowed.size(); ++i)
    if ((u -= p[i]) <= 0) return allowed[i];
  return allowed.back();
}

int run_generate(const GenerateArgs& args) {
  toy::LoadedModel m = toy::load_model(args.checkpoint);
  const toy::Vocab& vocab = toy::toy_vocab();
  MOM_CHECK(m.model->config().vocab_size == vocab.size, "generate", "the model was not trained on the toy vocabulary");
  NoGradGuard no_grad;
  Generator gen(args.seed);
  nn::LMState state = m.model->allocate_state(1);
  std::vector<float> logits;
  auto feed = [&](int32_t token) {
    Tensor t = from_vector<int64_t>({token}, {1});
    Tensor mod = from_vector<int32_t>({vocab.modality_of(token)}, {1});
    // A document start resets the state, as in training (a no-op on the fresh state at <bos> here).
    Tensor start = m.config.doc_token >= 0 ? from_vector<uint8_t>({token == m.config.doc_token}, {1}).to(DType::boolean)
                                           : Tensor();
    logits = m.model->step(t, mod, state, start).to_vector<float>();
    for (float v : logits)
      MOM_CHECK(std::isfinite(v), "generate", "the model's logits are not finite (its weights or state hold NaN or inf)");
  };
  std::vector<int32_t> caption = parse_prompt(args.prompt);
  feed(toy::kBos);
  feed(toy::kBeginText);
  for (int32_t w : caption) feed(w);
  feed(toy::kBeginImage);
  std::vector<int32_t> image;
  for (int i = 0; i < toy::kImagePixels; ++i) {
    image.push_back(pick(logits, toy::kImageBegin, toy::kImageEnd, -1, args.temperature, gen));
    feed(image.back());
  }
  feed(toy::kBeginSpeech);
  std::vector<int32_t> speech;
  while (static_cast<int64_t>(speech.size()) < args.max_speech) {
    int32_t t = pick(logits, toy::kSpeechBegin, toy::kSpeechEnd, toy::kEos, args.temperature, gen);
    if (t == toy::kEos) break;
    speech.push_back(t);
    feed(t);
  }

  std::printf("caption: %s\nimage:\n%s", toy::render_text(caption).c_str(), toy::render_image_ascii(image).c_str());
  toy::write_image_ppm(args.out, image, 16);
  std::printf("(written to %s)\nspeech:  %s\n", args.out.c_str(), toy::render_speech(speech).c_str());
  auto want = toy::parse_caption(caption);
  auto got = toy::parse_image(image);
  auto spoken = toy::parse_speech(speech);
  bool image_ok = false;
  if (want && got && want->objects.size() == got->objects.size()) {
    image_ok = true;
    for (const auto& o : want->objects) {
      bool found = false;
      for (const auto& g : got->objects) found = found || o == g;
      image_ok = image_ok && found;
    }
  }
  std::printf("image draws the caption's scene: %s\nspeech spells the caption:       %s\n", image_ok ? "yes" : "no",
              spoken && *spoken == caption ? "yes" : "no");
  return 0;
}

}  // namespace

void add_generate_command(CLI::App& app, int& exit_code) {
  auto a = std::make_shared<GenerateArgs>();
  CLI::App* cmd = app.add_subcommand("generate", "continue a caption with its image (PPM) and its speech");
  cmd->add_option("checkpoint", a->checkpoint, "run directory or model.safetensors")->required();
  cmd->add_option("--prompt", a->prompt, "caption words of the toy vocabulary")->capture_default_str();
  cmd->add_option("--out", a->out, "image file (binary PPM)")->check(non_empty())->capture_default_str();
  cmd->add_option("--temperature", a->temperature, "0 = greedy")->check(number_in(0, 100))->capture_default_str();
  cmd->add_option("--seed", a->seed, "sampling seed")->check(integer_in<uint64_t>(0, UINT64_MAX))->capture_default_str();
  cmd->add_option("--max-speech", a->max_speech, "most speech units to generate")
      ->check(integer_in<int64_t>(0, 100000))->capture_default_str();
  cmd->callback([a, &exit_code] { exit_code = run_generate(*a); });
}

}  // namespace mom::cli
