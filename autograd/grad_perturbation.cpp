#include "autograd/grad_perturbation.h"

#include <mutex>

#include "autograd/function_util.h"
#include "core/error.h"
#include "kernels/elementwise.h"

namespace mom::autograd {

namespace detail {
std::atomic<bool> grad_perturbation_set{false};
}  // namespace detail

namespace {

struct Perturbation {
  std::string op, input;
  double factor = 0;
};

std::mutex& perturbation_mutex() {
  static std::mutex m;
  return m;
}

Perturbation& perturbation() {
  static Perturbation p;
  return p;
}

}  // namespace

void set_grad_perturbation(const std::string& op, const std::string& input, double factor) {
  MOM_CHECK(!op.empty() && !input.empty(), "grad_perturbation", "needs an op and an input name");
  std::lock_guard<std::mutex> lock(perturbation_mutex());
  perturbation() = {op, input, factor};
  detail::grad_perturbation_set.store(true, std::memory_order_relaxed);
}

void clear_grad_perturbation() {
  std::lock_guard<std::mutex> lock(perturbation_mutex());
  detail::grad_perturbation_set.store(false, std::memory_order_relaxed);
  perturbation() = {};
}

namespace detail {

void apply_grad_perturbation(const char* op, const char* const* names, std::vector<Tensor>& grads) {
  Perturbation p;
  {
    std::lock_guard<std::mutex> lock(perturbation_mutex());
    p = perturbation();
  }
  if (p.op != op) return;
  for (size_t i = 0; i < grads.size(); ++i)
    if (grads[i].defined() && p.input == names[i]) grads[i] = kernels::scale(kernel_input(grads[i]), 1.0 + p.factor);
}

}  // namespace detail

}  // namespace mom::autograd
