#include "nn/decoder.h"

#include "autograd/grad_mode.h"
#include "kernels/decode.h"
#ifdef MOM_WITH_CUDA
#include "core/cuda/graph.h"
#endif

namespace mom::nn {

struct Decoder::Layer {
  Tensor norm_weight;
  double eps = 1e-5;
  Tensor in_w, in_b, x_w, x_b, dt_w, dt_b, out_w, out_b;  // stacks (M, Out, In) and biases (M, Out)
  bool in_split = false, x_split = false, dt_split = false, out_split = false;
  Tensor conv_w, conv_b, A_log, D;
  Tensor window, ssm;  // the state, (B, W-1, E) and (B, E, N)
};

struct Decoder::GraphHolder {
#ifdef MOM_WITH_CUDA
  cuda::Graph graph;
#endif
};

namespace {

constexpr const char* kName = "Decoder";

struct Stack {
  Tensor w, b;
};

// A projection's experts as one stack (M, Out, In) of weight_dtype and their biases (M, Out) of the
// parameters' dtype: the parameter itself (a view) when shared and of that dtype, else a copy.
Stack stack(const Projection& p, DType weight_dtype) {
  const std::vector<std::shared_ptr<Linear>> experts = p.linears();
  const Tensor& w0 = experts[0]->weight;
  const int64_t M = static_cast<int64_t>(experts.size()), Out = w0.size(0), In = w0.size(1);
  Stack s;
  if (M == 1 && w0.dtype() == weight_dtype) {
    s.w = w0.detach().contiguous().reshape({1, Out, In});
  } else {
    s.w = empty({M, Out, In}, weight_dtype, w0.device());
    for (int64_t m = 0; m < M; ++m) s.w.narrow(0, m, 1).copy_(experts[m]->weight.detach().reshape({1, Out, In}));
  }
  if (experts[0]->bias.defined()) {
    s.b = empty({M, Out}, w0.dtype(), w0.device());
    for (int64_t m = 0; m < M; ++m) s.b.narrow(0, m, 1).copy_(experts[m]->bias.detach().reshape({1, Out}));
  }
  return s;
}

// ids (B) of any integer dtype, anywhere -> int32 on `device`; checked against [0, limit) on the CPU.
Tensor ids_on(const Tensor& ids, int64_t B, int64_t limit, Device device, const char* what) {
  MOM_CHECK(ids.defined() && ids.dim() == 1 && ids.size(0) == B, kName,
            what << " must be (" << B << "), got " << (ids.defined() ? shape_str(ids.shape()) : "none"));
  MOM_CHECK(ids.dtype() == DType::i32 || ids.dtype() == DType::i64, kName,
            what << " must be int32 or int64, got " << dtype_name(ids.dtype()));
  if (ids.device().is_cpu()) {
    for (int64_t v : ids.to_vector<int64_t>())
      MOM_CHECK(v >= 0 && v < limit, kName, what << " " << v << " is out of range [0, " << limit << ")");
  }
  return ids.to(DType::i32).to(device);
}

}  // namespace

Decoder::Decoder(const MambaLM& model, int64_t batch)
    : Decoder(model, batch, model.compute_dtype() == DType::bf16 ? DType::bf16 : model.embedding->weight.dtype()) {}

Decoder::Decoder(const MambaLM& model, int64_t batch, DType weight_dtype)
    : model_(model), batch_(batch), dtype_(model.embedding->weight.dtype()), weight_dtype_(weight_dtype),
      generic_(model.config().mixer.learned_routing), graph_(std::make_unique<GraphHolder>()) {
  MOM_CHECK(batch >= 1, kName, "batch must be >= 1, got " << batch);
  MOM_CHECK(dtype_ == DType::f32 || dtype_ == DType::f64, kName,
            "decodes models with float32 or float64 parameters, got " << dtype_name(dtype_));
  MOM_CHECK(weight_dtype == dtype_ || (weight_dtype == DType::bf16 && dtype_ == DType::f32), kName,
            "weights must be of the parameters' dtype, or bfloat16 beside float32; got "
                << dtype_name(weight_dtype) << " for " << dtype_name(dtype_) << " parameters");
  NoGradGuard no_grad;
  const LMConfig& c = model.config();
  const MambaConfig& mc = c.mixer;
  const int64_t B = batch, D = mc.d_model, E = mc.d_inner(), N = mc.d_state, R = mc.rank(), W = mc.d_conv;
  const Device dev = model.embedding->weight.device();
  for (const auto& block : model.layers) {
    const MambaBlock& mixer = *block->mixer;
    Layer l;
    if (!generic_) {
      l.norm_weight = block->norm->weight.detach();
      l.eps = block->norm->eps;
      Stack s = stack(mixer.in_proj, weight_dtype);
      l.in_w = s.w, l.in_b = s.b, l.in_split = mixer.in_proj.split != nullptr;
      s = stack(mixer.x_proj, weight_dtype);
      l.x_w = s.w, l.x_b = s.b, l.x_split = mixer.x_proj.split != nullptr;
      s = stack(mixer.dt_proj, dtype_);  // dt_proj runs inside decode_ssm_step, in the parameters' dtype
      l.dt_w = s.w, l.dt_b = s.b, l.dt_split = mixer.dt_proj.split != nullptr;
      s = stack(mixer.out_proj, weight_dtype);
      l.out_w = s.w, l.out_b = s.b, l.out_split = mixer.out_proj.split != nullptr;
      l.conv_w = mixer.conv1d->weight.detach().contiguous().reshape({E, W});
      if (mixer.conv1d->bias.defined()) l.conv_b = mixer.conv1d->bias.detach();
      l.A_log = mixer.A_log.detach();
      l.D = mixer.D.detach();
    }
    l.window = zeros({B, W - 1, E}, dtype_, dev);
    l.ssm = zeros({B, E, N}, dtype_, dev);
    layers_.push_back(std::move(l));
  }
  embedding_ = model.embedding->weight.detach();
  const Tensor& head = model.lm_head ? model.lm_head->weight : model.embedding->weight;
  if (!generic_) head_ = head.detach().to(weight_dtype).contiguous().reshape({1, c.vocab_size, D});
  norm_f_ = model.norm_f->weight.detach();
  token_ = zeros({B}, DType::i32, dev);
  modality_ = zeros({B}, DType::i32, dev);
  start_ = zeros({B}, DType::boolean, dev);
  resid_ = zeros({B, D}, dtype_, dev);
  xz_ = zeros({B, 2 * E}, dtype_, dev);
  u_ = zeros({B, E}, dtype_, dev);
  dbc_ = zeros({B, R + 2 * N}, dtype_, dev);
  y_ = zeros({B, E}, dtype_, dev);
  logits_ = zeros({B, c.vocab_size}, dtype_, dev);
}

Decoder::~Decoder() = default;

void Decoder::run_generic() {
  // The window in the dtype MambaLM::step carries it in (the compute dtype), the state as it is.
  const DType window_dtype = model_.compute_dtype() == DType::bf16 ? DType::bf16 : dtype_;
  LMState s;
  for (const Layer& l : layers_) s.push_back({l.window.to(window_dtype), l.ssm});
  logits_.copy_(model_.step(token_, modality_, s, start_set_ ? start_ : Tensor()));
  for (size_t i = 0; i < layers_.size(); ++i) {
    layers_[i].window.copy_(s[i].conv_window);
    layers_[i].ssm.copy_(s[i].ssm);
  }
}

void Decoder::run() {
  using kernels::DecodeInput;
  const Tensor none;
  kernels::decode_embed(token_, embedding_, resid_);
  for (Layer& l : layers_) {
    DecodeInput norm;
    norm.kind = DecodeInput::Kind::norm;
    norm.norm_weight = l.norm_weight;
    norm.eps = l.eps;
    kernels::DecodeConv conv;
    conv.window = l.window;
    conv.conv_weight = l.conv_w;
    conv.conv_bias = l.conv_b;
    conv.start = start_;
    conv.u = u_;
    kernels::decode_linear(resid_, l.in_w, l.in_b, l.in_split ? modality_ : none, norm, xz_, false, &workspace_,
                           &conv);
    kernels::decode_linear(u_, l.x_w, l.x_b, l.x_split ? modality_ : none, DecodeInput{}, dbc_, false, &workspace_);
    kernels::DecodeSsm s;
    s.xz = xz_;
    s.u = u_;
    s.dbc = dbc_;
    s.state = l.ssm;
    s.dt_weight = l.dt_w;
    s.dt_bias = l.dt_b;
    s.dt_expert = l.dt_split ? modality_ : none;
    s.A_log = l.A_log;
    s.D = l.D;
    s.start = start_;
    s.y = y_;
    kernels::decode_ssm_step(s);
    kernels::decode_linear(y_, l.out_w, l.out_b, l.out_split ? modality_ : none, DecodeInput{}, resid_, true,
                           &workspace_);
  }
  DecodeInput norm;
  norm.kind = DecodeInput::Kind::norm;
  norm.norm_weight = norm_f_;
  norm.eps = model_.norm_f->eps;
  kernels::decode_linear(resid_, head_, none, none, norm, logits_, false, &workspace_);
}

const Tensor& Decoder::step(const Tensor& token, const Tensor& modality, const Tensor& doc_start) {
  const Device dev = token_.device();
  const int64_t B = batch_;
  token_.copy_(ids_on(token, B, model_.config().vocab_size, dev, "token"));
  modality_.copy_(ids_on(modality, B, model_.config().mixer.n_modalities, dev, "modality"));
  if (doc_start.defined()) {
    MOM_CHECK(doc_start.dim() == 1 && doc_start.size(0) == B && doc_start.dtype() == DType::boolean, kName,
              "doc_start must be bool (" << B << "), got " << dtype_name(doc_start.dtype()) << " "
                                         << shape_str(doc_start.shape()));
    start_.copy_(doc_start.to(dev));
    start_set_ = true;
  } else if (start_set_) {
    start_.fill_(0);
    start_set_ = false;
  }
  NoGradGuard no_grad;
  if (generic_) {
    run_generic();
    return logits_;
  }
#ifdef MOM_WITH_CUDA
  if (dev.is_cuda()) {
    if (!graph_->graph.empty()) {
      graph_->graph.replay();
    } else {
      run();  // the first step runs the kernels directly (their one-time set-up happens here), then records them
      graph_->graph.capture(dev.index, [&] { run(); });
    }
    return logits_;
  }
#endif
  run();
  return logits_;
}

Tensor Decoder::prefill(const Tensor& tokens, const Tensor& modalities, const Tensor& doc_start) {
  MOM_CHECK(tokens.dim() == 2 && (tokens.size(0) == 1 || tokens.size(0) == batch_), kName,
            "a prompt must be (1, L) or (" << batch_ << ", L), got " << shape_str(tokens.shape()));
  NoGradGuard no_grad;
  const Device dev = token_.device();
  LMState s = model_.allocate_state(tokens.size(0));
  const Tensor logits = model_.prefill(tokens.to(dev), modalities.to(dev), s,
                                       doc_start.defined() ? doc_start.to(dev) : Tensor());
  set_state(s);
  const int64_t L = logits.size(1);
  return logits.narrow(1, L - 1, 1).contiguous().reshape({tokens.size(0), model_.config().vocab_size}).to(dtype_);
}

LMState Decoder::state() const {
  LMState s;
  for (const Layer& l : layers_) s.push_back({l.window.clone(), l.ssm.clone()});
  return s;
}

void Decoder::set_state(const LMState& s) {
  MOM_CHECK(s.size() == layers_.size(), kName, "state has " << s.size() << " layers, the model " << layers_.size());
  for (size_t i = 0; i < s.size(); ++i) {
    Layer& l = layers_[i];
    auto load = [&](Tensor& to, const Tensor& from, const char* what) {
      Shape want(to.shape());
      if (from.defined() && from.dim() == to.dim() && from.size(0) == 1) want[0] = 1;
      MOM_CHECK(from.defined() && from.shape() == want, kName,
                "layer " << i << "'s " << what << " must be " << shape_str(to.shape()) << ", or one row of it; got "
                         << (from.defined() ? shape_str(from.shape()) : "none"));
      to.copy_(from.to(to.device()).to(to.dtype()).expand(to.shape()));
    };
    load(l.window, s[i].conv_window, "conv window");
    load(l.ssm, s[i].ssm, "SSM state");
  }
}

void Decoder::reset() {
  for (Layer& l : layers_) {
    l.window.fill_(0);
    l.ssm.fill_(0);
  }
}

}  // namespace mom::nn
