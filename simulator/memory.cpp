#include "simulator/memory.hpp"

#include <algorithm>
#include <cmath>

#include "common/error.hpp"
#include "common/text.hpp"

namespace moeplan::simulator {

using namespace moeplan::model;

namespace {

// Transient activation bytes of one forward pass over `tokens` tokens on one GPU (docs/memory.md, "Activations").
// bf16 activations (2 bytes); only one layer's buffers are live at a time, so the larger of the attention and
// MLP/MoE working sets counts, plus four hidden-size buffers (residual, normed input, attention out, MLP out)
// and fp32 logits for the sampled tokens.
double activation_bytes(const ModelConfig& m, const ParallelLayout& l, std::int64_t tokens, std::int64_t sampled) {
  constexpr double kAct = 2.0;
  const double t = static_cast<double>(tokens);
  const double hidden_buffers = 4.0 * t * static_cast<double>(m.hidden) * kAct;
  const double heads = static_cast<double>(m.num_heads) / l.tp;
  const double kv_heads = static_cast<double>(std::max<std::int64_t>(1, m.num_kv_heads / l.tp));
  // q, k, v and the attention output.
  const double attention = t * (2.0 * heads + 2.0 * kv_heads) * static_cast<double>(m.head_dim) * kAct;
  // Dense MLP / shared expert: gate, up and their SwiGLU product, each [tokens, I/tp].
  const double dense_inter = static_cast<double>(std::max(m.dense_intermediate, m.shared_intermediate)) / l.tp;
  double mlp = 3.0 * t * dense_inter * kAct;
  if (m.is_moe()) {
    // Routed experts: tokens*top_k rows gathered from all dp ranks, spread over ep ranks, each with a hidden
    // copy and gate/up/product of width I/moe_tp.
    const double routed_rows = std::ceil(t * l.dp * static_cast<double>(m.experts_per_token) / l.ep);
    const double moe = routed_rows * (static_cast<double>(m.hidden) + 3.0 * static_cast<double>(m.moe_intermediate) / l.moe_tp()) * kAct;
    mlp = std::max(mlp, moe);
  }
  const double logits = static_cast<double>(sampled) * std::ceil(static_cast<double>(m.vocab) / l.tp) * 4.0;
  return hidden_buffers + std::max(attention, mlp) + logits;
}

}  // namespace

MemoryBreakdown memory_breakdown(const MemoryRequest& r) {
  const ModelConfig& m = *r.model;
  const ParallelLayout& l = r.layout;
  validate_layout(m, l);
  if (r.context_tokens <= 0) throw InputError("--context must be a positive number of tokens");
  if (r.concurrency <= 0) throw InputError("--concurrency must be at least 1");
  if (r.max_num_batched_tokens <= 0) throw InputError("--max-num-batched-tokens must be positive");
  if (m.max_context_tokens > 0 && r.context_tokens > m.max_context_tokens)
    throw InputError("--context " + with_commas(r.context_tokens) + " is above " + m.name + "'s limit of " +
                     with_commas(m.max_context_tokens) + " tokens (max_position_embeddings)");
  if (!(r.capacity_bytes > 0)) throw InputError("device memory must be positive");
  if (!(r.overhead.gpu_memory_utilization > 0 && r.overhead.gpu_memory_utilization <= 1))
    throw InputError("--gpu-memory-utilization must be in (0, 1]");

  MemoryBreakdown b;
  b.weights = weight_bytes_per_gpu(m, r.precision, l, r.include_vision, r.group_bytes);
  b.kv_heads_per_gpu = kv_heads_per_gpu(m, l);
  const auto [first, last] = stage_layers(m, l, b.weights.stage);
  b.kv_bytes_per_sequence = static_cast<double>(
      kv_bytes_per_sequence(m, r.context_tokens, r.kv_dtype, r.kv_mode, b.kv_heads_per_gpu, first, last));
  b.sequences_per_gpu = (r.concurrency + l.dp - 1) / l.dp;
  b.kv_bytes = b.kv_bytes_per_sequence * static_cast<double>(b.sequences_per_gpu);
  const std::int64_t step_tokens = std::min(r.max_num_batched_tokens, b.sequences_per_gpu * r.context_tokens);
  b.activation_bytes = activation_bytes(m, l, step_tokens, std::min(step_tokens, b.sequences_per_gpu));
  if (!r.host_mode) {
    b.overhead_bytes = r.overhead.cuda_context_bytes + r.overhead.cuda_graphs_bytes +
                       (l.gpus() > 1 ? r.overhead.comm_buffers_bytes : 0.0);
  }
  b.total_bytes = b.weights.total + b.kv_bytes + b.activation_bytes + b.overhead_bytes;
  b.capacity_bytes = r.capacity_bytes;
  b.usable_bytes = r.host_mode ? r.capacity_bytes : r.capacity_bytes * r.overhead.gpu_memory_utilization;
  b.free_bytes = b.usable_bytes - b.total_bytes;
  b.fits = b.free_bytes >= 0;
  const double room_for_kv = b.usable_bytes - b.weights.total - b.activation_bytes - b.overhead_bytes;
  if (room_for_kv > 0 && b.kv_bytes_per_sequence > 0)
    b.max_concurrency = static_cast<std::int64_t>(std::floor(room_for_kv / b.kv_bytes_per_sequence)) * l.dp;
  return b;
}

}  // namespace moeplan::simulator
