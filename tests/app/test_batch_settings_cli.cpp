// `simulate --batch-settings trtllm-bench`: the batch and tokens per step trtllm-bench picks reach the simulation and
// the output names them; combinations that cannot hold exit 2 with one line.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "tests/app/cli_run.hpp"

using namespace moeplan;

namespace {
const std::vector<std::string> kDense70bTp2 = {"simulate", "--model", "llama3.1-70b", "--gpu", "h100-sxm", "--count", "2",
                                               "--tp", "2", "--precision", "fp8", "--input", "1000", "--output", "1000",
                                               "--num-requests", "200", "--format", "json"};

test::CliResult simulate(std::vector<std::string> extra) {
  std::vector<std::string> args = kDense70bTp2;
  args.insert(args.end(), extra.begin(), extra.end());
  return test::run(args);
}
}  // namespace

TEST_CASE("simulate --batch-settings trtllm-bench uses and names trtllm-bench's batch", "[trtllm_bench][cli]") {
  const auto r = simulate({"--engine", "trtllm", "--batch-settings", "trtllm-bench"});
  REQUIRE(r.code == 0);
  const auto j = nlohmann::json::parse(r.out);
  // Hand value (tests/simulator/test_trtllm_bench.cpp): 278 requests -> max_batch 384, max_num_tokens 2048.
  CHECK(j["batch_settings"]["max_batch"] == 384);
  CHECK(j["batch_settings"]["max_num_tokens"] == 2048);
  CHECK(j["batch_settings"]["quant_algo"] == "FP8");
  CHECK(j["peak_batch"].get<std::int64_t>() <= 384);
  // The table's header names both values.
  auto table = kDense70bTp2;
  table.back() = "table";
  table.insert(table.end(), {"--engine", "trtllm", "--batch-settings", "trtllm-bench"});
  const auto t = test::run(table);
  REQUIRE(t.code == 0);
  const auto header = t.out.substr(0, t.out.find("\n\n"));
  CHECK(header.find("batch settings: trtllm-bench: FP8 checkpoint") != std::string::npos);
  CHECK(header.find("max_batch 384, max_num_tokens 2,048") != std::string::npos);
}

TEST_CASE("simulate --batch-settings refuses what it cannot honour", "[trtllm_bench][cli][badinput]") {
  for (const auto& extra : std::vector<std::vector<std::string>>{
           {"--batch-settings", "trtllm-bench"},                                     // generic engine
           {"--engine", "vllm", "--batch-settings", "trtllm-bench"},                 // not TensorRT-LLM
           {"--engine", "trtllm", "--batch-settings", "trtllm-bench", "--max-batch", "64"},
           {"--engine", "trtllm", "--batch-settings", "bench"}}) {
    const auto r = simulate(extra);
    CHECK(r.code == 2);
    CHECK(test::one_line(r.err));
    CHECK(r.err.find("--batch-settings") != std::string::npos);
  }
}
