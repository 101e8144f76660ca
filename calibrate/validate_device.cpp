// calibrate/validate_device: a device backend's logits against the CPU backend's (see validate_device.hpp).
#include "calibrate/validate_device.hpp"

#include <algorithm>
#include <cmath>
#include <optional>

#include "common/error.hpp"
#include "common/splitmix.hpp"
#include "common/text.hpp"
#include "executor/forward.hpp"

namespace moeplan::calibrate {

namespace {

using Prompts = std::vector<std::vector<std::int32_t>>;

// The narrowest dtype among the model's matmul weights (FP8 < BF16/F16 < F32), which bounds the device's rounding.
kernels::WeightDtype narrowest_dtype(const executor::Model& m) {
  kernels::WeightDtype narrowest = kernels::WeightDtype::f32;
  auto see = [&](const executor::Model::Matrix& w) {
    if (w.data.empty()) return;
    if (kernels::weight_dtype_bytes(w.dtype) < kernels::weight_dtype_bytes(narrowest)) narrowest = w.dtype;
  };
  see(m.lm_head);
  for (const auto& L : m.layers) {
    for (const auto* w : {&L.q, &L.k, &L.v, &L.o, &L.router, &L.shared_gate, &L.shared_up, &L.shared_down, &L.dense_gate,
                          &L.dense_up, &L.dense_down})
      see(*w);
    for (const auto* list : {&L.expert_gate, &L.expert_up, &L.expert_down})
      for (const auto& w : *list) see(w);
  }
  return narrowest;
}

// Logits of the prompts' every position, then of `steps` decode steps fed `forced` (or the greedy tokens of this
// session when `forced` is empty, which are returned in `chosen`): rows in order, [rows, vocab]. `paged_kv`: the
// session's paged cache plan, or none (a contiguous cache). The prompts have equal lengths.
std::vector<float> run_session(const std::shared_ptr<const executor::Model>& model,
                               const std::shared_ptr<executor::Backend>& backend, const Prompts& prompts,
                               std::int64_t steps, const std::vector<std::vector<std::int32_t>>& forced,
                               std::vector<std::vector<std::int32_t>>* chosen,
                               const std::optional<executor::PagedKvPlan>& paged_kv) {
  const std::int64_t V = model->config().vocab, sequences = static_cast<std::int64_t>(prompts.size());
  const std::int64_t len = static_cast<std::int64_t>(prompts.front().size());
  executor::Session s(model, backend, sequences, nullptr, nullptr, paged_kv);
  std::vector<float> all = s.prefill(prompts, true);
  // The last position of each sequence.
  std::vector<float> last(static_cast<std::size_t>(static_cast<std::int64_t>(prompts.size()) * V));
  for (std::size_t b = 0; b < prompts.size(); ++b)
    std::copy_n(all.begin() + ((static_cast<std::int64_t>(b) + 1) * len - 1) * V, V, last.begin() + static_cast<std::int64_t>(b) * V);
  for (std::int64_t i = 0; i < steps; ++i) {
    std::vector<std::int32_t> next(prompts.size());
    if (!forced.empty()) next = forced[static_cast<std::size_t>(i)];
    else
      for (std::size_t b = 0; b < prompts.size(); ++b) {
        const auto row = last.begin() + static_cast<std::int64_t>(b) * V;
        next[b] = static_cast<std::int32_t>(std::max_element(row, row + V) - row);
      }
    if (chosen) chosen->push_back(next);
    last = s.decode(next);
    all.insert(all.end(), last.begin(), last.end());
  }
  return all;
}

// max |a - b| over equal-length arrays; infinity when a value is NaN (a NaN must fail any tolerance).
double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double diff = std::fabs(static_cast<double>(a[i]) - b[i]);
    worst = std::isnan(diff) ? INFINITY : std::max(worst, diff);
  }
  return worst;
}

}  // namespace

LogitTolerance device_logit_tolerance(kernels::WeightDtype dtype) {
  switch (dtype) {
    case kernels::WeightDtype::fp8_e4m3: return {5e-3, 5e-3};
    case kernels::WeightDtype::bf16:
    case kernels::WeightDtype::f16: return {1e-3, 1e-3};
    case kernels::WeightDtype::f32:
    case kernels::WeightDtype::int8: return {1e-4, 1e-4};
  }
  return {};
}

std::vector<DeviceCheck> validate_device(const DeviceValidateRequest& q) {
  std::vector<std::filesystem::path> dirs;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(q.fixtures_dir, ec))
    if (std::filesystem::exists(entry.path() / "config.json") && std::filesystem::exists(entry.path() / "model.safetensors"))
      dirs.push_back(entry.path());
  if (ec || dirs.empty())
    throw InputError("--fixtures " + printable(q.fixtures_dir.string()) +
                     ": no fixture directories (config.json + model.safetensors) there; give tests/fixtures/oracle of the "
                     "source tree");
  std::sort(dirs.begin(), dirs.end());
  std::vector<DeviceCheck> checks;
  for (const auto& dir : dirs) {
    if (q.progress) q.progress(dir.filename().string());
    const auto model = executor::Model::load(dir);
    const std::int64_t V = model->config().vocab;
    std::uint64_t state = q.seed;
    Prompts prompts(2);
    for (auto& p : prompts)
      for (std::int64_t i = 0; i < q.prompt_tokens; ++i)
        p.push_back(static_cast<std::int32_t>(splitmix64(state) % static_cast<std::uint64_t>(V)));
    // On a GPU the device session pages its cache in BF16 (executor::device_kv_plan); the reference pages its cache
    // under the same plan, so both round K and V to BF16 alike. The fp32 CPU backend keeps its contiguous fp32 cache.
    const std::shared_ptr<executor::Backend> device = q.make_device();
    const std::optional<executor::PagedKvPlan> plan =
        executor::device_kv_plan(*device, *model, 2, q.prompt_tokens + q.decode_steps, q.prompt_tokens);
    std::vector<std::vector<std::int32_t>> greedy;
    const std::vector<float> ref = run_session(model, q.make_reference(), prompts, q.decode_steps, {}, &greedy, plan);
    const std::vector<float> dev = run_session(model, device, prompts, q.decode_steps, greedy, nullptr, plan);
    std::vector<float> fp32;
    if (q.make_fp32) fp32 = run_session(model, q.make_fp32(), prompts, q.decode_steps, greedy, nullptr, std::nullopt);
    DeviceCheck c;
    c.fixture = dir.filename().string();
    c.dtype = narrowest_dtype(*model);
    c.rows = static_cast<std::int64_t>(ref.size()) / V;
    c.max_abs_diff = max_abs_diff(dev, ref);
    if (!fp32.empty()) c.max_abs_diff_fp32 = max_abs_diff(dev, fp32);
    for (const float v : ref) c.max_abs_logit = std::max(c.max_abs_logit, std::fabs(static_cast<double>(v)));
    for (std::int64_t r = 0; r < c.rows; ++r) {
      const auto a = ref.begin() + r * V, b = dev.begin() + r * V;
      if (std::max_element(a, a + V) - a != std::max_element(b, b + V) - b) ++c.argmax_mismatches;
    }
    const LogitTolerance tol = device_logit_tolerance(c.dtype);
    c.allowed = tol.abs + tol.rel * c.max_abs_logit;
    checks.push_back(c);
  }
  return checks;
}

}  // namespace moeplan::calibrate
