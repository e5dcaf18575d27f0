// mom as a library: builds a small Mixture-of-Mamba language model, trains it for a few AdamW steps
// on one batch of random tokens on the CPU, saves the weights as safetensors and loads them back.
// Exits non-zero when the loss does not fall or the weights do not come back equal.
#include <cstdio>
#include <string>

#include <mom/mom.h>

int main(int argc, char** argv) try {
  const std::string path = argc > 1 ? argv[1] : "consumer.safetensors";
#ifdef MOM_WITH_CUDA
  std::printf("mom with CUDA kernels; training on the CPU\n");
#else
  std::printf("mom without CUDA kernels; training on the CPU\n");
#endif

  // Three modalities (text, image, speech), each projection split into one expert per modality.
  // Leave the split_* flags false (and n_modalities 1) for dense Mamba.
  mom::nn::LMConfig config;
  config.vocab_size = 32;
  config.n_layers = 2;
  config.mixer.d_model = 32;
  config.mixer.d_state = 8;
  config.mixer.n_modalities = 3;
  config.mixer.split_in_proj = config.mixer.split_x_proj = true;
  config.mixer.split_dt_proj = config.mixer.split_out_proj = true;
  mom::Generator gen(1);
  mom::nn::MambaLM model(config, gen);
  std::printf("%lld parameters\n", static_cast<long long>(model.num_parameters()));

  // One batch: B sequences of L + 1 random tokens, a random modality per input token; the model
  // learns to predict each next token.
  const int64_t B = 4, L = 32, V = config.vocab_size;
  mom::Tensor tokens = mom::randint({B, L + 1}, 0, V, gen);
  mom::Tensor inputs = tokens.narrow(1, 0, L).contiguous();
  mom::Tensor targets = tokens.narrow(1, 1, L).contiguous().reshape({B * L});
  mom::Tensor modalities = mom::randint({B, L}, 0, config.mixer.n_modalities, gen);

  mom::optim::AdamWOptions options;
  options.lr = 1e-2;
  options.beta2 = 0.95;
  options.weight_decay = 0.1;
  mom::optim::AdamW optimizer = mom::optim::AdamW::from_module(model, options);
  double first = 0, last = 0;
  for (int step = 1; step <= 10; ++step) {
    mom::Tensor logits = model.forward(inputs, modalities);  // (B, L, V)
    mom::Tensor loss = mom::cross_entropy(mom::reshape(logits, {B * L, V}), targets);
    optimizer.zero_grad();
    mom::backward(loss);
    const double grad_norm = mom::optim::clip_grad_norm(model.parameters(), 1.0);
    optimizer.step();
    last = loss.item();
    if (step == 1) first = last;
    std::printf("step %2d  loss %.4f  grad norm %.3f\n", step, last, grad_norm);
  }
  if (!(last < first - 0.1)) {
    std::fprintf(stderr, "error: the loss did not fall (%.4f -> %.4f)\n", first, last);
    return 1;
  }

  // Save, then load into a model with other initial weights: every tensor must come back equal.
  mom::save_safetensors(path, model.state_dict());
  mom::nn::MambaLM loaded(config, gen);
  loaded.load_state_dict(mom::load_safetensors(path).tensors);
  const auto trained = model.state_dict(), reloaded = loaded.state_dict();
  for (const auto& [name, tensor] : trained) {
    if (tensor.to_vector<float>() != reloaded.at(name).to_vector<float>()) {
      std::fprintf(stderr, "error: %s differs after loading %s\n", name.c_str(), path.c_str());
      return 1;
    }
  }
  std::printf("saved %s and loaded it back: %zu tensors equal\n", path.c_str(), trained.size());
  return 0;
} catch (const mom::Error& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
