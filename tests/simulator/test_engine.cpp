// An engine applied to a simulate request: generic reproduces the simulator's defaults exactly, an engine's fixed cost per step
// moves batch-1 TPOT by that cost, and its defaults fill only what the caller left out.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <tuple>

#include "common/error.hpp"

#include "gpu_db/engines.hpp"
#include "simulator/engine.hpp"
#include "simulator/published.hpp"
#include "simulator/simulate.hpp"
#include "tests/test_util.hpp"

using namespace moeplan;
using namespace moeplan::simulator;

namespace {
struct Fixture {
  gpu_db::Database db = gpu_db::Database::load(test::data());
  gpu_db::EngineTable engines = gpu_db::EngineTable::load(test::data() / "engines.yaml");
  model::ModelConfig m = test::load("qwen3-30b-a3b");
  SimulateRequest request(std::int64_t concurrency) {
    SimulateRequest q;
    q.model = &m;
    q.precision = model::resolve_precision("fp8", m, test::precisions());
    q.layout = {1, 1, 1, 1};
    q.hardware = gpu_hardware(db, db.gpu("h100-sxm"));
    q.limits.max_batch = 1024;
    q.limits.max_num_batched_tokens = 8192;
    q.workload.input_tokens = 500;
    q.workload.output_tokens = 200;
    q.workload.mode = LoadMode::closed;
    q.workload.concurrency = concurrency;
    q.workload.num_requests = 20;
    return q;
  }
  // gpt-oss in MXFP4 under one load, on the fixture's GPU.
  SimulateRequest oss_request(const model::ModelConfig& oss, LoadMode mode, std::int64_t input, std::int64_t output,
                              std::int64_t requests) {
    SimulateRequest q = request(1);
    q.model = &oss;
    q.precision = model::resolve_precision("mxfp4", oss, test::precisions());
    q.workload.mode = mode;
    q.workload.input_tokens = input;
    q.workload.output_tokens = output;
    q.workload.num_requests = requests;
    return q;
  }
};
}  // namespace

TEST_CASE_METHOD(Fixture, "generic reproduces the simulator's own defaults exactly") {
  for (std::int64_t c : {1, 16}) {
    const SimulateResult plain = simulate(request(c));
    SimulateRequest q = request(c);
    apply_engine(q, engines.engine("generic"), EngineChoices{});
    CHECK(q.limits.max_batch == 1024);
    CHECK(q.limits.max_num_batched_tokens == 8192);
    CHECK(q.kv_dtype == model::KvDtype::bf16);
    const SimulateResult g = simulate(q);
    CHECK(g.serving.tpot_ms.mean == plain.serving.tpot_ms.mean);
    CHECK(g.serving.ttft_ms.mean == plain.serving.ttft_ms.mean);
    CHECK(g.serving.output_tokens_per_s == plain.serving.output_tokens_per_s);
    CHECK(g.engine == "generic");
  }
}

TEST_CASE_METHOD(Fixture, "an engine's step overhead changes batch-1 TPOT by that overhead") {
  const SimulateResult generic = simulate(request(1));
  for (const char* name : {"vllm", "sglang"}) {  // same kernel overhead as generic with CUDA graphs, other step costs
    const auto& e = engines.engine(name);
    REQUIRE(e.kernel_overhead_us() == 2.0);
    SimulateRequest q = request(1);
    apply_engine(q, e, EngineChoices{true, true, true, true});
    const SimulateResult r = simulate(q);
    INFO(name);
    CHECK(r.engine == name);
    CHECK(r.serving.tpot_ms.mean - generic.serving.tpot_ms.mean == Approx((e.step_overhead_us - 30) * 1e-3).margin(1e-6));
  }
}

TEST_CASE_METHOD(Fixture, "an engine's defaults fill only what the caller did not give") {
  const auto& trt = engines.engine("trtllm");
  SimulateRequest q = request(1);
  apply_engine(q, trt, EngineChoices{});
  CHECK(q.limits.max_batch == trt.max_batch);
  CHECK(q.limits.max_num_batched_tokens == trt.max_num_batched_tokens);
  CHECK(q.kv_dtype == model::KvDtype::fp8);  // ModelOpt FP8 checkpoint: TensorRT-LLM reads kv_cache_quant_algo FP8
  CHECK(q.hardware.eff.step_overhead_us == trt.step_overhead_us);
  SimulateRequest given = request(1);
  apply_engine(given, trt, EngineChoices{true, true, true, true});
  CHECK(given.limits.max_batch == 1024);
  CHECK(given.kv_dtype == model::KvDtype::bf16);
  SimulateRequest v = request(1);
  apply_engine(v, engines.engine("vllm"), EngineChoices{});
  CHECK(v.kv_dtype == model::KvDtype::bf16);  // --kv-cache-dtype auto
  // Padded CUDA graphs: vLLM pads decode batches to its capture sizes, TensorRT-LLM's LLM API does not; sizes the
  // caller gave stay.
  CHECK(v.limits.graph_padded_batches == engines.engine("vllm").cuda_graph_batch_sizes);
  CHECK(q.limits.graph_padded_batches.empty());
  SimulateRequest own = request(1);
  own.limits.graph_padded_batches = {1, 3};
  EngineChoices graphs_given;
  graphs_given.graph_batches = true;
  apply_engine(own, engines.engine("vllm"), graphs_given);
  CHECK(own.limits.graph_padded_batches == std::vector<std::int64_t>{1, 3});
  const auto r = simulate(q);
  bool named = false;
  for (const auto& a : r.assumptions) named = named || a.find("engine: trtllm") != std::string::npos;
  CHECK(named);
}

TEST_CASE_METHOD(Fixture, "validate --published uses each row's engine, and --engine overrides it") {
  const auto path = test::temp_path("moeplan_test_points_engine.yaml");
  std::ofstream(path) << R"(defaults: {max_batch: 2048, max_num_batched_tokens: 8192}
points:
  - {id: E-1, model: gpt-oss-20b, gpu: h100-nvl, count: 1, tp: 1, dp: 1, ep: 1, precision: auto, kv_dtype: bf16, input: 1000, output: 1000, load: closed, concurrency: 1, num_requests: 5, metric: tpot_ms, value: 5, source: S2, engine: vllm, engine_version: "0.11.0", url: "https://example.org/run", stat: median}
  - {id: E-2, model: gpt-oss-20b, gpu: h100-nvl, count: 1, tp: 1, dp: 1, ep: 1, precision: auto, kv_dtype: bf16, input: 1000, output: 1000, load: closed, concurrency: 1, num_requests: 5, metric: tpot_ms, value: 5, source: S2}
  - {id: E-3, model: gpt-oss-20b, gpu: mi300x, count: 1, tp: 1, dp: 1, ep: 1, precision: auto, kv_dtype: bf16, input: 1000, output: 1000, load: closed, concurrency: 1, num_requests: 5, metric: tpot_ms, value: 5, source: S2, engine: trtllm}
)";
  const auto set = load_published(path);
  REQUIRE(set.points.size() == 3);
  CHECK(set.points[0].engine == "vllm");
  CHECK(set.points[0].engine_version == "0.11.0");
  CHECK(set.points[0].url == "https://example.org/run");
  CHECK(set.points[0].stat == "median");
  const auto s = validate_published(set, db, test::data());
  REQUIRE(s.rows.size() == 3);
  CHECK(s.rows[0].engine == "vllm");
  CHECK(s.rows[1].engine == "trtllm");  // a row naming no engine is TensorRT-LLM's (the file's sources)
  CHECK(s.rows[0].predicted - s.rows[1].predicted == Approx(0.150).margin(1e-6));  // 160 us against 10 us per step
  CHECK(s.rows[2].failure.find("engines that do") != std::string::npos);            // trtllm on AMD
  const auto gen = validate_published(set, db, test::data(), {"E-1"}, "generic");
  REQUIRE(gen.rows.size() == 1);
  CHECK(s.rows[0].predicted - gen.rows[0].predicted == Approx(0.130).margin(1e-6));  // 160 us against 30 us per step
  const auto o = validate_published(set, db, test::data(), {"E-1", "E-2"}, "sglang");
  REQUIRE(o.rows.size() == 2);
  CHECK(o.rows[0].engine == "sglang");
  CHECK(o.rows[0].predicted == Approx(o.rows[1].predicted));
  CHECK_THROWS_AS(validate_published(set, db, test::data(), {}, "nope"), InputError);
}

TEST_CASE_METHOD(Fixture, "llama.cpp's GPU kernels: matrix-vector decode and no dequantisation penalty, CPU cores keep theirs") {
  const auto& cpp = engines.engine("llamacpp");
  REQUIRE(cpp.gemv_max_rows == 8);
  REQUIRE(cpp.dequant_compute == 1.0);
  const Hardware gpu = gpu_hardware(db, db.gpu("rtx-4090"));
  const Efficiency e = engine_efficiency(gpu.eff, cpp, gpu);
  CHECK(e.gemv_max_rows == 8);
  CHECK(e.dequant_compute == 1.0);
  CHECK(engine_efficiency(gpu.eff, engines.engine("trtllm"), gpu).gemv_max_rows == 0);  // others keep the tiles
  const Hardware cpu = host_hardware(db.host(db.host_defaults().cpu_host), 10e12);
  const Efficiency c = engine_efficiency(cpu.eff, cpp, cpu);
  CHECK(c.dequant_compute == cpu.eff.dequant_compute);
  CHECK(c.gemv_max_rows == cpu.eff.gemv_max_rows);
  // Batch-1 decode of a Q4_K_M 8B model on one RTX 4090 is bound by reading its weights, not by 64-row tiles.
  const auto llama = test::load("llama3.1-8b");
  SimulateRequest q = request(1);
  q.model = &llama;
  q.precision = model::resolve_precision("q4_k_m", llama, test::precisions());
  q.hardware = gpu;
  q.workload.input_tokens = 1;
  q.workload.output_tokens = 64;
  q.workload.num_requests = 1;
  SimulateRequest tiled = q;
  apply_engine(q, cpp, EngineChoices{true, true, true, true});
  gpu_db::EngineSpec no_gemv = cpp;
  no_gemv.gemv_max_rows = 0;
  apply_engine(tiled, no_gemv, EngineChoices{true, true, true, true});
  const double weight_bytes = 4.9e9;  // Llama 3.1 8B in Q4_K_M (moeplan memory: 4.91 GB), all read once per token
  const double bound_ms = weight_bytes / gpu.mem_bandwidth_bytes_per_s * 1e3;
  const SimulateResult r = simulate(q), t = simulate(tiled);
  CHECK(r.serving.tpot_ms.mean > bound_ms);
  CHECK(r.serving.tpot_ms.mean < 2.0 * bound_ms + cpp.step_overhead_us * 1e-3);
  CHECK(t.serving.tpot_ms.mean > 1.2 * r.serving.tpot_ms.mean);  // 64-row tiles at 1 row: compute-bound
}

TEST_CASE_METHOD(Fixture, "TensorRT-LLM's KV manager sizes sliding-window layers for the whole sequence, vLLM's does not") {
  const model::ModelConfig oss = test::load("gpt-oss-20b");
  const auto request_for = [&](const char* engine, EngineChoices given) {
    SimulateRequest q = oss_request(oss, LoadMode::max, 1000, 1000, 3000);
    q.limits.max_batch = 2048;
    apply_engine(q, engines.engine(engine), given);
    return q;
  };
  const SimulateRequest trt = request_for("trtllm", EngineChoices{true, true, true, false});
  const SimulateRequest vllm = request_for("vllm", EngineChoices{true, true, true, false});
  const SimulateRequest asked = request_for("trtllm", EngineChoices{true, true, true, true});
  CHECK_FALSE(engines.engine("trtllm").kv_window_aware);
  CHECK(trt.kv_mode == model::KvMode::full_length);
  CHECK(vllm.kv_mode == model::KvMode::model_aware);
  CHECK(asked.kv_mode == model::KvMode::model_aware);  // --kv-mode given: the caller's choice stays
  // Half of gpt-oss's layers slide over 128 tokens: counted at full length, a 2,000-token sequence needs about twice
  // the KV, so about half as many sequences fit at once.
  const SimulateResult full = simulate(trt), aware = simulate(asked);
  INFO("full-length " << full.serving.kv_limited_batch << ", model-aware " << aware.serving.kv_limited_batch);
  const double ratio = static_cast<double>(full.serving.kv_limited_batch) / static_cast<double>(aware.serving.kv_limited_batch);
  CHECK(ratio > 0.4);
  CHECK(ratio < 0.6);
}

TEST_CASE_METHOD(Fixture, "llama.cpp on a unified host: its 16-bit rate, and the chip's measured prompt rate where hosts.yaml has one") {
  const gpu_db::HostSpec& spark = db.host("nvidia-dgx-spark");
  REQUIRE(spark.gpu_peak_flops_dense.count("fp4"));
  REQUIRE(spark.llamacpp_prefill_flops > 0);
  std::vector<std::string> notes;
  const Hardware hw = llamacpp_host(db, spark, HostFlags{}, false, &notes);
  CHECK(hw.integrated_gpu);
  CHECK(hw.peak_flops.count("fp4") == 0);  // no FP4/FP8 MMA in llama.cpp b6000-b7000: MXFP4 runs on int8/fp16 units
  CHECK(hw.peak_flops.count("fp8") == 0);
  const double peak = hw.peak_flops.at("bf16");
  CHECK(peak * hw.eff.gemm_compute == Approx(spark.llamacpp_prefill_flops));
  const Efficiency plain = unified_gpu_efficiency();
  const double ratio = spark.llamacpp_prefill_flops / (peak * plain.gemm_compute);
  CHECK(hw.eff.expert_compute == Approx(plain.expert_compute * ratio));
  CHECK(hw.eff.attention_compute == Approx(plain.attention_compute * ratio));
  CHECK(hw.eff.memory == Approx(spark.llamacpp_decode_bandwidth_share));
  bool named = false;
  for (const auto& n : notes) named = named || n.find("llamacpp_prefill_tflops") != std::string::npos;
  CHECK(named);
  // A host without a measured prompt rate keeps the generic GPU terms.
  const Hardware apple = llamacpp_host(db, db.host("apple-m2-ultra"), HostFlags{}, false);
  CHECK(apple.eff.gemm_compute == Approx(plain.gemm_compute));
}

TEST_CASE("llama.cpp on Metal streams F16/BF16 weights at its 16-bit share, quantised weights at the chip's own") {
  const auto db = gpu_db::Database::load(test::data());
  const double share16 = db.host_defaults().metal_16bit_decode_bandwidth_share;
  REQUIRE(share16 > 0);
  std::vector<std::string> notes;
  const gpu_db::HostSpec& m2 = db.host("apple-m2-ultra");
  const Hardware apple = llamacpp_host(db, m2, HostFlags{}, false, &notes);
  CHECK(apple.eff.memory == Approx(m2.llamacpp_decode_bandwidth_share));
  CHECK(apple.eff.memory_16bit == Approx(share16));
  bool named = false;
  for (const auto& n : notes) named = named || n.find("16-bit decode share on Metal") != std::string::npos;
  CHECK(named);
  // The GEMM's bandwidth term follows the weight format: F16 at the 16-bit share, Q4_K at the chip's own.
  model::Op gemm;
  gemm.kind = model::OpKind::gemm;
  gemm.compute_dtype = "fp16";
  gemm.weight_format = "fp16";
  const double bw = apple.mem_bandwidth_bytes_per_s;
  CHECK(op_rates(gemm, apple).inv_bw == Approx(1.0 / (bw * share16)));
  gemm.weight_format = "q4_k";
  CHECK(op_rates(gemm, apple).inv_bw == Approx(1.0 / (bw * m2.llamacpp_decode_bandwidth_share)));
  // Elementwise ops keep their own term; CUDA and CPU hosts have no 16-bit share.
  model::Op norm;
  norm.kind = model::OpKind::norm;
  norm.weight_format = "fp16";
  CHECK(op_rates(norm, apple).inv_bw == Approx(1.0 / (bw * apple.eff.elementwise_memory)));
  CHECK(llamacpp_host(db, db.host("nvidia-dgx-spark"), HostFlags{}, false).eff.memory_16bit == 0);
  CHECK(llamacpp_host(db, m2, HostFlags{}, true).eff.memory_16bit == 0);  // its CPU cores
}

TEST_CASE("llama.cpp's expert token tile: CUDA MMQ's mmq_x fitted to the step's tokens, Metal's fixed 32") {
  Efficiency cuda;
  cuda.expert_tile_rows_max = 128;
  cuda.expert_tile_fits_step = true;
  // mul_mat_q_case: the first mmq_x (8, 16, ..., 40, then 48, 64, ..., 128) reaching the fewest ceil(tokens / mmq_x).
  const auto loop = [](double tokens) {
    int best = 0, best_tiles = 1 << 30;
    for (int x = 8; x <= 128 && best_tiles > 1; x += 8) {
      if (x >= 48 && x % 16 != 0) continue;
      const int tiles = static_cast<int>(std::ceil(tokens / x));
      if (tiles < best_tiles) best = x, best_tiles = tiles;
    }
    return static_cast<double>(best);
  };
  for (const double t : {9.0, 16.0, 17.0, 40.0, 41.0, 47.0, 49.0, 100.0, 128.0, 129.0, 200.0, 512.0, 2048.0, 2049.0, 5000.0}) {
    INFO(t << " tokens");
    CHECK(cuda.expert_tile_rows(t) == loop(t));
  }
  Efficiency metal;
  metal.expert_tile_rows_max = 32;
  CHECK(metal.expert_tile_rows(512) == 32);
  CHECK(metal.expert_tile_rows(9) == 32);
  CHECK(Efficiency{}.expert_tile_rows(512) == 0);  // no tile model: the grouped-GEMM curve
}

TEST_CASE("expert tile waste: every touched expert computes whole tiles, none up to the matrix-vector threshold") {
  Efficiency e;
  e.gemv_max_rows = 8;
  e.expert_tile_rows_max = 128;
  e.expert_tile_fits_step = true;
  model::StepValues x{};
  const auto at = [&](double tokens, double touched, double assignments) {
    x[static_cast<std::size_t>(model::StepVar::tokens)] = tokens;
    x[static_cast<std::size_t>(model::StepVar::experts_touched)] = touched;
    return expert_tile_waste(e, assignments, x);
  };
  // gpt-oss-120b, a 2,048-token ubatch: 8,192 assignments over 128 experts = 64 each (sd 8) in one 128-wide tile:
  // half empty.
  CHECK(at(2048, 128, 8192) == Approx(2.0).epsilon(1e-6));
  // 512 tokens: 16 per expert in a 128-wide tile: 8x.
  CHECK(at(512, 128, 2048) == Approx(8.0).epsilon(1e-6));
  // gpt-oss-20b (32 experts, top-4), 2,048 tokens: 256 per expert on average, sd 16: about half of the experts get
  // past 256 and run a third tile: E[tiles] ~ 2.5, so ~1.25x rather than the mean's exact 2 tiles.
  CHECK(at(2048, 32, 8192) == Approx(2.49 * 128 / 256).epsilon(0.01));
  // Many tokens per expert: the last tile is half empty on average, a small share of many tiles.
  CHECK(at(65536, 32, 262144) == Approx((8192.0 / 128 + 0.5) * 128 / 8192).epsilon(0.01));
  // A 100-token step: mmq_x = 112; 400 assignments over 32 experts = 12.5 each -> one 112-wide tile each.
  CHECK(at(100, 32, 400) == Approx(32.0 * 112 / 400).epsilon(1e-6));
  CHECK(at(8, 4, 32) == 1.0);  // decode-sized steps run mul_mat_vec_q: no tiles
  e.expert_tile_rows_max = 32;  // Metal
  e.expert_tile_fits_step = false;
  // DeepSeek-V3, 512 tokens: 16 per expert (sd 4) in 32-row tiles: a second tile for almost none.
  CHECK(at(512, 256, 4096) == Approx(2.0).epsilon(0.01));
}

TEST_CASE_METHOD(Fixture, "llama.cpp prices MoE experts with its own tiles on CUDA and Metal, others keep the grouped-GEMM curve") {
  const auto& cpp = engines.engine("llamacpp");
  REQUIRE(cpp.expert_tile_rows_cuda == 128);
  REQUIRE(cpp.expert_tile_rows_metal == 32);
  // DGX Spark runs CUDA (MMQ, tile fitted to the step), Apple Metal (fixed 32-token tiles).
  for (const auto& [host, rows, fits] : {std::tuple{"nvidia-dgx-spark", 128.0, true}, std::tuple{"apple-m3-ultra", 32.0, false}}) {
    INFO(host);
    const Hardware hw = llamacpp_host(db, db.host(host), HostFlags{}, false);
    const Efficiency e = engine_efficiency(hw.eff, cpp, hw);
    CHECK(e.expert_tile_rows_max == rows);
    CHECK(e.expert_tile_fits_step == fits);
    CHECK(e.expert_compute == Approx(hw.eff.gemm_compute));  // the dense kernel's share (DGX Spark: its measured one)
    CHECK(e.expert_rows_half == 0);
    CHECK(e.expert_block_us == 0);
  }
  const Hardware rtx = gpu_hardware(db, db.gpu("rtx-4090"));
  CHECK(engine_efficiency(rtx.eff, cpp, rtx).expert_tile_rows_max == 128);
  // Other engines and CPU cores keep their expert terms.
  const Efficiency trt = engine_efficiency(rtx.eff, engines.engine("trtllm"), rtx);
  CHECK(trt.expert_tile_rows_max == 0);
  CHECK(trt.expert_rows_half == rtx.eff.expert_rows_half);
  const Hardware cpu = host_hardware(db.host(db.host_defaults().cpu_host), 10e12);
  CHECK(engine_efficiency(cpu.eff, cpp, cpu).expert_tile_rows_max == 0);
  // On DGX Spark a 512-token prompt of gpt-oss-120b (16 tokens per expert) costs its 128-wide tiles: its expert GEMMs
  // take as long as a 2,048-token prompt's (64 per expert, the same one tile each).
  const auto oss = test::load("gpt-oss-120b");
  SimulateRequest q = request(1);
  q.model = &oss;
  q.precision = model::resolve_precision("mxfp4_moe", oss, test::precisions());
  q.hardware = llamacpp_host(db, db.host("nvidia-dgx-spark"), HostFlags{}, false);
  q.kv_dtype = model::KvDtype::fp16;
  q.workload.mode = LoadMode::static_batch;
  q.workload.output_tokens = 1;
  q.workload.num_requests = 1;
  q.limits.max_num_batched_tokens = 8192;
  q.with_breakdown = true;
  apply_engine(q, cpp, EngineChoices{false, true, true, false});
  const auto expert_us = [&](std::int64_t tokens) {
    q.workload.input_tokens = tokens;
    const SimulateResult r = simulate(q);  // its prefill breakdown: one step of the whole prompt
    double t = 0;
    for (const OpTime& o : r.prefill_ops)
      if (o.op.kind == model::OpKind::expert_gemm) t += o.time_s * 1e6;
    return t;
  };
  REQUIRE(expert_us(2048) > 0);
  CHECK(expert_us(512) == Approx(expert_us(2048)).epsilon(0.02));
  // 8,192 tokens: 4x the assignments, 256 per expert in about 2.5 tiles of 128 (waste 1.24 instead of 2).
  CHECK(expert_us(8192) / expert_us(2048) == Approx(4 * 1.244 / 2).epsilon(0.02));
}

TEST_CASE_METHOD(Fixture, "llama.cpp runs a static batch's prompt in ubatches of its token budget, the others in one step") {
  const auto oss = test::load("gpt-oss-20b");
  const auto ttft = [&](const char* engine, std::int64_t ubatch) {
    SimulateRequest q = oss_request(oss, LoadMode::static_batch, 4096, 1, 2);
    q.limits.max_num_batched_tokens = ubatch;
    apply_engine(q, engines.engine(engine), EngineChoices{true, true, true, false});
    return simulate(q).serving.ttft_ms.mean;
  };
  CHECK(engines.engine("llamacpp").prefill_in_ubatches);
  CHECK_FALSE(engines.engine("trtllm").prefill_in_ubatches);
  // llama.cpp: 4,096 tokens in ubatches of 512 take 8 steps, longer than in ubatches of 4,096 (one step).
  CHECK(ttft("llamacpp", 512) > ttft("llamacpp", 4096) * 1.05);
  // A static TensorRT-LLM batch prefills its whole prompt in one step whatever the token budget.
  CHECK(ttft("trtllm", 512) == Approx(ttft("trtllm", 4096)));
}
