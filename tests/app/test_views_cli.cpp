// `moeplan fit-matrix` and `moeplan claims` in-process: JSON fields, help text, exit code 2 with one line on bad input.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "app/cli.hpp"
#include "tests/app/cli_run.hpp"
#include "tests/test_util.hpp"

using namespace moeplan;

namespace {
using test::one_line;
using test::run;
}  // namespace

TEST_CASE("fit-matrix --format json: Maverick BF16 on H100 SXM takes 16 GPUs on two nodes") {
  const auto r = run({"fit-matrix", "--model", "llama4-maverick", "--gpus", "h100-sxm,h200-sxm", "--precisions",
                      "bf16,fp8", "--format", "json"});
  REQUIRE(r.code == 0);
  const auto j = nlohmann::json::parse(r.out);
  CHECK(j["context_tokens"] == 8192);
  CHECK(j["concurrency"] == 1);
  CHECK(j["headroom_bounds"].size() == 5);
  REQUIRE(j["rows"].size() == 4);
  const auto& bf16 = j["rows"][0];
  CHECK(bf16["gpu"] == "h100-sxm");
  CHECK(bf16["precision"] == "bf16");
  CHECK(bf16["fits"] == true);
  CHECK(bf16["gpus"] == 16);
  CHECK(bf16["within_node"] == false);
  CHECK(bf16["nodes"] == 2);
  CHECK(bf16["pp"] == 2);
  const auto& fp8 = j["rows"][1];
  CHECK(fp8["precision"] == "fp8:experts");
  CHECK(fp8["within_node"] == true);
  for (const auto& row : j["rows"])
    for (const char* key : {"gpu", "precision", "fits", "gpus", "nodes", "within_node", "headroom", "max_concurrency",
                            "free_share", "weights_bytes", "total_bytes", "usable_bytes"})
      CHECK(row.contains(key));
}

TEST_CASE("fit-matrix: the table has one row per GPU x precision and the help names the headroom classes") {
  const auto r = run({"fit-matrix", "--gpus", "h100-sxm, b200", "--precisions", "bf16,fp8,nvfp4"});
  REQUIRE(r.code == 0);
  CHECK(r.out.find("headroom") != std::string::npos);
  std::size_t rows = 0;
  for (std::size_t at = 0; (at = r.out.find("\nh100-sxm ", at)) != std::string::npos; ++at) ++rows;
  for (std::size_t at = 0; (at = r.out.find("\nb200 ", at)) != std::string::npos; ++at) ++rows;
  CHECK(rows == 6);
  const auto help = run({"fit-matrix", "--help"});
  REQUIRE(help.code == 0);
  for (const char* s : {"very tight", "excellent", "--context", "--concurrency", "--precisions", "--gpus", "gpus_per_node"})
    CHECK(help.out.find(s) != std::string::npos);
  const auto top = run({"--help"});
  CHECK(top.out.find("fit-matrix") != std::string::npos);
  CHECK(top.out.find("claims") != std::string::npos);
}

TEST_CASE("fit-matrix -o writes the file") {
  const auto file = test::temp_path("moeplan_fit_matrix.csv");
  std::filesystem::remove(file);
  const auto r = run({"fit-matrix", "--gpus", "h100-sxm", "--format", "csv", "-o", file.string()});
  REQUIRE(r.code == 0);
  CHECK(r.out.empty());
  std::ifstream in(file);
  std::string header;
  std::getline(in, header);
  CHECK(header.find("gpu,precision,GPUs") != std::string::npos);
}

TEST_CASE("claims --format json: the 96-layer claim differs from the config's 48") {
  const auto r = run({"claims", "--model", "llama4-maverick", "--format", "json"});
  REQUIRE(r.code == 0);
  const auto j = nlohmann::json::parse(r.out);
  bool seen = false;
  for (const auto& c : j["claims"]) {
    if (c["quantity"] != "num_layers" || c["claimed"] != 96) continue;
    seen = true;
    CHECK(c["config"] == 48);
    CHECK(c["verdict"] == "differs");
    CHECK_FALSE(c["reason"].get<std::string>().empty());
    CHECK(c.contains("source"));
    CHECK(c.contains("read"));
  }
  CHECK(seen);
  CHECK(j["differing"].get<int>() >= 6);
  const auto q = run({"claims", "--quantities"});
  REQUIRE(q.code == 0);
  CHECK(q.out.find("nope_layer_interval") != std::string::npos);
}

TEST_CASE("fit-matrix and claims: bad input is one line on stderr and exit code 2") {
  const auto bad_claims = test::temp_path("moeplan_cli_bad_claims.yaml");
  std::ofstream(bad_claims) << "claims:\n  - model: llama4-maverick\n    source: x\n    read: not recorded\n"
                               "    claim: y\n    quantity: layer_count\n    value: 96\n";
  const std::vector<std::vector<std::string>> cases = {
      {"fit-matrix", "--context", "0"},
      {"fit-matrix", "--context=-5"},
      {"fit-matrix", "--concurrency", "-1"},
      {"fit-matrix", "--concurrency=-1"},
      {"fit-matrix", "--concurrency", "0"},
      {"fit-matrix", "--gpus", "no-such-gpu"},
      {"fit-matrix", "--gpus", ","},
      {"fit-matrix", "--precisions", "fp9"},
      {"fit-matrix", "--context", "2000000"},
      {"fit-matrix", "--max-gpus", "0"},
      {"fit-matrix", "--gpu-memory-utilization", "1.5"},
      {"fit-matrix", "--kv-mode", "sideways"},
      {"fit-matrix", "--model", "llama4-maverik"},
      {"claims", "--claims-file", bad_claims.string()},
      {"claims", "--claims-file", "/nonexistent/claims.yaml"},
      {"claims", "--model", "no-such-model"},
      {"claims", "--no-such-option"},
  };
  for (const auto& args : cases) {
    INFO(args[0] << " " << args[1] << " " << (args.size() > 2 ? args[2] : ""));
    const auto r = run(args);
    CHECK(r.code == app::kExitBadInput);
    CHECK(one_line(r.err));
    CHECK(r.out.empty());
  }
  const auto r = run({"claims", "--claims-file", bad_claims.string()});
  CHECK(r.err.find(bad_claims.string() + ":6: unknown quantity 'layer_count'") != std::string::npos);
  CHECK(run({"fit-matrix", "--gpus", "no-such-gpu"}).err.find("unknown GPU 'no-such-gpu'") != std::string::npos);
}
