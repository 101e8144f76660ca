// Router top-k and expert dispatch: ties, the three scoring rules by hand, Mixtral's equivalence, the dispatch
// order, gather/scatter, and a whole MoE block through grouped_matmul against a token-by-token computation.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "kernel_test_util.hpp"
#include "kernels/matmul.hpp"
#include "kernels/router.hpp"

using namespace moeplan::kernels;

namespace {
float sigmoid(double x) { return static_cast<float>(1.0 / (1.0 + std::exp(-x))); }
}  // namespace

TEST_CASE("router_topk_ref: ties go to the lower expert id") {
  const std::vector<float> logits = {1, 3, 3, 0};
  std::int32_t ids[2];
  float w[2];
  router_topk_ref(logits.data(), 1, 4, 1, RouterScoring::sigmoid_topk, ids, w);
  CHECK(ids[0] == 1);
  CHECK(w[0] == Approx(sigmoid(3)));
  router_topk_ref(logits.data(), 1, 4, 2, RouterScoring::sigmoid_topk, ids, w);
  CHECK(ids[0] == 1);
  CHECK(ids[1] == 2);
  // all equal: 0, 1, 2 in order
  const std::vector<float> flat = {2, 2, 2};
  std::int32_t ids3[3];
  float w3[3];
  router_topk_ref(flat.data(), 1, 3, 3, RouterScoring::softmax_topk, ids3, w3);
  CHECK(ids3[0] == 0);
  CHECK(ids3[1] == 1);
  CHECK(ids3[2] == 2);
  CHECK(w3[0] == Approx(1.0 / 3));
}

TEST_CASE("router_topk_ref: the three scoring rules by hand") {
  // logits [0, ln 3, ln 2, -inf-ish]: softmax over all = [1, 3, 2, ~0] / 6
  const std::vector<float> logits = {0, std::log(3.0f), std::log(2.0f), -50};
  std::int32_t ids[2];
  float w[2];
  router_topk_ref(logits.data(), 1, 4, 2, RouterScoring::softmax_topk, ids, w);
  CHECK(ids[0] == 1);
  CHECK(ids[1] == 2);
  CHECK(w[0] == Approx(0.5));       // 3/6
  CHECK(w[1] == Approx(1.0 / 3));   // 2/6
  router_topk_ref(logits.data(), 1, 4, 2, RouterScoring::softmax_topk_renorm, ids, w);
  CHECK(w[0] == Approx(0.6));       // 3/5
  CHECK(w[1] == Approx(0.4));       // 2/5
  router_topk_ref(logits.data(), 1, 4, 2, RouterScoring::sigmoid_topk, ids, w);
  CHECK(w[0] == Approx(0.75));      // sigmoid(ln 3) = 3/4
  CHECK(w[1] == Approx(2.0 / 3));   // sigmoid(ln 2) = 2/3
}

TEST_CASE("router: renormalised softmax top-k equals Mixtral's softmax over the top-k logits") {
  const std::int64_t T = 50, E = 8, k = 2;
  const auto logits = moeplan::test::random_floats(static_cast<std::size_t>(T * E), 4, -3, 3);
  std::vector<std::int32_t> ids(static_cast<std::size_t>(T * k));
  std::vector<float> w(ids.size());
  router_topk_ref(logits.data(), T, E, k, RouterScoring::softmax_topk_renorm, ids.data(), w.data());
  for (std::int64_t t = 0; t < T; ++t) {
    const double a = logits[static_cast<std::size_t>(t * E + ids[static_cast<std::size_t>(t * k)])];
    const double b = logits[static_cast<std::size_t>(t * E + ids[static_cast<std::size_t>(t * k + 1)])];
    CHECK(a >= b);
    CHECK(w[static_cast<std::size_t>(t * k)] == Approx(1.0 / (1.0 + std::exp(b - a))));
  }
}

TEST_CASE("router_topk: every path matches the reference exactly") {
  const std::int64_t T = 300, E = 128;
  const auto logits = moeplan::test::random_floats(static_cast<std::size_t>(T * E), 9, -4, 4);
  for (auto scoring : {RouterScoring::sigmoid_topk, RouterScoring::softmax_topk, RouterScoring::softmax_topk_renorm}) {
    for (std::int64_t k : {1, 8}) {
      std::vector<std::int32_t> ref_ids(static_cast<std::size_t>(T * k)), ids(ref_ids.size());
      std::vector<float> ref_w(ref_ids.size()), w(ref_ids.size());
      router_topk_ref(logits.data(), T, E, k, scoring, ref_ids.data(), ref_w.data());
      for (const auto& pc : moeplan::test::path_cases()) {
        router_topk(pc.ctx, logits.data(), T, E, k, scoring, ids.data(), w.data());
        INFO(pc.name << " k=" << k);
        CHECK(ids == ref_ids);
        CHECK(w == ref_w);
      }
    }
  }
}

TEST_CASE("build_expert_dispatch sorts rows by expert, tokens in order") {
  // token 0 -> experts (1, 0), token 1 -> experts (1, 2)
  const std::vector<std::int32_t> ids = {1, 0, 1, 2};
  const std::vector<float> w = {0.6f, 0.4f, 0.7f, 0.3f};
  const auto d = build_expert_dispatch(ids.data(), w.data(), 2, 2, 4);
  CHECK(d.expert_offsets == std::vector<std::int64_t>{0, 1, 3, 4, 4});
  CHECK(d.row_token == std::vector<std::int64_t>{0, 0, 1, 1});
  CHECK(d.row_weight == std::vector<float>{0.4f, 0.6f, 0.7f, 0.3f});
  const std::vector<std::int32_t> bad = {4};
  CHECK_THROWS_AS(build_expert_dispatch(bad.data(), w.data(), 1, 1, 4), std::invalid_argument);
}

TEST_CASE("gather_rows scales inputs, scatter_add_rows scales and sums outputs") {
  const std::vector<float> x = {1, 2, 3, 4};  // 2 tokens x hidden 2
  const std::vector<std::int64_t> row_token = {1, 0, 1};
  const std::vector<float> scale = {2, 3, 0.5f};
  for (const auto& pc : moeplan::test::path_cases()) {
    std::vector<float> xs(6);
    gather_rows(pc.ctx, x.data(), 2, row_token.data(), scale.data(), 3, xs.data());
    CHECK(xs == std::vector<float>{6, 8, 3, 6, 1.5f, 2});
    gather_rows(pc.ctx, x.data(), 2, row_token.data(), nullptr, 3, xs.data());
    CHECK(xs == std::vector<float>{3, 4, 1, 2, 3, 4});
    std::vector<float> y = {100, 100, 200, 200};
    scatter_add_rows(pc.ctx, xs.data(), 2, row_token.data(), scale.data(), 3, y.data());
    CHECK(y == std::vector<float>{103, 106, 207.5f, 210});
  }
}

TEST_CASE("MoE block: route, gather, grouped matmul, scatter equals the token-by-token sum") {
  // y[t] = sum over the token's k experts of weight * (x[t] · W_e^T) (Qwen3 / Mixtral: weight on the output), and
  // Llama 4's form y[t] = (weight * x[t]) · W_e^T (weight on the input); both are linear here, so they agree.
  const std::int64_t T = 37, E = 6, k = 2, H = 40, N = 24;
  const auto logits = moeplan::test::random_floats(static_cast<std::size_t>(T * E), 1, -2, 2);
  const auto x = moeplan::test::random_floats(static_cast<std::size_t>(T * H), 2);
  std::vector<std::vector<std::uint16_t>> w_bf16(E);
  std::vector<WeightView> views;
  for (std::int64_t e = 0; e < E; ++e) {
    for (float v : moeplan::test::random_floats(static_cast<std::size_t>(N * H), static_cast<std::uint32_t>(10 + e)))
      w_bf16[static_cast<std::size_t>(e)].push_back(float_to_bf16(v));
    views.push_back({WeightDtype::bf16, w_bf16[static_cast<std::size_t>(e)].data(), N, H, nullptr});
  }
  std::vector<std::int32_t> ids(static_cast<std::size_t>(T * k));
  std::vector<float> weights(ids.size());
  router_topk_ref(logits.data(), T, E, k, RouterScoring::softmax_topk_renorm, ids.data(), weights.data());
  // token by token with the reference matmul
  std::vector<float> expected(static_cast<std::size_t>(T * N), 0.0f), row(static_cast<std::size_t>(N));
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t s = 0; s < k; ++s) {
      const auto slot = static_cast<std::size_t>(t * k + s);
      matmul_ref(x.data() + t * H, 1, views[static_cast<std::size_t>(ids[slot])], row.data());
      for (std::int64_t n = 0; n < N; ++n)
        expected[static_cast<std::size_t>(t * N + n)] += weights[slot] * row[static_cast<std::size_t>(n)];
    }
  const auto d = build_expert_dispatch(ids.data(), weights.data(), T, k, E);
  const auto R = static_cast<std::int64_t>(d.row_token.size());
  for (const auto& pc : moeplan::test::path_cases()) {
    for (bool weight_on_input : {false, true}) {
      std::vector<float> xs(static_cast<std::size_t>(R * H)), ys(static_cast<std::size_t>(R * N));
      std::vector<float> y(static_cast<std::size_t>(T * N), 0.0f);
      const float* input_scale = weight_on_input ? d.row_weight.data() : nullptr;
      const float* output_scale = weight_on_input ? nullptr : d.row_weight.data();
      gather_rows(pc.ctx, x.data(), H, d.row_token.data(), input_scale, R, xs.data());
      grouped_matmul(pc.ctx, xs.data(), d.expert_offsets.data(), E, views.data(), ys.data());
      scatter_add_rows(pc.ctx, ys.data(), N, d.row_token.data(), output_scale, R, y.data());
      INFO(pc.name << (weight_on_input ? " weight on input" : " weight on output"));
      CHECK(moeplan::test::compare(y, expected, {1e-5, 1e-5}) == "");
    }
  }
}
