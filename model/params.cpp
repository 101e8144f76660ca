#include "model/params.hpp"

namespace moeplan::model {

std::int64_t layer_params(const LayerSpec& l) {
  std::int64_t n = 0;
  for (const auto& w : l.weights) n += w.params();
  return n;
}

ParamCounts count_params(const ModelConfig& c) {
  ParamCounts p;
  auto add = [&](const WeightGroup& w) { p.by_module[static_cast<std::size_t>(w.module)] += w.params(); };
  std::int64_t routed_active = 0;
  for (const auto& l : c.layers) {
    for (const auto& w : l.weights) {
      add(w);
      // A token visits experts_per_token of num_experts routed experts in this layer.
      if (w.module == Module::routed_experts) routed_active += w.params() / c.num_experts * c.experts_per_token;
    }
  }
  for (const auto& w : c.globals) add(w);
  for (const auto& w : c.vision) add(w);
  for (const auto& w : c.mtp) add(w);
  p.vision = p.of(Module::vision);
  p.mtp = p.of(Module::mtp);
  std::int64_t all = 0;
  for (auto v : p.by_module) all += v;
  p.total = all;
  p.text = all - p.vision - p.mtp;
  p.active_with_embedding = p.text - p.of(Module::routed_experts) + routed_active;
  // Tied embeddings: the matrix is read once as lm_head, so leaving the embedding out removes nothing.
  p.active_without_embedding = p.active_with_embedding - (c.tie_word_embeddings ? 0 : p.of(Module::embedding));
  return p;
}

}  // namespace moeplan::model
