// CPU kernels against this machine's own roofline, measured in the same run:
//   BM_triad            STREAM triad a = b + s * c over 3 x 256 MiB arrays (>> L3), all pool threads; bytes counted
//                       as STREAM does: 12 bytes per element (read b and c, write a; write-allocate not counted).
//   BM_peak_fma         register-resident FMA chains on every pool thread (fp32): the compute roof.
//   BM_peak_amx_bf16    register-resident AMX BF16 tile products on every pool thread (skipped without AMX).
//   BM_decode_gemv      Maverick widths, one token: x[1, 5120] · W[8192, 5120]^T (gate/up) and x[1, 8192] ·
//                       W[5120, 8192]^T (down), BF16 / FP8 weights, cycling over 16 distinct matrices (16 experts'
//                       worth, 0.6-1.3 GB) so every call streams its weights from DRAM. Bytes = weight bytes
//                       touched; bw_vs_triad = those bytes per second / the triad's.
//   BM_moe_layer_decode one token through a Maverick MoE FFN (router, routed + shared expert, BF16): the decode
//                       target, weight bytes touched per second against the triad.
//   BM_moe_layer_prefill 512 prompt tokens through a 16-expert slice of that FFN (top-1, grouped expert GEMM, plus
//                       the shared expert): the prefill side of the PyTorch comparison (bench/torch).
//   BM_prefill_gemm     M = 512 tokens, K = 5120, N = 8192, BF16 (and fp32) weights: FLOP = 2 M N K;
//                       flops_vs_peak = achieved / BM_peak_fma's rate. bf16_activations:1 rounds x to BF16 and
//                       runs on AMX where the CPU has it (compare with BM_peak_amx_bf16).
//   BM_attention_*      decode (1 query, 8192 keys, 40 / 8 heads, D 128) and prefill (512 x 512, causal).
//   BM_rmsnorm, BM_rope, BM_silu_mul: the memory-bound elementwise ops at Maverick widths.
// Ratios use the mean triad / FMA rates of the last run of their benchmarks in this process (measured on first use
// when those were filtered out), so run them in the same invocation. On a shared machine wall-clock rates move with
// the neighbours' load; flops_vs_peak_cpu divides by process CPU time instead (FLOP per CPU-second against the FMA
// chains' FLOP per CPU-second). With --benchmark_repetitions the ratios use the triad/peak of the last repetition.
// Run: build/bench/moeplan_bench_cpu_kernels [--benchmark_filter=...]
#include <benchmark/benchmark.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kernels/activation.hpp"
#include "kernels/attention.hpp"
#include "kernels/cpu_features.hpp"
#include "kernels/matmul.hpp"
#include "kernels/norm.hpp"
#include "kernels/rope.hpp"
#include "kernels/router.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

using namespace moeplan::kernels;

namespace {

CpuContext ctx() { return default_cpu_context(); }

std::vector<float> random_floats(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

// ---- STREAM triad

struct TriadArrays {
  static constexpr std::int64_t kFloats = 64LL * 1024 * 1024;  // 256 MiB per array
  std::vector<float> a, b, c;
  TriadArrays() : a(kFloats), b(kFloats), c(kFloats) {
    // first touch on the pool, as the triad itself will run
    run(1.0f, true);
  }
  void run(float s, bool init = false) {
    ThreadPool& pool = *ctx().pool;
    const std::int64_t parts = 4 * pool.size(), per = (kFloats + parts - 1) / parts;
    pool.parallel_for(0, parts, [&](std::int64_t p) {
      const std::int64_t lo = p * per, hi = std::min(kFloats, lo + per);
      float* pa = a.data();
      float* pb = b.data();
      float* pc = c.data();
      if (init) {
        for (std::int64_t i = lo; i < hi; ++i) pa[i] = pb[i] = pc[i] = 1.0f;
        return;
      }
      for (std::int64_t i = lo; i < hi; ++i) pa[i] = pb[i] + s * pc[i];
    });
  }
  static constexpr double bytes_per_pass() { return 3.0 * 4.0 * static_cast<double>(kFloats); }
};

TriadArrays& triad_arrays() {
  static TriadArrays arrays;
  return arrays;
}

// CPU seconds used by every thread of this process (a shared machine takes time slices away; CPU time does not
// count them, wall time does).
double process_cpu_s() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}
double wall_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// Work done (bytes or FLOP) over wall and process-CPU seconds, summed over every timed pass of this run.
struct Rate {
  double work = 0, wall = 0, cpu = 0;
  double per_wall_s() const { return wall > 0 ? work / wall : 0; }
  double per_cpu_s() const { return cpu > 0 ? work / cpu : 0; }
};

Rate g_triad;  // the triad's mean rate over its last measurement in this run

void triad_pass() {
  const double w0 = wall_s(), c0 = process_cpu_s();
  triad_arrays().run(0.5f);
  g_triad.work += TriadArrays::bytes_per_pass();
  g_triad.wall += wall_s() - w0;
  g_triad.cpu += process_cpu_s() - c0;
}

double triad_bytes_per_s() {
  if (g_triad.wall == 0)
    for (int rep = 0; rep < 5; ++rep) triad_pass();
  return g_triad.per_wall_s();
}

void BM_triad(benchmark::State& state) {
  g_triad = Rate{};  // keep the passes of the run Google Benchmark reports (its last)
  for (auto _ : state) {
    triad_pass();
    benchmark::DoNotOptimize(triad_arrays().a.data());
    benchmark::ClobberMemory();
  }
  const double passes = static_cast<double>(state.iterations());
  state.SetBytesProcessed(static_cast<std::int64_t>(passes * TriadArrays::bytes_per_pass()));
  state.counters["threads"] = ctx().pool->size();
}
BENCHMARK(BM_triad)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(1.0);

// ---- Peak fp32 FMA rate: independent FMA chains that never leave the registers.

constexpr std::int64_t kFmaIterations = 20'000'000;

#if defined(__x86_64__) || defined(__i386__)
// 12 chains of 8 lanes (FMA latency 4-5 cycles x 2 ports needs >= 10 in flight). FLOP = 12 * 8 * 2 per iteration.
__attribute__((target("avx2,fma"))) float fma_chains_avx2(std::int64_t iterations) {
  __m256 acc[12];
  for (int j = 0; j < 12; ++j) acc[j] = _mm256_set1_ps(static_cast<float>(j) * 1e-3f);
  const __m256 a = _mm256_set1_ps(0.9999999f), b = _mm256_set1_ps(1e-7f);
  for (std::int64_t i = 0; i < iterations; ++i) {
#pragma GCC unroll 12
    for (int j = 0; j < 12; ++j) acc[j] = _mm256_fmadd_ps(acc[j], a, b);
  }
  __m256 sum = acc[0];
  for (int j = 1; j < 12; ++j) sum = _mm256_add_ps(sum, acc[j]);
  alignas(32) float out[8];
  _mm256_store_ps(out, sum);
  return out[0] + out[7];
}
constexpr double kFlopsPerIterationAvx2 = 12 * 8 * 2;

// 24 chains of 16 lanes. FLOP = 24 * 16 * 2 per iteration. The unroll pragmas keep the chains in registers: without
// them gcc 12 kept this array in memory and interchanged the loops, a load and a store per FMA at half the peak.
__attribute__((target("avx512f"))) float fma_chains_avx512(std::int64_t iterations) {
  __m512 acc[24];
  for (int j = 0; j < 24; ++j) acc[j] = _mm512_set1_ps(static_cast<float>(j) * 1e-3f);
  const __m512 a = _mm512_set1_ps(0.9999999f), b = _mm512_set1_ps(1e-7f);
  for (std::int64_t i = 0; i < iterations; ++i) {
#pragma GCC unroll 24
    for (int j = 0; j < 24; ++j) acc[j] = _mm512_fmadd_ps(acc[j], a, b);
  }
  __m512 sum = acc[0];
  for (int j = 1; j < 24; ++j) sum = _mm512_add_ps(sum, acc[j]);
  alignas(64) float out[16];
  _mm512_store_ps(out, sum);
  return out[0] + out[15];
}
constexpr double kFlopsPerIterationAvx512 = 24 * 16 * 2;
#endif

Rate g_peak;  // the FMA chains' mean rate over their last measurement in this run

// One timed pass on every pool thread (nothing when this CPU has no FMA path).
void fma_pass(std::int64_t iterations) {
#if defined(__x86_64__) || defined(__i386__)
  const CpuPath path = best_cpu_path();
  if (path == CpuPath::scalar) return;
  ThreadPool& pool = *ctx().pool;
  std::vector<float> sink(static_cast<std::size_t>(pool.size()));
  const double w0 = wall_s(), c0 = process_cpu_s();
  pool.parallel_for(0, pool.size(), [&](std::int64_t t) {
    sink[static_cast<std::size_t>(t)] =
        path == CpuPath::avx512 ? fma_chains_avx512(iterations) : fma_chains_avx2(iterations);
  });
  g_peak.wall += wall_s() - w0;
  g_peak.cpu += process_cpu_s() - c0;
  benchmark::DoNotOptimize(sink.data());
  const double per_iteration = path == CpuPath::avx512 ? kFlopsPerIterationAvx512 : kFlopsPerIterationAvx2;
  g_peak.work += per_iteration * static_cast<double>(iterations) * pool.size();
#else
  (void)iterations;
#endif
}

const Rate& peak_flops() {
  if (g_peak.wall == 0)
    for (int rep = 0; rep < 3; ++rep) fma_pass(kFmaIterations);
  return g_peak;
}

void BM_peak_fma(benchmark::State& state) {
  if (best_cpu_path() == CpuPath::scalar) {
    state.SkipWithError("no FMA code path on this CPU");
    return;
  }
  g_peak = Rate{};  // keep the passes of the run Google Benchmark reports (its last)
  for (auto _ : state) fma_pass(kFmaIterations);
  state.counters["flops_per_s"] = benchmark::Counter(g_peak.work, benchmark::Counter::kIsRate);
  // per second of CPU time of one thread: the rate a thread gets when the machine is not shared
  state.counters["flops_per_thread_cpu_s"] = g_peak.per_cpu_s();
  state.counters["threads"] = ctx().pool->size();
  state.SetLabel(cpu_path_description(best_cpu_path()));
}
BENCHMARK(BM_peak_fma)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(1.0);

// ---- Peak AMX BF16 rate: TDPBF16PS on tiles that never leave the registers (4 independent 16 x 16 accumulators),
// every pool thread; skipped where the CPU has no usable AMX. FLOP = 16 * 16 * 32 * 2 per instruction.

#if defined(__x86_64__) && defined(__linux__)
struct alignas(64) AmxTileConfig {
  std::uint8_t palette = 1, start_row = 0;
  std::uint8_t reserved[14] = {};
  std::uint16_t colsb[16] = {64, 64, 64, 64, 64, 64, 64, 64};
  std::uint8_t rows[16] = {16, 16, 16, 16, 16, 16, 16, 16};
};
__attribute__((target("amx-tile,amx-bf16"))) void amx_chains(std::int64_t iterations) {
  static const AmxTileConfig cfg;
  alignas(64) static const std::uint16_t ones[16 * 32] = {};
  alignas(64) float out[16 * 16];
  _tile_loadconfig(&cfg);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  _tile_loadd(4, ones, 64);
  _tile_loadd(5, ones, 64);
  _tile_loadd(6, ones, 64);
  _tile_loadd(7, ones, 64);
  for (std::int64_t i = 0; i < iterations; ++i) {
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  _tile_stored(0, out, 64);
  _tile_release();
  benchmark::DoNotOptimize(out);
}
#endif

void BM_peak_amx_bf16(benchmark::State& state) {
#if defined(__x86_64__) && defined(__linux__)
  if (!cpu_features().amx_bf16) {
    state.SkipWithError("no usable AMX BF16 on this CPU");
    return;
  }
  constexpr std::int64_t kIterations = 2'000'000;
  ThreadPool& pool = *ctx().pool;
  for (auto _ : state) pool.parallel_for(0, pool.size(), [](std::int64_t) { amx_chains(kIterations); });
  const double flops = 4.0 * 16 * 16 * 32 * 2 * kIterations * pool.size();
  state.counters["flops_per_s"] =
      benchmark::Counter(flops * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["threads"] = pool.size();
#else
  state.SkipWithError("AMX is x86-64 Linux only");
#endif
}
BENCHMARK(BM_peak_amx_bf16)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(1.0);

// ---- Decode GEMV at Maverick widths over 16 distinct weight matrices.

// bytes_per_second and bw_vs_triad (bytes per second against the triad's, both wall clock). A per-CPU-second
// version was tried and dropped: for memory-bound loops it moved between 0.9 and 1.3 from run to run on a shared
// machine (spinning pool workers and the triad's write-allocate traffic both count as CPU time).
void report_bandwidth(benchmark::State& state, double bytes, double triad_bytes_per_wall_s) {
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
  state.counters["bw_vs_triad"] = benchmark::Counter(bytes / triad_bytes_per_wall_s, benchmark::Counter::kIsRate);
  state.counters["triad_GBps"] = triad_bytes_per_wall_s / 1e9;
}

struct ExpertWeights {
  static constexpr int kExperts = 16;
  WeightDtype dtype;
  std::int64_t rows, cols;
  std::vector<std::uint8_t> bytes;  // [kExperts, rows, cols] elements of dtype
  std::vector<float> scales;        // [kExperts, rows] (FP8: per-output-channel scales)
  ExpertWeights(WeightDtype d, std::int64_t n, std::int64_t k, int experts = kExperts)
      : dtype(d), rows(n), cols(k) {
    bytes.resize(static_cast<std::size_t>(experts * n * k * weight_dtype_bytes(d)));
    fill_small_values(bytes, d);
    scales.assign(static_cast<std::size_t>(experts * n), 1.0f / 64.0f);
  }
  // Values uniform in ±0.1 (FP8: ±10 and INT8: ±100 before their 1/64 row scale), from a fast xorshift. Normal
  // numbers matter: bytes drawn at random include subnormals, and products of subnormals cost Intel cores a
  // microcode assist each (prefill GEMM ran at 5 % of the FMA peak on them), where real weights have none.
  static void fill_small_values(std::vector<std::uint8_t>& b, WeightDtype dtype) {
    const auto size = static_cast<std::size_t>(weight_dtype_bytes(dtype));
    const float unit = dtype == WeightDtype::fp8_e4m3 ? 10.0f : dtype == WeightDtype::int8 ? 100.0f : 0.1f;
    std::uint64_t state = 0x9e3779b97f4a7c15ull;
    for (std::size_t i = 0; i + size <= b.size(); i += size) {
      state ^= state << 13;
      state ^= state >> 7;
      state ^= state << 17;
      const float u = static_cast<float>(state >> 40) * 0x1p-23f - 1.0f;  // uniform in [-1, 1)
      encode_weight(dtype, u * unit, b.data() + i);
    }
  }
  WeightView view(int e) const {
    return {dtype, bytes.data() + static_cast<std::size_t>(e) * rows * cols * weight_dtype_bytes(dtype), rows, cols,
            dtype == WeightDtype::fp8_e4m3 ? scales.data() + e * rows : nullptr};
  }
};

void BM_decode_gemv(benchmark::State& state) {
  const auto dtype = static_cast<WeightDtype>(state.range(0));
  const std::int64_t N = state.range(1), K = state.range(2), M = state.range(3);
  static std::vector<std::unique_ptr<ExpertWeights>> cache;  // keep one weight set alive across repetitions
  ExpertWeights* weights = nullptr;
  for (auto& w : cache)
    if (w->dtype == dtype && w->rows == N && w->cols == K) weights = w.get();
  if (!weights) {
    cache.clear();  // one set at a time keeps memory bounded
    cache.push_back(std::make_unique<ExpertWeights>(dtype, N, K));
    weights = cache.back().get();
  }
  const auto x = random_floats(static_cast<std::size_t>(M * K), 1);
  std::vector<float> y(static_cast<std::size_t>(M * N));
  const double triad = triad_bytes_per_s();
  int e = 0;
  for (auto _ : state) {
    matmul(ctx(), x.data(), M, weights->view(e), y.data());
    e = (e + 1) % ExpertWeights::kExperts;
    benchmark::DoNotOptimize(y.data());
  }
  const double bytes = static_cast<double>(N * K * weight_dtype_bytes(dtype));
  report_bandwidth(state, bytes * static_cast<double>(state.iterations()), triad);
  state.SetLabel(std::string(weight_dtype_name(dtype)) + " " + cpu_path_name(ctx().path));
}
BENCHMARK(BM_decode_gemv)
    ->ArgNames({"dtype", "N", "K", "M"})
    ->Args({static_cast<int>(WeightDtype::bf16), 8192, 5120, 1})
    ->Args({static_cast<int>(WeightDtype::bf16), 5120, 8192, 1})
    ->Args({static_cast<int>(WeightDtype::bf16), 8192, 5120, 4})
    ->Args({static_cast<int>(WeightDtype::fp8_e4m3), 8192, 5120, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(1.0);

// ---- One decode token through a Maverick MoE layer's FFN: router (128 logits), top-1 routed expert and the shared
// expert, each gate_up [16384, 5120] (gate and up fused) -> SwiGLU -> down [5120, 8192], BF16. The routed expert
// cycles over 8 distinct experts (2 GiB of weights with the shared one) so its weights come from DRAM. Bytes =
// the weights the token touches (router + 2 experts = 0.50 GB); bw_vs_triad as above.

void BM_moe_layer_decode(benchmark::State& state) {
  constexpr std::int64_t kHidden = 5120, kInter = 8192, kExperts = 8, kRouterExperts = 128;
  static const ExpertWeights gate_up(WeightDtype::bf16, 2 * kInter, kHidden, kExperts + 1);  // last = shared
  static const ExpertWeights down(WeightDtype::bf16, kHidden, kInter, kExperts + 1);
  static const ExpertWeights router(WeightDtype::bf16, kRouterExperts, kHidden, 1);
  const auto x = random_floats(kHidden, 1);
  std::vector<float> logits(kRouterExperts), h(2 * kInter), act(kInter), y(kHidden), scaled(kHidden);
  const double triad = triad_bytes_per_s();
  const CpuContext c = ctx();
  std::int64_t step = 0;
  for (auto _ : state) {
    // router logits and top-1 (Llama 4: sigmoid weight scales the expert input)
    matmul(c, x.data(), 1, router.view(0), logits.data());
    std::int32_t id = 0;
    float weight = 0;
    router_topk(c, logits.data(), 1, kRouterExperts, 1, RouterScoring::sigmoid_topk, &id, &weight);
    const int e = static_cast<int>(step++ % kExperts);  // random logits: pick the expert round-robin instead
    scale(c, x.data(), weight, scaled.data(), kHidden);
    // routed expert
    matmul(c, scaled.data(), 1, gate_up.view(e), h.data());
    silu_mul_fused(c, h.data(), 1, kInter, act.data());
    matmul(c, act.data(), 1, down.view(e), y.data());
    // shared expert, added on
    matmul(c, x.data(), 1, gate_up.view(kExperts), h.data());
    silu_mul_fused(c, h.data(), 1, kInter, act.data());
    matmul(c, act.data(), 1, down.view(kExperts), y.data(), true);
    benchmark::DoNotOptimize(y.data());
  }
  const double expert_bytes = static_cast<double>((2 * kInter * kHidden + kHidden * kInter) * 2);
  const double bytes = 2 * expert_bytes + static_cast<double>(kRouterExperts * kHidden * 2);
  report_bandwidth(state, bytes * static_cast<double>(state.iterations()), triad);
  state.SetLabel(std::string("bf16 ") + cpu_path_name(ctx().path));
}
BENCHMARK(BM_moe_layer_decode)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(2.0);

// ---- 512 prompt tokens through a Maverick-width MoE FFN slice of 16 experts: router (16 logits), top-1, the routed
// rows gathered by expert (input scaled by the sigmoid weight, Llama 4), one grouped gate_up [16384, 5120] ->
// SwiGLU -> grouped down [5120, 8192], scattered back, plus the shared expert over all 512 rows; BF16 weights. Token t
// goes to expert t % 16 (32 rows each: random logits would make the load, and so the work, differ from PyTorch's
// run in bench/torch). FLOP = 2 x 512 x 3 x 5120 x 8192 x 2 (routed + shared) + the router's.

void BM_moe_layer_prefill(benchmark::State& state) {
  constexpr std::int64_t kHidden = 5120, kInter = 8192, kExperts = 16, kTokens = 512;
  static const ExpertWeights gate_up(WeightDtype::bf16, 2 * kInter, kHidden, kExperts + 1);  // last = shared
  static const ExpertWeights down(WeightDtype::bf16, kHidden, kInter, kExperts + 1);
  static const ExpertWeights router(WeightDtype::bf16, kExperts, kHidden, 1);
  const auto x = random_floats(static_cast<std::size_t>(kTokens * kHidden), 1);
  std::vector<float> logits(kTokens * kExperts), weights(kTokens), x_sorted(kTokens * kHidden),
      h(kTokens * 2 * kInter), act(kTokens * kInter), y_sorted(kTokens * kHidden), y(kTokens * kHidden);
  std::vector<std::int32_t> ids(kTokens);
  std::vector<WeightView> gate_up_views, down_views;
  for (int e = 0; e < kExperts; ++e) {
    gate_up_views.push_back(gate_up.view(e));
    down_views.push_back(down.view(e));
  }
  const Rate peak = peak_flops();
  CpuContext c = ctx();
  c.bf16_activations = state.range(0) != 0;  // 1: x rounded to BF16 on AMX tiles where the CPU has them
  const double c0 = process_cpu_s();
  for (auto _ : state) {
    matmul(c, x.data(), kTokens, router.view(0), logits.data());
    router_topk(c, logits.data(), kTokens, kExperts, 1, RouterScoring::sigmoid_topk, ids.data(), weights.data());
    for (std::int64_t t = 0; t < kTokens; ++t) ids[static_cast<std::size_t>(t)] = static_cast<std::int32_t>(t % kExperts);
    const ExpertDispatch d = build_expert_dispatch(ids.data(), weights.data(), kTokens, 1, kExperts);
    gather_rows(c, x.data(), kHidden, d.row_token.data(), d.row_weight.data(), kTokens, x_sorted.data());
    grouped_matmul(c, x_sorted.data(), d.expert_offsets.data(), kExperts, gate_up_views.data(), h.data());
    silu_mul_fused(c, h.data(), kTokens, kInter, act.data());
    grouped_matmul(c, act.data(), d.expert_offsets.data(), kExperts, down_views.data(), y_sorted.data());
    // shared expert over every row, then the routed rows added back in token order
    matmul(c, x.data(), kTokens, gate_up.view(kExperts), h.data());
    silu_mul_fused(c, h.data(), kTokens, kInter, act.data());
    matmul(c, act.data(), kTokens, down.view(kExperts), y.data());
    scatter_add_rows(c, y_sorted.data(), kHidden, d.row_token.data(), nullptr, kTokens, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  const double cpu = process_cpu_s() - c0;
  const double flops = 2.0 * kTokens * (2.0 * 3.0 * kHidden * kInter + kExperts * kHidden);
  const double total = flops * static_cast<double>(state.iterations());
  state.counters["flops_per_s"] = benchmark::Counter(total, benchmark::Counter::kIsRate);
  state.counters["flops_vs_peak"] = benchmark::Counter(total / peak.per_wall_s(), benchmark::Counter::kIsRate);
  state.counters["flops_vs_peak_cpu"] = total / cpu / peak.per_cpu_s();
  const bool amx = amx_bf16_active(c);
  state.SetLabel(std::string("bf16 ") + cpu_path_name(ctx().path) + (amx ? ", x in bf16 on AMX" : ", x in fp32"));
}
BENCHMARK(BM_moe_layer_prefill)
    ->ArgName("bf16_activations")
    ->Arg(0)
    ->Arg(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(4.0);

// ---- Prefill GEMM: 512 tokens through a Maverick expert-width projection.

void BM_prefill_gemm(benchmark::State& state) {
  const auto dtype = static_cast<WeightDtype>(state.range(0));
  const std::int64_t M = state.range(1), N = state.range(2), K = state.range(3);
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(N * K * weight_dtype_bytes(dtype)));
  ExpertWeights::fill_small_values(bytes, dtype);
  const WeightView w{dtype, bytes.data(), N, K, nullptr};
  const auto x = random_floats(static_cast<std::size_t>(M * K), 2);
  std::vector<float> y(static_cast<std::size_t>(M * N));
  const Rate peak = peak_flops();
  CpuContext c = ctx();
  c.bf16_activations = state.range(4) != 0;
  const double c0 = process_cpu_s();
  for (auto _ : state) {
    matmul(c, x.data(), M, w, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  const double cpu = process_cpu_s() - c0;
  const double flops = 2.0 * static_cast<double>(M) * static_cast<double>(N) * static_cast<double>(K);
  const double total = flops * static_cast<double>(state.iterations());
  state.counters["flops_per_s"] = benchmark::Counter(total, benchmark::Counter::kIsRate);
  state.counters["flops_vs_peak"] = benchmark::Counter(total / peak.per_wall_s(), benchmark::Counter::kIsRate);
  // The same ratio per CPU-second (all threads): what the kernel reaches in the time it actually ran, which on a
  // shared machine is the fairer comparison.
  state.counters["flops_vs_peak_cpu"] = total / cpu / peak.per_cpu_s();
  state.counters["peak_GFLOPs"] = peak.per_wall_s() / 1e9;
  const bool amx = amx_bf16_active(c) && dtype == WeightDtype::bf16;
  state.SetLabel(std::string(weight_dtype_name(dtype)) + " " + cpu_path_name(ctx().path) +
                 (amx ? ", x in bf16 on AMX (flops_vs_peak: against the fp32 FMA peak)" : ""));
}
BENCHMARK(BM_prefill_gemm)
    ->ArgNames({"dtype", "M", "N", "K", "bf16_activations"})
    ->Args({static_cast<int>(WeightDtype::bf16), 512, 8192, 5120, 0})
    ->Args({static_cast<int>(WeightDtype::f32), 512, 8192, 5120, 0})
    ->Args({static_cast<int>(WeightDtype::bf16), 512, 8192, 5120, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(2.0);

// ---- Attention

void run_attention(benchmark::State& state, std::int64_t tq, std::int64_t tk) {
  AttentionParams p;
  p.q_tokens = tq;
  p.kv_tokens = tk;
  p.q_heads = 40;
  p.kv_heads = 8;
  p.head_dim = 128;
  p.scale = 1.0f / std::sqrt(128.0f);
  const auto q = random_floats(static_cast<std::size_t>(tq * 40 * 128), 1);
  const auto k = random_floats(static_cast<std::size_t>(tk * 8 * 128), 2);
  const auto v = random_floats(static_cast<std::size_t>(tk * 8 * 128), 3);
  std::vector<std::int64_t> pos(static_cast<std::size_t>(tq));
  for (std::int64_t t = 0; t < tq; ++t) pos[static_cast<std::size_t>(t)] = tk - tq + t;
  std::vector<float> out(q.size());
  for (auto _ : state) {
    attention(ctx(), p, q.data(), pos.data(), k.data(), v.data(), out.data());
    benchmark::DoNotOptimize(out.data());
  }
  // FLOP: q·k and p·v over the visible keys (causal: on average half of them for prefill)
  double visible = 0;
  for (std::int64_t t = 0; t < tq; ++t) visible += static_cast<double>(pos[static_cast<std::size_t>(t)] + 1);
  const double flops = 4.0 * 40 * 128 * visible;
  state.counters["flops_per_s"] =
      benchmark::Counter(flops * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.SetBytesProcessed(static_cast<std::int64_t>(static_cast<double>(k.size() + v.size()) * 4.0 *
                                                    static_cast<double>(state.iterations())));
}
void BM_attention_decode(benchmark::State& state) { run_attention(state, 1, state.range(0)); }
BENCHMARK(BM_attention_decode)->Arg(8192)->Arg(65536)->Unit(benchmark::kMicrosecond)->UseRealTime();
void BM_attention_prefill(benchmark::State& state) { run_attention(state, state.range(0), state.range(0)); }
BENCHMARK(BM_attention_prefill)->Arg(512)->Unit(benchmark::kMillisecond)->UseRealTime();

// ---- Elementwise ops at Maverick widths

void BM_rmsnorm(benchmark::State& state) {
  const std::int64_t tokens = state.range(0), hidden = 5120;
  const auto x = random_floats(static_cast<std::size_t>(tokens * hidden), 1);
  const auto w = random_floats(static_cast<std::size_t>(hidden), 2);
  std::vector<float> y(x.size());
  for (auto _ : state) {
    rmsnorm(ctx(), x.data(), w.data(), y.data(), tokens, hidden, 1e-5f);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * tokens * hidden * 8);
}
BENCHMARK(BM_rmsnorm)->Arg(1)->Arg(512)->UseRealTime();

void BM_rope(benchmark::State& state) {
  const std::int64_t tokens = state.range(0), heads = 40, d = 128;
  auto x = random_floats(static_cast<std::size_t>(tokens * heads * d), 1);
  const auto inv_freq = rope_default_inv_freq(500000.0f, d);
  std::vector<std::int64_t> pos(static_cast<std::size_t>(tokens));
  for (std::int64_t t = 0; t < tokens; ++t) pos[static_cast<std::size_t>(t)] = t;
  for (auto _ : state) {
    rope(ctx(), x.data(), tokens, heads, d, pos.data(), inv_freq.data(), RopeLayout::interleaved);
    benchmark::DoNotOptimize(x.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * tokens * heads * d * 8);
}
BENCHMARK(BM_rope)->Arg(1)->Arg(512)->UseRealTime();

void BM_silu_mul(benchmark::State& state) {
  const std::int64_t n = state.range(0);
  const auto g = random_floats(static_cast<std::size_t>(n), 1), u = random_floats(static_cast<std::size_t>(n), 2);
  std::vector<float> out(g.size());
  for (auto _ : state) {
    silu_mul(ctx(), g.data(), u.data(), out.data(), n);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * n * 12);
}
BENCHMARK(BM_silu_mul)->Arg(8192)->Arg(512 * 8192)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
