// reports: `moeplan fit-matrix` (GPU x precision: smallest count that fits, headroom) and `moeplan claims` (recorded
// claims against the config).
#include <algorithm>
#include <cmath>

#include "common/text.hpp"
#include "reports/reports.hpp"

namespace moeplan::reports {

using nlohmann::json;

namespace {

std::string gb(double bytes) { return format_fixed(bytes / 1e9, 2); }

std::string layout_text(const model::ParallelLayout& l) {
  std::string s = "tp" + std::to_string(l.tp);
  if (l.pp > 1) s += " pp" + std::to_string(l.pp);
  return s;
}

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
              "GPUs: the smallest count that fits (up to " + std::to_string(q.max_gpus) + "); layout: tp = count, or "
              "the widest tensor-parallel group in a node x pipeline stages, or tp across nodes (docs/views.md)"};
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
    t.rows.push_back({c.text, c.quantity, value_text(c.value), k.computed ? value_text(*k.computed) : "none", verdict,
                      reason, c.source, c.read});
    r.json["claims"].push_back({{"claim", c.text}, {"quantity", c.quantity}, {"claimed", c.value},
                                {"config", k.computed ? json(*k.computed) : json()}, {"tolerance", c.tolerance},
                                {"verdict", verdict}, {"reason", c.reason}, {"source", c.source}, {"read", c.read},
                                {"where", c.where}});
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
