// calibrate: measure this host's kernels into a profile (see calibrate.hpp; method in docs/validation.md).
#include "calibrate/calibrate.hpp"

#include <unistd.h>

#include <algorithm>
#include <barrier>
#include <chrono>
#include <cstring>
#include <cmath>
#include <ctime>
#include <exception>
#include <fstream>
#include <memory>
#include <sstream>
#include <thread>

#include "common/error.hpp"
#include "common/splitmix.hpp"
#include "executor/comm.hpp"
#include "kernels/attention.hpp"
#include "kernels/cpu_features.hpp"
#include "kernels/matmul.hpp"
#include "kernels/norm.hpp"
#include "kernels/thread_pool.hpp"
#include "kernels/weights.hpp"
#include "moeplan/config.hpp"

namespace moeplan::calibrate {

using simulator::Curve;
using simulator::HostProfile;
using simulator::ProfileCurves;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::vector<float> random_floats(std::size_t n, std::uint64_t seed) {
  std::vector<float> v(n);
  for (float& f : v) f = static_cast<float>(2.0 * splitmix64_unit(seed) - 1.0);
  return v;
}

kernels::WeightDtype weight_dtype(const std::string& d) {
  if (d == "bf16") return kernels::WeightDtype::bf16;
  if (d == "f16") return kernels::WeightDtype::f16;
  if (d == "fp8") return kernels::WeightDtype::fp8_e4m3;
  if (d == "int8") return kernels::WeightDtype::int8;
  if (d == "f32") return kernels::WeightDtype::f32;
  throw InputError("--dtypes: unknown weight dtype '" + d + "' (use bf16, f16, fp8, int8, f32)");
}

// A [rows, cols] weight matrix of `dtype` filled with seeded values of a realistic scale, with row scales for the
// 8-bit types (the executor's FP8/INT8 layouts carry them).
struct ProbeMatrix {
  std::vector<std::byte> data;
  std::vector<float> scales;
  kernels::WeightView view;
  ProbeMatrix(kernels::WeightDtype dtype, std::int64_t rows, std::int64_t cols, std::uint64_t seed) {
    const std::int64_t n = rows * cols;
    data.resize(static_cast<std::size_t>(n * kernels::weight_dtype_bytes(dtype)));
    std::uint64_t s = seed;
    // 8-bit types in stored units (their row scale is 0.01): FP8 up to ±10, INT8 up to ±100
    const float unit = dtype == kernels::WeightDtype::fp8_e4m3 ? 100.0f
                       : dtype == kernels::WeightDtype::int8 ? 1000.0f
                                                             : 1.0f;
    for (std::int64_t i = 0; i < n; ++i) {
      const float f = static_cast<float>(0.1 * (2.0 * splitmix64_unit(s) - 1.0));
      kernels::encode_weight(dtype, f * unit, data.data() + i * kernels::weight_dtype_bytes(dtype));
    }
    if (kernels::weight_dtype_bytes(dtype) == 1) scales.assign(static_cast<std::size_t>(rows), 0.01f);
    view = {dtype, data.data(), rows, cols, scales.empty() ? nullptr : scales.data()};
  }
};

// The last-level cache in bytes (glibc's sysconf), 32 MiB when unknown.
double llc_bytes() {
  long v = -1;
#ifdef _SC_LEVEL3_CACHE_SIZE
  v = sysconf(_SC_LEVEL3_CACHE_SIZE);
  if (v <= 0) v = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
  return v > 0 ? static_cast<double>(v) : 32.0 * 1024 * 1024;
}

// Keeps, point by point, the higher rate of `into` and `pass` (the same x); an empty `into` takes `pass`.
void keep_fastest(Curve& into, const Curve& pass) {
  if (into.empty()) {
    into = pass;
    return;
  }
  if (into.x != pass.x) throw std::logic_error("calibrate: passes measured different points");
  for (std::size_t i = 0; i < into.y.size(); ++i) into.y[i] = std::max(into.y[i], pass.y[i]);
}

// Everything one rank measures; ranks run the same sequence in lockstep (a barrier before every repetition).
class Prober {
 public:
  Prober(const kernels::CpuContext& ctx, std::barrier<>* sync, const CalibrateRequest& r, int ranks)
      : ctx_(ctx), sync_(sync), quick_(r.quick), reps_(r.quick ? 3 : 5),
        target_bytes_(std::max(4 * llc_bytes(), (r.quick ? 96.0 : 192.0) * 1024 * 1024) / ranks) {}

  // Seconds per unit of the fastest repetition of `rep()` after one warm-up (interference from other processes only
  // adds time, so the fastest is the machine's own speed, as STREAM reports it); rep() returns the units it did.
  template <class F>
  double per_unit(F&& rep) {
    sync();
    rep();
    std::vector<double> t;
    for (int i = 0; i < reps_; ++i) {
      sync();
      const auto t0 = Clock::now();
      const double units = rep();
      t.push_back(seconds_since(t0) / units);
    }
    return *std::min_element(t.begin(), t.end());
  }

  Curve gemm(kernels::WeightDtype dtype) {
    const std::int64_t N = 2048, K = 2048;
    const double bytes = static_cast<double>(N * K * kernels::weight_dtype_bytes(dtype));
    const int mats = std::max(2, static_cast<int>(std::ceil(target_bytes_ / bytes)));
    std::vector<ProbeMatrix> w;
    for (int i = 0; i < mats; ++i) w.emplace_back(dtype, N, K, 1000 + static_cast<std::uint64_t>(i));
    Curve c;
    const std::vector<std::int64_t> ms = quick_ ? std::vector<std::int64_t>{1, 2, 4, 8, 16, 64, 256}
                                                : std::vector<std::int64_t>{1, 2, 4, 8, 16, 32, 64, 128, 256, 512};
    std::size_t next = 0;
    for (const std::int64_t m : ms) {
      const auto x = random_floats(static_cast<std::size_t>(m * K), 7);
      std::vector<float> y(static_cast<std::size_t>(m * N));
      // Calls per repetition: enough to stream every matrix once at small M; one at large M (compute-bound).
      const int calls = std::clamp(static_cast<int>(mats * 4 / m), 1, mats);
      const double s = per_unit([&] {
        for (int i = 0; i < calls; ++i) kernels::matmul(ctx_, x.data(), m, w[next++ % w.size()].view, y.data());
        return static_cast<double>(calls);
      });
      c.x.push_back(static_cast<double>(m));
      c.y.push_back(2.0 * static_cast<double>(m * N * K) / s);
    }
    return c;
  }

  Curve expert_gemm(kernels::WeightDtype dtype) {
    const std::int64_t E = 8, N = 2048, K = 2048;
    const double bytes = static_cast<double>(E * N * K * kernels::weight_dtype_bytes(dtype));
    const int sets = std::max(2, static_cast<int>(std::ceil(target_bytes_ / bytes)));
    std::vector<std::vector<ProbeMatrix>> w(static_cast<std::size_t>(sets));
    std::vector<std::vector<kernels::WeightView>> views(static_cast<std::size_t>(sets));
    for (int s = 0; s < sets; ++s)
      for (std::int64_t e = 0; e < E; ++e) {
        w[static_cast<std::size_t>(s)].emplace_back(dtype, N, K, 5000 + static_cast<std::uint64_t>(s * E + e));
        views[static_cast<std::size_t>(s)].push_back(w[static_cast<std::size_t>(s)].back().view);
      }
    Curve c;
    const std::vector<std::int64_t> ms = quick_ ? std::vector<std::int64_t>{1, 2, 4, 16, 64}
                                                : std::vector<std::int64_t>{1, 2, 4, 8, 16, 32, 64, 128};
    std::size_t next = 0;
    for (const std::int64_t m : ms) {
      const auto x = random_floats(static_cast<std::size_t>(E * m * K), 11);
      std::vector<float> y(static_cast<std::size_t>(E * m * N));
      std::vector<std::int64_t> offsets;
      for (std::int64_t e = 0; e <= E; ++e) offsets.push_back(e * m);
      const int calls = std::clamp(static_cast<int>(sets * 2 / m), 1, sets);
      const double s = per_unit([&] {
        for (int i = 0; i < calls; ++i)
          kernels::grouped_matmul(ctx_, x.data(), offsets.data(), E, views[next++ % views.size()].data(), y.data());
        return static_cast<double>(calls);
      });
      c.x.push_back(static_cast<double>(m));
      c.y.push_back(2.0 * static_cast<double>(E * m * N * K) / s);
    }
    return c;
  }

  // GQA 5 (Llama 4's 40 / 8 heads), head_dim 128; the rate per FLOP carries over to other head counts.
  static constexpr std::int64_t kHq = 10, kHkv = 2, kD = 128;

  Curve attention_decode() {
    Curve c;
    const std::vector<std::int64_t> keys = quick_ ? std::vector<std::int64_t>{64, 512, 4096}
                                                  : std::vector<std::int64_t>{64, 256, 1024, 4096, 16384};
    for (const std::int64_t n : keys) {
      const double cache_bytes = static_cast<double>(n * kHkv * kD * 4 * 2);
      const int seqs = std::clamp(static_cast<int>(target_bytes_ / cache_bytes), 1, 256);
      std::vector<std::vector<float>> k, v;
      for (int s = 0; s < seqs; ++s) {
        k.push_back(random_floats(static_cast<std::size_t>(n * kHkv * kD), 100 + static_cast<std::uint64_t>(s)));
        v.push_back(random_floats(static_cast<std::size_t>(n * kHkv * kD), 900 + static_cast<std::uint64_t>(s)));
      }
      const auto q = random_floats(static_cast<std::size_t>(kHq * kD), 3);
      std::vector<float> out(q.size());
      kernels::AttentionParams p;
      p.q_tokens = 1;
      p.kv_tokens = n;
      p.q_heads = kHq;
      p.kv_heads = kHkv;
      p.head_dim = kD;
      p.scale = 1.0f / std::sqrt(static_cast<float>(kD));
      const std::int64_t pos = n - 1;
      const double s = per_unit([&] {
        for (int i = 0; i < seqs; ++i)
          kernels::attention(ctx_, p, q.data(), &pos, k[static_cast<std::size_t>(i)].data(), v[static_cast<std::size_t>(i)].data(), out.data());
        return static_cast<double>(seqs);
      });
      c.x.push_back(static_cast<double>(n));
      c.y.push_back(4.0 * kHq * kD * static_cast<double>(n) / s);
    }
    return c;
  }

  Curve attention_prefill() {
    Curve c;
    const std::vector<std::int64_t> lengths = quick_ ? std::vector<std::int64_t>{64, 256, 1024}
                                                     : std::vector<std::int64_t>{64, 256, 1024, 2048, 4096};
    for (const std::int64_t n : lengths) {
      const auto q = random_floats(static_cast<std::size_t>(n * kHq * kD), 5);
      const auto k = random_floats(static_cast<std::size_t>(n * kHkv * kD), 6);
      const auto v = random_floats(static_cast<std::size_t>(n * kHkv * kD), 8);
      std::vector<float> out(q.size());
      std::vector<std::int64_t> pos(static_cast<std::size_t>(n));
      for (std::int64_t i = 0; i < n; ++i) pos[static_cast<std::size_t>(i)] = i;
      kernels::AttentionParams p;
      p.q_tokens = p.kv_tokens = n;
      p.q_heads = kHq;
      p.kv_heads = kHkv;
      p.head_dim = kD;
      p.scale = 1.0f / std::sqrt(static_cast<float>(kD));
      const double s = per_unit([&] {
        kernels::attention(ctx_, p, q.data(), pos.data(), k.data(), v.data(), out.data());
        return 1.0;
      });
      const double pairs = static_cast<double>(n) * static_cast<double>(n + 1) / 2.0;
      c.x.push_back(static_cast<double>(n + 1) / 2.0);
      c.y.push_back(4.0 * kHq * kD * pairs / s);
    }
    return c;
  }

  // Seconds per byte of rmsnorm over a working set that stays in the caches, as decode activations do (bytes as
  // the op graph counts them: read and write, 4-byte activations).
  double elementwise_s_per_byte() {
    const std::int64_t T = 64, H = 4096;
    const auto x = random_floats(static_cast<std::size_t>(T * H), 21);
    const std::vector<float> w(static_cast<std::size_t>(H), 1.0f);
    std::vector<float> y(x.size());
    return per_unit([&] {
      for (int i = 0; i < 16; ++i) kernels::rmsnorm(ctx_, x.data(), w.data(), y.data(), T, H, 1e-5f);
      return 16.0 * 2 * 4 * static_cast<double>(T * H);
    });
  }

  // One tiny matmul through the pool: the fixed cost of a kernel call.
  double op_overhead_s() {
    ProbeMatrix w(kernels::WeightDtype::f32, 64, 64, 42);
    const auto x = random_floats(64, 1);
    std::vector<float> y(64);
    return per_unit([&] {
      for (int i = 0; i < 200; ++i) kernels::matmul(ctx_, x.data(), 1, w.view, y.data());
      return 200.0;
    });
  }

  // In-process all-reduce: fixed seconds and seconds per byte from a small and a large message.
  std::pair<double, double> collective(executor::Communicator& comm) {
    auto time_n = [&](std::int64_t n) {
      std::vector<float> data(static_cast<std::size_t>(n), 1.0f);
      const int calls = n < 4096 ? 200 : 8;
      return per_unit([&] {
        for (int i = 0; i < calls; ++i) comm.all_reduce_sum(data.data(), n);
        return static_cast<double>(calls);
      });
    };
    const std::int64_t small = 256, large = 1 << 20;
    const double t_small = time_n(small), t_large = time_n(large);
    const double per_byte = std::max(1e-13, (t_large - t_small) / (4.0 * static_cast<double>(large - small)));
    return {std::max(0.0, t_small - per_byte * 4.0 * static_cast<double>(small)), per_byte};
  }

 private:
  void sync() {
    if (sync_) sync_->arrive_and_wait();
  }
  kernels::CpuContext ctx_;
  std::barrier<>* sync_;
  bool quick_;
  int reps_;
  double target_bytes_;
};

// The STREAM loops, compiled for AVX-512, AVX2 and baseline x86-64 and chosen at load time (target_clones), so they
// stream with the vector width the kernels use: built for baseline SSE2 only, the same loops measured 16.9 GB/s triad
// on a Sapphire Rapids VM where AVX-512 code streams 26-29 GB/s. The read keeps 64 partial sums (4 AVX-512 or 8 AVX2
// registers) so the adds never wait on each other.
#if defined(__x86_64__) && defined(__linux__)
#define MOEPLAN_STREAM_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define MOEPLAN_STREAM_CLONES
#endif
MOEPLAN_STREAM_CLONES float stream_read(const float* x, std::int64_t lo, std::int64_t hi) {
  float s[64] = {};
  std::int64_t i = lo;
  for (; i + 64 <= hi; i += 64)
    for (int j = 0; j < 64; ++j) s[j] += x[i + j];
  float total = 0;
  for (; i < hi; ++i) total += x[i];
  for (const float v : s) total += v;
  return total;
}
MOEPLAN_STREAM_CLONES void stream_triad(float* a, const float* b, const float* c, std::int64_t lo, std::int64_t hi) {
  for (std::int64_t i = lo; i < hi; ++i) a[i] = b[i] + 0.5f * c[i];
}

// STREAM-style read (sum) and triad over three arrays of `floats` elements, all threads of `ctx`: bytes per second.
std::pair<double, double> memory_bandwidth(const kernels::CpuContext& ctx, std::int64_t floats, int reps) {
  std::vector<float> a(static_cast<std::size_t>(floats)), b(a.size()), c(a.size());
  kernels::ThreadPool& pool = *ctx.pool;
  const std::int64_t parts = 8 * pool.size(), per = (floats + parts - 1) / parts;
  pool.parallel_for(0, parts, [&](std::int64_t p) {  // first touch on the threads that will stream them
    for (std::int64_t i = p * per; i < std::min(floats, (p + 1) * per); ++i) a[static_cast<std::size_t>(i)] = b[static_cast<std::size_t>(i)] = c[static_cast<std::size_t>(i)] = 1.0f;
  });
  std::vector<double> partial(static_cast<std::size_t>(parts));
  auto read = [&] {
    pool.parallel_for(0, parts, [&](std::int64_t p) {
      partial[static_cast<std::size_t>(p)] = stream_read(b.data(), p * per, std::min(floats, (p + 1) * per));
    });
  };
  auto triad = [&] {
    pool.parallel_for(0, parts, [&](std::int64_t p) {
      stream_triad(a.data(), b.data(), c.data(), p * per, std::min(floats, (p + 1) * per));
    });
  };
  std::vector<double> tr, tt;
  read();
  triad();
  for (int i = 0; i < reps; ++i) {
    auto t0 = Clock::now();
    read();
    tr.push_back(seconds_since(t0));
    t0 = Clock::now();
    triad();
    tt.push_back(seconds_since(t0));
  }
  const double bytes = 4.0 * static_cast<double>(floats);
  return {bytes / *std::min_element(tr.begin(), tr.end()), 3 * bytes / *std::min_element(tt.begin(), tt.end())};
}

}  // namespace

double meminfo_bytes(const std::string& key) {
  std::ifstream in("/proc/meminfo");
  std::string k;
  double kb = 0;
  while (in >> k >> kb) {
    if (k == key + ":") return kb * 1024;
    in.ignore(1 << 10, '\n');
  }
  return 0;
}

std::string today_utc() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%Y-%m-%d", &tm);
  return buf;
}

namespace {

// A progress line (the caller's log) and a step of the progress bar, when the request has them.
void say(const CalibrateRequest& r, const std::string& s) {
  if (r.progress) r.progress(s);
  if (r.bar) r.bar->step("calibrate: " + s);
}

// The threads to use (--threads, else every hardware thread), after checking the request's ranks, dtypes and passes.
int checked_threads(const CalibrateRequest& r) {
  const int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int threads = r.threads > 0 ? r.threads : hw;
  if (r.ranks.empty()) throw InputError("--ranks: give at least one rank count");
  for (int n : r.ranks)
    if (n < 1 || n > threads)
      throw InputError("--ranks " + std::to_string(n) + ": each rank needs at least one of the " + std::to_string(threads) + " threads");
  if (r.dtypes.empty()) throw InputError("--dtypes: give at least one weight dtype");
  if (r.passes < 1 || r.passes > 20) throw InputError("--passes " + std::to_string(r.passes) + ": give 1 to 20 passes");
  for (const auto& d : r.dtypes) weight_dtype(d);  // validates
  return threads;
}

// The curves of one rank layout: `ranks` in-process ranks sharing `threads`, each pass of every probe on every rank
// at once (rank 0 keeps the fastest pass of each point).
ProfileCurves measure_layout(const CalibrateRequest& r, int ranks, int threads) {
  const int passes = r.passes;
  const int tpr = std::max(1, threads / ranks);
  ProfileCurves out;
  out.ranks = ranks;
  out.threads_per_rank = tpr;
  std::barrier<> sync(ranks);
  auto comms = executor::make_in_process_group(ranks);
  std::vector<std::exception_ptr> failures(static_cast<std::size_t>(ranks));
  auto body = [&](int rank) {
    try {
      kernels::ThreadPool pool(tpr);
      const kernels::CpuContext ctx{kernels::best_cpu_path(), &pool};
      Prober probe(ctx, ranks > 1 ? &sync : nullptr, r, ranks);
      const bool lead = rank == 0;
      for (int pass = 0; pass < passes; ++pass) {
        const std::string tag = std::to_string(ranks) + " rank(s) x " + std::to_string(tpr) + " thread(s)" +
                                (passes > 1 ? ", pass " + std::to_string(pass + 1) + " of " + std::to_string(passes) : "") + ": ";
        const bool first = pass == 0;
        for (const auto& d : r.dtypes) {
          if (lead) say(r, tag + "gemm " + d);
          Curve c = probe.gemm(weight_dtype(d));
          if (lead) keep_fastest(out.gemm_flops_per_s[d], c);
          if (lead) say(r, tag + "grouped expert gemm " + d);
          Curve e = probe.expert_gemm(weight_dtype(d));
          if (lead) keep_fastest(out.expert_flops_per_s[d], e);
        }
        if (lead) say(r, tag + "attention decode and prefill");
        Curve ad = probe.attention_decode();
        Curve ap = probe.attention_prefill();
        if (lead) say(r, tag + "elementwise, op overhead" + (ranks > 1 ? ", all-reduce" : ""));
        const double ew = probe.elementwise_s_per_byte();
        const double oh = probe.op_overhead_s();
        std::pair<double, double> coll{0, 0};
        if (ranks > 1) coll = probe.collective(*comms[static_cast<std::size_t>(rank)]);
        if (lead) {
          keep_fastest(out.attention_decode_flops_per_s, ad);
          keep_fastest(out.attention_prefill_flops_per_s, ap);
          // Times per byte or per call: the smallest pass is the fastest.
          out.elementwise_s_per_byte = first ? ew : std::min(out.elementwise_s_per_byte, ew);
          out.op_overhead_s = first ? oh : std::min(out.op_overhead_s, oh);
          out.collective_fixed_s = first ? coll.first : std::min(out.collective_fixed_s, coll.first);
          out.collective_s_per_byte = first ? coll.second : std::min(out.collective_s_per_byte, coll.second);
        }
      }
    } catch (...) {
      failures[static_cast<std::size_t>(rank)] = std::current_exception();
      sync.arrive_and_drop();
    }
  };
  std::vector<std::thread> others;
  for (int rank = 1; rank < ranks; ++rank) others.emplace_back(body, rank);
  body(0);
  for (auto& t : others) t.join();
  for (const auto& f : failures)
    if (f) std::rethrow_exception(f);
  return out;
}

}  // namespace

HostProfile calibrate_host(const CalibrateRequest& r) {
  const int threads = checked_threads(r);
  // The groups say() announces: memory, then per rank layout and pass two per dtype, attention, elementwise.
  if (r.bar)
    r.bar->set_total(1 + static_cast<std::int64_t>(r.ranks.size()) * r.passes * (2 * static_cast<std::int64_t>(r.dtypes.size()) + 2));
  HostProfile p;
  p.host = simulator::this_host_name();
  p.cpu_model = simulator::this_cpu_model();
  p.cpu_path = kernels::cpu_path_name(kernels::best_cpu_path());
  p.threads = threads;
  p.date = today_utc();
  p.moeplan_version = MOEPLAN_VERSION;
  p.memory_bytes = meminfo_bytes("MemTotal");
  if (p.memory_bytes <= 0) p.memory_bytes = 1e9;
  {
    kernels::ThreadPool pool(threads);
    const kernels::CpuContext ctx{kernels::best_cpu_path(), &pool};
    say(r, "memory bandwidth (read, triad)");
    // Arrays of twice the last-level cache (at least 64 / 128 MiB, at most 512 MiB each): a 64 MiB quick array read
    // at 40 GB/s on a VM reporting a 480 MiB L3, above the 30 GB/s its memory delivers.
    const auto floats = std::clamp<std::int64_t>(static_cast<std::int64_t>(2 * llc_bytes() / 4),
                                                 (r.quick ? 16 : 32) * 1024 * 1024, 128 * 1024 * 1024);
    const auto [read, triad] = memory_bandwidth(ctx, floats, r.quick ? 3 : 5);
    p.read_bytes_per_s = read;
    p.triad_bytes_per_s = triad;
  }

  for (const int ranks : r.ranks) {
    ProfileCurves out = measure_layout(r, ranks, threads);
    if (ranks == 1 || p.peak_flops.empty())
      for (const auto& [d, c] : out.gemm_flops_per_s) p.peak_flops[d] = *std::max_element(c.y.begin(), c.y.end()) * ranks;
    p.layouts.push_back(std::move(out));
  }
  if (r.bar) r.bar->advance();  // the last group announced is done
  return p;
}

}  // namespace moeplan::calibrate
