// executor/paged_kv: the host side of a paged KV cache (vLLM's PagedAttention block tables): the cache of every
// layer is made of pages of `page_tokens` positions, each page holding K and V of those positions for one layer on
// this GPU; a sequence's block table lists its pages in position order. The page size and the pages a sequence
// needs come from the memory model (model/kv_cache.hpp: bytes per token per layer for the KV heads this GPU keeps,
// tokens each attention kind keeps), the same numbers `moeplan memory` prints, so a shape that `memory` says does not
// fit is refused here before anything is allocated. Plain C++, shared by every backend that pages its cache.
#pragma once
#include <cstdint>
#include <vector>

#include "model/config.hpp"
#include "model/kv_cache.hpp"
#include "model/precision.hpp"
#include "model/shard.hpp"
#include "simulator/memory.hpp"

namespace moeplan::executor {

// The lowest absolute position a query at position `query_pos` (or any later one) can see in a layer of this kind:
// chunked layers see from the start of their chunk, sliding-window layers the last W positions, global layers all.
std::int64_t first_visible_position(const model::LayerSpec& layer, std::int64_t query_pos);

struct PagedKvRequest {
  const model::ModelConfig* model = nullptr;
  model::ParallelLayout layout;
  int stage = 0;                                 // the pipeline stage whose layers this GPU holds
  model::KvDtype kv_dtype = model::KvDtype::bf16;
  std::int64_t page_tokens = 16;                 // positions per page (vLLM's default block size)
  std::int64_t context_tokens = 0;               // the longest sequence: prompt + output tokens
  std::int64_t sequences = 1;                    // sequences resident on this GPU at once
  std::int64_t step_tokens = 1;                  // the most positions one step adds to a sequence (its prompt
                                                 // when prefilled in one step; 1: decode steps only)
  double budget_bytes = 0;                       // memory for the cache on this GPU (kv_budget_bytes)
};

struct PagedKvLayer {
  int layer = 0;                         // config layer
  std::int64_t token_bytes = 0;          // K and V of one position on this GPU
  std::int64_t pages_per_sequence = 0;   // the most pages a sequence holds in this layer at once
};

struct PagedKvPlan {
  std::int64_t page_tokens = 0;
  std::int64_t page_bytes = 0;           // one page: page_tokens * the largest token_bytes of the layers
  std::int64_t context_tokens = 0;
  std::int64_t sequences = 0;
  std::vector<PagedKvLayer> layers;      // the stage's layers, in order
  std::int64_t pages_per_sequence = 0;   // over every layer
  std::int64_t pages_needed = 0;         // sequences * pages_per_sequence
  std::int64_t pages_total = 0;          // pages the budget holds: floor(budget / page_bytes) >= pages_needed
};

// The plan for `request`. Pages a sequence holds in a layer, for n = the positions the layer keeps
// (model::kv_tokens_kept, model-aware) and P = page_tokens: global and chunked layers whose chunk P divides keep
// page-aligned ranges, ceil(n / P) pages; sliding windows (and chunks P does not divide) any n consecutive positions,
// which span at most ceil((n - 1) / P) + 1 pages. With P = 1 the bytes equal model::kv_bytes_per_sequence. A step of
// s = step_tokens positions holds s - 1 more in chunked and sliding-window layers until it ends (n + s - 1, at most
// the context), so a plan with the prompt's length covers its prefill.
// Throws InputError naming the input when a size is not positive, the context is above the model's limit, the stage
// or layout is not valid, or the pages needed exceed the budget (naming sequences, context and page size).
PagedKvPlan plan_paged_kv(const PagedKvRequest& request);

// Refuses, before anything is allocated, a batch whose KV cache does not fit in a device's free memory: the plan
// of `sequences` x `context_tokens` in pages of 16 positions on the budget free_bytes - weight_bytes, each value
// counted at the bytes of `kv_dtype` (the executor's session caches BF16) as `moeplan memory` counts them. Throws
// InputError naming the shape, the free memory and the weights; returns the plan otherwise.
// `step_tokens`: PagedKvRequest's (the prompt, when it is prefilled in one step).
PagedKvPlan check_kv_fits_device(const model::ModelConfig& model, const model::ParallelLayout& layout,
                                 std::int64_t sequences, std::int64_t context_tokens, double free_bytes,
                                 double weight_bytes, model::KvDtype kv_dtype, std::int64_t step_tokens = 1);

// The memory the memory model leaves for the KV cache on one GPU: usable - weights - activations - overhead, or 0.
double kv_budget_bytes(const simulator::MemoryBreakdown& memory);

// Block tables and the free-page pool of one GPU's paged cache under a plan: which page holds each position of each
// sequence in each layer. Pages are numbered [0, plan.pages_total) and come from one pool: each page is held by at
// most one (layer, sequence) at a time, so a backend keeps one array of pages_total pages of page_bytes for all.
class PageTable {
 public:
  PageTable(const model::ModelConfig& model, const PagedKvPlan& plan);

  // Sequence `seq` goes from its current length to `context` positions (a prefill or a decode step whose first
  // query is at the current length): frees the pages wholly below the first position that query can see in each
  // layer, then takes the pages the new positions need. Throws InputError when `context` is above the plan's or the
  // pool has no free page left (naming the pool), and std::logic_error when it shrinks. The plan counts what decode steps hold; a step of s > 1
  // new positions holds up to s - 1 more in chunked and sliding-window layers (a prompt longer than a chunk holds all
  // of it until its step ends), which the pages beyond pages_needed must cover.
  // `first_query`: the position of the step's first query when it is not the current length (a synthetic cache
  // whose earlier positions no query reads: only the pages that query sees are kept); -1: the current length.
  void extend(std::int64_t seq, std::int64_t context, std::int64_t first_query = -1);
  // Returns every page of `seq` to the pool; its length becomes 0.
  void release(std::int64_t seq);

  struct Slot {
    std::int32_t page = 0;
    std::int64_t offset = 0;  // position within the page
  };
  // Where position `pos` of `seq` lives in the plan's layer `layer_index` (an index into plan.layers). Throws
  // std::out_of_range when the table does not hold it.
  Slot slot(std::size_t layer_index, std::int64_t seq, std::int64_t pos) const;
  // The block table: pages in position order, the first one starting at first_position.
  const std::vector<std::int32_t>& pages(std::size_t layer_index, std::int64_t seq) const;
  std::int64_t first_position(std::size_t layer_index, std::int64_t seq) const;
  std::int64_t length(std::int64_t seq) const { return lengths_.at(static_cast<std::size_t>(seq)); }
  std::int64_t free_pages() const { return static_cast<std::int64_t>(free_.size()); }

 private:
  struct Table {
    std::vector<std::int32_t> pages;
    std::int64_t first = 0;  // position of pages[0]'s first slot, a multiple of page_tokens
  };
  const Table& table(std::size_t layer_index, std::int64_t seq) const;
  std::vector<model::LayerSpec> specs_;      // of plan.layers
  std::int64_t page_tokens_ = 0, context_tokens_ = 0, pages_total_ = 0;
  std::vector<std::vector<Table>> tables_;   // [layer index][seq]
  std::vector<std::int64_t> lengths_;        // [seq]
  std::vector<std::int32_t> free_;           // pool of free pages (a stack)
};

}  // namespace moeplan::executor
