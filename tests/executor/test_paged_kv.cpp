// The paged KV cache's host side (executor/paged_kv.hpp): page counts from the memory model (with one-token pages
// the bytes equal `moeplan memory`'s KV per sequence; Maverick's chunked layers hold one 8192-token chunk), refusal
// of a shape that does not fit naming it, and block tables that free the pages no query sees and never hold more
// than the plan's pages.
#include <catch2/catch.hpp>

#include <set>
#include <stdexcept>

#include "common/error.hpp"
#include "executor/paged_kv.hpp"
#include "gpu_db/gpu_db.hpp"
#include "tests/executor/executor_test_util.hpp"
#include "tests/test_util.hpp"

using namespace moeplan;

namespace {

simulator::MemoryBreakdown memory(const model::ModelConfig& m, const std::string& gpu, model::ParallelLayout layout,
                                  std::int64_t context, std::int64_t concurrency) {
  static const gpu_db::Database db = gpu_db::Database::load(test::data());
  simulator::MemoryRequest q;
  q.model = &m;
  q.precision = model::resolve_precision("fp8", m, test::precisions());
  q.layout = layout;
  q.capacity_bytes = db.gpu(gpu).memory_bytes;
  q.device_name = gpu;
  q.context_tokens = context;
  q.concurrency = concurrency;
  return simulator::memory_breakdown(q);
}

executor::PagedKvRequest request(const model::ModelConfig& m, model::ParallelLayout layout, std::int64_t page_tokens,
                                 std::int64_t context, std::int64_t sequences, double budget) {
  executor::PagedKvRequest r;
  r.model = &m;
  r.layout = layout;
  r.page_tokens = page_tokens;
  r.context_tokens = context;
  r.sequences = sequences;
  r.budget_bytes = budget;
  return r;
}

}  // namespace

TEST_CASE("Paged KV pages carry the memory model's bytes per sequence") {
  const model::ModelConfig maverick = test::load("llama4-maverick");
  const model::ParallelLayout tp8{.tp = 8};
  for (const std::int64_t context : {1000, 8192, 32768, 100000}) {
    INFO("context " << context);
    const auto mem = memory(maverick, "h200-sxm", tp8, context, 1);
    const auto one = executor::plan_paged_kv(request(maverick, tp8, 1, context, 1, 1e12));
    CHECK(static_cast<double>(one.pages_per_sequence * one.page_bytes) == mem.kv_bytes_per_sequence);
    const auto p16 = executor::plan_paged_kv(request(maverick, tp8, 16, context, 1, 1e12));
    const double paged = static_cast<double>(p16.pages_per_sequence * p16.page_bytes);
    CHECK(paged >= mem.kv_bytes_per_sequence);
    CHECK(paged - mem.kv_bytes_per_sequence < 48.0 * static_cast<double>(p16.page_bytes));  // less than a page per layer
    if (context % 16 == 0) CHECK(paged == mem.kv_bytes_per_sequence);
  }
  // one KV head of 128 dims per GPU at tp 8, BF16 K and V: 512 bytes per position per layer; 48 layers
  const auto plan = executor::plan_paged_kv(request(maverick, tp8, 16, 32768, 1, 1e12));
  CHECK(plan.page_bytes == 16 * 512);
  REQUIRE(plan.layers.size() == 48);
  CHECK(plan.layers[0].pages_per_sequence == 8192 / 16);   // chunked: one chunk
  CHECK(plan.layers[3].pages_per_sequence == 32768 / 16);  // global: the whole context
}

TEST_CASE("Paged KV fits exactly the concurrency `memory` allows and refuses one sequence more, naming the shape") {
  const model::ModelConfig maverick = test::load("llama4-maverick");
  const model::ParallelLayout tp8{.tp = 8};
  const auto mem = memory(maverick, "h200-sxm", tp8, 32768, 1);
  REQUIRE(mem.max_concurrency > 0);
  const double budget = executor::kv_budget_bytes(mem);
  CHECK(budget > 0);
  const auto fits = executor::plan_paged_kv(request(maverick, tp8, 16, 32768, mem.max_concurrency, budget));
  CHECK(fits.pages_needed <= fits.pages_total);
  const std::string error = test::error_of([&] {
    executor::plan_paged_kv(request(maverick, tp8, 16, 32768, mem.max_concurrency + 1, budget));
  });
  INFO(error);
  CHECK(error.find(std::to_string(mem.max_concurrency + 1) + " sequences of 32,768 tokens") != std::string::npos);
  CHECK(error.find("pages of 16 tokens") != std::string::npos);
  CHECK_THROWS_AS(executor::plan_paged_kv(request(maverick, tp8, 0, 32768, 1, budget)), InputError);
  CHECK_THROWS_AS(executor::plan_paged_kv(request(maverick, tp8, 16, 0, 1, budget)), InputError);
  CHECK_THROWS_AS(executor::plan_paged_kv(request(maverick, tp8, 16, 32768, 0, budget)), InputError);
  CHECK_THROWS_AS(executor::plan_paged_kv(request(maverick, tp8, 16, 100000000, 1, budget)), InputError);  // above the limit
  CHECK_THROWS_AS(executor::plan_paged_kv(request(maverick, {.tp = 3}, 16, 32768, 1, budget)), InputError);
  CHECK_THROWS_AS(executor::plan_paged_kv(request(maverick, tp8, 16, 32768, 1, 0)), InputError);
}

// Llama 4 layout shrunk to 4 layers: chunk 8 on RoPE layers (every 4th layer global), and a Mixtral-like sliding
// window of 6 on layer 2: chunk 8, chunk 8, window 6, global.
namespace {
model::ModelConfig four_layer_scout() {
  model::ModelConfig m = test::load("llama4-scout");
  m.layers.resize(4);
  m.num_layers = 4;
  for (auto& l : m.layers)
    if (l.attention == model::AttentionKind::chunked) l.attention_window_tokens = 8;
  m.layers[2].attention = model::AttentionKind::sliding;
  m.layers[2].attention_window_tokens = 6;
  return m;
}
}  // namespace

TEST_CASE("Block tables: decode frees what no query sees, holds at most the plan's pages, slots never collide") {
  const model::ModelConfig m = four_layer_scout();
  const std::int64_t P = 4, context = 30, sequences = 2;
  auto plan = executor::plan_paged_kv(request(m, {}, P, context, sequences, 1e12));
  REQUIRE(plan.layers.size() == 4);
  CHECK(plan.layers[0].pages_per_sequence == 2);  // chunk 8 of 4-token pages
  CHECK(plan.layers[2].pages_per_sequence == 3);  // any 6 consecutive positions span at most 3 pages of 4
  CHECK(plan.layers[3].pages_per_sequence == 8);  // global: ceil(30 / 4)
  plan.pages_total = plan.pages_needed;           // a pool of exactly the planned pages
  executor::PageTable table(m, plan);
  for (std::int64_t len = 1; len <= context; ++len) {
    for (std::int64_t s = 0; s < sequences; ++s) table.extend(s, len);
    std::set<std::pair<std::int32_t, std::int64_t>> used;
    for (std::size_t li = 0; li < 4; ++li)
      for (std::int64_t s = 0; s < sequences; ++s) {
        INFO("len " << len << " layer " << li << " seq " << s);
        CHECK(static_cast<std::int64_t>(table.pages(li, s).size()) <= plan.layers[li].pages_per_sequence);
        // every position the query at len - 1 sees is held, at a slot no other (layer, sequence, position) uses
        for (std::int64_t p = executor::first_visible_position(m.layers[li], len - 1); p < len; ++p) {
          const auto slot = table.slot(li, s, p);
          CHECK(used.insert({slot.page, slot.offset}).second);
          CHECK(slot.offset == p % P);
        }
      }
  }
  CHECK_THROWS_AS(table.slot(0, 0, 3), std::out_of_range);  // chunk [0, 8) was freed at position 24
  CHECK_THROWS_AS(table.extend(0, context + 1), InputError);
  CHECK_THROWS_AS(table.extend(0, 5), std::logic_error);
  const std::int64_t free_before = table.free_pages();
  table.release(1);
  CHECK(table.free_pages() > free_before);
  CHECK(table.length(1) == 0);
  table.release(0);
  CHECK(table.free_pages() == plan.pages_total);
}

TEST_CASE("A plan counting the prompt as one step holds its prefill, and a later first query keeps only what it sees") {
  const model::ModelConfig m = four_layer_scout();
  const std::int64_t P = 4, context = 30, prompt = 20;
  executor::PagedKvRequest r = request(m, {}, P, context, 2, 1e12);
  r.step_tokens = prompt;
  auto plan = executor::plan_paged_kv(r);
  CHECK(plan.layers[0].pages_per_sequence == 7);  // min(30, 8 + 20 - 1) = 27 positions from a chunk start
  CHECK(plan.layers[2].pages_per_sequence == 7);  // min(30, 6 + 19) = 25 positions anywhere: ceil(24 / 4) + 1
  CHECK(plan.layers[3].pages_per_sequence == 8);  // global: the context either way
  plan.pages_total = plan.pages_needed;
  executor::PageTable table(m, plan);
  for (std::int64_t s = 0; s < 2; ++s) table.extend(s, prompt);  // both prompts in one step each
  for (std::int64_t len = prompt + 1; len <= context; ++len)
    for (std::int64_t s = 0; s < 2; ++s) table.extend(s, len);
  CHECK(table.length(1) == context);
  // The plan for decode steps alone has no room for the two prompts: the second is refused, naming the pool.
  auto decode_only = executor::plan_paged_kv(request(m, {}, P, context, 2, 1e12));
  decode_only.pages_total = decode_only.pages_needed;
  executor::PageTable small(m, decode_only);
  small.extend(0, prompt);
  try {
    small.extend(1, prompt);
    FAIL("the pool held more pages than it has");
  } catch (const InputError& e) {
    CHECK(std::string(e.what()).find("pages of 4 tokens held") != std::string::npos);
  }
  // A synthetic cache of 30 positions whose first query is at 30: only the pages that query sees are taken.
  executor::PageTable fresh(m, plan);
  fresh.extend(0, context, context);
  CHECK(fresh.first_position(0, 0) == 24);  // chunk [24, 32): pages from position 24
  CHECK(fresh.pages(0, 0).size() == 2);
  CHECK(fresh.first_position(2, 0) == 24);  // window 6 at 30: positions 25..30, from the page starting at 24
  CHECK(fresh.pages(3, 0).size() == 8);     // global: all 30
}

TEST_CASE("a device KV cache that does not fit beside the weights is refused before allocating, naming the shape") {
  const model::ModelConfig m = test::load("llama4-maverick");
  const model::ParallelLayout one{};
  // 8 sequences of 32,768 tokens: Maverick keeps 8192 positions in each of its 36 chunked layers and the whole context
  // in its 12 global layers; 8 KV heads x 128 x 2 (K, V) values per position and layer.
  const double values = 8.0 * (36 * 8192 + 12 * 32768) * 8 * 128 * 2;
  const auto plan = executor::check_kv_fits_device(m, one, 8, 32768, 200e9, 10e9, model::KvDtype::bf16);
  CHECK(static_cast<double>(plan.pages_needed * plan.page_bytes) == Approx(values * 2));
  // BF16 values need twice the bytes of FP8 ones: a budget between the two sizes holds the FP8 cache but not the
  // BF16 one
  const double weights = 10e9, free_bytes = weights + values * 1.5;
  CHECK_NOTHROW(executor::check_kv_fits_device(m, one, 8, 32768, free_bytes, weights, model::KvDtype::fp8));
  try {
    executor::check_kv_fits_device(m, one, 8, 32768, free_bytes, weights, model::KvDtype::bf16);
    FAIL("a BF16 cache above the budget was accepted");
  } catch (const InputError& e) {
    const std::string what = e.what();
    CHECK(what.find("8 sequences of 32,768 tokens") != std::string::npos);
    CHECK(what.find("GiB free") != std::string::npos);
    CHECK(what.find("KV cached in bf16") != std::string::npos);
    CHECK(what.find('\n') == std::string::npos);
  }
  // weights alone above the free memory: nothing fits
  CHECK_THROWS_AS(executor::check_kv_fits_device(m, one, 1, 16, 5e9, 10e9, model::KvDtype::bf16), InputError);
}
