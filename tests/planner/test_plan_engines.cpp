// The planner over serving engines: rows carry the engine they were planned for, only on GPUs it runs on, the fast
// sweep agrees with the op-by-op reference, and launch commands follow the row's engine.
#include <catch2/catch.hpp>

#include <set>
#include <sstream>

#include "common/progress.hpp"
#include "gpu_db/engines.hpp"
#include "planner/plan.hpp"
#include "planner/serving_compare.hpp"
#include "tests/test_util.hpp"

using namespace moeplan;
using namespace moeplan::planner;

namespace {
struct Fixture {
  gpu_db::Database db = gpu_db::Database::load(test::data());
  gpu_db::EngineTable engines = gpu_db::EngineTable::load(test::data() / "engines.yaml");
  model::ModelConfig maverick = test::load("llama4-maverick");
  PlanRequest request() {
    PlanRequest r;
    r.model = &maverick;
    r.precisions = &test::precisions();
    r.precision_specs = {"bf16", "fp8", "nvfp4"};
    r.gpus = {&db.gpu("h200-sxm"), &db.gpu("b200"), &db.gpu("mi300x")};
    r.counts = {4, 8, 16};
    r.tpot_ms = 50;
    for (const auto& e : engines.engines())
      if (!e.generic()) r.engines.push_back(&e);
    r.engine_max_batch = r.engine_max_num_batched_tokens = r.engine_kv_dtype = true;
    return r;
  }
};
}  // namespace

TEST_CASE_METHOD(Fixture, "plan rows carry their engine, and only engines that run on the row's GPU") {
  const auto res = plan(request(), db);
  REQUIRE(!res.rows.empty());
  std::set<std::string> seen;
  bool amd = false;
  for (const auto& row : res.rows) {
    REQUIRE(row.engine != nullptr);
    CHECK(row.engine->runs_on(*row.gpu));
    CHECK_FALSE((row.engine->name == "trtllm" && row.gpu->vendor == "amd"));
    seen.insert(row.engine->name);
    amd = amd || row.gpu->vendor == "amd";
    if (row.engine->name == "llamacpp") CHECK(row.layout.ep == 1);  // no expert parallelism in llama.cpp
    if (row.engine->name == "trtllm" && row.precision.rfind("nvfp4", 0) == 0) CHECK(row.kv_dtype == "fp8");
  }
  CHECK(amd);
  CHECK(seen.count("trtllm"));
  CHECK(seen.count("vllm"));
  CHECK(seen.count("sglang"));
  // Each engine appears with its own defaults: TensorRT-LLM can batch up to 2048, llama.cpp to 4 slots.
  for (const auto& row : res.rows)
    if (row.engine->name == "llamacpp") CHECK(row.batch <= 4);
}

TEST_CASE_METHOD(Fixture, "one engine restricts the plan to it, vendor defaults give each GPU its vendor's engine") {
  auto r = request();
  r.engines = {&engines.engine("sglang")};
  const auto one = plan(r, db);
  REQUIRE(!one.rows.empty());
  for (const auto& row : one.rows) CHECK(row.engine->name == "sglang");
  auto d = request();
  d.vendor_defaults = &engines;
  const auto def = plan(d, db);
  REQUIRE(!def.rows.empty());
  for (const auto& row : def.rows) CHECK(row.engine->name == (row.gpu->vendor == "nvidia" ? "trtllm" : "vllm"));
}

TEST_CASE_METHOD(Fixture, "with engines, the fast sweep and the reference agree") {
  auto r = request();
  r.gpus = {&db.gpu("h200-sxm"), &db.gpu("mi300x")};
  const auto fast = plan(r, db);
  const auto ref = plan_op_by_op(r, db);
  CHECK(fast.configurations == ref.configurations);
  CHECK(fast.rejected == ref.rejected);
  REQUIRE(fast.rows.size() == ref.rows.size());
  for (std::size_t i = 0; i < fast.rows.size(); ++i) {
    CHECK(fast.rows[i].usd_per_m_blended_tokens == Approx(ref.rows[i].usd_per_m_blended_tokens).epsilon(1e-9));
    CHECK(fast.rows[i].batch == ref.rows[i].batch);
  }
}

TEST_CASE_METHOD(Fixture, "an engine's step overhead is in the plan's TPOT") {
  auto r = request();
  r.gpus = {&db.gpu("h200-nvl")};  // no shipped kernel tables: the two engines price the same kernels
  r.gpu_price_usd_per_hour = 2;    // (and no price data)
  r.counts = {8};
  r.precision_specs = {"fp8"};
  r.tpot_ms = 0;
  r.max_batch = 1;
  r.engine_max_batch = false;
  r.engine_kv_dtype = false;  // same KV for both
  r.engines = {&engines.engine("sglang")};
  const auto sg = plan(r, db);
  r.engines = {&engines.engine("vllm")};
  const auto vl = plan(r, db);
  REQUIRE(!sg.rows.empty());
  REQUIRE(sg.rows.size() == vl.rows.size());
  // Batch 1, the same kernels: the fastest row of each differs by vLLM's 160 us against SGLang's 10 us per step.
  double sg_min = 1e9, vl_min = 1e9;
  for (const auto& row : sg.rows) sg_min = std::min(sg_min, row.tpot_ms);
  for (const auto& row : vl.rows) vl_min = std::min(vl_min, row.tpot_ms);
  CHECK(vl_min - sg_min == Approx(0.150).margin(1e-6));
}

TEST_CASE_METHOD(Fixture, "launch commands follow the row's engine") {
  PlanRow row;
  row.gpu = &db.gpu("h200-sxm");
  row.count = 8;
  row.precision = "fp8:experts";
  row.layout = {1, 8, 1, 8};
  row.batch = 128;
  const auto path = test::data();
  row.engine = &engines.engine("sglang");
  auto cmds = launch_commands(path, "llama4-maverick", row, 9000, model::KvDtype::bf16, 0.9);
  REQUIRE(cmds.size() == 1);
  CHECK(cmds[0].engine == "SGLang");
  CHECK(cmds[0].command.find("sglang.launch_server") != std::string::npos);
  row.engine = &engines.engine("trtllm");
  cmds = launch_commands(path, "llama4-maverick", row, 9000, model::KvDtype::fp8, 0.9);
  REQUIRE(cmds.size() == 1);
  CHECK(cmds[0].command.find("trtllm-serve") != std::string::npos);
  row.engine = &engines.engine("vllm");
  cmds = launch_commands(path, "llama4-maverick", row, 9000, model::KvDtype::bf16, 0.9);
  REQUIRE(cmds.size() == 1);
  CHECK(cmds[0].command.find("vllm serve") != std::string::npos);
  row.engine = &engines.engine("llamacpp");
  row.layout = {4, 1, 1, 1};
  row.count = 4;
  row.batch = 4;
  cmds = launch_commands(path, "llama4-maverick", row, 9000, model::KvDtype::fp16, 0.9);
  REQUIRE(cmds.size() == 1);
  CHECK(cmds[0].command.find("llama-server") != std::string::npos);
  CHECK(cmds[0].command.find("-np 4") != std::string::npos);
  row.engine = nullptr;  // the plain roofline: the three engines' commands, as before
  CHECK(launch_commands(path, "llama4-maverick", row, 9000, model::KvDtype::bf16, 0.9).size() == 3);
}

TEST_CASE_METHOD(Fixture, "the plan's progress bar covers every engine's sweep and the serving checks") {
  auto r = request();  // every engine, on the GPUs each runs on
  r.gpus = {&db.gpu("h200-sxm"), &db.gpu("mi300x")};
  r.serving_rows = 2;
  std::ostringstream terminal, elsewhere;
  Progress bar("plan", 0, terminal, true), quiet("plan", 0, elsewhere, false);
  r.progress = &bar;
  const auto res = plan(r, db);
  bar.finish();
  REQUIRE(res.rows.size() >= 2);
  // One unit per GPU of each engine's sweep (h200-sxm: TensorRT-LLM, vLLM, SGLang; mi300x: vLLM, SGLang; each
  // engine's KV dtypes sweep apart) and one per serving check: all done when the plan returns.
  std::int64_t sweep_units = 0;
  for (const auto* e : r.engines)
    for (const auto* g : r.gpus) sweep_units += e->runs_on(*g) ? 1 : 0;
  CHECK(bar.done() >= sweep_units + 2);
  CHECK(terminal.str().find("plan: sweep") != std::string::npos);
  CHECK(terminal.str().find("plan: serving checks") != std::string::npos);
  CHECK(terminal.str().find(std::to_string(bar.done()) + "/" + std::to_string(bar.done())) != std::string::npos);
  // Not a terminal: the same plan draws nothing.
  r.progress = &quiet;
  const auto again = plan(r, db);
  quiet.finish();
  CHECK(again.rows.size() == res.rows.size());
  CHECK(quiet.done() == bar.done());
  CHECK(elsewhere.str().empty());
}
