// Test-only: a deliberate relative error in one gradient that one op's backward returns, so that tests
// can prove that the gradient checks catch small errors (tests/cpu/test_gradcheck_strict.cpp). Nothing
// outside tests sets it.
//
//   autograd::ScopedGradPerturbation p("selective_scan", "A", 1e-3);  // dA * (1 + 1e-3) while p lives
//
// The backwards of selective_scan, causal_conv1d and masked_linear pass the gradients they return
// through perturb_grads, each under its input's name as the op's header names it (selective_scan: u,
// delta, A, B_ssm, C_ssm, D, z, delta_bias, initial_state; causal_conv1d: x, weight, bias,
// initial_window; masked_linear: x, weight, bias, the latter two for every expert). When nothing is set
// that costs one relaxed atomic load per backward call. One perturbation at a time, process-wide: set
// it only while no backward runs on another thread.
#pragma once

#include <atomic>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace mom::autograd {

namespace detail {
extern std::atomic<bool> grad_perturbation_set;
void apply_grad_perturbation(const char* op, const char* const* names, std::vector<Tensor>& grads);
}  // namespace detail

// From now on, op's backward returns (1 + factor) times the gradient it computes for `input`.
// Replaces any perturbation set before.
void set_grad_perturbation(const std::string& op, const std::string& input, double factor);
void clear_grad_perturbation();

// Sets a perturbation for its lifetime.
class ScopedGradPerturbation {
 public:
  ScopedGradPerturbation(const std::string& op, const std::string& input, double factor) {
    set_grad_perturbation(op, input, factor);
  }
  ~ScopedGradPerturbation() { clear_grad_perturbation(); }
  ScopedGradPerturbation(const ScopedGradPerturbation&) = delete;
  ScopedGradPerturbation& operator=(const ScopedGradPerturbation&) = delete;
};

// Whether a perturbation is set: a backward that must build its list of names checks this first.
inline bool grad_perturbation_active() { return detail::grad_perturbation_set.load(std::memory_order_relaxed); }

// Called by a backward on the gradients it returns: grads[i] belongs to the input names[i] (names has
// grads.size() entries). Undefined gradients stay undefined.
inline void perturb_grads(const char* op, const char* const* names, std::vector<Tensor>& grads) {
  if (grad_perturbation_active()) detail::apply_grad_perturbation(op, names, grads);
}

}  // namespace mom::autograd
