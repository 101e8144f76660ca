// The option groups commands share (app/option_groups.hpp): one list parser, one integer parser, one --kv-mode
// parser, one --gpus list, and the same options with the same defaults in every command that takes them.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "app/cli.hpp"
#include "app/option_groups.hpp"
#include "common/error.hpp"
#include "common/files.hpp"
#include "gpu_db/gpu_db.hpp"
#include "tests/app/cli_run.hpp"

using namespace moeplan;

TEST_CASE("split_list trims blanks and drops empty items") {
  CHECK(app::split_list(" a, b,,c ,") == std::vector<std::string>{"a", "b", "c"});
  CHECK(app::split_list("").empty());
  CHECK(app::split_list(" , ").empty());
}

TEST_CASE("parse_integer reads a whole number and nothing else") {
  CHECK(app::parse_integer("12") == 12);
  CHECK(app::parse_integer("-3") == -3);
  CHECK(app::parse_integer("+4") == 4);
  CHECK(app::parse_integer("9223372036854775807") == INT64_MAX);
  for (const char* bad : {"", "1.5", "12x", "x12", "1e3", "9223372036854775808", "99999999999999999999"}) {
    INFO(bad);
    CHECK_FALSE(app::parse_integer(bad).has_value());
  }
}

TEST_CASE("parse_kv_mode: model-aware or full-length, anything else names --kv-mode") {
  CHECK(app::parse_kv_mode("model-aware") == model::KvMode::model_aware);
  CHECK(app::parse_kv_mode("full-length") == model::KvMode::full_length);
  CHECK_THROWS_WITH(app::parse_kv_mode("sideways"), Catch::Contains("--kv-mode 'sideways'"));
}

TEST_CASE("gpu_list names each GPU once, aliases included, and refuses an empty list") {
  const auto db = gpu_db::Database::load(data_dir());
  const auto gpus = app::gpu_list("h100-sxm, h100,b200,h100-sxm5", db);
  REQUIRE(gpus.size() == 2);
  CHECK(gpus[0]->name == "h100-sxm");
  CHECK(gpus[1]->name == "b200");
  CHECK_THROWS_AS(app::gpu_list(" , ", db), InputError);
  CHECK_THROWS_WITH(app::gpu_list("", db), Catch::Contains("--gpus is empty"));
}

namespace {
// --help text with boost's line wrapping undone: every run of blanks and newlines as one blank.
std::string help_text(const std::string& command) {
  const auto r = test::run({command, "--help"});
  REQUIRE(r.code == 0);
  std::string flat;
  for (const char c : r.out)
    if (!(c == ' ' || c == '\n') || (!flat.empty() && flat.back() != ' ')) flat += c == '\n' ? ' ' : c;
  return flat;
}
}  // namespace

TEST_CASE("commands that share an option group show the same option, default and help") {
  const std::vector<std::string> model_commands = {"memory", "simulate", "plan",     "compare-api", "fit-matrix",
                                                   "hosts",  "claims",   "run",      "validate",    "calibrate"};
  for (const auto& command : model_commands) {
    INFO(command);
    CHECK_THAT(help_text(command), Catch::Contains("--model arg (=llama4-maverick)") &&
                                       Catch::Contains("built-in model or path to config.json"));
  }
  // The commands whose --model applies to one mode say which.
  CHECK_THAT(help_text("validate"), Catch::Contains("--device: built-in model or path to config.json (shrunk for the grid)"));
  CHECK_THAT(help_text("calibrate"), Catch::Contains("--device cuda: whose op shapes to measure"));
  for (const std::string command : {"memory", "simulate", "fit-matrix", "hosts"}) {
    INFO(command);
    const auto r = test::run({command, "--help"});
    CHECK_THAT(r.out, Catch::Contains("--kv-mode arg (=model-aware)") &&
                          Catch::Contains("full-length (every layer keeps all)") &&
                          Catch::Contains("--gpu-memory-utilization arg (=0.90"));
  }
  for (const std::string command : {"memory", "simulate", "plan", "fit-matrix"}) {
    INFO(command);
    CHECK_THAT(test::run({command, "--help"}).out, Catch::Contains("--max-num-batched-tokens arg (=8192)"));
  }
  CHECK_THAT(test::run({"hosts", "--help"}).out, Catch::Contains("(default: llama.cpp's f16)"));
}

TEST_CASE("fit-matrix --gpus names each GPU once, as plan does") {
  const auto once = test::run({"fit-matrix", "--gpus", "h100-sxm", "--precisions", "fp8", "--format", "csv"});
  const auto twice = test::run({"fit-matrix", "--gpus", "h100-sxm,h100", "--precisions", "fp8", "--format", "csv"});
  REQUIRE(once.code == 0);
  REQUIRE(twice.code == 0);
  CHECK(twice.out == once.out);
  const auto none = test::run({"fit-matrix", "--gpus", ","});
  CHECK(none.code == app::kExitBadInput);
  CHECK_THAT(none.err, Catch::Contains("--gpus is empty"));
}

TEST_CASE("the one table of limits bounds --max-gpus and --max-concurrency") {
  const auto gpus = test::run({"fit-matrix", "--max-gpus", "5000"});
  CHECK(gpus.code == app::kExitBadInput);
  CHECK_THAT(gpus.err, Catch::Contains("--max-gpus 5000 is out of range: use 1..4096 GPUs"));
  const auto sweep = test::run({"memory", "--sweep", "concurrency", "--max-concurrency", "0"});
  CHECK(sweep.code == app::kExitBadInput);
  CHECK_THAT(sweep.err, Catch::Contains("--max-concurrency 0 is out of range"));
}
