// Routing::from_modalities (kernels/routing.h): the argument checks, then a stable counting sort on
// the CPU, or the CUDA version for ids on a GPU.
#include "kernels/routing.h"

#include <algorithm>
#include <vector>

#include "core/error.h"
#include "kernels/elementwise.h"

namespace mom::kernels {

Routing Routing::from_modalities(const Tensor& ids, int64_t M) {
  const char* op = "routing";
  check_defined(ids, op, "ids");
  check_contiguous(ids, op, "ids");
  MOM_CHECK(ids.dim() == 1, op, "ids must be (T), got shape " << shape_str(ids.shape()));
  MOM_CHECK(M >= 1, op, "the number of modalities M must be at least 1, got " << M);
#ifdef MOM_WITH_CUDA
  if (ids.device().is_cuda()) return cuda::routing_from_modalities(ids, M);
#endif
  check_cpu(ids, op, "ids");
  const int64_t T = ids.size(0);
  Routing r;
  r.num_modalities = M;
  r.counts.assign(M, 0);
  r.offsets.assign(M + 1, 0);
  r.perm = empty({T}, DType::i64);
  r.inverse = empty({T}, DType::i64);
  dispatch_index(ids.dtype(), op, [&](auto tag) {
    using index_t = MOM_TYPE(tag);
    const index_t* id = ids.data<index_t>();
    for (int64_t t = 0; t < T; ++t) {
      MOM_CHECK(id[t] >= 0 && id[t] < M, op,
                "modality id " << id[t] << " at token " << t << " is outside [0, " << M << ")");
      r.counts[id[t]] += 1;
    }
    for (int64_t m = 0; m < M; ++m) r.offsets[m + 1] = r.offsets[m] + r.counts[m];
    std::vector<int64_t> cursor(r.offsets.begin(), r.offsets.end() - 1);
    int64_t* perm = r.perm.data<int64_t>();
    for (int64_t t = 0; t < T; ++t) perm[cursor[id[t]]++] = t;
    int64_t* inverse = r.inverse.data<int64_t>();
    for (int64_t p = 0; p < T; ++p) inverse[perm[p]] = p;
    r.perm_is_identity = std::is_sorted(id, id + T);
  });
  return r;
}

}  // namespace mom::kernels
