// safetensors files: an 8-byte little-endian header length N, N bytes of JSON header, then the raw
// little-endian data of every tensor (a BF16 element: 2 bytes, the top half of a float32's bits). The
// header maps each name to {"dtype", "shape", "data_offsets": [begin, end)} (offsets relative to the
// data section) and carries "__metadata__", whose "format" is "pt" so PyTorch's loaders accept the file.
//
// save_safetensors writes through write_file_atomically (core/atomic_file.h): a write that fails (or a
// process killed) before the rename leaves the previous file intact.
//
// load_safetensors reads untrusted files and says what is wrong in a "[safetensors] <path>: ..." error.
// It accepts what the reference implementation (huggingface/safetensors) accepts, within these limits:
//   - the path is a regular file; N is at most kSafetensorsMaxHeaderBytes (the reference's bound) and
//     within the file;
//   - the header is one JSON object, nested at most kSafetensorsMaxJsonDepth containers deep (a valid
//     header needs 3: the object, an entry, its shape), with no key twice in one object;
//   - "__metadata__", when present, maps strings to strings;
//   - every other key is a tensor with dtype F32, F64, BF16, I32, I64, U8 or BOOL, a shape of integers in
//     [0, 2^63) that shape_numel accepts (the sizes, a 0 counted as 1, multiply to at most 2^63 - 1),
//     and data_offsets [begin, end] with end - begin = the dtype's size x the element count, counted
//     without overflow (a shape of (2^32, 2^32) does not wrap to 0 bytes);
//   - sorted by (begin, end), each tensor begins where the one before it ends, the first at 0, and the
//     last ends at the end of the file: the non-empty tensors tile the data without gap or overlap, and
//     an empty tensor (begin == end) sits at 0, where one tensor ends and the next begins, or at the
//     end of the data, sharing that offset with any number of others (one strictly inside another
//     tensor's bytes is refused, as the reference refuses it);
//   - BOOL data holds only the bytes 0 and 1 (anything else is not a bool in C++); every bit pattern is
//     a value of the other dtypes (a float or BF16 NaN, signalling ones included, is read as it is).
// Messages quote untrusted names and values by short excerpts (printable ASCII, cut at about 48
// bytes, nested values elided), never whole.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "core/tensor.h"

namespace mom {

constexpr uint64_t kSafetensorsMaxHeaderBytes = 100'000'000;
constexpr int kSafetensorsMaxJsonDepth = 8;

struct SafetensorsFile {
  std::map<std::string, Tensor> tensors;             // CPU, contiguous
  std::map<std::string, std::string> metadata;       // includes "format": "pt"
};

void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});
SafetensorsFile load_safetensors(const std::string& path);

// "F32", "F64", "BF16", "I32", "I64", "U8", "BOOL"
const char* safetensors_dtype_name(DType dtype);

}  // namespace mom
