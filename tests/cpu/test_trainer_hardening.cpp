// The trainer on bad input: configs out of range, damaged checkpoints, divergence, a second writer, a
// full disk. Each case ends in a "[component] ..." error, and nothing on disk is lost: the files a
// refused resume reads are the same bytes afterwards, and a checkpoint always holds a good model.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <fcntl.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/safetensors.h"
#include "examples/toy/checkpoint.h"
#include "examples/toy/token_file.h"
#include "examples/toy/train.h"
#include "tests/support.h"
#include "tests/toy_support.h"

namespace mom {
namespace {

namespace fs = std::filesystem;

toy::TrainConfig tiny(const std::string& name) {
  return test::tiny_train_config(test::scratch_path(name));
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

// A run stopped at step 4 with its checkpoint; the config to resume it with.
toy::TrainConfig stopped_run(const std::string& name) {
  toy::TrainConfig c = tiny(name);
  c.stop_at = 4;
  toy::train(c);
  c.stop_at = 0;
  c.resume = true;
  return c;
}

std::string ckpt_of(const toy::TrainConfig& c) { return c.out + "/checkpoint.safetensors"; }

// Rewrites the run's checkpoint through `edit`, then expects --resume to fail with `prefix` and to
// leave the checkpoint and the log as they were.
void expect_resume_refused(const toy::TrainConfig& c,
                           const std::function<void(std::map<std::string, Tensor>&, std::map<std::string, std::string>&)>& edit,
                           const std::string& prefix, const std::string& fragment = "") {
  SafetensorsFile f = load_safetensors(ckpt_of(c));
  edit(f.tensors, f.metadata);
  save_safetensors(ckpt_of(c), f.tensors, f.metadata);
  const std::string ckpt = read_bytes(ckpt_of(c)), log = read_bytes(c.out + "/log.jsonl");
  std::string msg = error_of([&] { toy::train(c); });
  EXPECT_TRUE(starts_with(msg, prefix)) << msg;
  EXPECT_NE(msg.find(fragment), std::string::npos) << msg;
  EXPECT_EQ(read_bytes(ckpt_of(c)), ckpt) << "a refused resume changed the checkpoint";
  EXPECT_EQ(read_bytes(c.out + "/log.jsonl"), log) << "a refused resume changed the log";
}

TEST(TrainerHardening, ConfigValuesOutOfRangeAreRefusedNamingTheFlag) {
  struct Case {
    std::function<void(toy::TrainConfig&)> set;
    const char* flag;
  };
  const Case cases[] = {
      {[](toy::TrainConfig& c) { c.d_model = 68831134603393850; }, "--d-model"},
      {[](toy::TrainConfig& c) { c.n_layers = 0; }, "--layers"},
      {[](toy::TrainConfig& c) { c.d_state = 65; }, "--d-state"},
      {[](toy::TrainConfig& c) { c.batch = int64_t{1} << 40; }, "--batch"},
      {[](toy::TrainConfig& c) { c.seq_len = -3; }, "--seq-len"},
      {[](toy::TrainConfig& c) { c.doc_token = -2; }, "--doc-token"},
      {[](toy::TrainConfig& c) { c.doc_token = 67; }, "--doc-token"},  // beyond the toy vocabulary
      {[](toy::TrainConfig& c) { c.eval_batches = 1000000; }, "--eval-batches"},
      {[](toy::TrainConfig& c) { c.clip = INFINITY; }, "--clip"},
      {[](toy::TrainConfig& c) { c.min_lr_ratio = NAN; }, "--min-lr-ratio"},
      {[](toy::TrainConfig& c) { c.min_lr_ratio = -0.5; }, "--min-lr-ratio"},
      {[](toy::TrainConfig& c) { c.lr = INFINITY; }, "--lr"},
      {[](toy::TrainConfig& c) { c.weight_decay = NAN; }, "--weight-decay"},
      {[](toy::TrainConfig& c) { c.stop_at = 13; }, "--stop-at"},
      {[](toy::TrainConfig& c) { c.out = ""; }, "--out"},
      {[](toy::TrainConfig& c) { c.data = ""; }, "--data"},
      {[](toy::TrainConfig& c) { c.batch = 65535, c.seq_len = 65535; }, "--batch x --seq-len"},
  };
  for (const Case& k : cases) {
    toy::TrainConfig c = tiny("range");
    k.set(c);
    std::string msg = error_of([&] { toy::train(c); });
    EXPECT_TRUE(starts_with(msg, "[train]")) << msg;
    EXPECT_NE(msg.find(k.flag), std::string::npos) << msg;
  }
  EXPECT_FALSE(fs::exists(test::scratch_path("range"))) << "a refused config created its run directory";
}

TEST(TrainerHardening, ModelSizeIsCheckedBeforeAnyAllocation) {
  toy::TrainConfig c = tiny("size");
  test::expect_error([&] { toy::check_model_size(c.lm_config(int64_t{1} << 25)); }, "[train] a vocabulary");
  c.n_layers = 1024;
  c.d_model = 65536;
  c.expand = 16;
  test::expect_error([&] { toy::check_model_size(c.lm_config(67)); }, "[train] the model would have");
  c = tiny("size");
  toy::check_model_size(c.lm_config(67));  // the tiny model passes
}

TEST(TrainerHardening, ConfigJsonIsReadStrictly) {
  const std::string good = tiny("json").to_json();
  EXPECT_EQ(toy::TrainConfig::from_json(good).to_json(), good);
  auto with = [&](const char* key, const nlohmann::json& v) {
    nlohmann::json j = nlohmann::json::parse(good);
    if (v.is_discarded())
      j.erase(key);
    else
      j[key] = v;
    return j.dump();
  };
  test::expect_error([&] { toy::TrainConfig::from_json(with("batch", 2.5)); }, "[train] config 'batch'");
  test::expect_error([&] { toy::TrainConfig::from_json(with("clip", nullptr)); }, "[train] config 'clip'");
  test::expect_error([&] { toy::TrainConfig::from_json(with("seed", -1)); }, "[train] config 'seed'");
  test::expect_error([&] { toy::TrainConfig::from_json(with("steps", "600")); }, "[train] config 'steps'");
  test::expect_error([&] { toy::TrainConfig::from_json(with("lr", nlohmann::json::value_t::discarded)); },
                     "[train] config has no 'lr'");
  test::expect_error([&] { toy::TrainConfig::from_json("[1, 2]"); }, "[train] config is not a JSON object");
  test::expect_error([&] { toy::TrainConfig::from_json(with("doc_token", 1.5)); }, "[train] config 'doc_token'");
  // A config without doc_token was trained reading across documents.
  EXPECT_EQ(toy::TrainConfig::from_json(with("doc_token", nlohmann::json::value_t::discarded)).doc_token, -1);
  EXPECT_EQ(toy::TrainConfig::from_json(good).doc_token, toy::kBos);
}

TEST(TrainerHardening, DamagedCheckpointMetadataIsRefused) {
  toy::TrainConfig c = stopped_run("meta");
  const SafetensorsFile f = load_safetensors(ckpt_of(c));
  for (const char* step : {"-5", "5abc", "1e3", "0", "", " 4", "99999999999999999999"})
    expect_resume_refused(c, [&](auto&, auto& m) { m = f.metadata, m["step"] = step; }, "[checkpoint]", "'step'");
  for (const char* key : {"tokens", "flops", "elapsed"}) {
    expect_resume_refused(c, [&](auto&, auto& m) { m = f.metadata, m[key] = "nan"; }, "[checkpoint]", key);
    expect_resume_refused(c, [&](auto&, auto& m) { m = f.metadata, m[key] = "-1"; }, "[checkpoint]", key);
    expect_resume_refused(c, [&](auto&, auto& m) { m = f.metadata, m.erase(key); }, "[checkpoint]", key);
  }
  expect_resume_refused(c, [&](auto&, auto& m) { m = f.metadata, m.erase("config"); }, "[checkpoint]", "'config'");
  expect_resume_refused(c, [&](auto&, auto& m) { m = f.metadata, m["config"] = "{"; }, "[checkpoint]", "config");
  expect_resume_refused(
      c, [&](auto&, auto& m) {
        m = f.metadata;
        auto j = nlohmann::json::parse(m["config"]);
        j["clip"] = nullptr;
        m["config"] = j.dump();
      },
      "[checkpoint]", "'clip'");
  expect_resume_refused(c, [&](auto&, auto& m) { m = f.metadata, m["step"] = "13"; }, "[checkpoint]", "beyond");
}

TEST(TrainerHardening, DamagedCheckpointTensorsAreRefused) {
  toy::TrainConfig c = stopped_run("tensors");
  const SafetensorsFile f = load_safetensors(ckpt_of(c));
  auto fresh = [&](auto& t, auto& m) { t = f.tensors, m = f.metadata; };
  expect_resume_refused(
      c, [&](auto& t, auto& m) {
        fresh(t, m);
        Tensor w = t.at("model.norm_f.weight").clone();
        w.data<float>()[3] = NAN;
        t["model.norm_f.weight"] = w;
      },
      "[checkpoint]", "non-finite");
  expect_resume_refused(c, [&](auto& t, auto& m) { fresh(t, m), t["extra.thing"] = zeros({2}); }, "[checkpoint]",
                        "unexpected tensor");
  expect_resume_refused(
      c, [&](auto& t, auto& m) {
        fresh(t, m);
        for (auto it = t.begin(); it != t.end();) it = it->first.rfind("optim.", 0) == 0 ? t.erase(it) : std::next(it);
      },
      "[checkpoint]", "no optimiser state");
  // One parameter's first moment gone: incomplete, not silently restarted.
  expect_resume_refused(c, [&](auto& t, auto& m) { fresh(t, m), t.erase("optim.state.norm_f.weight.exp_avg"); },
                        "[adamw]", "incomplete");
  expect_resume_refused(
      c, [&](auto& t, auto& m) {
        fresh(t, m);
        t["optim.groups.0"] = from_vector<double>({1e-2, 1.5, 0.95, 1e-8, 0.1}, {5});
      },
      "[adamw]", "out of range");
  expect_resume_refused(
      c, [&](auto& t, auto& m) {
        fresh(t, m);
        t["optim.state.norm_f.weight.exp_avg_sq"] = full(t.at("optim.state.norm_f.weight.exp_avg_sq").shape(), -1.0);
      },
      "[adamw]", "negative");
  expect_resume_refused(
      c, [&](auto& t, auto& m) { fresh(t, m), t["optim.state.norm_f.weight.step"] = from_vector<int64_t>({100}, {1}); },
      "[checkpoint]", "optim.state.norm_f.weight.step");
  // The optimiser's hyper-parameters must agree with the run's config.
  expect_resume_refused(
      c, [&](auto& t, auto& m) {
        fresh(t, m);
        t["optim.groups.0"] = from_vector<double>({1e-2, 0.8, 0.95, 1e-8, 0.1}, {5});
      },
      "[train] --resume", "disagrees");
}

TEST(TrainerHardening, DamagedDataStateIsRefused) {
  toy::TrainConfig c = stopped_run("data");
  const SafetensorsFile f = load_safetensors(ckpt_of(c));
  auto fresh = [&](auto& t, auto& m) { t = f.tensors, m = f.metadata; };
  // An all-zero generator state would never draw anything but 0: the world would spin forever.
  expect_resume_refused(
      c, [&](auto& t, auto& m) { fresh(t, m), t["data.source.rng"] = from_vector<int64_t>({0, 0, 0, 0, 0, 0}, {6}); },
      "[batcher]", "all zeros");
  expect_resume_refused(c, [&](auto& t, auto& m) { fresh(t, m), t["data.source.extra"] = from_vector<int64_t>({1}, {1}); },
                        "[batcher]", "unexpected entry");
  expect_resume_refused(
      c, [&](auto& t, auto& m) { fresh(t, m), t["data.source.document"] = zeros({int64_t{1} << 21}, DType::i32); },
      "[checkpoint]", "data.source.document");
  expect_resume_refused(
      c, [&](auto& t, auto& m) { fresh(t, m), t["data.source.position"] = from_vector<int64_t>({int64_t{1} << 62}, {1}); },
      "[batcher]", "position");
}

TEST(TrainerHardening, ResumeRefusesWhatItCannotChangeAndAppliesWhatItCan) {
  toy::TrainConfig c = stopped_run("flags");
  toy::TrainConfig wd = c;
  wd.weight_decay = 0.5;
  std::string msg = error_of([&] { toy::train(wd); });
  EXPECT_TRUE(starts_with(msg, "[train] --resume")) << msg;
  EXPECT_NE(msg.find("--weight-decay"), std::string::npos) << msg;
  toy::TrainConfig early = c;
  early.steps = 4;
  msg = error_of([&] { toy::train(early); });
  EXPECT_NE(msg.find("at step 4"), std::string::npos) << msg;
  toy::TrainConfig stop = c;
  stop.stop_at = 3;
  msg = error_of([&] { toy::train(stop); });
  EXPECT_NE(msg.find("--stop-at 3"), std::string::npos) << msg;
  // A lower lr is what a diverged run needs: it is applied, and recorded.
  toy::TrainConfig lower = c;
  lower.lr = 5e-3;
  toy::TrainResult r = toy::train(lower);
  EXPECT_EQ(r.steps, 12);
  EXPECT_EQ(toy::read_checkpoint(ckpt_of(c)).config.lr, 5e-3);
  // A finished run has nothing left to do, and says so instead of printing a made-up result.
  msg = error_of([&] { toy::train(lower); });
  EXPECT_NE(msg.find("the end of the run"), std::string::npos) << msg;
}

TEST(TrainerHardening, DivergenceNeverReplacesTheLastGoodCheckpoint) {
  toy::TrainConfig c = tiny("diverge");
  c.lr = 1e4;  // with a long warmup, the weights go bad some steps in
  c.warmup = 3000;
  c.clip = 1e30;
  c.steps = 60;
  c.ckpt_every = 3;
  c.eval_every = 100;
  std::string msg = error_of([&] { toy::train(c); });
  ASSERT_TRUE(starts_with(msg, "[train]")) << msg;
  ASSERT_NE(msg.find("the last good one"), std::string::npos) << msg;
  toy::Checkpoint good = toy::read_checkpoint(ckpt_of(c));  // finite (read_checkpoint checks), and named
  EXPECT_NE(msg.find("holds step " + std::to_string(good.step)), std::string::npos) << msg;
  // Resumed with the same settings it diverges again (resume is bit-exact), and the good checkpoint
  // stays as it was.
  const std::string bytes = read_bytes(ckpt_of(c));
  c.resume = true;
  std::string again = error_of([&] { toy::train(c); });
  EXPECT_EQ(again, msg);
  EXPECT_EQ(read_bytes(ckpt_of(c)), bytes);
}

TEST(TrainerHardening, DivergenceBeforeTheFirstCheckpointSaysNoneWasWritten) {
  toy::TrainConfig c = tiny("diverge_early");
  c.lr = 1e4;
  c.warmup = 0;
  c.clip = 1e30;
  c.ckpt_every = 10;
  std::string msg = error_of([&] { toy::train(c); });
  EXPECT_TRUE(starts_with(msg, "[train]")) << msg;
  EXPECT_NE(msg.find("No checkpoint was written"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(ckpt_of(c)));
}

TEST(TrainerHardening, NonFiniteModelsAreNeverWrittenNorLoaded) {
  toy::TrainConfig c = stopped_run("nan_model");
  toy::Checkpoint ck = toy::read_checkpoint(ckpt_of(c));
  const std::string bytes = read_bytes(ckpt_of(c));
  Tensor w = ck.model.at("embedding.weight").clone();
  w.data<float>()[0] = INFINITY;
  ck.model["embedding.weight"] = w;
  test::expect_error([&] { toy::write_checkpoint(ckpt_of(c), ck); }, "[checkpoint]");
  EXPECT_EQ(read_bytes(ckpt_of(c)), bytes);
  // A weights file with NaN (written by someone else) is refused by load_model, the loader of eval and
  // generate.
  std::map<std::string, Tensor> weights = ck.model;
  weights["embedding.weight"] = w;
  save_safetensors(c.out + "/nan.safetensors", weights, {{"config", c.to_json()}});
  test::expect_error([&] { toy::load_model(c.out + "/nan.safetensors"); }, "[load_model]");
  // The checkpoint file itself loads as a model (`mom eval RUN/checkpoint.safetensors`).
  EXPECT_EQ(toy::load_model(ckpt_of(c)).model->num_parameters(), toy::load_model(c.out).model->num_parameters());
}

TEST(TrainerHardening, ASecondWriterOfOneRunDirectoryIsRefused) {
  toy::TrainConfig c = tiny("lock");
  fs::create_directories(c.out);
  int fd = ::open((c.out + "/.lock").c_str(), O_RDWR | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);
  ASSERT_EQ(::write(fd, "12345", 5), 5);
  std::string msg = error_of([&] { toy::train(c); });
  EXPECT_TRUE(starts_with(msg, "[train] --out")) << msg;
  EXPECT_NE(msg.find("in use by another `mom train` (pid 12345)"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(c.out + "/log.jsonl"));
  ::close(fd);  // released: the run may start
  EXPECT_EQ(toy::train(c).steps, 12);
}

TEST(TrainerHardening, ResumeKeepsTheLogUpToItsCheckpointAndCleansTemporaries) {
  toy::TrainConfig c = stopped_run("log");
  const std::string log = c.out + "/log.jsonl";
  const std::string kept = read_bytes(log);
  {
    std::ofstream out(log, std::ios::app);
    out << R"({"kind": "train", "step": 5, "loss": 1.0})" << "\n" << "{\"kind\": \"tr";  // a run killed mid-line
  }
  // A temporary file of a writer that no longer exists (a pid above any pid_max).
  const std::string stale = ckpt_of(c) + ".tmp.4194305";
  std::ofstream(stale) << "partial";
  toy::TrainConfig stop = c;
  stop.stop_at = 6;
  toy::train(stop);
  EXPECT_FALSE(fs::exists(stale));
  const std::string now = read_bytes(log);
  EXPECT_EQ(now.substr(0, kept.size()), kept);
  EXPECT_EQ(now.find("\"loss\":1.0"), std::string::npos) << "a line after the checkpoint survived";
  EXPECT_EQ(now.find("{\"kind\": \"tr"), std::string::npos) << "a torn line survived";
  for (const auto& e : fs::directory_iterator(c.out))
    EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << e.path();
}

TEST(TrainerHardening, AFailedLogWriteStopsTheRun) {
  toy::TrainConfig c = tiny("full_disk");
  c.steps = 50;
  fs::create_directories(c.out);
  // A file-size limit makes a write past it fail as a full disk does (SIGXFSZ ignored, so it is an
  // error return).
  struct sigaction ignore {}, old {};
  ignore.sa_handler = SIG_IGN;
  sigaction(SIGXFSZ, &ignore, &old);
  rlimit saved{};
  getrlimit(RLIMIT_FSIZE, &saved);
  rlimit small = saved;
  small.rlim_cur = 4000;
  setrlimit(RLIMIT_FSIZE, &small);
  std::string msg = error_of([&] { toy::train(c); });
  setrlimit(RLIMIT_FSIZE, &saved);
  sigaction(SIGXFSZ, &old, nullptr);
  EXPECT_TRUE(starts_with(msg, "[train] cannot write")) << msg;
  EXPECT_NE(msg.find("log.jsonl"), std::string::npos) << msg;
  EXPECT_LE(fs::file_size(c.out + "/log.jsonl"), 4000u);
}

TEST(TrainerHardening, ANewRunInAnOldDirectoryDeletesTheOldRunsFiles) {
  toy::TrainConfig c = stopped_run("fresh");
  ASSERT_TRUE(fs::exists(ckpt_of(c)));
  toy::TrainConfig again = tiny("fresh_unused");
  again.out = c.out;
  again.lr = 1e4;  // diverges before its first checkpoint
  again.warmup = 0;
  again.clip = 1e30;
  again.ckpt_every = 10;
  std::string msg = error_of([&] { toy::train(again); });
  EXPECT_NE(msg.find("No checkpoint was written"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(ckpt_of(c))) << "the old run's checkpoint would pass for this run's";
}

TEST(TrainerHardening, TokenFilesThisTrainerCannotUseAreRefusedEarly) {
  const std::string dir = tiny("files_data").out;
  fs::create_directories(dir);
  toy::TrainConfig c = tiny("files");
  // Nine modalities: refused at the start, naming the file and the limit.
  toy::Vocab nine;
  nine.size = 9;
  for (int32_t m = 0; m < 9; ++m) nine.ranges.push_back({m, m + 1, m, "m" + std::to_string(m)});
  std::vector<int32_t> tokens(4000);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>(i * 7 % 9);
  const std::string nine_path = dir + "/nine.tok";
  toy::write_token_file(nine_path, nine, tokens);
  c.data = nine_path;
  std::string msg = error_of([&] { toy::train(c); });
  EXPECT_TRUE(starts_with(msg, "[train] " + nine_path + " declares 9 modalities")) << msg;
  EXPECT_NE(msg.find("1 to 8"), std::string::npos) << msg;
  toy::Vocab four;
  four.size = 8;
  four.ranges = {{0, 2, 0, "text"}, {2, 4, 1, "image"}, {4, 6, 2, "speech"}, {6, 8, 3, "video"}};
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>(i * 7 % 8);
  // Eval data with another vocabulary than the training data's.
  toy::Vocab three = four;
  three.ranges.pop_back();
  three.size = 6;
  for (int32_t& t : tokens) t %= 6;
  const std::string three_path = dir + "/three.tok", other_path = dir + "/other.tok";
  toy::write_token_file(three_path, three, tokens);
  three.ranges[0].end = 3, three.ranges[1].begin = 3;
  toy::write_token_file(other_path, three, tokens);
  c = tiny("files");
  c.data = three_path;
  c.eval_data = other_path;
  msg = error_of([&] { toy::train(c); });
  EXPECT_TRUE(starts_with(msg, "[train] --eval-data " + other_path + ": its vocabulary")) << msg;
  // Eval data too short for the held-out set: refused, not read twice.
  c.eval_data = three_path;
  c.eval_batches = 100;
  msg = error_of([&] { toy::train(c); });
  EXPECT_TRUE(starts_with(msg, "[train] " + three_path + " holds 4000 tokens")) << msg;
  c.eval_batches = 2;
  EXPECT_EQ(toy::train(c).steps, 12);
}

}  // namespace
}  // namespace mom
