// model/op_graph: the operations of one forward step on one GPU, layer class by layer class, with shapes, FLOPs
// and bytes. The simulator prices these ops (simulator/step_cost) and the executor runs and times ops of the same
// names, so predicted and measured times compare op for op.
//
// A step is one forward pass over a mix of decode tokens (one per running sequence) and prefill tokens (chunks of
// prompts). Every cost of every op is a linear function of a handful of step variables (StepVar): tokens in the
// step, query-key pairs the attention computes, KV tokens it reads, experts the routed tokens touch. The graph is
// built once per (model, precision, layout); a step is then priced by evaluating these linear forms, which keeps
// one step estimate well under a microsecond. Derivations: docs/simulator.md.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "model/config.hpp"
#include "model/precision.hpp"
#include "model/shard.hpp"

namespace moeplan::model {

enum class OpKind {
  embedding, norm, gemm, expert_gemm, attention_prefill, attention_decode, rope, router, topk, activation,
  lm_head, all_reduce, all_gather, all_to_all, send_recv
};
inline constexpr int kOpKindCount = 15;
const char* op_kind_name(OpKind k);
inline bool is_collective(OpKind k) {
  return k == OpKind::all_reduce || k == OpKind::all_gather || k == OpKind::all_to_all || k == OpKind::send_recv;
}

// The quantities a step's costs are linear in. Values are per attention group (one DP rank of one pipeline
// stage) except the MoE ones, which describe the busiest expert-parallel rank.
enum class StepVar : std::uint8_t {
  one,                   // 1 (fixed costs)
  tokens,                // tokens in the step (decode + prefill) on this attention group
  decode_tokens,         //   of which decode tokens (one per decoding sequence)
  prefill_tokens,        //   of which prompt tokens
  logit_tokens,          // tokens whose logits are computed (one per decoding sequence, one per finished prompt)
  pairs_decode_full,     // Σ over decode queries of keys attended, full-context layers (global, MLA)
  pairs_decode_window,   //   same, chunked/sliding layers
  pairs_prefill_full,    // Σ over prefill queries of keys attended, full-context layers
  pairs_prefill_window,  //   same, chunked/sliding layers
  kv_read_full,          // Σ over sequences in the step of KV tokens read, full-context layers
  kv_read_window,        //   same, chunked/sliding layers (capped at the chunk/window)
  experts_touched,       // distinct routed experts with at least one token on the busiest EP rank
  expert_assignments,    // (token, expert) assignments computed by the busiest EP rank
  moe_dispatch_tokens,   // token copies one GPU sends in the MoE all-to-all (DP attention + EP)
  moe_tokens,            // tokens entering one MoE layer, all DP groups together (a GPU profile's MoE num_tokens)
};
inline constexpr int kStepVarCount = 15;
using StepValues = std::array<double, kStepVarCount>;

// A sparse linear form Σ coef_i · var_i over at most four step variables.
struct Linear {
  std::array<StepVar, 4> var{};
  std::array<double, 4> coef{};
  int terms = 0;
  Linear& add(StepVar v, double c);  // merges with an existing term for v
  double at(const StepValues& x) const {
    double s = 0;
    for (int i = 0; i < terms; ++i) s += coef[static_cast<std::size_t>(i)] * x[static_cast<std::size_t>(var[static_cast<std::size_t>(i)])];
    return s;
  }
  double coefficient(StepVar v) const;
};

// Which GPUs a collective spans.
enum class CommGroup { none, tp, moe, pp };

struct Op {
  OpKind kind = OpKind::gemm;
  const char* name = "";   // stable op name shared with the executor, e.g. "attn.qkv", "moe.experts.gate_up"
  int layer_class = -1;    // index into OpGraph::layer_classes; -1 for ops outside the decoder layers
  int repeat = 1;          // how many times a step runs it on this GPU (layers of its class in the stage)
  // Shape on this GPU. gemm: y[M, n] = x[M, k] · W[n, k]ᵀ with M = the `rows` form; expert_gemm: per expert;
  // attention: heads, kv_heads, head_dim; collectives: n = elements per token.
  std::int64_t n = 0, k = 0;
  std::int64_t heads = 0, kv_heads = 0, head_dim = 0;
  std::int64_t window = 0;    // attention: the chunk or sliding window of its layers (0: full context)
  std::string kv_dtype;       // attention: the KV cache's dtype name ("bf16", "fp16", "fp8"); "" for other ops
  std::string weight_format;  // precision format of the weights ("bf16", "fp8", "mxfp4", ...); "" when none
  std::string compute_dtype;  // dtype whose FLOP peak applies ("bf16", "fp8", "fp4", "int8")
  // Per invocation, linear in the step variables:
  Linear rows;          // M rows of the GEMM (tokens); for experts: assignments on the busiest rank
  Linear flops;         // floating-point operations
  Linear weight_bytes;  // weight bytes read
  Linear act_bytes;     // activation bytes read + written
  Linear kv_bytes;      // KV-cache bytes read + written
  Linear comm_bytes;    // bytes each GPU sends (collectives)
  CommGroup group = CommGroup::none;
  int group_ranks = 1;  // GPUs in the collective
};

struct LayerClass {
  std::string label;   // e.g. "moe+chunked", "dense+global(nope)"
  MlpKind mlp = MlpKind::dense;
  AttentionKind attention = AttentionKind::global;
  bool rope = true;
  int layers = 0;      // layers of this class in the stage
  std::vector<int> layer_indices;  // their indices in the model
};

// How attention-DP ranks exchange tokens with the MoE layer when dp > 1.
enum class MoeDpComm {
  all_to_all,  // each token's hidden vector to and from the ranks of its top-k experts (DeepEP-style)
  allgather,   // every rank gathers all ranks' tokens before the experts and reduce-scatters the outputs after
};

struct OpGraphRequest {
  const ModelConfig* model = nullptr;
  Precision precision;
  ParallelLayout layout;
  KvDtype kv_dtype = KvDtype::bf16;
  int stage = -1;                    // pipeline stage; -1 = the one with the most layers (the last such: it holds lm_head)
  double activation_bytes = 2;       // bytes per activation element (bf16)
  double dispatch_bytes = 2;         // bytes per element sent in the MoE all-to-all dispatch (1 with fp8 dispatch)
  MoeDpComm moe_dp_comm = MoeDpComm::all_to_all;
  // The gather carries the routed experts' quantized activations where the experts are NVFP4 (4.5 bits per element
  // with its scales) or per-tensor FP8 (1 byte), as TensorRT-LLM's CUTLASS MoE quantizes before its allgather.
  bool quantized_dispatch = false;
  const GroupBytes* group_bytes = nullptr;  // group_bytes(*model, precision), when the caller has it
};

struct OpGraph {
  std::vector<LayerClass> layer_classes;
  std::vector<Op> ops;
  int stage = 0;
  int first_layer = 0, last_layer = 0;
  bool has_window = false;           // some layer is chunked or sliding
  std::int64_t window_tokens = 0;    // the chunk or window size of those layers
  std::int64_t kv_bytes_per_token_full = 0;    // KV bytes per token on this GPU, summed over full-context layers
  std::int64_t kv_bytes_per_token_window = 0;  //   and over chunked/sliding layers
  std::int64_t experts_per_rank = 0;           // routed experts one EP rank holds
};

// Throws InputError for invalid layouts (validate_layout).
OpGraph build_op_graph(const OpGraphRequest& request);

// Totals of a graph at given step values (every op × repeat), for checks and reports.
struct OpTotals {
  double flops = 0, weight_bytes = 0, act_bytes = 0, kv_bytes = 0, comm_bytes = 0;
};
OpTotals op_totals(const OpGraph& graph, const StepValues& x);

}  // namespace moeplan::model
