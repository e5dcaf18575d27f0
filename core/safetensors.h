// safetensors files: an 8-byte little-endian header length N, N bytes of JSON header, then the raw
// little-endian data of every tensor. The header maps each name to {"dtype", "shape",
// "data_offsets": [begin, end)} (offsets relative to the data section) and carries "__metadata__",
// whose "format" is "pt" so PyTorch's loaders accept the file.
//
// save_safetensors writes to a temporary file beside `path`, flushes it, then renames it over `path`:
// a write that fails (or a process killed) before the rename leaves the previous file intact.
// load_safetensors validates every header field (dtype names, shapes, offsets that tile the data
// section in order without gaps or overlap, sizes equal to dtype x shape, the file's length) and says
// what is wrong in a "[safetensors] <path>: ..." error.
#pragma once

#include <map>
#include <string>

#include "core/tensor.h"

namespace mom {

struct SafetensorsFile {
  std::map<std::string, Tensor> tensors;             // CPU, contiguous
  std::map<std::string, std::string> metadata;       // includes "format": "pt"
};

void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});
SafetensorsFile load_safetensors(const std::string& path);

// "F32", "F64", "I32", "I64", "U8", "BOOL"
const char* safetensors_dtype_name(DType dtype);

}  // namespace mom
