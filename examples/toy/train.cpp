#include "examples/toy/train.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/safetensors.h"
#include "kernels/matmul.h"
#include "optim/adamw.h"
#include "optim/clip.h"
#include "optim/schedule.h"

#ifdef MOM_WITH_CUDA
#include "core/cuda/memory.h"
#endif

namespace mom::toy {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr uint64_t kEvalSeedOffset = 1000003;  // the held-out world: a seed no training run draws from

double nan() { return std::numeric_limits<double>::quiet_NaN(); }

json number_or_null(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

std::string format_losses(const Losses& l) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "loss %.4f | text %.3f image %.3f speech %.3f", l.total, l.by_modality[0],
                l.by_modality[1], l.by_modality[2]);
  return buf;
}

std::string format_duration(double s) {
  char buf[32];
  int64_t t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", static_cast<long long>(t / 3600), static_cast<long long>(t % 3600 / 60));
  else
    std::snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(t / 60), static_cast<long long>(t % 60));
  return buf;
}

// "auto" is the first GPU when one is visible (and the build has CUDA), else the CPU.
Device resolve_device(const std::string& name) {
  if (name == "auto") return cuda_available() ? Device::cuda(0) : Device::cpu();
  return parse_device(name);
}

// Inputs, targets and modality ids go to the model's device (three host-to-device copies that the
// host does not wait for); the target modalities stay on the host, where the per-modality losses
// build their masks.
Batch to_device(const Batch& b, Device d) {
  if (d.is_cpu()) return b;
  return {b.tokens.to(d), b.targets.to(d), b.modalities.to(d), b.target_modalities};
}

// Peak bytes held on a CUDA device since the run started (0 on the CPU).
double peak_memory_mib(Device d) {
#ifdef MOM_WITH_CUDA
  if (d.is_cuda()) return static_cast<double>(cuda::memory_stats(d.index).peak) / (1 << 20);
#endif
  (void)d;
  return 0.0;
}

void reset_peak_memory(Device d) {
#ifdef MOM_WITH_CUDA
  if (d.is_cuda()) cuda::reset_peak(d.index);
#endif
  (void)d;
}

// Mean loss over all targets (differentiable) from logits (B, L, V).
Tensor mean_loss(const Tensor& logits, const Batch& b) {
  const int64_t T = b.targets.numel(), V = logits.size(-1);
  return cross_entropy(reshape(logits, {T, V}), b.targets.reshape({T}));
}

// Sum of per-token losses and token counts per modality (no graph). The masks are built on the host
// from b.target_modalities (a host tensor after to_device); each loss is read back (a host
// synchronisation on CUDA), so the trainer calls this at logging steps only.
void accumulate_by_modality(const Tensor& logits, const Batch& b, std::array<double, kNumModalities>& sum,
                            std::array<double, kNumModalities>& count) {
  NoGradGuard no_grad;
  const int64_t T = b.targets.numel(), V = logits.size(-1);
  Tensor flat = reshape(logits, {T, V});
  Tensor targets = b.targets.reshape({T});
  std::vector<int32_t> mods = b.target_modalities.to_vector<int32_t>();
  for (int32_t m = 0; m < kNumModalities; ++m) {
    std::vector<double> mask(T);
    double n = 0;
    for (int64_t t = 0; t < T; ++t) n += mask[t] = mods[t] == m ? 1.0 : 0.0;
    if (n == 0) continue;
    CrossEntropyOptions opts;
    opts.weight = from_vector<double>(mask, {T}).to(logits.dtype()).to(logits.device());
    sum[m] += cross_entropy(flat, targets, opts).item() * n;
    count[m] += n;
  }
}

Losses finish(double total_sum, double total_count, const std::array<double, kNumModalities>& sum,
              const std::array<double, kNumModalities>& count) {
  Losses l;
  l.total = total_count > 0 ? total_sum / total_count : nan();
  for (int m = 0; m < kNumModalities; ++m) l.by_modality[m] = count[m] > 0 ? sum[m] / count[m] : nan();
  return l;
}

std::shared_ptr<TokenSource> make_source(const std::string& data, uint64_t seed) {
  if (data == "toy") return std::make_shared<ToyWorldSource>(seed);
  return std::make_shared<TokenFileSource>(read_token_file(data));
}

void append_log(const std::string& path, const json& record) {
  std::ofstream out(path, std::ios::app);
  MOM_CHECK(out.good(), "train", "cannot write " << path);
  out << record.dump() << "\n";
}

// Keeps the log lines up to `step` (a resumed run rewrites what came after its checkpoint).
void truncate_log(const std::string& path, int64_t step) {
  std::ifstream in(path);
  std::vector<std::string> keep;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    json r = json::parse(line, nullptr, false);
    if (!r.is_discarded() && r.value("step", int64_t(0)) <= step) keep.push_back(line);
  }
  std::ofstream out(path, std::ios::trunc);
  for (const auto& l : keep) out << l << "\n";
}

std::map<std::string, Tensor> with_prefix(const std::string& prefix, const std::map<std::string, Tensor>& m) {
  std::map<std::string, Tensor> out;
  for (const auto& [k, v] : m) out[prefix + k] = v;
  return out;
}

std::map<std::string, Tensor> strip_prefix(const std::string& prefix, const std::map<std::string, Tensor>& m) {
  std::map<std::string, Tensor> out;
  for (const auto& [k, v] : m)
    if (k.rfind(prefix, 0) == 0) out[k.substr(prefix.size())] = v;
  return out;
}

// The architecture fields of two configs agree (what a checkpoint's weights depend on).
void check_same_architecture(const TrainConfig& a, const TrainConfig& b, const std::string& path) {
  json ja = json::parse(a.to_json()), jb = json::parse(b.to_json());
  for (const char* k : {"model", "split_in_proj", "split_x_proj", "split_dt_proj", "split_out_proj", "n_layers", "d_model",
                        "d_state", "expand", "d_conv", "batch", "seq_len", "data", "seed"})
    MOM_CHECK(ja[k] == jb[k], "train", "--resume: " << path << " was trained with " << k << " = " << jb[k].dump()
                                                    << ", this run asks for " << ja[k].dump());
}

}  // namespace

// ---- config ----

nn::LMConfig TrainConfig::lm_config(int64_t vocab_size) const {
  nn::LMConfig c;
  c.vocab_size = vocab_size;
  c.n_layers = n_layers;
  c.mixer.d_model = d_model;
  c.mixer.d_state = d_state;
  c.mixer.expand = expand;
  c.mixer.d_conv = d_conv;
  c.mixer.n_modalities = kNumModalities;
  bool split = model == "mom";
  auto pick = [&](int flag) { return flag < 0 ? split : flag != 0; };
  c.mixer.split_in_proj = pick(split_in_proj);
  c.mixer.split_x_proj = pick(split_x_proj);
  c.mixer.split_dt_proj = pick(split_dt_proj);
  c.mixer.split_out_proj = pick(split_out_proj);
  return c;
}

std::string TrainConfig::to_json() const {
  json j = {{"model", model}, {"split_in_proj", split_in_proj}, {"split_x_proj", split_x_proj},
            {"split_dt_proj", split_dt_proj}, {"split_out_proj", split_out_proj}, {"n_layers", n_layers},
            {"d_model", d_model}, {"d_state", d_state}, {"expand", expand}, {"d_conv", d_conv}, {"data", data},
            {"eval_data", eval_data}, {"batch", batch}, {"seq_len", seq_len}, {"steps", steps}, {"warmup", warmup},
            {"lr", lr}, {"min_lr_ratio", min_lr_ratio}, {"weight_decay", weight_decay}, {"beta1", beta1},
            {"beta2", beta2}, {"clip", clip}, {"seed", seed}, {"device", device}, {"out", out},
            {"eval_every", eval_every}, {"eval_batches", eval_batches}, {"ckpt_every", ckpt_every},
            {"log_every", log_every}, {"tf32", tf32}};
  return j.dump(2);
}

TrainConfig TrainConfig::from_json(const std::string& text) {
  json j = json::parse(text, nullptr, false);
  MOM_CHECK(j.is_object(), "train", "config is not a JSON object");
  TrainConfig c;
  try {
    c.model = j.at("model");
    c.split_in_proj = j.at("split_in_proj");
    c.split_x_proj = j.at("split_x_proj");
    c.split_dt_proj = j.at("split_dt_proj");
    c.split_out_proj = j.at("split_out_proj");
    c.n_layers = j.at("n_layers");
    c.d_model = j.at("d_model");
    c.d_state = j.at("d_state");
    c.expand = j.at("expand");
    c.d_conv = j.at("d_conv");
    c.data = j.at("data");
    c.eval_data = j.at("eval_data");
    c.batch = j.at("batch");
    c.seq_len = j.at("seq_len");
    c.steps = j.at("steps");
    c.warmup = j.at("warmup");
    c.lr = j.at("lr");
    c.min_lr_ratio = j.at("min_lr_ratio");
    c.weight_decay = j.at("weight_decay");
    c.beta1 = j.at("beta1");
    c.beta2 = j.at("beta2");
    c.clip = j.at("clip");
    c.seed = j.at("seed");
    c.device = j.at("device");
    c.out = j.at("out");
    c.eval_every = j.at("eval_every");
    c.eval_batches = j.at("eval_batches");
    c.ckpt_every = j.at("ckpt_every");
    c.log_every = j.at("log_every");
    c.tf32 = j.value("tf32", false);  // configs written before the flag existed
  } catch (const json::exception& e) {
    MOM_THROW("train", "bad config: " << e.what());
  }
  return c;
}

void TrainConfig::validate() const {
  MOM_CHECK(model == "dense" || model == "mom", "train", "--model must be dense or mom, got '" << model << "'");
  MOM_CHECK(n_layers >= 1 && d_model >= 1 && d_state >= 1 && expand >= 1, "train",
            "--layers, --d-model, --d-state and --expand must be positive");
  MOM_CHECK(batch >= 1 && seq_len >= 1, "train", "--batch and --seq-len must be positive");
  MOM_CHECK(steps >= 1 && warmup >= 0, "train", "--steps must be positive and --warmup non-negative");
  MOM_CHECK(lr > 0 && weight_decay >= 0 && clip > 0, "train", "--lr and --clip must be positive, --weight-decay non-negative");
  MOM_CHECK(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1, "train", "betas must lie in [0, 1)");
  MOM_CHECK(eval_every >= 1 && eval_batches >= 1 && ckpt_every >= 1 && log_every >= 1, "train",
            "--eval-every, --eval-batches, --ckpt-every and --log-every must be positive");
  resolve_device(device);
}

// ---- FLOPs ----

double flops_per_token(const nn::LMConfig& c) {
  const double D = c.mixer.d_model, E = c.mixer.d_inner(), N = c.mixer.d_state, R = c.mixer.rank();
  const double W = c.mixer.d_conv, V = c.vocab_size;
  double layer = 4 * D                // rms_norm
                 + 2 * D * 2 * E      // in_proj
                 + 2 * E * W          // conv1d
                 + 2 * E * (R + 2 * N)  // x_proj
                 + 2 * R * E          // dt_proj
                 + 6 * E * N + 5 * E  // scan: exp, state update, C . h; skip and gate
                 + 2 * E * D          // out_proj
                 + D;                 // residual
  return c.n_layers * layer + 4 * D + 2 * D * V;
}

// ---- evaluation ----

Losses evaluate(const nn::MambaLM& model, const std::vector<Batch>& batches) {
  NoGradGuard no_grad;
  Device device = model.embedding->weight.device();
  std::array<double, kNumModalities> sum{}, count{};
  double total = 0, n = 0;
  for (const Batch& host : batches) {
    Batch b = to_device(host, device);
    Tensor logits = model.forward(b.tokens, b.modalities);
    double T = static_cast<double>(b.targets.numel());
    total += mean_loss(logits, b).item() * T;
    n += T;
    accumulate_by_modality(logits, b, sum, count);
  }
  return finish(total, n, sum, count);
}

std::vector<Batch> eval_set(const TrainConfig& c) {
  if (!c.eval_data.empty() || c.data != "toy") {
    Batcher b(make_source(c.eval_data.empty() ? c.data : c.eval_data, 0), c.batch, c.seq_len);
    std::vector<Batch> out;
    for (int64_t i = 0; i < c.eval_batches; ++i) out.push_back(b.next());
    return out;
  }
  return make_eval_set(c.seed + kEvalSeedOffset, c.eval_batches, c.batch, c.seq_len);
}

// ---- loading ----

LoadedModel load_model(const std::string& path) {
  bool is_run = fs::is_directory(path);
  std::string file = is_run ? (fs::path(path) / "checkpoint.safetensors").string() : path;
  SafetensorsFile f = load_safetensors(file);
  MOM_CHECK(f.metadata.count("config"), "load_model", file << " carries no training config in its metadata");
  LoadedModel out;
  out.config = TrainConfig::from_json(f.metadata.at("config"));
  std::map<std::string, Tensor> weights = is_run ? strip_prefix("model.", f.tensors) : f.tensors;
  MOM_CHECK(weights.count("embedding.weight"), "load_model", file << " has no embedding.weight");
  Generator gen(out.config.seed);
  out.model = std::make_shared<nn::MambaLM>(out.config.lm_config(weights.at("embedding.weight").size(0)), gen);
  out.model->load_state_dict(weights);
  return out;
}

// ---- training ----

TrainResult train(const TrainConfig& cfg) {
  cfg.validate();
  fs::create_directories(cfg.out);
  const std::string log_path = (fs::path(cfg.out) / "log.jsonl").string();
  const std::string ckpt_path = (fs::path(cfg.out) / "checkpoint.safetensors").string();
  const Device device = resolve_device(cfg.device);

  auto source = make_source(cfg.data, cfg.seed);
  Batcher batcher(source, cfg.batch, cfg.seq_len);
  const nn::LMConfig lm_cfg = cfg.lm_config(source->vocab().size);
  Generator gen(cfg.seed);
  nn::MambaLM model(lm_cfg, gen);  // initialised on the CPU (the seeded generator), then moved
  model.to(device);
  kernels::set_allow_tf32(cfg.tf32);
  optim::AdamW opt = optim::AdamW::from_module(model, {cfg.lr, cfg.beta1, cfg.beta2, 1e-8, cfg.weight_decay});
  optim::WarmupCosine schedule{cfg.lr, cfg.warmup, cfg.steps, cfg.min_lr_ratio};
  const double fpt = flops_per_token(lm_cfg);

  int64_t step = 0;
  double tokens = 0, flops = 0, elapsed = 0;
  if (cfg.resume) {
    SafetensorsFile ck = load_safetensors(ckpt_path);
    check_same_architecture(cfg, TrainConfig::from_json(ck.metadata.at("config")), ckpt_path);
    model.load_state_dict(strip_prefix("model.", ck.tensors));
    opt.load_state_dict(strip_prefix("optim.", ck.tensors));
    batcher.load_state_dict(strip_prefix("data.", ck.tensors));
    step = std::stoll(ck.metadata.at("step"));
    tokens = std::stod(ck.metadata.at("tokens"));
    flops = std::stod(ck.metadata.at("flops"));
    elapsed = std::stod(ck.metadata.at("elapsed"));
    truncate_log(log_path, step);
    if (!cfg.quiet) std::printf("resumed %s at step %lld\n", ckpt_path.c_str(), static_cast<long long>(step));
  } else {
    std::ofstream(fs::path(cfg.out) / "config.json") << cfg.to_json() << "\n";
    std::ofstream(log_path, std::ios::trunc);
  }
  const std::vector<Batch> evals = eval_set(cfg);
  if (!cfg.quiet) {
    std::printf("%s model, %lld parameters, %.3g training FLOPs per token, on %s\n%s", cfg.model.c_str(),
                static_cast<long long>(model.num_parameters()), 3 * fpt, device.str().c_str(),
                model.parameter_summary().c_str());
    std::fflush(stdout);
  }

  auto save_checkpoint = [&] {
    std::map<std::string, Tensor> all = with_prefix("model.", model.state_dict());
    for (auto& [k, v] : with_prefix("optim.", opt.state_dict())) all[k] = v;
    for (auto& [k, v] : with_prefix("data.", batcher.state_dict())) all[k] = v;
    char num[64];
    std::map<std::string, std::string> meta = {{"step", std::to_string(step)}, {"config", cfg.to_json()}};
    std::snprintf(num, sizeof num, "%.17g", tokens);
    meta["tokens"] = num;
    std::snprintf(num, sizeof num, "%.17g", flops);
    meta["flops"] = num;
    std::snprintf(num, sizeof num, "%.17g", elapsed);
    meta["elapsed"] = num;
    save_safetensors(ckpt_path, all, meta);
  };

  TrainResult result;
  auto run_eval = [&] {
    result.last_eval = evaluate(model, evals);
    json r = {{"kind", "eval"}, {"step", step}, {"tokens", tokens}, {"flops", flops}, {"time", elapsed},
              {"loss", number_or_null(result.last_eval.total)}};
    for (int m = 0; m < kNumModalities; ++m)
      r[std::string("loss_") + kModalityNames[m]] = number_or_null(result.last_eval.by_modality[m]);
    append_log(log_path, r);
    if (!cfg.quiet) std::printf("eval  %5lld  %s\n", static_cast<long long>(step), format_losses(result.last_eval).c_str());
  };

  // The step queues its work and waits for none of it: the loss, the gradient norm and the
  // per-modality losses are read back only at logging steps (and the loss before a checkpoint, so
  // that no checkpoint holds a diverged model). Non-finite losses are caught there.
  const auto params = model.parameters();
  double window_tokens = 0, window_time = 0;
  reset_peak_memory(device);
  while (step < cfg.steps) {
    auto t0 = std::chrono::steady_clock::now();
    Batch b = to_device(batcher.next(), device);
    double lr = schedule.lr_at(step + 1);
    opt.set_lr(lr);
    Tensor logits = model.forward(b.tokens, b.modalities);
    Tensor loss = mean_loss(logits, b);
    backward(loss);
    Tensor grad_norm = optim::clip_grad_norm_async(params, cfg.clip);
    opt.step();
    opt.zero_grad();
    ++step;
    const double T = static_cast<double>(b.targets.numel());
    tokens += T;
    flops += 3 * fpt * T;
    const bool log_now = step % cfg.log_every == 0 || step == 1 || step == cfg.steps;
    const bool ckpt_now = step % cfg.ckpt_every == 0 || step == cfg.steps || step == cfg.stop_at;
    // Reading the loss waits for the whole step (it is queued after the optimiser's work), so the
    // time of a logging step is its true time; other steps' work is charged to the next reading.
    double loss_value = (log_now || ckpt_now) ? loss.item() : nan();
    double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    elapsed += dt;
    window_tokens += T;
    window_time += dt;
    if (log_now || ckpt_now) {
      MOM_CHECK(std::isfinite(loss_value), "train",
                "loss is " << loss_value << " at step " << step << "; stopping. The last good checkpoint is "
                           << ckpt_path << " (try a lower --lr)");
      std::array<double, kNumModalities> sum{}, count{};
      accumulate_by_modality(logits.detach(), b, sum, count);
      result.last_train = finish(loss_value * T, T, sum, count);
    }

    if (log_now) {
      const double norm = grad_norm.item();
      result.tokens_per_second = window_tokens / window_time;
      const double peak_mib = peak_memory_mib(device);
      json r = {{"kind", "train"}, {"step", step}, {"tokens", tokens}, {"flops", flops}, {"time", elapsed},
                {"loss", loss_value}, {"lr", lr}, {"grad_norm", norm}, {"tokens_per_second", result.tokens_per_second}};
      for (int m = 0; m < kNumModalities; ++m)
        r[std::string("loss_") + kModalityNames[m]] = number_or_null(result.last_train.by_modality[m]);
      if (device.is_cuda()) r["peak_memory_mib"] = peak_mib;
      append_log(log_path, r);
      if (!cfg.quiet) {
        double eta = (cfg.steps - step) * (window_time / (window_tokens / T));
        char mem[48] = "";
        if (device.is_cuda()) std::snprintf(mem, sizeof mem, " | %.0f MiB peak", peak_mib);
        std::printf("step  %5lld/%lld  %s | lr %.2e | gnorm %.2f | %.1fk tok/s%s | ETA %s\n",
                    static_cast<long long>(step), static_cast<long long>(cfg.steps),
                    format_losses(result.last_train).c_str(), lr, norm, result.tokens_per_second / 1e3, mem,
                    format_duration(eta).c_str());
        std::fflush(stdout);
      }
      window_tokens = window_time = 0;
    }
    if (step % cfg.eval_every == 0 || step == cfg.steps) run_eval();
    if (ckpt_now) save_checkpoint();
    if (step == cfg.stop_at) {
      if (!cfg.quiet) std::printf("stopped at step %lld as asked; continue with --resume\n", static_cast<long long>(step));
      result.steps = step;
      return result;
    }
  }
  std::map<std::string, Tensor> weights = model.state_dict();
  save_safetensors((fs::path(cfg.out) / "model.safetensors").string(), weights, {{"config", cfg.to_json()}});
  result.steps = step;
  return result;
}

}  // namespace mom::toy
