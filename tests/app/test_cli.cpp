// The command line in-process: exit codes, one-line errors, JSON fields, atomic output files.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "app/cli.hpp"
#include "kernels/cpu_features.hpp"
#include "tests/app/cli_run.hpp"
#include "tests/test_util.hpp"

using namespace moeplan;

namespace {
using test::one_line;
using test::run;
}  // namespace

TEST_CASE("memory --format json has the documented fields") {
  const auto r = run({"memory", "--model", "llama4-maverick", "--gpu", "h100-sxm", "--count", "8", "--precision", "fp8",
                      "--format", "json"});
  REQUIRE(r.code == 0);
  const auto j = nlohmann::json::parse(r.out);
  for (const char* key : {"weights_bytes", "weights_bytes_by_module", "kv_bytes", "activation_bytes", "overhead_bytes",
                          "total_bytes", "capacity_bytes", "usable_bytes", "free_bytes", "fits", "max_concurrency"})
    CHECK(j.contains(key));
  CHECK(j["precision"] == "fp8:experts");
  CHECK(j["tp"] == 8);
  CHECK(j["fits"] == true);
}

TEST_CASE("every bad input is one line on stderr and exit code 2") {
  const std::vector<std::vector<std::string>> cases = {
      {"memory", "--gpu", "h100-sx"},
      {"memory", "--model", "llama4-maverik"},
      {"memory", "--precision", "fp9"},
      {"memory", "--count", "8", "--tp", "3"},
      {"memory", "--count", "6"},
      {"memory", "--count", "8", "--ep", "3"},
      {"memory", "--count", "8", "--pp", "3"},
      {"memory", "--count=0"},
      {"memory", "--context=-5"},
      {"memory", "--concurrency", "0"},
      {"memory", "--context", "2000000"},
      {"memory", "--kv-dtype", "int3"},
      {"memory", "--gpu-memory-utilization", "1.5"},
      {"memory", "--no-such-option"},
      {"memory", "--model", "/nonexistent/config.json"},
      {"memory", "--config-file", "/nonexistent.yaml"},
      {"memory", "--host", "no-such-host"},
      {"memory", "--format", "xml"},
      {"gpus", "--vendor", "acme"},
      {"models", "--model", "nope"},
      {"frobnicate"},
      {"simulate", "--tp", "3"},                                   // 40 heads are not divisible by 3
      {"simulate", "--count", "8", "--ep", "3"},                   // 128 experts by 3
      {"simulate", "--concurrency", "0"},
      {"simulate", "--concurrency", "lots"},
      {"simulate", "--input", "1000000"},                          // above the context limit
      {"simulate", "--count", "1", "--precision", "bf16"},         // 800 GB on one H100
      {"simulate", "--model", "llama3.1-8b", "--count", "1", "--dp", "1", "--ep", "2"},
      {"simulate", "--request-rate", "-1"},
      {"simulate", "--request-rate", "2", "--concurrency", "8"},
      {"simulate", "--zipf", "1.0", "--model", "llama3.1-8b", "--count", "1"},
      {"simulate", "--host", "ddr4-desktop-2ch", "--count", "2"},
      {"validate"},
      {"validate", "--device", "cuda"},
      {"validate", "--device", "tpu"},
      {"validate", "--device", "cpu", "--profile", "/nonexistent/profile.yaml"},
      {"validate", "--device", "cpu", "--published"},
      {"calibrate", "--device", "cuda"},
      {"calibrate", "--device", "cuda", "--gpu", "h200-sxm", "--repeats", "0"},
      {"calibrate", "--device", "tpu"},
      {"validate", "--device", "cuda", "--fixtures", "/nonexistent"},
      {"run", "--device", "tpu", "--random-weights", "1"},
      {"run", "--device", "cuda", "--cuda-device", "-1", "--random-weights", "1"},
      {"calibrate", "--ranks", "0"},
      {"calibrate", "--dtypes", "nvfp4"},
      {"calibrate", "--threads", "-1"},
      {"calibrate", "--passes", "0"},
      {"calibrate", "--profile", "/nonexistent/dir/p.yaml"},
      {"simulate", "--profile", "/nonexistent/profile.yaml", "--model", "llama3.1-8b"},
      {"run", "--device", "cuda", "--random-weights", "1"},
      {"run"},                                                      // neither --weights nor --random-weights
      {"run", "--random-weights", "1", "--tp", "2", "--ep", "4"},             // ep does not divide tp * dp = 2
      {"run", "--random-weights", "1", "--tp", "2", "--dp", "2", "--ep", "8"},  // nor tp * dp = 4
      {"run", "--random-weights", "1", "--tp", "3", "--dp", "2", "--ep", "2"},  // 40 heads by 3
      {"run", "--random-weights", "1", "--tp", "1", "--dp", "1", "--ep", "2"},  // explicit dp 1: ep 2 needs 2 ranks
      {"run", "--random-weights", "1", "--dp", "0"},
      {"run", "--random-weights", "1", "--layers", "4", "--experts", "4", "--hidden", "64", "--intermediate", "64",
       "--heads", "4", "--kv-heads", "2", "--vocab", "100", "--tp", "2", "--prompt", "1,2,500"},
      {"run", "--random-weights", "1", "--layers", "1"},            // too few layers to keep Maverick's pattern
      {"run", "--weights", "/nonexistent"},
      {"plan", "--budget-per-month", "0"},
      {"plan", "--budget-per-hour", "-5"},
      {"plan", "--gpus", ""},
      {"plan", "--gpus", "h100-sxm,nope"},
      {"plan", "--objective", "cheapest"},
      {"plan", "--counts", "8,x"},
      {"compare-api", "--model", "llama3.1-8b", "--gpus", "h100-sxm", "--tpot-ms", "0.01"},
      {"simulate", "--engine", "vlm"},
      {"simulate", "--engine", "trtllm", "--gpu", "mi300x"},
      {"simulate", "--engine", "sglang", "--host", "ddr5-desktop-2ch", "--model", "llama3.1-8b"},
      {"plan", "--engine", "trtllm", "--gpus", "mi300x"},
      {"plan", "--engine", "nope"},
      {"compare-api", "--engine", "trtllm", "--gpus", "h100-sxm,mi300x"},
      {"validate", "--published", "--engine", "nope"},
  };
  for (const auto& args : cases) {
    INFO(args[0] << " " << (args.size() > 1 ? args[1] : "") << " " << (args.size() > 2 ? args[2] : ""));
    const auto r = run(args);
    CHECK(r.code == 2);
    CHECK(one_line(r.err));
    CHECK(r.err.rfind("moeplan: error: ", 0) == 0);
  }
}

TEST_CASE("an engine that does not run on the GPU exits 2 naming the engines that do, unknown engines list them") {
  const auto r = run({"simulate", "--engine", "trtllm", "--gpu", "mi300x", "--model", "llama3.1-8b", "--count", "1"});
  CHECK(r.code == 2);
  CHECK(one_line(r.err));
  CHECK(r.err.find("mi300x") != std::string::npos);
  CHECK(r.err.find("vllm") != std::string::npos);
  CHECK(r.err.find("sglang") != std::string::npos);
  const auto p = run({"plan", "--engine", "trtllm", "--gpus", "h100-sxm,mi300x"});
  CHECK(p.code == 2);
  CHECK(p.err.find("engines that do: ") != std::string::npos);
  const auto u = run({"simulate", "--engine", "tensorrt"});
  CHECK(u.code == 2);
  for (const char* name : {"trtllm", "vllm", "sglang", "llamacpp", "generic"}) CHECK(u.err.find(name) != std::string::npos);
}

TEST_CASE("simulate and plan name the engine, plan rows and launch commands follow it") {
  const auto s = run({"simulate", "--model", "llama3.1-8b", "--gpu", "h100-sxm", "--count", "1", "--engine", "vllm",
                      "--concurrency", "4", "--format", "json"});
  REQUIRE(s.code == 0);
  const auto sj = nlohmann::json::parse(s.out);
  CHECK(sj["engine"] == "vllm");
  CHECK(sj["engine_version"].get<std::string>().find("0.1") != std::string::npos);
  bool sourced = false;
  for (const auto& a : sj["assumptions"]) sourced = sourced || a.get<std::string>().find("engine: vllm") != std::string::npos;
  CHECK(sourced);
  const auto g = run({"simulate", "--model", "llama3.1-8b", "--gpu", "h100-sxm", "--count", "1", "--format", "json"});
  REQUIRE(g.code == 0);
  CHECK(nlohmann::json::parse(g.out)["engine"] == "generic");

  const auto p = run({"plan", "--model", "llama3.1-8b", "--gpus", "h100-sxm,mi300x", "--counts", "1,2", "--format", "json"});
  REQUIRE(p.code == 0);
  const auto pj = nlohmann::json::parse(p.out);
  CHECK(pj["engines"].size() == 4);
  std::set<std::string> engines;
  for (const auto& row : pj["configurations"]) {
    engines.insert(row["engine"].get<std::string>());
    CHECK_FALSE((row["engine"] == "trtllm" && row["gpu"] == "mi300x"));
  }
  CHECK(engines.count("trtllm"));
  CHECK(engines.count("vllm"));
  REQUIRE(pj.contains("launch"));
  const auto& rows = pj["configurations"];
  for (const auto& l : pj["launch"]) {
    const std::string engine = rows[l["row"].get<int>() - 1]["engine"];
    const std::string cmd = l["command"];
    if (engine == "trtllm") CHECK(cmd.rfind("trtllm-serve", 0) == 0);
    if (engine == "vllm") CHECK(cmd.rfind("vllm serve", 0) == 0);
    if (engine == "sglang") CHECK(cmd.find("sglang.launch_server") != std::string::npos);
    if (engine == "llamacpp") CHECK(cmd.rfind("llama-server", 0) == 0);
  }
  const auto t = run({"plan", "--model", "llama3.1-8b", "--gpus", "mi300x", "--counts", "1", "--engine", "sglang"});
  REQUIRE(t.code == 0);
  CHECK(t.out.find("engines evaluated: sglang") != std::string::npos);
  CHECK(t.out.find("python -m sglang.launch_server") != std::string::npos);
  CHECK(t.out.find("vllm serve") == std::string::npos);
  CHECK(t.out.find("trtllm-serve") == std::string::npos);
}

TEST_CASE("a --nics-per-node of 0, negative or not a number is one line naming the option, exit 2") {
  for (const char* cmd : {"plan", "simulate"}) {
    for (const char* v : {"0", "-2", "abc", "1.5"}) {
      INFO(cmd << " --nics-per-node " << v);
      const bool plan = std::string(cmd) == "plan";
      const auto s = run({cmd, plan ? "--gpus" : "--gpu", "h200-sxm", "--nics-per-node", v});
      CHECK(s.code == 2);
      CHECK(one_line(s.err));
      CHECK(s.err.rfind("moeplan: error: ", 0) == 0);
      CHECK(s.err.find("--nics-per-node") != std::string::npos);
    }
  }
  for (const char* v : {"-1", "nan", "x"}) {
    INFO("--network-price " << v);
    const auto r = run({"plan", "--gpus", "h200-sxm", "--network-price", v});
    CHECK(r.code == 2);
    CHECK(one_line(r.err));
    CHECK(r.err.find("--network-price") != std::string::npos);
  }
}

TEST_CASE("plan rows print their nodes, links and network price, simulate prints the NIC assumption") {
  const auto t = run({"plan", "--model", "llama4-maverick", "--gpus", "h200-sxm", "--precisions", "fp8", "--counts", "8,16",
                      "--engine", "generic", "--top", "20"});
  REQUIRE(t.code == 0);
  CHECK(t.out.find("network: --internode infiniband-ndr") != std::string::npos);
  CHECK(t.out.find("nodes, links") != std::string::npos);
  CHECK(t.out.find("1 node, nvlink4") != std::string::npos);
  CHECK(t.out.find("2 nodes, nvlink4 + 8x ib-ndr400") != std::string::npos);
  CHECK(t.out.find("net $/h") != std::string::npos);
  CHECK(t.out.find("beyond validated") != std::string::npos);
  CHECK(t.out.find("> 8 GPUs") != std::string::npos);
  const auto j = run({"plan", "--model", "llama4-maverick", "--gpus", "h200-sxm", "--precisions", "fp8", "--counts", "8,16",
                      "--engine", "generic", "--nics-per-node", "4", "--format", "json"});
  REQUIRE(j.code == 0);
  const auto pj = nlohmann::json::parse(j.out);
  CHECK(pj.at("network").at("nics_per_node") == 4);
  CHECK(pj.at("validated_range").at("max_gpus").get<int>() >= 8);
  bool two = false;
  for (const auto& row : pj.at("configurations")) {
    const int count = row.at("count");
    CHECK(row.at("nodes") == (count + 7) / 8);
    CHECK(row.at("links").get<std::string>().find(count > 8 ? "2 nodes" : "1 node") == 0);
    CHECK(row.at("usd_per_hour").get<double>() ==
          Approx(row.at("usd_per_gpu_hour").get<double>() * count + row.at("network_usd_per_hour").get<double>()));
    if (count == 16) {
      two = true;
      CHECK(row.at("nics_per_node") == 4);
      CHECK(row.at("inter_link") == "ib-ndr400");
      CHECK(row.at("beyond_validated").size() >= 1);
    } else {
      CHECK(row.at("beyond_validated").empty());
      CHECK(row.at("network_usd_per_hour") == 0);
    }
  }
  CHECK(two);
  const auto csv = run({"plan", "--model", "llama4-maverick", "--gpus", "h200-sxm", "--precisions", "fp8", "--counts", "16",
                        "--engine", "generic", "--format", "csv"});
  REQUIRE(csv.code == 0);
  CHECK(csv.out.find("nodes, links") != std::string::npos);
  CHECK(csv.out.find("2 nodes, nvlink4 + 8x ib-ndr400") != std::string::npos);
  const auto sim = run({"simulate", "--model", "llama4-maverick", "--gpu", "rtx-pro-6000", "--count", "16", "--precision",
                        "nvfp4", "--tp", "1", "--ep", "16", "--dp", "16", "--concurrency", "64", "--num-requests", "64",
                        "--input", "200", "--output", "20"});
  REQUIRE(sim.code == 0);
  CHECK(sim.out.find("network: 4 nodes of 4 GPUs") != std::string::npos);
  CHECK(sim.out.find("2 x infiniband-ndr") != std::string::npos);
  CHECK(sim.out.find("beyond validated: > 8 GPUs, EP16 over PCIe") != std::string::npos);
  const auto sim2 = run({"simulate", "--model", "llama4-maverick", "--gpu", "rtx-pro-6000", "--count", "16", "--precision",
                         "nvfp4", "--tp", "1", "--ep", "16", "--dp", "16", "--concurrency", "64", "--num-requests", "64",
                         "--input", "200", "--output", "20", "--nics-per-node", "4", "--format", "json"});
  REQUIRE(sim2.code == 0);
  CHECK(nlohmann::json::parse(sim2.out).at("network").get<std::string>().find("4 x infiniband-ndr") != std::string::npos);
}

TEST_CASE("simulate --format json has the documented fields, with sub-fields") {
  const auto r = run({"simulate", "--model", "mixtral-8x7b", "--gpu", "h100-sxm", "--count", "2", "--precision", "fp8",
                      "--input", "256", "--output", "32", "--concurrency", "4", "--num-requests", "8", "--breakdown",
                      "--format", "json"});
  REQUIRE(r.code == 0);
  const auto j = nlohmann::json::parse(r.out);
  for (const char* k : {"output_tokens_per_s", "output_tokens_per_s_per_gpu", "output_tokens_per_s_per_user"})
    CHECK(j.at(k).get<double>() > 0);
  for (const char* k : {"ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"})
    for (const char* p : {"mean", "p50", "p90", "p99"}) CHECK(j.at(k).at(p).get<double>() > 0);
  CHECK(j.at("output_tokens_per_s_per_gpu").get<double>() == Approx(j.at("output_tokens_per_s").get<double>() / 2));
  CHECK(j.at("breakdown").at("decode").at("ops").size() > 10);
  CHECK(j.at("breakdown").at("prefill").at("tokens") == 256);
}

TEST_CASE("simulate on a host and with expert offload") {
  const auto host = run({"simulate", "--model", "qwen3-30b-a3b", "--host", "ddr5-desktop-2ch", "--precision", "q4_k_m",
                         "--input", "128", "--output", "64", "--concurrency", "1", "--num-requests", "2", "--format", "json"});
  REQUIRE(host.code == 0);
  const auto h = nlohmann::json::parse(host.out);
  // 3.3 B active parameters at ~4.8 bits on 89.6 GB/s × 0.75: a few tens of tokens/s, not thousands.
  CHECK(h.at("decode_tokens_per_s_per_user").get<double>() > 10);
  CHECK(h.at("decode_tokens_per_s_per_user").get<double>() < 60);
  const auto off = run({"simulate", "--model", "llama4-scout", "--gpu", "rtx-4090", "--count", "1", "--precision", "q4_k_m",
                        "--offload-experts", "--offload-host", "ddr5-desktop-2ch", "--input", "128", "--output", "64",
                        "--concurrency", "1", "--num-requests", "2", "--format", "json"});
  REQUIRE(off.code == 0);
  CHECK(nlohmann::json::parse(off.out).at("decode_tokens_per_s_per_user").get<double>() > 1);
}

TEST_CASE("plan --format json has the documented fields, an SLO nothing meets exits 0 with the closest") {
  const auto r = run({"plan", "--gpus", "h100-sxm,h200-sxm", "--format", "json"});
  REQUIRE(r.code == 0);
  const auto j = nlohmann::json::parse(r.out);
  REQUIRE(!j.at("configurations").empty());
  for (const char* k : {"gpu", "count", "precision", "tp", "ep", "pp", "dp", "usd_per_hour", "usd_per_m_input_tokens",
                        "usd_per_m_output_tokens", "output_tokens_per_s", "output_tokens_per_s_per_user", "ttft_ms",
                        "tpot_ms", "vram_used_bytes_per_gpu"})
    CHECK(j.at("configurations").at(0).contains(k));
  const auto none = run({"plan", "--gpus", "h100-sxm", "--tpot-ms", "0.5"});
  CHECK(none.code == 0);
  CHECK(none.out.find("no configuration meets the constraints; closest:") != std::string::npos);
  const auto api = run({"compare-api", "--gpus", "h200-sxm", "--format", "json"});
  REQUIRE(api.code == 0);
  CHECK(nlohmann::json::parse(api.out).at("breakeven_tokens_per_month").get<double>() > 0);
}

TEST_CASE("run executes a shrunk Maverick from seeded random weights, JSON has tokens, rates and per-op times") {
  const auto dir = test::temp_path("moeplan_cli_run_test");
  const auto trace = test::temp_path("moeplan_cli_run_trace.json");
  // A 4-layer, 4-expert Maverick at hidden 128 from seed 3, 2 sequences of 12 prompt and 5 generated tokens, plus `extra`.
  const auto small_run = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = {"run", "--random-weights", "3", "--weights-out", dir.string(), "--layers", "4",
                                     "--experts", "4", "--hidden", "128", "--intermediate", "256", "--heads", "4",
                                     "--kv-heads", "2", "--vocab", "512", "--prompt-tokens", "12", "--gen-tokens", "5",
                                     "--batch", "2"};
    args.insert(args.end(), extra.begin(), extra.end());
    return run(args);
  };
  const auto r = small_run({"--trace-routing", trace.string(), "--format", "json"});
  REQUIRE(r.code == 0);
  const auto j = nlohmann::json::parse(r.out);
  REQUIRE(j.at("tokens").size() == 2);
  CHECK(j.at("tokens").at(0).size() == 5);
  CHECK(j.at("prefill_tokens_per_s").get<double>() > 0);
  CHECK(j.at("decode_tokens_per_s").get<double>() > 0);
  CHECK(j.at("ops").size() > 10);
  // 2 sequences x 4 layers x 16 cached positions (12 prompt + 4 decode steps; all inside one 8192-token chunk)
  // x K and V x 2 KV heads x head_dim 128 x 4 bytes
  CHECK(j.at("kv_cache_bytes").get<std::int64_t>() == 2 * 4 * 16 * 2 * 2 * 128 * 4);
  // Same seed, same tokens: the random checkpoint and greedy decoding are deterministic.
  const auto again = small_run({"--format", "json"});
  CHECK(nlohmann::json::parse(again.out).at("tokens") == j.at("tokens"));
  // Two ranks (TP 2 with EP 2) generate the same greedy tokens.
  const auto ranks = small_run({"--tp", "2", "--ep", "2", "--format", "json"});
  REQUIRE(ranks.code == 0);
  CHECK(nlohmann::json::parse(ranks.out).at("tokens") == j.at("tokens"));
  CHECK(nlohmann::json::parse(ranks.out).at("kv_cache_bytes") == j.at("kv_cache_bytes"));  // one KV head per rank
  CHECK(j.at("activations") == "fp32");
  // --bf16-activations: AMX where the CPU has it (the 24-token prefill has more rows than the GEMV), else unchanged
  const auto bf16 = small_run({"--bf16-activations", "--format", "json"});
  REQUIRE(bf16.code == 0);
  const auto jb = nlohmann::json::parse(bf16.out);
  const bool amx = kernels::amx_bf16_active({kernels::best_cpu_path(), nullptr, true});
  CHECK(jb.at("activations") == (amx ? "bf16-amx" : "fp32"));
  REQUIRE(jb.at("tokens").size() == 2);
  CHECK(jb.at("tokens").at(1).size() == 5);
  if (!amx) CHECK(jb.at("tokens") == j.at("tokens"));
  // Two pipeline stages of TP 2 (4 ranks) generate the same tokens; 3 stages do not divide 4 layers.
  const auto pp = small_run({"--pp", "2", "--tp", "2", "--format", "json"});
  REQUIRE(pp.code == 0);
  CHECK(nlohmann::json::parse(pp.out).at("tokens") == j.at("tokens"));
  CHECK(nlohmann::json::parse(pp.out).at("kv_cache_bytes") == j.at("kv_cache_bytes"));
  const auto bad_pp = small_run({"--pp", "3"});
  CHECK(bad_pp.code == 2);
  CHECK(bad_pp.err.find("--pp 3 does not divide the 4 layers") != std::string::npos);
  // Two attention replicas of TP 2 (one sequence each) with the experts over all four ranks: the same tokens.
  const auto replicas = small_run({"--tp", "2", "--dp", "2", "--ep", "4", "--format", "json"});
  REQUIRE(replicas.code == 0);
  CHECK(nlohmann::json::parse(replicas.out).at("tokens") == j.at("tokens"));
  // The trace is an expert-load file: two MoE layers, four experts, (12 + 4) tokens x 2 sequences routed top-1.
  const auto t = nlohmann::json::parse(std::ifstream(trace));
  REQUIRE(t.at("layers").size() == 2);
  int routed = 0;
  for (const auto& c : t.at("layers").at(0)) routed += c.get<int>();
  CHECK(routed == 2 * (12 + 4));
  // The simulator prices the same shrunk model with the measured routing.
  const auto sim = run({"simulate", "--model", (dir / "config.json").string(), "--count", "1", "--expert-loads",
                        trace.string(), "--input", "64", "--output", "8", "--concurrency", "1", "--num-requests", "2",
                        "--format", "json"});
  REQUIRE(sim.code == 0);
  CHECK(nlohmann::json::parse(sim.out).at("routing").get<std::string>().find("measured") != std::string::npos);
  std::filesystem::remove_all(dir);
  std::filesystem::remove(trace);
}

TEST_CASE("simulate --profile prices from a measured profile with error bars, corrupt or oversized input exits 2") {
  const auto fixture = std::string(MOEPLAN_TEST_FIXTURES) + "/profiles/two-core-epyc.yaml";
  const auto r = run({"simulate", "--model", "llama3.1-8b", "--profile", fixture, "--precision", "bf16", "--input", "128",
                      "--output", "16", "--concurrency", "1", "--num-requests", "2", "--format", "json"});
  REQUIRE(r.code == 0);
  const auto j = nlohmann::json::parse(r.out);
  CHECK(j.at("profile") == fixture);
  const auto& bars = j.at("error_bars");
  const double tpot = j.at("tpot_ms").at("mean").get<double>();
  CHECK(bars.at("tpot_ms_mean")[0].get<double>() <= tpot);
  CHECK(bars.at("tpot_ms_mean")[1].get<double>() >= tpot);
  CHECK(bars.at("ttft_ms_mean")[1].get<double>() > bars.at("ttft_ms_mean")[0].get<double>());
  // An 8B BF16 model streams 16 GB per decode step: on a host that reads ~20 GB/s that is about a second, not ms.
  CHECK(tpot > 300);

  // A corrupt profile and a validation grid that cannot fit in memory are refused before anything runs.
  const auto bad = test::temp_path("moeplan_cli_bad_profile.yaml");
  std::ofstream(bad) << "host: x\nlayouts: [1, 2\n";
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"simulate", "--model", "llama3.1-8b", "--profile", bad.string()},
        std::vector<std::string>{"validate", "--device", "cpu", "--profile", bad.string()},
        std::vector<std::string>{"validate", "--device", "cpu", "--quick", "--profile", fixture, "--batches", "100000",
                                 "--contexts", "100000", "--no-write"}}) {
    const auto e = run(args);
    INFO(args[0] << " " << args.back());
    CHECK(e.code == 2);
    CHECK(one_line(e.err));
  }
  // Within the --batches bound (docs/limits.md) but beyond this machine's memory.
  const auto big = run({"validate", "--device", "cpu", "--quick", "--profile", fixture, "--batches", "60000", "--contexts",
                        "100000", "--no-write"});
  CHECK(big.err.find("available") != std::string::npos);
}

TEST_CASE("plan --profile plans the measured host with error bars, without a price or with GPU options it exits 2") {
  const auto fixture = std::string(MOEPLAN_TEST_FIXTURES) + "/profiles/two-core-epyc.yaml";
  const auto r = run({"plan", "--model", "llama3.1-8b", "--profile", fixture, "--gpu-price", "0.1", "--tpot-ms", "10000",
                      "--input", "500", "--output", "200", "--format", "json"});
  REQUIRE(r.code == 0);
  const auto j = nlohmann::json::parse(r.out);
  const auto& rows = j.at("configurations");
  REQUIRE(!rows.empty());
  for (const auto& row : rows) {
    CHECK(row.at("count") == 1);
    CHECK(row.at("usd_per_hour").get<double>() == Approx(0.1));
    const auto& bars = row.at("error_bars");
    const double tpot = row.at("tpot_ms").get<double>(), tps = row.at("output_tokens_per_s").get<double>();
    CHECK(bars.at("tpot_ms")[0].get<double>() < tpot);
    CHECK(bars.at("tpot_ms")[1].get<double>() > tpot);
    CHECK(bars.at("output_tokens_per_s")[0].get<double>() < tps);
    CHECK(bars.at("output_tokens_per_s")[1].get<double>() > tps);
  }
  // The default precisions on a host are the weight formats its profile measured: never nvfp4.
  for (const auto& row : rows) CHECK(row.at("precision").get<std::string>().rfind("nvfp4", 0) != 0);
  CHECK(j.find("launch") == j.end());  // engines' launch commands are for GPUs

  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"plan", "--model", "llama3.1-8b", "--profile", fixture},
        std::vector<std::string>{"plan", "--profile", fixture, "--gpu-price", "0.1", "--gpus", "h100-sxm"},
        std::vector<std::string>{"plan", "--profile", fixture, "--gpu-price", "0.1", "--counts", "1,2"},
        std::vector<std::string>{"plan", "--host", "ddr5-desktop-2ch", "--gpu-price", "0.1"},
        std::vector<std::string>{"plan", "--host", "no-such-host", "--gpu-price", "0.1"}}) {
    const auto e = run(args);
    INFO(args[1] << " " << args[2] << " " << args.back());
    CHECK(e.code == 2);
    CHECK(one_line(e.err));
  }
  CHECK(run({"plan", "--profile", fixture}).err.find("--gpu-price") != std::string::npos);
  CHECK(run({"plan", "--host", "ddr5-desktop-2ch", "--gpu-price", "0.1"}).err.find("profile") != std::string::npos);
}

TEST_CASE("help prints usage and exits 0") {
  CHECK(run({"--help"}).code == 0);
  const auto r = run({"memory", "--help"});
  CHECK(r.code == 0);
  CHECK(r.out.find("--precision") != std::string::npos);
}

TEST_CASE("malformed config.json given as --model names file and line") {
  const auto dir = test::temp_path("moeplan_cli_test");
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "config.json") << "{\n \"model_type\": \"llama\",\n \"hidden_size\": ,\n}\n";
  const auto r = run({"memory", "--model", (dir / "config.json").string()});
  CHECK(r.code == 2);
  CHECK(r.err.find("config.json:3:") != std::string::npos);
}

TEST_CASE("output file -o writes the file atomically and writes nothing on error") {
  const auto dir = test::temp_path("moeplan_cli_out");
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const auto file = dir / "mem.json";
  CHECK(run({"memory", "--precision", "fp8", "--format", "json", "-o", file.string()}).code == 0);
  CHECK(nlohmann::json::parse(std::ifstream(file))["fits"] == true);
  const auto bad = dir / "bad.json";
  CHECK(run({"memory", "--tp", "3", "--format", "json", "-o", bad.string()}).code == 2);
  CHECK_FALSE(std::filesystem::exists(bad));
  CHECK(std::distance(std::filesystem::directory_iterator(dir), std::filesystem::directory_iterator{}) == 1);
}

TEST_CASE("options can come from a YAML config file, the command line wins") {
  const auto file = test::temp_path("moeplan_opts.yaml");
  std::ofstream(file) << "model: llama4-maverick\ngpu: h200-sxm\nprecision: bf16\nformat: json\n";
  const auto r = run({"memory", "--config-file", file.string(), "--count", "8"});
  REQUIRE(r.code == 0);
  const auto j = nlohmann::json::parse(r.out);
  CHECK(j["device"] == "h200-sxm");
  CHECK(j["fits"] == true);
  const auto r2 = run({"memory", "--config-file", file.string(), "--gpu", "h100-sxm"});
  CHECK(nlohmann::json::parse(r2.out)["fits"] == false);
  // An option that takes several values takes a YAML list; a one-value option does not (bad-input table).
  const auto ids = test::temp_path("moeplan_opts_list.yaml");
  std::ofstream(ids) << "published: true\nid: [DN-01, DN-02]\nformat: json\n";
  const auto r3 = run({"validate", "--config-file", ids.string()});
  REQUIRE(r3.code == 0);
  CHECK(nlohmann::json::parse(r3.out)["rows"].size() == 2);
}

TEST_CASE("models and gpus list in every format") {
  for (const char* f : {"table", "md", "json", "csv"}) {
    INFO(f);
    CHECK(run({"models", "--format", f}).code == 0);
    CHECK(run({"gpus", "--format", f}).code == 0);
  }
  const auto j = nlohmann::json::parse(run({"models", "--format", "json"}).out);
  CHECK(j.size() == 12);
  const auto local = run({"gpus", "--local", "--format", "json"});
  CHECK(local.code == 0);
  CHECK(nlohmann::json::parse(local.out).contains("gpus"));
}

TEST_CASE("moeplan alone: the usage on stdout, one line on stderr naming what is missing, exit 2") {
  const auto r = run({});
  CHECK(r.code == 2);
  CHECK(r.out.find("usage: moeplan COMMAND") != std::string::npos);
  CHECK(one_line(r.err));
  CHECK(r.err.find("no command given") != std::string::npos);
  const auto h = run({"--help"});
  CHECK(h.code == 0);
  CHECK(h.err.empty());
}

TEST_CASE("price options: bad --gpu-price, providers and filters exit 2 naming the input") {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"plan", "--gpu-price", "h100-sx=2"}, "unknown GPU 'h100-sx'"},
      {{"plan", "--gpu-price", "h100-sxm=0"}, "'h100-sxm=0'"},
      {{"plan", "--gpu-price", "h100-sxm=nan"}, "'h100-sxm=nan'"},
      {{"plan", "--gpu-price", "b200=250"}, "at most 100"},
      {{"plan", "--gpu-price", "h100-sxm=2,h100=3"}, "h100-sxm is given twice"},
      {{"compare-api", "--gpu-price=-1"}, "'-1'"},
      {{"plan", "--exclude-provider", "nocloud"}, "unknown provider 'nocloud'"},
      {{"plan", "--price-source", "RunPod,AWS"}, "one provider"},
      {{"plan", "--gpus", "rtx-pro-6000", "--exclude-provider", "RunPod,packet.ai,AWS"}, "no on-demand price"},
      {{"compare-api", "--gpus", "mi300x", "--price-source", "packet.ai"}, "--price-source packet.ai"},
      {{"plan", "--host", "epyc-vm-2c", "--gpu-price", "h100-sxm=2"}, "one USD per host-hour"},
  };
  for (const auto& [args, says] : cases) {
    INFO(args[0] << " " << args[1] << " ...: " << says);
    const auto r = run(args);
    CHECK(r.code == 2);
    CHECK(one_line(r.err));
    CHECK(r.err.find(says) != std::string::npos);
  }
}

TEST_CASE("plan states its price rule, marks each row's price confidence and honours per-GPU overrides") {
  const auto r = run({"plan", "--model", "llama3.1-8b", "--gpus", "h100-sxm,rtx-pro-6000", "--counts", "1",
                      "--precisions", "bf16", "--engine", "generic", "--top", "2", "--gpu-price", "h100=1.0"});
  REQUIRE(r.code == 0);
  CHECK(r.out.find("GPU prices: per GPU the cheapest on-demand row") != std::string::npos);
  CHECK(r.out.find("--gpu-price h100-sxm $1.00") != std::string::npos);
  const auto j = run({"plan", "--model", "llama3.1-8b", "--gpus", "h100-sxm,rtx-pro-6000", "--counts", "1",
                      "--precisions", "bf16", "--engine", "generic", "--top", "2", "--gpu-price", "h100=1.0",
                      "--format", "json"});
  REQUIRE(j.code == 0);
  const auto pj = nlohmann::json::parse(j.out);
  CHECK(pj["gpu_price_rule"].get<std::string>().find("--gpu-price h100-sxm $1.00") != std::string::npos);
  int seen = 0;
  for (const auto& row : pj["configurations"]) {
    if (row["gpu"] == "h100-sxm") {
      CHECK(row["usd_per_gpu_hour"] == 1.0);
      CHECK(row["price_confidence"] == "given");
    } else {
      CHECK(row["price_confidence"] == "low");  // RunPod's row via deploybase.ai; packet.ai's is flagged
      CHECK(row["usd_per_gpu_hour"] == 1.57);
      CHECK(row["price_flags"].empty());
    }
    ++seen;
  }
  CHECK(seen >= 2);
  // A provider picked by name is used even where its row is flagged, and the row says so.
  const auto p = run({"plan", "--model", "llama3.1-8b", "--gpus", "rtx-pro-6000", "--counts", "1", "--precisions", "bf16",
                      "--engine", "generic", "--top", "1", "--price-source", "packet.ai", "--format", "json"});
  REQUIRE(p.code == 0);
  const auto row = nlohmann::json::parse(p.out)["configurations"][0];
  CHECK(row["usd_per_gpu_hour"] == 0.66);
  CHECK(row["price_confidence"] == "low");
  CHECK(row["price_flags"].size() == 1);  // dated before the card's launch
}
