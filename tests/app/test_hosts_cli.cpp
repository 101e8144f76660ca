// `moeplan hosts`, `moeplan memory --sweep` and the monthly bills of compare-api in-process: JSON fields, every
// format, and exit code 2 with one line naming the value on bad input.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cmath>

#include "tests/app/cli_run.hpp"

using namespace moeplan;

namespace {
using test::one_line;
using test::run;
}  // namespace

TEST_CASE("hosts --format json: every hosts.yaml host x precision, then the two offload GPUs") {
  const auto r = run({"hosts", "--model", "gpt-oss-120b", "--precisions", "mxfp4", "--format", "json"});
  REQUIRE(r.code == 0);
  const auto j = nlohmann::json::parse(r.out);
  CHECK(j["context_tokens"] == 8192);
  CHECK(j["prompt_tokens"] == 8064);
  CHECK(j["engine"] == "llamacpp");
  std::size_t ram = 0, offload = 0;
  for (const auto& row : j["rows"]) {
    for (const char* key : {"device", "kind", "precision", "ram_needed_bytes", "ram_free_bytes", "fits", "recommended_ram_gb",
                            "decode_tokens_per_s", "prompt_tokens_per_s"})
      CHECK(row.contains(key));
    CHECK(row["ram_free_bytes"].get<double>() >= 0);
    if (row["fits"] == true) CHECK(row["decode_tokens_per_s"].get<double>() > 0);
    if (row["offload"] == true) {
      ++offload;
      CHECK(row["gpu_memory"]["free_bytes"].get<double>() >= 0);
      CHECK(row["host_memory"]["free_bytes"].get<double>() >= 0);
    } else {
      ++ram;
    }
  }
  CHECK(ram >= 15);  // data/hosts.yaml's hosts
  CHECK(offload == 2);  // rtx-4090 and rtx-5090
  // A host of the user's: --ram-gb with its bandwidth; it also holds the offloaded experts.
  const auto u = run({"hosts", "--model", "gpt-oss-120b", "--precisions", "mxfp4", "--hosts", "none", "--ram-gb", "96",
                      "--mem-bandwidth-gbps", "80", "--format", "json"});
  REQUIRE(u.code == 0);
  const auto uj = nlohmann::json::parse(u.out);
  REQUIRE(uj["rows"].size() == 3);
  CHECK(uj["rows"][0]["device"] == "host with 96 GB RAM");
  CHECK(uj["rows"][0]["ram_capacity_bytes"] == 96e9);
  CHECK(uj["rows"][1]["host_memory"]["device"] == "host with 96 GB RAM");
}

TEST_CASE("hosts: table, md and csv name the context and the recommended RAM") {
  for (const char* format : {"table", "md", "csv"}) {
    const auto r = run({"hosts", "--model", "qwen3-30b-a3b", "--hosts", "ddr5-desktop-2ch,apple-m3-max", "--context", "4096",
                        "--format", format});
    REQUIRE(r.code == 0);
    CHECK(r.out.find("ddr5-desktop-2ch") != std::string::npos);
    CHECK(r.out.find("rtx-4090 + ddr5-desktop-2ch") != std::string::npos);
    if (std::string(format) != "csv") CHECK(r.out.find("4,096 tokens of context") != std::string::npos);
  }
  const auto help = run({"hosts", "--help"});
  REQUIRE(help.code == 0);
  for (const char* s : {"--ram-gb", "--mem-bandwidth-gbps", "--offload-gpus", "--context", "--precisions"})
    CHECK(help.out.find(s) != std::string::npos);
}

TEST_CASE("hosts: bad input exits 2 with one line naming the value") {
  const auto over = run({"hosts", "--model", "qwen3-30b-a3b", "--context", "10000000"});
  CHECK(over.code == 2);
  CHECK(one_line(over.err));
  CHECK(over.err.find("10,000,000") != std::string::npos);
  const auto prec = run({"hosts", "--precisions", "q4_k_m,q5_zz"});
  CHECK(prec.code == 2);
  CHECK(one_line(prec.err));
  CHECK(prec.err.find("q5_zz") != std::string::npos);
  const auto ram = run({"hosts", "--ram-gb", "64"});
  CHECK(ram.code == 2);
  CHECK(ram.err.find("--mem-bandwidth-gbps") != std::string::npos);
  const auto gpu = run({"hosts", "--offload-gpus", "rtx-9999"});
  CHECK(gpu.code == 2);
  CHECK(gpu.err.find("rtx-9999") != std::string::npos);
}

TEST_CASE("memory --sweep context|concurrency: rows of values, columns of precisions, GPUs to fit") {
  const auto r = run({"memory", "--sweep", "context", "--precisions", "bf16,fp8", "--fit-gpu", "h100-sxm", "--format", "json"});
  REQUIRE(r.code == 0);
  const auto j = nlohmann::json::parse(r.out);
  REQUIRE(j["rows"].size() == 11);  // 1k .. 1M for Maverick
  CHECK(j["rows"][10]["context_tokens"] == 1048576);
  CHECK(j["rows"][3]["cells"][0]["gpus_to_fit"] == 16);
  CHECK(j["rows"][3]["cells"][1]["gpus_to_fit"] == 8);
  const auto c = run({"memory", "--sweep", "concurrency", "--max-concurrency", "64", "--format", "csv"});
  REQUIRE(c.code == 0);
  CHECK(c.out.find("concurrency,") == 0);
  CHECK(c.out.find("\n64,") != std::string::npos);
  const auto bad = run({"memory", "--sweep", "batch"});
  CHECK(bad.code == 2);
  CHECK(bad.err.find("batch") != std::string::npos);
  const auto alone = run({"memory", "--precisions", "bf16"});
  CHECK(alone.code == 2);
  CHECK(one_line(alone.err));
}

TEST_CASE("compare-api --tokens-per-month: each API's bill and the self-hosted one by whole replicas") {
  const auto r = run({"compare-api", "--gpus", "h200-sxm", "--tokens-per-month", "1e9", "--format", "json"});
  REQUIRE(r.code == 0);
  const auto j = nlohmann::json::parse(r.out);
  CHECK(j["tokens_per_month"] == 1e9);
  for (const auto& a : j["api"]) {
    CHECK(a["usd_per_month"].get<double>() == Approx(1e3 * a["usd_per_m_blended_tokens"].get<double>()));
    // 1000 requests of 1000 + 1000 tokens = 2 M tokens.
    CHECK(a["usd_per_1000_requests"].get<double>() == Approx(2 * a["usd_per_m_blended_tokens"].get<double>()));
  }
  const auto& self = j["self_month"];
  const double capacity = j["self_capacity_tokens_per_month"].get<double>();
  CHECK(self["replicas"] == std::max(1, static_cast<int>(std::ceil(1e9 / capacity))));
  CHECK(self["usd"].get<double>() == Approx(self["replicas"].get<int>() * j["self_usd_per_month"].get<double>()));
  CHECK(self["gpu_hours_needed"].get<double>() <= self["gpu_hours_billed"].get<double>());
  const auto t = run({"compare-api", "--gpus", "h200-sxm", "--tokens-per-month", "1e9"});
  REQUIRE(t.code == 0);
  CHECK(t.out.find("$/month") != std::string::npos);
  CHECK(t.out.find("rented by the month") != std::string::npos);
  for (const char* v : {"0", "-5", "nan", "inf"}) {
    const auto bad = run({"compare-api", "--gpus", "h200-sxm", std::string("--tokens-per-month=") + v});
    CHECK(bad.code == 2);
    CHECK(one_line(bad.err));
    CHECK(bad.err.find(std::string("--tokens-per-month ") + v) != std::string::npos);
  }
}
