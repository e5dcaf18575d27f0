// safetensors: bit-exact round trip, and a clear error for each kind of malformed file.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <csignal>
#include <cstring>
#include <sys/wait.h>
#include <unistd.h>

#include "core/safetensors.h"
#include "tests/support.h"

namespace mom {
namespace {

std::string temp_path(const std::string& name) {
  return test::scratch_path(name + ".safetensors");
}

// Writes a file from a raw header string and data bytes.
void write_raw(const std::string& path, const std::string& header, const std::string& data, uint64_t claimed_len) {
  std::ofstream out(path, std::ios::binary);
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>(claimed_len >> (8 * i)));
  out << header << data;
}

void write_raw(const std::string& path, const std::string& header, const std::string& data) {
  write_raw(path, header, data, header.size());
}

TEST(Safetensors, RoundTripIsBitExact) {
  Generator gen(5);
  std::map<std::string, Tensor> tensors = {
      {"layers.0.mixer.A_log", randn({6, 4}, gen, DType::f32)},
      {"layers.0.mixer.D", randn({6}, gen, DType::f64)},
      {"layers.0.norm.weight", randn({5}, gen, DType::f32).to(DType::bf16)},
      {"step", from_vector<int64_t>({123456789012345}, {1})},
      {"ids", from_vector<int32_t>({-1, 7, 3}, {3})},
      {"bytes", from_vector<uint8_t>({0, 255}, {2})},
      {"scalar", scalar_tensor(2.5)},
      {"empty", empty({0, 3})},
  };
  std::string path = temp_path("roundtrip");
  save_safetensors(path, tensors, {{"config", "{\"d_model\": 64}"}});
  SafetensorsFile f = load_safetensors(path);
  EXPECT_EQ(f.metadata.at("format"), "pt");
  EXPECT_EQ(f.metadata.at("config"), "{\"d_model\": 64}");
  ASSERT_EQ(f.tensors.size(), tensors.size());
  for (const auto& [name, t] : tensors) {
    const Tensor& r = f.tensors.at(name);
    EXPECT_EQ(r.dtype(), t.dtype()) << name;
    EXPECT_EQ(r.shape(), t.shape()) << name;
    size_t nbytes = static_cast<size_t>(t.numel()) * dtype_size(t.dtype());
    EXPECT_EQ(std::memcmp(r.raw_data(), t.raw_data(), nbytes), 0) << name;
  }
  // The header is 8-byte aligned, as the reference writer makes it.
  std::ifstream in(path, std::ios::binary);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(static_cast<unsigned char>(in.get())) << (8 * i);
  EXPECT_EQ(n % 8, 0u);
  std::remove(path.c_str());
}

TEST(Safetensors, MalformedFilesGiveClearErrors) {
  std::string path = temp_path("bad");
  std::string data(16, '\1');
  const std::string ok = R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})";
  write_raw(path, ok, data);
  EXPECT_EQ(load_safetensors(path).tensors.at("w").shape(), (Shape{2, 2}));

  auto expect = [&](const std::string& what) { test::expect_error([&] { load_safetensors(path); }, "[safetensors]"); (void)what; };
  write_raw(path, ok, data.substr(0, 10));  // truncated data
  expect("truncated");
  write_raw(path, ok.substr(0, 20), "", ok.size());  // header cut short
  expect("truncated header");
  write_raw(path, R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]})", data);  // broken JSON
  expect("corrupted header");
  write_raw(path, R"({"w":{"dtype":"F17","shape":[2,2],"data_offsets":[0,16]}})", data);
  expect("wrong dtype string");
  write_raw(path, R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,16]}})", data);
  expect("shape does not match the byte span");
  write_raw(path, R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", data);
  expect("gap before the first tensor");
  write_raw(path, R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", data);
  expect("overlap");
  write_raw(path, R"({"w":{"dtype":"F32","shape":[2,2]}})", data);
  expect("missing data_offsets");
  write_raw(path, ok, data + "xx");
  expect("trailing bytes");
  test::expect_error([&] { load_safetensors(path + ".does-not-exist"); }, "[safetensors]");
  std::remove(path.c_str());
}

TEST(Safetensors, WriteKilledBeforeRenameLeavesPreviousFileIntact) {
  std::string path = temp_path("atomic");
  save_safetensors(path, {{"w", from_vector<float>({1, 2, 3}, {3})}});
  // A child process starts writing a 256 MB checkpoint over the same path and is killed part-way.
  // Whenever the kill lands, the file must load and be either the old checkpoint or the new one.
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    save_safetensors(path, {{"big", zeros({64 * 1024 * 1024})}});
    ::_exit(0);
  }
  // Kill it once its temporary file holds some data, i.e. in the middle of the write.
  std::string tmp = path + ".tmp." + std::to_string(pid);
  bool seen_partial = false;
  for (int i = 0; i < 20000 && !seen_partial; ++i) {
    std::ifstream t(tmp, std::ios::binary | std::ios::ate);
    seen_partial = t.good() && t.tellg() > (1 << 20);
    if (!seen_partial) ::usleep(500);
  }
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(seen_partial) << "the writer was never observed mid-write";
  SafetensorsFile f = load_safetensors(path);
  ASSERT_EQ(f.tensors.size(), 1u);
  if (f.tensors.count("w")) {
    EXPECT_EQ(f.tensors.at("w").to_vector<float>(), (std::vector<float>{1, 2, 3}));
  } else {
    EXPECT_EQ(f.tensors.at("big").numel(), 64 * 1024 * 1024);
  }
  std::remove(path.c_str());
  std::remove(tmp.c_str());
}

TEST(Safetensors, UndefinedTensorIsAnError) {
  test::expect_error([] { save_safetensors(temp_path("undef"), {{"w", Tensor()}}); }, "[safetensors]");
}

}  // namespace
}  // namespace mom
