// trtllm-bench's batch settings against values computed by hand from tensorrt_llm/bench/build/tuning.py's formula
// (docs/simulator.md "Engines"): a dense FP8 model, an MLA model with attention DP, a packed NVFP4 DEP row, an
// untuned quantisation, and the inputs trtllm-bench refuses.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/error.hpp"
#include "gpu_db/gpu_db.hpp"
#include "simulator/published.hpp"
#include "simulator/trtllm_bench.hpp"
#include "tests/test_util.hpp"

using namespace moeplan;
using namespace moeplan::simulator;

namespace {
constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

TrtllmBenchInput input(const model::ModelConfig& m, const std::string& precision, model::KvDtype kv, double gib, int tp,
                       std::int64_t isl, std::int64_t osl) {
  TrtllmBenchInput in;
  in.model = &m;
  in.precision = model::resolve_precision(precision, m, test::precisions());
  in.kv_dtype = kv;
  in.device_memory_gib = gib;
  in.tp = tp;
  in.input_tokens = isl;
  in.output_tokens = osl;
  return in;
}
}  // namespace

TEST_CASE("trtllm-bench finetune_setting rounds batch and tokens as tuning.py does", "[trtllm_bench]") {
  // raw_bs 278.08 -> 128 x 3 = 384; raw tokens 556 -> the 2048 floor.
  CHECK(trtllm_bench_finetune(278.08, 1000, 1000, 1) == std::pair<std::int64_t, std::int64_t>{384, 2048});
  // Below 256: a floor of 64, then steps of 32.
  CHECK(trtllm_bench_finetune(10, 1000, 1000, 1) == std::pair<std::int64_t, std::int64_t>{64, 2048});
  CHECK(trtllm_bench_finetune(100, 1000, 1000, 1).first == 128);
  // Above 1024: steps of 256; tokens 6607.6 -> steps of 512 -> 6656.
  CHECK(trtllm_bench_finetune(3303.8, 1000, 1000, 1) == std::pair<std::int64_t, std::int64_t>{3328, 6656});
  // Capped at 4096 requests and 32,768 tokens; pp divides the batch.
  CHECK(trtllm_bench_finetune(1e6, 8192, 1024, 1) == std::pair<std::int64_t, std::int64_t>{4096, 32768});
  CHECK(trtllm_bench_finetune(1e6, 1000, 1000, 2) == std::pair<std::int64_t, std::int64_t>{2048, 4096});
}

TEST_CASE("trtllm-bench's CUDA graphs: padding on, 1, 2, 4, 8..128 by 8, powers of two below the max, the max", "[trtllm_bench]") {
  const std::vector<std::int64_t> small = trtllm_bench_graph_batches(64);
  CHECK(small == std::vector<std::int64_t>{1, 2, 4, 8, 16, 24, 32, 40, 48, 56, 64});
  const std::vector<std::int64_t> b = trtllm_bench_graph_batches(2048);
  REQUIRE(b.size() == 3 + 16 + 3 + 1);
  CHECK(b[18] == 128);
  CHECK(std::vector<std::int64_t>(b.end() - 4, b.end()) == std::vector<std::int64_t>{256, 512, 1024, 2048});
  CHECK(trtllm_bench_graph_batches(384).back() == 384);
  CHECK(trtllm_bench_graph_batches(384)[18] == 128);
  CHECK(trtllm_bench_graph_batches(384).size() == 20);
}

TEST_CASE("trtllm-bench settings: Llama 3.3 70B FP8 on 2 H100, 1000/1000", "[trtllm_bench]") {
  const auto m = test::load("llama3.1-70b");
  const auto s = trtllm_bench_settings(input(m, "fp8", model::KvDtype::fp8, 80, 2, 1000, 1000));
  // 70.55 G params x 1 B = 65.71 GiB of 160 GiB; 0.90 x 94.29 GiB at 2 x 80 layers x max(2, 8) heads x 128 x 1 B
  // = 163,840 B/token holds 278.1 requests of 2,000 tokens -> 384 (steps of 128), tokens 556 -> 2048 floor;
  // max(2048, 1000 + 384) = 2048.
  CHECK(s.tuned);
  CHECK(s.quant_algo == "FP8");
  CHECK(s.checkpoint_elements == Approx(70.55e9).epsilon(0.001));
  CHECK(s.kv_bytes_per_token == 163840.0);
  CHECK(s.max_requests == Approx(0.9 * (160 - 70.55e9 / kGiB) / (163840.0 * 2000 / kGiB)).epsilon(0.001));
  CHECK(s.max_batch == 384);
  CHECK(s.max_num_tokens == 2048);
}

TEST_CASE("trtllm-bench settings: DeepSeek-R1 FP8 DEP8 on H200 counts MLA as 128 heads of hidden / heads", "[trtllm_bench]") {
  const auto m = test::load("deepseek-v3");
  // --tp 8 --ep 8 with attention DP: tp 8 for the heuristic. config.json has no head_dim: 7168 / 128 = 56.
  const auto s = trtllm_bench_settings(input(m, "fp8-block", model::KvDtype::fp8, 141, 8, 1000, 1000));
  CHECK(s.quant_algo == "FP8_BLOCK_SCALES");
  CHECK(s.kv_bytes_per_token == 2.0 * 61 * 128 * 56);  // 874,496 B, 25x the 35,136 B MLA latent
  // 684.5 G elements x 1 B = 637.5 GiB of 1,128 GiB; 0.90 x 490.5 GiB / (874,496 B x 2,000) = 271 requests -> 384.
  CHECK(s.engine_gib == Approx(684.49e9 / kGiB).epsilon(0.001));
  CHECK(s.max_requests == Approx(271.0).epsilon(0.002));
  CHECK(s.max_batch == 384);
  CHECK(s.max_num_tokens == 2048);
}

TEST_CASE("trtllm-bench settings: Qwen3-235B NVFP4 DEP4 on B200 counts packed FP4 elements", "[trtllm_bench]") {
  const auto m = test::load("qwen3-235b-a22b");
  const auto s = trtllm_bench_settings(input(m, "nvfp4:all-linear", model::KvDtype::fp8, 180, 4, 1000, 1000));
  // Quantised matrices (233.80 G weights) are stored as U8 pairs + F8 scales: 0.5625 elements per weight; embedding,
  // lm_head, routers and norms (1.29 G) stay BF16: 132.8 G elements x 0.5 B = 61.8 GiB of 720 GiB.
  CHECK(s.checkpoint_elements == Approx(1.2947e9 + 0.5625 * 233.799e9).epsilon(0.002));
  CHECK(s.engine_gib == Approx(61.84).epsilon(0.002));
  CHECK(s.kv_bytes_per_token == 2.0 * 94 * 4 * 128);
  // 0.90 x 658.2 GiB / (96,256 B x 2,000) = 3,304 requests -> 3,328 (steps of 256); tokens 6,608 -> 6,656.
  CHECK(s.max_requests == Approx(3303.8).epsilon(0.002));
  CHECK(s.max_batch == 3328);
  CHECK(s.max_num_tokens == 6656);
}

TEST_CASE("trtllm-bench settings: an untuned quantisation gets the LLM API defaults, prompts still fit a step", "[trtllm_bench]") {
  const auto m = test::load("gpt-oss-120b");
  auto s = trtllm_bench_settings(input(m, "auto", model::KvDtype::bf16, 141, 1, 1000, 1000));
  CHECK_FALSE(s.tuned);
  CHECK(s.quant_algo == "mxfp4");
  CHECK(s.max_batch == 2048);
  CHECK(s.max_num_tokens == 8192);
  // Chunked prefill off: max(8192, 8192 + 2048).
  s = trtllm_bench_settings(input(m, "auto", model::KvDtype::bf16, 141, 1, 8192, 1024));
  CHECK(s.max_num_tokens == 10240);
  auto chunked = input(m, "auto", model::KvDtype::bf16, 141, 1, 8192, 1024);
  chunked.chunked_prefill = true;
  CHECK(trtllm_bench_settings(chunked).max_num_tokens == 8192);
}

TEST_CASE("trtllm-bench settings refuse what trtllm-bench refuses, naming it", "[trtllm_bench][badinput]") {
  const auto m = test::load("llama3.1-405b");
  // 405 G BF16 weights (754 GiB) on one 80 GiB GPU: trtllm-bench raises "The model requires at least ...".
  CHECK_THROWS_WITH(trtllm_bench_settings(input(m, "bf16", model::KvDtype::bf16, 80, 1, 1000, 1000)),
                    Catch::Contains("more than the 80.0 GiB of 1 GPUs"));
  CHECK_THROWS_AS(trtllm_bench_settings(input(m, "fp8", model::KvDtype::fp8, 80, 8, 0, 1000)), InputError);
  auto bad = input(m, "fp8", model::KvDtype::fp8, 80, 8, 1000, 1000);
  bad.kv_fraction = 1.5;
  CHECK_THROWS_AS(trtllm_bench_settings(bad), InputError);
  // 0.90 x (640 - 378) GiB at 258,048 B/token: less than one request of 2,000,000 tokens (481 GiB).
  CHECK_THROWS_WITH(trtllm_bench_settings(input(m, "fp8", model::KvDtype::fp8, 80, 8, 1000000, 1000000)),
                    Catch::Contains("less than one request"));
}

namespace {
// Loads a points file written for this test (one file per process: ctest runs test cases in parallel).
PublishedSet load_points(const std::string& yaml) {
  const auto path = std::filesystem::temp_directory_path() / ("moeplan_test_trtbench." + std::to_string(::getpid()) + ".yaml");
  std::ofstream(path) << yaml;
  struct Remove {
    std::filesystem::path p;
    ~Remove() { std::filesystem::remove(p); }
  } remove{path};
  return load_published(path);
}

const char* kRow =
    "  - {id: T-1, model: llama3.1-70b, gpu: h100-sxm, count: 2, tp: 2, dp: 1, ep: 1, precision: fp8, kv_dtype: fp8, "
    "input: 1000, output: 1000, load: max, num_requests: 200, metric: output_tokens_per_s, value: 4205, engine: trtllm, "
    "source: S1";
}  // namespace

TEST_CASE("published rows choose trtllm-bench's settings by row or by source", "[trtllm_bench][published]") {
  const std::string defaults = "defaults: {max_batch: 2048, max_num_batched_tokens: 8192";
  // Fixed unless asked.
  CHECK(load_points(defaults + "}\npoints:\n" + kRow + "}\n").points.at(0).settings == "fixed");
  // By source: a max-load row without its own max_batch.
  const auto by_source = load_points(defaults + ", settings_by_source: {S1: trtllm-bench}}\npoints:\n" + kRow + "}\n" +
                                     kRow + ", max_batch: 64}\n");
  CHECK(by_source.points.at(0).settings == "trtllm-bench");
  CHECK(by_source.points.at(1).settings == "fixed");
  // By row, and such a row runs through validate_published.
  const auto set = load_points(defaults + "}\npoints:\n" + kRow + ", settings: trtllm-bench}\n");
  REQUIRE(set.points.at(0).settings == "trtllm-bench");
  const auto db = gpu_db::Database::load(test::data());
  const auto r = validate_published(set, db, test::data());
  REQUIRE(r.rows.at(0).failure.empty());
  CHECK(r.rows.at(0).predicted > 0);
  CHECK_THROWS_WITH(load_points(defaults + "}\npoints:\n" + kRow + ", settings: bench}\n"),
                    Catch::Contains("settings must be fixed or trtllm-bench"));
}

TEST_CASE("published rows take CUDA-graph batch sizes of their own over their source's", "[published]") {
  const std::string defaults = "defaults: {max_batch: 2048, max_num_batched_tokens: 8192, cuda_graphs_by_source: {S1: [1, 8]}";
  const auto set = load_points(defaults + "}\npoints:\n" + kRow + "}\n" + kRow + ", cuda_graph_batch_sizes: [4, 64]}\n");
  REQUIRE(set.points.at(0).graph_padded_batches);
  CHECK(*set.points.at(0).graph_padded_batches == std::vector<std::int64_t>{1, 8});
  REQUIRE(set.points.at(1).graph_padded_batches);
  CHECK(*set.points.at(1).graph_padded_batches == std::vector<std::int64_t>{4, 64});
  // Bad lists name the file's line.
  CHECK_THROWS_WITH(load_points(defaults + "}\npoints:\n" + kRow + ", cuda_graph_batch_sizes: [64, 4]}\n"),
                    Catch::Contains(":3") && Catch::Contains("CUDA-graph batch sizes must be positive and ascending"));
  CHECK_THROWS_WITH(load_points(defaults + "}\npoints:\n" + kRow + ", cuda_graph_batch_sizes: 64}\n"),
                    Catch::Contains("CUDA-graph batch sizes must be a list of batch sizes"));
}
