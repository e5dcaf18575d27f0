#include "core/safetensors.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"

namespace mom {

namespace {

constexpr const char* kOp = "safetensors";

bool parse_dtype(const std::string& s, DType& out) {
  static const std::pair<const char*, DType> table[] = {{"F32", DType::f32}, {"F64", DType::f64},
                                                        {"I32", DType::i32}, {"I64", DType::i64},
                                                        {"U8", DType::u8},   {"BOOL", DType::boolean}};
  for (const auto& [name, dt] : table)
    if (s == name) {
      out = dt;
      return true;
    }
  return false;
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
  std::string json = header.dump();
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
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  MOM_CHECK(in.good(), kOp, path << ": cannot open: " << std::strerror(errno));
  uint64_t file_size = static_cast<uint64_t>(in.tellg());
  in.seekg(0);
  MOM_CHECK(file_size >= 8, kOp, path << ": file of " << file_size << " bytes is too short for a header length");
  unsigned char len[8];
  in.read(reinterpret_cast<char*>(len), 8);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(len[i]) << (8 * i);
  MOM_CHECK(n <= file_size - 8, kOp, path << ": header length " << n << " runs past the end of the file (" << file_size << " bytes)");
  std::string json(n, '\0');
  in.read(json.data(), static_cast<std::streamsize>(n));
  MOM_CHECK(in.good(), kOp, path << ": cannot read the header");

  nlohmann::json header;
  try {
    header = nlohmann::json::parse(json);
  } catch (const nlohmann::json::exception& e) {
    MOM_THROW(kOp, path << ": header is not valid JSON: " << e.what());
  }
  MOM_CHECK(header.is_object(), kOp, path << ": header is not a JSON object");

  SafetensorsFile out;
  struct Entry { std::string name; DType dtype; Shape shape; uint64_t begin, end; };
  std::vector<Entry> entries;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& v = it.value();
    if (name == "__metadata__") {
      MOM_CHECK(v.is_object(), kOp, path << ": __metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        MOM_CHECK(m.value().is_string(), kOp, path << ": metadata '" << m.key() << "' is not a string");
        out.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    MOM_CHECK(v.is_object() && v.contains("dtype") && v.contains("shape") && v.contains("data_offsets"), kOp,
              path << ": entry '" << name << "' needs dtype, shape and data_offsets");
    Entry e{name, DType::f32, {}, 0, 0};
    MOM_CHECK(v["dtype"].is_string() && parse_dtype(v["dtype"].get<std::string>(), e.dtype), kOp,
              path << ": entry '" << name << "' has unsupported dtype " << v["dtype"].dump());
    MOM_CHECK(v["shape"].is_array(), kOp, path << ": entry '" << name << "' shape is not a list");
    for (const auto& s : v["shape"]) {
      MOM_CHECK(s.is_number_unsigned(), kOp, path << ": entry '" << name << "' has a bad shape " << v["shape"].dump());
      e.shape.push_back(s.get<int64_t>());
    }
    const auto& off = v["data_offsets"];
    MOM_CHECK(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() && off[1].is_number_unsigned(), kOp,
              path << ": entry '" << name << "' has bad data_offsets " << off.dump());
    e.begin = off[0].get<uint64_t>();
    e.end = off[1].get<uint64_t>();
    uint64_t expected = static_cast<uint64_t>(shape_numel(e.shape)) * dtype_size(e.dtype);
    MOM_CHECK(e.end >= e.begin && e.end - e.begin == expected, kOp,
              path << ": entry '" << name << "' spans " << (e.end >= e.begin ? e.end - e.begin : 0) << " bytes, but "
                   << safetensors_dtype_name(e.dtype) << " " << shape_str(e.shape) << " needs " << expected);
    entries.push_back(e);
  }
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.begin < b.begin; });
  uint64_t pos = 0;
  for (const Entry& e : entries) {
    MOM_CHECK(e.begin == pos, kOp, path << ": entry '" << e.name << "' starts at byte " << e.begin << " of the data, expected "
                                        << pos << " (offsets must tile the data without gaps or overlap)");
    pos = e.end;
  }
  uint64_t data_size = file_size - 8 - n;
  MOM_CHECK(pos == data_size, kOp, path << ": the tensors cover " << pos << " bytes of data but the file holds " << data_size
                                        << (pos > data_size ? " (truncated?)" : " (trailing bytes)"));
  for (const Entry& e : entries) {
    Tensor t = empty(e.shape, e.dtype);
    in.seekg(static_cast<std::streamoff>(8 + n + e.begin));
    in.read(static_cast<char*>(t.raw_data()), static_cast<std::streamsize>(e.end - e.begin));
    MOM_CHECK(in.good(), kOp, path << ": cannot read the data of '" << e.name << "'");
    out.tensors[e.name] = t;
  }
  return out;
}

}  // namespace mom
