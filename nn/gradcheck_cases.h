// Module-level gradient checks (a tiny MambaBlock in f64, dense and Mixture-of-Mamba), registered
// with the gradcheck registry by `mom gradcheck` and run by the test suite.
#pragma once

#include <vector>

#include "autograd/gradcheck.h"

namespace mom::nn {

std::vector<autograd::GradcheckCase> module_gradcheck_cases();

}  // namespace mom::nn
