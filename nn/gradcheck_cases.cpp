#include "nn/gradcheck_cases.h"

#include "nn/mamba.h"

namespace mom::nn {

namespace {

// learned: the block routes by its own router (the modalities only size the given routing, which it
// ignores) and the case checks the load-balancing loss beside the output.
autograd::GradcheckCase block_case(const std::string& variant, bool split, std::vector<int32_t> modalities,
                                   bool learned = false) {
  return {"mamba_block", variant, [split, modalities, learned](Generator& gen) {
            MambaConfig c;
            c.d_model = 4;
            c.d_state = 3;
            c.d_conv = 3;
            c.expand = 2;
            c.n_modalities = 3;
            // dt of order one rather than the published 1e-3..0.1. With tiny steps the output hardly
            // depends on A_log, and dt's softplus sits in its flat tail, so the gradients of A_log and
            // dt_proj come near the round-off of the finite differences: a 0.1% error in them exceeds
            // the tolerance only 3 to 16 times over there, 100 times or more here.
            c.dt_min = 0.2;
            c.dt_max = 1.0;
            c.split_in_proj = c.split_x_proj = c.split_dt_proj = c.split_out_proj = split;
            c.learned_routing = learned;
            c.load_balance = 0.5;  // large enough that the load-balancing term's gradient is well above round-off
            auto block = std::make_shared<MambaBlock>(c, gen, DType::f64);
            const int64_t B = 2, L = static_cast<int64_t>(modalities.size()) / 2;
            Tensor ids = from_vector<int32_t>(modalities, {B * L});
            autograd::GradcheckProblem p;
            p.inputs = {randn({B, L, c.d_model}, gen, DType::f64)};
            p.names = {"x"};
            for (auto& [name, t] : block->named_parameters()) {
              p.inputs.push_back(t);
              p.names.push_back(name);
            }
            // The routing follows x to its device, so that `mom gradcheck --device cuda` runs the
            // block there with device ids.
            const int64_t M = c.n_modalities;
            auto routing = std::make_shared<Routing>(Routing::from_modalities(ids, M));
            p.fn = [block, ids, routing, M, learned](const std::vector<Tensor>& in) {
              const Routing r =
                  in[0].device().is_cpu() ? *routing : Routing::from_modalities(ids.to(in[0].device()), M);
              Tensor aux;
              std::vector<Tensor> out{block->forward(in[0], r, nullptr, Tensor(), learned ? &aux : nullptr)};
              if (learned) out.push_back(aux);
              return out;
            };
            return p;
          }};
}

}  // namespace

std::vector<autograd::GradcheckCase> module_gradcheck_cases() {
  return {block_case("dense, B=2 L=5 D=4 E=8 N=3 W=3", false, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0}),
          block_case("MoM M=3, modality 2 absent", true, {0, 1, 1, 0, 0, 1, 0, 0, 1, 1}),
          block_case("MoM M=3, all modalities", true, {0, 1, 2, 2, 0, 1, 2, 0, 1, 1}),
          block_case("learned routing M=3 (output and load-balancing loss)", true, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
                     true)};
}

}  // namespace mom::nn
