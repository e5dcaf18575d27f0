#include "examples/toy/train.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "core/atomic_file.h"
#include "core/safetensors.h"
#include "examples/toy/accuracy.h"
#include "examples/toy/checkpoint.h"
#include "examples/toy/world.h"
#include "kernels/matmul.h"
#include "nn/decoder.h"
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

// "nan", "inf" or "-inf" for the non-finite (printf's "-nan" says nothing more), else %g.
std::string number_str(double v) {
  if (std::isnan(v)) return "nan";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

json number_or_null(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }


std::string format_duration(double s) {
  char buf[32];
  int64_t t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", static_cast<long long>(t / 3600), static_cast<long long>(t % 3600 / 60));
  else
    std::snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(t / 60), static_cast<long long>(t % 60));
  return buf;
}

// "auto" is the first GPU when one is visible (and the build has CUDA), else the CPU. A named GPU must
// be visible.
Device resolve_device(const std::string& name) {
  if (name == "auto") return cuda_available() ? Device::cuda(0) : Device::cpu();
  Device d = parse_device(name);
  if (d.is_cuda()) {
#ifdef MOM_WITH_CUDA
    const int n = cuda::device_count();
    MOM_CHECK(d.index < n, "device", "--device " << name << ": this machine has " << n << " visible GPU"
                                                 << (n == 1 ? "" : "s") << (n ? ", numbered from 0" : ""));
#else
    MOM_THROW("device", "--device " << name << ": this build has no CUDA (nvcc was not found when it was configured)");
#endif
  }
  return d;
}

// Inputs, targets and modality ids go to the model's device (three host-to-device copies that the
// host does not wait for); the target modalities stay on the host, where the per-modality losses
// build their masks.
Batch to_device(const Batch& b, Device d) {
  if (d.is_cpu()) return b;
  return {b.tokens.to(d), b.targets.to(d), b.modalities.to(d), b.target_modalities,
          b.doc_start.defined() ? b.doc_start.to(d) : Tensor()};
}

// Peak bytes held on a CUDA device since the run started (0 on the CPU).
double peak_memory_mib(Device d) {
#ifdef MOM_WITH_CUDA
  if (d.is_cuda()) return static_cast<double>(cuda::memory_stats(d.index).peak) / (1 << 20);
#endif
  (void)d;
  return 0.0;
}

// FLOP/s of the CUDA device's bf16 GEMM, the dense rate MFU is measured against: ten 4096^3 products of
// kernels::matmul on random bf16 operands after a warm-up, timed on the host around a synchronisation.
// 0 on the CPU (no MFU there).
double bf16_gemm_rate(Device d) {
#ifdef MOM_WITH_CUDA
  if (d.is_cuda()) {
    constexpr int64_t n = 4096;
    constexpr int runs = 10;
    Generator gen(0);
    const Tensor a = randn({n, n}, gen).to(DType::bf16).to(d), b = randn({n, n}, gen).to(DType::bf16).to(d);
    kernels::matmul(a, b);
    cuda::synchronize(d.index);
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < runs; ++i) kernels::matmul(a, b);
    cuda::synchronize(d.index);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return runs * 2.0 * n * n * n / s;
  }
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

// Milliseconds per token of recurrent decoding (nn::Decoder, one row) of `model` on its device: the
// median of 32 steps after 4 untimed ones, each step's logits read back to the host as sampling does.
double decode_ms_per_token(const nn::MambaLM& model) {
  NoGradGuard no_grad;
  nn::Decoder decoder(model, 1);
  const int64_t V = model.config().vocab_size, M = model.config().mixer.n_modalities;
  std::vector<double> ms;
  for (int i = 0; i < 36; ++i) {
    const Tensor token = from_vector<int32_t>({static_cast<int32_t>((i * 7919) % V)}, {1});
    const Tensor modality = from_vector<int32_t>({static_cast<int32_t>(i % M)}, {1});
    const auto t0 = std::chrono::steady_clock::now();
    decoder.step(token, modality).to_vector<float>();
    if (i >= 4) ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// Mean loss over all targets (differentiable) from logits (B, L, V).
Tensor mean_loss(const Tensor& logits, const Batch& b) {
  const int64_t T = b.targets.numel(), V = logits.size(-1);
  return cross_entropy(reshape(logits, {T, V}), b.targets.reshape({T}));
}

// Sum of per-token losses and token counts per modality (no graph). The masks are built on the host
// from b.target_modalities (a host tensor after to_device); each loss is read back (a host
// synchronisation on CUDA), so the trainer calls this at logging steps only.
void accumulate_by_modality(const Tensor& logits, const Batch& b, std::vector<double>& sum, std::vector<double>& count) {
  NoGradGuard no_grad;
  const int64_t T = b.targets.numel(), V = logits.size(-1);
  Tensor flat = reshape(logits, {T, V});
  Tensor targets = b.targets.reshape({T});
  std::vector<int32_t> mods = b.target_modalities.to_vector<int32_t>();
  for (int32_t m = 0; m < static_cast<int32_t>(sum.size()); ++m) {
    std::vector<double> mask(T);
    double n = 0;
    for (int64_t t = 0; t < T; ++t) n += mask[t] = mods[t] == m ? 1.0 : 0.0;
    if (n == 0) continue;
    CrossEntropyOptions opts;
    opts.weight = from_vector<double>(mask, {T}).to(acc_dtype(logits.dtype())).to(logits.device());
    sum[m] += cross_entropy(flat, targets, opts).item() * n;
    count[m] += n;
  }
}

Losses finish(double total_sum, double total_count, const std::vector<double>& sum, const std::vector<double>& count) {
  Losses l;
  l.total = total_count > 0 ? total_sum / total_count : nan();
  for (size_t m = 0; m < sum.size(); ++m) l.by_modality.push_back(count[m] > 0 ? sum[m] / count[m] : nan());
  return l;
}

// loss_<name> of each modality into a log line.
void add_modality_losses(json& r, const Losses& l, const std::vector<std::string>& modalities) {
  for (size_t m = 0; m < modalities.size(); ++m) r["loss_" + modalities[m]] = number_or_null(l.by_modality[m]);
}

// The training data: the toy world, a token file whose evaluation reads --eval-data, or the kept
// documents of a token file that holds out its own (split_documents).
std::shared_ptr<TokenSource> make_source(const TrainConfig& c) {
  if (c.data == "toy") return std::make_shared<ToyWorldSource>(c.seed);
  TokenFile file = read_token_file(c.data);
  if (c.eval_data.empty()) {
    const int64_t eval_tokens = c.eval_batches * c.batch * c.seq_len + 1;
    file.tokens = split_documents(file, c.doc_token, eval_tokens).train;
    MOM_CHECK(!file.tokens.empty(), "train", c.data << ": holding out documents of every mix of modalities for "
              << "evaluation leaves none to train on; give held-out data with --eval-data");
  }
  return std::make_shared<TokenFileSource>(std::move(file), c.shuffle ? std::optional<uint64_t>(c.seed) : std::nullopt,
                                           c.doc_token);
}

// log.jsonl, opened for appending for the whole run; every line is flushed and checked, so a full
// disk stops the run at the line that could not be written.
class LogFile {
 public:
  explicit LogFile(std::string path) : path_(std::move(path)), f_(std::fopen(path_.c_str(), "a")) {
    MOM_CHECK(f_ != nullptr, "train", "cannot open " << path_ << " for appending: " << std::strerror(errno));
  }
  ~LogFile() { std::fclose(f_); }
  LogFile(const LogFile&) = delete;
  LogFile& operator=(const LogFile&) = delete;
  void append(const json& record) {
    std::string line = record.dump() + "\n";
    MOM_CHECK(std::fwrite(line.data(), 1, line.size(), f_) == line.size() && std::fflush(f_) == 0, "train",
              "cannot write " << path_ << ": " << std::strerror(errno) << "; stopping");
  }

 private:
  std::string path_;
  std::FILE* f_;
};

// Keeps the log lines up to `step` (a resumed run writes again what came after its checkpoint). The
// kept lines replace the file atomically: a run killed here leaves the old log or the new one.
void truncate_log(const std::string& path, int64_t step) {
  std::ifstream in(path);
  std::string kept, line;
  while (std::getline(in, line)) {
    json r = json::parse(line, nullptr, false);
    if (!r.is_discarded() && r.is_object() && r.contains("step") && r["step"].is_number_integer() &&
        r["step"].get<int64_t>() <= step)
      kept += line + "\n";
  }
  write_file_atomically(path, "train", [&](const ByteSink& write) { write(kept.data(), kept.size()); });
}

void write_text_file(const std::string& path, const std::string& text) {
  write_file_atomically(path, "train", [&](const ByteSink& write) { write(text.data(), text.size()); });
}

// The run directory, held for the whole run by an advisory lock on <out>/.lock (released by the
// kernel when the process ends, however it ends), so that two trainings never write one directory.
class RunDirectory {
 public:
  explicit RunDirectory(const std::string& out) {
    std::error_code ec;
    if (fs::exists(out, ec) && !fs::is_directory(out, ec))
      MOM_THROW("train", "--out " << out << " exists and is not a directory");
    fs::create_directories(out, ec);
    MOM_CHECK(!ec, "train", "cannot create the run directory --out " << out << ": " << ec.message());
    const std::string lock_path = (fs::path(out) / ".lock").string();
    fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    MOM_CHECK(fd_ >= 0, "train", "cannot write in the run directory " << out << ": " << std::strerror(errno));
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      char pid[32] = {0};
      ssize_t n = ::pread(fd_, pid, sizeof pid - 1, 0);
      ::close(fd_);
      MOM_THROW("train", "--out " << out << " is in use by another `mom train`"
                                  << (n > 0 ? std::string(" (pid ") + std::string(pid, static_cast<size_t>(n)) + ")" : "")
                                  << "; wait for it to finish or choose another --out");
    }
    std::string pid = std::to_string(::getpid());
    if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
      ::close(fd_);
      MOM_THROW("train", "cannot write " << lock_path << ": " << std::strerror(errno));
    }
    for (const char* name : {"checkpoint.safetensors", "model.safetensors", "config.json", "log.jsonl"})
      remove_stale_temporaries((fs::path(out) / name).string());
  }
  ~RunDirectory() { ::close(fd_); }
  RunDirectory(const RunDirectory&) = delete;
  RunDirectory& operator=(const RunDirectory&) = delete;

 private:
  int fd_ = -1;
};

// What --resume may change: how long to train, the peak learning rate and the clip (what a diverged
// run needs lowered), and how and where to report. Everything else decides the weights, the data or
// the optimiser's state, and must be the checkpoint's.
bool changeable_on_resume(const std::string& key) {
  for (const char* k : {"steps", "lr", "clip", "device", "out", "eval_every", "ckpt_every", "log_every", "tf32",
                        "precision", "save_dtype", "accuracy_docs"})
    if (key == k) return true;
  return false;
}

void check_resumable(const TrainConfig& want, const TrainConfig& saved, const std::string& path) {
  json a = json::parse(want.to_json()), b = json::parse(saved.to_json());
  for (auto it = b.begin(); it != b.end(); ++it)
    if (!changeable_on_resume(it.key()) && a[it.key()] != it.value())
      MOM_THROW("train", "--resume: " << path << " was trained with " << flag_of(it.key()) << " " << it.value().dump()
                << ", this run asks for " << a[it.key()].dump() << "; a resumed run keeps it (start a new run in "
                << "another --out to change it)");
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
  c.mixer.n_modalities = static_cast<int64_t>(modalities.size());
  bool split = model != "dense";
  c.mixer.learned_routing = model == "learned";
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
            {"eval_data", eval_data}, {"batch", batch}, {"seq_len", seq_len}, {"doc_token", doc_token},
            {"steps", steps}, {"warmup", warmup},
            {"lr", lr}, {"min_lr_ratio", min_lr_ratio}, {"weight_decay", weight_decay}, {"beta1", beta1},
            {"beta2", beta2}, {"clip", clip}, {"seed", seed}, {"device", device}, {"out", out},
            {"eval_every", eval_every}, {"eval_batches", eval_batches}, {"ckpt_every", ckpt_every},
            {"log_every", log_every}, {"accuracy_docs", accuracy_docs}, {"tf32", tf32}, {"precision", precision},
            {"save_dtype", save_dtype},
            {"modalities", modalities},
            {"shuffle", shuffle}};
  return j.dump(2);
}

TrainConfig TrainConfig::from_json(const std::string& text) {
  json j = json::parse(text, nullptr, false);
  MOM_CHECK(j.is_object(), "train", "config is not a JSON object");
  TrainConfig c;
  // Every field present with its own JSON type: a number where an integer belongs, or a string where
  // a number belongs, is an error rather than a silent conversion.
  auto field = [&](const char* key) -> const json& {
    MOM_CHECK(j.contains(key), "train", "config has no '" << key << "'");
    return j[key];
  };
  auto integer = [&](const char* key, auto& out) {
    const json& v = field(key);
    MOM_CHECK(v.is_number_integer(), "train", "config '" << key << "' must be a whole number, got " << v.dump().substr(0, 40));
    using T = std::decay_t<decltype(out)>;
    if constexpr (std::is_unsigned_v<T>) {
      MOM_CHECK(v.is_number_unsigned(), "train", "config '" << key << "' must not be negative");
      out = v.get<T>();
    } else {
      MOM_CHECK(!v.is_number_unsigned() || v.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<T>::max()),
                "train", "config '" << key << "' is out of range");
      out = v.get<T>();
    }
  };
  auto real = [&](const char* key, double& out) {
    const json& v = field(key);
    MOM_CHECK(v.is_number(), "train", "config '" << key << "' must be a number, got " << v.dump().substr(0, 40));
    out = v.get<double>();
  };
  auto text_field = [&](const char* key, std::string& out) {
    const json& v = field(key);
    MOM_CHECK(v.is_string(), "train", "config '" << key << "' must be a string");
    out = v.get<std::string>();
  };
  text_field("model", c.model);
  integer("split_in_proj", c.split_in_proj);
  integer("split_x_proj", c.split_x_proj);
  integer("split_dt_proj", c.split_dt_proj);
  integer("split_out_proj", c.split_out_proj);
  integer("n_layers", c.n_layers);
  integer("d_model", c.d_model);
  integer("d_state", c.d_state);
  integer("expand", c.expand);
  integer("d_conv", c.d_conv);
  text_field("data", c.data);
  text_field("eval_data", c.eval_data);
  integer("batch", c.batch);
  integer("seq_len", c.seq_len);
  if (j.contains("doc_token"))
    integer("doc_token", c.doc_token);
  else
    c.doc_token = -1;  // a config without the field was trained reading across documents
  integer("steps", c.steps);
  integer("warmup", c.warmup);
  real("lr", c.lr);
  real("min_lr_ratio", c.min_lr_ratio);
  real("weight_decay", c.weight_decay);
  real("beta1", c.beta1);
  real("beta2", c.beta2);
  real("clip", c.clip);
  integer("seed", c.seed);
  text_field("device", c.device);
  text_field("out", c.out);
  integer("eval_every", c.eval_every);
  integer("eval_batches", c.eval_batches);
  integer("ckpt_every", c.ckpt_every);
  integer("log_every", c.log_every);
  if (j.contains("accuracy_docs"))
    integer("accuracy_docs", c.accuracy_docs);
  else
    c.accuracy_docs = 0;  // a config without the field measured no generation accuracy
  if (j.contains("modalities")) {  // absent: a toy run's config
    const json& v = j["modalities"];
    MOM_CHECK(v.is_array(), "train", "config 'modalities' must be a list of names");
    c.modalities.clear();
    for (const json& name : v) {
      MOM_CHECK(name.is_string(), "train", "config 'modalities' must be a list of names");
      c.modalities.push_back(name.get<std::string>());
    }
  }
  c.shuffle = false;  // absent: a run that read its token file in order
  if (j.contains("shuffle")) {
    MOM_CHECK(j["shuffle"].is_boolean(), "train", "config 'shuffle' must be true or false");
    c.shuffle = j["shuffle"].get<bool>();
  }
  if (j.contains("tf32")) {
    MOM_CHECK(j["tf32"].is_boolean(), "train", "config 'tf32' must be true or false");
    c.tf32 = j["tf32"].get<bool>();
  }
  if (j.contains("precision")) text_field("precision", c.precision);  // absent: a float32 run
  if (j.contains("save_dtype")) text_field("save_dtype", c.save_dtype);
  return c;
}

std::string flag_of(const std::string& key) {
  if (key == "n_layers") return "--layers";
  std::string flag = "--" + key;
  std::replace(flag.begin(), flag.end(), '_', '-');
  return flag;
}

void TrainConfig::validate() const {
  MOM_CHECK(model == "dense" || model == "mom" || model == "learned", "train",
            "--model must be dense, mom or learned, got '" << model << "'");
  MOM_CHECK(precision == "f32" || precision == "bf16", "train",
            "--precision must be f32 or bf16, got '" << precision << "'");
  MOM_CHECK(save_dtype == "f32" || save_dtype == "bf16", "train",
            "--save-dtype must be f32 or bf16, got '" << save_dtype << "'");
  for (auto [flag, v] : {std::pair{"--split-in-proj", split_in_proj}, {"--split-x-proj", split_x_proj},
                         {"--split-dt-proj", split_dt_proj}, {"--split-out-proj", split_out_proj}})
    MOM_CHECK(v >= -1 && v <= 1, "train", flag << " must be 0 or 1, got " << v);
  auto in = [](auto v, auto lo, auto hi) { return v >= lo && v <= hi; };
  for (const Limit& l : limits()) {
    const int64_t v = l.get(*this);
    MOM_CHECK(in(v, l.lo, l.hi), "train", l.flag << " must be in [" << l.lo << ", " << l.hi << "], got " << v);
  }
  MOM_CHECK(d_conv >= 2 && d_conv <= 8, "train", "d_conv must be in [2, 8], got " << d_conv);
  MOM_CHECK(stop_at <= steps, "train", "--stop-at (" << stop_at << ") must not exceed --steps (" << steps << ")");
  MOM_CHECK(batch * seq_len <= kMaxBatchTokens, "train", "--batch x --seq-len is " << batch * seq_len
            << " tokens, at most " << kMaxBatchTokens << " per batch");
  MOM_CHECK(eval_batches * batch * seq_len <= kMaxEvalTokens, "train", "the held-out set (--eval-batches x --batch x "
            << "--seq-len) is " << eval_batches * batch * seq_len << " tokens, at most " << kMaxEvalTokens);
  // Real numbers: finite (JSON cannot hold inf or NaN, so a config holding one could not be loaded).
  MOM_CHECK(std::isfinite(lr) && lr > 0, "train", "--lr must be a finite number > 0, got " << lr);
  MOM_CHECK(std::isfinite(min_lr_ratio) && in(min_lr_ratio, 0.0, 1.0), "train",
            "--min-lr-ratio must be in [0, 1], got " << min_lr_ratio);
  MOM_CHECK(std::isfinite(weight_decay) && weight_decay >= 0, "train",
            "--weight-decay must be a finite number >= 0, got " << weight_decay);
  MOM_CHECK(std::isfinite(clip) && clip > 0, "train", "--clip must be a finite number > 0, got " << clip);
  MOM_CHECK(in(beta1, 0.0, 1.0) && beta1 < 1 && in(beta2, 0.0, 1.0) && beta2 < 1, "train",
            "betas must lie in [0, 1), got " << beta1 << " and " << beta2);
  MOM_CHECK(!data.empty(), "train", "--data is empty: give toy or a token file");
  MOM_CHECK(!out.empty(), "train", "--out is empty: give a run directory");
  parse_device(device == "auto" ? "cpu" : device);
  check_modality_names(modalities, "train", "the config");
}

void check_modality_names(const std::vector<std::string>& names, const char* op, const std::string& where) {
  MOM_CHECK(!names.empty() && names.size() <= static_cast<size_t>(kMaxModalities), op,
            where << " declares " << names.size() << " modalities; the trainer takes 1 to " << kMaxModalities);
  for (size_t m = 0; m < names.size(); ++m) {
    MOM_CHECK(!names[m].empty(), op, where << ": modality " << m << " has an empty name");
    for (size_t k = 0; k < m; ++k)
      MOM_CHECK(names[k] != names[m], op, where << ": modalities " << k << " and " << m << " are both named '"
                                                   << names[m].substr(0, 64) << "' (a modality is named by its "
                                                   << "largest range); their losses could not be told apart");
  }
}

const std::vector<TrainConfig::Limit>& TrainConfig::limits() {
  static const std::vector<Limit> table = {
      {"--layers", 1, 1024, [](const TrainConfig& c) { return c.n_layers; }},
      {"--d-model", 1, 65536, [](const TrainConfig& c) { return c.d_model; }},
      {"--d-state", 1, 64, [](const TrainConfig& c) { return c.d_state; }},
      {"--expand", 1, 16, [](const TrainConfig& c) { return c.expand; }},
      {"--batch", 1, 65535, [](const TrainConfig& c) { return c.batch; }},
      {"--seq-len", 1, int64_t{1} << 24, [](const TrainConfig& c) { return c.seq_len; }},
      {"--doc-token", -1, kMaxVocabSize - 1, [](const TrainConfig& c) { return c.doc_token; }},
      {"--steps", 1, kMaxSteps, [](const TrainConfig& c) { return c.steps; }},
      {"--warmup", 0, kMaxSteps, [](const TrainConfig& c) { return c.warmup; }},
      {"--stop-at", 0, kMaxSteps, [](const TrainConfig& c) { return c.stop_at; }},
      {"--eval-every", 1, kMaxSteps, [](const TrainConfig& c) { return c.eval_every; }},
      {"--eval-batches", 1, 100000, [](const TrainConfig& c) { return c.eval_batches; }},
      {"--ckpt-every", 1, kMaxSteps, [](const TrainConfig& c) { return c.ckpt_every; }},
      {"--log-every", 1, kMaxSteps, [](const TrainConfig& c) { return c.log_every; }},
      {"--accuracy-docs", 0, 65536, [](const TrainConfig& c) { return c.accuracy_docs; }},
  };
  return table;
}

std::string format_losses(const Losses& l, const std::vector<std::string>& modalities) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "loss %.4f |", l.total);
  std::string out = buf;
  for (size_t m = 0; m < modalities.size() && m < l.by_modality.size(); ++m) {
    std::snprintf(buf, sizeof buf, " %.3f", l.by_modality[m]);
    out += " " + modalities[m] + buf;
  }
  return out;
}

void check_model_size(const nn::LMConfig& c) {
  MOM_CHECK(c.vocab_size >= 1 && c.vocab_size <= kMaxVocabSize, "train",
            "a vocabulary of " << c.vocab_size << " ids is outside [1, " << kMaxVocabSize << "]");
  // Counted in double: the products of the limits above do not overflow it.
  const double D = c.mixer.d_model, E = static_cast<double>(c.mixer.d_inner()), N = c.mixer.d_state,
               R = c.mixer.rank(), W = c.mixer.d_conv, M = c.mixer.n_modalities, V = c.vocab_size;
  auto copies = [&](bool split) { return split ? M : 1.0; };
  const double layer = D + copies(c.mixer.split_in_proj) * 2 * E * D + E * W + E +
                       copies(c.mixer.split_x_proj) * (R + 2 * N) * E + copies(c.mixer.split_dt_proj) * (E * R + E) +
                       E * N + E + copies(c.mixer.split_out_proj) * D * E + (c.mixer.learned_routing ? D * M : 0);
  const double params = c.n_layers * layer + V * D + D;
  MOM_CHECK(params <= kMaxParameters, "train", "the model would have " << params << " parameters, at most "
            << kMaxParameters << " (check --layers, --d-model, --expand and the vocabulary)");
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
  if (c.mixer.learned_routing) layer += 2 * D * c.mixer.n_modalities + 4 * c.mixer.n_modalities + D;  // router, softmax, gate
  return c.n_layers * layer + 4 * D + 2 * D * V;
}

// ---- evaluation ----

Losses evaluate(const nn::MambaLM& model, const std::vector<Batch>& batches) {
  NoGradGuard no_grad;
  Device device = model.embedding->weight.device();
  const size_t M = static_cast<size_t>(model.config().mixer.n_modalities);
  std::vector<double> sum(M, 0.0), count(M, 0.0);
  double total = 0, n = 0;
  for (const Batch& host : batches) {
    Batch b = to_device(host, device);
    Tensor logits = model.forward(b.tokens, b.modalities, b.doc_start);
    double T = static_cast<double>(b.targets.numel());
    total += mean_loss(logits, b).item() * T;
    n += T;
    accumulate_by_modality(logits, b, sum, count);
  }
  return finish(total, n, sum, count);
}

DocumentSplit split_documents(const TokenFile& file, int64_t doc_token, int64_t eval_tokens) {
  const std::vector<int32_t>& t = file.tokens;
  const int64_t n = static_cast<int64_t>(t.size());
  DocumentSplit s;
  if (doc_token < 0) {  // no documents: the tail
    const int64_t cut = std::max<int64_t>(0, n - eval_tokens);
    s.train.assign(t.begin(), t.begin() + cut);
    s.held_out.assign(t.begin() + cut, t.end());
    return s;
  }
  const std::vector<int64_t> starts = document_starts(t, doc_token);
  const std::vector<int32_t> modality = file.vocab.modality_table();
  const int64_t D = static_cast<int64_t>(starts.size()) - 1;
  std::vector<uint32_t> mix(D, 0);  // the modalities each document holds, as bits
  for (int64_t d = 0; d < D; ++d)
    for (int64_t i = starts[d]; i < starts[d + 1]; ++i) mix[d] |= 1u << modality[t[i]];
  std::map<uint32_t, std::vector<int64_t>> by_mix;
  for (int64_t d = 0; d < D; ++d) by_mix[mix[d]].push_back(d);
  std::vector<bool> held(D, false);
  for (const auto& [m, docs] : by_mix) {
    const int64_t k = static_cast<int64_t>(docs.size());
    if (k >= kHeldOutEvery) {
      for (int64_t j = kHeldOutEvery / 2; j < k; j += kHeldOutEvery) held[docs[j]] = true;
    } else {
      held[docs[k / 2]] = true;  // every mix is evaluated, a mix of one document too
    }
  }
  for (int64_t d = 0; d < D; ++d) {
    std::vector<int32_t>& out = held[d] ? s.held_out : s.train;
    out.insert(out.end(), t.begin() + starts[d], t.begin() + starts[d + 1]);
    s.held_out_documents += held[d];
  }
  s.documents = D;
  return s;
}

namespace {

// The held-out tokens of a run that evaluates on a token file: --eval-data, or the documents (the tail,
// without a document token) that --data holds out of training. `what` says which.
TokenFile held_out_file(const TrainConfig& c, std::string& what) {
  const int64_t needed = c.eval_batches * c.batch * c.seq_len + 1;
  const std::string& path = c.eval_data.empty() ? c.data : c.eval_data;
  TokenFile file = read_token_file(path);
  what = path;
  if (c.eval_data.empty()) {  // the documents the training data holds out
    const DocumentSplit split = split_documents(file, c.doc_token, needed);
    file.tokens = split.held_out;
    what = c.doc_token < 0 ? "the last " + std::to_string(file.tokens.size()) + " tokens of " + path
                           : "the held-out " + std::to_string(split.held_out_documents) + " of " +
                                 std::to_string(split.documents) + " documents of " + path + " (" +
                                 std::to_string(file.tokens.size()) + " tokens)";
    MOM_CHECK(static_cast<int64_t>(file.tokens.size()) >= needed, "train",
              what << " are fewer than the held-out set (--eval-batches " << c.eval_batches << " x --batch "
                   << c.batch << " x --seq-len " << c.seq_len << ") needs, " << needed
                   << "; lower --eval-batches, or give held-out data with --eval-data");
  } else {
    const Vocab train_vocab = c.data == "toy" ? toy_vocab() : read_token_file(c.data).vocab;
    MOM_CHECK(file.vocab.size == train_vocab.size && file.vocab.ranges == train_vocab.ranges, "train",
              "--eval-data " << path << ": its vocabulary (" << file.vocab.size << " ids in "
                             << file.vocab.ranges.size() << " ranges) is not the training data's (" << train_vocab.size
                             << " ids in " << train_vocab.ranges.size() << " ranges); token ids would mean other things");
    // The held-out set is read once, in order; a file too short for it would be read twice.
    MOM_CHECK(static_cast<int64_t>(file.tokens.size()) >= needed, "train",
              path << " holds " << file.tokens.size() << " tokens; the held-out set (--eval-batches " << c.eval_batches
                   << " x --batch " << c.batch << " x --seq-len " << c.seq_len << ") needs " << needed
                   << "; lower --eval-batches or give a longer file");
  }
  return file;
}

}  // namespace

std::vector<Batch> eval_set(const TrainConfig& c, std::string* description) {
  auto describe = [&](const std::string& text) {
    if (description) *description = text;
  };
  if (c.eval_data.empty() && c.data == "toy") {
    describe("the toy world's held-out seed");
    return make_eval_set(c.seed + kEvalSeedOffset, c.eval_batches, c.batch, c.seq_len, c.doc_token);
  }
  std::string what;
  TokenFile file = held_out_file(c, what);
  describe(what);
  Batcher b(std::make_shared<TokenFileSource>(std::move(file)), c.batch, c.seq_len, c.doc_token);
  std::vector<Batch> out;
  for (int64_t i = 0; i < c.eval_batches; ++i) out.push_back(b.next());
  return out;
}

std::vector<std::vector<int32_t>> held_out_scenes(const TrainConfig& c, int64_t n) {
  std::vector<std::vector<int32_t>> out;
  if (n <= 0) return out;
  if (c.eval_data.empty() && c.data == "toy") {  // the documents the held-out batches start with
    ToyWorld world(c.seed + kEvalSeedOffset);
    for (int64_t i = 0; i < n; ++i) out.push_back(world.next_document());
    return out;
  }
  std::string what;
  const TokenFile file = held_out_file(c, what);
  const Vocab& toy = toy_vocab();
  if (file.vocab.size != toy.size || file.vocab.ranges != toy.ranges) return out;
  const std::vector<int32_t>& t = file.tokens;
  for (size_t begin = 0; begin < t.size() && static_cast<int64_t>(out.size()) < n;) {
    size_t end = begin + 1;
    while (end < t.size() && t[end] != kBos) ++end;
    std::vector<int32_t> doc(t.begin() + begin, t.begin() + end);
    if (split_document(doc)) out.push_back(std::move(doc));
    begin = end;
  }
  return out;
}

// ---- loading ----

LoadedModel load_model(const std::string& path) {
  std::error_code ec;
  const bool is_run = fs::is_directory(path, ec);
  const std::string file = is_run ? (fs::path(path) / "checkpoint.safetensors").string() : path;
  LoadedModel out;
  std::map<std::string, Tensor> weights;
  SafetensorsFile f = load_safetensors(file);
  if (is_run || f.tensors.count("model.embedding.weight")) {
    f = {};  // read_checkpoint reads the file again, whole
    Checkpoint ck = read_checkpoint(file);
    out.config = ck.config;
    weights = std::move(ck.model);
  } else {
    MOM_CHECK(f.metadata.count("config"), "load_model",
              file << " carries no training config in its metadata (not a model.safetensors of `mom train`?)");
    try {
      out.config = TrainConfig::from_json(f.metadata.at("config"));
      out.config.validate();
    } catch (const Error& e) {
      MOM_THROW("load_model", file << ": its config: " << e.what());
    }
    weights = std::move(f.tensors);
    MOM_CHECK(weights.count("embedding.weight"), "load_model", file << " has no embedding.weight");
    check_finite(weights, "weight", "load_model", file);
    // A bf16 model file (--save-dtype bf16) widens exactly into the float32 model.
    for (auto& [name, t] : weights)
      if (t.dtype() == DType::bf16) t = t.to(DType::f32);
  }
  const Tensor& emb = weights.at("embedding.weight");
  MOM_CHECK(emb.dim() == 2, "load_model", file << ": embedding.weight has shape " << shape_str(emb.shape())
                                                << ", expected (vocabulary, d_model)");
  nn::LMConfig lm_cfg = out.config.lm_config(emb.size(0));
  check_model_size(lm_cfg);
  Generator gen(out.config.seed);
  out.model = std::make_shared<nn::MambaLM>(lm_cfg, gen);
  out.model->load_state_dict(weights);
  return out;
}

// ---- training ----

namespace {

// The run's data: the training source, and its vocabulary checked against what this trainer handles.
std::shared_ptr<TokenSource> training_source(const TrainConfig& cfg) {
  auto source = make_source(cfg);
  const Vocab& v = source->vocab();
  check_modality_names(v.modality_names(), "train", cfg.data);
  return source;
}

}  // namespace

TrainResult train(const TrainConfig& requested) {
  requested.validate();
  const Device device = resolve_device(requested.device);
  // The data is read and checked before the run directory is made; its modalities are the run's.
  auto source = training_source(requested);
  TrainConfig cfg = requested;
  cfg.modalities = source->vocab().modality_names();
  MOM_CHECK(cfg.doc_token < source->vocab().size, "train", "--doc-token " << cfg.doc_token << " is outside "
            << cfg.data << "'s vocabulary [0, " << source->vocab().size << ") (-1: read across documents)");
  RunDirectory run_dir(cfg.out);
  const std::string log_path = (fs::path(cfg.out) / "log.jsonl").string();
  const std::string ckpt_path = (fs::path(cfg.out) / "checkpoint.safetensors").string();
  const std::string model_path = (fs::path(cfg.out) / "model.safetensors").string();

  Batcher batcher(source, cfg.batch, cfg.seq_len, cfg.doc_token);
  const nn::LMConfig lm_cfg = cfg.lm_config(source->vocab().size);
  check_model_size(lm_cfg);
  std::string held_out;
  const std::vector<Batch> evals = eval_set(cfg, &held_out);
  // The scenes every evaluation's generation accuracies are measured on (none without the toy vocabulary).
  const std::vector<std::vector<int32_t>> scenes = held_out_scenes(cfg, cfg.accuracy_docs);
  if (!cfg.quiet) {
    std::printf("held-out set: %s", held_out.c_str());
    if (!scenes.empty())
      std::printf("; generation accuracies on its first %zu scenes", scenes.size());
    else if (cfg.accuracy_docs > 0)
      std::printf("; no generation accuracies (they need toy documents, in the toy vocabulary)");
    std::printf("\n");
  }

  // A resumed run reads and checks its whole checkpoint before it builds anything.
  Checkpoint resumed;
  if (cfg.resume) {
    std::error_code ec;
    MOM_CHECK(fs::exists(ckpt_path, ec), "train", "--resume: " << cfg.out << " holds no checkpoint.safetensors to resume from");
    resumed = read_checkpoint(ckpt_path);
    check_resumable(cfg, resumed.config, ckpt_path);
    MOM_CHECK(cfg.steps > resumed.step, "train", "--resume: the checkpoint is at step " << resumed.step
              << (resumed.step == resumed.config.steps ? ", the end of the run" : "") << "; give --steps above "
              << resumed.step << " to train further");
    MOM_CHECK(cfg.stop_at == 0 || cfg.stop_at > resumed.step, "train", "--resume: --stop-at " << cfg.stop_at
              << " is not after the checkpoint's step " << resumed.step);
  }

  Generator gen(cfg.seed);
  nn::MambaLM model(lm_cfg, gen);  // initialised on the CPU (the seeded generator), then moved
  model.to(device);
  model.set_compute_dtype(cfg.precision == "bf16" ? DType::bf16 : DType::f32);
  kernels::set_allow_tf32(cfg.tf32);
  optim::AdamW opt = optim::AdamW::from_module(model, {cfg.lr, cfg.beta1, cfg.beta2, 1e-8, cfg.weight_decay});
  optim::WarmupCosine schedule{cfg.lr, cfg.warmup, cfg.steps, cfg.min_lr_ratio};
  const double fpt = flops_per_token(lm_cfg);
  // MFU = training FLOPs per second (3 x the forward's per token) / the device's measured bf16 GEMM rate.
  const double peak_rate = bf16_gemm_rate(device);
  if (peak_rate > 0 && !cfg.quiet)
    std::printf("bf16 GEMM rate of %s: %.0f TFLOP/s (MFU's denominator)\n", device.str().c_str(), peak_rate / 1e12);

  int64_t step = 0, saved_step = 0;  // saved_step: the step checkpoint.safetensors holds (0: none)
  double tokens = 0, flops = 0, elapsed = 0;
  if (cfg.resume) {
    model.load_state_dict(resumed.model);
    opt.load_state_dict(resumed.optim);
    // The optimiser's own record of its hyper-parameters must be the config's (lr follows the schedule).
    for (size_t g = 0; g < opt.groups().size(); ++g) {
      const optim::AdamWOptions& o = opt.groups()[g].options;
      MOM_CHECK(o.beta1 == cfg.beta1 && o.beta2 == cfg.beta2 && o.weight_decay == (g == 0 ? cfg.weight_decay : 0.0),
                "train", "--resume: " << ckpt_path << ": the optimiser state of group " << g << " (betas " << o.beta1
                << ", " << o.beta2 << ", weight decay " << o.weight_decay << ") disagrees with the run's config");
    }
    batcher.load_state_dict(resumed.data);
    step = saved_step = resumed.step;
    tokens = resumed.tokens;
    flops = resumed.flops;
    elapsed = resumed.elapsed;
    resumed = {};
    truncate_log(log_path, step);
    write_text_file((fs::path(cfg.out) / "config.json").string(), cfg.to_json() + "\n");
    if (!cfg.quiet) {
      std::printf("resumed %s at step %lld\n", ckpt_path.c_str(), static_cast<long long>(step));
      const std::vector<std::string> fresh = opt.parameters_without_state();
      if (!fresh.empty())
        std::printf("note: %zu parameters have no optimiser state (no gradient has reached them yet), e.g. %s\n",
                    fresh.size(), fresh.front().c_str());
    }
  } else {
    // A new run owns the directory: a previous run's files go, so that none of them is mistaken for
    // this run's.
    std::error_code ec;
    if (fs::exists(ckpt_path, ec) && !cfg.quiet)
      std::printf("note: starting a new run in %s: the previous run's checkpoint and model are deleted\n",
                  cfg.out.c_str());
    fs::remove(ckpt_path, ec);
    fs::remove(model_path, ec);
    write_text_file((fs::path(cfg.out) / "config.json").string(), cfg.to_json() + "\n");
    write_text_file(log_path, "");
  }
  LogFile log(log_path);
  if (!cfg.quiet) {
    std::printf("%s model, %lld parameters, %.3g training FLOPs per token, on %s\n%s", cfg.model.c_str(),
                static_cast<long long>(model.num_parameters()), 3 * fpt, device.str().c_str(),
                model.parameter_summary().c_str());
    std::fflush(stdout);
  }

  // What is on disk, for the messages of a run that stops.
  auto on_disk = [&] {
    std::ostringstream os;
    if (saved_step > 0)
      os << "On disk: " << ckpt_path << " holds step " << saved_step << ", the last good one (finite, with a finite "
         << "loss on its step's batch); resume from it with a lower --lr, or start again with one";
    else
      os << "No checkpoint was written (the first was due at step " << std::min(cfg.ckpt_every, cfg.steps)
         << "); start again with a lower --lr";
    return os.str();
  };
  // A checkpoint is written only of a model that is still good: its weights give a finite loss on the
  // step's batch (one forward without a graph, a third of a step per checkpoint), and write_checkpoint
  // refuses non-finite weights and optimiser state. So the file on disk is always the last good one.
  auto save_checkpoint = [&](const Batch& b) {
    double check = nan();
    {
      NoGradGuard no_grad;
      check = mean_loss(model.forward(b.tokens, b.modalities, b.doc_start), b).item();
    }
    MOM_CHECK(std::isfinite(check), "train", "the weights after step " << step << " give a loss of "
              << number_str(check) << " on its batch; stopping without checkpointing them. " << on_disk()
             );
    Checkpoint ck;
    ck.config = cfg;
    ck.step = step;
    ck.tokens = tokens;
    ck.flops = flops;
    ck.elapsed = elapsed;
    ck.model = model.state_dict();
    ck.optim = opt.state_dict();
    ck.data = batcher.state_dict();
    try {
      write_checkpoint(ckpt_path, ck);
    } catch (const Error& e) {
      MOM_THROW("train", "step " << step << ": the checkpoint was not written: " << e.what() << ". " << on_disk());
    }
    saved_step = step;
  };

  TrainResult result;
  result.modalities = cfg.modalities;
  auto run_eval = [&] {
    result.last_eval = evaluate(model, evals);
    MOM_CHECK(std::isfinite(result.last_eval.total), "train", "the eval loss is " << number_str(result.last_eval.total)
              << " at step " << step << "; stopping. " << on_disk());
    json r = {{"kind", "eval"}, {"step", step}, {"tokens", tokens}, {"flops", flops}, {"time", elapsed},
              {"loss", number_or_null(result.last_eval.total)}};
    add_modality_losses(r, result.last_eval, cfg.modalities);
    std::string generation;
    if (!scenes.empty()) {
      const GenerationAccuracy a = evaluate_generation(model, scenes, cfg.doc_token, kAccuracyRowsPerBatch);
      for (Task t : kTasks) r[std::string("acc_") + task_key(t)] = a[t].share();
      r["pixel_acc_caption_image"] = a[Task::caption_image].pixel_share();
      generation = " | " + format_generation_accuracy(a);
      result.last_generation = a;
    }
    if (step == cfg.steps) {  // the trained model's decoding speed, in the last evaluation's line
      result.decode_ms_per_token = decode_ms_per_token(model);
      r["decode_ms_per_token"] = result.decode_ms_per_token;
    }
    log.append(r);
    if (!cfg.quiet)
      std::printf("eval  %5lld  %s%s\n", static_cast<long long>(step),
                  format_losses(result.last_eval, cfg.modalities).c_str(), generation.c_str());
  };

  // The step queues its work and waits for none of it: the loss, the gradient norm and the
  // per-modality losses are read back only at logging and checkpoint steps. A non-finite loss or
  // gradient norm stops the run there; a checkpoint is written only of finite weights and optimiser
  // state (write_checkpoint checks), so the checkpoint on disk is always the last good one.
  const auto params = model.parameters();
  double window_tokens = 0, window_time = 0;
  reset_peak_memory(device);
  while (step < cfg.steps) {
    auto t0 = std::chrono::steady_clock::now();
    Batch b = to_device(batcher.next(), device);
    double lr = schedule.lr_at(step + 1);
    opt.set_lr(lr);
    Tensor logits = model.forward(b.tokens, b.modalities, b.doc_start);
    Tensor loss = mean_loss(logits, b);  // what the log reports; learned routing trains on it plus the routers'
    backward(model.aux_loss().defined() ? add(loss, model.aux_loss()) : loss);  // load-balancing loss
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
      const double norm = grad_norm.item();
      MOM_CHECK(std::isfinite(loss_value) && std::isfinite(norm), "train",
                (std::isfinite(loss_value) ? "the gradient norm" : "the loss") << " is "
                << number_str(std::isfinite(loss_value) ? norm : loss_value) << " at step " << step << "; stopping. "
                << on_disk());
      std::vector<double> sum(cfg.modalities.size(), 0.0), count(cfg.modalities.size(), 0.0);
      accumulate_by_modality(logits.detach(), b, sum, count);
      result.last_train = finish(loss_value * T, T, sum, count);
      if (log_now) {
        result.tokens_per_second = window_tokens / window_time;
        const double peak_mib = peak_memory_mib(device);
        json r = {{"kind", "train"}, {"step", step}, {"tokens", tokens}, {"flops", flops}, {"time", elapsed},
                  {"loss", loss_value}, {"lr", lr}, {"grad_norm", norm}, {"tokens_per_second", result.tokens_per_second}};
        add_modality_losses(r, result.last_train, cfg.modalities);
        const double mfu = peak_rate > 0 ? 3 * fpt * result.tokens_per_second / peak_rate : 0.0;
        if (device.is_cuda()) {
          r["peak_memory_mib"] = peak_mib;
          r["mfu"] = mfu;
        }
        log.append(r);
        if (!cfg.quiet) {
          double eta = (cfg.steps - step) * (window_time / (window_tokens / T));
          char mem[64] = "";
          if (device.is_cuda()) std::snprintf(mem, sizeof mem, " | MFU %.1f%% | %.0f MiB peak", 100 * mfu, peak_mib);
          std::printf("step  %5lld/%lld  %s | lr %.2e | gnorm %.2f | %.1fk tok/s%s | ETA %s\n",
                      static_cast<long long>(step), static_cast<long long>(cfg.steps),
                      format_losses(result.last_train, cfg.modalities).c_str(), lr, norm, result.tokens_per_second / 1e3, mem,
                      format_duration(eta).c_str());
          std::fflush(stdout);
        }
        window_tokens = window_time = 0;
      }
    }
    if (step % cfg.eval_every == 0 || step == cfg.steps) run_eval();
    if (ckpt_now) save_checkpoint(b);
    if (step == cfg.stop_at) {
      if (!cfg.quiet) std::printf("stopped at step %lld as asked; continue with --resume\n", static_cast<long long>(step));
      result.steps = step;
      return result;
    }
  }
  if (!cfg.quiet) std::printf("decode, one row: %.3f ms per token\n", result.decode_ms_per_token);
  // The last step was checkpointed, so these weights are finite.
  std::map<std::string, Tensor> weights = model.state_dict();
  if (cfg.save_dtype == "bf16")
    for (auto& [name, t] : weights) t = t.to(DType::bf16);
  save_safetensors(model_path, weights, {{"config", cfg.to_json()}});
  result.steps = step;
  return result;
}

}  // namespace mom::toy
