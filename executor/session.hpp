// executor/session: the text forward pass of Llama 4 (chunked/global attention, RoPE/NoPE layers, qk-norm,
// temperature tuning, sigmoid top-k MoE scaling the expert input plus a shared expert) and of Qwen3-MoE / Mixtral
// (softmax top-k routing scaling the expert output), on a compute backend (executor/backend.hpp; the CPU one by
// default), with a KV cache, prefill and decode, greedy and seeded sampling, and per-op wall times under the op names
// of model/op_graph.hpp. One rank, or a shard (Model::sharded, executor/model_weights.hpp) with its communicator.
// Semantics: tests/fixtures/oracle/README.md (checked against transformers' logits in tests/executor).
#pragma once
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "executor/backend.hpp"
#include "executor/comm.hpp"
#include "executor/model_weights.hpp"
#include "executor/paged_kv.hpp"
#include "kernels/cpu_features.hpp"

namespace moeplan::executor {

// Per-op time, summed over layers and steps, keyed by op graph name: the backend's timing spans
// (Backend::span_begin: wall time on the CPU, the time between two stream events on CUDA).
struct OpTimes {
  std::map<std::string, double> seconds;
  std::map<std::string, std::int64_t> calls;
};

// A batch of sequences being generated: per-layer KV caches and the tokens so far. Every op runs on a Backend
// (executor/backend.hpp); the hidden states, KV caches and work buffers live in its memory.
class Session {
 public:
  // `comm`: the communicator of the tp * dp ranks of this pipeline stage when `model` is a shard (Model::sharded),
  // its rank the model's Sharding::rank; nullptr for one rank. Collectives of the tensor-parallel group run on
  // comm->sub_group (dp > 1). `pipe`: with pp > 1, the communicator of all pp * tp * dp ranks (rank =
  // Sharding::world_rank()): each stage receives its hidden states from the rank at its position in the stage before
  // and sends them on; the last stage sends the logits back to the ranks at its position in every earlier stage, so
  // every stage's prefill and decode return them. Every rank runs the same calls with the same tokens.
  // `paged_kv`: keep the KV cache in pages (vLLM's block tables; executor/paged_kv.hpp) under this plan, whose
  // layers are this model's, whose sequences are `sequences` and whose pool (pages_total pages) is allocated here
  // once, its K and V in BF16 (rounded to nearest even when written; the memory model's BF16 KV dtype); without it
  // each layer and sequence keeps a contiguous fp32 cache that grows as needed. A paged session attends decode steps
  // with Backend::paged_attention_decode where kernels::check_decode_params takes the shape (otherwise, and for
  // prefill, it gathers each sequence's visible rows, widened to fp32, and calls Backend::attention), and takes
  // sequences up to the plan's context; a step that finds the pool full throws InputError.
  Session(std::shared_ptr<const Model> model, std::shared_ptr<Backend> backend, std::int64_t sequences,
          Communicator* comm = nullptr, Communicator* pipe = nullptr, std::optional<PagedKvPlan> paged_kv = std::nullopt);
  // On the CPU backend (make_cpu_backend(ctx)).
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
  // are dropped when they outnumber the rest; a paged cache frees whole pages below the first visible position
  // and counts the positions from its first page on). kv_cache_bytes: K and V of every layer and sequence on this
  // rank (fp32 values; a paged cache: its pages held, BF16 values).
  std::int64_t cached_rows(std::size_t layer, std::int64_t seq) const;
  std::int64_t kv_cache_bytes() const;
  const Backend& backend() const { return *backend_; }
  bool paged_kv() const { return paged_ != nullptr; }

  // Decode steps as one captured graph (Backend::begin_capture; CUDA graphs on a GPU) where the backend can capture
  // and the session allows it: one rank (no communicator), a paged cache, every layer's decode on the paged decode
  // kernel and every MoE layer's experts on offsets in the backend's memory (Backend::grouped_offsets_on_device).
  // The first such decode step runs op by op (it makes the weights resident and sizes the backend's scratch), the
  // second is captured, and every later one uploads its inputs (token ids, positions, lengths, block tables) and
  // replays it: the same ops on the same shapes, the permutation by expert made on the backend
  // (Backend::expert_dispatch) instead of on the host, the split of the decode attention planned for the cache's
  // longest context. A replayed step's time goes under "decode.graph" (no per-op times). Off by default.
  // A capture that fails (the backend refuses an op inside it) leaves the step, and every later one, op by op, and
  // capture_error() says why; the results do not depend on it.
  void capture_decode(bool on) { capture_decode_ = on; }
  std::int64_t decode_replays() const { return decode_replays_; }  // decode steps that replayed the graph
  const std::string& capture_error() const { return capture_error_; }

 private:
  // The tokens of one step, grouped by sequence: token t belongs to sequence seq_of[t] at position pos_of[t].
  // Its host vectors are uploaded (upload_step) into the arrays below them.
  struct Step {
    std::vector<std::int64_t> seq_of, pos_of;  // host, [T]
    std::vector<std::int32_t> ids;             // host, [T]
    std::vector<std::int32_t> lens_of;         // host, [T]: each token's sequence length after it (paged cache)
    std::vector<float> qscale_of;              // host, [T]: Llama 4's query temperature at each token's position
    DeviceArray<std::int64_t> pos;             // pos_of on the backend
    DeviceArray<std::int64_t> seq;             // seq_of on the backend (paged cache)
    DeviceArray<std::int32_t> lens;            // lens_of on the backend (paged cache)
    DeviceArray<std::int32_t> token_ids;       // ids on the backend
    DeviceArray<float> qscale;                 // qscale_of on the backend (temperature tuning)
    bool prefill = false;                      // more than one token of some sequence (the op names say which)
    // Being captured: no host reads or writes between the ops; the decode attention planned for the longest
    // context; each MoE layer's expert ids copied to routing_out + moe_index * T * k.
    bool captured = false;
    std::int32_t* routing_out = nullptr;
    std::int64_t tokens() const { return static_cast<std::int64_t>(ids.size()); }
    // f(seq, t0, t1) for each sequence with tokens in this step, its tokens [t0, t1), in order.
    template <class F>
    void for_each_sequence(F&& f) const {
      for (std::size_t t0 = 0, t1 = 0; t0 < seq_of.size(); t0 = t1) {
        while (t1 < seq_of.size() && seq_of[t1] == seq_of[t0]) ++t1;
        f(seq_of[t0], static_cast<std::int64_t>(t0), static_cast<std::int64_t>(t1));
      }
    }
  };
  // One layer's cache of one sequence: rows [0, rows) of k and v ([capacity, Hkv * D] each), row 0 holding the
  // absolute position `first`.
  // The rows of R routed rows grouped by this rank's expert, in the backend's memory (row_token, scales: [R]; null
  // scales: 1) with their expert offsets [experts + 1] on the host or in the backend's memory.
  struct ExpertRows {
    const std::int64_t* host_offsets = nullptr;
    const std::int64_t* device_offsets = nullptr;
    std::int64_t rows = 0;
    const std::int64_t* row_token = nullptr;
    const float* in_scale = nullptr;
    const float* out_scale = nullptr;
  };
  // The captured decode step: its inputs, x [T, H], the logits [T, V] and expert ids [MoE layers, T, k] it writes,
  // and the graph, declared last so that it goes before the memory it names.
  struct DecodeGraph {
    Step step;
    DeviceArray<float> x, logits;
    DeviceArray<std::int32_t> routing;
    std::unique_ptr<Backend::Graph> graph;
  };
  // The timing spans of the step being run (span id, op name); off while a step is captured.
  struct Spans {
    std::vector<std::pair<std::size_t, const char*>> list;
    bool on = true;
  };
  struct KvRows {
    DeviceArray<float> k, v;
    std::int64_t rows = 0, first = 0;
  };

  // The paged cache: K and V pools [pages_total, page_tokens, Hkv, D] of BF16 codes (one page held by at most one layer
  // and sequence at a time), the host block tables, and their device copy `device_table` [layers, seqs, max_pages]:
  // position p of sequence s in layer l lives in page device_table[(l * seqs + s) * max_pages + p / page_tokens]
  // (-1 where no page is held).
  struct PagedCache {
    PagedKvPlan plan;
    PageTable table;
    kernels::gpu::PagedKvLayout layout;
    DeviceArray<std::uint16_t> k, v;
    std::vector<std::int32_t> host_table;
    DeviceArray<std::int32_t> device_table;
  };

  std::vector<float> run(const std::vector<std::vector<std::int32_t>>& tokens, bool all_logits);
  // capture_decode's conditions for this session (the per-layer ones are checked once).
  bool decode_capturable();
  // A decode step through the captured graph: the first call runs op by op, the second captures it, later ones replay.
  std::vector<float> decode_captured(const std::vector<std::vector<std::int32_t>>& tokens);
  // Captures `step` (its host vectors made; its arrays uploaded here) as graph_; false when the backend refused,
  // `step` then back as an op-by-op step.
  bool capture(Step& step);
  // run's work after the step's inputs are on the backend.
  std::vector<float> run_step(const std::vector<std::vector<std::int32_t>>& tokens, const Step& step, bool all_logits);
  // x [T, H] <- the step's tokens through the embedding (or the stage before) and every layer.
  void forward(const Step& step, float* x);
  // Adds the durations of the step's timing spans into times_ (waiting for the step's ops), then forgets them.
  void collect_op_times();
  // The step's host vectors (and the paged cache's pages and block tables for its new positions).
  Step make_step(const std::vector<std::vector<std::int32_t>>& tokens);
  // The step's host vectors into new arrays on the backend (fresh), or into the arrays it has (a captured step's).
  void upload_step(Step& step, bool fresh);
  // x [T, H] <- the embedding rows of the step's tokens (first stage), or the hidden states of the stage before.
  void embed_tokens(const Step& step, float* x);
  // The logits of the rows `rows` of the final hidden states x [T, H]: [rows, V] on the host.
  std::vector<float> logits_of(const float* x, const std::vector<std::int64_t>& rows);
  // This rank's vocabulary slice of those logits, [rows, lm_head.rows], into `mine` on the backend.
  void head(const float* x, const std::vector<std::int64_t>& rows, float* mine);
  // The last pipeline stage's logits, also sent to the ranks at its position in every earlier stage (pp > 1).
  std::vector<float> return_logits(std::vector<float> logits);
  // x: [T, H], the step's hidden states, updated in place by layer li.
  void layer_forward(std::size_t li, float* x, const Step& step);
  void attention_block(std::size_t li, float* x, const Step& step);
  // Appends each sequence's k, v [T, Hkv, D] to its cache of layer li, attends its queries q [T, Hq, D] to it
  // (attn [T, Hq, D]; q is scaled in place on Llama 4's NoPE layers) and drops the rows no later query can see.
  void attend(std::size_t li, float* q, const float* k, const float* v, float* attn, const Step& step);
  // attend's work on the paged cache, with the attention parameters every sequence shares (`shared`: heads, scale,
  // mask).
  void attend_paged(std::size_t li, const kernels::AttentionParams& shared, const float* q, const float* k,
                    const float* v, float* attn, const Step& step);
  // The attention parameters every sequence of layer li shares (heads, scale, mask), and their decode form.
  kernels::AttentionParams attention_params(std::size_t li) const;
  static kernels::DecodeAttentionParams decode_params(const kernels::AttentionParams& shared, std::int64_t seqs);
  // Writes the block tables into host_table and uploads the entries that changed.
  void upload_page_tables();
  // fill_cache on the paged cache: the same values, drawn from `state`, in the pages.
  void fill_pages(std::int64_t context, std::uint64_t& state);
  void mlp_block(std::size_t li, float* x, const Step& step);
  // out [T, H] += down(silu(gate(xn)) * up(xn)) for xn [T, H].
  void swiglu(const Model::Matrix& g, const Model::Matrix& u, const Model::Matrix& dn, const char* gu_name,
              const char* act_name, const char* down_name, const float* xn, std::int64_t T, float* out);
  // The MoE layer li's router, shared expert and routed experts on xn [T, H], added into out [T, H].
  void moe(std::size_t li, const float* xn, const Step& step, float* out);
  // A captured step's routed experts: the ids copied to the step's routing record, the permutation on the backend.
  void moe_captured(const Model::Layer& L, std::size_t moe_index, const float* xn, const Step& step,
                    const std::int32_t* ids, const float* weights, float* out);
  // This rank's experts on the rows routed to them when every rank holds all tokens (dp = 1).
  void local_experts(const Model::Layer& L, const kernels::ExpertDispatch& dispatch, const float* xn, float* out);
  // The config layer of this model's layer li (shifted by the first layer of its pipeline stage).
  const model::LayerSpec& layer_spec(std::size_t li) const;
  // This rank's routed experts on R rows grouped by expert (offsets: host, [experts on this rank + 1], local expert
  // e's rows at offsets[e] .. offsets[e+1]): row r is x[row_token[r]] scaled by in_scale[r], and its result, scaled
  // by out_scale[r], is added into y[row_token[r]] (null scales: 1). x, y: [*, H]; row_token, scales: host, [R].
  void routed_experts(const Model::Layer& L, const std::int64_t* offsets, std::int64_t R, const std::int64_t* row_token,
                      const float* in_scale, const float* out_scale, const float* x, float* y);
  // routed_experts' work on rows already in the backend's memory: gate and up as one fused group where the backend
  // makes one (Backend::resident_gate_up; the activation in the GEMM), else two groups and silu_mul; then down.
  void expert_ffn(const Model::Layer& L, const ExpertRows& rows, const float* x, float* y);
  // One projection's experts as the backend's group (Backend::resident_group), and gate and up as its fused group
  // (empty where it has none).
  std::vector<kernels::WeightView> expert_group(const std::vector<Model::Matrix>& experts);
  std::vector<kernels::WeightView> gate_up_group(const Model::Layer& L);
  // Expert parallel with attention data parallel (dp > 1), for T tokens of this rank (its share of its replica's
  // tokens): xn [T, H] normed input, ids and weights [T, K] (host) the routing. Sends each routed row to every rank
  // holding a piece of its expert (all-to-all), runs this rank's experts on the rows it received from every rank,
  // sends the results back, sums the pieces of each row and adds them into out [T, H]. Every rank calls it once per
  // MoE layer, also with T = 0.
  void moe_all_to_all(const Model::Layer& L, const float* xn, const std::int32_t* ids, const float* weights,
                      std::int64_t T, float* out);
  // The combine half of moe_all_to_all: `results` from every rank, summed per row and added into out.
  void moe_combine(const kernels::ExpertDispatch& dispatch, const std::vector<std::vector<float>>& results, std::int64_t per,
                   float* out);
  // A host vector of floats (norm weights, inv_freq) in the backend's memory.
  const float* resident(const std::vector<float>& host);
  kernels::WeightView resident(const Model::Matrix& m) { return backend_->resident(m.view()); }

  std::shared_ptr<const Model> model_;
  std::shared_ptr<Backend> backend_;
  Communicator* comm_ = nullptr;     // all tp * dp ranks (the MoE all-to-all)
  Communicator* tp_comm_ = nullptr;  // this replica's tp ranks (all-reduces, lm_head all-gather); null when tp = 1
  Communicator* pipe_ = nullptr;     // all pp * tp * dp ranks (stage-to-stage sends); null when pp = 1
  std::vector<std::int64_t> positions_;  // tokens in cache per sequence
  std::vector<std::vector<KvRows>> kv_;  // [layer][seq] (contiguous cache)
  std::unique_ptr<PagedCache> paged_;    // the paged cache, or null
  std::vector<std::vector<std::int32_t>> routing_;
  OpTimes times_;
  Spans spans_;
  bool capture_decode_ = false;
  std::optional<bool> layers_capturable_;  // decode_capturable's per-layer answer, once known
  bool decode_warmed_ = false;             // the op-by-op decode step before the capture has run
  std::int64_t decode_replays_ = 0;
  std::string capture_error_;
  std::unique_ptr<DecodeGraph> graph_;  // after the cache and backend: destroyed before them
};

// The paged KV cache a session on `backend` keeps for `sequences` of up to `context_tokens` positions whose longest
// step adds `step_tokens` to a sequence: none on the CPU (contiguous caches, the oracle's); on a GPU
// check_kv_fits_device's plan on the device's free memory beside the model's weights (BF16 values), its pool cut to
// the pages the shape needs so the rest stays free for the steps' buffers. Throws InputError when it does not fit.
std::optional<PagedKvPlan> device_kv_plan(Backend& backend, const Model& model, std::int64_t sequences,
                                          std::int64_t context_tokens, std::int64_t step_tokens);

// Greedy (temperature 0) or temperature / top-p sampling with a portable seeded generator (splitmix64; rng_state
// advances by one draw per sampled token). logits: [vocab].
std::int32_t sample(const float* logits, std::int64_t vocab, float temperature, float top_p, std::uint64_t& rng_state);

}  // namespace moeplan::executor
