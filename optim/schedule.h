// Learning-rate schedule: linear warmup from 0 to lr over `warmup` steps, then cosine decay to
// min_lr_ratio * lr at step `total`, constant after. Steps count from 1: lr_at(1) = lr / warmup.
#pragma once

#include <cstdint>

namespace mom::optim {

struct WarmupCosine {
  double lr = 1e-3;
  int64_t warmup = 0;
  int64_t total = 1;
  double min_lr_ratio = 0.1;

  double lr_at(int64_t step) const;
};

}  // namespace mom::optim
