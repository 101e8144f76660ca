// attention: the masks worked by hand (a key in the previous chunk excluded, a sliding window, GQA head mapping,
// a cache that starts mid-sequence), then every path against the reference for prefill and decode shapes.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "kernel_test_util.hpp"
#include "kernels/attention.hpp"

using namespace moeplan::kernels;

namespace {

// Runs the reference and every fast path; returns the reference output and checks the paths against it.
std::vector<float> run_all(const AttentionParams& p, const std::vector<float>& q, const std::vector<std::int64_t>& pos,
                           const std::vector<float>& k, const std::vector<float>& v) {
  std::vector<float> ref(static_cast<std::size_t>(p.q_tokens * p.q_heads * p.head_dim), -1.0f);
  attention_ref(p, q.data(), pos.data(), k.data(), v.data(), ref.data());
  for (const auto& pc : moeplan::test::path_cases()) {
    std::vector<float> got(ref.size(), -1.0f);
    attention(pc.ctx, p, q.data(), pos.data(), k.data(), v.data(), got.data());
    INFO(pc.name << ": Tq=" << p.q_tokens << " Tk=" << p.kv_tokens << " Hq=" << p.q_heads << " Hkv=" << p.kv_heads
                 << " D=" << p.head_dim << " mask=" << static_cast<int>(p.mask) << " size=" << p.mask_tokens
                 << " first=" << p.kv_first_pos);
    CHECK(moeplan::test::compare(got, ref, {1e-5, 1e-4}) == "");
  }
  return ref;
}

AttentionParams params(std::int64_t tq, std::int64_t tk, std::int64_t hq, std::int64_t hkv, std::int64_t d) {
  AttentionParams p;
  p.q_tokens = tq;
  p.kv_tokens = tk;
  p.q_heads = hq;
  p.kv_heads = hkv;
  p.head_dim = d;
  p.scale = 1.0f;
  return p;
}

}  // namespace

TEST_CASE("attention by hand: causal softmax weights") {
  // One head, D = 1, query at position 1 with q = 1; keys 0 and ln 3: weights 1/4 and 3/4 on values 10 and 20.
  auto p = params(1, 2, 1, 1, 1);
  const auto out = run_all(p, {1.0f}, {1}, {0.0f, std::log(3.0f)}, {10.0f, 20.0f});
  CHECK(out[0] == Approx(17.5));
  // At position 0 only key 0 is visible (the later key is masked).
  CHECK(run_all(p, {1.0f}, {0}, {0.0f, std::log(3.0f)}, {10.0f, 20.0f})[0] == Approx(10.0));
}

TEST_CASE("attention by hand: a chunked mask excludes the key in the previous chunk") {
  // Chunk C = 2: positions {0, 1} and {2, 3}. Equal scores (k = 0), values 10, 20, 30.
  auto p = params(1, 3, 1, 1, 1);
  const std::vector<float> q = {1}, k = {0, 0, 0}, v = {10, 20, 30};
  CHECK(run_all(p, q, {2}, k, v)[0] == Approx(20.0));  // causal: mean of all three
  p.mask = AttentionMask::chunked;
  p.mask_tokens = 2;
  CHECK(run_all(p, q, {2}, k, v)[0] == Approx(30.0));  // only key 2: key 1 is in chunk 0
  CHECK(run_all(p, q, {1}, k, v)[0] == Approx(15.0));  // keys 0 and 1
  CHECK(visible_keys(p, 2).first == 2);
  CHECK(visible_keys(p, 2).last == 3);
  // Llama 4: chunks of 8192 aligned to position 0; a query at 8192 starts a new chunk and sees only itself.
  p.mask_tokens = 8192;
  p.kv_tokens = 9000;
  CHECK(visible_keys(p, 8191).first == 0);
  CHECK(visible_keys(p, 8191).last == 8192);
  CHECK(visible_keys(p, 8192).first == 8192);
  CHECK(visible_keys(p, 8192).last == 8193);
}

TEST_CASE("attention by hand: a sliding window keeps the W most recent keys") {
  auto p = params(1, 3, 1, 1, 1);
  p.mask = AttentionMask::sliding_window;
  p.mask_tokens = 2;
  CHECK(run_all(p, {1}, {2}, {0, 0, 0}, {10, 20, 30})[0] == Approx(25.0));  // keys 1 and 2
  p.mask_tokens = 1;
  CHECK(run_all(p, {1}, {2}, {0, 0, 0}, {10, 20, 30})[0] == Approx(30.0));  // the query's own key only
}

TEST_CASE("attention by hand: GQA maps query heads to their KV head") {
  // Hq = 4, Hkv = 2, D = 1, one key: heads 0-1 read KV head 0 (value 5), heads 2-3 KV head 1 (value 7).
  auto p = params(1, 1, 4, 2, 1);
  const auto out = run_all(p, {1, 2, 3, 4}, {0}, {0.5f, -0.5f}, {5, 7});
  CHECK(out == std::vector<float>{5, 5, 7, 7});
}

TEST_CASE("attention by hand: a cache that starts mid-sequence, and a query that sees no key") {
  // Cache rows hold positions 4, 5, 6 (kv_first_pos = 4), chunk 4: a query at 6 sees all three rows.
  auto p = params(1, 3, 1, 1, 1);
  p.mask = AttentionMask::chunked;
  p.mask_tokens = 4;
  p.kv_first_pos = 4;
  CHECK(run_all(p, {1}, {6}, {0, 0, 0}, {10, 20, 30})[0] == Approx(20.0));
  // A query at 8 (next chunk) sees none of the cached rows: zeros.
  CHECK(run_all(p, {1}, {8}, {0, 0, 0}, {10, 20, 30})[0] == 0.0f);
}

TEST_CASE("attention: every path matches the reference (prefill, decode, GQA, all masks)") {
  struct Case {
    std::int64_t tq, tk, hq, hkv, d;
    AttentionMask mask;
    std::int64_t size;
  };
  const std::vector<Case> cases = {
      {1, 1, 1, 1, 1, AttentionMask::causal, 0},          {5, 5, 2, 1, 7, AttentionMask::causal, 0},
      {17, 17, 4, 2, 16, AttentionMask::causal, 0},       {33, 40, 5, 1, 128, AttentionMask::causal, 0},
      {64, 64, 8, 2, 64, AttentionMask::chunked, 16},     {70, 70, 3, 3, 9, AttentionMask::sliding_window, 20},
      {1, 1500, 5, 1, 128, AttentionMask::causal, 0},     {1, 1500, 8, 8, 64, AttentionMask::causal, 0},
      {1, 1300, 16, 1, 32, AttentionMask::chunked, 1000}, {1, 900, 6, 2, 33, AttentionMask::sliding_window, 700},
      {3, 700, 40, 8, 128, AttentionMask::causal, 0},     {2, 2100, 1, 1, 24, AttentionMask::sliding_window, 2050},
  };
  std::uint32_t seed = 10;
  for (const Case& c : cases) {
    auto p = params(c.tq, c.tk, c.hq, c.hkv, c.d);
    p.mask = c.mask;
    p.mask_tokens = c.size;
    p.scale = 1.0f / std::sqrt(static_cast<float>(c.d));
    // q and k spread over [-3, 3] so some softmaxes are peaked and some flat
    const auto q = moeplan::test::random_floats(static_cast<std::size_t>(c.tq * c.hq * c.d), seed++, -3, 3);
    const auto k = moeplan::test::random_floats(static_cast<std::size_t>(c.tk * c.hkv * c.d), seed++, -3, 3);
    const auto v = moeplan::test::random_floats(static_cast<std::size_t>(c.tk * c.hkv * c.d), seed++);
    std::vector<std::int64_t> pos(static_cast<std::size_t>(c.tq));
    for (std::int64_t t = 0; t < c.tq; ++t) pos[static_cast<std::size_t>(t)] = c.tk - c.tq + t;  // the last Tq tokens
    run_all(p, q, pos, k, v);
  }
}

TEST_CASE("attention rejects inconsistent head counts and masks") {
  auto p = params(1, 1, 3, 2, 4);
  CHECK_THROWS_AS(check_attention_params(p), std::invalid_argument);
  p = params(1, 1, 2, 2, 4);
  p.mask = AttentionMask::chunked;
  CHECK_THROWS_AS(check_attention_params(p), std::invalid_argument);
}
