// The command line in-process: exit codes, one-line errors, JSON fields, atomic output files.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "app/cli.hpp"

using namespace moeplan;

namespace {
struct Result {
  int code;
  std::string out, err;
};
Result run(std::vector<std::string> args) {
  std::ostringstream out, err;
  const int code = app::run(args, out, err);
  return {code, out.str(), err.str()};
}
bool one_line(const std::string& s) { return !s.empty() && s.find('\n') == s.size() - 1; }
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
  };
  for (const auto& args : cases) {
    INFO(args[0] << " " << (args.size() > 1 ? args[1] : "") << " " << (args.size() > 2 ? args[2] : ""));
    const auto r = run(args);
    CHECK(r.code == 2);
    CHECK(one_line(r.err));
    CHECK(r.err.rfind("moeplan: error: ", 0) == 0);
  }
}

TEST_CASE("help prints usage and exits 0") {
  CHECK(run({"--help"}).code == 0);
  const auto r = run({"memory", "--help"});
  CHECK(r.code == 0);
  CHECK(r.out.find("--precision") != std::string::npos);
}

TEST_CASE("malformed config.json given as --model names file and line") {
  const auto dir = std::filesystem::temp_directory_path() / "moeplan_cli_test";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "config.json") << "{\n \"model_type\": \"llama\",\n \"hidden_size\": ,\n}\n";
  const auto r = run({"memory", "--model", (dir / "config.json").string()});
  CHECK(r.code == 2);
  CHECK(r.err.find("config.json:3:") != std::string::npos);
}

TEST_CASE("output file -o writes the file atomically and writes nothing on error") {
  const auto dir = std::filesystem::temp_directory_path() / "moeplan_cli_out";
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

TEST_CASE("options can come from a YAML config file; the command line wins") {
  const auto file = std::filesystem::temp_directory_path() / "moeplan_opts.yaml";
  std::ofstream(file) << "model: llama4-maverick\ngpu: h200-sxm\nprecision: bf16\nformat: json\n";
  const auto r = run({"memory", "--config-file", file.string(), "--count", "8"});
  REQUIRE(r.code == 0);
  const auto j = nlohmann::json::parse(r.out);
  CHECK(j["device"] == "h200-sxm");
  CHECK(j["fits"] == true);
  const auto r2 = run({"memory", "--config-file", file.string(), "--gpu", "h100-sxm"});
  CHECK(nlohmann::json::parse(r2.out)["fits"] == false);
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
