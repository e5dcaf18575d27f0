#include "examples/toy/token_file.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sys/stat.h>

#include "core/atomic_file.h"
#include "core/error.h"

namespace mom::toy {

namespace {

constexpr const char* kOp = "token_file";
constexpr char kMagic[8] = {'M', 'O', 'M', 'T', 'O', 'K', 'S', '1'};
constexpr uint32_t kVersion = 1;
constexpr uint32_t kMaxRanges = 65536;
constexpr uint32_t kMaxNameLength = 256;

void put_u32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void put_u64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// Reads little-endian fields from the file and says which field ran past the end.
class Reader {
 public:
  Reader(const std::string& path, uint64_t file_size) : path_(path), in_(path, std::ios::binary), size_(file_size) {}
  void bytes(void* out, uint64_t n, const char* what) {
    MOM_CHECK(n <= size_ - pos_, kOp, path_ << ": truncated: the file ends inside " << what << " (offset " << pos_
              << ", " << size_ << " bytes)");
    in_.read(static_cast<char*>(out), static_cast<std::streamsize>(n));
    MOM_CHECK(in_.good(), kOp, path_ << ": cannot read " << what << " at offset " << pos_);
    pos_ += n;
  }
  uint64_t uint(int n_bytes, const char* what) {
    unsigned char b[8];
    bytes(b, static_cast<uint64_t>(n_bytes), what);
    uint64_t v = 0;
    for (int i = 0; i < n_bytes; ++i) v |= static_cast<uint64_t>(b[i]) << (8 * i);
    return v;
  }
  uint32_t u32(const char* what) { return static_cast<uint32_t>(uint(4, what)); }
  int32_t i32(const char* what) { return static_cast<int32_t>(u32(what)); }
  uint64_t u64(const char* what) { return uint(8, what); }
  uint64_t remaining() const { return size_ - pos_; }
  bool good() const { return in_.good(); }

 private:
  const std::string& path_;
  std::ifstream in_;
  uint64_t size_;
  uint64_t pos_ = 0;
};

bool host_is_little_endian() {
  const uint16_t one = 1;
  unsigned char first;
  std::memcpy(&first, &one, 1);
  return first == 1;
}

}  // namespace

void write_token_file(const std::string& path, const Vocab& vocab, const std::vector<int32_t>& tokens) {
  vocab.validate(kOp, path + ": ");
  std::string header(kMagic, sizeof(kMagic));
  put_u32(header, kVersion);
  put_u32(header, static_cast<uint32_t>(vocab.size));
  MOM_CHECK(vocab.ranges.size() <= kMaxRanges, kOp, path << ": " << vocab.ranges.size() << " ranges, at most "
            << kMaxRanges);
  put_u32(header, static_cast<uint32_t>(vocab.ranges.size()));
  for (const Vocab::Range& r : vocab.ranges) {
    MOM_CHECK(r.name.size() <= kMaxNameLength, kOp, path << ": range name '" << r.name << "' is longer than "
              << kMaxNameLength << " bytes");
    put_u32(header, static_cast<uint32_t>(r.begin));
    put_u32(header, static_cast<uint32_t>(r.end));
    put_u32(header, static_cast<uint32_t>(r.modality));
    put_u32(header, static_cast<uint32_t>(r.name.size()));
    header += r.name;
  }
  put_u64(header, tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i)
    MOM_CHECK(tokens[i] >= 0 && tokens[i] < vocab.size, kOp, path << ": token " << i << " is " << tokens[i]
              << ", outside the vocabulary [0, " << vocab.size << ")");

  write_file_atomically(path, kOp, [&](const ByteSink& write) {
    write(header.data(), header.size());
    if (host_is_little_endian()) {
      write(tokens.data(), tokens.size() * sizeof(int32_t));
    } else {
      std::string le;
      for (int32_t t : tokens) put_u32(le, static_cast<uint32_t>(t));
      write(le.data(), le.size());
    }
  });
}

TokenFile read_token_file(const std::string& path) {
  // The size comes from stat, not from seeking: a directory opens and "seeks" to an arbitrary offset.
  struct stat st;
  MOM_CHECK(::stat(path.c_str(), &st) == 0, kOp, path << ": cannot open: " << std::strerror(errno));
  MOM_CHECK(S_ISREG(st.st_mode), kOp, path << ": not a regular file");
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  Reader in(path, file_size);
  MOM_CHECK(in.good(), kOp, path << ": cannot open: " << std::strerror(errno));
  char magic[8];
  in.bytes(magic, 8, "the magic");
  MOM_CHECK(std::memcmp(magic, kMagic, 8) == 0, kOp,
            path << ": not a token file (the first 8 bytes are not \"MOMTOKS1\")");
  uint32_t version = in.u32("the version");
  MOM_CHECK(version == kVersion, kOp,
            path << ": format version " << version << ", this reader knows version " << kVersion);

  TokenFile out;
  uint32_t vocab_size = in.u32("the vocabulary size");
  MOM_CHECK(vocab_size >= 1 && vocab_size <= static_cast<uint32_t>(kMaxVocabSize), kOp,
            path << ": vocabulary size " << vocab_size << " is not in [1, " << kMaxVocabSize << "] (at most 2^24 ids)");
  out.vocab.size = static_cast<int32_t>(vocab_size);
  uint32_t n_ranges = in.u32("the number of ranges");
  MOM_CHECK(n_ranges >= 1 && n_ranges <= kMaxRanges, kOp,
            path << ": " << n_ranges << " vocabulary ranges, expected 1 .. " << kMaxRanges);
  for (uint32_t i = 0; i < n_ranges; ++i) {
    Vocab::Range r;
    r.begin = in.i32("a range");
    r.end = in.i32("a range");
    r.modality = in.i32("a range");
    uint32_t name_length = in.u32("a range");
    MOM_CHECK(name_length >= 1 && name_length <= kMaxNameLength, kOp, path << ": range " << i << " has a name of "
              << name_length << " bytes, expected 1 .. " << kMaxNameLength);
    r.name.resize(name_length);
    in.bytes(r.name.data(), name_length, "a range name");
    out.vocab.ranges.push_back(std::move(r));
  }
  out.vocab.validate(kOp, path + ": ");

  uint64_t n_tokens = in.u64("the token count");
  MOM_CHECK(n_tokens <= in.remaining() / 4, kOp, path << ": truncated: the header says " << n_tokens
            << " tokens of 4 bytes, but only " << in.remaining() << " bytes follow it");
  MOM_CHECK(n_tokens * 4 == in.remaining(), kOp, path << ": " << in.remaining() - n_tokens * 4
            << " unexpected bytes after the last of the " << n_tokens << " tokens");
  out.tokens.resize(static_cast<size_t>(n_tokens));
  in.bytes(out.tokens.data(), n_tokens * 4, "the tokens");
  if (!host_is_little_endian())
    for (int32_t& t : out.tokens) {
      uint32_t u = static_cast<uint32_t>(t);
      t = static_cast<int32_t>((u >> 24) | ((u >> 8) & 0xff00) | ((u << 8) & 0xff0000) | (u << 24));
    }
  for (size_t i = 0; i < out.tokens.size(); ++i)
    MOM_CHECK(out.tokens[i] >= 0 && out.tokens[i] < out.vocab.size, kOp, path << ": token " << i << " is "
              << out.tokens[i] << ", outside the vocabulary [0, " << out.vocab.size << ")");
  return out;
}

std::vector<int64_t> document_starts(const std::vector<int32_t>& tokens, int64_t doc_token) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  std::vector<int64_t> starts;
  for (int64_t i = 0; i < n; ++i)
    if (i == 0 || (doc_token >= 0 && tokens[i] == doc_token)) starts.push_back(i);
  starts.push_back(n);
  return starts;
}

}  // namespace mom::toy
