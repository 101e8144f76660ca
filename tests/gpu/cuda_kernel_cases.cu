// GPU cases: every CUDA kernel of kernels/gpu_ops.hpp against its reference twin (embed_rows, whose reference takes
// a C++20 WeightView, in test_cuda_backend's whole-model run) on seeded inputs, one table row
// per case with the tolerance |got - ref| <= abs + rel * |ref| of its dtype. Integer outputs (ids, permutation)
// and bit-exact conversions must match exactly.
#include <algorithm>
#include <cstdio>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "../kernels/kernel_test_util.hpp"
#include "cuda_kernel_cases.hpp"
#include "kernels/activation.hpp"
#include "kernels/cuda/device.cuh"
#include "kernels/gpu_ops.hpp"
#include "kernels/norm.hpp"

namespace moeplan::test {

namespace {

using namespace moeplan::kernels;
using cuda::DeviceBuffer;

// Tolerances per dtype and op, and why.
constexpr Tolerance kFp32Elementwise{1e-5, 1e-5};  // RMSNorm, RoPE, gather/combine: fp32, another summation order
constexpr Tolerance kRouterWeights{1e-6, 1e-5};    // fp32 expf against double
constexpr Tolerance kActivation{1e-6, 1e-5};       // silu: the device's expf against the host's
constexpr Tolerance kAttention{2e-5, 1e-4};        // fp32 online softmax against double
constexpr Tolerance kGemmBf16{2e-3, 1e-3};         // identical BF16 operands; fp32 accumulation over K <= 5120
constexpr Tolerance kGemmFp8{2e-3, 1e-3};          // identical FP8 codes and scales; fp32 accumulation

std::string exact(const std::vector<std::int32_t>& got, const std::vector<std::int32_t>& ref, const char* what) {
  for (std::size_t i = 0; i < ref.size(); ++i)
    if (got[i] != ref[i])
      return std::string(what) + " differs at " + std::to_string(i) + ": " + std::to_string(got[i]) + " vs " +
             std::to_string(ref[i]);
  return "";
}

template <class T>
std::string exact_bytes(const std::vector<T>& got, const std::vector<T>& ref, const char* what) {
  for (std::size_t i = 0; i < ref.size(); ++i)
    if (!(got[i] == ref[i])) return std::string(what) + " differs at " + std::to_string(i);
  return "";
}

void sync() { MOEPLAN_CUDA_CHECK(cudaDeviceSynchronize()); }

std::string case_rmsnorm() {
  const std::int64_t tokens = 7, hidden = 5120;  // Maverick's hidden size
  const auto x = random_floats(tokens * hidden, 1), w = random_floats(hidden, 2);
  std::vector<float> ref(x.size());
  rmsnorm_ref(x.data(), w.data(), ref.data(), tokens, hidden, 1e-5f);
  DeviceBuffer<float> dx(x), dw(w), dy(x.size());
  cuda::rmsnorm(dx.get(), dw.get(), dy.get(), tokens, hidden, 1e-5f, nullptr);
  return compare(dy.download(), ref, kFp32Elementwise);
}

std::string case_qk_norm() {
  const std::int64_t rows = 9 * 40, dim = 128;  // 9 tokens x 40 query heads, head_dim 128
  const auto x = random_floats(rows * dim, 27, -3.f, 3.f);
  std::vector<float> ref(x.size());
  rms_normalize_ref(x.data(), ref.data(), rows, dim, 1e-5f);
  DeviceBuffer<float> dx(x), dy(x.size());
  cuda::rmsnorm(dx.get(), nullptr, dy.get(), rows, dim, 1e-5f, nullptr);
  return compare(dy.download(), ref, kFp32Elementwise);
}

std::string case_rope(RopeLayout layout) {
  const std::int64_t tokens = 9, heads = 40, D = 128;
  auto x = random_floats(tokens * heads * D, 3);
  const std::vector<std::int64_t> pos = {0, 1, 2, 17, 1000, 8191, 8192, 65537, 1000000};
  const auto inv_freq = rope_default_inv_freq(500000.0f, D);  // Llama 4 rope_theta
  DeviceBuffer<float> dx(x), df(inv_freq);
  DeviceBuffer<std::int64_t> dp(pos);
  rope_ref(x.data(), tokens, heads, D, pos.data(), inv_freq.data(), layout);
  cuda::rope(dx.get(), tokens, heads, D, dp.get(), df.get(), layout, nullptr);
  return compare(dx.download(), x, kFp32Elementwise);
}

std::string case_router(RouterScoring scoring, std::int64_t experts, std::int64_t k) {
  const std::int64_t tokens = 300;
  const auto logits = random_floats(tokens * experts, 4, -4.f, 4.f);
  std::vector<std::int32_t> ids(tokens * k);
  std::vector<float> weights(tokens * k);
  router_topk_ref(logits.data(), tokens, experts, k, scoring, ids.data(), weights.data());
  DeviceBuffer<float> dl(logits), dw(weights.size());
  DeviceBuffer<std::int32_t> di(ids.size());
  cuda::router_topk(dl.get(), tokens, experts, k, scoring, di.get(), dw.get(), nullptr);
  const std::string id_error = exact(di.download(), ids, "expert id");
  return id_error.empty() ? compare(dw.download(), weights, kRouterWeights) : id_error;
}

std::string case_permute() {
  const std::int64_t tokens = 1000, k = 2, experts = 128, hidden = 320, pairs = tokens * k;
  const auto ids = random_ids(pairs, experts, 5);
  const auto weights = random_floats(pairs, 6, 0.f, 1.f);
  const auto x = random_floats(tokens * hidden, 7);
  // reference
  std::vector<unsigned char> ws(gpu::permute_workspace_bytes(pairs, experts));
  std::vector<std::int64_t> offsets(experts + 1);
  std::vector<std::int32_t> row_token(pairs), pair_row(pairs);
  std::vector<float> row_weight(pairs), x_sorted(pairs * hidden), y(tokens * hidden, 0.5f);
  moe_permute_ref(ids.data(), weights.data(), pairs, k, experts, ws.data(), offsets.data(), row_token.data(),
                  row_weight.data(), pair_row.data());
  moe_gather_ref(x.data(), hidden, row_token.data(), row_weight.data(), pairs, x_sorted.data());
  moe_combine_ref(x_sorted.data(), hidden, pair_row.data(), nullptr, tokens, k, y.data());
  // device
  DeviceBuffer<std::int32_t> di(ids), d_row_token(pairs), d_pair_row(pairs);
  DeviceBuffer<float> dw(weights), d_row_weight(pairs), dx(x), d_sorted(pairs * hidden), dy(y.size());
  DeviceBuffer<unsigned char> d_ws(ws.size());
  DeviceBuffer<std::int64_t> d_offsets(experts + 1);
  dy.upload(std::vector<float>(y.size(), 0.5f));
  cuda::moe_permute(di.get(), dw.get(), pairs, k, experts, d_ws.get(), d_offsets.get(), d_row_token.get(),
                    d_row_weight.get(), d_pair_row.get(), nullptr);
  cuda::moe_gather(dx.get(), hidden, d_row_token.get(), d_row_weight.get(), pairs, d_sorted.get(), nullptr);
  cuda::moe_combine(d_sorted.get(), hidden, d_pair_row.get(), nullptr, tokens, k, dy.get(), nullptr);
  std::string e = exact_bytes(d_offsets.download(), offsets, "expert_offsets");
  if (e.empty()) e = exact(d_row_token.download(), row_token, "row_token");
  if (e.empty()) e = exact(d_pair_row.download(), pair_row, "pair_row");
  if (e.empty()) e = exact_bytes(d_row_weight.download(), row_weight, "row_weight");
  if (e.empty()) e = compare(d_sorted.download(), x_sorted, kFp32Elementwise);
  return e.empty() ? compare(dy.download(), y, kFp32Elementwise) : e;
}

std::string case_quantize() {
  const std::int64_t rows = 33, cols = 5120;
  auto x = random_floats(rows * cols, 8, -20.f, 20.f);
  for (std::int64_t c = 0; c < cols; ++c) x[5 * cols + c] = 0.f;  // an all-zero row: scale 1
  std::vector<std::uint16_t> bf(x.size());
  std::vector<std::uint8_t> q(x.size());
  std::vector<float> scale(rows);
  convert_bf16_ref(x.data(), rows * cols, bf.data());
  quantize_fp8_per_token_ref(x.data(), rows, cols, q.data(), scale.data());
  DeviceBuffer<float> dx(x), ds(rows);
  DeviceBuffer<std::uint16_t> dbf(bf.size());
  DeviceBuffer<std::uint8_t> dq(q.size());
  cuda::convert_bf16(dx.get(), rows * cols, dbf.get(), nullptr);
  cuda::quantize_fp8_per_token(dx.get(), rows, cols, dq.get(), ds.get(), nullptr);
  std::string e = exact_bytes(dbf.download(), bf, "bf16 bits");
  if (e.empty()) e = exact_bytes(ds.download(), scale, "fp8 scale");
  return e.empty() ? exact_bytes(dq.download(), q, "fp8 code") : e;
}

// A routing of `tokens` tokens over `experts` experts (top-1), as expert_offsets of the sorted rows.
std::vector<std::int64_t> random_offsets(std::int64_t rows, std::int64_t experts, std::uint32_t seed) {
  const auto ids = random_ids(rows, experts, seed);
  std::vector<std::int64_t> offsets(experts + 1, 0);
  for (const auto id : ids) ++offsets[id + 1];
  for (std::int64_t e = 0; e < experts; ++e) offsets[e + 1] += offsets[e];
  return offsets;
}

std::vector<std::uint16_t> bf16_of(const std::vector<float>& x) {
  std::vector<std::uint16_t> out(x.size());
  convert_bf16_ref(x.data(), static_cast<std::int64_t>(x.size()), out.data());
  return out;
}

std::string case_grouped_bf16(GroupedGemmShape s) {
  const auto offsets = random_offsets(s.rows, s.experts, 9);
  const auto x = bf16_of(random_floats(s.rows * s.k, 10));
  const auto w = bf16_of(random_floats(s.experts * s.n * s.k, 11, -0.05f, 0.05f));
  std::vector<float> ref(s.rows * (s.fuse_swiglu ? s.n / 2 : s.n));
  grouped_gemm_bf16_ref(x.data(), w.data(), offsets.data(), s, ref.data());
  DeviceBuffer<std::uint16_t> dx(x), dw(w);
  DeviceBuffer<std::int64_t> doff(offsets);
  DeviceBuffer<float> dy(ref.size());
  cuda::grouped_gemm_bf16(dx.get(), dw.get(), doff.get(), s, dy.get(), nullptr);
  return compare(dy.download(), ref, kGemmBf16);
}

std::string case_grouped_fp8(GroupedGemmShape s, gpu::Fp8ScaleLayout layout) {
  const auto offsets = random_offsets(s.rows, s.experts, 12);
  const auto x = random_floats(s.rows * s.k, 13, -3.f, 3.f);
  std::vector<std::uint8_t> x_q(x.size()), w_q(s.experts * s.n * s.k);
  std::vector<float> x_scale(s.rows), w_row_scale(s.experts * s.n);
  quantize_fp8_per_token_ref(x.data(), s.rows, s.k, x_q.data(), x_scale.data());
  // weight codes with one scale per output channel: the per-token quantiser applied to the rows of W
  const auto w = random_floats(w_q.size(), 14, -0.05f, 0.05f);
  quantize_fp8_per_token_ref(w.data(), s.experts * s.n, s.k, w_q.data(), w_row_scale.data());
  std::vector<float> w_scale = w_row_scale;
  if (layout == gpu::Fp8ScaleLayout::block_128)
    w_scale = random_floats(gpu::fp8_weight_scale_count(layout, s.experts, s.n, s.k), 15, 1e-4f, 2e-4f);
  std::vector<float> ref(s.rows * (s.fuse_swiglu ? s.n / 2 : s.n));
  grouped_gemm_fp8_ref(x_q.data(), x_scale.data(), w_q.data(), w_scale.data(), layout, offsets.data(), s, ref.data());
  DeviceBuffer<std::uint8_t> dx(x_q), dw(w_q);
  DeviceBuffer<float> dxs(x_scale), dws(w_scale), dy(ref.size());
  DeviceBuffer<std::int64_t> doff(offsets);
  cuda::grouped_gemm_fp8(dx.get(), dxs.get(), dw.get(), dws.get(), layout, doff.get(), s, dy.get(), nullptr);
  return compare(dy.download(), ref, kGemmFp8);
}

std::string case_decode(AttentionMask mask, std::int64_t chunk, bool split_over_context, int sm_count,
                        KvPageDtype kv_dtype = KvPageDtype::f32) {
  DecodeAttentionParams p{3, 40, 8, 128, 1.0f / std::sqrt(128.0f), mask, chunk, kv_dtype};  // Maverick's heads
  const std::vector<std::int32_t> lens = {1, 700, 9000};
  const gpu::PagedKvLayout layout{64, 8, 128, 9000 / 64 + 1};
  const std::int64_t pages = p.seqs * layout.max_pages_per_seq;
  // every sequence's pages, handed out in a shuffled order
  std::vector<std::int32_t> table(pages);
  std::iota(table.begin(), table.end(), 0);
  std::shuffle(table.begin(), table.end(), std::mt19937(16));
  const auto k = random_floats(pages * gpu::paged_kv_page_elems(layout), 17);
  const auto v = random_floats(k.size(), 18);
  const auto q = random_floats(p.seqs * p.q_heads * p.head_dim, 19, -3.f, 3.f);
  // BF16 pages: the same values rounded to BF16 codes, which kernel and reference both widen
  std::vector<std::uint16_t> k16(k.size()), v16(v.size());
  convert_bf16_ref(k.data(), static_cast<std::int64_t>(k.size()), k16.data());
  convert_bf16_ref(v.data(), static_cast<std::int64_t>(v.size()), v16.data());
  const bool bf16 = kv_dtype == KvPageDtype::bf16;
  std::vector<float> ref(q.size());
  paged_attention_decode_ref(p, layout, q.data(), lens.data(), table.data(), bf16 ? static_cast<const void*>(k16.data()) : k.data(),
                             bf16 ? static_cast<const void*>(v16.data()) : v.data(), ref.data());
  const std::int64_t max_keys = mask == AttentionMask::chunked ? chunk : 9000;
  const gpu::DecodeSplit split = split_over_context ? gpu::decode_split_plan(max_keys, p.seqs, p.kv_heads, sm_count)
                                                    : gpu::DecodeSplit{1, gpu::ceil_div(max_keys, 64) * 64};
  DeviceBuffer<float> dq(q), dk(k), dv(v), dout(q.size());
  DeviceBuffer<std::uint16_t> dk16(k16), dv16(v16);
  DeviceBuffer<std::int32_t> dlens(lens), dtable(table);
  DeviceBuffer<unsigned char> ws(gpu::decode_workspace_bytes(p.seqs, p.q_heads, p.head_dim, split));
  cuda::paged_attention_decode(p, layout, dq.get(), dlens.get(), dtable.get(),
                               bf16 ? static_cast<const void*>(dk16.get()) : dk.get(),
                               bf16 ? static_cast<const void*>(dv16.get()) : dv.get(), dout.get(), split, ws.get(), nullptr);
  return compare(dout.download(), ref, kAttention) +
         (split.splits > 1 || !split_over_context ? "" : " (the plan did not split)");
}

// A step's K rows of 3 sequences (interleaved) written into shuffled 16-position pages of KV (fp32, or BF16 codes
// rounded to nearest even), then one sequence's positions gathered back: both against the references, bit for bit.
template <class KV>
std::string case_paged_rows() {
  const gpu::PagedKvLayout layout{16, 8, 128, 4};  // Maverick's KV heads and head_dim
  const std::int64_t row = layout.kv_heads * layout.head_dim, seqs = 3, pages = seqs * layout.max_pages_per_seq;
  std::vector<std::int32_t> table(pages);
  std::iota(table.begin(), table.end(), 0);
  std::shuffle(table.begin(), table.end(), std::mt19937(21));
  std::vector<std::int64_t> row_seq, row_pos;
  for (std::int64_t pos = 5; pos < 50; ++pos)
    for (std::int64_t s = 0; s < seqs; ++s) {
      row_seq.push_back(s);
      row_pos.push_back(pos + s);
    }
  const std::int64_t count = static_cast<std::int64_t>(row_seq.size());
  const auto rows = random_floats(count * row, 22);
  std::vector<KV> ref_pages(pages * gpu::paged_kv_page_elems(layout), KV{});
  std::vector<float> ref_back(30 * row);
  paged_kv_write_ref(layout, table.data(), row_seq.data(), row_pos.data(), count, rows.data(), ref_pages.data());
  paged_kv_gather_ref(layout, table.data(), 1, 10, 30, ref_pages.data(), ref_back.data());
  DeviceBuffer<std::int32_t> dtable(table);
  DeviceBuffer<std::int64_t> dseq(row_seq), dpos(row_pos);
  DeviceBuffer<float> drows(rows), dback(ref_back.size());
  DeviceBuffer<KV> dpages(std::vector<KV>(ref_pages.size(), KV{}));
  cuda::paged_kv_write(layout, dtable.get(), dseq.get(), dpos.get(), count, drows.get(), dpages.get(), nullptr);
  cuda::paged_kv_gather(layout, dtable.get(), 1, 10, 30, dpages.get(), dback.get(), nullptr);
  std::string e = exact_bytes(dpages.download(), ref_pages, "pages");
  return e.empty() ? exact_bytes(dback.download(), ref_back, "gathered rows") : e;
}

// One sequence's prompt of p.q_tokens queries from p.kv_first_pos against its keys: `kernel` (a launcher of
// attention_ref's shapes) against attention_ref on seeded inputs.
using AttentionKernel = void (*)(const AttentionParams&, const float*, const std::int64_t*, const float*, const float*,
                                 float*, cuda::Stream);
std::string attention_case(const AttentionParams& p, AttentionKernel kernel) {
  std::vector<std::int64_t> pos(p.q_tokens);
  std::iota(pos.begin(), pos.end(), p.kv_first_pos);  // a prompt that starts where its keys do
  const auto q = random_floats(p.q_tokens * p.q_heads * p.head_dim, 20, -2.f, 2.f);
  const auto k = random_floats(p.kv_tokens * p.kv_heads * p.head_dim, 21);
  const auto v = random_floats(k.size(), 22);
  std::vector<float> ref(q.size());
  attention_ref(p, q.data(), pos.data(), k.data(), v.data(), ref.data());
  DeviceBuffer<float> dq(q), dk(k), dv(v), dout(q.size());
  DeviceBuffer<std::int64_t> dpos(pos);
  kernel(p, dq.get(), dpos.get(), dk.get(), dv.get(), dout.get(), nullptr);
  return compare(dout.download(), ref, kAttention);
}

std::string case_prefill(AttentionMask mask, std::int64_t mask_tokens, std::int64_t head_dim, std::int64_t first_pos) {
  const AttentionParams p{150, 150, 10, 2, head_dim, 1.0f / std::sqrt(static_cast<float>(head_dim)), mask, mask_tokens,
                          first_pos};
  return attention_case(p, cuda::attention_prefill);
}

// backend_ops.cu's element-wise kernels: SwiGLU's silu(gate) * up, add, and scaling rows in place.
std::string case_elementwise() {
  const std::int64_t rows = 37, cols = 1000, n = rows * cols;
  const auto gate = random_floats(n, 40, -8.f, 8.f), up = random_floats(n, 41), b = random_floats(n, 42);
  const auto scale = random_floats(rows, 43, 0.f, 2.f);
  std::vector<float> silu(n), sum(n), scaled = gate;
  silu_mul_ref(gate.data(), up.data(), silu.data(), n);
  add_ref(gate.data(), b.data(), sum.data(), n);
  scale_rows_ref(scaled.data(), rows, cols, scale.data());
  DeviceBuffer<float> dg(gate), du(up), db(b), ds(scale), d_silu(n), d_sum(n), d_scaled(gate);
  cuda::silu_mul(dg.get(), du.get(), d_silu.get(), n, nullptr);
  cuda::add(dg.get(), db.get(), d_sum.get(), n, nullptr);
  cuda::scale_rows(d_scaled.get(), rows, cols, ds.get(), nullptr);
  std::string e = compare(d_silu.download(), silu, kActivation);
  if (e.empty()) e = compare(d_sum.download(), sum, kFp32Elementwise);
  return e.empty() ? compare(d_scaled.download(), scaled, kFp32Elementwise) : e;
}

// The CUDA backend's permute and un-permute: int32 row tokens (moe_permute's) widened to int64, gather rows by token
// with a scale, and scatter-add them back in row order (tokens repeat, as top-k > 1 makes them).
std::string case_rows() {
  const std::int64_t tokens = 300, rows = 700, hidden = 320;
  const auto x = random_floats(tokens * hidden, 44), y0 = random_floats(tokens * hidden, 45);
  const auto scale = random_floats(rows, 46, 0.f, 1.f);
  std::vector<std::int64_t> row_token(rows);
  const auto ids = random_ids(rows, tokens, 47);
  widen_indices_ref(ids.data(), rows, row_token.data());
  std::vector<float> sorted(rows * hidden), y = y0;
  gather_rows_ref(x.data(), hidden, row_token.data(), scale.data(), rows, sorted.data());
  scatter_add_rows_ref(sorted.data(), hidden, row_token.data(), scale.data(), rows, y.data());
  DeviceBuffer<float> dx(x), dy(y0), ds(scale), d_sorted(rows * hidden);
  DeviceBuffer<std::int32_t> di(ids);
  DeviceBuffer<std::int64_t> dt(rows);
  cuda::widen_indices(di.get(), rows, dt.get(), nullptr);
  if (dt.download() != row_token) return "widen_indices: an index differs from the reference's";
  cuda::gather_rows(dx.get(), hidden, dt.get(), ds.get(), rows, d_sorted.get(), nullptr);
  cuda::scatter_add_rows(d_sorted.get(), hidden, dt.get(), ds.get(), rows, dy.get(), nullptr);
  const std::string e = compare(d_sorted.download(), sorted, kFp32Elementwise);
  return e.empty() ? compare(dy.download(), y, kFp32Elementwise) : e;
}

// The step after a tensor-core GEMM: per-token and per-channel scales, written and accumulated.
std::string case_epilogue(bool accumulate) {
  const std::int64_t m = 33, n = 520;
  const auto acc = random_floats(m * n, 48, -50.f, 50.f), y0 = random_floats(m * n, 49);
  const auto xs = random_floats(m, 50, 0.f, 0.1f), ws = random_floats(n, 51, 0.f, 0.1f);
  std::vector<float> y = y0;
  gemm_epilogue_ref(acc.data(), m, n, xs.data(), ws.data(), y.data(), accumulate);
  DeviceBuffer<float> dacc(acc), dy(y0), dxs(xs), dws(ws);
  cuda::gemm_epilogue(dacc.get(), m, n, dxs.get(), dws.get(), dy.get(), accumulate, nullptr);
  return compare(dy.download(), y, kFp32Elementwise);
}

// The attention kernel for head sizes attention_prefill does not take (the oracle models' 16).
std::string case_attention_generic(AttentionMask mask, std::int64_t mask_tokens) {
  const AttentionParams p{70, 70, 4, 2, 16, 0.25f, mask, mask_tokens, 5};  // scale 1 / sqrt(16)
  return attention_case(p, cuda::attention_generic);
}

// cuBLASLt against the grouped reference with one expert (= a dense matmul).
std::string case_dense(cuda::DenseGemmDtype dtype, int cc_major, int cc_minor) {
  if (dtype == cuda::DenseGemmDtype::fp8_e4m3 && cc_major * 10 + cc_minor < 89) return "skip: FP8 needs sm_89+";
  const std::int64_t m = 33, n = 256, k = 512;
  const std::vector<std::int64_t> offsets = {0, m};
  const GroupedGemmShape s{m, 1, n, k, false};
  std::vector<float> ref(m * n);
  cuda::DenseGemm gemm;
  DeviceBuffer<float> dy(ref.size());
  if (dtype == cuda::DenseGemmDtype::bf16) {
    const auto x = bf16_of(random_floats(m * k, 23)), w = bf16_of(random_floats(n * k, 24, -0.05f, 0.05f));
    grouped_gemm_bf16_ref(x.data(), w.data(), offsets.data(), s, ref.data());
    DeviceBuffer<std::uint16_t> dx(x), dw(w);
    gemm.run(dtype, dx.get(), dw.get(), nullptr, nullptr, dy.get(), m, n, k, nullptr);
    return compare(dy.download(), ref, kGemmBf16);
  }
  // FP8 with one scale per tensor: quantise all of x (and of W) as one row
  const auto x = random_floats(m * k, 25, -3.f, 3.f), w = random_floats(n * k, 26, -0.05f, 0.05f);
  std::vector<std::uint8_t> x_q(x.size()), w_q(w.size());
  float x_scale = 0, w_scale = 0;
  quantize_fp8_per_token_ref(x.data(), 1, m * k, x_q.data(), &x_scale);
  quantize_fp8_per_token_ref(w.data(), 1, n * k, w_q.data(), &w_scale);
  const std::vector<float> x_scales(m, x_scale), w_scales(n, w_scale);
  grouped_gemm_fp8_ref(x_q.data(), x_scales.data(), w_q.data(), w_scales.data(), gpu::Fp8ScaleLayout::per_channel,
                       offsets.data(), s, ref.data());
  DeviceBuffer<std::uint8_t> dx(x_q), dw(w_q);
  DeviceBuffer<float> dxs(std::vector<float>{x_scale}), dws(std::vector<float>{w_scale});
  gemm.run(dtype, dx.get(), dw.get(), dxs.get(), dws.get(), dy.get(), m, n, k, nullptr);
  return compare(dy.download(), ref, kGemmFp8);
}

}  // namespace

int run_cuda_kernel_cases(int sm_count, int cc_major, int cc_minor) {
  using S = GroupedGemmShape;
  using L = gpu::Fp8ScaleLayout;
  const std::vector<std::pair<const char*, std::function<std::string()>>> cases = {
      {"rmsnorm 7 x 5120", [] { return case_rmsnorm(); }},
      {"rmsnorm without weight = qk-norm (Llama 4), 360 x 128", [] { return case_qk_norm(); }},
      {"rope interleaved (Llama 4), 9 tokens x 40 heads x 128", [] { return case_rope(RopeLayout::interleaved); }},
      {"rope half (Llama 3 / Qwen3)", [] { return case_rope(RopeLayout::half); }},
      {"router sigmoid top-1 of 128 (Llama 4)", [] { return case_router(RouterScoring::sigmoid_topk, 128, 1); }},
      {"router softmax top-2 of 8, renormalised (Mixtral)",
       [] { return case_router(RouterScoring::softmax_topk_renorm, 8, 2); }},
      {"router softmax top-8 of 128 (Qwen3, no renorm)",
       [] { return case_router(RouterScoring::softmax_topk, 128, 8); }},
      {"permute / gather / combine, 1000 tokens top-2 of 128", [] { return case_permute(); }},
      {"convert bf16 + quantize fp8 per token, 33 x 5120", [] { return case_quantize(); }},
      {"grouped gemm bf16 300 rows, 8 experts, N 256, K 512",
       [] {
         return case_grouped_bf16(S{300, 8, 256, 512, false});
       }},
      {"grouped gemm bf16 + SwiGLU, N 2 x 200, K 264",
       [] {
         return case_grouped_bf16(S{300, 8, 400, 264, true});
       }},
      {"grouped gemm bf16 Maverick slice: 64 rows, 4 experts, N 2 x 256, K 5120",
       [] {
         return case_grouped_bf16(S{64, 4, 512, 5120, true});
       }},
      {"grouped gemm fp8 per-channel, N 256, K 392",
       [] {
         return case_grouped_fp8(S{200, 8, 256, 392, false}, L::per_channel);
       }},
      {"grouped gemm fp8 per-channel + SwiGLU",
       [] {
         return case_grouped_fp8(S{200, 8, 256, 392, true}, L::per_channel);
       }},
      {"grouped gemm fp8 128-block scales, N 384, K 392",
       [] {
         return case_grouped_fp8(S{200, 8, 384, 392, false}, L::block_128);
       }},
      {"grouped gemm fp8 128-block scales + SwiGLU, N 2 x 192",
       [] {
         return case_grouped_fp8(S{200, 8, 384, 392, true}, L::block_128);
       }},
      {"decode paged, causal, 3 seqs up to 9000, split",
       [=] { return case_decode(AttentionMask::causal, 0, true, sm_count); }},
      {"decode paged, causal, one split", [=] { return case_decode(AttentionMask::causal, 0, false, sm_count); }},
      {"decode paged, chunked 8192 (Llama 4 local), split",
       [=] { return case_decode(AttentionMask::chunked, 8192, true, sm_count); }},
      {"decode paged BF16 pages, causal, split",
       [=] { return case_decode(AttentionMask::causal, 0, true, sm_count, KvPageDtype::bf16); }},
      {"decode paged BF16 pages, chunked 8192, split",
       [=] { return case_decode(AttentionMask::chunked, 8192, true, sm_count, KvPageDtype::bf16); }},
      {"paged KV rows: write a step's rows, gather a sequence's", [] { return case_paged_rows<float>(); }},
      {"paged KV rows, BF16 pages: write rounded, gather widened", [] { return case_paged_rows<std::uint16_t>(); }},
      {"prefill causal D 128", [] { return case_prefill(AttentionMask::causal, 0, 128, 0); }},
      {"prefill chunked 32, D 128, starting at position 40",
       [] { return case_prefill(AttentionMask::chunked, 32, 128, 40); }},
      {"prefill sliding window 16, D 64", [] { return case_prefill(AttentionMask::sliding_window, 16, 64, 0); }},
      {"prefill causal D 256", [] { return case_prefill(AttentionMask::causal, 0, 256, 0); }},
      {"silu_mul, add, scale_rows 37 x 1000", [] { return case_elementwise(); }},
      {"widen indices, gather rows / scatter-add rows, 700 rows of 300 tokens", [] { return case_rows(); }},
      {"gemm epilogue with per-token and per-channel scales", [] { return case_epilogue(false); }},
      {"gemm epilogue, accumulating", [] { return case_epilogue(true); }},
      {"attention generic D 16 causal", [] { return case_attention_generic(AttentionMask::causal, 0); }},
      {"attention generic D 16 chunked 32", [] { return case_attention_generic(AttentionMask::chunked, 32); }},
      {"dense gemm cuBLASLt bf16 33 x 256 x 512",
       [=] { return case_dense(cuda::DenseGemmDtype::bf16, cc_major, cc_minor); }},
      {"dense gemm cuBLASLt fp8 (per-tensor scales)",
       [=] { return case_dense(cuda::DenseGemmDtype::fp8_e4m3, cc_major, cc_minor); }},
  };
  int failed = 0;
  for (const auto& [name, run] : cases) {
    std::string error;
    try {
      error = run();
      sync();
    } catch (const std::exception& e) {
      error = std::string("threw: ") + e.what();
    }
    const bool skipped = error.rfind("skip:", 0) == 0;
    if (!error.empty() && !skipped) ++failed;
    std::printf("%-4s %s%s%s\n", error.empty() ? "ok" : skipped ? "skip" : "FAIL", name, error.empty() ? "" : ": ",
                error.c_str());
  }
  std::printf("%d of %zu cases failed\n", failed, cases.size());
  return failed;
}

}  // namespace moeplan::test
