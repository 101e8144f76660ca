// calibrate/gpu_calibrate: op timings on a backend into a GPU op profile (see gpu_calibrate.hpp).
#include "calibrate/gpu_calibrate.hpp"

#include <algorithm>
#include <cmath>
#include <deque>
#include <stdexcept>

#include "common/error.hpp"
#include "common/splitmix.hpp"
#include "kernels/gpu_ops.hpp"
#include "kernels/router.hpp"
#include "kernels/weights.hpp"

namespace moeplan::calibrate {

namespace {

constexpr const char* kKernel = "moeplan_cuda";  // the profile's kernel field: this executor's CUDA backend

// A random BF16 matrix [rows, cols] in host memory (uniform in ±1/sqrt(cols), so products stay near 1).
std::vector<std::uint16_t> random_bf16(std::int64_t rows, std::int64_t cols, std::uint64_t& state) {
  std::vector<std::uint16_t> w(static_cast<std::size_t>(rows * cols));
  const double scale = 1.0 / std::sqrt(static_cast<double>(cols));
  for (auto& b : w) b = kernels::float_to_bf16(static_cast<float>((2.0 * splitmix64_unit(state) - 1.0) * scale));
  return w;
}

std::vector<float> random_floats(std::int64_t n, std::uint64_t& state) {
  std::vector<float> x(static_cast<std::size_t>(n));
  for (auto& f : x) f = static_cast<float>(2.0 * splitmix64_unit(state) - 1.0);
  return x;
}

// Mean seconds of `repeats` calls of `op` after one warm-up call, in one timing span of the backend
// (Backend::span_begin: the time between two stream events on CUDA, wall time on the CPU).
template <class Op>
double time_op(executor::Backend& b, int repeats, Op&& op) {
  op();
  b.spans_clear();
  const std::size_t span = b.span_begin();
  for (int i = 0; i < repeats; ++i) op();
  b.span_end(span);
  const double seconds = b.span_seconds(span) / repeats;
  b.spans_clear();
  return seconds;
}

void add_unique(std::vector<GemmShape>& shapes, std::int64_t n, std::int64_t k, const std::string& op) {
  if (n <= 0 || k <= 0) return;
  for (auto& s : shapes)
    if (s.n == n && s.k == k) {
      s.ops += ", " + op;
      return;
    }
  shapes.push_back({n, k, op});
}

// Host weights outlive the calibration: a backend may key what it made resident by their address.
using HostWeights = std::deque<std::vector<std::uint16_t>>;

simulator::GpuProfileCurveData gemm_curve(executor::Backend& b, const GemmShape& s, const GpuCalibrateRequest& q,
                                          std::uint64_t& state, HostWeights& keep) {
  const std::int64_t max_m = q.tokens.back();
  const std::vector<std::uint16_t>& host_w = keep.emplace_back(random_bf16(s.n, s.k, state));
  const kernels::WeightView w = b.resident({kernels::WeightDtype::bf16, host_w.data(), s.n, s.k, nullptr});
  const std::vector<float> host_x = random_floats(max_m * s.k, state);
  const executor::DeviceArray<float> x(b, host_x.data(), max_m * s.k);
  executor::DeviceArray<float> y(b, max_m * s.n);
  simulator::GpuProfileCurveData c;
  c.kind = simulator::GpuCurveKind::gemm;
  c.fields = {{"dtype", "bf16"}, {"n", std::to_string(s.n)}, {"k", std::to_string(s.k)}, {"kernel", kKernel}};
  for (const std::int64_t m : q.tokens) {
    c.x.push_back(static_cast<double>(m));
    c.seconds.push_back(time_op(b, q.repeats, [&] { b.matmul(x.data(), m, w, y.data(), false); }));
  }
  return c;
}

// The routed-expert block as AIConfigurator's MoE tables time it (docs/gpu_profiles.md): from given routing, the
// permutation, both expert GEMMs with the activation, and the weighted un-permute; no router GEMM, no communication.
// Routing: the balanced router, token i to experts (i + j * ceil(E / k)) mod E.
simulator::GpuProfileCurveData moe_curve(executor::Backend& b, const GpuCalibrateRequest& q, std::uint64_t& state,
                                         HostWeights& keep) {
  const model::ModelConfig& m = q.model;
  const std::int64_t H = m.hidden, I = m.moe_intermediate, E = m.num_experts, K = m.experts_per_token;
  std::vector<kernels::WeightView> gate_host, up_host, down_host;
  for (std::int64_t e = 0; e < E; ++e) {
    const auto& g = keep.emplace_back(random_bf16(I, H, state));
    const auto& u = keep.emplace_back(random_bf16(I, H, state));
    const auto& d = keep.emplace_back(random_bf16(H, I, state));
    gate_host.push_back({kernels::WeightDtype::bf16, g.data(), I, H, nullptr});
    up_host.push_back({kernels::WeightDtype::bf16, u.data(), I, H, nullptr});
    down_host.push_back({kernels::WeightDtype::bf16, d.data(), H, I, nullptr});
  }
  // The experts as the session holds them: gate and up as one fused group where the backend makes one (the CUDA
  // backend: one grouped GEMM with the activation in its epilogue), else each projection as a group; down as a group.
  const auto gate_up = b.resident_gate_up(gate_host.data(), up_host.data(), gate_host.size());
  std::vector<kernels::WeightView> gate, up;
  if (gate_up.empty()) {
    gate = b.resident_group(gate_host.data(), gate_host.size());
    up = b.resident_group(up_host.data(), up_host.size());
  }
  const auto down = b.resident_group(down_host.data(), down_host.size());
  const std::int64_t max_t = q.tokens.back(), max_rows = max_t * K;
  const std::vector<float> host_x = random_floats(max_t * H, state);
  const executor::DeviceArray<float> x(b, host_x.data(), max_t * H);
  executor::DeviceArray<float> y(b, max_t * H), xs(b, max_rows * H), gs(b, max_rows * I), us(b, max_rows * I),
      ys(b, max_rows * H);
  simulator::GpuProfileCurveData c;
  c.kind = simulator::GpuCurveKind::moe;
  c.fields = {{"dtype", "bf16"},      {"hidden", std::to_string(H)},  {"inter", std::to_string(I)},
              {"experts", std::to_string(E)}, {"topk", std::to_string(K)}, {"tp", "1"},
              {"ep", "1"},            {"dist", "balanced"},            {"kernel", kKernel}};
  const std::int64_t stride = (E + K - 1) / K;
  for (const std::int64_t T : q.tokens) {
    std::vector<std::int32_t> ids(static_cast<std::size_t>(T * K));
    std::vector<float> weights(ids.size(), 1.0f / static_cast<float>(K));
    for (std::int64_t i = 0; i < T; ++i)
      for (std::int64_t j = 0; j < K; ++j) ids[static_cast<std::size_t>(i * K + j)] = static_cast<std::int32_t>((i + j * stride) % E);
    auto block = [&] {
      const kernels::ExpertDispatch d = kernels::build_expert_dispatch(ids.data(), weights.data(), T, K, E);
      const std::int64_t R = static_cast<std::int64_t>(d.row_token.size());
      const executor::DeviceArray<std::int64_t> tokens(b, d.row_token.data(), R);
      const executor::DeviceArray<float> scales(b, d.row_weight.data(), R);
      b.permute(x.data(), H, tokens.data(), nullptr, R, xs.data());
      if (!gate_up.empty()) {
        b.grouped_swiglu(xs.data(), d.expert_offsets.data(), nullptr, R, E, gate_up.data(), gs.data());
      } else {
        b.grouped_matmul(xs.data(), d.expert_offsets.data(), E, gate.data(), gs.data());
        b.grouped_matmul(xs.data(), d.expert_offsets.data(), E, up.data(), us.data());
        b.silu_mul(gs.data(), us.data(), gs.data(), R * I);
      }
      b.grouped_matmul(gs.data(), d.expert_offsets.data(), E, down.data(), ys.data());
      b.unpermute_add(ys.data(), H, tokens.data(), scales.data(), R, y.data());
    };
    c.x.push_back(static_cast<double>(T));
    c.seconds.push_back(time_op(b, q.repeats, block));
  }
  return c;
}

// Decode attention of one shape: for each batch a curve of one paged_attention_decode call over BF16 pages of
// kPageTokens positions against the keys attended per sequence. The pages stay zero-filled: the kernel's work does
// not depend on the values (no data-dependent branch), and writing gigabytes of random keys would take longer than
// timing them. Each sequence's pages are its own (no two sequences share a page), so every call reads its keys from
// memory as serving does.
std::vector<simulator::GpuProfileCurveData> decode_curves(executor::Backend& b, const DecodeShape& s,
                                                          const GpuCalibrateRequest& q, std::uint64_t& state) {
  constexpr std::int64_t kPageTokens = 64;
  const std::int64_t max_batch = q.decode_batches.back(), max_keys = q.decode_keys.back();
  const kernels::gpu::PagedKvLayout layout{kPageTokens, s.kv_heads, s.head_dim, (max_keys + kPageTokens - 1) / kPageTokens};
  const std::int64_t pages = max_batch * layout.max_pages_per_seq;
  const executor::DeviceArray<std::uint16_t> k(b, pages * kernels::gpu::paged_kv_page_elems(layout)),
      v(b, pages * kernels::gpu::paged_kv_page_elems(layout));  // BF16 codes
  std::vector<std::int32_t> host_table(static_cast<std::size_t>(pages));
  for (std::int64_t i = 0; i < pages; ++i) host_table[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(i);
  const executor::DeviceArray<std::int32_t> table(b, host_table.data(), pages);
  const std::vector<float> host_q = random_floats(max_batch * s.heads * s.head_dim, state);
  const executor::DeviceArray<float> query(b, host_q.data(), max_batch * s.heads * s.head_dim);
  executor::DeviceArray<float> out(b, max_batch * s.heads * s.head_dim);
  kernels::DecodeAttentionParams p;
  p.q_heads = s.heads;
  p.kv_heads = s.kv_heads;
  p.head_dim = s.head_dim;
  p.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(s.head_dim)));
  p.mask = s.window > 0 ? kernels::AttentionMask::chunked : kernels::AttentionMask::causal;
  p.chunk_tokens = s.window;
  p.kv_dtype = kernels::KvPageDtype::bf16;
  std::vector<simulator::GpuProfileCurveData> curves;
  for (const std::int64_t batch : q.decode_batches) {
    simulator::GpuProfileCurveData c;
    c.kind = simulator::GpuCurveKind::attn_decode;
    c.fields = {{"dtype", "bf16"},      {"kv", "bf16"},
                {"heads", std::to_string(s.heads)}, {"kv_heads", std::to_string(s.kv_heads)},
                {"head_dim", std::to_string(s.head_dim)}, {"window", std::to_string(s.window)},
                {"batch", std::to_string(batch)},       {"kernel", kKernel}};
    p.seqs = batch;
    for (const std::int64_t keys : q.decode_keys) {
      const std::vector<std::int32_t> host_lens(static_cast<std::size_t>(batch), static_cast<std::int32_t>(keys));
      const executor::DeviceArray<std::int32_t> lens(b, host_lens.data(), batch);
      const std::int64_t visible = s.window > 0 ? keys - (keys - 1) / s.window * s.window : keys;
      c.x.push_back(static_cast<double>(keys));
      c.seconds.push_back(time_op(b, q.repeats, [&] {
        b.paged_attention_decode(p, layout, query.data(), lens.data(), table.data(), k.data(), v.data(), visible, out.data());
      }));
    }
    curves.push_back(std::move(c));
  }
  return curves;
}

}  // namespace

std::vector<DecodeShape> decode_shapes(const model::ModelConfig& m) {
  std::vector<std::int64_t> windows;
  for (const model::LayerSpec& l : m.layers) {
    const std::int64_t w = l.attention == model::AttentionKind::global ? 0
                           : l.attention == model::AttentionKind::chunked ? l.attention_window_tokens
                                                                          : -1;
    if (w >= 0 && std::find(windows.begin(), windows.end(), w) == windows.end()) windows.push_back(w);
  }
  std::sort(windows.begin(), windows.end());
  std::vector<DecodeShape> shapes;
  for (const std::int64_t tp : {1, 2, 4, 8})
    if (m.num_heads % tp == 0 && m.num_kv_heads % tp == 0)
      for (const std::int64_t w : windows) shapes.push_back({m.num_heads / tp, m.num_kv_heads / tp, m.head_dim, w});
  return shapes;
}

std::vector<GemmShape> gemm_shapes(const model::ModelConfig& m) {
  const std::int64_t H = m.hidden, D = m.head_dim;
  std::vector<GemmShape> shapes;
  add_unique(shapes, m.num_heads * D, H, "attn.qkv (q)");
  add_unique(shapes, m.num_kv_heads * D, H, "attn.qkv (k, v)");
  add_unique(shapes, H, m.num_heads * D, "attn.o");
  add_unique(shapes, m.dense_intermediate, H, "mlp.gate_up");
  add_unique(shapes, H, m.dense_intermediate, "mlp.down");
  add_unique(shapes, m.shared_intermediate, H, "moe.shared.gate_up");
  add_unique(shapes, H, m.shared_intermediate, "moe.shared.down");
  add_unique(shapes, m.num_experts, H, "moe.router");
  add_unique(shapes, m.vocab, H, "lm_head");
  return shapes;
}

simulator::GpuProfileData calibrate_gpu_ops(executor::Backend& backend, const GpuCalibrateRequest& q) {
  if (q.tokens.empty() || q.repeats < 1) throw InputError("calibrate: give at least one token count and one repeat");
  for (const auto* list : {&q.tokens, &q.decode_batches, &q.decode_keys})
    for (std::size_t i = 0; i < list->size(); ++i)
      if ((*list)[i] < 1 || (i > 0 && (*list)[i] <= (*list)[i - 1]))
        throw InputError("calibrate: token counts, decode batches and decode keys must be positive and ascending");
  simulator::GpuProfileData p;
  p.gpu = q.gpu;
  p.engine = "moeplan";
  p.engine_version = "cuda-backend";
  p.source = "moeplan calibrate --device " + std::string(executor::device_kind_name(backend.kind())) + " on " +
             q.device_description + ", model " + q.model.name;
  p.license = "measured on this machine";
  p.exported = q.date;
  const bool on_gpu = backend.kind() == executor::DeviceKind::cuda;
  p.comments.push_back(std::string(on_gpu ? "device time per call: " : "wall time per call: ") +
                       std::to_string(q.repeats) +
                       (on_gpu ? " calls between two CUDA events on the stream" : " calls") +
                       " after one warm-up call; BF16 weights, fp32 activations" +
                       (on_gpu ? "; the moe block builds its permutation on the host, and the events include that" : ""));
  std::uint64_t state = q.seed;
  HostWeights keep;
  for (const GemmShape& s : gemm_shapes(q.model)) {
    if (q.progress) q.progress("gemm n=" + std::to_string(s.n) + " k=" + std::to_string(s.k) + " (" + s.ops + ")");
    p.comments.push_back("gemm n=" + std::to_string(s.n) + " k=" + std::to_string(s.k) + ": " + s.ops);
    p.curves.push_back(gemm_curve(backend, s, q, state, keep));
  }
  if (!q.decode_batches.empty() && !q.decode_keys.empty()) {
    for (const DecodeShape& s : decode_shapes(q.model)) {
      kernels::DecodeAttentionParams check;
      check.q_heads = s.heads;
      check.kv_heads = s.kv_heads;
      check.head_dim = s.head_dim;
      check.mask = s.window > 0 ? kernels::AttentionMask::chunked : kernels::AttentionMask::causal;
      check.chunk_tokens = s.window;
      try {
        kernels::check_decode_params(check, {64, s.kv_heads, s.head_dim, 1});
      } catch (const std::invalid_argument& e) {  // a head size or grouping the paged decode kernel does not take
        p.comments.push_back("attn_decode heads=" + std::to_string(s.heads) + " kv_heads=" + std::to_string(s.kv_heads) +
                             " not measured: " + e.what());
        continue;
      }
      const std::string what = "attn_decode heads=" + std::to_string(s.heads) + " kv_heads=" + std::to_string(s.kv_heads) +
                               " head_dim=" + std::to_string(s.head_dim) + " window=" + std::to_string(s.window);
      if (q.progress) q.progress(what);
      for (auto& c : decode_curves(backend, s, q, state)) p.curves.push_back(std::move(c));
    }
  }
  if (q.model.is_moe() && q.model.moe_intermediate > 0) {
    if (q.progress) q.progress("moe experts=" + std::to_string(q.model.num_experts));
    p.curves.push_back(moe_curve(backend, q, state, keep));
  }
  return p;
}

}  // namespace moeplan::calibrate
