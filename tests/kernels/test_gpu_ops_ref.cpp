// The CUDA executor's references and host-side layout math (kernels/gpu_ops.hpp, kernels/gpu_layout.hpp) on the
// CPU: each reference against an independent existing one, and the functions the kernels call for tiling, paging,
// splitting and scale addressing against hand-worked cases.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "kernel_test_util.hpp"
#include "kernels/activation.hpp"
#include "kernels/gpu_ops.hpp"
#include "kernels/matmul.hpp"
#include "kernels/weights.hpp"

using namespace moeplan::kernels;
using moeplan::test::compare;
using moeplan::test::random_floats;
using moeplan::test::random_ids;

namespace {

std::vector<std::uint16_t> to_bf16(const std::vector<float>& x) {
  std::vector<std::uint16_t> out(x.size());
  convert_bf16_ref(x.data(), static_cast<std::int64_t>(x.size()), out.data());
  return out;
}

}  // namespace

TEST_CASE("moe_permute_ref is the stable sort build_expert_dispatch makes, across several chunks", "[gpu_ops]") {
  const std::int64_t tokens = 700, k = 2, experts = 16, pairs = tokens * k;  // 1400 pairs: 6 chunks of 256
  const auto ids = random_ids(static_cast<std::size_t>(pairs), experts, 7);
  const auto weights = random_floats(static_cast<std::size_t>(pairs), 8, 0.f, 1.f);
  std::vector<std::byte> workspace(static_cast<std::size_t>(gpu::permute_workspace_bytes(pairs, experts)));
  CHECK(workspace.size() == 2 * 6 * 16 * 4);
  std::vector<std::int64_t> offsets(experts + 1);
  std::vector<std::int32_t> row_token(pairs), pair_row(pairs);
  std::vector<float> row_weight(pairs);
  moe_permute_ref(ids.data(), weights.data(), pairs, k, experts, workspace.data(), offsets.data(), row_token.data(),
                  row_weight.data(), pair_row.data());
  const ExpertDispatch d = build_expert_dispatch(ids.data(), weights.data(), tokens, k, experts);
  CHECK(offsets == d.expert_offsets);
  for (std::int64_t r = 0; r < pairs; ++r) {
    REQUIRE(row_token[r] == d.row_token[r]);
    REQUIRE(row_weight[r] == d.row_weight[r]);
  }
  // pair_row inverts the sort: pair i lands on a row of its expert that names its token
  for (std::int64_t i = 0; i < pairs; ++i) {
    const std::int32_t r = pair_row[i];
    REQUIRE(row_token[r] == i / k);
    REQUIRE(r >= offsets[ids[i]]);
    REQUIRE(r < offsets[ids[i] + 1]);
  }
  auto bad = ids;
  bad[300] = static_cast<std::int32_t>(experts);
  CHECK_THROWS_AS(moe_permute_ref(bad.data(), nullptr, pairs, k, experts, workspace.data(), offsets.data(),
                                  row_token.data(), row_weight.data(), pair_row.data()),
                  std::invalid_argument);
}

TEST_CASE("moe_gather_ref then moe_combine_ref add each token's weighted copies back", "[gpu_ops]") {
  const std::int64_t tokens = 37, k = 3, experts = 5, hidden = 24, pairs = tokens * k;
  const auto ids = random_ids(static_cast<std::size_t>(pairs), experts, 11);
  const auto weights = random_floats(static_cast<std::size_t>(pairs), 12, 0.f, 1.f);
  const auto x = random_floats(static_cast<std::size_t>(tokens * hidden), 13);
  std::vector<std::byte> workspace(static_cast<std::size_t>(gpu::permute_workspace_bytes(pairs, experts)));
  std::vector<std::int64_t> offsets(experts + 1);
  std::vector<std::int32_t> row_token(pairs), pair_row(pairs);
  std::vector<float> row_weight(pairs);
  moe_permute_ref(ids.data(), weights.data(), pairs, k, experts, workspace.data(), offsets.data(), row_token.data(),
                  row_weight.data(), pair_row.data());
  std::vector<float> x_sorted(static_cast<std::size_t>(pairs * hidden));
  moe_gather_ref(x.data(), hidden, row_token.data(), nullptr, pairs, x_sorted.data());
  std::vector<float> y(x.size(), 1.0f), expected(x.size());
  moe_combine_ref(x_sorted.data(), hidden, pair_row.data(), weights.data(), tokens, k, y.data());
  for (std::int64_t t = 0; t < tokens; ++t) {
    float w_sum = 0;
    for (std::int64_t s = 0; s < k; ++s) w_sum += weights[t * k + s];
    for (std::int64_t c = 0; c < hidden; ++c) expected[t * hidden + c] = 1.0f + x[t * hidden + c] * w_sum;
  }
  CHECK(compare(y, expected, {1e-6, 1e-6}).empty());
  // a dropped pair (pair_row -1) adds nothing: token 4 gets only its other two slots
  auto dropped = pair_row;
  dropped[4 * k + 1] = -1;
  std::fill(y.begin(), y.end(), 1.0f);
  moe_combine_ref(x_sorted.data(), hidden, dropped.data(), weights.data(), tokens, k, y.data());
  CHECK(y[4 * hidden + 2] == Approx(1.0f + x[4 * hidden + 2] * (weights[4 * k] + weights[4 * k + 2])).epsilon(1e-6));
  CHECK(y[5 * hidden + 2] == Approx(expected[5 * hidden + 2]).epsilon(1e-6));
  // the row scale multiplies the gathered copy (Llama 4 scales the expert input)
  moe_gather_ref(x.data(), hidden, row_token.data(), row_weight.data(), pairs, x_sorted.data());
  CHECK(x_sorted[5 * hidden + 3] == x[row_token[5] * hidden + 3] * row_weight[5]);
}

TEST_CASE("quantize_fp8_per_token_ref maps each row's max onto 448 and round-trips within e4m3's step",
          "[gpu_ops]") {
  const std::int64_t rows = 4, cols = 300;
  auto x = random_floats(static_cast<std::size_t>(rows * cols), 21, -3.f, 3.f);
  std::fill(x.begin() + 2 * cols, x.begin() + 3 * cols, 0.0f);  // row 2 all zero
  std::vector<std::uint8_t> q(x.size());
  std::vector<float> scale(rows);
  quantize_fp8_per_token_ref(x.data(), rows, cols, q.data(), scale.data());
  CHECK(scale[2] == 1.0f);
  for (std::int64_t r = 0; r < rows; ++r) {
    float amax = 0;
    for (std::int64_t c = 0; c < cols; ++c) amax = std::max(amax, std::fabs(x[r * cols + c]));
    if (r != 2) CHECK(scale[r] == amax / 448.0f);
    for (std::int64_t c = 0; c < cols; ++c) {
      const float back = fp8_e4m3_to_float(q[r * cols + c]) * scale[r];
      // e4m3 keeps 3 mantissa bits: relative error <= 2^-4 for normals, absolute <= 2^-10 * scale for subnormals
      REQUIRE(std::fabs(back - x[r * cols + c]) <= 0.0625f * std::fabs(x[r * cols + c]) + 0x1p-10f * scale[r]);
    }
  }
}

TEST_CASE("grouped_gemm_bf16_ref equals grouped_matmul_ref on BF16 weights, and the fused form is SwiGLU of it",
          "[gpu_ops]") {
  const std::int64_t experts = 3, n = 48, k = 40;
  const std::vector<std::int64_t> offsets = {0, 5, 5, 12};  // expert 1 has no rows
  const std::int64_t rows = offsets.back();
  const auto x = to_bf16(random_floats(static_cast<std::size_t>(rows * k), 31));
  const auto w = to_bf16(random_floats(static_cast<std::size_t>(experts * n * k), 32));
  std::vector<float> x_f(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) x_f[i] = bf16_to_float(x[i]);
  std::vector<WeightView> views(experts);
  for (std::int64_t e = 0; e < experts; ++e) views[e] = {WeightDtype::bf16, w.data() + e * n * k, n, k, nullptr};
  std::vector<float> expected(static_cast<std::size_t>(rows * n)), got(expected.size());
  grouped_matmul_ref(x_f.data(), offsets.data(), experts, views.data(), expected.data(), false);
  GroupedGemmShape shape{rows, experts, n, k, false};
  grouped_gemm_bf16_ref(x.data(), w.data(), offsets.data(), shape, got.data());
  CHECK(compare(got, expected, {1e-6, 1e-6}).empty());

  shape.fuse_swiglu = true;
  std::vector<float> fused(static_cast<std::size_t>(rows * n / 2));
  grouped_gemm_bf16_ref(x.data(), w.data(), offsets.data(), shape, fused.data());
  const float gate = expected[7 * n + 3], up = expected[7 * n + n / 2 + 3];
  CHECK(fused[7 * (n / 2) + 3] == Approx(gate / (1.0f + std::exp(-gate)) * up).epsilon(1e-6));

  shape.fuse_swiglu = false;
  const std::vector<std::int64_t> bad_offsets = {0, 5, 5, 11};
  CHECK_THROWS_AS(grouped_gemm_bf16_ref(x.data(), w.data(), bad_offsets.data(), shape, got.data()),
                  std::invalid_argument);
}

TEST_CASE("grouped_gemm_fp8_ref: per-channel scales match grouped_matmul_ref, 128-blocks address their block",
          "[gpu_ops]") {
  const std::int64_t experts = 2, n = 200, k = 272;  // partial 128-blocks in both N and K
  const std::vector<std::int64_t> offsets = {0, 3, 7};
  const std::int64_t rows = offsets.back();
  const auto x = random_floats(static_cast<std::size_t>(rows * k), 41, -2.f, 2.f);
  std::vector<std::uint8_t> x_q(x.size());
  std::vector<float> x_scale(rows);
  quantize_fp8_per_token_ref(x.data(), rows, k, x_q.data(), x_scale.data());
  std::vector<std::uint8_t> w_q(static_cast<std::size_t>(experts * n * k));
  const auto w_f = random_floats(w_q.size(), 42, -400.f, 400.f);
  for (std::size_t i = 0; i < w_q.size(); ++i) w_q[i] = float_to_fp8_e4m3(w_f[i]);
  const auto channel_scale = random_floats(static_cast<std::size_t>(experts * n), 43, 1e-4f, 1e-3f);

  // per channel, against grouped_matmul_ref on the dequantised x and FP8 weights with row scales
  std::vector<float> x_deq(x.size());
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < k; ++c) x_deq[r * k + c] = fp8_e4m3_to_float(x_q[r * k + c]) * x_scale[r];
  std::vector<WeightView> views(experts);
  for (std::int64_t e = 0; e < experts; ++e)
    views[e] = {WeightDtype::fp8_e4m3, w_q.data() + e * n * k, n, k, channel_scale.data() + e * n};
  std::vector<float> expected(static_cast<std::size_t>(rows * n)), got(expected.size());
  grouped_matmul_ref(x_deq.data(), offsets.data(), experts, views.data(), expected.data(), false);
  const GroupedGemmShape shape{rows, experts, n, k, false};
  grouped_gemm_fp8_ref(x_q.data(), x_scale.data(), w_q.data(), channel_scale.data(), gpu::Fp8ScaleLayout::per_channel,
                       offsets.data(), shape, got.data());
  CHECK(compare(got, expected, {1e-5, 1e-5}).empty());

  // 128 x 128 blocks: [E, ceil(200/128) = 2, ceil(272/128) = 3] scales
  CHECK(gpu::fp8_weight_scale_count(gpu::Fp8ScaleLayout::block_128, experts, n, k) == 2 * 2 * 3);
  CHECK(gpu::fp8_weight_scale_index(gpu::Fp8ScaleLayout::block_128, n, k, 1, 130, 271) == (1 * 2 + 1) * 3 + 2);
  CHECK(gpu::fp8_weight_scale_index(gpu::Fp8ScaleLayout::per_channel, n, k, 1, 130, 271) == 200 + 130);
  // one block's scale doubled doubles exactly that block's contribution: compare with the block zeroed
  std::vector<float> block_scale(12, 0.5f), doubled(got.size()), zeroed(got.size()), base(got.size());
  grouped_gemm_fp8_ref(x_q.data(), x_scale.data(), w_q.data(), block_scale.data(), gpu::Fp8ScaleLayout::block_128,
                       offsets.data(), shape, base.data());
  block_scale[(1 * 2 + 1) * 3 + 2] = 1.0f;  // expert 1, rows 128.., cols 256..
  grouped_gemm_fp8_ref(x_q.data(), x_scale.data(), w_q.data(), block_scale.data(), gpu::Fp8ScaleLayout::block_128,
                       offsets.data(), shape, doubled.data());
  block_scale[(1 * 2 + 1) * 3 + 2] = 0.0f;
  grouped_gemm_fp8_ref(x_q.data(), x_scale.data(), w_q.data(), block_scale.data(), gpu::Fp8ScaleLayout::block_128,
                       offsets.data(), shape, zeroed.data());
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < n; ++c) {
      const std::size_t i = static_cast<std::size_t>(r * n + c);
      const bool in_block = r >= 3 && c >= 128;
      // base = zeroed + b, doubled = zeroed + 2b, where b is the block's part (0 outside the block)
      const double b = base[i] - zeroed[i];
      REQUIRE(std::fabs(doubled[i] - zeroed[i] - 2 * b) <= 1e-4 + 1e-5 * std::fabs(doubled[i]));
      if (!in_block) REQUIRE(b == 0.0);
    }
}

TEST_CASE("expert_tile_lookup covers every sorted row once, within grouped_gemm_max_m_tiles", "[gpu_ops]") {
  const std::int64_t block_m = 64;
  const std::vector<std::int64_t> offsets = {0, 0, 1, 130, 130, 200, 263};  // empty, 1 row, 129, empty, 70, 63
  const std::int64_t experts = 6, rows = offsets.back();
  const std::int64_t bound = gpu::grouped_gemm_max_m_tiles(rows, experts, block_m);
  CHECK(bound == 5 + 6);
  std::vector<int> seen(rows, 0);
  std::int64_t tiles = 0;
  for (std::int64_t t = 0; t < bound; ++t) {
    const gpu::ExpertTile tile = gpu::expert_tile_lookup(offsets.data(), experts, t, block_m);
    if (tile.expert < 0) continue;
    ++tiles;
    REQUIRE(tile.row_end - tile.row_begin <= block_m);
    REQUIRE(tile.row_begin >= offsets[tile.expert]);
    REQUIRE(tile.row_end <= offsets[tile.expert + 1]);
    for (std::int64_t r = tile.row_begin; r < tile.row_end; ++r) ++seen[r];
  }
  CHECK(tiles == 1 + 3 + 2 + 1);  // ceil(1/64) + ceil(129/64) + ceil(70/64) + ceil(63/64)
  CHECK(std::all_of(seen.begin(), seen.end(), [](int c) { return c == 1; }));
  CHECK(gpu::expert_tile_lookup(offsets.data(), experts, tiles, block_m).expert == -1);
  // Maverick decode: 1 token, top-1 of 128 experts -> one tile
  CHECK(gpu::grouped_gemm_max_m_tiles(1, 128, 64) == 2);
}

TEST_CASE("decode_split_plan fills the SMs without slices under 256 keys, and its workspace bytes", "[gpu_ops]") {
  // Maverick chunked layer at a full chunk: 1 sequence, 8 KV heads, 8192 keys, 132 SMs (H100/H200 SXM)
  gpu::DecodeSplit s = gpu::decode_split_plan(8192, 1, 8, 132);
  CHECK(s.splits == 32);  // ceil(264 / 8) = 33 wanted, 8192 / 256 = 32 allowed
  CHECK(s.keys_per_split == 256);
  // a batch of 64 sequences already fills the GPU: no split
  s = gpu::decode_split_plan(8192, 64, 8, 132);
  CHECK(s.splits == 1);
  CHECK(s.keys_per_split == 8192);
  // a 1M-token global layer: 33 slices of whole 64-key steps covering every key
  s = gpu::decode_split_plan(1 << 20, 1, 8, 132);
  CHECK(s.keys_per_split % gpu::kDecodeKeyStep == 0);
  CHECK(s.splits * s.keys_per_split >= (1 << 20));
  CHECK((s.splits - 1) * s.keys_per_split < (1 << 20));
  CHECK(s.splits == 33);
  // short contexts stay whole
  s = gpu::decode_split_plan(100, 1, 8, 132);
  CHECK(s.splits == 1);
  CHECK(s.keys_per_split == 128);
  CHECK(gpu::decode_workspace_bytes(2, 40, 128, {4, 256}) == 2 * 40 * 4 * 130 * 4);
}

TEST_CASE("softmax_merge_factors: two halves merge into the whole softmax", "[gpu_ops]") {
  const std::vector<float> scores = {0.3f, -1.2f, 2.5f, 0.0f, 1.1f, -0.4f};
  const std::vector<float> values = {1.f, 2.f, 3.f, 4.f, 5.f, 6.f};
  auto summarise = [&](std::size_t lo, std::size_t hi, float& m, float& l, float& o) {
    m = -INFINITY;
    for (std::size_t j = lo; j < hi; ++j) m = std::max(m, scores[j]);
    l = o = 0;
    for (std::size_t j = lo; j < hi; ++j) {
      l += std::exp(scores[j] - m);
      o += std::exp(scores[j] - m) * values[j];
    }
  };
  float m_a, l_a, o_a, m_b, l_b, o_b, m_all, l_all, o_all, fa, fb;
  summarise(0, 2, m_a, l_a, o_a);
  summarise(2, 6, m_b, l_b, o_b);
  summarise(0, 6, m_all, l_all, o_all);
  const float m = gpu::softmax_merge_factors(m_a, m_b, &fa, &fb);
  CHECK(m == m_all);
  CHECK((o_a * fa + o_b * fb) / (l_a * fa + l_b * fb) == Approx(o_all / l_all).epsilon(1e-6));
  // an empty slice contributes nothing; two empty slices stay empty
  CHECK(gpu::softmax_merge_factors(m_a, -INFINITY, &fa, &fb) == m_a);
  CHECK(fa == 1.0f);
  CHECK(fb == 0.0f);
  gpu::softmax_merge_factors(-INFINITY, -INFINITY, &fa, &fb);
  CHECK(fa == 0.0f);
  CHECK(fb == 0.0f);
}

namespace {

// A paged copy of contiguous caches k, v: [tokens, Hkv, D] of `seqs` sequences, pages handed out in a shuffled order.
struct PagedCache {
  gpu::PagedKvLayout layout;
  std::vector<std::int32_t> page_table;
  std::vector<float> k_pages, v_pages;
};
PagedCache page_out(const std::vector<std::vector<float>>& k, const std::vector<std::vector<float>>& v,
                    const std::vector<std::int32_t>& lens, gpu::PagedKvLayout layout) {
  PagedCache c;
  c.layout = layout;
  const std::int64_t seqs = static_cast<std::int64_t>(lens.size()), row = layout.kv_heads * layout.head_dim;
  const std::int64_t pages = seqs * layout.max_pages_per_seq;
  std::vector<std::int32_t> order(static_cast<std::size_t>(pages));
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937(5));
  c.page_table.assign(static_cast<std::size_t>(pages), -1);
  c.k_pages.assign(static_cast<std::size_t>(pages * gpu::paged_kv_page_elems(layout)), NAN);
  c.v_pages = c.k_pages;
  for (std::int64_t s = 0; s < seqs; ++s)
    for (std::int64_t pos = 0; pos < lens[s]; ++pos) {
      std::int32_t& entry = c.page_table[s * layout.max_pages_per_seq + pos / layout.page_tokens];
      if (entry < 0) entry = order[s * layout.max_pages_per_seq + pos / layout.page_tokens];
      for (std::int64_t g = 0; g < layout.kv_heads; ++g) {
        const std::int64_t at = gpu::paged_kv_offset(layout, c.page_table.data(), s, pos, g);
        for (std::int64_t d = 0; d < layout.head_dim; ++d) {
          c.k_pages[at + d] = k[s][pos * row + g * layout.head_dim + d];
          c.v_pages[at + d] = v[s][pos * row + g * layout.head_dim + d];
        }
      }
    }
  return c;
}

}  // namespace

TEST_CASE("paged_attention_decode_ref equals attention_ref on the contiguous cache (causal and chunked)",
          "[gpu_ops]") {
  const std::int64_t q_heads = 10, kv_heads = 2, D = 32;
  const std::vector<std::int32_t> lens = {1, 37, 70};
  gpu::PagedKvLayout layout{16, kv_heads, D, 5};
  CHECK(gpu::paged_kv_page_elems(layout) == 16 * 2 * 32);
  std::vector<std::vector<float>> k, v;
  for (std::size_t s = 0; s < lens.size(); ++s) {
    k.push_back(random_floats(static_cast<std::size_t>(lens[s] * kv_heads * D), 60 + static_cast<std::uint32_t>(s)));
    v.push_back(random_floats(static_cast<std::size_t>(lens[s] * kv_heads * D), 70 + static_cast<std::uint32_t>(s)));
  }
  const PagedCache cache = page_out(k, v, lens, layout);
  // hand check of the address: sequence 2, position 37 -> page table column 2, slot 5
  const std::int32_t page = cache.page_table[2 * 5 + 2];
  CHECK(gpu::paged_kv_offset(layout, cache.page_table.data(), 2, 37, 1) == (page * 16 * 2 + 5 * 2 + 1) * 32);
  const auto q = random_floats(static_cast<std::size_t>(3 * q_heads * D), 80);
  for (const AttentionMask mask : {AttentionMask::causal, AttentionMask::chunked}) {
    DecodeAttentionParams p{3, q_heads, kv_heads, D, 0.2f, mask, mask == AttentionMask::chunked ? 32 : 0};
    std::vector<float> got(q.size()), expected(q.size());
    paged_attention_decode_ref(p, layout, q.data(), lens.data(), cache.page_table.data(), cache.k_pages.data(),
                               cache.v_pages.data(), got.data());
    for (std::size_t s = 0; s < lens.size(); ++s) {
      AttentionParams ap{1, lens[s], q_heads, kv_heads, D, 0.2f, mask, p.chunk_tokens, 0};
      const std::int64_t pos = lens[s] - 1;
      attention_ref(ap, q.data() + s * q_heads * D, &pos, k[s].data(), v[s].data(), expected.data() + s * q_heads * D);
    }
    CHECK(compare(got, expected, {1e-6, 1e-6}).empty());
  }
  // a chunked layer never reads the pages before its chunk: unmap them and get the same result
  DecodeAttentionParams p{3, q_heads, kv_heads, D, 0.2f, AttentionMask::chunked, 32};
  auto table = cache.page_table;
  table[2 * 5 + 0] = table[2 * 5 + 1] = -1;  // sequence 2 (70 tokens) reads positions 64..69 only
  std::vector<float> a(q.size()), b(q.size());
  paged_attention_decode_ref(p, layout, q.data(), lens.data(), cache.page_table.data(), cache.k_pages.data(),
                             cache.v_pages.data(), a.data());
  paged_attention_decode_ref(p, layout, q.data(), lens.data(), table.data(), cache.k_pages.data(),
                             cache.v_pages.data(), b.data());
  CHECK(a == b);
  p.mask = AttentionMask::causal;  // a global layer does read them
  CHECK_THROWS_AS(paged_attention_decode_ref(p, layout, q.data(), lens.data(), table.data(), cache.k_pages.data(),
                                             cache.v_pages.data(), b.data()),
                  std::invalid_argument);
  p.q_heads = 18;  // 9 query heads per KV head
  CHECK_THROWS_AS(check_decode_params(p, layout), std::invalid_argument);
}

TEST_CASE("paged_kv_write_ref puts each row in its page slot and paged_kv_gather_ref reads it back", "[gpu_ops]") {
  const std::int64_t kv_heads = 2, D = 8, row = kv_heads * D;
  const std::vector<std::int32_t> lens = {11, 29};
  const gpu::PagedKvLayout layout{4, kv_heads, D, 8};
  std::vector<std::vector<float>> k;
  for (std::size_t s = 0; s < lens.size(); ++s)
    k.push_back(random_floats(static_cast<std::size_t>(lens[s] * row), 90 + static_cast<std::uint32_t>(s)));
  const PagedCache want = page_out(k, k, lens, layout);  // the pages written position by position
  // The same rows written in one call, the two sequences' positions interleaved, into pages that start as NaN.
  std::vector<std::int64_t> row_seq, row_pos;
  std::vector<float> rows;
  for (std::int64_t pos = 0; pos < 29; ++pos)
    for (std::int64_t s = 1; s >= 0; --s)
      if (pos < lens[static_cast<std::size_t>(s)]) {
        row_seq.push_back(s);
        row_pos.push_back(pos);
        rows.insert(rows.end(), k[static_cast<std::size_t>(s)].begin() + pos * row, k[static_cast<std::size_t>(s)].begin() + (pos + 1) * row);
      }
  std::vector<float> pages(want.k_pages.size(), NAN);
  paged_kv_write_ref(layout, want.page_table.data(), row_seq.data(), row_pos.data(),
                     static_cast<std::int64_t>(row_seq.size()), rows.data(), pages.data());
  for (std::size_t i = 0; i < pages.size(); ++i)
    if (!std::isnan(want.k_pages[i])) REQUIRE(pages[i] == want.k_pages[i]);
  // positions 7..28 of sequence 1 gathered back are its contiguous rows
  std::vector<float> back(static_cast<std::size_t>(22 * row));
  paged_kv_gather_ref(layout, want.page_table.data(), 1, 7, 22, pages.data(), back.data());
  CHECK(std::equal(back.begin(), back.end(), k[1].begin() + 7 * row));
  // a position whose page is not held is refused, in both directions
  CHECK_THROWS_AS(paged_kv_gather_ref(layout, want.page_table.data(), 0, 11, 2, pages.data(), back.data()),
                  std::invalid_argument);
  const std::int64_t seq = 0, pos = 12;
  CHECK_THROWS_AS(paged_kv_write_ref(layout, want.page_table.data(), &seq, &pos, 1, rows.data(), pages.data()),
                  std::invalid_argument);
}

TEST_CASE("paged_kv_write_ref rounds rows to BF16 pages as convert_bf16_ref does and the gather widens them back",
          "[gpu_ops]") {
  const std::int64_t kv_heads = 2, D = 8, row = kv_heads * D, count = 13;
  const gpu::PagedKvLayout layout{4, kv_heads, D, 4};
  const std::vector<std::int32_t> table = {2, 0, 3, 1};  // one sequence of up to 16 positions, pages out of order
  auto rows = random_floats(static_cast<std::size_t>(count * row), 95);
  rows[0] = 1.0f + 0x1.0p-8f;  // halfway between two BF16 values, the lower one even: rounds down
  rows[1] = 1.0f + 0x3.0p-8f;  // halfway, the upper one even: rounds up
  std::vector<std::int64_t> seq(static_cast<std::size_t>(count), 0), pos(static_cast<std::size_t>(count));
  std::iota(pos.begin(), pos.end(), 0);
  std::vector<std::uint16_t> pages(static_cast<std::size_t>(4 * gpu::paged_kv_page_elems(layout)), 0xffff);
  paged_kv_write_ref(layout, table.data(), seq.data(), pos.data(), count, rows.data(), pages.data());
  std::vector<std::uint16_t> codes(rows.size());
  convert_bf16_ref(rows.data(), count * row, codes.data());
  for (std::int64_t r = 0; r < count; ++r)
    for (std::int64_t g = 0; g < kv_heads; ++g)
      for (std::int64_t d = 0; d < D; ++d)
        REQUIRE(pages[gpu::paged_kv_offset(layout, table.data(), 0, r, g) + d] == codes[r * row + g * D + d]);
  CHECK(bf16_to_float(codes[0]) == 1.0f);
  CHECK(bf16_to_float(codes[1]) == 1.0f + 0x4.0p-8f);
  // positions 3..12 gathered back: the BF16 values widened exactly
  std::vector<float> back(static_cast<std::size_t>(10 * row));
  paged_kv_gather_ref(layout, table.data(), 0, 3, 10, pages.data(), back.data());
  for (std::size_t i = 0; i < back.size(); ++i) REQUIRE(back[i] == bf16_to_float(codes[3 * row + i]));
  const std::vector<std::int32_t> unmapped = {2, -1, 3, 1};
  CHECK_THROWS_AS(paged_kv_gather_ref(layout, unmapped.data(), 0, 3, 10, pages.data(), back.data()),
                  std::invalid_argument);
}

TEST_CASE("paged_attention_decode_ref on BF16 pages equals it on fp32 pages holding the same values", "[gpu_ops]") {
  const std::int64_t q_heads = 5, kv_heads = 1, D = 64;  // Maverick's 5 query heads per KV head
  const std::vector<std::int32_t> lens = {3, 50};
  const gpu::PagedKvLayout layout{16, kv_heads, D, 4};
  std::vector<std::vector<float>> k, v;
  for (std::size_t s = 0; s < lens.size(); ++s) {
    k.push_back(random_floats(static_cast<std::size_t>(lens[s] * kv_heads * D), 100 + static_cast<std::uint32_t>(s)));
    v.push_back(random_floats(static_cast<std::size_t>(lens[s] * kv_heads * D), 110 + static_cast<std::uint32_t>(s)));
  }
  PagedCache cache = page_out(k, v, lens, layout);
  // BF16 codes of the pages (NaN where nothing was written), and fp32 pages holding exactly the BF16 values
  std::vector<std::uint16_t> k16(cache.k_pages.size()), v16(cache.v_pages.size());
  convert_bf16_ref(cache.k_pages.data(), static_cast<std::int64_t>(k16.size()), k16.data());
  convert_bf16_ref(cache.v_pages.data(), static_cast<std::int64_t>(v16.size()), v16.data());
  for (std::size_t i = 0; i < k16.size(); ++i) {
    cache.k_pages[i] = bf16_to_float(k16[i]);
    cache.v_pages[i] = bf16_to_float(v16[i]);
  }
  const auto q = random_floats(static_cast<std::size_t>(2 * q_heads * D), 120);
  DecodeAttentionParams p{2, q_heads, kv_heads, D, 0.125f, AttentionMask::causal, 0};
  std::vector<float> from_f32(q.size()), from_bf16(q.size());
  paged_attention_decode_ref(p, layout, q.data(), lens.data(), cache.page_table.data(), cache.k_pages.data(),
                             cache.v_pages.data(), from_f32.data());
  p.kv_dtype = KvPageDtype::bf16;
  paged_attention_decode_ref(p, layout, q.data(), lens.data(), cache.page_table.data(), k16.data(), v16.data(),
                             from_bf16.data());
  CHECK(from_bf16 == from_f32);
}

TEST_CASE("visible_key_rows (device form) equals visible_keys for every mask", "[gpu_ops]") {
  for (const AttentionMask mask : {AttentionMask::causal, AttentionMask::chunked, AttentionMask::sliding_window})
    for (const std::int64_t first_pos : {0, 5, 40})
      for (std::int64_t q_pos = first_pos; q_pos < first_pos + 100; ++q_pos) {
        const AttentionParams p{1, 60, 1, 1, 32, 1.0f, mask, 16, first_pos};
        const KeyRange a = visible_keys(p, q_pos);
        const gpu::KeyRows b = gpu::visible_key_rows(mask, 16, first_pos, 60, q_pos);
        REQUIRE(a.first == b.first);
        REQUIRE(a.last == b.last);
      }
}
