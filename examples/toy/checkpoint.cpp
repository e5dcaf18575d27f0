#include "examples/toy/checkpoint.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "core/safetensors.h"

namespace mom::toy {

namespace {

constexpr const char* kOp = "checkpoint";
// The data state is a handful of positions and one toy document (a few hundred tokens).
constexpr int64_t kMaxDataStateElements = int64_t{1} << 20;

bool parse_int64(const std::string& s, int64_t& out) {
  const char* end = s.data() + s.size();
  auto [ptr, ec] = std::from_chars(s.data(), end, out);
  return !s.empty() && ec == std::errc() && ptr == end;
}

// A decimal number as %.17g writes it: the whole string, finite.
bool parse_real(const std::string& s, double& out) {
  if (s.empty() || s.size() > 64 || std::isspace(static_cast<unsigned char>(s[0]))) return false;
  char* end = nullptr;
  out = std::strtod(s.c_str(), &end);
  return end == s.c_str() + s.size() && std::isfinite(out);
}

std::map<std::string, Tensor> split_group(std::map<std::string, Tensor>& all, const std::string& prefix) {
  std::map<std::string, Tensor> out;
  for (auto it = all.begin(); it != all.end();) {
    if (it->first.rfind(prefix, 0) == 0) {
      out[it->first.substr(prefix.size())] = it->second;
      it = all.erase(it);
    } else {
      ++it;
    }
  }
  return out;
}

}  // namespace

int64_t count_non_finite(const Tensor& t) {
  if (!is_floating(t.dtype())) return 0;
  Tensor c = t.detach().to(Device::cpu()).contiguous();
  int64_t bad = 0;
  if (c.dtype() == DType::f32) {
    const float* p = c.data<float>();
    for (int64_t i = 0; i < c.numel(); ++i) bad += !std::isfinite(p[i]);
  } else {
    for (double v : c.to_vector<double>()) bad += !std::isfinite(v);
  }
  return bad;
}

void check_finite(const std::map<std::string, Tensor>& tensors, const std::string& what, const char* op,
                  const std::string& path) {
  for (const auto& [name, t] : tensors) {
    int64_t bad = count_non_finite(t);
    MOM_CHECK(bad == 0, op, path << ": " << what << " '" << name << "' holds " << bad << " non-finite value"
                                 << (bad == 1 ? "" : "s") << " of " << t.numel());
  }
}

Checkpoint read_checkpoint(const std::string& path) {
  SafetensorsFile f = load_safetensors(path);
  Checkpoint ck;
  auto meta = [&](const char* key) -> const std::string& {
    auto it = f.metadata.find(key);
    MOM_CHECK(it != f.metadata.end(), kOp, path << ": the metadata has no '" << key
                                                << "' (not a checkpoint of `mom train`?)");
    return it->second;
  };
  MOM_CHECK(parse_int64(meta("step"), ck.step) && ck.step >= 1, kOp,
            path << ": metadata 'step' must be a whole number >= 1, got '" << meta("step").substr(0, 40) << "'");
  for (auto [key, field] : {std::pair{"tokens", &ck.tokens}, {"flops", &ck.flops}, {"elapsed", &ck.elapsed}})
    MOM_CHECK(parse_real(meta(key), *field) && *field >= 0, kOp,
              path << ": metadata '" << key << "' must be a finite number >= 0, got '" << meta(key).substr(0, 40)
                   << "'");
  try {
    ck.config = TrainConfig::from_json(meta("config"));
    ck.config.validate();
  } catch (const Error& e) {
    MOM_THROW(kOp, path << ": its config: " << e.what());
  }
  MOM_CHECK(ck.step <= ck.config.steps, kOp,
            path << ": step " << ck.step << " is beyond the run's " << ck.config.steps << " steps");

  ck.model = split_group(f.tensors, "model.");
  ck.optim = split_group(f.tensors, "optim.");
  ck.data = split_group(f.tensors, "data.");
  MOM_CHECK(f.tensors.empty(), kOp, path << ": unexpected tensor '" << f.tensors.begin()->first.substr(0, 80)
                                         << "' (a checkpoint holds model.*, optim.* and data.* only)");
  MOM_CHECK(ck.model.count("embedding.weight"), kOp, path << ": no model.embedding.weight");
  MOM_CHECK(ck.optim.count("groups.0"), kOp, path << ": no optimiser state (optim.groups.0): it cannot resume training");
  MOM_CHECK(!ck.data.empty(), kOp, path << ": no data state (data.*): it cannot resume training");
  for (const auto& [name, t] : ck.model)
    MOM_CHECK(is_floating(t.dtype()), kOp, path << ": model." << name << " is " << dtype_name(t.dtype())
                                                << ", weights are floating point");
  check_finite(ck.model, "weight", kOp, path);
  check_finite(ck.optim, "optimiser state", kOp, path);
  for (const auto& [name, t] : ck.optim)
    if (name.size() > 5 && name.compare(name.size() - 5, 5, ".step") == 0 && t.dtype() == DType::i64 && t.numel() == 1) {
      int64_t s = t.to_vector<int64_t>()[0];
      MOM_CHECK(s >= 1 && s <= ck.step, kOp, path << ": optim." << name << " is " << s << ", outside [1, " << ck.step
                                                  << "] (the checkpoint's step)");
    }
  for (const auto& [name, t] : ck.data)
    MOM_CHECK(!is_floating(t.dtype()) && t.numel() <= kMaxDataStateElements, kOp,
              path << ": data." << name << " (" << dtype_name(t.dtype()) << ", " << t.numel()
                   << " elements) is not a data state: integers, at most " << kMaxDataStateElements << " of them");
  return ck;
}

void write_checkpoint(const std::string& path, const Checkpoint& ck) {
  check_finite(ck.model, "weight", kOp, path);
  check_finite(ck.optim, "optimiser state", kOp, path);
  std::map<std::string, Tensor> all;
  for (const auto& [k, v] : ck.model) all["model." + k] = v;
  for (const auto& [k, v] : ck.optim) all["optim." + k] = v;
  for (const auto& [k, v] : ck.data) all["data." + k] = v;
  auto number = [](double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    return std::string(buf);
  };
  save_safetensors(path, all,
                   {{"step", std::to_string(ck.step)}, {"config", ck.config.to_json()}, {"tokens", number(ck.tokens)},
                    {"flops", number(ck.flops)}, {"elapsed", number(ck.elapsed)}});
}

}  // namespace mom::toy
