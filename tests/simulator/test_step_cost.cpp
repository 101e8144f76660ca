// Step pricing: roofline bounds, routing statistics, attention pair counts and collectives.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>

#include "common/error.hpp"
#include "gpu_db/gpu_db.hpp"
#include "simulator/routing.hpp"
#include "simulator/step_cost.hpp"
#include "tests/test_util.hpp"

using namespace moeplan;
using namespace moeplan::simulator;

namespace {
StepModel step_model(const model::ModelConfig& m, const std::string& precision, const std::string& gpu,
                     model::ParallelLayout layout) {
  static const auto db = gpu_db::Database::load(test::data());
  StepModelRequest r;
  r.graph.model = &m;
  r.graph.precision = model::resolve_precision(precision, m, test::precisions());
  r.graph.layout = layout;
  r.hardware = gpu_hardware(db, db.gpu(gpu));
  r.routing = RoutingModel::uniform(m.num_experts, m.experts_per_token, layout.ep);
  return StepModel(r);
}
}  // namespace

TEST_CASE("Attention pairs: causal prefill, chunked and sliding windows, worked by hand") {
  model::OpGraph g;
  g.has_window = true;
  g.window_tokens = 4;
  // Positions 1..6: full keys 1+2+...+6 = 21; chunks of 4: 1,2,3,4 | 1,2 = 13; sliding 4: 1,2,3,4,4,4 = 18.
  auto c = prefill_shape(6, 0, true, g, model::AttentionKind::chunked);
  CHECK(c.pairs_prefill_full == 21);
  CHECK(c.pairs_prefill_window == 13);
  auto s = prefill_shape(6, 0, true, g, model::AttentionKind::sliding);
  CHECK(s.pairs_prefill_window == 18);
  // A second chunk of a prompt starting at position 5 (offset 4): chunk keys 1,2,3 -> 6; full 5+6+7 = 18.
  auto c2 = prefill_shape(3, 4, false, g, model::AttentionKind::chunked);
  CHECK(c2.pairs_prefill_window == 6);
  CHECK(c2.pairs_prefill_full == 18);
  CHECK(c2.logit_tokens == 0);
  // Decode at 10 tokens of context: chunk position (10-1) mod 4 + 1 = 2.
  auto d = decode_shape(3, 10, g, model::AttentionKind::chunked);
  CHECK(d.kv_read_window == 6);
  CHECK(d.kv_read_full == 30);
}

TEST_CASE("Uniform routing: distinct experts and the busiest EP rank") {
  auto r = RoutingModel::uniform(128, 1, 8);
  // One token lands whole on one rank: one expert there.
  CHECK(r.at(1).busiest_assignments == Approx(1));
  CHECK(r.at(1).experts_touched == Approx(1));
  // Many tokens touch every expert of the rank; the busiest rank has more than the mean.
  const auto big = r.at(4096);
  CHECK(big.experts_touched == Approx(16).margin(1e-6));
  CHECK(big.mean_assignments == Approx(512));
  CHECK(big.busiest_assignments > 512 * 1.02);
  CHECK(big.busiest_assignments < 512 * 1.2);
  // Without EP every assignment is on the one rank: T·k.
  CHECK(RoutingModel::uniform(8, 2, 1).at(100).busiest_assignments == Approx(200));
  // Expected distinct experts of T tokens with top-k of E: E·(1 − (1 − k/E)^T).
  CHECK(RoutingModel::uniform(64, 4, 1).at(10).experts_touched ==
        Approx(64 * (1 - std::pow(1 - 1.0 / 64, 40))).epsilon(1e-9));
}

TEST_CASE("A skewed router loads the busiest rank more and touches fewer experts") {
  const auto uniform = RoutingModel::uniform(128, 8, 8).at(256);
  const auto skew = RoutingModel::zipf(128, 8, 8, 1.2).at(256);
  CHECK(skew.busiest_assignments > uniform.busiest_assignments * 1.3);
  // A histogram with every token on expert 0 puts all assignments on rank 0.
  std::vector<std::vector<double>> loads(1, std::vector<double>(16, 0.0));
  loads[0][0] = 100;
  const auto hot = RoutingModel::histogram(loads, 1, 4).at(100);
  CHECK(hot.busiest_assignments == Approx(100).margin(1e-9));
  CHECK(hot.experts_touched == Approx(1).margin(1e-9));
}

TEST_CASE("Batch-1 decode of a dense model is bound by reading its weights once") {
  const auto m = test::load("llama3.1-8b");
  const auto sm = step_model(m, "bf16", "h100-sxm", {1, 1, 1, 1});
  const double t = sm.step_time_s(decode_shape(1, 1000, sm.graph(), model::AttentionKind::chunked));
  const double weights = 2.0 * 8.03e9 - 2.0 * 128256 * 4096;  // bf16 weights without the embedding table
  const double floor = weights / 3.35e12;                     // at the datasheet bandwidth
  CHECK(t > floor);
  CHECK(t < 1.6 * floor);
  // Every non-collective op is memory-bound at one token.
  for (const auto& o : sm.breakdown(decode_shape(1, 1000, sm.graph(), model::AttentionKind::chunked)))
    if (o.op.kind == model::OpKind::gemm) CHECK(o.bound == Bound::memory);
}

TEST_CASE("Prefill of 8192 tokens is compute-bound and its GEMMs run near the FP8 peak times efficiency") {
  const auto m = test::load("llama3.1-70b");
  const auto sm = step_model(m, "fp8", "h100-sxm", {2, 1, 1, 1});
  const auto ops = sm.breakdown(prefill_shape(8192, 0, true, sm.graph(), model::AttentionKind::chunked));
  double gemm_s = 0, gemm_flops = 0;
  const auto x = sm.values(prefill_shape(8192, 0, true, sm.graph(), model::AttentionKind::chunked));
  for (const auto& o : ops) {
    if (o.op.kind != model::OpKind::gemm) continue;
    CHECK(o.bound == Bound::compute);
    gemm_s += o.time_s;
    gemm_flops += o.op.repeat * o.op.flops.at(x);
  }
  // 1979 TFLOP/s FP8 × 0.70 × 8192/(8192 + 64), minus per-op overhead.
  CHECK(gemm_flops / gemm_s / 1e12 == Approx(1979 * 0.70 * 8192 / 8256).epsilon(0.02));
}

TEST_CASE("A GPU's published GEMM and STREAM measurements replace the generic shares in the roofline") {
  // MI300X (data/gpus.yaml measured): hipBLASLt reaches 1223.6 FP8 and 708 BF16 TFLOP/s, BabelStream triad 4.10 TB/s.
  const auto m = test::load("llama3.1-70b");
  const auto fp8 = step_model(m, "fp8", "mi300x", {8, 1, 1, 1});
  CHECK(fp8.hardware().eff.gemm_share("fp8") == Approx(1223.6 / 2614.9));
  CHECK(fp8.hardware().eff.gemm_share("bf16") == Approx(708 / 1307.4));
  CHECK(fp8.hardware().eff.memory == Approx(4.10 / 5.3));
  const auto shape = prefill_shape(8192, 0, true, fp8.graph(), model::AttentionKind::chunked);
  const auto x = fp8.values(shape);
  double gemm_s = 0, gemm_flops = 0;
  for (const auto& o : fp8.breakdown(shape)) {
    if (o.op.kind != model::OpKind::gemm) continue;
    gemm_s += o.time_s;
    gemm_flops += o.op.repeat * o.op.flops.at(x);
  }
  CHECK(gemm_flops / gemm_s / 1e12 == Approx(1223.6 * 8192 / 8256).epsilon(0.02));
  // Bandwidth-bound batch-1 decode reads the weights at the measured share of 5.3 TB/s.
  for (const auto& o : fp8.breakdown(decode_shape(1, 1000, fp8.graph(), model::AttentionKind::chunked)))
    if (std::string(o.op.name) == "mlp.gate_up")
      CHECK(o.memory_s == Approx(o.op.repeat * o.op.weight_bytes.at(fp8.values(decode_shape(1, 1000, fp8.graph(),
                                                                                         model::AttentionKind::chunked))) /
                                 4.10e12)
                              .epsilon(0.01));
  // A GPU without measurements keeps the generic 0.70 and 0.80.
  const auto h100 = step_model(m, "fp8", "h100-sxm", {8, 1, 1, 1});
  CHECK(h100.hardware().eff.gemm_share("fp8") == Approx(0.70));
  CHECK(h100.hardware().eff.memory == Approx(0.80));
}

TEST_CASE("Ring all-reduce: alpha-beta with 2(n-1) steps over NVLink 4") {
  const auto m = test::load("llama3.1-70b");
  const auto sm = step_model(m, "bf16", "h100-sxm", {8, 1, 1, 1});
  StepShape s;
  s.decode_tokens = 1024;
  s.logit_tokens = 0;
  for (const auto& o : sm.breakdown(s)) {
    if (std::string(o.op.name) != "attn.all_reduce") continue;
    // 1024 tokens × 8192 × 2 B = 16 MiB; 2·7/8 of it over 450 GB/s × 0.8, plus 6.6 us + 14 × 0.6 us.
    const double per_layer = 6.6e-6 + 14 * 0.6e-6 + 2.0 * 7 / 8 * (1024.0 * 8192 * 2) / (450e9 * 0.8);
    CHECK(o.time_s == Approx(80 * per_layer).epsilon(1e-6));
  }
}

namespace {
const gpu_db::Database& database() {
  static const auto db = gpu_db::Database::load(test::data());
  return db;
}
// The time of one collective of `bytes` per GPU over `ranks` GPUs.
double collective_s(model::OpKind kind, int ranks, double bytes, const Hardware& hw) {
  const CollectiveRates c = collective_rates(kind, ranks, hw, model::ParallelLayout{1, ranks, 1, ranks});
  return c.fixed_s + bytes * c.per_byte_s;
}
}  // namespace

TEST_CASE("NICs per node: a GPU's share of the node's NIC ports, from data/network.yaml or given") {
  const auto& db = database();
  // HGX H200: one 400 Gb/s port per GPU; a 4-card RTX PRO 6000 workstation node: one per 2 cards.
  const Hardware h200 = gpu_hardware(db, db.gpu("h200-sxm"));
  CHECK(h200.nics_per_node == 8);
  CHECK(h200.inter_bandwidth_bytes_per_s == Approx(50e9));
  const Hardware pro = gpu_hardware(db, db.gpu("rtx-pro-6000"));
  CHECK(pro.gpus_per_node == 4);
  CHECK(pro.nics_per_node == 2);
  CHECK(pro.inter_bandwidth_bytes_per_s == Approx(2 * 50e9 / 4));
  // --nics-per-node and --internode change it.
  const Hardware pro4 = gpu_hardware(db, db.gpu("rtx-pro-6000"), "infiniband-xdr", 4);
  CHECK(pro4.nics_per_node == 4);
  CHECK(pro4.inter_bandwidth_bytes_per_s == Approx(4 * 100e9 / 4));
  CHECK(network_assumption(pro, 64, false).find("16 nodes of 4 GPUs") != std::string::npos);
  CHECK(network_assumption(pro, 64, false).find("2 x infiniband-ndr") != std::string::npos);
  CHECK_THROWS_AS(gpu_hardware(db, db.gpu("h200-sxm"), "", -1), InputError);
}

TEST_CASE("All-to-all: one message per peer on the node and per other node, bytes split by where the peers are") {
  const auto& db = database();
  const Hardware h200 = gpu_hardware(db, db.gpu("h200-sxm"));
  const double mb = 16e6;
  // By hand, 16 GPUs over 2 HGX nodes: 6.6 us + 7 x 0.6 us (NVLink peers) + 1 x 2.7 us (the other node); 8/15 of the
  // bytes leave through the GPU's 50 GB/s NIC share, 7/15 cross NVLink 4 (450 GB/s), in parallel, at 0.6 of the links.
  const double fixed = 6.6e-6 + 7 * 0.6e-6 + 2.7e-6;
  const double per_byte = std::max(7.0 / 15 / 450e9, 8.0 / 15 / 50e9) / 0.6;
  CHECK(collective_s(model::OpKind::all_to_all, 16, mb, h200) == Approx(fixed + mb * per_byte).epsilon(1e-12));
  // One node: every peer on NVLink.
  CHECK(collective_s(model::OpKind::all_to_all, 8, mb, h200) ==
        Approx(6.6e-6 + 7 * 0.6e-6 + mb / (450e9 * 0.6)).epsilon(1e-12));

  SECTION("the time grows with the number of peers") {
    double last = 0;
    for (int n : {2, 4, 8, 16, 32, 64}) {
      const double t = collective_s(model::OpKind::all_to_all, n, 0, h200);  // latency alone
      CHECK(t > last);
      last = t;
    }
    const Hardware pro = gpu_hardware(db, db.gpu("rtx-pro-6000"));
    last = 0;
    for (int n : {2, 4, 8, 16, 32, 64}) {
      const double t = collective_s(model::OpKind::all_to_all, n, mb, pro);  // and with bytes
      CHECK(t > last);
      last = t;
    }
  }
  SECTION("the time grows with the share of peers off the node") {
    // 16 peers, nodes of 16, 8, 4 and 2 GPUs with one NIC per GPU: 0, 8/15, 12/15, 14/15 of the bytes off the node.
    double last = 0;
    for (int gpn : {16, 8, 4, 2}) {
      Hardware hw = h200;
      hw.gpus_per_node = gpn;
      hw.nics_per_node = gpn;
      hw.inter_bandwidth_bytes_per_s = hw.node_nic_bandwidth_bytes_per_s() / gpn;
      const double t = collective_s(model::OpKind::all_to_all, 16, mb, hw);
      INFO(gpn << " GPUs per node: " << t * 1e6 << " us");
      CHECK(t > last);
      last = t;
    }
  }
  SECTION("fewer NICs per node: slower once peers are off the node, unchanged inside it") {
    const Hardware half = gpu_hardware(db, db.gpu("h200-sxm"), "", 4);
    CHECK(collective_s(model::OpKind::all_to_all, 16, mb, half) > collective_s(model::OpKind::all_to_all, 16, mb, h200));
    CHECK(collective_s(model::OpKind::all_to_all, 8, mb, half) == collective_s(model::OpKind::all_to_all, 8, mb, h200));
  }
}

TEST_CASE("Ring all-reduce over nodes: 2(nodes-1) of its steps at the NIC's latency, all of a node's NICs per boundary") {
  const auto& db = database();
  const Hardware h200 = gpu_hardware(db, db.gpu("h200-sxm"));
  const double mb = 16e6;
  // 16 GPUs, 2 nodes: 30 steps, 2 of them between nodes; bus bandwidth min(450, 8 x 50) = 400 GB/s.
  const double t = 6.6e-6 + 28 * 0.6e-6 + 2 * 2.7e-6 + 2.0 * 15 / 16 * mb / (400e9 * 0.8);
  CHECK(collective_s(model::OpKind::all_reduce, 16, mb, h200) == Approx(t).epsilon(1e-12));
  // A 4-card PCIe node with 2 NICs: min(PCIe 5 63 GB/s, 2 x 50) = 63 GB/s.
  const Hardware pro = gpu_hardware(db, db.gpu("rtx-pro-6000"));
  const double tp = 6.6e-6 + 12 * 1.0e-6 + 2 * 2.7e-6 + 2.0 * 7 / 8 * mb / (63e9 * 0.8);
  CHECK(collective_s(model::OpKind::all_reduce, 8, mb, pro) == Approx(tp).epsilon(1e-12));
  // All-gather: nodes - 1 boundary steps.
  CHECK(collective_s(model::OpKind::all_gather, 16, mb, h200) ==
        Approx(6.6e-6 + 14 * 0.6e-6 + 2.7e-6 + 15 * mb / (400e9 * 0.8)).epsilon(1e-12));
}

TEST_CASE("A DEP step over two nodes spends more in its all-to-alls than over one, per GPU") {
  const auto m = test::load("llama4-maverick");
  StepShape s;
  s.decode_tokens = 64;
  s.logit_tokens = 64;
  auto a2a_s = [&](int n) {
    double t = 0;
    for (const auto& o : step_model(m, "fp8", "h200-sxm", {1, n, 1, n}).breakdown(s))
      if (o.op.kind == model::OpKind::all_to_all) t += o.time_s;
    return t;
  };
  CHECK(a2a_s(16) > 1.5 * a2a_s(8));
}
