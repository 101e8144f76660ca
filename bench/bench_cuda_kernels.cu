// CUDA kernels against peers measured in the same run on the same device (STYLE rule 12):
//   BM_d2d_copy          cudaMemcpyAsync device to device, 1 GiB: bytes = 2 x size (read + write); the bandwidth
//                        roof the memory-bound kernels are compared with.
//   BM_decode_attention  paged decode (Maverick: 40 / 8 heads, D 128, fp32 KV in 64-token pages) for `seqs`
//                        sequences at `context` keys, split over the context by decode_split_plan: bytes = the K and
//                        V rows read (seqs x context x 8 x 128 x 4 x 2); bw_vs_copy = that rate / BM_d2d_copy's.
//   BM_dense_gemm        cuBLASLt, M x N x K = rows x 8192 x 5120 (Maverick's expert intermediate x hidden), BF16 or
//                        FP8 e4m3 (per-tensor scales), fp32 out: FLOP = 2 M N K.
//   BM_grouped_gemm      the grouped expert GEMM over the same M rows spread evenly over 16 experts of the same
//                        [8192, 5120] shape (so the same FLOP), BF16 or FP8 per-channel: tflops_vs_cublaslt = its
//                        rate / BM_dense_gemm's of the same dtype.
//   BM_moe_layer_decode  a Maverick MoE layer for one token as bench/torch/moe_layer.py --device cuda computes it in
//                        PyTorch (the peer: run that script on the same GPU for the ratio): BF16 router (128 x 5120)
//                        and sigmoid top-1 on the device, the routed expert's input scaled by its weight, gate_up
//                        [16384, 5120] -> SwiGLU -> down [5120, 8192] through cuBLASLt, the shared expert the same,
//                        the sum; the routed expert cycles over 8 so its weights come from HBM.
//   BM_moe_layer_prefill 512 tokens through a 16-expert slice, token t to expert t % 16 (the script's assignment):
//                        router and top-1 (weights), permutation by expert on the device, the rows gathered and scaled,
//                        the grouped GEMM with SwiGLU fused for gate_up and the grouped GEMM for down, the shared
//                        expert through the same kernels over all rows, the routed rows combined into its output.
// Each timed iteration first overwrites a 256 MiB buffer (so L2 holds none of the operands) and is timed with CUDA
// events around the kernel alone (manual time). Ratios use the last run of the peer in this process: run the peers
// in the same invocation. Without a device (or a build without CUDA) the program prints why and exits 0.
// Run: build/bench/moeplan_bench_cuda_kernels [--benchmark_filter=...]
#include <benchmark/benchmark.h>

#include <cstdio>
#include <functional>
#include <random>
#include <vector>

#include "kernels/cuda/device.cuh"
#include "kernels/device_query.hpp"
#include "kernels/gpu_ops.hpp"

using namespace moeplan::kernels;
using cuda::CudaEvent;
using cuda::CudaStream;
using cuda::DeviceBuffer;

namespace {

constexpr std::int64_t kHidden = 5120, kExpertInter = 8192;  // Llama 4 Maverick config.json
constexpr std::int64_t kExperts = 16;
double g_copy_bytes_per_s = 0;
double g_dense_flops_per_s[2] = {0, 0};  // [bf16, fp8]

int g_sm_count = 0;

// Times fn on the stream: flush L2, record, run, record; the kernel's milliseconds.
double timed_ms(CudaStream& stream, const std::function<void()>& fn) {
  static DeviceBuffer<unsigned char> flush(256u << 20);
  MOEPLAN_CUDA_CHECK(cudaMemsetAsync(flush.get(), 0, flush.bytes(), stream.get()));
  CudaEvent start, stop;
  start.record(stream.get());
  fn();
  stop.record(stream.get());
  return CudaEvent::elapsed_ms(start, stop);
}

template <class T>
DeviceBuffer<T> random_device(std::size_t n, std::uint32_t seed, T (*make)(float)) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  std::vector<T> host(n);
  for (auto& v : host) v = make(dist(rng));
  return DeviceBuffer<T>(host);
}
float as_float(float v) { return v; }
std::uint16_t as_bf16_ones(float v) { return v < 0 ? 0xbf80 : 0x3f80; }  // +-1 in BF16
std::uint8_t as_fp8(float v) { return v < 0 ? 0xb8 : 0x38; }              // +-1 in e4m3
// n BF16 values of 0x3c3c (0.0115, the size of trained weights), set on the device: the MoE layers' gigabytes of
// weights without generating them on the host (GEMM time does not depend on the values).
DeviceBuffer<std::uint16_t> small_bf16(std::size_t n) {
  DeviceBuffer<std::uint16_t> b(n);
  MOEPLAN_CUDA_CHECK(cudaMemset(b.get(), 0x3c, b.bytes()));
  return b;
}

// Runs fn state.iterations() times under timed_ms; sets the manual time and returns the mean seconds per call.
double run_timed(benchmark::State& state, CudaStream& stream, const std::function<void()>& fn) {
  double total_s = 0;
  for (auto _ : state) {
    const double s = timed_ms(stream, fn) / 1e3;
    state.SetIterationTime(s);
    total_s += s;
  }
  return state.iterations() > 0 ? total_s / static_cast<double>(state.iterations()) : 0;
}

void BM_d2d_copy(benchmark::State& state) {
  const std::size_t bytes = 1u << 30;
  DeviceBuffer<unsigned char> a(bytes), b(bytes);
  CudaStream stream;
  const double s = run_timed(state, stream, [&] {
    MOEPLAN_CUDA_CHECK(cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice, stream.get()));
  });
  g_copy_bytes_per_s = 2.0 * static_cast<double>(bytes) / s;
  state.counters["GB_per_s"] = g_copy_bytes_per_s * 1e-9;
}
BENCHMARK(BM_d2d_copy)->UseManualTime()->Unit(benchmark::kMillisecond);

void BM_decode_attention(benchmark::State& state) {
  const std::int64_t seqs = state.range(0), context = state.range(1);
  const DecodeAttentionParams p{seqs, 40, 8, 128, 0.08838835f, AttentionMask::causal, 0};
  const gpu::PagedKvLayout layout{64, 8, 128, gpu::ceil_div(context, 64)};
  const std::int64_t pages = seqs * layout.max_pages_per_seq;
  std::vector<std::int32_t> table(static_cast<std::size_t>(pages));
  for (std::int64_t i = 0; i < pages; ++i) table[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(i);
  const std::vector<std::int32_t> lens(static_cast<std::size_t>(seqs), static_cast<std::int32_t>(context));
  const auto page_floats = static_cast<std::size_t>(pages * gpu::paged_kv_page_elems(layout));
  auto k = random_device<float>(page_floats, 1, as_float), v = random_device<float>(page_floats, 2, as_float);
  auto q = random_device<float>(static_cast<std::size_t>(seqs * 40 * 128), 3, as_float);
  DeviceBuffer<float> out(q.size());
  DeviceBuffer<std::int32_t> d_table(table), d_lens(lens);
  const gpu::DecodeSplit split = gpu::decode_split_plan(context, seqs, 8, g_sm_count);
  DeviceBuffer<unsigned char> ws(static_cast<std::size_t>(gpu::decode_workspace_bytes(seqs, 40, 128, split)));
  CudaStream stream;
  const double s = run_timed(state, stream, [&] {
    cuda::paged_attention_decode(p, layout, q.get(), d_lens.get(), d_table.get(), k.get(), v.get(), out.get(), split,
                                 ws.get(), stream.handle());
  });
  const double bytes = static_cast<double>(seqs * context) * 8 * 128 * 4 * 2;
  state.counters["GB_per_s"] = bytes / s * 1e-9;
  state.counters["splits"] = static_cast<double>(split.splits);
  if (g_copy_bytes_per_s > 0) state.counters["bw_vs_copy"] = bytes / s / g_copy_bytes_per_s;
}
BENCHMARK(BM_decode_attention)
    ->Args({1, 8192})
    ->Args({8, 8192})
    ->Args({64, 8192})
    ->Args({1, 131072})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

// arg 0: dtype (0 BF16, 1 FP8); arg 1: rows M
void BM_dense_gemm(benchmark::State& state) {
  const bool fp8 = state.range(0) == 1;
  const std::int64_t m = state.range(1), n = kExpertInter, k = kHidden;
  cuda::DenseGemm gemm;
  DeviceBuffer<float> y(static_cast<std::size_t>(m * n));
  DeviceBuffer<float> scale(std::vector<float>{1.0f});
  CudaStream stream;
  double s = 0;
  if (fp8) {
    auto x = random_device<std::uint8_t>(static_cast<std::size_t>(m * k), 4, as_fp8);
    auto w = random_device<std::uint8_t>(static_cast<std::size_t>(n * k), 5, as_fp8);
    s = run_timed(state, stream, [&] {
      gemm.run(cuda::DenseGemmDtype::fp8_e4m3, x.get(), w.get(), scale.get(), scale.get(), y.get(), m, n, k,
               stream.handle());
    });
  } else {
    auto x = random_device<std::uint16_t>(static_cast<std::size_t>(m * k), 4, as_bf16_ones);
    auto w = random_device<std::uint16_t>(static_cast<std::size_t>(n * k), 5, as_bf16_ones);
    s = run_timed(state, stream, [&] {
      gemm.run(cuda::DenseGemmDtype::bf16, x.get(), w.get(), nullptr, nullptr, y.get(), m, n, k, stream.handle());
    });
  }
  const double flops = 2.0 * static_cast<double>(m * n * k);
  g_dense_flops_per_s[fp8 ? 1 : 0] = flops / s;
  state.counters["TFLOP_per_s"] = flops / s * 1e-12;
}
BENCHMARK(BM_dense_gemm)->Args({0, 4096})->Args({1, 4096})->UseManualTime()->Unit(benchmark::kMicrosecond);

// arg 0: dtype (0 BF16, 1 FP8 per-channel); arg 1: rows M, spread evenly over kExperts experts
void BM_grouped_gemm(benchmark::State& state) {
  const bool fp8 = state.range(0) == 1;
  const std::int64_t m = state.range(1), n = kExpertInter, k = kHidden;
  std::vector<std::int64_t> offsets(kExperts + 1);
  for (std::int64_t e = 0; e <= kExperts; ++e) offsets[static_cast<std::size_t>(e)] = m * e / kExperts;
  DeviceBuffer<std::int64_t> d_offsets(offsets);
  DeviceBuffer<float> y(static_cast<std::size_t>(m * n));
  const GroupedGemmShape shape{m, kExperts, n, k, false};
  CudaStream stream;
  double s = 0;
  const auto w_elems = static_cast<std::size_t>(kExperts * n * k);
  if (fp8) {
    auto x = random_device<std::uint8_t>(static_cast<std::size_t>(m * k), 4, as_fp8);
    auto w = random_device<std::uint8_t>(w_elems, 5, as_fp8);
    DeviceBuffer<float> x_scale(std::vector<float>(static_cast<std::size_t>(m), 1.0f));
    DeviceBuffer<float> w_scale(std::vector<float>(static_cast<std::size_t>(kExperts * n), 1.0f));
    s = run_timed(state, stream, [&] {
      cuda::grouped_gemm_fp8(x.get(), x_scale.get(), w.get(), w_scale.get(), gpu::Fp8ScaleLayout::per_channel,
                             d_offsets.get(), shape, y.get(), stream.handle());
    });
  } else {
    auto x = random_device<std::uint16_t>(static_cast<std::size_t>(m * k), 4, as_bf16_ones);
    auto w = random_device<std::uint16_t>(w_elems, 5, as_bf16_ones);
    s = run_timed(state, stream, [&] {
      cuda::grouped_gemm_bf16(x.get(), w.get(), d_offsets.get(), shape, y.get(), stream.handle());
    });
  }
  const double flops = 2.0 * static_cast<double>(m * n * k);
  state.counters["TFLOP_per_s"] = flops / s * 1e-12;
  if (g_dense_flops_per_s[fp8 ? 1 : 0] > 0)
    state.counters["tflops_vs_cublaslt"] = flops / s / g_dense_flops_per_s[fp8 ? 1 : 0];
}
BENCHMARK(BM_grouped_gemm)->Args({0, 4096})->Args({1, 4096})->UseManualTime()->Unit(benchmark::kMicrosecond);

// The shared pieces of the two MoE-layer benchmarks: BF16 weights of a router of `router_rows` experts, of `experts`
// routed experts and of the shared one.
struct MoeLayerWeights {
  MoeLayerWeights(std::int64_t router_rows, std::int64_t experts)
      : router(small_bf16(static_cast<std::size_t>(router_rows * kHidden))),
        gate_up(small_bf16(static_cast<std::size_t>(experts * 2 * kExpertInter * kHidden))),
        down(small_bf16(static_cast<std::size_t>(experts * kHidden * kExpertInter))),
        shared_gate_up(small_bf16(static_cast<std::size_t>(2 * kExpertInter * kHidden))),
        shared_down(small_bf16(static_cast<std::size_t>(kHidden * kExpertInter))) {}
  DeviceBuffer<std::uint16_t> router, gate_up, down, shared_gate_up, shared_down;
};

// One token through one expert's FFN with cuBLASLt: y[hidden] = down(silu(gate) * up) of x_bf16 [hidden]; h, a,
// a_bf16 are scratch of 2I, I and I.
void decode_ffn(cuda::DenseGemm& gemm, const std::uint16_t* x_bf16, const std::uint16_t* gate_up,
                const std::uint16_t* down, float* h, float* a, std::uint16_t* a_bf16, float* y, void* stream) {
  gemm.run(cuda::DenseGemmDtype::bf16, x_bf16, gate_up, nullptr, nullptr, h, 1, 2 * kExpertInter, kHidden, stream);
  cuda::silu_mul(h, h + kExpertInter, a, kExpertInter, stream);
  cuda::convert_bf16(a, kExpertInter, a_bf16, stream);
  gemm.run(cuda::DenseGemmDtype::bf16, a_bf16, down, nullptr, nullptr, y, 1, kHidden, kExpertInter, stream);
}

void BM_moe_layer_decode(benchmark::State& state) {
  constexpr std::int64_t kRouted = 8;
  const MoeLayerWeights w(128, kRouted);
  cuda::DenseGemm gemm;
  auto x = random_device<float>(kHidden, 11, as_float);
  DeviceBuffer<std::uint16_t> x_bf16(kHidden), xs_bf16(kHidden), a_bf16(kExpertInter);
  DeviceBuffer<float> logits(128), top_w(1), xs(kHidden), h(2 * kExpertInter), a(kExpertInter), y(kHidden),
      y_shared(kHidden);
  DeviceBuffer<std::int32_t> top_id(1);
  DeviceBuffer<std::int64_t> row0(std::vector<std::int64_t>{0});
  CudaStream stream;
  void* st = stream.handle();
  std::int64_t i = 0;
  run_timed(state, stream, [&] {
    const std::int64_t e = i++ % kRouted;  // round-robin, as the PyTorch peer does
    cuda::convert_bf16(x.get(), kHidden, x_bf16.get(), st);
    gemm.run(cuda::DenseGemmDtype::bf16, x_bf16.get(), w.router.get(), nullptr, nullptr, logits.get(), 1, 128, kHidden,
             st);
    cuda::router_topk(logits.get(), 1, 128, 1, RouterScoring::sigmoid_topk, top_id.get(), top_w.get(), st);
    cuda::gather_rows(x.get(), kHidden, row0.get(), top_w.get(), 1, xs.get(), st);  // x * sigmoid(weight)
    cuda::convert_bf16(xs.get(), kHidden, xs_bf16.get(), st);
    decode_ffn(gemm, xs_bf16.get(), w.gate_up.get() + e * 2 * kExpertInter * kHidden,
               w.down.get() + e * kHidden * kExpertInter, h.get(), a.get(), a_bf16.get(), y.get(), st);
    decode_ffn(gemm, x_bf16.get(), w.shared_gate_up.get(), w.shared_down.get(), h.get(), a.get(), a_bf16.get(),
               y_shared.get(), st);
    cuda::add(y.get(), y_shared.get(), y.get(), kHidden, st);
  });
}
BENCHMARK(BM_moe_layer_decode)->UseManualTime()->Unit(benchmark::kMillisecond);

void BM_moe_layer_prefill(benchmark::State& state) {
  constexpr std::int64_t kTokens = 512;
  const MoeLayerWeights w(kExperts, kExperts);
  cuda::DenseGemm gemm;
  std::vector<std::int32_t> ids(kTokens);
  for (std::int64_t t = 0; t < kTokens; ++t) ids[static_cast<std::size_t>(t)] = static_cast<std::int32_t>(t % kExperts);
  auto x = random_device<float>(static_cast<std::size_t>(kTokens * kHidden), 12, as_float);
  DeviceBuffer<std::int32_t> d_ids(ids), top_id(kTokens), row_token(kTokens), pair_row(kTokens);
  DeviceBuffer<float> logits(kTokens * kExperts), top_w(kTokens), row_w(kTokens), x_sorted(kTokens * kHidden),
      a(kTokens * kExpertInter), y_sorted(kTokens * kHidden), out(kTokens * kHidden);
  DeviceBuffer<std::uint16_t> x_bf16(kTokens * kHidden), xs_bf16(kTokens * kHidden), a_bf16(kTokens * kExpertInter);
  DeviceBuffer<std::int64_t> offsets(kExperts + 1), all_rows(std::vector<std::int64_t>{0, kTokens});
  DeviceBuffer<unsigned char> ws(static_cast<std::size_t>(gpu::permute_workspace_bytes(kTokens, kExperts)));
  const GroupedGemmShape gate_up{kTokens, kExperts, 2 * kExpertInter, kHidden, true};
  const GroupedGemmShape down{kTokens, kExperts, kHidden, kExpertInter, false};
  // The shared expert: every row, one group of the same kernels.
  const GroupedGemmShape shared_gate_up{kTokens, 1, 2 * kExpertInter, kHidden, true};
  const GroupedGemmShape shared_down{kTokens, 1, kHidden, kExpertInter, false};
  CudaStream stream;
  void* st = stream.handle();
  run_timed(state, stream, [&] {
    cuda::convert_bf16(x.get(), kTokens * kHidden, x_bf16.get(), st);
    gemm.run(cuda::DenseGemmDtype::bf16, x_bf16.get(), w.router.get(), nullptr, nullptr, logits.get(), kTokens,
             kExperts, kHidden, st);
    cuda::router_topk(logits.get(), kTokens, kExperts, 1, RouterScoring::sigmoid_topk, top_id.get(), top_w.get(), st);
    cuda::moe_permute(d_ids.get(), top_w.get(), kTokens, 1, kExperts, ws.get(), offsets.get(), row_token.get(),
                      row_w.get(), pair_row.get(), st);
    cuda::moe_gather(x.get(), kHidden, row_token.get(), row_w.get(), kTokens, x_sorted.get(), st);
    cuda::convert_bf16(x_sorted.get(), kTokens * kHidden, xs_bf16.get(), st);
    cuda::grouped_gemm_bf16(xs_bf16.get(), w.gate_up.get(), offsets.get(), gate_up, a.get(), st);
    cuda::convert_bf16(a.get(), kTokens * kExpertInter, a_bf16.get(), st);
    cuda::grouped_gemm_bf16(a_bf16.get(), w.down.get(), offsets.get(), down, y_sorted.get(), st);
    cuda::grouped_gemm_bf16(x_bf16.get(), w.shared_gate_up.get(), all_rows.get(), shared_gate_up, a.get(), st);
    cuda::convert_bf16(a.get(), kTokens * kExpertInter, a_bf16.get(), st);
    cuda::grouped_gemm_bf16(a_bf16.get(), w.shared_down.get(), all_rows.get(), shared_down, out.get(), st);
    cuda::moe_combine(y_sorted.get(), kHidden, pair_row.get(), nullptr, kTokens, 1, out.get(), st);
  });
}
BENCHMARK(BM_moe_layer_prefill)->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  const DeviceQuery devices = query_devices();
  if (!devices.cuda_built || devices.gpus.empty()) {
    std::printf("skipped: %s\n", devices.status.c_str());
    return 0;
  }
  g_sm_count = devices.gpus[0].multiprocessors;
  std::printf("device 0: %s (sm_%d%d, %d SMs)\n", devices.gpus[0].name.c_str(), devices.gpus[0].cc_major,
              devices.gpus[0].cc_minor, g_sm_count);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
