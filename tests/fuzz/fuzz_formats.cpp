// A fuzz harness for the readers of untrusted files: load_safetensors (core/safetensors.h),
// read_token_file (examples/toy/token_file.h), and the checkpoint loaders read_checkpoint
// (examples/toy/checkpoint.h) and load_model (examples/toy/train.h). A self-contained program (no
// libFuzzer: it builds with g++ and runs under the asan preset, where it is the sanitizer run):
//
//   1. builds its seeds in memory: a safetensors file of several dtypes and shapes with empty tensors
//      sharing offsets, a token file of the toy vocabulary, and a real checkpoint.safetensors and
//      model.safetensors from a two-step training run of a tiny model;
//   2. replays every file of tests/fuzz/regressions/ (inputs that crash a reader without its checks);
//   3. runs the structured cases: each hostile input must be refused with a mom::Error of the
//      expected "[component]" prefix and a short message (or, for the valid corner cases, accepted);
//   4. runs seeded random mutations of each seed (bit flips, bytes set to 0x00 / 0xff / 0x7f / 0x80 /
//      ..., little-endian integers set to boundary values, truncations, insertions, chunks duplicated or
//      deleted, and for safetensors inputs numbers of the JSON header replaced by boundary values) and
//      feeds each to every reader.
//
// A reader may accept an input or throw mom::Error. Anything else is a failure: another exception, a
// crash or sanitizer report, or an input that runs longer than --timeout seconds (a watchdog alarm). The
// offending input is written to the failures folder and the harness prints how to replay it:
//     mom_fuzz_formats --replay FILE
// The kind of a replayed file follows from its name: *.checkpoint.safetensors, *.model.safetensors,
// *.safetensors, *.tok. The harness ends with a summary per reader and exits 1 on any failure.
//
//   mom_fuzz_formats [--iterations N] [--seconds S] [--seed N] [--timeout S] [--max-rss-mb M]
//                    [--regressions DIR] [--failures DIR] [--replay FILE ...] [--write-seeds DIR]
//
// --iterations is the number of mutations per seed (4 seeds); the default is sized for about a minute
// under AddressSanitizer on a 2-core machine. --seconds bounds the mutation phase's time (it stops early,
// saying so, without failing). --write-seeds writes the seeds as files (to craft regression files from)
// and exits.
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define MOM_FUZZ_SANITIZED 1
#endif

#include "core/error.h"
#include "core/random.h"
#include "core/safetensors.h"
#include "examples/toy/checkpoint.h"
#include "examples/toy/token_file.h"
#include "examples/toy/train.h"
#include "examples/toy/vocab.h"
#include "tests/toy_support.h"

#ifndef MOM_FUZZ_REGRESSIONS
#define MOM_FUZZ_REGRESSIONS "tests/fuzz/regressions"
#endif

namespace fs = std::filesystem;
using mom::Error;

namespace {

// ---- options ----

struct Options {
  int64_t iterations = 8000;  // mutations per seed
  double seconds = 150;       // bound on the mutation phase
  uint64_t seed = 1;
  unsigned timeout = 30;  // seconds per input before the watchdog calls it a hang
  int64_t max_rss_mb = 3072;
  std::string regressions = MOM_FUZZ_REGRESSIONS;
  std::string failures = "fuzz-failures";
  std::vector<std::string> replay;
  std::string write_seeds;
  std::string argv0;
};

// ---- the input kinds and the readers ----

enum class Kind { safetensors, token_file, checkpoint, model };

const char* extension(Kind k) {
  switch (k) {
    case Kind::safetensors:
      return ".safetensors";
    case Kind::token_file:
      return ".tok";
    case Kind::checkpoint:
      return ".checkpoint.safetensors";
    case Kind::model:
      return ".model.safetensors";
  }
  return "";
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool kind_of_file(const std::string& name, Kind& out) {
  for (Kind k : {Kind::checkpoint, Kind::model, Kind::safetensors, Kind::token_file})
    if (ends_with(name, extension(k))) {
      out = k;
      return true;
    }
  return false;
}

const char* const kReaders[] = {"safetensors", "token_file", "checkpoint", "load_model"};

struct Counts {
  int64_t accepted = 0, rejected = 0, failed = 0;
};

// ---- crash reporting: what runs now, copied with system calls only from a signal handler ----

struct Current {
  char input[4096] = {};  // the file the reader is reading
  char saved[4096] = {};  // where a crash copies it
  char what[512] = {};    // "<reader> on <label>"
  char argv0[1024] = {};
};
Current g_current;

void put(const char* s) {
  ssize_t unused = ::write(2, s, std::strlen(s));
  (void)unused;
}

// Copies g_current.input to g_current.saved and says how to replay it. Async-signal-safe.
void report_crash(const char* why) {
  static char buf[1 << 16];
  int in = ::open(g_current.input, O_RDONLY);
  int out = ::open(g_current.saved, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (in >= 0 && out >= 0) {
    ssize_t n;
    while ((n = ::read(in, buf, sizeof(buf))) > 0) {
      ssize_t unused = ::write(out, buf, static_cast<size_t>(n));
      (void)unused;
    }
  }
  if (in >= 0) ::close(in);
  if (out >= 0) ::close(out);
  put("\nmom_fuzz_formats: FAILURE (");
  put(why);
  put(") in ");
  put(g_current.what);
  put("\n  the input is saved as ");
  put(g_current.saved);
  put("\n  replay: ");
  put(g_current.argv0);
  put(" --replay ");
  put(g_current.saved);
  put("\n");
}

void on_signal(int sig) {
  const char* why = sig == SIGALRM   ? "a hang: the watchdog's alarm went off"
                    : sig == SIGABRT ? "SIGABRT"
                    : sig == SIGSEGV ? "SIGSEGV"
                    : sig == SIGBUS  ? "SIGBUS"
                    : sig == SIGFPE  ? "SIGFPE"
                                     : "SIGILL";
  report_crash(why);
  if (sig == SIGALRM) ::_exit(1);
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

#ifdef MOM_FUZZ_SANITIZED
void on_sanitizer_death() {
  report_crash("sanitizer report above");
}
#endif

void install_crash_handlers(const Options& opt) {
  std::snprintf(g_current.argv0, sizeof(g_current.argv0), "%s", opt.argv0.c_str());
  // The handlers run on a stack of their own, so that a stack overflow is reported too.
  static char alt_stack[1 << 16];
  stack_t ss = {};
  ss.ss_sp = alt_stack;
  ss.ss_size = sizeof(alt_stack);
  ::sigaltstack(&ss, nullptr);
  struct sigaction sa = {};
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGALRM, &sa, nullptr);
  ::sigaction(SIGABRT, &sa, nullptr);
#ifdef MOM_FUZZ_SANITIZED
  __sanitizer_set_death_callback(on_sanitizer_death);  // the sanitizer keeps its own SEGV handler
#else
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL}) ::sigaction(sig, &sa, nullptr);
#endif
}

// ---- files ----

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) {
    std::cerr << "mom_fuzz_formats: cannot write " << path << "\n";
    std::exit(2);
  }
}

std::string safe_name(std::string s) {
  for (char& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') c = '_';
  return s.substr(0, 120);
}

// ---- the harness ----

class Harness {
 public:
  Harness(const Options& opt, std::string work) : opt_(opt), work_(std::move(work)) {
    fs::create_directories(work_ + "/run");
    fs::create_directories(opt_.failures);
  }

  // Every reader that applies to `kind`. Returns the failures.
  int run_input(Kind kind, const std::string& bytes, const std::string& label) {
    const std::string file =
        kind == Kind::checkpoint ? work_ + "/run/checkpoint.safetensors" : work_ + "/input" + extension(kind);
    write_bytes(file, bytes);
    int failures = 0;
    auto call = [&](const char* reader, const std::function<void()>& f) {
      failures += guarded(reader, kind, file, label, bytes, f);
    };
    call("safetensors", [&] { mom::load_safetensors(file); });
    call("token_file", [&] { mom::toy::read_token_file(file); });
    if (kind == Kind::checkpoint || kind == Kind::model) {
      call("checkpoint", [&] { mom::toy::read_checkpoint(file); });
      call("load_model", [&] { mom::toy::load_model(kind == Kind::checkpoint ? work_ + "/run" : file); });
    }
    return failures;
  }

  // One structured case through one reader. `prefixes` empty: the input must be accepted; otherwise
  // refused with a mom::Error starting with one of them, in a message of bounded length.
  int run_case(const char* reader, Kind kind, const std::string& bytes, const std::string& label,
               const std::vector<std::string>& prefixes, const std::function<void(const std::string&)>& check = {}) {
    const std::string file =
        kind == Kind::checkpoint ? work_ + "/run/checkpoint.safetensors" : work_ + "/input" + extension(kind);
    write_bytes(file, bytes);
    ++cases_;
    std::string message;
    bool threw = false;
    int failures = guarded(reader, kind, file, "case-" + label, bytes, [&] {
      try {
        if (!std::strcmp(reader, "safetensors")) {
          if (check)
            check(file);  // loads it
          else
            mom::load_safetensors(file);
        } else if (!std::strcmp(reader, "token_file")) {
          mom::toy::read_token_file(file);
        } else if (!std::strcmp(reader, "checkpoint")) {
          mom::toy::read_checkpoint(file);
        } else {
          mom::toy::load_model(kind == Kind::checkpoint ? work_ + "/run" : file);
        }
      } catch (const Error& e) {
        threw = true;
        message = e.what();
        throw;
      }
    });
    if (failures) return failures;
    std::string problem;
    if (prefixes.empty() && threw) problem = "expected it to be accepted, got: " + message.substr(0, 300);
    if (!prefixes.empty() && !threw) problem = "expected a mom::Error, it was accepted";
    if (!prefixes.empty() && threw) {
      bool ok =
          std::any_of(prefixes.begin(), prefixes.end(), [&](const std::string& p) { return message.rfind(p, 0) == 0; });
      if (!ok) problem = "expected an error starting with " + prefixes[0] + ", got: " + message.substr(0, 300);
      // Untrusted values are quoted by excerpts: the message stays short whatever the input's size.
      const size_t bound = 600 + file.size() + work_.size();
      if (ok && message.size() > bound)
        problem = "the message has " + std::to_string(message.size()) +
                  " bytes (untrusted input quoted whole?): " + message.substr(0, 200) + "...";
    }
    if (!problem.empty()) {
      fail(reader, kind, "case-" + label, bytes, problem);
      return 1;
    }
    return 0;
  }

  void print_summary(double seconds) const {
    std::printf("\nmom_fuzz_formats: %lld structured cases, %lld files replayed, %lld mutations, %.1f s\n",
                static_cast<long long>(cases_), static_cast<long long>(regressions_),
                static_cast<long long>(mutations_), seconds);
    std::printf("  %-12s %10s %10s %8s\n", "reader", "accepted", "rejected", "failed");
    for (const char* r : kReaders) {
      auto it = counts_.find(r);
      Counts c = it == counts_.end() ? Counts{} : it->second;
      std::printf("  %-12s %10lld %10lld %8lld\n", r, static_cast<long long>(c.accepted),
                  static_cast<long long>(c.rejected), static_cast<long long>(c.failed));
    }
    std::printf("  slowest input: %.3f s (%s)\n", slowest_, slowest_what_.c_str());
  }

  int64_t cases_ = 0, regressions_ = 0, mutations_ = 0;
  int failures_ = 0;
  bool verbose_ = false;  // print each reader's answer (replays from the command line)
  const std::string& work() const { return work_; }

 private:
  // Runs f under the watchdog; mom::Error is a rejection, anything else a failure.
  int guarded(const char* reader, Kind kind, const std::string& file, const std::string& label,
              const std::string& bytes, const std::function<void()>& f) {
    std::snprintf(g_current.input, sizeof(g_current.input), "%s", file.c_str());
    const std::string saved = opt_.failures + "/" + safe_name(label + "-" + reader) + extension(kind);
    std::snprintf(g_current.saved, sizeof(g_current.saved), "%s", saved.c_str());
    std::snprintf(g_current.what, sizeof(g_current.what), "%s on %s", reader, label.c_str());
    Counts& c = counts_[reader];
    std::string problem;
    const auto start = std::chrono::steady_clock::now();
    ::alarm(opt_.timeout);
    try {
      f();
      ++c.accepted;
      if (verbose_) std::printf("  %-12s accepted\n", reader);
    } catch (const Error& e) {
      ++c.rejected;
      if (verbose_) std::printf("  %-12s rejected: %.300s\n", reader, e.what());
    } catch (const std::exception& e) {
      problem = std::string("an exception that is not mom::Error: ") + e.what();
    } catch (...) {
      problem = "an exception of unknown type";
    }
    ::alarm(0);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (seconds > slowest_) {
      slowest_ = seconds;
      slowest_what_ = std::string(reader) + " on " + label;
    }
    if (problem.empty()) return 0;
    fail(reader, kind, label, bytes, problem);
    return 1;
  }

  void fail(const char* reader, Kind kind, const std::string& label, const std::string& bytes,
            const std::string& problem) {
    ++counts_[reader].failed;
    ++failures_;
    const std::string saved = opt_.failures + "/" + safe_name(label + "-" + reader) + extension(kind);
    write_bytes(saved, bytes);
    std::printf("FAIL %s on %s: %s\n  the input is saved as %s\n  replay: %s --replay %s\n", reader, label.c_str(),
                problem.c_str(), saved.c_str(), opt_.argv0.c_str(), saved.c_str());
    std::fflush(stdout);
  }

  const Options& opt_;
  std::string work_;
  double slowest_ = 0;
  std::string slowest_what_;
  std::map<std::string, Counts> counts_;
};

// ---- building inputs ----

void put_u32(std::string& s, uint32_t v) {
  for (int i = 0; i < 4; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void put_u64(std::string& s, uint64_t v) {
  for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint64_t get_u64(const std::string& s, size_t at) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(static_cast<unsigned char>(s[at + i])) << (8 * i);
  return v;
}

// A safetensors file from a header text and data bytes; `claimed` replaces the true header length.
std::string safetensors_bytes(const std::string& header, const std::string& data, int64_t claimed = -1) {
  std::string out;
  put_u64(out, claimed < 0 ? header.size() : static_cast<uint64_t>(claimed));
  return out + header + data;
}

// The header (as JSON) and data of a safetensors file; `edit` changes the header, the data stays.
std::string edit_header(const std::string& file, const std::function<void(nlohmann::ordered_json&)>& edit) {
  uint64_t n = get_u64(file, 0);
  nlohmann::ordered_json h = nlohmann::ordered_json::parse(file.substr(8, n));
  edit(h);
  std::string text = h.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  return safetensors_bytes(text, file.substr(8 + n));
}

std::string nested(const std::string& open, const std::string& close, size_t depth, const std::string& inner = "1") {
  std::string s;
  s.reserve(depth * (open.size() + close.size()) + inner.size());
  for (size_t i = 0; i < depth; ++i) s += open;
  s += inner;
  for (size_t i = 0; i < depth; ++i) s += close;
  return s;
}

struct TokenFileParts {
  uint32_t vocab = mom::toy::kToyVocabSize;
  std::vector<mom::toy::Vocab::Range> ranges = mom::toy::toy_vocab().ranges;
  uint64_t n_tokens_claimed = UINT64_MAX;  // UINT64_MAX: the true count
  std::vector<int32_t> tokens = {1, 6, 9, 2, 1, 28, 30, 2};
  std::string magic = "MOMTOKS1";
  uint32_t version = 1;
  int64_t n_ranges_claimed = -1;
};

std::string token_file_bytes(const TokenFileParts& p) {
  std::string s = p.magic;
  put_u32(s, p.version);
  put_u32(s, p.vocab);
  put_u32(s,
          p.n_ranges_claimed < 0 ? static_cast<uint32_t>(p.ranges.size()) : static_cast<uint32_t>(p.n_ranges_claimed));
  for (const auto& r : p.ranges) {
    put_u32(s, static_cast<uint32_t>(r.begin));
    put_u32(s, static_cast<uint32_t>(r.end));
    put_u32(s, static_cast<uint32_t>(r.modality));
    put_u32(s, static_cast<uint32_t>(r.name.size()));
    s += r.name;
  }
  put_u64(s, p.n_tokens_claimed == UINT64_MAX ? p.tokens.size() : p.n_tokens_claimed);
  for (int32_t t : p.tokens) put_u32(s, static_cast<uint32_t>(t));
  return s;
}

// ---- the seeds ----

struct Seed {
  Kind kind;
  std::string name, bytes;
};

std::vector<Seed> make_seeds(const std::string& work) {
  std::vector<Seed> seeds;
  // Several dtypes and shapes; empty tensors of each kind; written by our writer, whose offsets put
  // the empty ones between the others.
  {
    mom::Generator gen(3);
    std::map<std::string, mom::Tensor> t = {
        {"a.f32", mom::randn({3, 4}, gen)},
        {"b.f64", mom::randn({2, 1, 3}, gen, mom::DType::f64)},
        {"c.i32", mom::from_vector<int32_t>({-7, 0, 7}, {3})},
        {"d.i64", mom::from_vector<int64_t>({1, int64_t(1) << 40}, {2, 1})},
        {"e.u8", mom::from_vector<uint8_t>({0, 255, 17}, {3})},
        {"f.bool", mom::from_vector<uint8_t>({1, 0, 1, 1}, {4}).to(mom::DType::boolean)},
        {"g.scalar", mom::scalar_tensor(1.5)},
        {"h.empty", mom::empty({0})},
        {"i.empty", mom::empty({2, 0, 3}, mom::DType::i64)},
        // A BF16 tensor: a normal value, -0, a subnormal, inf, a NaN, a value near the largest finite.
        {"j.bf16", mom::from_vector<float>({1.5f, -0.0f, 1e-40f, INFINITY, NAN, 3e38f}, {2, 3}).to(mom::DType::bf16)},
    };
    const std::string path = work + "/seed.safetensors";
    mom::save_safetensors(path, t, {{"note", "seed"}});
    seeds.push_back({Kind::safetensors, "safetensors", read_bytes(path)});
  }
  seeds.push_back({Kind::token_file, "token_file", token_file_bytes(TokenFileParts{})});
  // A real run's files: two steps of the tests' tiny model.
  {
    mom::toy::TrainConfig c = mom::test::tiny_train_config(work + "/train");
    c.steps = 2;
    c.warmup = 1;
    c.eval_every = 2;
    c.ckpt_every = 2;
    mom::toy::train(c);
    // The same bytes on every run (so that a seed reproduces its mutations): the run's folder and time
    // are replaced by fixed values.
    auto fixed = [](const std::string& file) {
      return edit_header(file, [](nlohmann::ordered_json& j) {
        nlohmann::ordered_json& meta = j["__metadata__"];
        nlohmann::ordered_json config = nlohmann::ordered_json::parse(meta["config"].get<std::string>());
        config["out"] = "runs/fuzz";
        meta["config"] = config.dump(2);
        if (meta.contains("elapsed")) meta["elapsed"] = "1.5";
      });
    };
    seeds.push_back({Kind::checkpoint, "checkpoint", fixed(read_bytes(c.out + "/checkpoint.safetensors"))});
    seeds.push_back({Kind::model, "model", fixed(read_bytes(c.out + "/model.safetensors"))});
  }
  return seeds;
}

// ---- the structured cases ----

int structured_cases(Harness& h, const std::vector<Seed>& seeds) {
  int failures = 0;
  const std::vector<std::string> st = {"[safetensors]"};
  auto reject = [&](const std::string& label, const std::string& bytes) {
    failures += h.run_case("safetensors", Kind::safetensors, bytes, label, st);
  };
  const std::string data16(16, '\1');
  auto entry = [](const std::string& name, const std::string& dtype, const std::string& shape,
                  const std::string& offsets) {
    return "\"" + name + "\":{\"dtype\":" + dtype + ",\"shape\":" + shape + ",\"data_offsets\":" + offsets + "}";
  };

  // Deep nesting, in every field and at the root, closed and unclosed.
  const size_t deep = 50000;
  reject("deep-dtype",
         safetensors_bytes("{" + entry("w", nested("[", "]", deep, "\"F32\""), "[4]", "[0,16]") + "}", data16));
  reject("deep-shape", safetensors_bytes("{" + entry("w", "\"F32\"", nested("[", "]", deep), "[0,16]") + "}", data16));
  reject("deep-offsets", safetensors_bytes("{" + entry("w", "\"F32\"", "[4]", nested("[", "]", deep)) + "}", data16));
  reject("deep-metadata", safetensors_bytes("{\"__metadata__\":{\"k\":" + nested("{\"a\":", "}", deep) + "}}", ""));
  reject("deep-root", safetensors_bytes(nested("[", "]", deep), ""));
  reject("deep-unclosed", safetensors_bytes(std::string(deep, '['), ""));
  reject("depth-9", safetensors_bytes("{\"__metadata__\":{\"k\":" + nested("[", "]", 7) + "}}", ""));
  // Sizes: counts that overflow or wrap, bad numbers.
  reject("huge-shape",
         safetensors_bytes("{" + entry("w", "\"F32\"", "[4611686018427387904,4611686018427387904]", "[0,16]") + "}",
                           data16));
  reject("wrapping-count-f32",
         safetensors_bytes("{" + entry("w", "\"F32\"", "[4294967296,4294967296]", "[0,0]") + "}", ""));
  reject("wrapping-count-u8",
         safetensors_bytes("{" + entry("w", "\"U8\"", "[4294967296,4294967296]", "[0,0]") + "}", ""));
  reject("wrapping-bytes-f64",
         safetensors_bytes("{" + entry("w", "\"F64\"", "[2305843009213693952]", "[0,0]") + "}", ""));
  reject(
      "zero-size-huge-shape",
      safetensors_bytes("{" + entry("w", "\"F32\"", "[0,4611686018427387904,4611686018427387904]", "[0,0]") + "}", ""));
  reject(
      "zero-size-huge-shape-last",
      safetensors_bytes("{" + entry("w", "\"F32\"", "[4611686018427387904,4611686018427387904,0]", "[0,0]") + "}", ""));
  reject("shape-u64-max",
         safetensors_bytes("{" + entry("w", "\"F32\"", "[18446744073709551615]", "[0,16]") + "}", data16));
  reject("shape-past-u64",
         safetensors_bytes("{" + entry("w", "\"F32\"", "[18446744073709551616]", "[0,16]") + "}", data16));
  reject("shape-negative", safetensors_bytes("{" + entry("w", "\"F32\"", "[-4]", "[0,16]") + "}", data16));
  reject("shape-float", safetensors_bytes("{" + entry("w", "\"F32\"", "[4.0]", "[0,16]") + "}", data16));
  reject("shape-not-list", safetensors_bytes("{" + entry("w", "\"F32\"", "4", "[0,16]") + "}", data16));
  reject("embedding-2^58-rows", edit_header(seeds[2].bytes, [](nlohmann::ordered_json& j) {
           j["model.embedding.weight"]["shape"][0] = uint64_t(1) << 58;
         }));
  // Offsets.
  reject("offsets-past-data", safetensors_bytes("{" + entry("w", "\"F32\"", "[4]", "[16,32]") + "}", data16));
  reject("offsets-u64-max",
         safetensors_bytes("{" + entry("w", "\"F32\"", "[4]", "[0,18446744073709551615]") + "}", data16));
  reject("offsets-reversed", safetensors_bytes("{" + entry("w", "\"F32\"", "[4]", "[16,0]") + "}", data16));
  reject("offsets-three", safetensors_bytes("{" + entry("w", "\"F32\"", "[4]", "[0,16,16]") + "}", data16));
  reject("offsets-negative", safetensors_bytes("{" + entry("w", "\"F32\"", "[4]", "[-16,0]") + "}", data16));
  reject("offsets-overlap",
         safetensors_bytes(
             "{" + entry("a", "\"F32\"", "[2]", "[0,8]") + "," + entry("b", "\"F32\"", "[2]", "[4,12]") + "}", data16));
  reject("offsets-gap",
         safetensors_bytes(
             "{" + entry("a", "\"F32\"", "[1]", "[0,4]") + "," + entry("b", "\"F32\"", "[2]", "[8,16]") + "}", data16));
  reject("offsets-duplicate", safetensors_bytes("{" + entry("a", "\"F32\"", "[4]", "[0,16]") + "," +
                                                    entry("b", "\"F32\"", "[4]", "[0,16]") + "}",
                                                data16));
  reject("empty-inside-a-span",
         safetensors_bytes(
             "{" + entry("a", "\"F32\"", "[4]", "[0,16]") + "," + entry("e", "\"F32\"", "[0]", "[8,8]") + "}", data16));
  reject("trailing-bytes", safetensors_bytes("{" + entry("w", "\"F32\"", "[4]", "[0,16]") + "}", data16 + "xyz"));
  reject("truncated-data", safetensors_bytes("{" + entry("w", "\"F32\"", "[4]", "[0,16]") + "}", data16.substr(0, 9)));
  // The header length.
  const std::string ok_header = "{" + entry("w", "\"F32\"", "[4]", "[0,16]") + "}";
  reject("header-length-huge", safetensors_bytes(ok_header, data16, INT64_MAX));
  reject("header-length-above-limit", safetensors_bytes(ok_header, data16, 100000001));
  reject("header-length-past-eof", safetensors_bytes(ok_header, data16, static_cast<int64_t>(ok_header.size() + 17)));
  reject("header-length-zero", safetensors_bytes(ok_header, data16, 0));
  for (size_t n = 0; n < 8; ++n) reject("file-of-" + std::to_string(n) + "-bytes", std::string(n, '\0'));
  // The JSON itself.
  reject("non-utf8-name", safetensors_bytes("{" + entry("\xff\xfe", "\"F32\"", "[4]", "[0,16]") + "}", data16));
  reject("overlong-utf8-name", safetensors_bytes("{" + entry("\xc0\xaf", "\"F32\"", "[4]", "[0,16]") + "}", data16));
  reject("duplicate-tensor", safetensors_bytes("{" + entry("w", "\"F32\"", "[4]", "[0,16]") + "," +
                                                   entry("w", "\"F32\"", "[4]", "[0,16]") + "}",
                                               data16));
  reject(
      "duplicate-field",
      safetensors_bytes("{\"w\":{\"dtype\":\"F32\",\"dtype\":\"I32\",\"shape\":[4],\"data_offsets\":[0,16]}}", data16));
  reject("duplicate-metadata", safetensors_bytes("{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"}}", ""));
  reject("root-array", safetensors_bytes("[]", ""));
  reject("root-number", safetensors_bytes("1", ""));
  reject("metadata-not-object", safetensors_bytes("{\"__metadata__\":[1]}", ""));
  reject("metadata-not-string", safetensors_bytes("{\"__metadata__\":{\"k\":[[[[[1]]]]]}}", ""));
  reject("dtype-unknown", safetensors_bytes("{" + entry("w", "\"F16\"", "[8]", "[0,16]") + "}", data16));
  reject("entry-missing-field", safetensors_bytes("{\"w\":{\"dtype\":\"F32\",\"shape\":[4]}}", data16));
  reject("garbage-after-json", safetensors_bytes(ok_header + "}", data16));
  reject("bool-byte-2",
         safetensors_bytes("{" + entry("b", "\"BOOL\"", "[4]", "[0,4]") + "}", std::string("\1\0\2\1", 4)));
  const std::string long_name(1 << 20, 'n');
  reject("long-name-in-message", safetensors_bytes("{" + entry(long_name, "\"F17\"", "[4]", "[0,16]") + "}", data16));
  reject("long-dtype-in-message",
         safetensors_bytes("{" + entry("w", "\"" + long_name + "\"", "[4]", "[0,16]") + "}", data16));
  reject("long-shape-in-message",
         safetensors_bytes("{" + entry("w", "\"F32\"", "[" + nested("1,", "", 100000, "1") + "]", "[0,16]") + "}",
                           data16));
  reject("long-invalid-string", safetensors_bytes("{\"" + long_name + "\x01\":1}", ""));
  // Every prefix of the seed is refused.
  const std::string& seed = seeds[0].bytes;
  for (size_t n = 0; n < seed.size(); n += std::max<size_t>(1, seed.size() / 200))
    reject("seed-prefix-" + std::to_string(n), seed.substr(0, n));

  // What the format allows: empty tensors at 0, between tensors and at the end, sharing offsets.
  auto accept = [&](const std::string& label, const std::string& bytes,
                    std::map<std::string, std::vector<float>> want) {
    failures += h.run_case("safetensors", Kind::safetensors, bytes, label, {}, [want](const std::string& file) {
      mom::SafetensorsFile f = mom::load_safetensors(file);
      for (const auto& [name, values] : want)
        MOM_CHECK(f.tensors.count(name) && f.tensors.at(name).to_vector<float>() == values, "fuzz",
                  "tensor '" << name << "' was not read back as written");
    });
  };
  std::string two;  // 1, 2 | 3, 4 as float32
  for (float v : {1.f, 2.f, 3.f, 4.f}) two.append(reinterpret_cast<const char*>(&v), 4);
  accept("empty-sharing-offsets",
         safetensors_bytes("{" + entry("e0", "\"F32\"", "[0]", "[0,0]") + "," + entry("a", "\"F32\"", "[2]", "[0,8]") +
                               "," + entry("e1", "\"F32\"", "[0,3]", "[8,8]") + "," +
                               entry("e2", "\"I64\"", "[0]", "[8,8]") + "," + entry("b", "\"F32\"", "[2]", "[8,16]") +
                               "," + entry("e3", "\"U8\"", "[5,0]", "[16,16]") + "}",
                           two),
         {{"a", {1, 2}}, {"b", {3, 4}}, {"e0", {}}, {"e1", {}}, {"e2", {}}, {"e3", {}}});
  accept("only-empty-tensors",
         safetensors_bytes(
             "{" + entry("e0", "\"F32\"", "[0]", "[0,0]") + "," + entry("e1", "\"F64\"", "[3,0]", "[0,0]") + "}", ""),
         {{"e0", {}}, {"e1", {}}});
  accept("no-tensors", safetensors_bytes("{}      ", ""), {});
  accept(
      "depth-8",
      safetensors_bytes(
          "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16],\"x\":" + nested("[", "]", 6) + "}}", two),
      {{"w", {1, 2, 3, 4}}});
  // BF16 little-endian: 0x3F80 = 1, 0xC000 = -2, 0x4040 = 3, 0x4080 = 4.
  accept("bf16-values",
         safetensors_bytes("{" + entry("w", "\"BF16\"", "[2,2]", "[0,8]") + "}",
                           std::string("\x80\x3f\x00\xc0\x40\x40\x80\x40", 8)),
         {{"w", {1, -2, 3, 4}}});
  failures += h.run_case("safetensors", Kind::safetensors, seeds[0].bytes, "seed-safetensors", {});

  // Token files.
  const std::vector<std::string> tf = {"[token_file]"};
  auto token_reject = [&](const std::string& label, const std::string& bytes) {
    failures += h.run_case("token_file", Kind::token_file, bytes, label, tf);
  };
  auto token_accept = [&](const std::string& label, const std::string& bytes) {
    failures += h.run_case("token_file", Kind::token_file, bytes, label, {});
  };
  auto with = [](const std::function<void(TokenFileParts&)>& f) {
    TokenFileParts p;
    f(p);
    return token_file_bytes(p);
  };
  for (uint32_t v : {0u, (1u << 24) + 1, 0x7fffffffu, 0x80000000u, 0xffffffffu})
    token_reject("vocab-" + std::to_string(v), with([v](TokenFileParts& p) {
                   p.vocab = v;
                   p.ranges = {{0, static_cast<int32_t>(v), 0, "all"}};
                   p.tokens = {};
                 }));
  token_accept("vocab-2^24", with([](TokenFileParts& p) {
                 p.vocab = 1u << 24;
                 p.ranges = {{0, 1 << 24, 0, "all"}};
                 p.tokens = {0, (1 << 24) - 1};
               }));
  for (int64_t n : {0LL, 65537LL, 0xffffffffLL, 5LL, 3LL})
    token_reject("n-ranges-" + std::to_string(n), with([n](TokenFileParts& p) { p.n_ranges_claimed = n; }));
  token_reject("range-not-from-0", with([](TokenFileParts& p) { p.ranges[0].begin = 1; }));
  token_reject("range-gap", with([](TokenFileParts& p) { p.ranges[1].begin += 1; }));
  token_reject("range-overlap", with([](TokenFileParts& p) { p.ranges[1].begin -= 1; }));
  token_reject("range-empty", with([](TokenFileParts& p) { p.ranges[1].end = p.ranges[1].begin; }));
  token_reject("range-past-vocab", with([](TokenFileParts& p) { p.ranges.back().end += 1; }));
  token_reject("range-int-min", with([](TokenFileParts& p) { p.ranges[0].begin = INT32_MIN; }));
  token_reject("range-end-int-max", with([](TokenFileParts& p) { p.ranges.back().end = INT32_MAX; }));
  token_reject("modality-negative", with([](TokenFileParts& p) { p.ranges[2].modality = -1; }));
  token_reject("modality-gap", with([](TokenFileParts& p) { p.ranges[3].modality = 3; }));
  token_reject("modality-huge", with([](TokenFileParts& p) { p.ranges[3].modality = INT32_MAX; }));
  token_reject("name-empty", with([](TokenFileParts& p) { p.ranges[0].name = ""; }));
  token_reject("name-257", with([](TokenFileParts& p) { p.ranges[0].name = std::string(257, 'x'); }));
  token_reject("n-tokens-u64-max", with([](TokenFileParts& p) { p.n_tokens_claimed = UINT64_MAX - 1; }));
  token_reject("n-tokens-2^62", with([](TokenFileParts& p) { p.n_tokens_claimed = uint64_t(1) << 62; }));
  token_reject("n-tokens-one-more", with([](TokenFileParts& p) { p.n_tokens_claimed = p.tokens.size() + 1; }));
  token_reject("token-past-vocab", with([](TokenFileParts& p) { p.tokens[3] = mom::toy::kToyVocabSize; }));
  token_reject("token-negative", with([](TokenFileParts& p) { p.tokens[3] = -1; }));
  token_reject("magic", with([](TokenFileParts& p) { p.magic = "MOMTOKS2"; }));
  token_reject("version", with([](TokenFileParts& p) { p.version = 2; }));
  for (const std::string& extra : {std::string(1, 'x'), std::string(3, 'x'), std::string(4, 'x')})
    token_reject("trailing-" + std::to_string(extra.size()), token_file_bytes(TokenFileParts{}) + extra);
  const std::string token_seed = token_file_bytes(TokenFileParts{});
  token_accept("seed-token-file", token_seed);
  for (size_t n = 0; n < token_seed.size(); ++n)
    token_reject("token-prefix-" + std::to_string(n), token_seed.substr(0, n));
  // 65536 ranges of one id each, each its own modality: valid, and read in linear time.
  token_accept("65536-modalities", with([](TokenFileParts& p) {
                 p.vocab = 65536;
                 p.ranges.clear();
                 for (int32_t i = 0; i < 65536; ++i) p.ranges.push_back({i, i + 1, i, "r"});
                 p.tokens = {0, 65535};
               }));

  // A directory where a file belongs.
  fs::create_directories(h.work() + "/a-directory");
  for (const char* reader : {"safetensors", "token_file"}) {
    ++h.cases_;
    try {
      if (!std::strcmp(reader, "safetensors"))
        mom::load_safetensors(h.work() + "/a-directory");
      else
        mom::toy::read_token_file(h.work() + "/a-directory");
      std::printf("FAIL %s on a directory: accepted\n", reader);
      ++failures;
    } catch (const Error& e) {
      if (std::string(e.what()).find("not a regular file") == std::string::npos) {
        std::printf("FAIL %s on a directory: %s\n", reader, e.what());
        ++failures;
      }
    }
  }

  // The checkpoint and the model file: damaged, or declaring absurd sizes.
  const std::string& ckpt = seeds[2].bytes;
  const std::string& model = seeds[3].bytes;
  const std::vector<std::string> ck = {"[checkpoint]", "[safetensors]"};
  const std::vector<std::string> lm = {"[load_model]", "[checkpoint]", "[safetensors]"};
  for (size_t k = 0; k < 16; ++k) {
    failures += h.run_case("checkpoint", Kind::checkpoint, ckpt.substr(0, ckpt.size() * k / 16),
                           "checkpoint-prefix-" + std::to_string(k), ck);
    failures += h.run_case("load_model", Kind::model, model.substr(0, model.size() * k / 16),
                           "model-prefix-" + std::to_string(k), lm);
  }
  failures += h.run_case("checkpoint", Kind::checkpoint, ckpt, "checkpoint-valid", {});
  failures += h.run_case("load_model", Kind::checkpoint, ckpt, "checkpoint-run-valid", {});
  failures += h.run_case("load_model", Kind::model, model, "model-valid", {});
  auto config_edit = [](const std::string& key, const nlohmann::json& value) {
    return [key, value](nlohmann::ordered_json& j) {
      nlohmann::json c = nlohmann::json::parse(j["__metadata__"]["config"].get<std::string>());
      c[key] = value;
      j["__metadata__"]["config"] = c.dump();
    };
  };
  for (const auto& [key, value] : std::vector<std::pair<std::string, nlohmann::json>>{{"d_model", 68831134603393850LL},
                                                                                      {"d_model", -16},
                                                                                      {"n_layers", 1LL << 40},
                                                                                      {"d_state", 0},
                                                                                      {"expand", 1LL << 31},
                                                                                      {"seq_len", 1LL << 50},
                                                                                      {"batch", 0},
                                                                                      {"lr", "nan"},
                                                                                      {"model", "transformer"}}) {
    const std::string label = "config-" + key + "-" + safe_name(value.dump());
    failures += h.run_case("checkpoint", Kind::checkpoint, edit_header(ckpt, config_edit(key, value)), label, ck);
    failures +=
        h.run_case("load_model", Kind::model, edit_header(model, config_edit(key, value)), "model-" + label, lm);
  }
  failures += h.run_case("checkpoint", Kind::checkpoint,
                         edit_header(ckpt, [](nlohmann::ordered_json& j) { j["__metadata__"]["step"] = "0"; }),
                         "checkpoint-step-0", ck);
  failures += h.run_case(
      "checkpoint", Kind::checkpoint,
      edit_header(ckpt, [](nlohmann::ordered_json& j) { j["__metadata__"]["step"] = "99999999999999999999999"; }),
      "checkpoint-step-huge", ck);
  failures += h.run_case(
      "load_model", Kind::model,
      edit_header(model, [](nlohmann::ordered_json& j) { j["embedding.weight"]["shape"][0] = uint64_t(1) << 58; }),
      "model-embedding-2^58-rows", lm);
  return failures;
}

// ---- mutations ----

class Mutator {
 public:
  explicit Mutator(uint64_t seed) : gen_(seed) {}

  std::string mutate(const std::string& in, Kind kind) {
    std::string s = in;
    const int n = 1 + static_cast<int>(below(3));
    for (int i = 0; i < n; ++i) {
      const bool json = (kind != Kind::token_file) && below(3) == 0;
      if (json && mutate_header_number(s)) continue;
      switch (below(9)) {
        case 0:
          flip_bits(s);
          break;
        case 1:
          set_interesting_byte(s);
          break;
        case 2:
          set_interesting_integer(s, kind);
          break;
        case 3:
          truncate(s);
          break;
        case 4:
          insert_random(s);
          break;
        case 5:
          duplicate_chunk(s);
          break;
        case 6:
          delete_chunk(s);
          break;
        case 7:
          set_interesting_integer(s, kind);
          break;
        default:
          set_interesting_byte(s);
          break;
      }
    }
    return s;
  }

 private:
  uint64_t below(uint64_t n) { return n ? gen_.randint(n) : 0; }

  // Positions near the start (the header, the fields) are the interesting ones: half the picks fall
  // in the first 256 bytes.
  size_t position(size_t size) {
    if (size == 0) return 0;
    return below(2) ? below(std::min<size_t>(size, 256)) : below(size);
  }

  void flip_bits(std::string& s) {
    if (s.empty()) return;
    for (uint64_t i = 0, n = 1 + below(4); i < n; ++i) s[position(s.size())] ^= static_cast<char>(1u << below(8));
  }

  void set_interesting_byte(std::string& s) {
    static const unsigned char values[] = {0x00, 0xff, 0x7f, 0x80, 0x01, 0xfe, 0x20, '"',
                                           '[',  '{',  '}',  ',',  '-',  '9',  '\\'};
    if (s.empty()) return;
    s[position(s.size())] = static_cast<char>(values[below(sizeof(values))]);
  }

  // A little-endian u32 or u64 boundary value, at a token file's fields or the safetensors length.
  void set_interesting_integer(std::string& s, Kind kind) {
    static const uint64_t values[] = {0,
                                      1,
                                      2,
                                      0x7f,
                                      0xff,
                                      0x7fff,
                                      0xffff,
                                      0x7fffffff,
                                      0x80000000,
                                      0xffffffff,
                                      uint64_t(1) << 32,
                                      uint64_t(1) << 58,
                                      uint64_t(1) << 62,
                                      INT64_MAX,
                                      uint64_t(INT64_MAX) + 1,
                                      UINT64_MAX,
                                      (1u << 24),
                                      (1u << 24) + 1,
                                      65536,
                                      65537};
    const uint64_t v = values[below(sizeof(values) / sizeof(values[0]))];
    const int width = below(2) ? 4 : 8;
    if (s.size() < static_cast<size_t>(width)) return;
    size_t at;
    if (kind == Kind::token_file && below(2)) {
      static const size_t fields[] = {8, 12, 16, 20, 24, 28, 32};            // version, V, n_ranges, the first range
      at = below(2) ? fields[below(7)] : s.size() - 4 * (1 + below(8)) - 8;  // or the token count near the end
    } else if (kind != Kind::token_file && below(2)) {
      at = 0;  // the header length
    } else {
      at = position(s.size());
    }
    if (at > s.size() - width) at = s.size() - width;
    for (int i = 0; i < width; ++i) s[at + i] = static_cast<char>((v >> (8 * i)) & 0xff);
  }

  void truncate(std::string& s) { s.resize(below(s.size() + 1)); }

  void insert_random(std::string& s) {
    std::string bytes;
    for (uint64_t i = 0, n = 1 + below(16); i < n; ++i) bytes.push_back(static_cast<char>(below(256)));
    s.insert(position(s.size() + 1), bytes);
  }

  void duplicate_chunk(std::string& s) {
    if (s.empty()) return;
    const size_t a = position(s.size()), len = 1 + below(std::min<size_t>(s.size() - a, 64));
    s.insert(position(s.size() + 1), s.substr(a, len));
  }

  void delete_chunk(std::string& s) {
    if (s.empty()) return;
    const size_t a = position(s.size()), len = 1 + below(std::min<size_t>(s.size() - a, 64));
    s.erase(a, len);
  }

  // Replaces one number of the JSON header (a shape, an offset, a number inside the config string)
  // by a boundary value or a neighbour, and usually fixes the header length so that the file parses.
  bool mutate_header_number(std::string& s) {
    if (s.size() < 8) return false;
    const uint64_t n = get_u64(s, 0);
    if (n > s.size() - 8 || n == 0) return false;
    std::string header = s.substr(8, n);
    std::vector<std::pair<size_t, size_t>> runs;
    for (size_t i = 0; i < header.size();) {
      if (!std::isdigit(static_cast<unsigned char>(header[i]))) {
        ++i;
        continue;
      }
      size_t j = i;
      while (j < header.size() && std::isdigit(static_cast<unsigned char>(header[j]))) ++j;
      runs.push_back({i, j - i});
      i = j;
    }
    if (runs.empty()) return false;
    const auto [at, len] = runs[below(runs.size())];
    const unsigned long long old = std::strtoull(header.substr(at, len).c_str(), nullptr, 10);
    static const char* values[] = {"0",
                                   "1",
                                   "4294967296",
                                   "18446744073709551615",
                                   "18446744073709551616",
                                   "9223372036854775807",
                                   "9223372036854775808",
                                   "288230376151711744",
                                   "4611686018427387904",
                                   "-1",
                                   "1e308",
                                   "16777217",
                                   "2147483648"};
    std::string v;
    switch (below(5)) {
      case 0:
        v = std::to_string(old + 1);
        break;
      case 1:
        v = std::to_string(old == 0 ? 0 : old - 1);
        break;
      case 2:
        v = std::to_string(old * 2);
        break;
      case 3:
        v = std::to_string(old + 4);
        break;
      default:
        v = values[below(sizeof(values) / sizeof(values[0]))];
        break;
    }
    header.replace(at, len, v);
    std::string out;
    put_u64(out, below(8) ? header.size() : n);
    s = out + header + s.substr(8 + n);
    return true;
  }

  mom::Generator gen_;
};

// ---- main ----

[[noreturn]] void usage(const std::string& msg) {
  std::cerr << "mom_fuzz_formats: " << msg
            << "\nusage: mom_fuzz_formats [--iterations N] [--seconds S] [--seed N] [--timeout S] [--max-rss-mb M]\n"
               "                        [--regressions DIR] [--failures DIR] [--replay FILE ...] [--write-seeds DIR]\n";
  std::exit(2);
}

Options parse_options(int argc, char** argv) {
  Options o;
  o.argv0 = argv[0];
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(a + " needs a value");
      return argv[++i];
    };
    try {
      if (a == "--iterations")
        o.iterations = std::stoll(value());
      else if (a == "--seconds")
        o.seconds = std::stod(value());
      else if (a == "--seed")
        o.seed = std::stoull(value());
      else if (a == "--timeout")
        o.timeout = static_cast<unsigned>(std::stoul(value()));
      else if (a == "--max-rss-mb")
        o.max_rss_mb = std::stoll(value());
      else if (a == "--regressions")
        o.regressions = value();
      else if (a == "--failures")
        o.failures = value();
      else if (a == "--write-seeds")
        o.write_seeds = value();
      else if (a == "--replay") {
        o.replay.push_back(value());
        while (i + 1 < argc && argv[i + 1][0] != '-') o.replay.push_back(argv[++i]);
      } else
        usage("unknown argument " + a);
    } catch (const std::logic_error&) {
      usage("bad value for " + a);
    }
  }
  return o;
}

// Replays files: each through every reader of its kind, saying what each reader answered.
int replay(Harness& h, const std::vector<std::string>& files, bool verbose) {
  int failures = 0;
  for (const std::string& f : files) {
    Kind kind;
    if (!kind_of_file(f, kind)) {
      if (verbose) std::printf("skipping %s: not *.safetensors or *.tok\n", f.c_str());
      continue;
    }
    if (verbose) std::printf("%s:\n", f.c_str());
    h.verbose_ = verbose;
    failures += h.run_input(kind, read_bytes(f), "replay-" + fs::path(f).filename().string());
    h.verbose_ = false;
    ++h.regressions_;
  }
  return failures;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt = parse_options(argc, argv);
  install_crash_handlers(opt);
#ifdef _OPENMP
  // One thread: the inputs are small, and on a busy machine every parallel region waits for a core.
  omp_set_num_threads(1);
#endif
  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };

  const char* tmpdir = std::getenv("TMPDIR");
  std::string templ = std::string(tmpdir && *tmpdir ? tmpdir : "/tmp") + "/mom_fuzz_XXXXXX";
  if (!::mkdtemp(templ.data())) {
    std::perror("mom_fuzz_formats: mkdtemp");
    return 2;
  }
  Harness h(opt, templ);
  int failures = 0;

  if (!opt.replay.empty()) {
    failures += replay(h, opt.replay, true);
    h.print_summary(elapsed());
    fs::remove_all(templ);
    return failures ? 1 : 0;
  }

  std::printf("mom_fuzz_formats: seed %llu, %lld mutations per seed, work folder %s, failures go to %s\n",
              static_cast<unsigned long long>(opt.seed), static_cast<long long>(opt.iterations), templ.c_str(),
              opt.failures.c_str());
  std::fflush(stdout);
  std::vector<Seed> seeds;
  try {
    seeds = make_seeds(templ);
  } catch (const std::exception& e) {
    std::printf("FAIL building the seeds: %s\n", e.what());
    return 1;
  }
  std::printf("seeds: ");
  for (const Seed& s : seeds) std::printf("%s (%zu bytes) ", s.name.c_str(), s.bytes.size());
  std::printf("[%.1f s]\n", elapsed());
  if (!opt.write_seeds.empty()) {
    fs::create_directories(opt.write_seeds);
    for (const Seed& s : seeds) write_bytes(opt.write_seeds + "/seed-" + s.name + extension(s.kind), s.bytes);
    std::printf("seeds written to %s\n", opt.write_seeds.c_str());
    fs::remove_all(templ);
    return 0;
  }

  // The saved regressions.
  std::vector<std::string> files;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(opt.regressions, ec)) files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  failures += replay(h, files, false);
  std::printf("regressions: %lld files from %s [%.1f s]\n", static_cast<long long>(h.regressions_),
              opt.regressions.c_str(), elapsed());

  failures += structured_cases(h, seeds);
  std::printf("structured cases: %lld [%.1f s]\n", static_cast<long long>(h.cases_), elapsed());
  std::fflush(stdout);

  // Mutations: round-robin over the seeds so that a time bound cuts every seed's share alike.
  Mutator m(opt.seed);
  const double mutation_start = elapsed();
  bool cut = false;
  for (int64_t i = 0; i < opt.iterations && !cut; ++i) {
    for (const Seed& s : seeds) {
      const std::string input = m.mutate(s.bytes, s.kind);
      failures += h.run_input(s.kind, input, "mutation-" + s.name + "-" + std::to_string(i));
      ++h.mutations_;
    }
    if (elapsed() - mutation_start > opt.seconds) {
      std::printf("mutations: stopped after %lld rounds at the --seconds bound (%.0f s)\n",
                  static_cast<long long>(i + 1), opt.seconds);
      cut = true;
    }
  }

  h.print_summary(elapsed());
  struct rusage ru;
  ::getrusage(RUSAGE_SELF, &ru);
  const long long rss_mb = ru.ru_maxrss / 1024;
  std::printf("  peak memory %lld MiB (bound %lld)\n", rss_mb, static_cast<long long>(opt.max_rss_mb));
  if (rss_mb > opt.max_rss_mb) {
    std::printf("FAIL peak memory above the bound: an input made a reader allocate far more than its size\n");
    ++failures;
  }
  fs::remove_all(templ);
  std::printf(failures ? "mom_fuzz_formats: %d failures\n" : "mom_fuzz_formats: no failure\n", failures);
  return failures ? 1 : 0;
}
