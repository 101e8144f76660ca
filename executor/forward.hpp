// executor/forward: the text forward pass of Llama 4 (chunked/global attention, RoPE/NoPE layers, qk-norm,
// temperature tuning, sigmoid top-k MoE scaling the expert input plus a shared expert) and of Qwen3-MoE / Mixtral
// (softmax top-k routing scaling the expert output), on the CPU kernels, with a KV cache, prefill and decode, greedy
// and seeded sampling, and per-op wall times under the op names of model/op_graph.hpp. One rank, or a shard (Model::sharded) with its
// communicator.
// Semantics: tests/fixtures/oracle/README.md (checked against transformers' logits in tests/executor).
#pragma once
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "executor/checkpoint.hpp"
#include "executor/comm.hpp"
#include "kernels/cpu_features.hpp"
#include "kernels/rope.hpp"
#include "kernels/router.hpp"
#include "kernels/weights.hpp"
#include "model/config.hpp"

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
  // norm and lm_head only on the last; `rank` then counts all pp * tp * dp ranks, stage-major (rank = stage * tp *
  // dp + the rank inside the stage, which Sharding::rank keeps).
  // Throws InputError (model::layout_problem's message) when the sizes do not divide, or the rank is out of range.
  std::shared_ptr<const Model> sharded(int tp, int ep, int rank, int dp = 1, int pp = 1) const;
  struct Sharding {
    int tp = 1, ep = 1, dp = 1, rank = 0;  // rank: inside this pipeline stage, [0, tp * dp)
    std::int64_t expert_begin = 0;  // first routed expert this rank holds (it holds layers[..].expert_gate.size())
    std::int64_t vocab_begin = 0;   // first vocabulary row of embed and lm_head this rank holds (it holds embed.rows)
    int pp = 1, stage = 0;
    std::int64_t first_layer = 0;   // config layer of layers[0]
    int ranks() const { return tp * dp; }
    int tp_index() const { return rank % tp; }
    int dp_index() const { return rank / tp; }
    int moe_tp() const { return tp * dp / ep; }
    int rank_in_stage(int s) const { return s * tp * dp + rank; }  // the rank at this position in stage s
    int world_rank() const { return rank_in_stage(stage); }
    bool first_stage() const { return stage == 0; }
    bool last_stage() const { return stage == pp - 1; }
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

// Per-op wall time, summed over layers and steps, keyed by op graph name.
struct OpTimes {
  std::map<std::string, double> seconds;
  std::map<std::string, std::int64_t> calls;
};

// A batch of sequences being generated: per-layer KV caches and the tokens so far.
class Session {
 public:
  // `comm`: the communicator of the tp * dp ranks of this pipeline stage when `model` is a shard (Model::sharded),
  // its rank the model's Sharding::rank; nullptr for one rank. Collectives of the tensor-parallel group run on
  // comm->sub_group (dp > 1). `pipe`: with pp > 1, the communicator of all pp * tp * dp ranks (rank =
  // Sharding::world_rank()): each stage receives its hidden states from the rank at its position in the stage before
  // and sends them on; the last stage sends the logits back to the ranks at its position in every earlier stage, so
  // every stage's prefill and decode return them. Every rank runs the same calls with the same tokens.
  Session(std::shared_ptr<const Model> model, kernels::CpuContext ctx, std::int64_t sequences, Communicator* comm = nullptr,
          Communicator* pipe = nullptr);

  // Run the prompts (one per sequence, any lengths); returns the logits of every prompt position when
  // `all_logits`, else of each sequence's last position: [rows, vocab] row-major, sequences in order.
  std::vector<float> prefill(const std::vector<std::vector<std::int32_t>>& prompts, bool all_logits = false);
  // One decode step: one new token per sequence; returns [sequences, vocab].
  std::vector<float> decode(const std::vector<std::int32_t>& tokens);

  // Give every sequence `context` cached tokens of seeded synthetic keys and values (uniform in ±1), as if a prompt
  // of that length had been prefilled, with room for `reserve` more tokens without reallocation. For timing decode
  // at long contexts without paying for the prefill; the logits that follow are not those of any prompt.
  void fill_cache(std::int64_t context, std::int64_t reserve, std::uint64_t seed);

  const OpTimes& op_times() const { return times_; }
  // Expert ids chosen per MoE layer for every token processed so far: [moe layer][token][k].
  const std::vector<std::vector<std::int32_t>>& routing() const { return routing_; }
  std::int64_t context(std::int64_t seq) const { return positions_[static_cast<std::size_t>(seq)]; }
  // KV cache rows layer `layer` holds for a sequence: its whole context on global layers; on chunked layers the
  // keys of the current chunk (at most C), on sliding-window layers at most 2 W (rows no query can see any more
  // are dropped when they outnumber the rest). kv_cache_bytes: K and V of every layer and sequence on this rank.
  std::int64_t cached_rows(std::size_t layer, std::int64_t seq) const;
  std::int64_t kv_cache_bytes() const;

 private:
  // x: [T, H] for tokens of several sequences: seq_of[t], pos_of[t]. Returns the final hidden states [T, H].
  void layer_forward(std::size_t li, std::vector<float>& x, const std::vector<std::int64_t>& seq_of,
                     const std::vector<std::int64_t>& pos_of);
  std::vector<float> run(const std::vector<std::vector<std::int32_t>>& tokens, bool all_logits);
  // The last pipeline stage's logits, also sent to the ranks at its position in every earlier stage (pp > 1).
  std::vector<float> return_logits(std::vector<float> logits);
  // The config layer of this model's layer li (shifted by the first layer of its pipeline stage).
  const model::LayerSpec& layer_spec(std::size_t li) const;
  // This rank's routed experts on R rows grouped by expert (offsets: [experts on this rank + 1], local expert e's rows
  // at offsets[e] .. offsets[e+1]): row r is x[row_token[r]] scaled by in_scale[r], and its result, scaled by
  // out_scale[r], is added into y[row_token[r]] (null scales: 1). x, y: [*, H].
  void routed_experts(const Model::Layer& L, const std::int64_t* offsets, std::int64_t R, const std::int64_t* row_token,
                      const float* in_scale, const float* out_scale, const float* x, float* y);
  // Expert parallel with attention data parallel (dp > 1), for T tokens of this rank (its share of its replica's
  // tokens): xn [T, H] normed input, ids and weights [T, K] the routing. Sends each routed row to every rank holding
  // a piece of its expert (all-to-all), runs this rank's experts on the rows it received from every rank, sends the
  // results back, sums the pieces of each row and adds them into out [T, H]. Every rank calls it once per MoE layer,
  // also with T = 0.
  void moe_all_to_all(const Model::Layer& L, const float* xn, const std::int32_t* ids, const float* weights,
                      std::int64_t T, float* out);

  std::shared_ptr<const Model> model_;
  kernels::CpuContext ctx_;
  Communicator* comm_ = nullptr;     // all tp * dp ranks (the MoE all-to-all)
  Communicator* tp_comm_ = nullptr;  // this replica's tp ranks (all-reduces, lm_head all-gather); null when tp = 1
  Communicator* pipe_ = nullptr;     // all pp * tp * dp ranks (stage-to-stage sends); null when pp = 1
  std::vector<std::int64_t> positions_;              // tokens in cache per sequence
  std::vector<std::vector<std::vector<float>>> k_, v_;  // [layer][seq] -> [rows, Hkv, D], row 0 at kv_first_
  std::vector<std::vector<std::int64_t>> kv_first_;     // [layer][seq]: absolute position of cache row 0
  std::vector<std::vector<std::int32_t>> routing_;
  OpTimes times_;
};

// Greedy (temperature 0) or temperature / top-p sampling with a portable seeded generator (splitmix64; rng_state
// advances by one draw per sampled token). logits: [vocab].
std::int32_t sample(const float* logits, std::int64_t vocab, float temperature, float top_p, std::uint64_t& rng_state);

}  // namespace moeplan::executor
