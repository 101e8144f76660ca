#include "model/shard.hpp"

#include <algorithm>
#include <string>

#include "common/error.hpp"

namespace moeplan::model {

namespace {
std::string s(std::int64_t v) { return std::to_string(v); }
}  // namespace

std::vector<ParallelLayout> candidate_layouts(const ModelConfig& m, int count) {
  std::vector<ParallelLayout> out;
  for (int pp : {1, 2, 4}) {
    if (count % pp != 0 || pp > m.num_layers) continue;
    const int per_stage = count / pp;
    out.push_back({per_stage, 1, pp, 1});
    if (m.is_moe() && per_stage > 1) {
      out.push_back({per_stage, per_stage, pp, 1});
      out.push_back({1, per_stage, pp, per_stage});
    }
  }
  return out;
}

std::string layout_problem(const ModelConfig& m, const ParallelLayout& l) {
  if (l.tp < 1 || l.ep < 1 || l.pp < 1 || l.dp < 1)
    return "--tp, --ep, --pp and --dp must be positive integers (got tp=" + s(l.tp) + " ep=" + s(l.ep) +
           " pp=" + s(l.pp) + " dp=" + s(l.dp) + ")";
  if (m.num_heads % l.tp != 0)
    return "--tp " + s(l.tp) + " does not divide the " + s(m.num_heads) + " attention heads of " + m.name +
           "; choose tp from the divisors of " + s(m.num_heads);
  if (!m.mla && m.num_kv_heads % l.tp != 0 && l.tp % m.num_kv_heads != 0)
    return "--tp " + s(l.tp) + " and the " + s(m.num_kv_heads) + " KV heads of " + m.name +
           " do not divide each other; KV heads can be split or replicated, not both";
  if (m.num_layers % l.pp != 0)
    return "--pp " + s(l.pp) + " does not divide the " + s(m.num_layers) + " layers of " + m.name;
  if (!m.is_moe()) {
    if (l.ep > 1) return "--ep " + s(l.ep) + " needs an MoE model; " + m.name + " is dense (use --ep 1)";
    if (l.dp > 1)
      return "--dp " + s(l.dp) + " (attention data parallel) needs an MoE model with --ep; " + m.name +
             " is dense: run separate replicas instead";
    if (m.dense_intermediate % l.tp != 0)
      return "--tp " + s(l.tp) + " does not divide the MLP intermediate size " + s(m.dense_intermediate);
    return "";
  }
  if (m.num_experts % l.ep != 0)
    return "--ep " + s(l.ep) + " does not divide the " + s(m.num_experts) + " experts of " + m.name;
  if ((l.tp * l.dp) % l.ep != 0)
    return "--ep " + s(l.ep) + " must divide tp*dp = " + s(l.tp * l.dp) +
           " (experts are spread over the GPUs of one pipeline stage)";
  if (m.moe_intermediate % l.moe_tp() != 0)
    return "tp*dp/ep = " + s(l.moe_tp()) + " does not divide the expert intermediate size " +
           s(m.moe_intermediate) + "; raise --ep";
  if (m.dense_intermediate > 0 && m.dense_intermediate % l.tp != 0)
    return "--tp " + s(l.tp) + " does not divide the dense MLP intermediate size " + s(m.dense_intermediate);
  if (m.shared_intermediate > 0 && m.shared_intermediate % l.tp != 0)
    return "--tp " + s(l.tp) + " does not divide the shared-expert intermediate size " + s(m.shared_intermediate);
  return "";
}

void validate_layout(const ModelConfig& m, const ParallelLayout& l) {
  if (std::string problem = layout_problem(m, l); !problem.empty()) throw InputError(problem);
}

std::int64_t kv_heads_per_gpu(const ModelConfig& m, const ParallelLayout& l) {
  if (m.mla) return m.num_kv_heads;  // MLA caches one latent; not split by heads
  return std::max<std::int64_t>(1, m.num_kv_heads / l.tp);
}

double shard_fraction(const ModelConfig& m, const WeightGroup& w, const ParallelLayout& l) {
  switch (w.shard) {
    case Shard::replicated: return 1.0;
    case Shard::tensor:
    case Shard::vocab: return 1.0 / l.tp;
    case Shard::kv_heads:
      return static_cast<double>(kv_heads_per_gpu(m, l)) / static_cast<double>(m.num_kv_heads);
    case Shard::experts: return 1.0 / (static_cast<double>(l.ep) * l.moe_tp());
  }
  return 1.0;
}

std::array<double, 5> shard_fractions(const ModelConfig& m, const ParallelLayout& l) {
  std::array<double, 5> f{};
  for (Shard s : {Shard::replicated, Shard::tensor, Shard::kv_heads, Shard::experts, Shard::vocab})
    f[static_cast<std::size_t>(s)] = shard_fraction(m, WeightGroup{Module::norms, Role::other, s, 1, 1, 1, false}, l);
  return f;
}

std::pair<int, int> stage_layers(const ModelConfig& m, const ParallelLayout& l, int stage) {
  const int per_stage = static_cast<int>(m.num_layers) / l.pp;
  return {stage * per_stage, (stage + 1) * per_stage};
}

WeightBytes weight_bytes_per_gpu(const ModelConfig& m, const Precision& p, const ParallelLayout& l, bool include_vision,
                                 const GroupBytes* cached) {
  WeightBytes best;
  const int n = static_cast<int>(m.num_layers);
  const std::array<double, 5> fraction = shard_fractions(m, l);
  for (int stage = 0; stage < l.pp; ++stage) {
    WeightBytes b;
    b.stage = stage;
    // `known`: the group's bytes from `cached`, else < 0.
    auto add = [&](const WeightGroup& w, int layer, double known) {
      const double bytes =
          (known >= 0 ? known : weight_group_bytes(w, p, layer, n)) * fraction[static_cast<std::size_t>(w.shard)];
      b.by_module[static_cast<std::size_t>(w.module)] += bytes;
      b.total += bytes;
    };
    auto from = [&](const std::vector<double>* v, std::size_t i) { return v ? (*v)[i] : -1.0; };
    const auto [first, last] = stage_layers(m, l, stage);
    if (cached && cached->layer_sums.size() == m.layers.size() + 1) {
      // The stage's layers from the running sums: per (module, shard), the difference of two sums.
      const auto& lo = cached->layer_sums[static_cast<std::size_t>(first)];
      const auto& hi = cached->layer_sums[static_cast<std::size_t>(last)];
      for (std::size_t mod = 0; mod < static_cast<std::size_t>(kModuleCount); ++mod)
        for (std::size_t sh = 0; sh < static_cast<std::size_t>(GroupBytes::kShardCount); ++sh) {
          const std::size_t k = mod * GroupBytes::kShardCount + sh;
          if (hi[k] == lo[k]) continue;
          const double bytes = (hi[k] - lo[k]) * fraction[sh];
          b.by_module[mod] += bytes;
          b.total += bytes;
        }
    } else {
      for (int i = first; i < last; ++i) {
        const auto& weights = m.layers[static_cast<std::size_t>(i)].weights;
        const std::vector<double>* known = cached ? &cached->layers[static_cast<std::size_t>(i)] : nullptr;
        for (std::size_t g = 0; g < weights.size(); ++g) add(weights[g], i, from(known, g));
      }
    }
    for (std::size_t g = 0; g < m.globals.size(); ++g) {
      const WeightGroup& w = m.globals[g];
      const double known = from(cached ? &cached->globals : nullptr, g);
      // Embedding on the first stage; final norm and lm_head on the last (tied: the embedding serves both ends).
      const bool first_stage = stage == 0, last_stage = stage == l.pp - 1;
      if (w.module == Module::embedding && (first_stage || (m.tie_word_embeddings && last_stage))) add(w, -1, known);
      else if (w.module != Module::embedding && last_stage) add(w, -1, known);
    }
    if (include_vision && stage == 0)
      for (std::size_t g = 0; g < m.vision.size(); ++g) add(m.vision[g], -1, from(cached ? &cached->vision : nullptr, g));
    if (b.total > best.total) best = b;
  }
  return best;
}

WeightBytes weight_bytes_total(const ModelConfig& m, const Precision& p, bool include_vision) {
  return weight_bytes_per_gpu(m, p, ParallelLayout{}, include_vision);
}

}  // namespace moeplan::model
