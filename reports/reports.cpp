#include "reports/reports.hpp"

#include <algorithm>
#include <cmath>

#include "common/text.hpp"
#include "model/params.hpp"
#include "reports/result_charts.hpp"

namespace moeplan::reports {

using nlohmann::json;
using namespace moeplan::model;

namespace {
std::string gb(double bytes) { return format_fixed(bytes / 1e9, 2); }
std::string tflops(const std::map<std::string, double>& m, const char* dtype) {
  auto it = m.find(dtype);
  return it == m.end() ? "-" : format_fixed(it->second / 1e12, it->second >= 100e12 ? 0 : 1);
}
json params_json(const ParamCounts& p) {
  json by_module = json::object();
  for (int i = 0; i < kModuleCount; ++i)
    if (p.by_module[static_cast<std::size_t>(i)]) by_module[module_name(static_cast<Module>(i))] = p.by_module[static_cast<std::size_t>(i)];
  return {{"total", p.total}, {"text", p.text}, {"vision", p.vision}, {"mtp", p.mtp},
          {"active_with_embedding", p.active_with_embedding}, {"active_without_embedding", p.active_without_embedding},
          {"by_module", by_module}};
}
}  // namespace

Report models_report(const std::vector<ModelSummary>& models) {
  Report r;
  Table t;
  t.columns = {"model", "type", "layers", "MoE/dense", "experts", "attention", "total params", "active params",
               "KV B/token (bf16)", "KV @128k (bf16)", "max context"};
  t.right_align = {false, false, true, false, false, false, true, true, true, true, true};
  r.json = json::array();
  for (const auto& s : models) {
    t.rows.push_back({s.name, s.model_type, std::to_string(s.layers),
                      std::to_string(s.moe_layers) + "/" + std::to_string(s.dense_layers), s.experts_text, s.attention_text,
                      format_params(static_cast<double>(s.params.total)),
                      format_params(static_cast<double>(s.params.active_with_embedding)),
                      with_commas(s.kv_bytes_per_token_bf16), format_gb(static_cast<double>(s.kv_bytes_128k_bf16)),
                      with_commas(s.max_context_tokens)});
    r.json.push_back({{"name", s.name}, {"model_type", s.model_type}, {"layers", s.layers}, {"moe_layers", s.moe_layers},
                      {"dense_layers", s.dense_layers}, {"global_layers", s.global_layers},
                      {"chunked_layers", s.chunked_layers}, {"sliding_layers", s.sliding_layers},
                      {"mla_layers", s.mla_layers}, {"nope_layers", s.nope_layers},
                      {"attention_window_tokens", s.attention_window_tokens}, {"experts", s.experts_text},
                      {"params", params_json(s.params)}, {"kv_bytes_per_token_bf16", s.kv_bytes_per_token_bf16},
                      {"kv_bytes_per_sequence_8k_bf16", s.kv_bytes_8k_bf16},
                      {"kv_bytes_per_sequence_128k_bf16", s.kv_bytes_128k_bf16},
                      {"max_context_tokens", s.max_context_tokens}});
  }
  r.tables.push_back(std::move(t));
  r.notes.push_back("active params count the input embedding; KV B/token assumes every layer keeps the token; "
                    "KV @128k keeps only the chunk/window on chunked/sliding layers");
  return r;
}

Report model_detail_report(const ModelConfig& m, const ModelSummary& s) {
  Report r;
  r.header = {"model " + m.name + " (" + m.model_type + ", " + m.source + ")",
              "hidden " + std::to_string(m.hidden) + ", " + std::to_string(m.num_layers) + " layers, " +
                  std::to_string(m.num_heads) + " query heads, " + std::to_string(m.num_kv_heads) + " KV heads, head_dim " +
                  std::to_string(m.head_dim) + ", vocab " + with_commas(m.vocab),
              "MLP: " + std::to_string(s.moe_layers) + " MoE (" + s.experts_text + ") + " + std::to_string(s.dense_layers) +
                  " dense; attention: " + s.attention_text};
  Table t;
  t.title = "parameters by module";
  t.columns = {"module", "params", "share"};
  t.right_align = {false, true, true};
  for (int i = 0; i < kModuleCount; ++i) {
    const auto n = s.params.by_module[static_cast<std::size_t>(i)];
    if (!n) continue;
    t.rows.push_back({module_name(static_cast<Module>(i)), with_commas(n),
                      format_fixed(100.0 * static_cast<double>(n) / static_cast<double>(s.params.total), 2) + " %"});
  }
  t.rows.push_back({"text (language model)", with_commas(s.params.text), ""});
  if (s.params.vision) t.rows.push_back({"vision (encoder + projector)", with_commas(s.params.vision), ""});
  if (s.params.mtp) t.rows.push_back({"mtp (multi-token prediction)", with_commas(s.params.mtp), ""});
  t.rows.push_back({"total", with_commas(s.params.total), ""});
  t.rows.push_back({"active per token (with input embedding)", with_commas(s.params.active_with_embedding), ""});
  t.rows.push_back({"active per token (without input embedding)", with_commas(s.params.active_without_embedding), ""});
  r.tables.push_back(std::move(t));

  Table layers;
  layers.title = "layers";
  layers.columns = {"layer", "mlp", "attention", "position", "params"};
  layers.right_align = {true, false, false, false, true};
  json layers_json = json::array();
  for (const auto& l : m.layers) {
    std::string attn = attention_kind_name(l.attention);
    if (l.attention_window_tokens) attn += "(" + std::to_string(l.attention_window_tokens) + ")";
    const char* mlp = l.mlp == MlpKind::moe ? "moe" : "dense";
    const char* pos = l.attention == AttentionKind::mla ? "rope (decoupled)" : (l.rope ? "rope" : "nope");
    layers.rows.push_back({std::to_string(l.index), mlp, attn, pos, with_commas(layer_params(l))});
    layers_json.push_back({{"index", l.index}, {"mlp", mlp}, {"attention", attention_kind_name(l.attention)},
                           {"attention_window_tokens", l.attention_window_tokens}, {"rope", l.rope},
                           {"params", layer_params(l)}});
  }
  r.tables.push_back(std::move(layers));
  r.json = {{"name", m.name}, {"model_type", m.model_type}, {"source", m.source}, {"hidden", m.hidden},
            {"num_layers", m.num_layers}, {"num_heads", m.num_heads}, {"num_kv_heads", m.num_kv_heads},
            {"head_dim", m.head_dim}, {"vocab", m.vocab}, {"num_experts", m.num_experts},
            {"experts_per_token", m.experts_per_token}, {"num_shared_experts", m.num_shared_experts},
            {"max_context_tokens", m.max_context_tokens}, {"checkpoint_precision", m.checkpoint_quant.precision},
            {"params", params_json(s.params)}, {"kv_bytes_per_token_bf16", s.kv_bytes_per_token_bf16},
            {"layers", layers_json}};
  r.notes.push_back("active per token = all non-expert weights + top-k of the routed experts in every MoE layer");
  return r;
}

Report gpus_report(const gpu_db::Database& db, const std::vector<const gpu_db::GpuSpec*>& gpus) {
  Report r;
  Table t;
  t.columns = {"gpu", "vendor", "memory", "GB/s", "bf16 TF", "fp8 TF", "fp4 TF", "interconnect", "TDP W", "$/GPU-h", "source date"};
  t.right_align = {false, false, true, true, true, true, true, false, true, true, false};
  r.json = json::array();
  std::vector<std::string> unverified_launch;  // "name date" of launch dates their source was not seen to state
  for (const auto* g : gpus) {
    // The price plan uses by default (docs/planner.md "Cost"): flagged rows are never it.
    const auto price = db.choose_price(g->name, [](const std::string&) { return true; }, false);
    const std::string memory = format_fixed(g->memory_gb_marketed, 0) + " " + g->memory_unit;
    t.rows.push_back({g->name, g->vendor, memory, format_fixed(g->mem_bandwidth_bytes_per_s / 1e9, 0),
                      tflops(g->peak_flops_dense, g->has_dtype("bf16") ? "bf16" : "fp16"),
                      tflops(g->peak_flops_dense, "fp8"), tflops(g->peak_flops_dense, "fp4"), g->interconnect,
                      g->tdp_w > 0 ? format_fixed(g->tdp_w, 0) : "-",
                      price ? format_fixed(price->usd_per_gpu_hour, 2) : "-", g->date});
    json flops = json::object();
    for (const auto& [dtype, v] : g->peak_flops_dense) flops[dtype] = v;
    json j = {{"name", g->name}, {"display_name", g->display_name}, {"aliases", g->aliases}, {"vendor", g->vendor},
              {"architecture", g->architecture}, {"memory_bytes", g->memory_bytes},
              {"mem_bandwidth_bytes_per_s", g->mem_bandwidth_bytes_per_s}, {"peak_flops_dense", flops},
              {"fp4_format", g->fp4_format}, {"interconnect", g->interconnect},
              {"interconnect_bytes_per_s_bidir", g->interconnect_bytes_per_s_bidir ? json(*g->interconnect_bytes_per_s_bidir) : json()},
              {"pcie_gen", g->pcie_gen}, {"gpus_per_node", g->gpus_per_node}, {"tdp_w", g->tdp_w},
              {"confidence", g->confidence}, {"source", g->source}, {"date", g->date},
              {"launch_date", g->launch_date.empty() ? json() : json(g->launch_date)},
              {"launch_source", g->launch_source.empty() ? json() : json(g->launch_source)},
              {"launch_verified", g->launch_date.empty() ? json() : json(g->launch_verified)}};
    if (!g->launch_date.empty() && !g->launch_verified) unverified_launch.push_back(g->name + " " + g->launch_date);
    if (price)
      j["default_price"] = {{"provider", price->provider}, {"usd_per_gpu_hour", price->usd_per_gpu_hour},
                            {"date", price->date}, {"source", price->source},
                            {"confidence", gpu_db::confidence_name(price->confidence)}};
    if (const auto cheapest = db.cheapest_on_demand(g->name))
      j["cheapest_on_demand"] = {{"provider", cheapest->provider}, {"usd_per_gpu_hour", cheapest->usd_per_gpu_hour},
                                 {"date", cheapest->date}, {"source", cheapest->source},
                                 {"confidence", gpu_db::confidence_name(cheapest->confidence)}, {"flags", cheapest->flags}};
    r.json.push_back(std::move(j));
  }
  r.tables.push_back(std::move(t));
  if (!unverified_launch.empty())
    r.notes.push_back("launch dates not verified against their cited source (data/gpus.yaml launch_verified: false; "
                      "they flag price rows dated before them all the same): " + join(unverified_launch, ", "));
  r.notes.push_back("TF = dense tensor TFLOPS (never the 2:4-sparse figure); fp16 shown where the GPU has no bf16; "
                    "$/GPU-h = the default price plan uses: the cheapest on-demand row of data/prices/gpu_hourly.yaml "
                    "with confidence medium or high and no flag, else the cheapest unflagged one (docs/planner.md \"Cost\")");
  return r;
}

Report hosts_report(const std::vector<gpu_db::HostSpec>& hosts) {
  Report r;
  Table t;
  t.columns = {"host", "kind", "memory", "memory type", "channels", "GB/s", "source date"};
  t.right_align = {false, false, true, false, true, true, false};
  r.json = json::array();
  for (const auto& h : hosts) {
    t.rows.push_back({h.name, h.kind, format_gb(h.memory_bytes, 0), h.memory_type,
                      h.memory_channels ? std::to_string(h.memory_channels) : "-",
                      format_fixed(h.mem_bandwidth_bytes_per_s / 1e9, 1), h.date});
    r.json.push_back({{"name", h.name}, {"display_name", h.display_name}, {"kind", h.kind}, {"memory_bytes", h.memory_bytes},
                      {"memory_type", h.memory_type}, {"memory_channels", h.memory_channels},
                      {"mem_bandwidth_bytes_per_s", h.mem_bandwidth_bytes_per_s}, {"source", h.source}, {"date", h.date}});
  }
  r.tables.push_back(std::move(t));
  return r;
}

Report local_gpus_report(const kernels::DeviceQuery& d) {
  Report r;
  r.json = {{"cuda_built", d.cuda_built}, {"status", d.status}, {"gpus", json::array()}};
  if (d.gpus.empty()) {
    r.header.push_back("no local GPU: " + d.status);
    return r;
  }
  Table t;
  t.columns = {"index", "name", "memory", "SMs", "compute capability"};
  t.right_align = {true, false, true, true, false};
  for (std::size_t i = 0; i < d.gpus.size(); ++i) {
    const auto& g = d.gpus[i];
    t.rows.push_back({std::to_string(i), g.name, format_gb(g.memory_bytes), std::to_string(g.multiprocessors),
                      std::to_string(g.cc_major) + "." + std::to_string(g.cc_minor)});
    r.json["gpus"].push_back({{"index", i}, {"name", g.name}, {"memory_bytes", g.memory_bytes},
                              {"multiprocessors", g.multiprocessors},
                              {"compute_capability", std::to_string(g.cc_major) + "." + std::to_string(g.cc_minor)}});
  }
  r.tables.push_back(std::move(t));
  return r;
}

Report memory_report(const simulator::MemoryRequest& q, const simulator::MemoryBreakdown& b) {
  const ModelConfig& m = *q.model;
  const auto& l = q.layout;
  Report r;
  const std::string where = q.host_mode ? q.device_name : std::to_string(l.gpus()) + " x " + q.device_name;
  r.header = {"memory per " + std::string(q.host_mode ? "host" : "GPU") + ": " + m.name + " on " + where + ", precision " +
                  q.precision.spec + ", KV " + kv_dtype_name(q.kv_dtype) + " (" + kv_mode_name(q.kv_mode) + ")",
              "layout tp=" + std::to_string(l.tp) + " ep=" + std::to_string(l.ep) + " pp=" + std::to_string(l.pp) +
                  " dp=" + std::to_string(l.dp) + "; context " + with_commas(q.context_tokens) + " tokens x " +
                  std::to_string(q.concurrency) + " sequences; peak batch " + with_commas(q.max_num_batched_tokens) +
                  " tokens"};
  Table t;
  t.columns = {"component", "GB", "note"};
  t.right_align = {false, true, false};
  json weights_json = json::object();
  for (int i = 0; i < kModuleCount; ++i) {
    const double v = b.weights.by_module[static_cast<std::size_t>(i)];
    if (v <= 0) continue;
    const auto mod = static_cast<Module>(i);
    t.rows.push_back({"  weights: " + std::string(module_name(mod)), gb(v), ""});
    weights_json[module_name(mod)] = v;
  }
  std::string weight_note = "pipeline stage " + std::to_string(b.weights.stage) + " of " + std::to_string(l.pp);
  if (!q.include_vision && !m.vision.empty()) weight_note += "; vision encoder not loaded (--with-vision adds it)";
  t.rows.push_back({"weights", gb(b.weights.total), weight_note});
  t.rows.push_back({"KV cache", gb(b.kv_bytes),
                    std::to_string(b.sequences_per_gpu) + " seq x " + gb(b.kv_bytes_per_sequence) + " GB, " +
                        std::to_string(b.kv_heads_per_gpu) + " KV head(s) per GPU"});
  t.rows.push_back({"activations", gb(b.activation_bytes), "peak forward pass, docs/memory.md"});
  if (!q.host_mode) t.rows.push_back({"runtime overhead", gb(b.overhead_bytes), "CUDA context, graphs, NCCL buffers"});
  t.rows.push_back({"total", gb(b.total_bytes), ""});
  t.rows.push_back({"capacity", gb(b.capacity_bytes), q.host_mode ? "host memory" : "per GPU"});
  t.rows.push_back({"usable", gb(b.usable_bytes),
                    q.host_mode ? "" : "x " + format_fixed(q.overhead.gpu_memory_utilization, 2) + " --gpu-memory-utilization"});
  // No size is printed negative: a configuration that does not fit shows what it lacks.
  if (b.fits) t.rows.push_back({"free", gb(b.free_bytes), "fits"});
  else t.rows.push_back({"short by", gb(-b.free_bytes), "DOES NOT FIT"});
  r.tables.push_back(std::move(t));
  if (b.max_concurrency > 0)
    r.notes.push_back("fits: " + std::string(b.fits ? "yes" : "no") + "; largest concurrency at " +
                      with_commas(q.context_tokens) + " tokens of context: " + with_commas(b.max_concurrency) + " sequences");
  else
    r.notes.push_back("fits: no; the weights alone exceed the usable memory: use more GPUs, a smaller precision, or larger GPUs");
  r.json = {{"model", m.name},
            {"device", q.device_name},
            {"host_mode", q.host_mode},
            {"gpus", q.host_mode ? 0 : l.gpus()},
            {"precision", q.precision.spec},
            {"kv_dtype", kv_dtype_name(q.kv_dtype)},
            {"kv_mode", kv_mode_name(q.kv_mode)},
            {"tp", l.tp}, {"ep", l.ep}, {"pp", l.pp}, {"dp", l.dp},
            {"context_tokens", q.context_tokens},
            {"concurrency", q.concurrency},
            {"max_num_batched_tokens", q.max_num_batched_tokens},
            {"weights_bytes", b.weights.total},
            {"weights_bytes_by_module", weights_json},
            {"weights_stage", b.weights.stage},
            {"kv_bytes", b.kv_bytes},
            {"kv_bytes_per_sequence", b.kv_bytes_per_sequence},
            {"kv_heads_per_gpu", b.kv_heads_per_gpu},
            {"sequences_per_gpu", b.sequences_per_gpu},
            {"activation_bytes", b.activation_bytes},
            {"overhead_bytes", b.overhead_bytes},
            {"total_bytes", b.total_bytes},
            {"capacity_bytes", b.capacity_bytes},
            {"usable_bytes", b.usable_bytes},
            {"free_bytes", std::max(0.0, b.free_bytes)},
            {"shortfall_bytes", std::max(0.0, -b.free_bytes)},
            {"fits", b.fits},
            {"max_concurrency", b.max_concurrency}};
  r.charts.push_back(vram_chart("memory per " + std::string(q.host_mode ? "host" : "GPU") + ": " + m.name + " on " + where,
                                "moeplan memory; formulas docs/memory.md", {{where + " " + q.precision.spec, b}}, q.host_mode));
  return r;
}

}  // namespace moeplan::reports
