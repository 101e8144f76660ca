// The fit matrix: smallest GPU count per GPU x precision against hand arithmetic, the layout ladder, and the
// headroom classes at their boundaries.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>

#include "common/error.hpp"
#include "gpu_db/gpu_db.hpp"
#include "model/shard.hpp"
#include "simulator/fit_matrix.hpp"
#include "tests/test_util.hpp"

using namespace moeplan;
using namespace moeplan::model;
using namespace moeplan::simulator;

namespace {
struct Fixture {
  gpu_db::Database db = gpu_db::Database::load(test::data());

  FitCell one(const ModelConfig& m, const std::string& gpu, const std::string& precision, std::int64_t context = 8192,
              std::int64_t concurrency = 1) {
    FitMatrixRequest q;
    q.model = &m;
    q.precisions = {resolve_precision(precision, m, test::precisions())};
    q.gpus = {&db.gpu(gpu)};
    q.context_tokens = context;
    q.concurrency = concurrency;
    const auto result = fit_matrix(q);
    REQUIRE(result.cells.size() == 1);
    return result.cells.front();
  }
};
}  // namespace

TEST_CASE_METHOD(Fixture, "fit-matrix: Maverick BF16 on H100 SXM needs two nodes, as weights / usable memory says") {
  const ModelConfig m = test::load("llama4-maverick");
  const auto& h100 = db.gpu("h100-sxm");
  REQUIRE(h100.gpus_per_node == 8);
  // By hand: the BF16 text weights (about 801 GB) over 90 % of 80 GB per GPU need at least 12 GPUs, more than one
  // node of 8. Beyond a node the ladder is tp 8 x pp stages with pp dividing the 48 layers: 16, 24, 32, ...
  const double weights = weight_bytes_total(m, resolve_precision("bf16", m, test::precisions()), false).total;
  CHECK(weights / 1e9 == Approx(801.4).margin(1.0));
  const double usable = h100.memory_bytes * 0.90;
  const int lower_bound = static_cast<int>(std::ceil(weights / usable));
  CHECK(lower_bound == 12);
  int expected = 0;
  for (int pp = 2; expected == 0; ++pp)
    if (8 * pp >= lower_bound && m.num_layers % pp == 0) expected = 8 * pp;
  REQUIRE(expected == 16);

  const FitCell c = one(m, "h100-sxm", "bf16");
  REQUIRE(c.fits);
  CHECK(c.gpus > 8);
  CHECK(c.gpus == expected);
  CHECK(c.layout.tp == 8);
  CHECK(c.layout.pp == 2);
  CHECK_FALSE(c.within_node);
  CHECK(c.nodes == 2);
  CHECK(c.precision == "bf16");
  // Per GPU: about half of the weights of one of the two stages, well under the usable memory.
  CHECK(c.memory.weights.total == Approx(weights / 16).epsilon(0.02));
  CHECK(c.memory.usable_bytes == Approx(usable));
  CHECK(c.headroom == classify_headroom(c.memory.free_bytes / c.memory.usable_bytes));
  CHECK(c.max_concurrency >= 1);
}

TEST_CASE_METHOD(Fixture, "fit-matrix: a precision that fits on one GPU classifies by its free share") {
  const ModelConfig m = test::load("llama3.1-8b");
  const FitCell c = one(m, "h100-sxm", "bf16");
  REQUIRE(c.fits);
  CHECK(c.gpus == 1);
  CHECK(c.within_node);
  CHECK(c.nodes == 1);
  // By hand: about 16 GB of BF16 weights, 1 GB of KV (131,072 B/token x 8,192 tokens), 1 GB of CUDA context and
  // graphs, on 72 GB usable: more than half is free.
  CHECK(c.memory.weights.total / 1e9 == Approx(16.06).margin(0.1));
  CHECK(c.memory.kv_bytes == Approx(131072.0 * 8192));
  CHECK(c.free_share > 0.5);
  CHECK(c.headroom == Headroom::excellent);
  // The same numbers as moeplan memory on 1 GPU.
  MemoryRequest q;
  q.model = &m;
  q.precision = resolve_precision("bf16", m, test::precisions());
  q.layout = {1, 1, 1, 1};
  q.capacity_bytes = db.gpu("h100-sxm").memory_bytes;
  const auto b = memory_breakdown(q);
  CHECK(c.memory.total_bytes == Approx(b.total_bytes));
  CHECK(c.max_concurrency == b.max_concurrency);
  CHECK(c.free_share == Approx(b.free_bytes / b.usable_bytes));

  // Maverick in 4 bits fits on one 288 GB-class GPU, with less room: INT4-AWQ on an MI355X (288 GiB) leaves between
  // 15 and 30 % free, NVFP4 (4.5 bits per weight) on a B300 (270 GB) less than 5 %.
  const ModelConfig maverick = test::load("llama4-maverick");
  const FitCell mi = one(maverick, "mi355x", "int4-awq");
  REQUIRE(mi.fits);
  CHECK(mi.gpus == 1);
  CHECK(mi.free_share == Approx(mi.memory.free_bytes / mi.memory.usable_bytes));
  CHECK(mi.headroom == classify_headroom(mi.free_share));
  CHECK(mi.headroom == Headroom::moderate);
  const FitCell b300 = one(maverick, "b300", "nvfp4");
  REQUIRE(b300.fits);
  CHECK(b300.gpus == 1);
  CHECK(b300.free_share < 0.05);
  CHECK(b300.headroom == Headroom::very_tight);
  CHECK(b300.max_concurrency >= 1);
}

TEST_CASE_METHOD(Fixture, "fit-matrix: more sequences need more GPUs and the largest concurrency covers the request") {
  const ModelConfig m = test::load("llama3.1-8b");
  const FitCell few = one(m, "h100-sxm", "bf16", 8192, 1);
  const FitCell many = one(m, "h100-sxm", "bf16", 8192, 1000);
  REQUIRE(many.fits);
  CHECK(many.gpus > few.gpus);
  CHECK(many.max_concurrency >= 1000);
  // A GPU count that cannot hold the weights: nothing fits below the cap.
  FitMatrixRequest q;
  const ModelConfig maverick = test::load("llama4-maverick");
  q.model = &maverick;
  q.precisions = {resolve_precision("bf16", maverick, test::precisions())};
  q.gpus = {&db.gpu("h100-sxm")};
  q.max_gpus = 8;
  const auto capped = fit_matrix(q);
  CHECK_FALSE(capped.cells.front().fits);
  CHECK(capped.cells.front().headroom == Headroom::no_fit);
  CHECK(capped.cells.front().gpus == 0);
}

TEST_CASE("fit-matrix: the layout ladder is tp within a node, then pipeline stages across nodes") {
  const ModelConfig m = test::load("llama4-maverick");
  std::vector<int> counts;
  for (const auto& l : fit_layouts(m, 8, 64)) {
    CHECK(layout_problem(m, l).empty());
    counts.push_back(l.gpus());
  }
  // tp 3, 5, 6, 7 do not divide 40 heads / 8 KV heads; pp 5 and 7 do not divide 48 layers.
  CHECK(counts == std::vector<int>{1, 2, 4, 8, 16, 24, 32, 48, 64});
  // DeepSeek-V3's 61 layers allow no even pipeline split: beyond a node, tp spans the nodes.
  const ModelConfig deepseek = test::load("deepseek-v3");
  std::vector<int> ds_counts;
  for (const auto& l : fit_layouts(deepseek, 8, 32)) {
    CHECK(layout_problem(deepseek, l).empty());
    CHECK(l.pp == 1);
    ds_counts.push_back(l.gpus());
  }
  CHECK(ds_counts == std::vector<int>{1, 2, 4, 8, 16, 32});
  // A 72-GPU NVLink domain: tp 8 with pipeline stages inside the node.
  const auto nvl72 = fit_layouts(m, 72, 72);
  REQUIRE(nvl72.size() > 5);
  CHECK(nvl72[4].tp == 8);
  CHECK(nvl72[4].pp == 2);
  // One GPU per node (GH200): every count beyond one is pipeline stages.
  const auto single = fit_layouts(m, 1, 4);
  REQUIRE(single.size() == 4);
  for (int i = 0; i < 4; ++i) {
    CHECK(single[static_cast<std::size_t>(i)].tp == 1);
    CHECK(single[static_cast<std::size_t>(i)].pp == i + 1);
  }
}

TEST_CASE("headroom classes at their boundaries") {
  CHECK(classify_headroom(-1e-9) == Headroom::no_fit);
  CHECK(classify_headroom(-0.5) == Headroom::no_fit);
  CHECK(classify_headroom(std::numeric_limits<double>::quiet_NaN()) == Headroom::no_fit);
  CHECK(classify_headroom(0.0) == Headroom::very_tight);
  CHECK(classify_headroom(0.0499) == Headroom::very_tight);
  CHECK(classify_headroom(0.05) == Headroom::tight);
  CHECK(classify_headroom(0.1499) == Headroom::tight);
  CHECK(classify_headroom(0.15) == Headroom::moderate);
  CHECK(classify_headroom(0.2999) == Headroom::moderate);
  CHECK(classify_headroom(0.30) == Headroom::good);
  CHECK(classify_headroom(0.4999) == Headroom::good);
  CHECK(classify_headroom(0.50) == Headroom::excellent);
  CHECK(classify_headroom(1.0) == Headroom::excellent);
  CHECK(std::string(headroom_name(Headroom::very_tight)) == "very tight");
  const std::string text = headroom_bounds_text();
  for (const char* part : {"below 0 no fit", "0-5 % very tight", "5-15 % tight", "15-30 % moderate", "30-50 % good",
                           "50 % and up excellent"})
    CHECK(text.find(part) != std::string::npos);
}

TEST_CASE("fit-matrix rejects impossible requests") {
  const ModelConfig m = test::load("llama4-maverick");
  const auto db = gpu_db::Database::load(test::data());
  FitMatrixRequest q;
  q.model = &m;
  q.precisions = {resolve_precision("fp8", m, test::precisions())};
  q.gpus = {&db.gpu("h100-sxm")};
  q.context_tokens = 0;
  CHECK_THROWS_AS(fit_matrix(q), InputError);
  q.context_tokens = 8192;
  q.concurrency = -1;
  CHECK_THROWS_AS(fit_matrix(q), InputError);
  q.concurrency = 1;
  q.context_tokens = 2'000'000;  // above max_position_embeddings
  CHECK_THROWS_AS(fit_matrix(q), InputError);
}

TEST_CASE_METHOD(Fixture, "fit-matrix: counts and layouts include the planner's expert-parallel ones (Maverick)") {
  const ModelConfig m = test::load("llama4-maverick");
  // At 8 GPUs of an 8-GPU node: tp 8 (the ladder), and the planner's tp8 ep8 and tp1 ep8 dp8 (DEP8).
  const auto by_count = fit_layouts_by_count(m, 8, 64);
  const auto eight = std::find_if(by_count.begin(), by_count.end(), [](const auto& at) { return at.front().gpus() == 8; });
  REQUIRE(eight != by_count.end());
  const auto has = [&](int tp, int ep, int pp, int dp) {
    return std::any_of(eight->begin(), eight->end(),
                       [&](const ParallelLayout& l) { return l.tp == tp && l.ep == ep && l.pp == pp && l.dp == dp; });
  };
  CHECK(eight->front().tp == 8);  // the ladder's layout first
  CHECK(has(8, 8, 1, 1));
  CHECK(has(1, 8, 1, 8));
  for (const auto& at : by_count)
    for (const auto& l : at) CHECK(layout_problem(m, l).empty());

  // Brute force over every layout the planner sweeps (model::candidate_layouts) and the ladder's, with the memory
  // function the planner's fit uses: the smallest count where one fits, and there the most free memory.
  const std::vector<std::string> precisions = {"bf16", "fp8", "nvfp4"};
  int ep_chosen = 0, cells = 0;
  for (const char* gpu : {"h100-sxm", "h200-sxm", "b200", "mi300x", "l40s"})
    for (const auto& spec : precisions)
      for (const std::int64_t concurrency : {std::int64_t{1}, std::int64_t{64}}) {
        INFO(gpu << " " << spec << " x" << concurrency);
        const FitCell c = one(m, gpu, spec, 8192, concurrency);
        const auto& g = db.gpu(gpu);
        MemoryRequest q;
        q.model = &m;
        q.precision = resolve_precision(spec, m, test::precisions());
        q.context_tokens = 8192;
        q.concurrency = concurrency;
        q.capacity_bytes = g.memory_bytes;
        q.device_name = g.name;
        int best_count = 0;
        double best_free = -1;
        const auto ladder = fit_layouts(m, g.gpus_per_node, 256);
        for (int count = 1; count <= 256 && best_count == 0; ++count) {
          std::vector<ParallelLayout> tried = candidate_layouts(m, count);
          for (const auto& l : ladder)
            if (l.gpus() == count) tried.push_back(l);
          for (const auto& l : tried) {
            if (!layout_problem(m, l).empty()) continue;
            q.layout = l;
            const auto b = memory_breakdown(q);
            if (b.fits && b.free_bytes > best_free) best_count = count, best_free = b.free_bytes;
          }
        }
        ++cells;
        CHECK(c.gpus == best_count);
        if (best_count > 0) CHECK(c.memory.free_bytes == Approx(best_free));
        ep_chosen += c.layout.ep > 1;
      }
  CHECK(cells == 30);
  // Expert parallelism is chosen where it leaves the most free memory: Maverick BF16 on 8 H200s is tp8 ep8 (102.45 GB
  // used per GPU against tp8's 102.49 GB), 16 H100s tp8 ep8 pp2.
  CHECK(ep_chosen > 0);
  CHECK(one(m, "h200-sxm", "bf16").layout.ep == 8);
  CHECK(one(m, "h100-sxm", "bf16").gpus == 16);
}
