// model/shard: a tensor/expert/pipeline/attention-data parallel layout, its validity for a model, and the weight
// bytes each GPU holds under it.
//
// Layout convention (as TensorRT-LLM's moe_tp x moe_ep = tp and SGLang's DP attention):
//   GPUs = tp * dp * pp. Inside a pipeline stage there are tp*dp GPUs: attention heads are split tp ways and
//   replicated over dp (each dp rank serves its own sequences); routed experts are split ep ways and each
//   expert's intermediate dimension moe_tp = tp*dp/ep ways. Dense MLPs, shared experts and the vocabulary
//   follow attention (split tp ways). Norms and routers are replicated. Layers are split evenly pp ways.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "model/config.hpp"
#include "model/precision.hpp"

namespace moeplan::model {

struct ParallelLayout {
  int tp = 1;  // tensor parallel (attention heads, dense MLP, vocabulary)
  int ep = 1;  // expert parallel (routed experts)
  int pp = 1;  // pipeline stages (layers)
  int dp = 1;  // attention data parallel (replicas of attention inside a stage; MoE only, with ep)
  int gpus() const { return tp * dp * pp; }
  int moe_tp() const { return tp * dp / ep; }
};

// Throws InputError naming the constraint that fails (heads by tp, experts by ep, layers by pp, ...).
void validate_layout(const ModelConfig& model, const ParallelLayout& layout);
// The same check without throwing: the message, or "" when the layout is valid (the planner tries many).
std::string layout_problem(const ModelConfig& model, const ParallelLayout& layout);

// The layouts a deployment of `count` GPUs is tried with (the planner's sweep, fit-matrix and memory --fit-gpu):
// pipeline 1, 2 or 4 stages (dividing the count, at most the layers); per stage tp = the stage's GPUs, and for MoE
// models tp with ep = tp, and attention data parallel with experts over the stage (tp 1, ep = dp = the stage's GPUs).
// Not checked against the model: layout_problem() says which of them it allows.
std::vector<ParallelLayout> candidate_layouts(const ModelConfig& model, int count);

// Fraction of a weight group that one GPU holds.
double shard_fraction(const ModelConfig& model, const WeightGroup& w, const ParallelLayout& layout);
// The same for each Shard kind (indexed by Shard), for loops over many groups.
std::array<double, 5> shard_fractions(const ModelConfig& model, const ParallelLayout& layout);

// KV heads one GPU keeps: num_kv_heads / tp, never less than one (replicated when tp > KV heads).
std::int64_t kv_heads_per_gpu(const ModelConfig& model, const ParallelLayout& layout);

// Layers [first, last) of pipeline stage `stage`.
std::pair<int, int> stage_layers(const ModelConfig& model, const ParallelLayout& layout, int stage);

struct WeightBytes {
  std::array<double, kModuleCount> by_module{};  // bytes on one GPU, by module
  double total = 0;
  int stage = 0;  // the pipeline stage these bytes belong to (the heaviest one)
  double of(Module m) const { return by_module[static_cast<std::size_t>(m)]; }
};

// Weight bytes on the most loaded GPU (the heaviest pipeline stage). Vision weights only when asked. `bytes`:
// group_bytes(model, precision) when the caller has it (saves recomputing every group).
WeightBytes weight_bytes_per_gpu(const ModelConfig& model, const Precision& precision, const ParallelLayout& layout,
                                 bool include_vision, const GroupBytes* bytes = nullptr);

// Whole-model weight bytes in this precision (one copy, no sharding): what the checkpoint occupies.
WeightBytes weight_bytes_total(const ModelConfig& model, const Precision& precision, bool include_vision);

}  // namespace moeplan::model
