// Whether operations record the autograd graph (thread-local, on by default).
// autograd/grad_mode.h adds the NoGradGuard that users reach for.
#pragma once

namespace mom {

struct GradMode {
  static bool is_enabled();
  static void set_enabled(bool enabled);
};

}  // namespace mom
