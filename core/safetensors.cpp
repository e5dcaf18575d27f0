#include "core/safetensors.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <sys/stat.h>
#include <vector>

#include "core/atomic_file.h"

namespace mom {

namespace {

constexpr const char* kOp = "safetensors";
constexpr size_t kExcerptBytes = 48;  // of an untrusted name or value quoted in an error message

bool parse_dtype(const std::string& s, DType& out) {
  static const std::pair<const char*, DType> table[] = {
      {"F32", DType::f32}, {"F64", DType::f64}, {"BF16", DType::bf16}, {"I32", DType::i32},
      {"I64", DType::i64}, {"U8", DType::u8},   {"BOOL", DType::boolean}};
  for (const auto& [name, dt] : table)
    if (s == name) {
      out = dt;
      return true;
    }
  return false;
}

// Untrusted text for a message: at most `max` bytes, anything but printable ASCII as \xNN, and
// "... (N bytes)" when cut.
std::string excerpt(const std::string& s, size_t max = kExcerptBytes) {
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < s.size() && i < max; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  if (s.size() > max) out += "... (" + std::to_string(s.size()) + " bytes)";
  return out;
}

// A JSON value for a message, written by hand rather than by dump(): at most about kExcerptBytes
// characters, containers below the second level shown as [...] / {...}. The recursion is bounded by
// that level, whatever the value's depth.
void excerpt_json(const nlohmann::json& v, int level, std::string& out) {
  if (out.size() > kExcerptBytes) return;
  if (v.is_array() || v.is_object()) {
    const bool array = v.is_array();
    if (level >= 2) {
      out += array ? "[...]" : "{...}";
      return;
    }
    out += array ? "[" : "{";
    size_t i = 0;
    for (auto it = v.begin(); it != v.end(); ++it, ++i) {
      if (out.size() > kExcerptBytes) {
        out += "...";
        break;
      }
      if (i) out += ", ";
      if (!array) out += "\"" + excerpt(it.key()) + "\": ";
      excerpt_json(it.value(), level + 1, out);
    }
    out += array ? "]" : "}";
  } else if (v.is_string()) {
    out += "\"" + excerpt(v.get_ref<const std::string&>()) + "\"";
  } else {
    out += v.dump();  // a number, bool or null: short
  }
}

std::string excerpt(const nlohmann::json& v) {
  std::string out;
  excerpt_json(v, 0, out);
  return out;
}

// A shape for a message: the first and last dims of a long one.
std::string shape_excerpt(const Shape& shape) {
  if (shape.size() <= 8) return shape_str(shape);
  std::ostringstream os;
  os << "(" << shape[0] << ", " << shape[1] << ", " << shape[2] << ", ..., " << shape.back() << ") of "
     << shape.size() << " dims";
  return os.str();
}

// Parses the header with a callback that refuses containers nested deeper than kSafetensorsMaxJsonDepth
// (the parser itself is iterative; the callback stops it before a deep value is built, so nothing
// recursive ever meets one) and keys repeated within one object.
nlohmann::json parse_header(const std::string& path, const std::string& text) {
  std::vector<std::set<std::string>> keys;  // of each open object, innermost last
  auto callback = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    using E = nlohmann::json::parse_event_t;
    if (event == E::object_start || event == E::array_start) {
      MOM_CHECK(depth < kSafetensorsMaxJsonDepth, kOp, path << ": the header nests JSON values more than "
                << kSafetensorsMaxJsonDepth << " levels deep (a valid header has 3)");
    }
    if (event == E::object_start) keys.emplace_back();
    if (event == E::object_end) keys.pop_back();
    if (event == E::key) {
      const std::string& key = parsed.get_ref<const std::string&>();
      MOM_CHECK(keys.back().insert(key).second, kOp, path << ": the key '" << excerpt(key)
                << "' appears twice in one object of the header");
    }
    return true;
  };
  try {
    return nlohmann::json::parse(text, callback);
  } catch (const nlohmann::json::exception& e) {
    // nlohmann's message quotes the token it stopped in, which can be most of the header.
    MOM_THROW(kOp, path << ": header is not valid JSON: " << excerpt(e.what(), 240));
  }
}

struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin, end;
};

Entry parse_entry(const std::string& path, const std::string& name, const nlohmann::json& v) {
  const std::string quoted = "entry '" + excerpt(name) + "'";
  MOM_CHECK(v.is_object() && v.contains("dtype") && v.contains("shape") && v.contains("data_offsets"), kOp,
            path << ": " << quoted << " needs dtype, shape and data_offsets");
  Entry e{name, DType::f32, {}, 0, 0};
  const nlohmann::json& dtype = v["dtype"];
  MOM_CHECK(dtype.is_string() && parse_dtype(dtype.get<std::string>(), e.dtype), kOp,
            path << ": " << quoted << " has unsupported dtype " << excerpt(dtype)
                 << " (expected F32, F64, BF16, I32, I64, U8 or BOOL)");
  const nlohmann::json& shape = v["shape"];
  MOM_CHECK(shape.is_array(), kOp, path << ": " << quoted << " has shape " << excerpt(shape) << ", not a list");
  for (const auto& s : shape) {
    MOM_CHECK(s.is_number_unsigned() && s.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
              kOp, path << ": " << quoted << " has a bad shape " << excerpt(shape)
                        << " (sizes are integers in [0, 2^63))");
    e.shape.push_back(s.get<int64_t>());
  }
  const nlohmann::json& off = v["data_offsets"];
  MOM_CHECK(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() && off[1].is_number_unsigned(), kOp,
            path << ": " << quoted << " has bad data_offsets " << excerpt(off) << " (expected [begin, end])");
  e.begin = off[0].get<uint64_t>();
  e.end = off[1].get<uint64_t>();
  MOM_CHECK(e.end >= e.begin, kOp, path << ": " << quoted << " has data_offsets [" << e.begin << ", " << e.end
                                        << "] that end before they begin");
  // Element and byte counts in checked arithmetic: a shape such as (2^32, 2^32) must not wrap to 0.
  // The sizes, a 0 counted as 1, must multiply to at most 2^63 - 1 (shape_numel's rule: no tensor has
  // a shape such as (0, 2^62, 2^62), whose strides overflow), and the byte count must fit 64 bits.
  int64_t strided = 1;
  uint64_t bytes = dtype_size(e.dtype);
  bool overflow = false;
  for (int64_t s : e.shape) {
    overflow = overflow || __builtin_mul_overflow(strided, std::max<int64_t>(s, 1), &strided) ||
               __builtin_mul_overflow(bytes, static_cast<uint64_t>(s), &bytes);
  }
  MOM_CHECK(!overflow, kOp, path << ": " << quoted << " has shape " << shape_excerpt(e.shape)
                                 << ", whose element or byte count overflows");
  MOM_CHECK(e.end - e.begin == bytes, kOp,
            path << ": " << quoted << " spans " << e.end - e.begin << " bytes, but "
                 << safetensors_dtype_name(e.dtype) << " " << shape_excerpt(e.shape) << " needs " << bytes);
  return e;
}

}  // namespace

const char* safetensors_dtype_name(DType dtype) {
  switch (dtype) {
    case DType::f32: return "F32";
    case DType::f64: return "F64";
    case DType::i32: return "I32";
    case DType::i64: return "I64";
    case DType::u8: return "U8";
    case DType::boolean: return "BOOL";
    case DType::bf16: return "BF16";
  }
  return "?";
}

void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header;
  nlohmann::json meta = metadata;
  meta["format"] = "pt";
  header["__metadata__"] = meta;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    MOM_CHECK(t.defined(), kOp, path << ": tensor '" << name << "' is undefined");
    MOM_CHECK(name != "__metadata__", kOp, path << ": '__metadata__' is not a tensor name");
    uint64_t nbytes = static_cast<uint64_t>(t.numel()) * dtype_size(t.dtype());
    header[name] = {{"dtype", safetensors_dtype_name(t.dtype())}, {"shape", t.shape()},
                    {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
  }
  std::string json;
  try {
    json = header.dump();
  } catch (const nlohmann::json::exception&) {
    MOM_THROW(kOp, path << ": a tensor name or metadata string is not valid UTF-8");
  }
  json.append((8 - json.size() % 8) % 8, ' ');  // data section 8-byte aligned, as the reference writer does

  write_file_atomically(path, kOp, [&](const ByteSink& write) {
    uint64_t n = json.size();
    unsigned char len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(n >> (8 * i));
    write(len, 8);
    write(json.data(), json.size());
    for (const auto& [name, t] : tensors) {
      Tensor c = t.detach().to(Device::cpu()).contiguous();
      write(c.raw_data(), static_cast<size_t>(c.numel()) * dtype_size(c.dtype()));
    }
  });
}

SafetensorsFile load_safetensors(const std::string& path) {
  struct stat st;
  MOM_CHECK(::stat(path.c_str(), &st) == 0, kOp, path << ": cannot open: " << std::strerror(errno));
  MOM_CHECK(S_ISREG(st.st_mode), kOp, path << ": not a regular file");
  std::ifstream in(path, std::ios::binary);
  MOM_CHECK(in.good(), kOp, path << ": cannot open: " << std::strerror(errno));
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  MOM_CHECK(file_size >= 8, kOp, path << ": file of " << file_size << " bytes is too short for a header length");
  unsigned char len[8];
  in.read(reinterpret_cast<char*>(len), 8);
  MOM_CHECK(in.good(), kOp, path << ": cannot read the header length");
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(len[i]) << (8 * i);
  MOM_CHECK(n <= kSafetensorsMaxHeaderBytes, kOp, path << ": header length " << n << " is above the limit of "
            << kSafetensorsMaxHeaderBytes << " bytes");
  MOM_CHECK(n <= file_size - 8, kOp, path << ": header length " << n << " runs past the end of the file ("
            << file_size << " bytes)");
  std::string text(n, '\0');
  in.read(text.data(), static_cast<std::streamsize>(n));
  MOM_CHECK(in.good(), kOp, path << ": cannot read the header");

  const nlohmann::json header = parse_header(path, text);
  MOM_CHECK(header.is_object(), kOp, path << ": header is not a JSON object");

  SafetensorsFile out;
  std::vector<Entry> entries;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& v = it.value();
    if (name == "__metadata__") {
      MOM_CHECK(v.is_object(), kOp, path << ": __metadata__ is " << excerpt(v) << ", not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        MOM_CHECK(m.value().is_string(), kOp, path << ": metadata '" << excerpt(m.key()) << "' is "
                  << excerpt(m.value()) << ", not a string");
        out.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    entries.push_back(parse_entry(path, name, v));
  }

  // The reference implementation's rule: sorted by (begin, end), each tensor starts where the one
  // before it ends. An empty tensor thus sits at 0, between two tensors or at the end of the data, and
  // may share that offset with other tensors.
  std::sort(entries.begin(), entries.end(),
            [](const Entry& a, const Entry& b) { return a.begin != b.begin ? a.begin < b.begin : a.end < b.end; });
  uint64_t pos = 0;
  for (const Entry& e : entries) {
    MOM_CHECK(e.begin == pos, kOp, path << ": entry '" << excerpt(e.name) << "' starts at byte " << e.begin
                                        << " of the data, expected " << pos
                                        << " (offsets must tile the data without gaps or overlap)");
    pos = e.end;
  }
  const uint64_t data_size = file_size - 8 - n;
  MOM_CHECK(pos == data_size, kOp, path << ": the tensors cover " << pos << " bytes of data but the file holds "
                                        << data_size << (pos > data_size ? " (truncated?)" : " (trailing bytes)"));
  for (const Entry& e : entries) {
    Tensor t = empty(e.shape, e.dtype);
    const size_t nbytes = static_cast<size_t>(e.end - e.begin);
    if (nbytes > 0) {
      in.seekg(static_cast<std::streamoff>(8 + n + e.begin));
      in.read(static_cast<char*>(t.raw_data()), static_cast<std::streamsize>(nbytes));
      MOM_CHECK(in.good(), kOp, path << ": cannot read the data of '" << excerpt(e.name) << "'");
    }
    if (e.dtype == DType::boolean) {
      // Any other byte is not a bool: reading it as one is undefined behaviour.
      const unsigned char* b = static_cast<const unsigned char*>(t.raw_data());
      const unsigned char* bad = std::find_if(b, b + nbytes, [](unsigned char c) { return c > 1; });
      MOM_CHECK(bad == b + nbytes, kOp, path << ": entry '" << excerpt(e.name) << "' (BOOL) holds the byte "
                << static_cast<int>(*bad) << " at element " << bad - b << "; BOOL values are 0 or 1");
    }
    out.tensors[e.name] = t;
  }
  return out;
}

}  // namespace mom
