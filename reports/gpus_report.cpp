// reports/gpus_report: `moeplan gpus` (see gpus_report.hpp).
#include "reports/gpus_report.hpp"

#include <map>

#include "common/text.hpp"

namespace moeplan::reports {

using nlohmann::json;

namespace {
std::string tflops(const std::map<std::string, double>& m, const char* dtype) {
  auto it = m.find(dtype);
  return it == m.end() ? "-" : format_fixed(it->second / 1e12, it->second >= 100e12 ? 0 : 1);
}
}  // namespace

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

}  // namespace moeplan::reports
