// The op graph: layer classes, and FLOPs/bytes that must agree with the parameter counts and memory breakdown.
#include <catch2/catch.hpp>

#include "model/op_graph.hpp"
#include "model/params.hpp"
#include "tests/test_util.hpp"

using namespace moeplan;
using namespace moeplan::model;

namespace {
OpGraph graph(const ModelConfig& m, const std::string& precision, ParallelLayout layout) {
  OpGraphRequest r;
  r.model = &m;
  r.precision = resolve_precision(precision, m, test::precisions());
  r.layout = layout;
  return build_op_graph(r);
}
StepValues one_decode_token(const OpGraph& g, double experts_touched, double assignments) {
  StepValues x{};
  x[static_cast<std::size_t>(StepVar::one)] = 1;
  x[static_cast<std::size_t>(StepVar::tokens)] = 1;
  x[static_cast<std::size_t>(StepVar::decode_tokens)] = 1;
  x[static_cast<std::size_t>(StepVar::logit_tokens)] = 1;
  x[static_cast<std::size_t>(StepVar::experts_touched)] = experts_touched;
  x[static_cast<std::size_t>(StepVar::expert_assignments)] = assignments;
  (void)g;
  return x;
}
}  // namespace

TEST_CASE("Maverick's op graph has three layer classes: 24 dense+chunked, 12 MoE+chunked, 12 MoE+global NoPE") {
  const auto m = test::load("llama4-maverick");
  const auto g = graph(m, "fp8", {8, 8, 1, 1});
  REQUIRE(g.layer_classes.size() == 3);
  int dense = 0, moe_chunked = 0, moe_global = 0;
  for (const auto& c : g.layer_classes) {
    if (c.mlp == MlpKind::dense && c.attention == AttentionKind::chunked) dense += c.layers;
    if (c.mlp == MlpKind::moe && c.attention == AttentionKind::chunked) moe_chunked += c.layers;
    if (c.mlp == MlpKind::moe && c.attention == AttentionKind::global && !c.rope) moe_global += c.layers;
  }
  CHECK(dense == 24);
  CHECK(moe_chunked == 12);
  CHECK(moe_global == 12);
  CHECK(g.has_window);
  CHECK(g.window_tokens == 8192);
  CHECK(g.experts_per_rank == 16);
  // KV per token on one GPU (1 of 8 KV heads, bf16): 2·128·2 B = 512 B per layer, 12 global and 36 chunked layers.
  CHECK(g.kv_bytes_per_token_full == 12 * 512);
  CHECK(g.kv_bytes_per_token_window == 36 * 512);
}

TEST_CASE("One decode token costs 2 FLOPs per active parameter (Mixtral 8x7B, one GPU)") {
  const auto m = test::load("mixtral-8x7b");
  const auto g = graph(m, "bf16", {1, 1, 1, 1});
  // One token, top-2 of 8: two experts touched, two assignments; no attention pairs.
  const auto t = op_totals(g, one_decode_token(g, 2, 2));
  const auto p = count_params(m);
  // Active parameters without the input embedding are all GEMM weights of one token's path (norms are ~1e-5 of it).
  CHECK(t.flops == Approx(2.0 * static_cast<double>(p.active_without_embedding)).epsilon(0.001));
}

TEST_CASE("Weight bytes read when every expert is touched equal the memory breakdown's weights (minus embedding)") {
  const auto m = test::load("llama4-maverick");
  const ParallelLayout layout{8, 8, 1, 1};
  const auto g = graph(m, "fp8", layout);
  const auto prec = resolve_precision("fp8", m, test::precisions());
  const auto w = weight_bytes_per_gpu(m, prec, layout, false);
  const auto t = op_totals(g, one_decode_token(g, static_cast<double>(g.experts_per_rank), 1));
  // The op graph reads every stored weight of the stage except the embedding table (a row gather).
  CHECK(t.weight_bytes == Approx(w.total - w.of(Module::embedding)).epsilon(1e-6));
}

TEST_CASE("Tensor parallelism adds two all-reduces per layer, DP attention adds MoE all-to-all") {
  const auto m = test::load("qwen3-235b-a22b");
  auto count = [](const OpGraph& g, OpKind k) {
    int n = 0;
    for (const auto& op : g.ops) n += op.kind == k ? op.repeat : 0;
    return n;
  };
  const auto tp = graph(m, "fp8", {8, 1, 1, 1});
  CHECK(count(tp, OpKind::all_reduce) == 1 + 2 * 94);  // embedding + attention and MoE per layer
  CHECK(count(tp, OpKind::all_to_all) == 0);
  const auto dep = graph(m, "fp8", {1, 8, 1, 8});
  CHECK(count(dep, OpKind::all_reduce) == 0);
  CHECK(count(dep, OpKind::all_to_all) == 2 * 94);  // dispatch and combine
  const auto pp = graph(m, "fp8", {4, 1, 2, 1});
  CHECK(pp.last_layer - pp.first_layer == 47);
}

TEST_CASE("MLA decode reads the 576-wide latent once per cached token and layer (DeepSeek-V3)") {
  const auto m = test::load("deepseek-v3");
  const auto g = graph(m, "fp8-block", {1, 8, 1, 8});
  StepValues x{};
  x[static_cast<std::size_t>(StepVar::kv_read_full)] = 1000;
  double kv = 0;
  for (const auto& op : g.ops)
    if (op.kind == OpKind::attention_decode) kv += op.repeat * op.kv_bytes.at(x);
  CHECK(kv == Approx(1000.0 * 576 * 2 * 61));
}
