// The host RAM view and the memory sweeps: RAM needed against moeplan memory's breakdown, speeds against simulate
// itself, offload rows' GPU and host shares against simulate's, the standard RAM sizes, and the sweep values.
#include <catch2/catch.hpp>

#include <cmath>

#include "common/error.hpp"
#include "gpu_db/engines.hpp"
#include "gpu_db/gpu_db.hpp"
#include "simulator/fit_matrix.hpp"
#include "simulator/engine.hpp"
#include "simulator/gpu_profile.hpp"
#include "simulator/host_view.hpp"
#include "simulator/memory_sweep.hpp"
#include "simulator/simulate.hpp"
#include "tests/test_util.hpp"

using namespace moeplan;
using namespace moeplan::simulator;

namespace {
struct Fixture {
  gpu_db::Database db = gpu_db::Database::load(test::data());
  gpu_db::EngineTable engines = gpu_db::EngineTable::load(test::data() / "engines.yaml");

  HostViewRequest request(const model::ModelConfig& m, const std::string& precision) {
    HostViewRequest q;
    q.model = &m;
    q.engine = &engines.host_default();
    q.precisions = {model::resolve_precision(precision, m, test::precisions())};
    q.ram_sizes = db.ram_sizes();
    return q;
  }
  HostTarget host(const std::string& name) { return host_target(db, test::data(), db.host(name), {}); }
  HostTarget offload_host(const std::string& name) {
    HostTarget t;
    t.host = db.host(name);
    t.hardware = llamacpp_host(db, t.host, {}, true);
    return t;
  }
  // One request of 8,064 prompt and 128 generated tokens with the llama.cpp engine, as hosts' default rows run.
  SimulateRequest single_user(const model::ModelConfig& m, const model::Precision& p, const Hardware& hw) {
    SimulateRequest s;
    s.model = &m;
    s.precision = p;
    s.layout = {1, 1, 1, 1};
    s.hardware = hw;
    s.workload.mode = LoadMode::closed;
    s.workload.concurrency = 1;
    s.workload.num_requests = 1;
    s.workload.input_tokens = 8064;
    s.workload.output_tokens = 128;
    s.limits.max_batch = 1;
    apply_engine(s, engines.host_default(), EngineChoices{true, false, false, true});
    return s;
  }
  Hardware gpu(const std::string& name) {
    Hardware hw = gpu_hardware(db, db.gpu(name));
    hw.gpu_profile = choose_gpu_profile(test::data(), name, "llamacpp", "auto", nullptr);
    return hw;
  }
};
}  // namespace

TEST_CASE_METHOD(Fixture, "recommended RAM: the smallest size of data/ram_sizes.yaml whose 95 % holds the need") {
  const auto& sizes = db.ram_sizes();
  const auto pick = [&](double bytes) { return recommended_ram_size(bytes, sizes); };
  REQUIRE(pick(0).has_value());
  CHECK(pick(0)->gb == 16);
  CHECK(pick(15.2e9)->gb == 16);   // 16 x 0.95 = 15.2 GB exactly
  CHECK(pick(15.3e9)->gb == 32);
  CHECK(pick(100e9)->gb == 128);   // 96 x 0.95 = 91.2 < 100 <= 121.6
  CHECK(pick(243e9)->gb == 256);   // 256 x 0.95 = 243.2
  CHECK(pick(244.4e9)->gb == 384); // Maverick q4_k_m at 8k on a host
  CHECK_FALSE(pick(6000e9).has_value());  // above 6,144 x 0.95
  CHECK_FALSE(pick(-1).has_value());
  CHECK_FALSE(recommended_ram_size(1e9, {}).has_value());
  // Every size says which DIMMs make it and where those are documented.
  REQUIRE(sizes.size() >= 10);
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    CHECK_FALSE(sizes[i].reason.empty());
    CHECK(sizes[i].source.rfind("https://", 0) == 0);
    if (i) CHECK(sizes[i].gb > sizes[i - 1].gb);
  }
  // The sizes are data: a file with other sizes gives other recommendations.
  CHECK(recommended_ram_size(100e9, {{64, "a", "s"}, {512, "b", "s"}})->gb == 512);
}

TEST_CASE_METHOD(Fixture, "hosts: RAM needed is moeplan memory's host breakdown, speeds are simulate's") {
  const auto m = test::load("qwen3-30b-a3b");
  HostViewRequest q = request(m, "q4_k_m");
  q.hosts = {host("ddr5-desktop-2ch")};
  const HostView v = host_view(q);
  REQUIRE(v.rows.size() == 1);
  const HostRow& row = v.rows[0];
  // The same breakdown moeplan memory --host computes, with llama.cpp's f16 KV and 512-token batch.
  MemoryRequest mr;
  mr.model = &m;
  mr.precision = q.precisions[0];
  mr.layout = {1, 1, 1, 1};
  mr.kv_dtype = model::KvDtype::fp16;
  mr.context_tokens = 8192;
  mr.concurrency = 1;
  mr.max_num_batched_tokens = 512;
  mr.capacity_bytes = db.host("ddr5-desktop-2ch").memory_bytes;
  mr.host_mode = true;
  const MemoryBreakdown b = memory_breakdown(mr);
  CHECK(row.ram_needed_bytes == Approx(b.total_bytes));
  CHECK(row.kv_dtype == "fp16");
  REQUIRE(row.fits);
  CHECK(row.ram_free_bytes == Approx(b.usable_bytes - b.total_bytes));
  REQUIRE(row.recommended.has_value());
  CHECK(row.recommended->gb * 1e9 * kHostUsableShare >= row.ram_needed_bytes);
  // Simulate itself.
  const SimulateResult direct = simulate(single_user(m, q.precisions[0], q.hosts[0].hardware));
  CHECK(row.decode_tokens_per_s == Approx(direct.serving.decode_tokens_per_s_per_user));
  CHECK(row.prompt_tokens_per_s == Approx(8064.0 / (direct.serving.ttft_ms.mean / 1e3)));
  CHECK(row.decode_tokens_per_s > 0);
  CHECK(row.prompt_tokens_per_s > row.decode_tokens_per_s);  // prefill batches 512 tokens per weight read
}

TEST_CASE_METHOD(Fixture, "hosts: a model larger than RAM does not fit, free stays 0 and nothing is simulated") {
  const auto m = test::load("llama4-maverick");
  HostViewRequest q = request(m, "q4_k_m");
  q.hosts = {host("ddr5-desktop-2ch")};  // 192 GB
  const HostRow row = host_view(q).rows.at(0);
  CHECK_FALSE(row.fits);
  CHECK(row.ram_needed_bytes > row.ram_capacity_bytes);
  CHECK(row.ram_free_bytes == 0);
  CHECK(row.decode_tokens_per_s == 0);
  CHECK(row.why_not.find("RAM") != std::string::npos);
  REQUIRE(row.recommended.has_value());
  CHECK(row.recommended->gb >= 256);
}

TEST_CASE_METHOD(Fixture, "hosts: one GPU with the experts in RAM splits memory as simulate --offload-experts does") {
  const auto m = test::load("gpt-oss-120b");
  HostViewRequest q = request(m, "mxfp4");
  q.hosts = {host("ddr5-desktop-2ch")};
  q.offload_gpus = {gpu("rtx-4090")};
  q.offload_host = offload_host("ddr5-desktop-2ch");
  const HostView v = host_view(q);
  REQUIRE(v.rows.size() == 2);
  const HostRow& row = v.rows[1];
  REQUIRE(row.offload);
  REQUIRE(row.gpu_memory);
  REQUIRE(row.host_memory);
  REQUIRE(row.fits);
  CHECK(row.decode_tokens_per_s > 0);
  // The same configuration through simulate: its GPU and host shares.
  SimulateRequest s = single_user(m, q.precisions[0], q.offload_gpus[0]);
  s.offload.experts_on_host = true;
  s.offload_host = q.offload_host->hardware;
  const SimulateResult direct = simulate(s);
  REQUIRE(direct.gpu_memory);
  CHECK(row.gpu_memory->weights_bytes == Approx(direct.gpu_memory->weights_bytes));
  CHECK(row.gpu_memory->kv_bytes == Approx(direct.gpu_memory->kv_bytes));
  CHECK(row.gpu_memory->free_bytes == Approx(direct.gpu_memory->free_bytes));
  CHECK(row.host_memory->weights_bytes == Approx(direct.host_memory->weights_bytes));
  CHECK(row.host_memory->free_bytes == Approx(direct.host_memory->free_bytes));
  CHECK(row.decode_tokens_per_s == Approx(direct.serving.decode_tokens_per_s_per_user));
  // Maverick's q4_k_m experts (about 230 GB) overflow a 192 GB desktop: no fit, host free 0, not negative.
  const auto mav = test::load("llama4-maverick");
  HostViewRequest big = request(mav, "q4_k_m");
  big.hosts = {host("ddr5-desktop-2ch")};
  big.offload_gpus = {gpu("rtx-5090")};
  big.offload_host = offload_host("ddr5-desktop-2ch");
  const HostRow over = host_view(big).rows.at(1);
  CHECK_FALSE(over.fits);
  CHECK(over.host_memory->free_bytes == 0);
  CHECK(over.host_memory->weights_bytes > over.host_memory->usable_bytes);
  CHECK(over.gpu_memory->free_bytes >= 0);
  CHECK(over.decode_tokens_per_s == 0);
}

TEST_CASE_METHOD(Fixture, "hosts: a context above the model's limit or not above the output is refused") {
  const auto m = test::load("qwen3-30b-a3b");
  HostViewRequest q = request(m, "q4_k_m");
  q.hosts = {host("ddr5-desktop-2ch")};
  q.context_tokens = m.max_context_tokens + 1;
  CHECK_THROWS_AS(host_view(q), InputError);
  q.context_tokens = 128;
  CHECK_THROWS_AS(host_view(q), InputError);
}

TEST_CASE("memory sweep values: contexts 1k x 2^k up to the model's limit (and the limit), concurrency 1 x 2^k") {
  CHECK(sweep_values(SweepAxis::context, 1048576, 0) ==
        std::vector<std::int64_t>{1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144, 524288, 1048576});
  CHECK(sweep_values(SweepAxis::context, 163840, 0) ==
        std::vector<std::int64_t>{1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 163840});
  CHECK(sweep_values(SweepAxis::context, 10000000, 0).back() == 1048576);
  CHECK(sweep_values(SweepAxis::concurrency, 0, 100) == std::vector<std::int64_t>{1, 2, 4, 8, 16, 32, 64});
  CHECK_THROWS_AS(parse_sweep_axis("batch"), InputError);
}

TEST_CASE_METHOD(Fixture, "memory sweep: each cell is moeplan memory's breakdown, and GPUs to fit are fit-matrix's") {
  const auto m = test::load("llama4-maverick");
  MemorySweepRequest q;
  q.base.model = &m;
  q.base.layout = {8, 1, 1, 1};
  q.base.capacity_bytes = db.gpu("h100-sxm").memory_bytes;
  q.base.device_name = "h100-sxm";
  q.precisions = {model::resolve_precision("bf16", m, test::precisions()), model::resolve_precision("fp8", m, test::precisions())};
  q.axis = SweepAxis::context;
  q.values = sweep_values(q.axis, m.max_context_tokens, 0);
  q.fit_gpu = &db.gpu("h100-sxm");
  const MemorySweep s = memory_sweep(q);
  REQUIRE(s.cells.size() == q.values.size());
  for (std::size_t i = 0; i < s.cells.size(); ++i) {
    MemoryRequest direct = q.base;
    direct.context_tokens = q.values[i];
    direct.precision = q.precisions[1];
    CHECK(s.cells[i][1].memory.total_bytes == Approx(memory_breakdown(direct).total_bytes));
    if (i > 0) CHECK(s.cells[i][0].memory.total_bytes >= s.cells[i - 1][0].memory.total_bytes);
    // fp8 experts weigh less than bf16 at every context.
    CHECK(s.cells[i][1].memory.total_bytes < s.cells[i][0].memory.total_bytes);
  }
  // At 8k: bf16 on H100 needs 16 GPUs and fp8 8, as fit-matrix says.
  CHECK(s.cells[3][0].gpus_to_fit == 16);
  CHECK(s.cells[3][1].gpus_to_fit == 8);
  // Concurrency: KV grows linearly with the sequences.
  q.axis = SweepAxis::concurrency;
  q.values = {1, 2, 4};
  q.fit_gpu = nullptr;
  const MemorySweep c = memory_sweep(q);
  CHECK(c.cells[2][0].memory.kv_bytes == Approx(4 * c.cells[0][0].memory.kv_bytes));
  CHECK(c.cells[2][0].gpus_to_fit == 0);
}
