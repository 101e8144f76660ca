// planner/plan_reference: the sweep as first written, pricing every batch of every configuration op by op with
// a StepModel built for it. plan() gives the same result from collapsed step formulas; this one is the oracle it is
// tested against (tests/planner/test_plan_fast.cpp) and the baseline of bench/bench_planner.cpp.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <memory>
#include <optional>
#include <tuple>

#include "common/error.hpp"
#include "planner/cost.hpp"
#include "planner/plan.hpp"
#include "planner/sweep.hpp"
#include "simulator/memory.hpp"
#include "simulator/step_cost.hpp"

namespace moeplan::planner {

using detail::d;

PlanResult plan_reference(const PlanRequest& r, const gpu_db::Database& db) {
  if (!r.engines.empty()) return detail::plan_engines(r, db, &plan_reference);
  const auto t0 = std::chrono::steady_clock::now();
  const detail::Setup setup = detail::check_request(r);
  const model::ModelConfig& m = *r.model;
  const std::vector<model::Precision>& precisions = setup.precisions;
  const model::AttentionKind window_kind = setup.window_kind;

  PlanResult res;
  double closest_ratio = 1e300;
  // Op graphs depend on (precision, layout), not on the GPU: build each once and price it on every GPU.
  std::map<std::tuple<std::size_t, int, int, int, int>, std::shared_ptr<const model::OpGraph>> graphs;
  std::map<std::tuple<std::size_t, int, int, int, int>, simulator::MemoryBreakdown> memories;
  auto reject = [&](Reject why) { ++res.rejected[static_cast<std::size_t>(why)]; };

  // A host plan: one device (the host), one count, the in-process rank layouts its profile measured.
  const std::vector<const gpu_db::GpuSpec*> devices = r.host ? std::vector<const gpu_db::GpuSpec*>{&r.host->device} : r.gpus;
  const std::vector<int> counts = r.host ? std::vector<int>{1} : r.counts;
  const simulator::HostProfile* profile = r.host ? r.host->hardware.profile.get() : nullptr;

  for (const gpu_db::GpuSpec* gpu : devices) {
    // Price once per GPU.
    const detail::GpuPricing pricing = detail::gpu_pricing(r, db, *gpu);
    const simulator::Hardware hw =
        r.host ? r.host->hardware
               : detail::engine_hardware(simulator::gpu_hardware(db, *gpu, r.internode_link, r.nics_per_node), r);
    for (std::size_t pi = 0; pi < precisions.size(); ++pi) {
      const model::Precision& prec = precisions[pi];
      const std::string dtype = prec.format ? prec.format->compute_dtype : "bf16";
      const bool native = !prec.format || !prec.format->quantised() || gpu->has_dtype(dtype);
      // NVFP4 needs FP4 tensor cores (no engine dequantises it elsewhere); other formats fall back to
      // weight-only kernels (FP8 Marlin on Ampere, MXFP4 through Triton on Hopper, int4/GGUF everywhere).
      const bool unsupported =
          (prec.format && prec.format->name == "nvfp4" && !gpu->has_dtype("fp4")) || !detail::engine_loads(r, prec);
      for (int count : counts) {
        for (const auto& layout : r.host ? detail::host_layouts(m, r.host->ranks) : detail::layouts_for(m, count)) {
          if (unsupported) {
            reject(Reject::unsupported_dtype);
            continue;
          }
          try {
            model::validate_layout(m, layout);
          } catch (const InputError&) {
            reject(Reject::invalid_layout);
            continue;
          }
          if (!r.host && !detail::engine_runs_layout(r, layout, *gpu)) {
            reject(Reject::invalid_layout);
            continue;
          }
          ++res.configurations;
          // Memory: activations at the peak step over a full batch; what is left holds KV. Weights, activations,
          // overhead and KV per sequence depend on (precision, layout), not on the GPU: computed once.
          const auto key = std::make_tuple(pi, layout.tp, layout.ep, layout.pp, layout.dp);
          auto mem_it = memories.find(key);
          if (mem_it == memories.end()) {
            simulator::MemoryRequest mr;
            mr.model = &m;
            mr.precision = prec;
            mr.layout = layout;
            mr.kv_dtype = r.kv_dtype;
            mr.context_tokens = r.input_tokens + r.output_tokens;
            mr.concurrency = r.max_batch * layout.dp;
            mr.max_num_batched_tokens = r.max_num_batched_tokens;
            mr.capacity_bytes = 1;  // placeholder: usable memory is taken per GPU below
            mr.host_mode = r.host.has_value();
            simulator::MemoryBreakdown mb = simulator::memory_breakdown(mr);
            if (profile) {  // the CPU executor the profile measured keeps its KV cache in fp32 (executor/forward.hpp)
              const double f32 = 4.0 / model::kv_dtype_bytes(r.kv_dtype);
              mb.kv_bytes *= f32;
              mb.kv_bytes_per_sequence *= f32;
            }
            mem_it = memories.emplace(key, mb).first;
          }
          const simulator::MemoryBreakdown& mem = mem_it->second;
          // A host's ranks share its RAM; a GPU's memory is its own.
          const double usable = gpu->memory_bytes * r.gpu_memory_utilization / (r.host ? layout.gpus() : 1);
          const double room = usable - mem.weights.total - mem.activation_bytes - mem.overhead_bytes;
          const std::int64_t kv_batch =
              room > 0 && mem.kv_bytes_per_sequence > 0 ? static_cast<std::int64_t>(room / mem.kv_bytes_per_sequence) : 0;
          if (kv_batch < 1) {
            reject(Reject::does_not_fit);
            continue;
          }
          if (pricing.usd_per_gpu_hour <= 0) {
            reject(Reject::no_price);
            continue;
          }
          const detail::Placement where = detail::placement(r, db, hw, pricing, count);
          if (!detail::within_budget(r, where.usd_per_hour(pricing, count))) {
            reject(Reject::over_budget);
            continue;
          }
          simulator::StepModelRequest sr;
          sr.graph.model = &m;
          sr.graph.precision = prec;
          sr.graph.layout = layout;
          sr.graph.kv_dtype = r.kv_dtype;
          sr.hardware = hw;
          sr.routing = simulator::RoutingModel::uniform(m.num_experts, m.experts_per_token, layout.ep);
          auto& graph = graphs[key];
          if (!graph) {
            if (profile) sr.graph.activation_bytes = 4;  // the CPU executor's fp32 activations, as simulate prices them
            graph = std::make_shared<const model::OpGraph>(model::build_op_graph(sr.graph));
          }
          const simulator::StepModel sm(sr, graph);
          if (profile) {
            try {  // a weight format the profile has no measured rate for (e.g. nvfp4, mxfp4)
              detail::operating_point(sm, r, 1, window_kind);
            } catch (const InputError&) {
              reject(Reject::unsupported_dtype);
              continue;
            }
          }

          // The operating point: the largest batch whose TTFT/TPOT meet the SLO (TPOT grows with the batch).
          std::optional<PlanRow> best;
          Reject miss = Reject::tpot_slo;
          for (std::int64_t batch : detail::batches_up_to(std::min(r.max_batch, kv_batch))) {
            ++res.operating_points;
            const detail::Operating op = detail::operating_point(sm, r, batch, window_kind);
            const double ttft_ms = op.ttft_s * 1e3, tpot_ms = op.step_s * 1e3, per_user = 1e3 / tpot_ms;
            const double tps = op.output_per_step * layout.dp / op.step_s;
            PlanRow row;
            row.gpu = gpu;
            row.count = count;
            row.precision = prec.spec;
            row.weight_only = !native;
            row.layout = layout;
            row.batch = batch;
            row.kv_limited_batch = kv_batch;
            row.output_tokens_per_s = tps;
            row.output_tokens_per_s_per_user = per_user;
            row.ttft_ms = ttft_ms;
            row.tpot_ms = tpot_ms;
            row.prefill_time_share = op.step_s > 0 ? std::max(0.0, (op.step_s - op.decode_only_s) / op.step_s) : 0;
            const double over_ttft = r.ttft_ms > 0 ? ttft_ms / r.ttft_ms : 0;
            const double over_tpot = r.tpot_ms > 0 ? tpot_ms / r.tpot_ms : 0;
            const double over_user = r.min_tokens_per_s_per_user > 0 ? r.min_tokens_per_s_per_user / per_user : 0;
            const double worst = std::max({over_ttft, over_tpot, over_user});
            if (worst > 1) {
              miss = over_ttft == worst ? Reject::ttft_slo : over_tpot == worst ? Reject::tpot_slo : Reject::user_speed_slo;
              if (worst < closest_ratio) {
                closest_ratio = worst;
                res.closest.row = row;
                res.closest.constraint = miss == Reject::ttft_slo ? "--ttft-ms" : miss == Reject::tpot_slo ? "--tpot-ms"
                                                                                                          : "--min-tokens-per-s-per-user";
                res.closest.value = miss == Reject::ttft_slo ? ttft_ms : miss == Reject::tpot_slo ? tpot_ms : per_user;
                res.closest.limit = miss == Reject::ttft_slo ? r.ttft_ms : miss == Reject::tpot_slo ? r.tpot_ms
                                                                                                    : r.min_tokens_per_s_per_user;
              }
              continue;
            }
            if (!best || tps > best->output_tokens_per_s) best = row;
          }
          if (!best) {
            reject(miss);
            continue;
          }
          // Price the operating point (docs/planner.md "Cost").
          PlanRow& row = *best;
          detail::price_row(row, mem, pricing, where, r, detail::operating_point(sm, r, 1, window_kind));
          if (profile) row.error_bars = detail::error_bars(row, *profile);
          res.rows.push_back(std::move(row));
        }
      }
    }
  }

  detail::check_serving(res, r, db, window_kind);
  res.sweep_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace moeplan::planner
