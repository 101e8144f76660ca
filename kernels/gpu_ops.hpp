// kernels/gpu_ops: the ops of the CUDA executor. Each has a plain reference here (`*_ref`, kernels/ref/gpu_ops.cpp
// or an existing reference it reuses) with the argument shapes of its CUDA launcher in namespace cuda
// (kernels/cuda/*.cu, built when MOEPLAN_HAVE_CUDA). Launchers take DEVICE pointers, sizes and a stream as an
// opaque pointer (a cudaStream_t; nullptr = the default stream), enqueue work and return without synchronising;
// they throw std::invalid_argument on bad sizes and std::runtime_error on a CUDA error. Plain C++17, no CUDA
// include: the executor's backend can include it from .cpp files.
// BF16 data are std::uint16_t bit patterns, FP8 data std::uint8_t OCP e4m3fn codes (kernels/weights.hpp).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

#include "kernels/attention.hpp"
#include "kernels/gpu_layout.hpp"
#include "kernels/rope.hpp"
#include "kernels/router.hpp"

namespace moeplan::kernels {

struct WeightView;  // kernels/weights.hpp (C++20; the .cu files, compiled as C++17, do not include it)

// ---- Token permutation by expert (histogram -> offsets -> scatter) and the way back (combine).
// pairs = tokens * k; pair i is (token i / k, slot i % k) of router_topk's output.
//   ids, weights: [pairs]; expert_offsets: [experts + 1]; row_token, row_weight: [pairs] (row order: by expert, then
//   pair order); pair_row: [pairs], the sorted row of each pair. workspace: permute_workspace_bytes(pairs, experts).
// Throws std::invalid_argument (reference) on an id outside [0, experts); the kernel drops such pairs (no row,
// pair_row -1, which moe_combine skips).
void moe_permute_ref(const std::int32_t* ids, const float* weights, std::int64_t pairs, std::int64_t k,
                     std::int64_t experts, void* workspace, std::int64_t* expert_offsets, std::int32_t* row_token,
                     float* row_weight, std::int32_t* pair_row);

// x_sorted[r, :] = x[row_token[r], :] * (row_scale ? row_scale[r] : 1)
//   x: [tokens, hidden]; row_token, row_scale: [rows]; x_sorted: [rows, hidden]
void moe_gather_ref(const float* x, std::int64_t hidden, const std::int32_t* row_token, const float* row_scale,
                    std::int64_t rows, float* x_sorted);

// y[t, :] += sum over slots s of y_sorted[pair_row[t k + s], :] * (pair_weight ? pair_weight[t k + s] : 1), the
// slots added in order (deterministic; no atomics); pairs with pair_row -1 are skipped.
//   y_sorted: [tokens * k, hidden]; pair_row, pair_weight: [tokens * k]; y: [tokens, hidden]
void moe_combine_ref(const float* y_sorted, std::int64_t hidden, const std::int32_t* pair_row,
                     const float* pair_weight, std::int64_t tokens, std::int64_t k, float* y);

// ---- Conversions of activations for the tensor-core GEMMs.
// out[i] = bf16(x[i]), round to nearest even.  x: [n]; out: [n]
void convert_bf16_ref(const float* x, std::int64_t n, std::uint16_t* out);
// Per-token FP8: scale[r] = max_c |x[r, c]| / 448 (1 for an all-zero row), q[r, c] = e4m3(x[r, c] / scale[r]),
// round to nearest even, saturating.  x: [rows, cols]; q: [rows, cols]; scale: [rows]
void quantize_fp8_per_token_ref(const float* x, std::int64_t rows, std::int64_t cols, std::uint8_t* q,
                                float* scale);

// ---- Grouped expert GEMM over rows sorted by expert.
//   x_sorted: [R, K]; expert_offsets: [E + 1]; w: [E, N, K] (nn.Linear layout per expert)
//   y: [R, N], or with fuse_swiglu [R, N / 2] = silu(gate) * up where gate = columns [0, N/2) and up = [N/2, N)
//   (Llama 4's gate_up_proj transposed to [2I, hidden]; silu_mul_fused_ref's layout). Accumulation in fp32.
struct GroupedGemmShape {
  std::int64_t rows = 0;     // R
  std::int64_t experts = 0;  // E
  std::int64_t n = 0;        // N (even when fuse_swiglu)
  std::int64_t k = 0;        // K
  bool fuse_swiglu = false;
};
void grouped_gemm_bf16_ref(const std::uint16_t* x_sorted, const std::uint16_t* w, const std::int64_t* expert_offsets,
                           const GroupedGemmShape& shape, float* y);
// FP8 e4m3 operands: y[r, n] = sum_k (x_q[r, k] * x_scale[r]) * (w_q[e, n, k] * w_scale(e, n, k)), the scales as
// gpu::Fp8ScaleLayout lays them out. x_scale: [R]; w_scale: gpu::fp8_weight_scale_count(layout, E, N, K).
void grouped_gemm_fp8_ref(const std::uint8_t* x_q, const float* x_scale, const std::uint8_t* w_q,
                          const float* w_scale, gpu::Fp8ScaleLayout layout, const std::int64_t* expert_offsets,
                          const GroupedGemmShape& shape, float* y);

// ---- Decode attention over a paged KV cache: one new query token per sequence.
enum class KvPageDtype { f32, bf16 };  // the values the K and V pages hold (BF16: std::uint16_t bit patterns)
struct DecodeAttentionParams {
  std::int64_t seqs = 0;
  std::int64_t q_heads = 0;   // Hq, a multiple of kv_heads (GQA), at most kDecodeMaxGroup per KV head
  std::int64_t kv_heads = 0;  // Hkv
  std::int64_t head_dim = 0;  // D: 32, 64, 128 or 256
  float scale = 1.0f;         // multiplies q·k (usually D^-0.5)
  AttentionMask mask = AttentionMask::causal;  // causal (global layers) or chunked (Llama 4's local layers)
  std::int64_t chunk_tokens = 0;               // attention_chunk_size for the chunked mask
  KvPageDtype kv_dtype = KvPageDtype::f32;     // of k_pages and v_pages
};
constexpr std::int64_t kDecodeMaxGroup = 8;
// The query of sequence s sits at position seq_lens[s] - 1 (its own K and V already written) and sees the keys
// attention_ref's mask gives it.
//   q: [seqs, Hq, D]; seq_lens: [seqs] (>= 1); page_table: [seqs, layout.max_pages_per_seq];
//   k_pages, v_pages: [pages, page_tokens, Hkv, D] of p.kv_dtype; out: [seqs, Hq, D]
void paged_attention_decode_ref(const DecodeAttentionParams& p, const gpu::PagedKvLayout& layout, const float* q,
                                const std::int32_t* seq_lens, const std::int32_t* page_table, const void* k_pages,
                                const void* v_pages, float* out);
// Throws std::invalid_argument on sizes the decode kernel does not take.
void check_decode_params(const DecodeAttentionParams& p, const gpu::PagedKvLayout& layout);

// ---- Rows of a paged KV cache (one of K or V) to and from contiguous fp32 rows. page_table: [seqs,
// layout.max_pages_per_seq]; pages: [pages, page_tokens, Hkv, D] of fp32, or of BF16 codes (std::uint16_t: the write
// rounds each value to nearest even as convert_bf16_ref does, the gather widens it exactly); a position's slot is
// gpu::paged_kv_offset's.
// Write: row r of rows [count, Hkv, D] goes to position row_pos[r] of sequence row_seq[r] (row_seq, row_pos:
// [count]; a step's new keys or values, any sequences). Throws std::invalid_argument (reference) on an unmapped page.
void paged_kv_write_ref(const gpu::PagedKvLayout& layout, const std::int32_t* page_table, const std::int64_t* row_seq,
                        const std::int64_t* row_pos, std::int64_t count, const float* rows, float* pages);
void paged_kv_write_ref(const gpu::PagedKvLayout& layout, const std::int32_t* page_table, const std::int64_t* row_seq,
                        const std::int64_t* row_pos, std::int64_t count, const float* rows, std::uint16_t* pages);
// Gather: rows [count, Hkv, D] = positions first_pos .. first_pos + count - 1 of sequence `seq` (the keys or values
// one sequence's queries see, contiguous for the attention kernels).
void paged_kv_gather_ref(const gpu::PagedKvLayout& layout, const std::int32_t* page_table, std::int64_t seq,
                         std::int64_t first_pos, std::int64_t count, const float* pages, float* rows);
void paged_kv_gather_ref(const gpu::PagedKvLayout& layout, const std::int32_t* page_table, std::int64_t seq,
                         std::int64_t first_pos, std::int64_t count, const std::uint16_t* pages, float* rows);

// ---- Row and element-wise ops of the executor's CUDA backend (executor/backend_cuda.cpp). The twins of silu_mul
// and add are silu_mul_ref and add_ref (kernels/activation.hpp), of attention_generic attention_ref.
// x[r, :] *= row_scale[r].  x: [rows, cols]; row_scale: [rows]
void scale_rows_ref(float* x, std::int64_t rows, std::int64_t cols, const float* row_scale);
// x_sorted[r, :] = x[row_token[r], :] * (row_scale ? row_scale[r] : 1).  x: [*, hidden]; row_token, row_scale:
// [rows]; x_sorted: [rows, hidden] (kernels::gather_rows's int64 form)
void gather_rows_ref(const float* x, std::int64_t hidden, const std::int64_t* row_token, const float* row_scale,
                     std::int64_t rows, float* x_sorted);
// y[row_token[r], :] += y_sorted[r, :] * (row_scale ? row_scale[r] : 1), rows added in order r = 0, 1, ...
// (deterministic; kernels::scatter_add_rows's order).  y_sorted: [rows, hidden]; y: [*, hidden]
void scatter_add_rows_ref(const float* y_sorted, std::int64_t hidden, const std::int64_t* row_token,
                          const float* row_scale, std::int64_t rows, float* y);
// out[i] = in[i]: moe_permute's int32 row tokens widened to the int64 row indices gather_rows and scatter_add_rows
// take.  in, out: [n]
void widen_indices_ref(const std::int32_t* in, std::int64_t n, std::int64_t* out);
// The step after a tensor-core GEMM: y[m, n] (= or +=) acc[m, n] * (x_scale ? x_scale[m] : 1) * (w_scale ?
// w_scale[n] : 1), the per-token activation scale and the per-output-channel weight scale.
//   acc, y: [m, n]; x_scale: [m]; w_scale: [n]
void gemm_epilogue_ref(const float* acc, std::int64_t m, std::int64_t n, const float* x_scale, const float* w_scale,
                       float* y, bool accumulate);
// out[t, :] = dequant(table)[ids[t] - first_row, :] for ids in [first_row, first_row + table.rows), zeros for the
// others. table: f32, bf16, f16 or fp8_e4m3 (row_scales optional); ids: [tokens]; out: [tokens, table.cols]
void embed_rows_ref(const WeightView& table, std::int64_t first_row, const std::int32_t* ids, std::int64_t tokens,
                    float* out);

namespace cuda {

using Stream = void*;  // a cudaStream_t

// kernels/cuda/norm.cu: rmsnorm_ref's shapes; w = nullptr is the weightless form rms_normalize_ref (Llama 4's
// qk-norm, rows = tokens x heads).
void rmsnorm(const float* x, const float* w, float* y, std::int64_t tokens, std::int64_t hidden, float eps,
             Stream stream);
// kernels/cuda/rope.cu: rope_ref's shapes (in place); positions on the device.
void rope(float* x, std::int64_t tokens, std::int64_t heads, std::int64_t head_dim, const std::int64_t* positions,
          const float* inv_freq, RopeLayout layout, Stream stream);
// kernels/cuda/router.cu: router_topk_ref's shapes; experts <= 1024, k <= 8.
void router_topk(const float* logits, std::int64_t tokens, std::int64_t experts, std::int64_t k,
                 RouterScoring scoring, std::int32_t* ids, float* weights, Stream stream);
// kernels/cuda/permute.cu: moe_permute_ref, moe_gather_ref, moe_combine_ref.
void moe_permute(const std::int32_t* ids, const float* weights, std::int64_t pairs, std::int64_t k,
                 std::int64_t experts, void* workspace, std::int64_t* expert_offsets, std::int32_t* row_token,
                 float* row_weight, std::int32_t* pair_row, Stream stream);
void moe_gather(const float* x, std::int64_t hidden, const std::int32_t* row_token, const float* row_scale,
                std::int64_t rows, float* x_sorted, Stream stream);
void moe_combine(const float* y_sorted, std::int64_t hidden, const std::int32_t* pair_row, const float* pair_weight,
                 std::int64_t tokens, std::int64_t k, float* y, Stream stream);
// kernels/cuda/quantize.cu
void convert_bf16(const float* x, std::int64_t n, std::uint16_t* out, Stream stream);
void quantize_fp8_per_token(const float* x, std::int64_t rows, std::int64_t cols, std::uint8_t* q, float* scale,
                            Stream stream);
// kernels/cuda/grouped_gemm.cu: K a multiple of 8 (16-byte rows for vector loads); expert_offsets on the device.
void grouped_gemm_bf16(const std::uint16_t* x_sorted, const std::uint16_t* w, const std::int64_t* expert_offsets,
                       const GroupedGemmShape& shape, float* y, Stream stream);
void grouped_gemm_fp8(const std::uint8_t* x_q, const float* x_scale, const std::uint8_t* w_q, const float* w_scale,
                      gpu::Fp8ScaleLayout layout, const std::int64_t* expert_offsets, const GroupedGemmShape& shape,
                      float* y, Stream stream);
// kernels/cuda/attention_decode.cu: paged_attention_decode_ref's shapes, split over the context as `split` says
// (gpu::decode_split_plan, planned for the longest visible context of the batch: slices past a sequence's keys
// are empty), then merged; workspace: gpu::decode_workspace_bytes. seq_lens stay on the device.
void paged_attention_decode(const DecodeAttentionParams& p, const gpu::PagedKvLayout& layout, const float* q,
                            const std::int32_t* seq_lens, const std::int32_t* page_table, const void* k_pages,
                            const void* v_pages, float* out, const gpu::DecodeSplit& split, void* workspace,
                            Stream stream);
// kernels/cuda/attention_decode.cu: paged_kv_write_ref's and paged_kv_gather_ref's shapes, every pointer on the
// device (an unmapped page is skipped: no write, zeros gathered).
void paged_kv_write(const gpu::PagedKvLayout& layout, const std::int32_t* page_table, const std::int64_t* row_seq,
                    const std::int64_t* row_pos, std::int64_t count, const float* rows, float* pages, Stream stream);
void paged_kv_write(const gpu::PagedKvLayout& layout, const std::int32_t* page_table, const std::int64_t* row_seq,
                    const std::int64_t* row_pos, std::int64_t count, const float* rows, std::uint16_t* pages,
                    Stream stream);
void paged_kv_gather(const gpu::PagedKvLayout& layout, const std::int32_t* page_table, std::int64_t seq,
                     std::int64_t first_pos, std::int64_t count, const float* pages, float* rows, Stream stream);
void paged_kv_gather(const gpu::PagedKvLayout& layout, const std::int32_t* page_table, std::int64_t seq,
                     std::int64_t first_pos, std::int64_t count, const std::uint16_t* pages, float* rows,
                     Stream stream);
// kernels/cuda/attention_prefill.cu: attention_ref's shapes (contiguous K/V of one sequence; all three masks);
// head_dim 32, 64, 128 or 256.
void attention_prefill(const AttentionParams& p, const float* q, const std::int64_t* q_pos, const float* k,
                       const float* v, float* out, Stream stream);

// kernels/cuda/backend_ops.cu: the ops above, the twins' shapes, pointers on the device (ids too).
void silu_mul(const float* gate, const float* up, float* out, std::int64_t n, Stream stream);
void add(const float* a, const float* b, float* out, std::int64_t n, Stream stream);
void scale_rows(float* x, std::int64_t rows, std::int64_t cols, const float* row_scale, Stream stream);
void gather_rows(const float* x, std::int64_t hidden, const std::int64_t* row_token, const float* row_scale,
                 std::int64_t rows, float* x_sorted, Stream stream);
void scatter_add_rows(const float* y_sorted, std::int64_t hidden, const std::int64_t* row_token,
                      const float* row_scale, std::int64_t rows, float* y, Stream stream);
void widen_indices(const std::int32_t* in, std::int64_t n, std::int64_t* out, Stream stream);
void gemm_epilogue(const float* acc, std::int64_t m, std::int64_t n, const float* x_scale, const float* w_scale,
                   float* y, bool accumulate, Stream stream);
// embed_rows_ref's shapes, the table [rows, cols] of `dtype` (row_scales [rows] or null) on the device.
enum class TableDtype { f32, bf16, f16, fp8_e4m3 };  // the stored dtypes embed_rows decodes
void embed_rows(TableDtype dtype, const void* data, const float* row_scales, std::int64_t rows, std::int64_t cols,
                std::int64_t first_row, const std::int32_t* ids, std::int64_t tokens, float* out, Stream stream);
// attention_ref's shapes and masks for any head_dim up to 1024: one block per (query, head), keys in order with an
// online softmax. For the head sizes attention_prefill does not take (the test models' 16); slow by design.
void attention_generic(const AttentionParams& p, const float* q, const std::int64_t* q_pos, const float* k,
                       const float* v, float* out, Stream stream);

// kernels/cuda/dense_gemm.cu: y[M, N] = x[M, K] · W[N, K]^T through cuBLASLt, fp32 output.
//   bf16: x, w BF16; scales ignored.  fp8: x, w e4m3 with one fp32 scale each (device pointers x_scale, w_scale:
//   per-tensor, as cuBLASLt's A/B scale pointers take them); needs compute capability 8.9 or later.
//   f32: x, w fp32, fp32 compute (CUBLAS_COMPUTE_32F: no TF32 rounding); scales ignored.
enum class DenseGemmDtype { bf16, fp8_e4m3, f32 };
class DenseGemm {
 public:
  DenseGemm();  // creates the cuBLASLt handle and a 32 MiB workspace on the current device
  ~DenseGemm();
  DenseGemm(const DenseGemm&) = delete;
  DenseGemm& operator=(const DenseGemm&) = delete;
  void run(DenseGemmDtype dtype, const void* x, const void* w, const float* x_scale, const float* w_scale, float* y,
           std::int64_t m, std::int64_t n, std::int64_t k, Stream stream);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cuda

}  // namespace moeplan::kernels
