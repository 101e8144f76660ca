// model/op_graph: builds the per-GPU op list of one forward step (see op_graph.hpp; formulas in docs/simulator.md).
#include "model/op_graph.hpp"

#include <algorithm>
#include <map>
#include <tuple>

#include "common/error.hpp"
#include "common/numeric.hpp"
#include "model/kv_cache.hpp"

namespace moeplan::model {

const char* op_kind_name(OpKind k) {
  switch (k) {
    case OpKind::embedding: return "embedding";
    case OpKind::norm: return "norm";
    case OpKind::gemm: return "gemm";
    case OpKind::expert_gemm: return "expert_gemm";
    case OpKind::attention_prefill: return "attention_prefill";
    case OpKind::attention_decode: return "attention_decode";
    case OpKind::rope: return "rope";
    case OpKind::router: return "router";
    case OpKind::topk: return "topk";
    case OpKind::activation: return "activation";
    case OpKind::lm_head: return "lm_head";
    case OpKind::all_reduce: return "all_reduce";
    case OpKind::all_gather: return "all_gather";
    case OpKind::all_to_all: return "all_to_all";
    case OpKind::send_recv: return "send_recv";
  }
  return "?";
}

Linear& Linear::add(StepVar v, double c) {
  for (int i = 0; i < terms; ++i) {
    if (var[static_cast<std::size_t>(i)] == v) {
      coef[static_cast<std::size_t>(i)] += c;
      return *this;
    }
  }
  if (terms == 4) throw std::logic_error("Linear: more than four terms");
  var[static_cast<std::size_t>(terms)] = v;
  coef[static_cast<std::size_t>(terms)] = c;
  ++terms;
  return *this;
}

double Linear::coefficient(StepVar v) const {
  for (int i = 0; i < terms; ++i)
    if (var[static_cast<std::size_t>(i)] == v) return coef[static_cast<std::size_t>(i)];
  return 0;
}

namespace {

using V = StepVar;


bool is_window(AttentionKind k) { return k == AttentionKind::chunked || k == AttentionKind::sliding; }

// Compute dtype of a weight format: what its GEMMs run in when the hardware has it (the simulator falls back to
// bf16 with a dequantisation cost when it does not).
std::string compute_dtype_of(const Precision& p, bool quantised_here) {
  if (!quantised_here || !p.format) return "bf16";
  return p.format->compute_dtype.empty() ? "bf16" : p.format->compute_dtype;
}

bool policy_quantises(const Precision& p, Module m) {
  if (!p.format || !p.format->quantised()) return false;
  WeightGroup probe{m, Role::other, Shard::replicated, 1, 1, 1, true};
  return policy_covers(p.policy, probe);
}

// Bytes one GPU holds of every weight group matching (module, roles), averaged over the class's layers. One pass
// over the class's weight groups sums them by (module, role); each op's query then adds a few of those sums.
struct ClassWeights {
  static constexpr std::size_t kRoles = static_cast<std::size_t>(Role::other) + 1;
  std::array<std::array<double, kRoles>, kModuleCount> by{};
  double layers = 0;

  ClassWeights(const ModelConfig& m, const Precision& p, const ParallelLayout& lay,
               const std::vector<const LayerSpec*>& class_layers, const GroupBytes* cached) {
    const std::array<double, 5> fraction = shard_fractions(m, lay);
    for (const LayerSpec* l : class_layers) {
      const std::vector<double>* known = cached ? &cached->layers[static_cast<std::size_t>(l->index)] : nullptr;
      for (std::size_t g = 0; g < l->weights.size(); ++g) {
        const WeightGroup& w = l->weights[g];
        const double bytes = known ? (*known)[g] : weight_group_bytes(w, p, l->index, static_cast<int>(m.num_layers));
        by[static_cast<std::size_t>(w.module)][static_cast<std::size_t>(w.role)] +=
            bytes * fraction[static_cast<std::size_t>(w.shard)];
      }
    }
    layers = to_double(static_cast<std::int64_t>(class_layers.size()));
  }

  double bytes(Module m, std::initializer_list<Role> roles) const {
    const auto& of = by[static_cast<std::size_t>(m)];
    double total = 0;
    if (roles.size() == 0) {
      for (double v : of) total += v;
    } else {
      for (Role r : roles) total += of[static_cast<std::size_t>(r)];
    }
    return layers > 0 ? total / layers : 0;
  }
};

struct Builder {
  const OpGraphRequest& req;
  const ModelConfig& m;
  const ParallelLayout& lay;
  OpGraph& g;
  double act;  // bytes per activation element

  Op& push(OpKind kind, const char* name, int cls, int repeat) {
    Op& op = g.ops.emplace_back();
    op.kind = kind;
    op.name = name;
    op.layer_class = cls;
    op.repeat = repeat;
    return op;
  }

  // y[M, n] = x[M, k] · W[n, k]ᵀ over `rows` tokens.
  Op& gemm(const char* name, int cls, int repeat, std::int64_t n, std::int64_t k, double weight_bytes, Module module,
           V rows_var = V::tokens) {
    Op& op = push(OpKind::gemm, name, cls, repeat);
    op.n = n;
    op.k = k;
    const bool q = policy_quantises(req.precision, module);
    op.weight_format = q ? req.precision.format->name : (m.torch_dtype.empty() ? "bf16" : m.torch_dtype);
    op.compute_dtype = compute_dtype_of(req.precision, q);
    op.rows.add(rows_var, 1);
    op.flops.add(rows_var, 2.0 * to_double(n) * to_double(k));
    op.weight_bytes.add(V::one, weight_bytes);
    op.act_bytes.add(rows_var, act * to_double(n + k));
    return op;
  }

  Op& elementwise(OpKind kind, const char* name, int cls, int repeat, double elems_per_token, double flops_per_elem,
                  double passes = 2) {
    Op& op = push(kind, name, cls, repeat);
    op.n = static_cast<std::int64_t>(elems_per_token);
    op.compute_dtype = "bf16";
    op.flops.add(V::tokens, flops_per_elem * elems_per_token);
    op.act_bytes.add(V::tokens, passes * act * elems_per_token);
    return op;
  }

  // Attention-DP MoE: each token's hidden vector to and from its experts over the MoE group (tp × dp GPUs), at
  // `bytes_per_elem` per element.
  void all_to_all(const char* name, int cls, int repeat, double bytes_per_elem) {
    Op& op = push(OpKind::all_to_all, name, cls, repeat);
    op.n = m.hidden;
    op.group = CommGroup::moe;
    op.group_ranks = lay.tp * lay.dp;
    op.comm_bytes.add(V::moe_dispatch_tokens, bytes_per_elem * to_double(m.hidden));
  }

  // Attention-DP MoE by gathering: every GPU of the MoE group (tp × dp) receives the others' tokens (its own piece:
  // its 1/tp share of the group's tokens, `bytes_per_elem` per element); the reduce-scatter after the experts moves
  // the same pieces back and is priced as the same ring.
  void moe_gather(const char* name, int cls, int repeat, double bytes_per_elem) {
    Op& op = push(OpKind::all_gather, name, cls, repeat);
    op.n = m.hidden;
    op.group = CommGroup::moe;
    op.group_ranks = lay.tp * lay.dp;
    op.comm_bytes.add(V::tokens, bytes_per_elem * to_double(m.hidden) / to_double(lay.tp));
  }

  void all_reduce(const char* name, int cls, int repeat, std::int64_t elems_per_token, int ranks) {
    if (ranks <= 1) return;
    Op& op = push(OpKind::all_reduce, name, cls, repeat);
    op.n = elems_per_token;
    op.group = CommGroup::tp;
    op.group_ranks = ranks;
    op.comm_bytes.add(V::tokens, act * to_double(elems_per_token));  // message size; the ring factor is the simulator's
  }
};

// The stage with the most layers (the first of the largest).
int heaviest_stage(const ModelConfig& m, const ParallelLayout& lay) {
  int best = 0, stage = 0;
  for (int s = 0; s < lay.pp; ++s) {
    auto [a, b] = stage_layers(m, lay, s);
    if (b - a >= best) {
      best = b - a;
      stage = s;
    }
  }
  return stage;
}

// The stage's layers grouped into classes of identical structure (MLP kind, attention kind, RoPE, window), and the
// graph's KV bytes per token on full-context and windowed layers.
using LayerGroups = std::map<std::tuple<int, int, bool, std::int64_t>, std::vector<const LayerSpec*>>;
LayerGroups group_layers(const OpGraphRequest& req, std::int64_t kv_heads, OpGraph& g) {
  const ModelConfig& m = *req.model;
  LayerGroups classes;
  for (int i = g.first_layer; i < g.last_layer; ++i) {
    const LayerSpec& l = m.layers[static_cast<std::size_t>(i)];
    classes[{static_cast<int>(l.mlp), static_cast<int>(l.attention), l.rope, l.attention_window_tokens}].push_back(&l);
    const std::int64_t kv = kv_bytes_per_token_per_layer(m, l, req.kv_dtype, kv_heads);
    if (is_window(l.attention)) {
      if (g.has_window && g.window_tokens != l.attention_window_tokens)
        throw InputError(m.name + ": layers use different attention windows (" + std::to_string(g.window_tokens) +
                         " and " + std::to_string(l.attention_window_tokens) + "); one window size per model is supported");
      g.has_window = true;
      g.window_tokens = l.attention_window_tokens;
      g.kv_bytes_per_token_window += kv;
    } else {
      g.kv_bytes_per_token_full += kv;
    }
  }
  return classes;
}

// The graph's entry for one class of layers; returns its index.
int add_layer_class(OpGraph& g, const std::vector<const LayerSpec*>& layers) {
  const LayerSpec& l0 = *layers.front();
  LayerClass lc;
  lc.mlp = l0.mlp;
  lc.attention = l0.attention;
  lc.rope = l0.rope;
  lc.layers = static_cast<int>(layers.size());
  lc.layer_indices.reserve(layers.size());
  for (const LayerSpec* l : layers) lc.layer_indices.push_back(l->index);
  lc.label = std::string(l0.mlp == MlpKind::moe ? "moe" : "dense") + "+" + attention_kind_name(l0.attention) +
             (l0.rope || l0.attention == AttentionKind::mla ? "" : "(nope)");
  g.layer_classes.push_back(std::move(lc));
  return static_cast<int>(g.layer_classes.size()) - 1;
}

// One class of layers as its blocks are built: its index and repeat, first layer, weights, and per-GPU heads.
struct ClassContext {
  int cls = 0, rep = 0;
  const LayerSpec* l0 = nullptr;
  const ClassWeights* w = nullptr;
  std::int64_t q_heads = 0, kv_heads = 0, kv_per_token = 0;
  bool window = false;
};

// Embedding on the first stage: one row gather per token (vocabulary split tp ways, then all-reduced).
void embedding_ops(Builder& b) {
  Op& op = b.push(OpKind::embedding, "embed", -1, 1);
  op.n = b.m.hidden;
  op.compute_dtype = "bf16";
  op.act_bytes.add(V::tokens, 2 * b.act * to_double(b.m.hidden));
  b.all_reduce("embed.all_reduce", -1, 1, b.m.hidden, b.lay.tp);
}

// MLA attention (DeepSeek-V3): low-rank query and KV projections, absorbed attention over the cached latents.
void mla_attention(Builder& b, const ClassContext& c) {
  const ModelConfig& m = b.m;
  const ClassWeights& w = *c.w;
  const int cls = c.cls, rep = c.rep;
  const OpGraphRequest& req = b.req;
  const std::int64_t q_heads = c.q_heads, kv_per_token = c.kv_per_token;
  const MlaDims& a = *m.mla;
  const std::int64_t qk = a.qk_nope_head_dim + a.qk_rope_head_dim;
  if (a.q_lora_rank > 0) {
    b.gemm("attn.q_a", cls, rep, a.q_lora_rank, m.hidden, w.bytes(Module::attention, {Role::q_a}), Module::attention);
    b.gemm("attn.q_b", cls, rep, q_heads * qk, a.q_lora_rank, w.bytes(Module::attention, {Role::q_b}), Module::attention);
  } else {
    b.gemm("attn.q", cls, rep, q_heads * qk, m.hidden, w.bytes(Module::attention, {Role::q}), Module::attention);
  }
  b.gemm("attn.kv_a", cls, rep, a.kv_lora_rank + a.qk_rope_head_dim, m.hidden,
         w.bytes(Module::attention, {Role::kv_a}), Module::attention);
  // Absorbed form (DeepSeek-V3 inference): W_UK folds into the query and W_UV into the output, per token and
  // head; kv_b's weights are read once per step. FLOPs: 2·heads·nope·kv_lora + 2·heads·kv_lora·v per token.
  b.gemm("attn.kv_b", cls, rep, q_heads * (a.qk_nope_head_dim + a.v_head_dim), a.kv_lora_rank,
         w.bytes(Module::attention, {Role::kv_b}), Module::attention);
  b.elementwise(OpKind::rope, "attn.rope", cls, rep, to_double((q_heads + 1) * a.qk_rope_head_dim), 4);
  // Absorbed attention: every head dots a 576-wide latent key (kv_lora + rope) and sums 512-wide latent values.
  const double per_pair = 2.0 * to_double(q_heads) * to_double(a.kv_lora_rank + a.qk_rope_head_dim) + 2.0 * to_double(q_heads) * to_double(a.kv_lora_rank);
  for (OpKind kind : {OpKind::attention_prefill, OpKind::attention_decode}) {
    const bool pre = kind == OpKind::attention_prefill;
    Op& op = b.push(kind, pre ? "attn.prefill" : "attn.decode", cls, rep);
    op.heads = q_heads;
    op.kv_heads = 1;
    op.head_dim = a.kv_lora_rank + a.qk_rope_head_dim;
    op.kv_dtype = kv_dtype_name(req.kv_dtype);
    op.compute_dtype = "bf16";
    op.flops.add(pre ? V::pairs_prefill_full : V::pairs_decode_full, per_pair);
    // Both read the cache of their sequence (prefill: the latents of its own chunk) and write the new latents.
    if (!pre) op.kv_bytes.add(V::kv_read_full, to_double(kv_per_token));
    op.kv_bytes.add(pre ? V::prefill_tokens : V::decode_tokens, to_double(kv_per_token));
    op.act_bytes.add(pre ? V::prefill_tokens : V::decode_tokens,
                     b.act * to_double(q_heads) * to_double(a.kv_lora_rank + a.qk_rope_head_dim + a.kv_lora_rank));
  }
  b.gemm("attn.o", cls, rep, m.hidden, q_heads * a.v_head_dim, w.bytes(Module::attention, {Role::o}), Module::attention);
}

// Grouped-query attention: fused QKV projection, optional QK norm and RoPE, attention over full or windowed keys.
void gqa_attention(Builder& b, const ClassContext& c) {
  const ModelConfig& m = b.m;
  const ClassWeights& w = *c.w;
  const LayerSpec& l0 = *c.l0;
  const int cls = c.cls, rep = c.rep;
  const OpGraphRequest& req = b.req;
  const std::int64_t q_heads = c.q_heads, kv_heads = c.kv_heads, kv_per_token = c.kv_per_token;
  const bool window = c.window;
  const std::int64_t qkv_n = (q_heads + 2 * kv_heads) * m.head_dim;
  b.gemm("attn.qkv", cls, rep, qkv_n, m.hidden,
         w.bytes(Module::attention, {Role::q, Role::k, Role::v, Role::bias, Role::sinks}), Module::attention);
  if (m.qk_norm) b.elementwise(OpKind::norm, "attn.qk_norm", cls, rep, to_double((q_heads + kv_heads) * m.head_dim), 4);
  if (l0.rope) b.elementwise(OpKind::rope, "attn.rope", cls, rep, to_double((q_heads + kv_heads) * m.head_dim), 4);
  // QKᵀ and PV: 2·D FLOPs each per (query head, key) pair.
  const double per_pair = 4.0 * to_double(q_heads) * to_double(m.head_dim);
  for (OpKind kind : {OpKind::attention_prefill, OpKind::attention_decode}) {
    const bool pre = kind == OpKind::attention_prefill;
    Op& op = b.push(kind, pre ? "attn.prefill" : "attn.decode", cls, rep);
    op.heads = q_heads;
    op.kv_heads = kv_heads;
    op.head_dim = m.head_dim;
    op.window = window ? l0.attention_window_tokens : 0;
    op.kv_dtype = kv_dtype_name(req.kv_dtype);
    op.compute_dtype = "bf16";
    const V pairs = pre ? (window ? V::pairs_prefill_window : V::pairs_prefill_full)
                        : (window ? V::pairs_decode_window : V::pairs_decode_full);
    op.flops.add(pairs, per_pair);
    // Decode reads every cached token of its sequence once per step. Prefill reads its chunk's own K/V from
    // the projection (act bytes) and writes the new K/V; the cache of a prompt's earlier chunks is not
    // counted (prefill attention is compute-bound; docs/simulator.md).
    if (!pre) op.kv_bytes.add(window ? V::kv_read_window : V::kv_read_full, to_double(kv_per_token));
    op.kv_bytes.add(pre ? V::prefill_tokens : V::decode_tokens, to_double(kv_per_token));
    op.act_bytes.add(pre ? V::prefill_tokens : V::decode_tokens, 2.0 * b.act * to_double(q_heads * m.head_dim));
  }
  b.gemm("attn.o", cls, rep, m.hidden, q_heads * m.head_dim, w.bytes(Module::attention, {Role::o}), Module::attention);
}

// Dense MLP: gate/up, SwiGLU, down, tp-split and all-reduced.
void dense_mlp(Builder& b, const ClassContext& c) {
  const ModelConfig& m = b.m;
  const ClassWeights& w = *c.w;
  const int cls = c.cls, rep = c.rep;
  const int tp = b.lay.tp;
  const std::int64_t inter = m.dense_intermediate / tp;
  b.gemm("mlp.gate_up", cls, rep, 2 * inter, m.hidden,
         w.bytes(Module::dense_mlp, {Role::gate, Role::up, Role::bias}), Module::dense_mlp);
  b.elementwise(OpKind::activation, "mlp.act", cls, rep, to_double(inter), 5, 1.5);
  b.gemm("mlp.down", cls, rep, m.hidden, inter, w.bytes(Module::dense_mlp, {Role::down}), Module::dense_mlp);
  b.all_reduce("mlp.all_reduce", cls, rep, m.hidden, tp);
}

// Bytes per hidden element of an attention-DP MoE gather: the experts' quantized activations where the engine
// quantizes before gathering (NVFP4: 4 bits + one 8-bit scale per 16 elements; per-tensor FP8: 1 byte), else the
// dispatch dtype.
double gathered_bytes_per_elem(const OpGraphRequest& req) {
  if (!req.quantized_dispatch || !req.precision.format || !policy_quantises(req.precision, Module::routed_experts))
    return req.dispatch_bytes;
  const std::string& f = req.precision.format->name;
  return f == "nvfp4" ? 0.5 + 1.0 / 16 : f == "fp8" ? 1.0 : req.dispatch_bytes;
}

// MoE: router over all experts (replicated), top-k, shared experts (tp-split), routed experts (ep × moe_tp).
void moe_mlp(Builder& b, const ClassContext& c) {
  const ModelConfig& m = b.m;
  const ClassWeights& w = *c.w;
  const int cls = c.cls, rep = c.rep;
  const OpGraphRequest& req = b.req;
  const ParallelLayout& lay = b.lay;
  const int tp = lay.tp;
  const int moe_group = lay.tp * lay.dp;  // GPUs sharing one MoE layer inside a stage
  const OpGraph& g = b.g;
  b.gemm("moe.router", cls, rep, m.num_experts, m.hidden, w.bytes(Module::router, {}), Module::router);
  b.elementwise(OpKind::topk, "moe.topk", cls, rep, to_double(m.num_experts), 2, 0.5);
  if (m.shared_intermediate > 0) {
    const std::int64_t inter = m.shared_intermediate / tp;
    b.gemm("moe.shared.gate_up", cls, rep, 2 * inter, m.hidden,
           w.bytes(Module::shared_experts, {Role::gate, Role::up}), Module::shared_experts);
    b.elementwise(OpKind::activation, "moe.shared.act", cls, rep, to_double(inter), 5, 1.5);
    b.gemm("moe.shared.down", cls, rep, m.hidden, inter, w.bytes(Module::shared_experts, {Role::down}),
           Module::shared_experts);
  }
  const bool a2a = lay.dp > 1;  // DP attention: tokens live on different GPUs and travel to their experts
  const bool gather = req.moe_dp_comm == MoeDpComm::allgather;
  if (a2a) {
    if (gather) b.moe_gather("moe.dispatch", cls, rep, gathered_bytes_per_elem(req));
    else b.all_to_all("moe.dispatch", cls, rep, req.dispatch_bytes);
  }
  const std::int64_t inter = m.moe_intermediate / lay.moe_tp();
  const double per_expert = 1.0 / to_double(g.experts_per_rank);
  const bool q = policy_quantises(req.precision, Module::routed_experts);
  for (int part = 0; part < 2; ++part) {
    const bool up = part == 0;
    Op& op = b.push(OpKind::expert_gemm, up ? "moe.experts.gate_up" : "moe.experts.down", cls, rep);
    op.n = up ? 2 * inter : m.hidden;
    op.k = up ? m.hidden : inter;
    op.weight_format = q ? req.precision.format->name : (m.torch_dtype.empty() ? "bf16" : m.torch_dtype);
    op.compute_dtype = compute_dtype_of(req.precision, q);
    op.rows.add(V::expert_assignments, 1);
    op.flops.add(V::expert_assignments, 2.0 * to_double(op.n) * to_double(op.k));
    const double bytes = up ? w.bytes(Module::routed_experts, {Role::gate, Role::up, Role::bias})
                            : w.bytes(Module::routed_experts, {Role::down});
    op.weight_bytes.add(V::experts_touched, bytes * per_expert);
    op.act_bytes.add(V::expert_assignments, b.act * to_double(op.n + op.k));
    if (up) {
      // The SwiGLU between the two expert GEMMs runs on the routed rows, not on the step's tokens.
      Op& act_op = b.push(OpKind::activation, "moe.experts.act", cls, rep);
      act_op.n = inter;
      act_op.compute_dtype = "bf16";
      act_op.flops.add(V::expert_assignments, 5.0 * to_double(inter));
      act_op.act_bytes.add(V::expert_assignments, 3.0 * b.act * to_double(inter));
    }
  }
  if (a2a) {
    if (gather) b.moe_gather("moe.combine", cls, rep, b.act);
    else b.all_to_all("moe.combine", cls, rep, b.act);
    b.all_reduce("moe.all_reduce", cls, rep, m.hidden, tp);  // shared expert / moe_tp partial sums in the tp group
  } else {
    b.all_reduce("moe.all_reduce", cls, rep, m.hidden, moe_group);
  }
}

// Final norm and lm_head on the last stage; logits of the tokens that sample.
void head_ops(Builder& b) {
  const ModelConfig& m = b.m;
  const OpGraphRequest& req = b.req;
  const ParallelLayout& lay = b.lay;
  const int tp = lay.tp;
  Op& n = b.push(OpKind::norm, "final_norm", -1, 1);
  n.n = m.hidden;
  n.compute_dtype = "bf16";
  n.flops.add(V::logit_tokens, 4.0 * to_double(m.hidden));
  n.act_bytes.add(V::logit_tokens, 2 * b.act * to_double(m.hidden));
  auto global_bytes = [&](std::size_t gi) {
    return req.group_bytes ? req.group_bytes->globals[gi]
                           : weight_group_bytes(m.globals[gi], req.precision, -1, static_cast<int>(m.num_layers));
  };
  for (std::size_t gi = 0; gi < m.globals.size(); ++gi)
    if (m.globals[gi].module == Module::norms) n.weight_bytes.add(V::one, global_bytes(gi));
  const std::int64_t vocab = m.vocab / tp;
  double head_bytes = 0;
  for (std::size_t gi = 0; gi < m.globals.size(); ++gi) {
    const WeightGroup& wg = m.globals[gi];
    if (wg.module == Module::lm_head || (m.tie_word_embeddings && wg.module == Module::embedding))
      head_bytes += global_bytes(gi) * shard_fraction(m, wg, lay);
  }
  Op& h = b.gemm("lm_head", -1, 1, vocab, m.hidden, head_bytes, Module::lm_head, V::logit_tokens);
  h.kind = OpKind::lm_head;
  if (tp > 1) {
    Op& op = b.push(OpKind::all_gather, "lm_head.all_gather", -1, 1);
    op.n = m.vocab;
    op.group = CommGroup::tp;
    op.group_ranks = tp;
    op.comm_bytes.add(V::logit_tokens, 4.0 * to_double(vocab));  // fp32 logits
  }
}

// A stage before the last hands its activations to the next.
void send_ops(Builder& b) {
  const ModelConfig& m = b.m;
  Op& op = b.push(OpKind::send_recv, "pp.send", -1, 1);
  op.n = m.hidden;
  op.group = CommGroup::pp;
  op.group_ranks = 2;
  op.comm_bytes.add(V::tokens, b.act * to_double(m.hidden));
}

}  // namespace

OpGraph build_op_graph(const OpGraphRequest& req) {
  if (!req.model) throw std::logic_error("build_op_graph: no model");
  const ModelConfig& m = *req.model;
  const ParallelLayout& lay = req.layout;
  validate_layout(m, lay);

  OpGraph g;
  const int stage = req.stage >= 0 ? req.stage : heaviest_stage(m, lay);
  auto [first, last] = stage_layers(m, lay, stage);
  g.stage = stage;
  g.first_layer = first;
  g.last_layer = last;
  Builder b{req, m, lay, g, req.activation_bytes};

  const std::int64_t kv_heads = kv_heads_per_gpu(m, lay);
  const int tp = lay.tp;
  g.experts_per_rank = m.is_moe() ? m.num_experts / lay.ep : 0;
  const LayerGroups classes = group_layers(req, kv_heads, g);
  g.ops.reserve(8 + 24 * classes.size());  // at most 22 ops per class, 4 outside them
  g.layer_classes.reserve(classes.size());

  if (stage == 0) embedding_ops(b);
  for (const auto& [key, layers] : classes) {
    const LayerSpec& l0 = *layers.front();
    const ClassWeights w(m, req.precision, lay, layers, req.group_bytes);
    ClassContext c;
    c.cls = add_layer_class(g, layers);
    c.rep = static_cast<int>(layers.size());
    c.l0 = &l0;
    c.w = &w;
    c.q_heads = m.num_heads / lay.tp;
    c.kv_heads = kv_heads;
    c.kv_per_token = kv_bytes_per_token_per_layer(m, l0, req.kv_dtype, kv_heads);
    c.window = is_window(l0.attention);

    // ---- attention block (the layer's norm weights are read half by each of its two norm ops)
    const double norm_bytes = w.bytes(Module::norms, {}) / 2;
    b.elementwise(OpKind::norm, "attn.norm", c.cls, c.rep, to_double(m.hidden), 4).weight_bytes.add(V::one, norm_bytes);
    if (l0.attention == AttentionKind::mla) mla_attention(b, c);
    else gqa_attention(b, c);
    b.all_reduce("attn.all_reduce", c.cls, c.rep, m.hidden, tp);

    // ---- MLP block
    b.elementwise(OpKind::norm, "mlp.norm", c.cls, c.rep, to_double(m.hidden), 4).weight_bytes.add(V::one, norm_bytes);
    if (l0.mlp == MlpKind::dense) dense_mlp(b, c);
    else moe_mlp(b, c);
  }
  if (stage == lay.pp - 1) head_ops(b);
  else send_ops(b);
  return g;
}

OpTotals op_totals(const OpGraph& graph, const StepValues& x) {
  OpTotals t;
  for (const Op& op : graph.ops) {
    const double r = op.repeat;
    t.flops += r * op.flops.at(x);
    t.weight_bytes += r * op.weight_bytes.at(x);
    t.act_bytes += r * op.act_bytes.at(x);
    t.kv_bytes += r * op.kv_bytes.at(x);
    t.comm_bytes += r * op.comm_bytes.at(x);
  }
  return t;
}

}  // namespace moeplan::model
