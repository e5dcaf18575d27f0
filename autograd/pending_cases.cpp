// TEMPORARY during the parallel build-out: each family moves its function next to its code and
// deletes its line here.
#include "autograd/gradcheck.h"
namespace mom::autograd {
void add_causal_conv1d_gradcheck_cases(std::vector<GradcheckCase>&) {}
void add_masked_linear_gradcheck_cases(std::vector<GradcheckCase>&) {}
}  // namespace mom::autograd
