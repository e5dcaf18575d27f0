// Memory safety of core and the file readers against hostile sizes and files: overflow-checked shapes,
// byte counts and views; safetensors headers nested deep, with wrapping counts, with empty tensors
// sharing offsets; the atomic writer's refusals and the cleanup of stale temporaries; the token file's
// vocabulary cap; the device index's bound.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>

#include "core/atomic_file.h"
#include "core/safetensors.h"
#include "examples/toy/token_file.h"
#include "tests/support.h"

namespace mom {
namespace {

namespace fs = std::filesystem;
using test::expect_error;

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();

// The message of the mom::Error that f throws ("" when it throws none).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::string temp_dir(const std::string& name) {
  std::string dir = test::scratch_path(name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// ---- shapes, factories, views ----

TEST(CoreHardening, ShapeNumelChecksSignAndOverflow) {
  EXPECT_EQ(shape_numel({}), 1);
  EXPECT_EQ(shape_numel({3, 0, 5}), 0);
  EXPECT_EQ(shape_numel({int64_t(1) << 31, int64_t(1) << 31}), int64_t(1) << 62);
  EXPECT_EQ(shape_numel({kMax}), kMax);
  expect_error([] { shape_numel({int64_t(1) << 32, int64_t(1) << 32}); }, "[shape]");
  expect_error([] { shape_numel({kMax, 2}); }, "[shape]");
  expect_error([] { shape_numel({2, -3}); }, "[shape]");
  // No tensor has this shape: its strides overflow, although it holds no element.
  expect_error([] { shape_numel({0, int64_t(1) << 62, int64_t(1) << 62}); }, "[shape]");
  EXPECT_NE(error_of([] { shape_numel({int64_t(1) << 32, int64_t(1) << 32}); }).find("2^63 - 1"), std::string::npos);
  EXPECT_EQ(contiguous_strides({2, 0, 4}), (Shape{4, 4, 1}));
  EXPECT_EQ(contiguous_strides({int64_t(1) << 31, int64_t(1) << 31}), (Shape{int64_t(1) << 31, 1}));
  expect_error([] { contiguous_strides({int64_t(1) << 40, int64_t(1) << 40}); }, "[shape]");
}

TEST(CoreHardening, FactoriesRefuseCountsThatOverflow) {
  expect_error([] { empty({int64_t(1) << 32, int64_t(1) << 32}); }, "[shape]");
  // Elements fit int64, bytes do not: unchecked, the byte count wraps to a small allocation.
  std::string msg = error_of([] { empty({67, 68831134603393850}); });
  EXPECT_EQ(msg.rfind("[tensor]", 0), 0u) << msg;
  EXPECT_NE(msg.find("(67, 68831134603393850)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("float32"), std::string::npos) << msg;
  expect_error([] { zeros({int64_t(1) << 62}, DType::f64); }, "[tensor]");
  expect_error([] { ones({int64_t(1) << 60, 2}, DType::i64); }, "[tensor]");
  expect_error([] { empty({-1, 4}); }, "[empty]");
  // More than the machine's memory and swap: a clear error with the byte count, before malloc.
  msg = error_of([] { empty({int64_t(1) << 50}, DType::u8); });
  EXPECT_EQ(msg.rfind("[storage] out of host memory: asked for 1125899906842624 bytes", 0), 0u) << msg;
  Generator gen(1);
  expect_error([&] { randn({int64_t(1) << 60, 4}, gen); }, "[tensor]");
  expect_error([] { arange(std::numeric_limits<int64_t>::min(), kMax); }, "[arange]");
  EXPECT_EQ(arange(kMax - 2, kMax).to_vector<int64_t>(), (std::vector<int64_t>{kMax - 2, kMax - 1}));
  EXPECT_EQ(arange(0, 10, kMax).to_vector<int64_t>(), (std::vector<int64_t>{0}));
  EXPECT_EQ(arange(5, -5, -4).to_vector<int64_t>(), (std::vector<int64_t>{5, 1, -3}));
}

TEST(CoreHardening, ViewsCheckUserSizes) {
  Tensor t = from_vector<float>({0, 1, 2, 3, 4, 5}, {2, 3});
  expect_error([&] { t.narrow(1, kMax, 2); }, "[Tensor::narrow]");
  expect_error([&] { t.narrow(1, 1, kMax); }, "[Tensor::narrow]");
  EXPECT_EQ(t.narrow(1, 1, 2).to_vector<float>(), (std::vector<float>{1, 2, 4, 5}));
  expect_error([&] { t.narrow(0, 0, 1).expand({-2, 3}); }, "[Tensor::expand]");
  Tensor one = from_vector<float>({7}, {1, 1});
  expect_error([&] { one.expand({int64_t(1) << 62, int64_t(1) << 62}); }, "[shape]");
  EXPECT_EQ(one.expand({2, 3}).to_vector<float>(), (std::vector<float>(6, 7)));
  expect_error([&] { t.reshape({-1, int64_t(1) << 62, int64_t(1) << 62}); }, "[shape]");
  expect_error([&] { t.view({int64_t(1) << 32, int64_t(1) << 32}); }, "[shape]");
  EXPECT_EQ(t.reshape({3, -1}).shape(), (Shape{3, 2}));
  // as_strided stays inside the storage.
  expect_error([&] { t.as_strided({2, 2}, {1, 1}, 5); }, "[Tensor::as_strided]");
  expect_error([&] { t.as_strided({2}, {kMax}, 0); }, "[Tensor::as_strided]");
  expect_error([&] { t.as_strided({2}, {-1}, 1); }, "[Tensor::as_strided]");
  expect_error([&] { t.as_strided({1}, {1}, -1); }, "[Tensor::as_strided]");
  EXPECT_EQ(t.as_strided({2, 2}, {1, 2}, 2).to_vector<float>(), (std::vector<float>{2, 4, 3, 5}));
  EXPECT_EQ(t.as_strided({0}, {1}, 6).numel(), 0);
  // A step past the size leaves one element and no overflowing stride.
  Tensor s = t.slice(1, 0, 3, kMax);
  EXPECT_EQ(s.shape(), (Shape{2, 1}));
  EXPECT_EQ(s.to_vector<float>(), (std::vector<float>{0, 3}));
  EXPECT_EQ(t.slice(1, 1, 3, 2).to_vector<float>(), (std::vector<float>{1, 4}));
}

TEST(CoreHardening, DeviceIndexIsBounded) {
  std::string msg = error_of([] { parse_device("cuda:99999999999"); });
  EXPECT_EQ(msg.rfind("[device] device index 99999999999", 0), 0u) << msg;
  expect_error([] { parse_device("cuda:1024"); }, "[device]");
  expect_error([] { parse_device("cuda:-1"); }, "[device]");
  expect_error([] { parse_device("cuda:"); }, "[device]");
  EXPECT_EQ(parse_device("cuda:1023").index, 1023);
  EXPECT_EQ(parse_device("cuda:007").index, 7);
}

// ---- safetensors ----

std::string safetensors_bytes(const std::string& header, const std::string& data, uint64_t claimed) {
  std::string out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((claimed >> (8 * i)) & 0xff));
  return out + header + data;
}
std::string safetensors_bytes(const std::string& header, const std::string& data = "") {
  return safetensors_bytes(header, data, header.size());
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string nested(size_t depth, const std::string& inner) {
  return std::string(depth, '[') + inner + std::string(depth, ']');
}

TEST(CoreHardening, SafetensorsRefusesDeepNesting) {
  const std::string dir = temp_dir("deep"), path = dir + "/deep.safetensors";
  const std::string data(16, '\0');
  const std::vector<std::string> headers = {
      "{\"w\":{\"dtype\":" + nested(100000, "\"F32\"") + ",\"shape\":[4],\"data_offsets\":[0,16]}}",
      "{\"w\":{\"dtype\":\"F32\",\"shape\":" + nested(100000, "4") + ",\"data_offsets\":[0,16]}}",
      "{\"__metadata__\":{\"k\":" + nested(100000, "\"v\"") + "}}",
      std::string(100000, '['),  // never closed
      nested(9, ""),             // one level past the bound, at the root
  };
  for (const std::string& h : headers) {
    write_file(path, safetensors_bytes(h, data));
    const std::string msg = error_of([&] { load_safetensors(path); });
    EXPECT_EQ(msg.rfind("[safetensors] " + path + ": the header nests JSON values more than 8 levels deep", 0), 0u)
        << msg.substr(0, 300);
  }
  // Eight levels are allowed (a valid header uses three).
  write_file(path, safetensors_bytes(
                       "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16],\"x\":" + nested(6, "1") + "}}",
                       data));
  EXPECT_EQ(load_safetensors(path).tensors.at("w").shape(), (Shape{4}));
}

TEST(CoreHardening, SafetensorsCountsDoNotWrap) {
  const std::string dir = temp_dir("wrap"), path = dir + "/wrap.safetensors";
  auto entry = [](const std::string& dtype, const std::string& shape, const std::string& offsets) {
    return "{\"w\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":" + offsets + "}}";
  };
  // (2^32)^2 elements, 0 bytes: the element count wraps to 0 in 64 bits.
  for (const std::string& h :
       {entry("F32", "[4294967296,4294967296]", "[0,0]"), entry("U8", "[4294967296,4294967296]", "[0,0]"),
        entry("F64", "[2305843009213693952]", "[0,0]"),
        entry("F32", "[0,4611686018427387904,4611686018427387904]", "[0,0]")}) {
    write_file(path, safetensors_bytes(h));
    const std::string msg = error_of([&] { load_safetensors(path); });
    EXPECT_NE(msg.find("overflows"), std::string::npos) << msg;
    EXPECT_EQ(msg.rfind("[safetensors]", 0), 0u) << msg;
  }
  write_file(path, safetensors_bytes(entry("F32", "[18446744073709551615]", "[0,4]"), std::string(4, '\0')));
  expect_error([&] { load_safetensors(path); }, "[safetensors]");
  // A long untrusted name is quoted by an excerpt, not whole.
  write_file(path, safetensors_bytes("{\"" + std::string(1 << 20, 'n') +
                                         "\":{\"dtype\":\"F16\",\"shape\":[1],"
                                         "\"data_offsets\":[0,2]}}",
                                     "xx"));
  const std::string msg = error_of([&] { load_safetensors(path); });
  EXPECT_EQ(msg.rfind("[safetensors]", 0), 0u);
  EXPECT_LT(msg.size(), 400u) << msg.substr(0, 400);
  EXPECT_NE(msg.find("(1048576 bytes)"), std::string::npos) << msg;
}

TEST(CoreHardening, SafetensorsHeaderLengthIsBounded) {
  const std::string dir = temp_dir("length"), path = dir + "/length.safetensors";
  const std::string h = "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
  write_file(path, safetensors_bytes(h, "abcd", uint64_t(100000001)));
  EXPECT_EQ(error_of([&] { load_safetensors(path); }),
            "[safetensors] " + path + ": header length 100000001 is above the limit of 100000000 bytes");
  write_file(path, safetensors_bytes(h, "abcd", std::numeric_limits<uint64_t>::max()));
  expect_error([&] { load_safetensors(path); }, "[safetensors]");
  write_file(path, safetensors_bytes(h, "abcd", h.size() + 5));
  EXPECT_NE(error_of([&] { load_safetensors(path); }).find("runs past the end of the file"), std::string::npos);
  write_file(path, safetensors_bytes(h, "abcd"));
  EXPECT_EQ(load_safetensors(path).tensors.at("w").shape(), (Shape{1}));
  expect_error([&] { load_safetensors(dir); }, "[safetensors]");  // a directory
}

TEST(CoreHardening, SafetensorsAcceptsEmptyTensorsSharingOffsets) {
  const std::string dir = temp_dir("empty"), path = dir + "/empty.safetensors";
  std::string data;
  for (float v : {1.f, 2.f, 3.f, 4.f}) data.append(reinterpret_cast<const char*>(&v), 4);
  auto entry = [](const std::string& name, const std::string& dtype, const std::string& shape,
                  const std::string& offsets) {
    return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":" + offsets + "}";
  };
  // Empty tensors at 0 (with a, which starts there), between a and b, and at the end.
  write_file(path,
             safetensors_bytes(
                 "{" + entry("b", "F32", "[2]", "[8,16]") + "," + entry("e_start", "F32", "[0]", "[0,0]") + "," +
                     entry("a", "F32", "[2]", "[0,8]") + "," + entry("e_mid", "I64", "[3,0]", "[8,8]") + "," +
                     entry("e_mid2", "U8", "[0]", "[8,8]") + "," + entry("e_end", "F64", "[0,2]", "[16,16]") + "}",
                 data));
  SafetensorsFile f = load_safetensors(path);
  ASSERT_EQ(f.tensors.size(), 6u);
  EXPECT_EQ(f.tensors.at("a").to_vector<float>(), (std::vector<float>{1, 2}));
  EXPECT_EQ(f.tensors.at("b").to_vector<float>(), (std::vector<float>{3, 4}));
  EXPECT_EQ(f.tensors.at("e_mid").shape(), (Shape{3, 0}));
  EXPECT_EQ(f.tensors.at("e_mid").dtype(), DType::i64);
  EXPECT_EQ(f.tensors.at("e_end").shape(), (Shape{0, 2}));
  EXPECT_EQ(f.tensors.at("e_start").numel(), 0);
  // An empty tensor strictly inside another's bytes is refused, as the reference refuses it.
  write_file(path, safetensors_bytes(
                       "{" + entry("a", "F32", "[4]", "[0,16]") + "," + entry("e", "F32", "[0]", "[4,4]") + "}", data));
  EXPECT_NE(error_of([&] { load_safetensors(path); }).find("entry 'e' starts at byte 4 of the data, expected 16"),
            std::string::npos);
  // Non-empty tensors still tile: a gap or an overlap is refused.
  write_file(path, safetensors_bytes(
                       "{" + entry("a", "F32", "[1]", "[0,4]") + "," + entry("b", "F32", "[2]", "[8,16]") + "}", data));
  expect_error([&] { load_safetensors(path); }, "[safetensors]");
  // Our writer's files with empty tensors load back.
  save_safetensors(path, {{"x", empty({0, 4})}, {"y", from_vector<float>({5, 6}, {2})}, {"z", empty({0}, DType::u8)}});
  EXPECT_EQ(load_safetensors(path).tensors.at("y").to_vector<float>(), (std::vector<float>{5, 6}));
}

TEST(CoreHardening, SafetensorsRefusesDuplicateKeysAndBadBools) {
  const std::string dir = temp_dir("dup"), path = dir + "/dup.safetensors";
  const std::string e = "\"w\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}";
  write_file(path, safetensors_bytes("{" + e + "," + e + "}", "ab"));
  EXPECT_EQ(error_of([&] { load_safetensors(path); }),
            "[safetensors] " + path + ": the key 'w' appears twice in one object of the header");
  write_file(path, safetensors_bytes("{\"b\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[0,3]}}",
                                     std::string("\1\0\7", 3)));
  EXPECT_NE(error_of([&] { load_safetensors(path); }).find("holds the byte 7 at element 2"), std::string::npos);
}

// ---- the atomic writer ----

void write_text(const std::string& path, const std::string& text) {
  write_file_atomically(path, "test", [&](const ByteSink& sink) { sink(text.data(), text.size()); });
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(CoreHardening, AtomicWriterRefusesWhatIsNotARegularFile) {
  const std::string dir = temp_dir("atomic");
  // A directory.
  fs::create_directories(dir + "/sub");
  write_file(dir + "/sub/keep", "k");
  std::string msg = error_of([&] { write_text(dir + "/sub", "x"); });
  EXPECT_EQ(msg, "[test] " + dir + "/sub: is a directory, not a regular file; refusing to replace it");
  EXPECT_TRUE(fs::is_directory(dir + "/sub"));
  EXPECT_EQ(read_text(dir + "/sub/keep"), "k");
  // A character device.
  struct stat before, after;
  ASSERT_EQ(::stat("/dev/null", &before), 0);
  msg = error_of([&] { write_text("/dev/null", "x"); });
  EXPECT_EQ(msg, "[test] /dev/null: is a character device, not a regular file; refusing to replace it");
  ASSERT_EQ(::stat("/dev/null", &after), 0);
  EXPECT_TRUE(S_ISCHR(after.st_mode));
  EXPECT_EQ(after.st_rdev, before.st_rdev);
  EXPECT_FALSE(fs::exists("/dev/null.tmp." + std::to_string(::getpid())));
  // A FIFO: refused without being opened (opening it for writing would block).
  const std::string fifo = dir + "/fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0644), 0);
  msg = error_of([&] { write_text(fifo, "x"); });
  EXPECT_EQ(msg, "[test] " + fifo + ": is a FIFO, not a regular file; refusing to replace it");
  EXPECT_TRUE(fs::is_fifo(fifo));
  // A symbolic link to a directory, a dangling link; an empty path.
  fs::create_symlink(dir + "/sub", dir + "/link-to-dir");
  expect_error([&] { write_text(dir + "/link-to-dir", "x"); }, "[test]");
  EXPECT_TRUE(fs::is_symlink(dir + "/link-to-dir"));
  fs::create_symlink(dir + "/missing", dir + "/dangling");
  expect_error([&] { write_text(dir + "/dangling", "x"); }, "[test]");
  EXPECT_FALSE(fs::exists(dir + "/missing"));
  EXPECT_EQ(error_of([&] { write_text("", "x"); }), "[test] the output path is empty");
  // A missing directory: the message names the temporary file and the reason.
  msg = error_of([&] { write_text(dir + "/no/such/dir/file", "x"); });
  EXPECT_EQ(msg.rfind("[test] " + dir + "/no/such/dir/file: cannot create the temporary file", 0), 0u) << msg;
  EXPECT_NE(msg.find("No such file or directory"), std::string::npos) << msg;
  // Nothing was left behind.
  for (const auto& e : fs::directory_iterator(dir))
    EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << e.path();
}

TEST(CoreHardening, AtomicWriterReplacesRegularFilesAndFollowsLinks) {
  const std::string dir = temp_dir("atomic_ok");
  const std::string file = dir + "/f";
  write_text(file, "one");
  write_text(file, "two");
  EXPECT_EQ(read_text(file), "two");
  // Through a link: the target is replaced, the link stays a link.
  fs::create_symlink(file, dir + "/link");
  write_text(dir + "/link", "three");
  EXPECT_TRUE(fs::is_symlink(dir + "/link"));
  EXPECT_EQ(read_text(file), "three");
  // A failing fill leaves the old file and no temporary.
  EXPECT_THROW(write_file_atomically(file, "test",
                                     [](const ByteSink& sink) {
                                       sink("partial", 7);
                                       MOM_THROW("test", "fill failed");
                                     }),
               Error);
  EXPECT_EQ(read_text(file), "three");
  EXPECT_FALSE(fs::exists(file + ".tmp." + std::to_string(::getpid())));
  // Large writes go through whole.
  std::string big(3 << 20, 'x');
  for (size_t i = 0; i < big.size(); i += 4096) big[i] = static_cast<char>('a' + i % 26);
  write_file_atomically(file, "test", [&](const ByteSink& sink) {
    sink(big.data(), 10);
    sink(big.data() + 10, big.size() - 10);
  });
  EXPECT_EQ(read_text(file), big);
}

TEST(CoreHardening, StaleTemporariesOfDeadProcessesAreRemoved) {
  const std::string dir = temp_dir("stale");
  const std::string file = dir + "/checkpoint.safetensors";
  write_file(file, "current");
  // A process that has exited: its pid is no process any more.
  pid_t dead = ::fork();
  ASSERT_GE(dead, 0);
  if (dead == 0) ::_exit(0);
  ASSERT_EQ(::waitpid(dead, nullptr, 0), dead);
  // A live one: a child that waits to be killed.
  pid_t live = ::fork();
  ASSERT_GE(live, 0);
  if (live == 0) {
    ::pause();
    ::_exit(0);
  }
  const std::string dead_tmp = file + ".tmp." + std::to_string(dead);
  const std::string live_tmp = file + ".tmp." + std::to_string(live);
  const std::string own_tmp = file + ".tmp." + std::to_string(::getpid());
  const std::string other = file + ".tmp.notapid";
  const std::string other_file = dir + "/model.safetensors.tmp." + std::to_string(dead);
  for (const std::string& p : {dead_tmp, live_tmp, own_tmp, other, other_file}) write_file(p, "partial");
  std::vector<std::string> removed = remove_stale_temporaries(file);
  ::kill(live, SIGKILL);
  ::waitpid(live, nullptr, 0);
  ASSERT_EQ(removed.size(), 1u);
  EXPECT_EQ(removed[0], dead_tmp);
  EXPECT_FALSE(fs::exists(dead_tmp));
  EXPECT_TRUE(fs::exists(live_tmp));
  EXPECT_TRUE(fs::exists(own_tmp));
  EXPECT_TRUE(fs::exists(other));
  EXPECT_TRUE(fs::exists(other_file));  // another file's temporaries
  EXPECT_EQ(read_text(file), "current");
  // The live one's turn comes once it has exited.
  removed = remove_stale_temporaries(file);
  ASSERT_EQ(removed.size(), 1u);
  EXPECT_EQ(removed[0], live_tmp);
  EXPECT_TRUE(remove_stale_temporaries(dir + "/no/such/dir/file").empty());
  EXPECT_TRUE(remove_stale_temporaries("").empty());
}

// ---- token files ----

std::string token_file_bytes(uint32_t vocab, uint32_t range_end, uint64_t n_tokens = 0) {
  std::string s = "MOMTOKS1";
  auto u32 = [&](uint32_t v) {
    for (int i = 0; i < 4; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  };
  u32(1);
  u32(vocab);
  u32(1);  // one range
  u32(0);
  u32(range_end);
  u32(0);
  u32(3);
  s += "all";
  for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>((n_tokens >> (8 * i)) & 0xff));
  for (uint64_t i = 0; i < n_tokens; ++i) u32(static_cast<uint32_t>(i));
  return s;
}

TEST(CoreHardening, TokenFileVocabularyIsCapped) {
  const std::string dir = temp_dir("tokens"), path = dir + "/v.tok";
  write_file(path, token_file_bytes(0x7fffffff, 0x7fffffff));
  EXPECT_EQ(error_of([&] { toy::read_token_file(path); }),
            "[token_file] " + path + ": vocabulary size 2147483647 is not in [1, 16777216] (at most 2^24 ids)");
  write_file(path, token_file_bytes((1u << 24) + 1, (1u << 24) + 1));
  expect_error([&] { toy::read_token_file(path); }, "[token_file]");
  write_file(path, token_file_bytes(1u << 24, 1u << 24, 3));
  toy::TokenFile f = toy::read_token_file(path);
  EXPECT_EQ(f.vocab.size, 1 << 24);
  EXPECT_EQ(f.tokens, (std::vector<int32_t>{0, 1, 2}));
  // The writer keeps to the same cap.
  toy::Vocab big;
  big.size = (1 << 24) + 1;
  big.ranges = {{0, big.size, 0, "all"}};
  expect_error([&] { toy::write_token_file(path, big, {}); }, "[token_file]");
  // A token count that the file cannot hold is refused before anything is allocated for it.
  std::string bytes = token_file_bytes(100, 100, 2);
  for (int i = 0; i < 8; ++i) bytes[bytes.size() - 16 + i] = static_cast<char>(0xff);
  write_file(path, bytes);
  EXPECT_NE(error_of([&] { toy::read_token_file(path); }).find("truncated"), std::string::npos);
  // A directory is not a token file.
  EXPECT_EQ(error_of([&] { toy::read_token_file(dir); }), "[token_file] " + dir + ": not a regular file");
}

}  // namespace
}  // namespace mom
