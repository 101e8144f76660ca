#include "simulator/host_view.hpp"

#include <algorithm>
#include <memory>
#include <stdexcept>

#include "common/error.hpp"
#include "common/text.hpp"
#include "simulator/engine.hpp"
#include "simulator/profile.hpp"

namespace moeplan::simulator {

namespace {

constexpr double kBytesPerGb = 1e9;  // sizes in GB as hosts.yaml writes memory_gb (a 64 GB kit holds 64 GiB: margin)

// What the row's simulation and memory request share: one copy of the model, a closed loop of `concurrency`
// requests of (context - output) prompt tokens and `output` generated tokens, with llama.cpp's defaults.
SimulateRequest row_request(const HostViewRequest& r, const model::Precision& p, const Hardware& hw) {
  SimulateRequest q;
  q.model = r.model;
  q.precision = p;
  q.layout = {1, 1, 1, 1};
  q.kv_mode = r.kv_mode;
  q.hardware = hw;
  q.gpu_memory_utilization = r.gpu_memory_utilization;
  q.workload.mode = LoadMode::closed;
  q.workload.concurrency = r.concurrency;
  q.workload.num_requests = r.concurrency;
  q.workload.input_tokens = r.context_tokens - r.output_tokens;
  q.workload.output_tokens = r.output_tokens;
  q.limits.max_batch = r.concurrency;  // every sequence resident at once, as the memory request counts them
  EngineChoices given;
  given.max_batch = true;
  given.kv_dtype = r.kv_dtype.has_value();
  given.kv_mode = true;  // the view's own --kv-mode decides
  if (r.kv_dtype) q.kv_dtype = *r.kv_dtype;
  apply_engine(q, *r.engine, given);
  return q;
}

// Decode and prompt tokens/s from simulate; a configuration simulate refuses keeps its reason instead.
void simulate_speeds(const SimulateRequest& q, HostRow& row) {
  try {
    const SimulateResult s = simulate(q);
    row.decode_tokens_per_s = s.serving.decode_tokens_per_s_per_user;
    row.prompt_tokens = q.workload.input_tokens;
    if (s.serving.ttft_ms.mean > 0) row.prompt_tokens_per_s = static_cast<double>(q.workload.input_tokens) / (s.serving.ttft_ms.mean / 1e3);
  } catch (const InputError& e) {
    row.why_not = e.what();
  }
}

HostRow ram_row(const HostViewRequest& r, const HostTarget& t, const model::Precision& p) {
  const SimulateRequest q = row_request(r, p, t.hardware);
  const MemoryBreakdown mem = memory_breakdown(memory_request(q, r.context_tokens, r.concurrency));
  HostRow row;
  row.device = t.host.name;
  row.kind = t.host.kind;
  row.precision = p.spec;
  row.kv_dtype = model::kv_dtype_name(q.kv_dtype);
  row.ram_capacity_bytes = mem.capacity_bytes;
  row.ram_needed_bytes = mem.total_bytes;
  row.ram_free_bytes = std::max(0.0, mem.free_bytes);
  row.weights_bytes = mem.weights.total;
  row.kv_bytes = mem.kv_bytes;
  row.recommended = recommended_ram_size(mem.total_bytes, r.ram_sizes);
  row.fits = mem.fits;
  if (!row.fits) row.why_not = "needs " + format_gb(mem.total_bytes) + " of " + format_gb(mem.capacity_bytes) + " RAM";
  else simulate_speeds(q, row);
  return row;
}

// One GPU with the routed experts in the offload host's RAM: GPU and host memory apart, as simulate splits them.
HostRow offload_row(const HostViewRequest& r, const Hardware& gpu, const model::Precision& p) {
  const HostTarget& host = *r.offload_host;
  SimulateRequest q = row_request(r, p, gpu);
  q.offload.experts_on_host = true;
  q.offload_host = host.hardware;
  const MemoryBreakdown mem = memory_breakdown(memory_request(q, r.context_tokens, r.concurrency));
  const double moved = offloaded_bytes(*r.model, p, q.offload);
  DeviceMemory g;
  g.device = gpu.name;
  g.capacity_bytes = mem.capacity_bytes;
  g.usable_bytes = mem.usable_bytes;
  g.weights_bytes = mem.weights.total - moved;
  g.kv_bytes = mem.kv_bytes;  // attention and its KV stay on the GPU when only experts move
  g.activation_bytes = mem.activation_bytes;
  g.overhead_bytes = mem.overhead_bytes;
  const double g_used = g.weights_bytes + g.kv_bytes + g.activation_bytes + g.overhead_bytes;
  g.fits = g_used <= g.usable_bytes;
  g.free_bytes = std::max(0.0, g.usable_bytes - g_used);
  DeviceMemory h;
  h.device = host.host.name;
  h.capacity_bytes = host.host.memory_bytes;
  h.usable_bytes = host.host.memory_bytes * kHostUsableShare;
  h.weights_bytes = moved;
  h.fits = moved <= h.usable_bytes;
  h.free_bytes = std::max(0.0, h.usable_bytes - moved);

  HostRow row;
  row.device = gpu.name + " + " + host.host.name;
  row.kind = "offload";
  row.offload = true;
  row.precision = p.spec;
  row.kv_dtype = model::kv_dtype_name(q.kv_dtype);
  row.ram_capacity_bytes = h.capacity_bytes;
  row.ram_needed_bytes = moved;
  row.ram_free_bytes = h.free_bytes;
  row.weights_bytes = moved;
  row.recommended = recommended_ram_size(moved, r.ram_sizes);
  row.fits = g.fits && h.fits;
  if (!g.fits) row.why_not = "GPU needs " + format_gb(g_used) + " of " + format_gb(g.usable_bytes) + " usable";
  else if (!h.fits) row.why_not = "experts need " + format_gb(moved) + " of " + format_gb(h.usable_bytes) + " usable RAM";
  row.gpu_memory = g;
  row.host_memory = h;
  if (row.fits) simulate_speeds(q, row);
  return row;
}

}  // namespace

std::optional<RamSize> recommended_ram_size(double needed_bytes, const std::vector<RamSize>& sizes) {
  if (!(needed_bytes >= 0)) return std::nullopt;
  for (const auto& s : sizes)
    if (needed_bytes <= s.gb * kBytesPerGb * kHostUsableShare) return s;
  return std::nullopt;
}

HostTarget host_target(const gpu_db::Database& db, const std::filesystem::path& data_dir, const gpu_db::HostSpec& host,
                       const HostFlags& flags) {
  HostTarget t;
  t.host = host;
  if (!host.profile.empty()) {
    const auto profile = std::make_shared<const HostProfile>(read_profile(data_dir / host.profile));
    t.hardware = profile_hardware(profile);
    t.notes.push_back(host.name + ": priced from its measured profile " + host.profile + " (" + profile->date + ")");
  } else {
    t.hardware = llamacpp_host(db, host, flags, false, &t.notes);
  }
  return t;
}

HostView host_view(const HostViewRequest& r) {
  if (!r.model || !r.engine) throw std::logic_error("host_view: no model or engine");
  const model::ModelConfig& m = *r.model;
  if (r.context_tokens < 1 || r.concurrency < 1 || r.output_tokens < 1)
    throw InputError("--context, --concurrency and --output must be positive");
  if (m.max_context_tokens > 0 && r.context_tokens > m.max_context_tokens)
    throw InputError("--context " + with_commas(r.context_tokens) + " is above " + m.name + "'s limit of " +
                     with_commas(m.max_context_tokens) + " tokens (max_position_embeddings)");
  if (r.context_tokens <= r.output_tokens)
    throw InputError("--context " + with_commas(r.context_tokens) + " must be above --output " +
                     with_commas(r.output_tokens) + " (the prompt is context - output tokens)");
  HostView v;
  for (const auto& t : r.hosts)
    for (const auto& p : r.precisions) v.rows.push_back(ram_row(r, t, p));
  if (r.offload_host && m.is_moe())
    for (const auto& g : r.offload_gpus)
      for (const auto& p : r.precisions) v.rows.push_back(offload_row(r, g, p));
  for (const auto& t : r.hosts) v.notes.insert(v.notes.end(), t.notes.begin(), t.notes.end());
  return v;
}

}  // namespace moeplan::simulator
