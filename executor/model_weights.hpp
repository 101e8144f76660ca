// executor/model_weights: the weights of one model, or of one rank's shard of it, in kernel-ready form: loading
// them from a safetensors checkpoint (executor/checkpoint.hpp checks names, shapes and dtypes), the runtime
// parameters read from config.json, and the split of every matrix under a model::ParallelLayout (model/shard.hpp).
// The forward pass that runs them is executor/session.hpp.
#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "executor/checkpoint.hpp"
#include "kernels/rope.hpp"
#include "kernels/router.hpp"
#include "kernels/weights.hpp"
#include "model/config.hpp"
#include "model/shard.hpp"

namespace moeplan::executor {

// What the forward pass needs beyond ModelConfig, read from config.json with transformers' defaults.
struct RuntimeParams {
  float rms_eps = 1e-5f;
  std::vector<float> inv_freq;               // [head_dim / 2], rope scaling applied
  kernels::RopeLayout rope_layout = kernels::RopeLayout::half;
  bool llama4 = false;                       // Llama 4 semantics (sigmoid router on the input, shared expert, ...)
  bool qk_norm_weightless_after_rope = false;  // Llama 4 use_qk_norm (RoPE layers only)
  bool qk_norm_weighted_before_rope = false;   // Qwen3 q_norm / k_norm
  bool temperature_tuning = false;           // Llama 4 attn_temperature_tuning (NoPE layers, queries)
  float floor_scale = 8192, attn_scale = 0.1f;
  kernels::RouterScoring scoring = kernels::RouterScoring::softmax_topk_renorm;
};
RuntimeParams read_runtime_params(const nlohmann::json& config, const model::ModelConfig& m);

// Weights of one model in kernel-ready form (owned, aligned copies; Llama 4's input-major fused experts repacked to
// per-expert [out, in]).
class Model {
 public:
  // `dir` holds config.json and the safetensors checkpoint. Throws InputError naming the tensor and file on
  // missing tensors, wrong shapes or dtypes (executor/checkpoint.hpp checks).
  static std::shared_ptr<const Model> load(const std::filesystem::path& dir);

  // This rank's share of the model under the layout of model/shard.hpp: ranks = tp * dp, rank = dp_index * tp +
  // tp_index. Attention data parallel `dp`: replicas of tp ranks that each serve their own sequences. Tensor parallel
  // `tp` inside a replica: query/KV heads, dense and shared MLP columns and the vocabulary rows of the embedding and
  // lm_head (tied or not) split tp ways, o_proj and down projections split by input columns. Expert parallel `ep`
  // over all tp * dp ranks: routed experts split into ep contiguous ranges, each expert's intermediate split
  // moe_tp = tp * dp / ep ways. Router and norms stay whole on every rank.
  // Pipeline stages `pp`: stage s holds layers model::stage_layers(s) only, the embedding only on stage 0, the final
  // norm and lm_head only on the last; `world_rank` counts all pp * tp * dp ranks (layout.gpus()), stage-major
  // (world_rank = stage * tp * dp + the rank inside the stage, which Sharding::rank keeps).
  // Throws InputError (model::layout_problem's message) when the sizes do not divide, or the rank is out of range.
  std::shared_ptr<const Model> sharded(const model::ParallelLayout& layout, int world_rank) const;
  // The same with the layout's sizes one by one.
  struct Sharding {
    model::ParallelLayout layout;   // all ranks of the run (the whole model: one rank)
    int rank = 0;                   // inside this pipeline stage, [0, tp * dp)
    std::int64_t expert_begin = 0;  // first routed expert this rank holds (it holds layers[..].expert_gate.size())
    std::int64_t vocab_begin = 0;   // first vocabulary row of embed and lm_head this rank holds (it holds embed.rows)
    int stage = 0;
    std::int64_t first_layer = 0;   // config layer of layers[0]
    int tp() const { return layout.tp; }
    int dp() const { return layout.dp; }
    int pp() const { return layout.pp; }
    int ranks() const { return layout.tp * layout.dp; }  // in one pipeline stage
    int tp_index() const { return rank % layout.tp; }
    int dp_index() const { return rank / layout.tp; }
    int moe_tp() const { return layout.moe_tp(); }
    int rank_in_stage(int s) const { return s * ranks() + rank; }  // the rank at this position in stage s
    int world_rank() const { return rank_in_stage(stage); }
    bool first_stage() const { return stage == 0; }
    bool last_stage() const { return stage == layout.pp - 1; }
  };
  const Sharding& sharding() const { return sharding_; }

  const model::ModelConfig& config() const { return config_; }
  const RuntimeParams& params() const { return params_; }
  std::uint64_t weight_bytes() const { return weight_bytes_; }  // of the matrices this model (or shard) holds

  struct Matrix {
    std::vector<std::byte> data;   // [rows, cols] of dtype
    std::vector<float> scales;     // per-row dequant scales (FP8) or empty
    kernels::WeightDtype dtype = kernels::WeightDtype::bf16;
    std::int64_t rows = 0, cols = 0;
    kernels::WeightView view() const {
      return {dtype, data.data(), rows, cols, scales.empty() ? nullptr : scales.data()};
    }
  };
  struct Layer {
    std::vector<float> input_norm, post_norm, q_norm, k_norm;
    Matrix q, k, v, o;
    bool moe = false;
    Matrix router;                                       // [E, H]
    std::vector<Matrix> expert_gate, expert_up, expert_down;  // per expert [I, H], [I, H], [H, I]
    Matrix shared_gate, shared_up, shared_down;          // Llama 4 shared expert
    Matrix dense_gate, dense_up, dense_down;             // dense MLP layers
  };
  Matrix embed, lm_head;  // [vocab rows on this rank, H]
  std::vector<float> final_norm;
  std::vector<Layer> layers;

 private:
  void count_weight_bytes();  // weight_bytes_ <- the bytes of every matrix held (the lm_head once when tied)
  model::ModelConfig config_;
  RuntimeParams params_;
  std::uint64_t weight_bytes_ = 0;
  Sharding sharding_;
};

// The vocabulary rows [first, second) tensor-parallel rank `tp_index` of `tp` holds: contiguous ranges whose sizes
// differ by at most one row when tp does not divide the vocabulary.
std::pair<std::int64_t, std::int64_t> vocab_rows(std::int64_t vocab, int tp, int tp_index);

}  // namespace moeplan::executor
