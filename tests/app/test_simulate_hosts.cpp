// simulate on CPU / unified-memory hosts and with one-GPU offloading: which compute figure prices a host, that batch-1
// MoE decode on a host is memory-bound at llama.cpp's measured bandwidth share, GPU and host memory reported apart,
// and bad host options refused with one line.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cmath>
#include <sstream>

#include "app/cli.hpp"
#include "tests/app/cli_run.hpp"
#include "common/files.hpp"
#include "gpu_db/gpu_db.hpp"

using namespace moeplan;
using nlohmann::json;

namespace {
using test::one_line;
using test::run;

// Maverick Q4_K_M on a 12-channel DDR5-6400 server given only by its RAM and bandwidth (the command).
std::vector<std::string> maverick_on_ram(std::vector<std::string> extra) {
  std::vector<std::string> a = {"simulate", "--model", "llama4-maverick", "--ram-gb", "768", "--mem-bandwidth-gbps", "614",
                                "--precision", "q4_k_m", "--input", "128", "--output", "16", "--concurrency", "1",
                                "--num-requests", "1", "--breakdown", "--format", "json"};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

bool gemm_like(const json& op) {
  const auto k = op.at("kind").get<std::string>();
  return k == "gemm" || k == "expert_gemm" || k == "lm_head";
}

// Every number in a JSON document is finite (NaN and inf are written as null, which is not a number) and no
// "*_bytes" field is negative.
void check_sizes(const json& j, const std::string& key = "") {
  if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it) check_sizes(it.value(), it.key());
  } else if (j.is_array()) {
    for (const auto& v : j) check_sizes(v, key);
  } else if (j.is_null()) {
    FAIL_CHECK("null (NaN or inf) at " << key);
  } else if (j.is_number()) {
    const double v = j.get<double>();
    INFO(key << " = " << v);
    CHECK(std::isfinite(v));
    if (key.size() > 6 && key.compare(key.size() - 6, 6, "_bytes") == 0) CHECK(v >= 0);
  }
}
}  // namespace

TEST_CASE("host decode of a MoE model at batch 1 is memory-bound at llama.cpp's measured bandwidth share") {
  const auto db = gpu_db::Database::load(data_dir());
  const double share = db.host_defaults().cpu_decode_bandwidth_share;
  REQUIRE(share > 0.3);
  REQUIRE(share < 0.9);
  const auto r = run(maverick_on_ram({}));
  REQUIRE(r.code == 0);
  const json j = json::parse(r.out);
  const json& dec = j.at("breakdown").at("decode");
  REQUIRE(dec.at("batch") == 1);
  // Each weight-streaming op: bound by memory, and its time is bytes / (bandwidth x share) plus the fixed per-op cost.
  double bytes = 0, memory_us = 0, gemm_us = 0, overhead_us = 0;
  int ops = 0;
  for (const auto& op : dec.at("ops")) {
    if (!gemm_like(op)) continue;
    INFO(op.at("name").get<std::string>() << " " << op.at("layer_class").dump());
    CHECK(op.at("bound") != "compute");  // memory, or the fixed per-op cost for the tiny router GEMM
    if (op.at("weight_bytes").get<double>() > 1e7) CHECK(op.at("bound") == "memory");
    const double repeat = op.at("repeat").get<double>();
    const double b = repeat * (op.at("weight_bytes").get<double>() + op.at("act_bytes").get<double>());
    CHECK(op.at("memory_us").get<double>() == Approx(b / (614e9 * share) * 1e6).epsilon(0.01));
    bytes += b;
    memory_us += op.at("memory_us").get<double>();
    gemm_us += op.at("time_us").get<double>();
    overhead_us += repeat * 5.0;  // host op overhead (docs/simulator.md)
    ++ops;
  }
  REQUIRE(ops > 10);
  // The routed experts read are the active ones only: one expert per MoE layer at batch 1 (top-1), not all 128.
  CHECK(bytes < 20e9);
  CHECK(gemm_us - overhead_us == Approx(bytes / (614e9 * share) * 1e6).epsilon(0.01));
  CHECK(memory_us == Approx(bytes / (614e9 * share) * 1e6).epsilon(0.01));
  // The assumption is printed: which server's cores and clock priced the compute, and where the share comes from.
  const auto table = run({"simulate", "--model", "llama4-maverick", "--ram-gb", "768", "--mem-bandwidth-gbps", "614",
                          "--precision", "q4_k_m", "--input", "128", "--output", "16", "--concurrency", "1", "--num-requests", "1"});
  REQUIRE(table.code == 0);
  CHECK(table.out.find("host compute: " + std::to_string(db.host(db.host_defaults().cpu_host).cores) + " cores (assumed: " +
                       db.host_defaults().cpu_host) != std::string::npos);
  CHECK(table.out.find("llama.cpp's decode share") != std::string::npos);
}

TEST_CASE("an absurdly small --host-tflops makes host decode compute-bound and --host-cores is honoured") {
  const auto r = run(maverick_on_ram({"--host-tflops", "0.001"}));
  REQUIRE(r.code == 0);
  const json j = json::parse(r.out);
  int compute = 0;
  for (const auto& op : j.at("breakdown").at("decode").at("ops"))
    if (gemm_like(op)) {
      INFO(op.at("name").get<std::string>());
      CHECK(op.at("bound") == "compute");
      ++compute;
    }
  CHECK(compute > 10);
  // Fewer cores, slower prefill: the prefill step is compute-bound on a CPU.
  const auto many = run(maverick_on_ram({"--host-cores", "128"}));
  const auto few = run(maverick_on_ram({"--host-cores", "8"}));
  REQUIRE(many.code == 0);
  REQUIRE(few.code == 0);
  const double t_many = json::parse(many.out).at("breakdown").at("prefill").at("step_ms").get<double>();
  const double t_few = json::parse(few.out).at("breakdown").at("prefill").at("step_ms").get<double>();
  CHECK(t_few > 8 * t_many);
}

TEST_CASE("a unified-memory host is priced on its integrated GPU, as llama.cpp runs it") {
  auto args = [](std::vector<std::string> extra) {
    std::vector<std::string> a = {"simulate", "--model", "llama4-maverick", "--host", "apple-m3-ultra", "--precision", "q4_k_m",
                                  "--input", "512", "--output", "16", "--concurrency", "1", "--num-requests", "1"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  const auto gpu = run(args({}));
  const auto cpu = run(args({"--host-cores", "32"}));  // the same host priced on its 32 CPU cores
  REQUIRE(gpu.code == 0);
  REQUIRE(cpu.code == 0);
  CHECK(gpu.out.find("integrated GPU") != std::string::npos);
  CHECK(gpu.out.find("apple-m3-ultra's integrated GPU") != std::string::npos);
  CHECK(cpu.out.find("integrated GPU") == std::string::npos);
  // Dense prefill GEMMs run at the GPU's FP16 rate, far above the 32 CPU cores' (28.6 vs 2.8 TFLOP/s): a dense model's
  // 512-token prompt is much faster on the GPU figure.
  auto dense = [](std::vector<std::string> extra) {
    std::vector<std::string> a = {"simulate", "--model", "llama3.1-8b", "--host", "apple-m3-ultra", "--precision", "q4_k_m",
                                  "--input", "512", "--output", "16", "--concurrency", "1", "--num-requests", "1",
                                  "--format", "json"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  const auto gj = json::parse(run(dense({})).out);
  const auto cj = json::parse(run(dense({"--host-cores", "32"})).out);
  CHECK(gj.at("ttft_ms").at("mean").get<double>() < 0.25 * cj.at("ttft_ms").at("mean").get<double>());
  // Every unified host in the data has a GPU figure; a GB10 prices bf16 ops (its datasheet lists FP4 only).
  const auto db = gpu_db::Database::load(data_dir());
  for (const auto& h : db.hosts())
    if (h.kind == "unified") CHECK(h.gpu_peak_flops_dense.count("bf16"));
  const auto spark = run({"simulate", "--model", "gpt-oss-120b", "--host", "nvidia-dgx-spark", "--input", "256", "--output", "16",
                          "--concurrency", "1", "--num-requests", "1"});
  CHECK(spark.code == 0);
}

TEST_CASE("offloading reports GPU and host memory separately, never a negative free figure") {
  const auto experts = run({"simulate", "--model", "llama4-scout", "--gpu", "rtx-4090", "--count", "1", "--precision", "q4_k_m",
                            "--offload-experts", "--offload-host", "ddr5-desktop-2ch", "--input", "128", "--output", "16",
                            "--concurrency", "1", "--num-requests", "1", "--breakdown", "--format", "json"});
  REQUIRE(experts.code == 0);
  const json e = json::parse(experts.out);
  check_sizes(e);
  REQUIRE(e.contains("gpu_memory"));
  REQUIRE(e.contains("host_memory"));
  const json& g = e.at("gpu_memory");
  const json& h = e.at("host_memory");
  CHECK(g.at("device") == "rtx-4090");
  CHECK(h.at("device") == "ddr5-desktop-2ch");
  CHECK(g.at("fits") == true);
  CHECK(h.at("fits") == true);
  // Scout's routed experts (~95 % of its weights) live in host RAM; attention and its KV stay on the GPU.
  CHECK(h.at("weights_bytes").get<double>() > 5 * g.at("weights_bytes").get<double>());
  CHECK(g.at("weights_bytes").get<double>() < g.at("usable_bytes").get<double>());
  CHECK(h.at("kv_bytes").get<double>() == 0);
  CHECK(e.at("weights_bytes_per_gpu").get<double>() == Approx(g.at("weights_bytes").get<double>()));
  const auto table = run({"simulate", "--model", "llama4-scout", "--gpu", "rtx-4090", "--count", "1", "--precision", "q4_k_m",
                          "--offload-experts", "--input", "128", "--output", "16", "--concurrency", "1", "--num-requests", "1"});
  REQUIRE(table.code == 0);
  CHECK(table.out.find("GPU memory at the peak batch (rtx-4090)") != std::string::npos);
  CHECK(table.out.find("host memory at the peak batch (ddr5-desktop-2ch)") != std::string::npos);
  CHECK(table.out.find("free -") == std::string::npos);

  // --gpu-layers: layers [N, L) and their KV in host RAM.
  const auto layers = run({"simulate", "--model", "llama4-maverick", "--gpu", "h100-sxm", "--count", "1", "--precision", "q4_k_m",
                           "--gpu-layers", "8", "--offload-host", "epyc-turin-12ch-ddr5-6000", "--input", "1024", "--output", "16",
                           "--concurrency", "1", "--num-requests", "1", "--format", "json"});
  REQUIRE(layers.code == 0);
  const json l = json::parse(layers.out);
  check_sizes(l);
  CHECK(l.at("host_memory").at("kv_bytes").get<double>() > l.at("gpu_memory").at("kv_bytes").get<double>());
  CHECK(l.at("gpu_memory").at("free_bytes").get<double>() > 0);

  // Too big: 48 Maverick layers do not fit on a 24 GB GPU, and its experts do not fit in a 192 GB desktop.
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"simulate", "--model", "llama4-maverick", "--gpu", "rtx-4090", "--count", "1", "--precision", "q4_k_m",
            "--gpu-layers", "48", "--offload-host", "epyc-turin-12ch-ddr5-6000"},
           {"simulate", "--model", "llama4-maverick", "--gpu", "rtx-4090", "--count", "1", "--precision", "q4_k_m",
            "--offload-experts", "--offload-host", "ddr5-desktop-2ch"}}) {
    const auto r = run(args);
    INFO(r.err);
    CHECK(r.code == 2);
    CHECK(one_line(r.err));
    CHECK(r.err.find("does not fit") != std::string::npos);
  }
}

TEST_CASE("bad host numbers exit 2 with one line naming the option") {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"--host-cores", "0"},          {"--host-cores", "-4"},          {"--host-cores", "many"},
      {"--host-cores", "2.5"},        {"--ram-gb", "0"},               {"--ram-gb", "nan"},
      {"--ram-gb", "lots"},           {"--mem-bandwidth-gbps", "-1"},  {"--mem-bandwidth-gbps", "inf"},
      {"--mem-bandwidth-gbps", "x"},  {"--host-tflops", "0"},          {"--host-tflops", "nan"},
      {"--host-tflops", "fast"}};
  for (const auto& [option, value] : bad) {
    std::vector<std::string> args = {"simulate", "--model", "qwen3-30b-a3b", "--ram-gb", "64", "--mem-bandwidth-gbps", "100",
                                     "--precision", "q4_k_m"};
    bool replaced = false;
    for (std::size_t i = 0; i + 1 < args.size(); ++i)
      if (args[i] == option) {
        args[i + 1] = value;
        replaced = true;
      }
    if (!replaced) {
      args.push_back(option);
      args.push_back(value);
    }
    INFO(option << " " << value);
    const auto r = run(args);
    CHECK(r.code == 2);
    CHECK(one_line(r.err));
    CHECK(r.err.find(option) != std::string::npos);
  }
  // --host-cores describes a host: with GPUs and no offloading it is refused too.
  const auto r = run({"simulate", "--host-cores", "16"});
  CHECK(r.code == 2);
  CHECK(one_line(r.err));
}
