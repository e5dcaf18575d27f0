// Packed documents for the benchmarks that time the document-start (doc_start) paths of the scan and
// the conv: documents of random lengths in [64, 512], packed end to end into every row.
#pragma once

#include <cstdint>
#include <vector>

#include "core/random.h"
#include "core/tensor.h"

namespace mom::bench {

// (B, L) bool: a document starts at t = 0 of each row and then every 64-512 tokens; the last one is cut at L.
inline Tensor packed_documents(int64_t B, int64_t L, Generator& gen) {
  std::vector<uint8_t> flags(B * L, 0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < L; t += 64 + static_cast<int64_t>(gen.randint(512 - 64 + 1))) flags[b * L + t] = 1;
  return from_vector<uint8_t>(flags, {B, L}).to(DType::boolean);
}

inline int64_t count_documents(const Tensor& doc_start) {
  int64_t n = 0;
  for (uint8_t f : doc_start.to(Device::cpu()).to(DType::u8).to_vector<uint8_t>()) n += f;
  return n;
}

// The multiple the documents cost over plain rows may reach.
constexpr double kDocumentsTarget = 1.05;

}  // namespace mom::bench
