// reports: `moeplan fit-matrix` (GPU x precision: smallest count that fits, headroom), `moeplan hosts` (RAM needed,
// fit and llama.cpp speeds per host, one-GPU offload rows) and `moeplan claims` (recorded claims against the config).
#include <algorithm>
#include <cmath>

#include "common/text.hpp"
#include "reports/views_report.hpp"

namespace moeplan::reports {

using nlohmann::json;

namespace {

std::string gb(double bytes) { return format_fixed(bytes / 1e9, 2); }

// Integers print with thousands separators, other values with up to 4 significant decimals.
std::string value_text(double v) {
  if (std::fabs(v) < 9e15 && v == std::floor(v)) return with_commas(static_cast<std::int64_t>(v));
  return format_fixed(v, 4);
}

}  // namespace

Report fit_matrix_report(const simulator::FitMatrixRequest& q, const simulator::FitMatrix& result) {
  const model::ModelConfig& m = *q.model;
  Report r;
  r.header = {"fit matrix: " + m.name + ", " + with_commas(q.concurrency) + " sequence(s) x " +
                  with_commas(q.context_tokens) + " tokens of context, KV " + model::kv_dtype_name(q.kv_dtype) + " (" +
                  model::kv_mode_name(q.kv_mode) + "), usable memory " +
                  format_fixed(100.0 * q.gpu_memory_utilization, 0) + " % of each GPU",
              "GPUs: the smallest count that fits (up to " + std::to_string(q.max_gpus) + "); layout: at that count, "
              "the one with the most free memory of tp = count, the widest tensor-parallel group in a node x pipeline "
              "stages, tp across nodes, and the planner's TP, TP+EP and attention-DP+EP layouts (docs/views.md)"};
  Table t;
  t.columns = {"gpu", "precision", "GPUs", "layout", "nodes", "weights GB/GPU", "used GB/GPU", "usable GB/GPU",
               "free", "headroom", "max concurrency", "note"};
  t.right_align = {false, false, true, false, false, true, true, true, true, false, true, false};
  r.json = {{"model", m.name},
            {"context_tokens", q.context_tokens},
            {"concurrency", q.concurrency},
            {"kv_dtype", model::kv_dtype_name(q.kv_dtype)},
            {"kv_mode", model::kv_mode_name(q.kv_mode)},
            {"max_num_batched_tokens", q.max_num_batched_tokens},
            {"gpu_memory_utilization", q.gpu_memory_utilization},
            {"max_gpus", q.max_gpus},
            {"rows", json::array()}};
  json bounds = json::array();
  for (const auto& b : simulator::headroom_bounds())
    bounds.push_back({{"headroom", simulator::headroom_name(b.headroom)}, {"min_free_share", b.min_free_share}});
  r.json["headroom_bounds"] = bounds;
  for (const auto& c : result.cells) {
    const auto& g = *c.gpu;
    std::string note = c.native_compute ? "" : "no native " + c.compute_dtype + " compute (memory only)";
    if (!c.fits) {
      t.rows.push_back({g.name, c.precision, "-", "-", "-", "-", "-", "-", "-", simulator::headroom_name(c.headroom), "0",
                        "no count up to " + std::to_string(q.max_gpus) + " GPUs fits" + (note.empty() ? "" : "; " + note)});
    } else {
      const std::string nodes = c.within_node ? "1 node" : std::to_string(c.nodes) + " nodes of " + std::to_string(g.gpus_per_node);
      t.rows.push_back({g.name, c.precision, std::to_string(c.gpus), layout_text(c.layout), nodes,
                        gb(c.memory.weights.total), gb(c.memory.total_bytes), gb(c.memory.usable_bytes),
                        format_fixed(100.0 * c.free_share, 1) + " %", simulator::headroom_name(c.headroom),
                        with_commas(c.max_concurrency), note});
    }
    json row = {{"gpu", g.name},
                {"precision", c.precision},
                {"fits", c.fits},
                {"gpus", c.fits ? json(c.gpus) : json()},
                {"gpus_per_node", g.gpus_per_node},
                {"nodes", c.fits ? json(c.nodes) : json()},
                {"within_node", c.fits ? json(c.within_node) : json()},
                {"headroom", simulator::headroom_name(c.headroom)},
                {"max_concurrency", c.max_concurrency},
                {"native_compute", c.native_compute},
                {"compute_dtype", c.compute_dtype}};
    if (c.fits) {
      row["tp"] = c.layout.tp;
      row["ep"] = c.layout.ep;
      row["pp"] = c.layout.pp;
      row["dp"] = c.layout.dp;
      row["weights_bytes"] = c.memory.weights.total;
      row["kv_bytes"] = c.memory.kv_bytes;
      row["activation_bytes"] = c.memory.activation_bytes;
      row["overhead_bytes"] = c.memory.overhead_bytes;
      row["total_bytes"] = c.memory.total_bytes;
      row["usable_bytes"] = c.memory.usable_bytes;
      row["free_bytes"] = std::max(0.0, c.memory.free_bytes);  // no size is negative: what does not fit is a shortfall
      row["shortfall_bytes"] = std::max(0.0, -c.memory.free_bytes);
      row["free_share"] = c.free_share;
    }
    r.json["rows"].push_back(std::move(row));
  }
  r.tables.push_back(std::move(t));
  r.notes.push_back("headroom, " + simulator::headroom_bounds_text());
  r.notes.push_back("bytes per GPU as moeplan memory computes them (weights + KV + activations + runtime overhead); "
                    "max concurrency: sequences of this context that fit on that count");
  r.notes.push_back("inputs: the model's config.json, the precisions of data/precisions.yaml, each GPU's memory_gb and "
                    "GPUs per node from data/gpus.yaml (its datasheet in the entry's source; moeplan gpus)");
  return r;
}

namespace {

std::string rate_text(double tokens_per_s) { return tokens_per_s > 0 ? format_fixed(tokens_per_s, tokens_per_s < 10 ? 2 : 1) : "-"; }

json device_memory_json(const simulator::DeviceMemory& d) {
  return {{"device", d.device},           {"capacity_bytes", d.capacity_bytes}, {"usable_bytes", d.usable_bytes},
          {"weights_bytes", d.weights_bytes}, {"kv_bytes", d.kv_bytes},       {"activation_bytes", d.activation_bytes},
          {"overhead_bytes", d.overhead_bytes}, {"free_bytes", d.free_bytes}, {"fits", d.fits}};
}

json host_row_json(const simulator::HostRow& row) {
  json j = {{"device", row.device},
            {"kind", row.kind},
            {"precision", row.precision},
            {"kv_dtype", row.kv_dtype},
            {"offload", row.offload},
            {"ram_capacity_bytes", row.ram_capacity_bytes},
            {"ram_needed_bytes", row.ram_needed_bytes},
            {"ram_free_bytes", row.ram_free_bytes},
            {"weights_bytes", row.weights_bytes},
            {"kv_bytes", row.kv_bytes},
            {"recommended_ram_gb", row.recommended ? json(row.recommended->gb) : json()},
            {"recommended_ram_reason", row.recommended ? json(row.recommended->reason) : json()},
            {"fits", row.fits},
            {"why_not", row.why_not},
            {"simulated", row.decode_tokens_per_s > 0},
            {"decode_tokens_per_s", row.decode_tokens_per_s > 0 ? json(row.decode_tokens_per_s) : json()},
            {"prompt_tokens_per_s", row.prompt_tokens_per_s > 0 ? json(row.prompt_tokens_per_s) : json()},
            {"prompt_tokens", row.prompt_tokens}};
  if (row.gpu_memory) j["gpu_memory"] = device_memory_json(*row.gpu_memory);
  if (row.host_memory) j["host_memory"] = device_memory_json(*row.host_memory);
  return j;
}

std::string recommended_text(const simulator::HostRow& row, const std::vector<simulator::RamSize>& sizes) {
  if (row.recommended) return format_fixed(row.recommended->gb, 0) + " GB";
  return sizes.empty() ? "-" : "above " + format_fixed(sizes.back().gb, 0) + " GB";
}

}  // namespace

Report host_view_report(const simulator::HostViewRequest& q, const simulator::HostView& v) {
  const model::ModelConfig& m = *q.model;
  Report r;
  r.header = {"hosts: " + m.name + ", " + with_commas(q.concurrency) + " sequence(s) x " + with_commas(q.context_tokens) +
                  " tokens of context (" + with_commas(q.context_tokens - q.output_tokens) + " prompt + " +
                  with_commas(q.output_tokens) + " generated), KV " + model::kv_mode_name(q.kv_mode) + ", engine " +
                  q.engine->display_name + " (its KV dtype and token budget unless given)",
              "RAM needed: weights + KV cache + activations, as moeplan memory --host computes them; decode tok/s (per "
              "sequence, 1 / mean TPOT) and prompt tok/s (prompt tokens / mean TTFT) as moeplan simulate --engine "
              "llamacpp computes them",
              "inputs: each host's RAM size, bandwidth and compute from data/hosts.yaml, the offload GPUs from "
              "data/gpus.yaml (each value with its source there), the model's config.json"};
  Table t;
  t.columns = {"host", "kind", "precision", "RAM GB", "needed GB", "fits", "free GB", "recommended RAM", "decode tok/s",
               "prompt tok/s", "note"};
  t.right_align = {false, false, false, true, true, false, true, true, true, true, false};
  Table o;
  o.title = "one GPU, routed experts in host RAM (llama.cpp -ot exps=CPU; moeplan simulate --offload-experts)";
  o.columns = {"gpu + host", "precision", "GPU usable GB", "GPU used GB", "GPU free GB", "RAM GB", "experts in RAM GB",
               "RAM free GB", "fits", "recommended RAM", "decode tok/s", "prompt tok/s", "note"};
  o.right_align = {false, false, true, true, true, true, true, true, false, true, true, true, false};
  r.json = {{"model", m.name},
            {"context_tokens", q.context_tokens},
            {"concurrency", q.concurrency},
            {"prompt_tokens", q.context_tokens - q.output_tokens},
            {"output_tokens", q.output_tokens},
            {"kv_mode", model::kv_mode_name(q.kv_mode)},
            {"engine", q.engine->name},
            {"host_usable_share", simulator::kHostUsableShare},
            {"rows", json::array()},
            {"standard_ram_gb", json::array()},
            {"assumptions", v.notes}};
  for (const auto& s : q.ram_sizes) r.json["standard_ram_gb"].push_back({{"gb", s.gb}, {"reason", s.reason}, {"source", s.source}});
  for (const auto& row : v.rows) {
    r.json["rows"].push_back(host_row_json(row));
    const std::string fits = row.fits ? "yes" : "no";
    if (!row.offload) {
      t.rows.push_back({row.device, row.kind, row.precision, gb(row.ram_capacity_bytes), gb(row.ram_needed_bytes), fits,
                        gb(row.ram_free_bytes), recommended_text(row, q.ram_sizes), rate_text(row.decode_tokens_per_s),
                        rate_text(row.prompt_tokens_per_s), row.why_not});
    } else {
      const auto& g = *row.gpu_memory;
      const auto& h = *row.host_memory;
      const double g_used = g.weights_bytes + g.kv_bytes + g.activation_bytes + g.overhead_bytes;
      o.rows.push_back({row.device, row.precision, gb(g.usable_bytes), gb(g_used), gb(g.free_bytes), gb(h.capacity_bytes),
                        gb(h.weights_bytes), gb(h.free_bytes), fits, recommended_text(row, q.ram_sizes), rate_text(row.decode_tokens_per_s),
                        rate_text(row.prompt_tokens_per_s), row.why_not});
    }
  }
  r.tables.push_back(std::move(t));
  if (!o.rows.empty()) r.tables.push_back(std::move(o));
  r.notes.push_back("recommended RAM: the smallest standard size (DIMM count x DIMM size, data/ram_sizes.yaml) whose " +
                    format_fixed(100 * simulator::kHostUsableShare, 0) +
                    " % holds the RAM needed (the rest left to the OS and llama.cpp's buffers, as simulate assumes for "
                    "offload hosts); GB = 1e9 bytes");
  r.notes.push_back("free: never below 0; a row that does not fit says what it needs and is not simulated. Each host's "
                    "rates and their sources: --format json \"assumptions\" (docs/simulator.md \"Hosts and offloading\")");
  return r;
}

Report memory_sweep_report(const simulator::MemorySweepRequest& q, const simulator::MemorySweep& sweep) {
  const simulator::MemoryRequest& b = q.base;
  const model::ModelConfig& m = *b.model;
  const bool by_context = q.axis == simulator::SweepAxis::context;
  const std::string where = b.host_mode ? b.device_name : std::to_string(b.layout.gpus()) + " x " + b.device_name;
  Report r;
  r.header = {"memory per " + std::string(b.host_mode ? "host" : "GPU") + " against " + simulator::sweep_axis_name(q.axis) +
                  ": " + m.name + " on " + where + " (" + layout_text(b.layout) + "), KV " + model::kv_dtype_name(b.kv_dtype) +
                  " (" + model::kv_mode_name(b.kv_mode) + "), " +
                  (by_context ? with_commas(b.concurrency) + " sequence(s)" : with_commas(b.context_tokens) + " tokens of context"),
              "GB per " + std::string(b.host_mode ? "host" : "GPU") + ": weights + KV + activations + overhead, as moeplan memory "
              "computes them; (over): above the usable " + gb(sweep.cells.empty() ? 0 : sweep.cells[0][0].memory.usable_bytes) +
              " GB" + (q.fit_gpu ? "; GPUs: the smallest count of " + q.fit_gpu->name + " that holds it (moeplan fit-matrix's layouts, up to " +
                                       std::to_string(q.max_gpus) + ")" : "")};
  Table t;
  t.columns = {by_context ? "context" : "concurrency"};
  for (const auto& p : q.precisions) {
    t.columns.push_back(p.spec + " GB");
    if (q.fit_gpu) t.columns.push_back(p.spec + " GPUs");
  }
  t.right_align.assign(t.columns.size(), true);
  r.json = {{"model", m.name}, {"device", b.device_name}, {"host_mode", b.host_mode}, {"gpus", b.host_mode ? 0 : b.layout.gpus()},
            {"tp", b.layout.tp}, {"ep", b.layout.ep}, {"pp", b.layout.pp}, {"dp", b.layout.dp},
            {"kv_dtype", model::kv_dtype_name(b.kv_dtype)}, {"kv_mode", model::kv_mode_name(b.kv_mode)},
            {"sweep", simulator::sweep_axis_name(q.axis)},
            {by_context ? "concurrency" : "context_tokens", by_context ? b.concurrency : b.context_tokens},
            {"fit_gpu", q.fit_gpu ? json(q.fit_gpu->name) : json()}, {"rows", json::array()}};
  for (std::size_t i = 0; i < sweep.values.size(); ++i) {
    std::vector<std::string> row = {with_commas(sweep.values[i])};
    json cells = json::array();
    for (std::size_t k = 0; k < q.precisions.size(); ++k) {
      const auto& c = sweep.cells[i][k];
      row.push_back(gb(c.memory.total_bytes) + (c.memory.fits ? "" : " (over)"));
      if (q.fit_gpu) row.push_back(c.gpus_to_fit > 0 ? std::to_string(c.gpus_to_fit) : "-");
      json cell = {{"precision", q.precisions[k].spec}, {"total_bytes", c.memory.total_bytes},
                   {"weights_bytes", c.memory.weights.total}, {"kv_bytes", c.memory.kv_bytes},
                   {"activation_bytes", c.memory.activation_bytes}, {"overhead_bytes", c.memory.overhead_bytes},
                   {"usable_bytes", c.memory.usable_bytes}, {"fits", c.memory.fits}};
      if (q.fit_gpu) cell["gpus_to_fit"] = c.gpus_to_fit > 0 ? json(c.gpus_to_fit) : json();
      cells.push_back(cell);
    }
    t.rows.push_back(std::move(row));
    r.json["rows"].push_back({{by_context ? "context_tokens" : "concurrency", sweep.values[i]}, {"cells", cells}});
  }
  r.tables.push_back(std::move(t));
  if (by_context)
    r.notes.push_back("contexts: 1,024 x 2^k up to " + with_commas(sweep.values.empty() ? 0 : sweep.values.back()) +
                      " (the model's max_position_embeddings, at most 1,048,576)");
  return r;
}

Report claims_report(const model::ModelConfig& m, const std::string& file, const std::vector<model::ClaimCheck>& checks) {
  Report r;
  r.header = {"claims about " + m.name + " (" + file + ") against its config (" + m.source + ")"};
  Table t;
  t.columns = {"claim", "quantity", "claimed", "config", "verdict", "reason", "source", "read"};
  t.right_align = {false, false, true, true, false, false, false, false};
  r.json = {{"model", m.name}, {"file", file}, {"claims", json::array()}};
  int differ = 0;
  for (const auto& k : checks) {
    const auto& c = k.claim;
    const char* verdict = k.matches ? "matches" : "differs";
    if (!k.matches) ++differ;
    std::string reason = c.reason;
    if (!k.computed && reason.empty()) reason = "the config has no such quantity";
    if (!k.matches && reason.empty()) reason = "(no reason recorded)";
    // The figure's conditions beside its quantity: "decode_tokens_per_s_bound at q4_k_m, 45 GB/s".
    std::string quantity = c.quantity;
    if (!c.precision.empty()) quantity += " at " + c.precision;
    if (c.bandwidth_gb_s > 0) quantity += ", " + value_text(c.bandwidth_gb_s) + " GB/s";
    t.rows.push_back({c.text, quantity, value_text(c.value), k.computed ? value_text(*k.computed) : "none", verdict,
                      reason, c.source, c.read});
    json row = {{"claim", c.text},          {"quantity", c.quantity},
                {"claimed", c.value},       {"config", k.computed ? json(*k.computed) : json()},
                {"tolerance", c.tolerance}, {"verdict", verdict},
                {"reason", c.reason},       {"source", c.source},
                {"read", c.read},           {"where", c.where}};
    if (!c.precision.empty()) row["precision"] = c.precision;
    if (c.bandwidth_gb_s > 0) row["bandwidth_gb_s"] = c.bandwidth_gb_s;
    r.json["claims"].push_back(std::move(row));
  }
  if (checks.empty()) {
    r.header.push_back("no claims about " + m.name + " are recorded in " + file);
  } else {
    r.tables.push_back(std::move(t));
    r.notes.push_back(std::to_string(checks.size() - static_cast<std::size_t>(differ)) + " of " +
                      std::to_string(checks.size()) + " claim(s) match the config; config values are computed from " +
                      "config.json (moeplan claims --quantities lists how)");
  }
  r.json["matching"] = static_cast<int>(checks.size()) - differ;
  r.json["differing"] = differ;
  return r;
}

Report claim_quantities_report() {
  Report r;
  Table t;
  t.columns = {"quantity", "computed from the config as"};
  t.right_align = {false, false};
  r.json = json::array();
  for (const auto& q : model::claim_quantities()) {
    t.rows.push_back({q.name, q.meaning});
    r.json.push_back({{"quantity", q.name}, {"meaning", q.meaning}});
  }
  r.tables.push_back(std::move(t));
  return r;
}

}  // namespace moeplan::reports
