// The tokens of a batch grouped by modality: computed once per batch from the modality ids and reused
// by every masked projection of every layer (kernels/masked_linear.h), forward and backward, and by the
// scan and the conv when they take their rows in grouped order.
//     counts[m]   number of tokens of modality m                                      (M)
//     offsets[m]  start of modality m's block in grouped order; offsets[M] = T         (M + 1)
//     perm[p]     the token at grouped position p, p in [0, T); within one modality the tokens keep
//                 their order (a stable counting sort)                                   (T) int64
//     inverse[t]  the grouped position of token t: perm's inverse                        (T) int64
// On CUDA (kernels/cuda/routing.cu) the routing is computed on the device of the ids, perm and inverse
// stay there, and counts and offsets come back to the host in one small copy (the only host wait: the
// GEMM sizes are host values). The CPU (kernels/cpu/routing.cpp) and the GPU give the same routing.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace mom::kernels {

struct Routing {
  int64_t num_modalities = 0;     // M
  std::vector<int64_t> counts;    // (M), on the host
  std::vector<int64_t> offsets;   // (M + 1), on the host
  Tensor perm;                    // (T) int64, on the device of the ids
  Tensor inverse;                 // (T) int64, likewise: inverse[perm[p]] = p
  bool perm_is_identity = false;  // the ids were already in modality order (never decrease)

  int64_t num_tokens() const { return offsets.empty() ? 0 : offsets.back(); }
  Device device() const { return perm.device(); }

  // ids (T) int32 or int64 on any device, every id in [0, M). Throws "[routing] modality id 5 at token
  // 12 is outside [0, 3)" for the first id out of range.
  static Routing from_modalities(const Tensor& ids, int64_t M);
};

// CUDA version of Routing::from_modalities, called after its checks (CUDA builds only).
namespace cuda {
Routing routing_from_modalities(const Tensor& ids, int64_t M);
}  // namespace cuda

}  // namespace mom::kernels
