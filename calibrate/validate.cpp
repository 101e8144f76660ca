// calibrate/validate: predicted vs measured on this CPU (see validate.hpp; method in docs/validation.md).
#include "calibrate/validate.hpp"

#include <algorithm>
#include <barrier>
#include <chrono>
#include <cmath>
#include <exception>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "calibrate/calibrate.hpp"
#include "common/error.hpp"
#include "common/files.hpp"
#include "common/numeric.hpp"
#include "common/splitmix.hpp"
#include "common/stats.hpp"
#include "common/text.hpp"
#include "executor/checkpoint_random.hpp"
#include "executor/comm.hpp"
#include "executor/forward.hpp"
#include "kernels/thread_pool.hpp"
#include "kernels/weights.hpp"
#include "model/config.hpp"
#include "model/params.hpp"
#include "model/precision.hpp"
#include "model/shape_override.hpp"
#include "model/summary.hpp"
#include "simulator/hardware.hpp"
#include "simulator/routing.hpp"
#include "simulator/step_cost.hpp"

namespace moeplan::calibrate {

using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

ErrorStats stats(const std::vector<double>& errors) {
  ErrorStats s;
  s.n = static_cast<int>(errors.size());
  std::vector<double> a;
  for (double e : errors) a.push_back(std::fabs(e));
  s.median_abs = median(a);
  s.p90_abs = quantile(a, 0.9);
  return s;
}

// One measurement to make.
struct Point {
  std::string phase, router;
  std::int64_t experts = 0, batch = 1, context = 0, tokens = 0;
  int ranks = 1;
  std::string category() const { return phase + "/" + std::to_string(ranks) + "/" + router; }
};

// The default grids (docs/validation.md). Pairs of (batch, context) keep batch x context <= `kv_cap` tokens.
std::vector<Point> default_grid(bool quick, const ValidateGrid& g) {
  const std::vector<std::int64_t> experts = !g.experts.empty() ? g.experts : quick ? std::vector<std::int64_t>{8, 16} : std::vector<std::int64_t>{4, 8};
  const std::vector<std::int64_t> batches = !g.batches.empty() ? g.batches : quick ? std::vector<std::int64_t>{1, 4, 16, 64} : std::vector<std::int64_t>{1, 2, 4, 8, 16, 32, 64};
  const std::vector<std::int64_t> contexts = !g.contexts.empty() ? g.contexts : quick ? std::vector<std::int64_t>{128, 1024, 4096} : std::vector<std::int64_t>{128, 512, 2048, 8192};
  const std::vector<std::int64_t> prefill = !g.prefill.empty() ? g.prefill : quick ? std::vector<std::int64_t>{128, 256, 512, 1024} : std::vector<std::int64_t>{128, 256, 512, 1024};
  const std::vector<int> ranks = !g.ranks.empty() ? g.ranks : std::vector<int>{1, 2};
  const bool user_pairs = !g.batches.empty() || !g.contexts.empty();
  const std::int64_t kv_cap = quick ? 64 * 1024 : 64 * 2048;
  std::vector<std::pair<std::int64_t, std::int64_t>> pairs;
  for (auto b : batches)
    for (auto c : contexts)
      if (user_pairs || b * c <= kv_cap) pairs.emplace_back(b, c);
  std::vector<Point> out;
  const std::int64_t big = *std::max_element(experts.begin(), experts.end());
  for (int r : ranks) {
    // One rank: every expert count and pair. More ranks: the largest expert count, every other pair.
    for (auto e : experts) {
      if (r > 1 && e != big) continue;
      for (std::size_t i = 0; i < pairs.size(); ++i) {
        if (r > 1 && !user_pairs && i % 3 != 0) continue;
        out.push_back({"decode", "uniform", e, pairs[i].first, pairs[i].second, 0, r});
      }
      for (std::size_t i = 0; i < prefill.size(); ++i) out.push_back({"prefill", "uniform", e, 1, 0, prefill[i], r});
    }
  }
  if (g.skewed) {  // the skewed router: largest expert count, one rank, the middle context, batches > 1
    const std::int64_t ctx = contexts[contexts.size() / 2];
    for (auto b : batches)
      if (b > 1 && (user_pairs || b * ctx <= kv_cap)) out.push_back({"decode", "skewed", big, b, ctx, 0, ranks.front()});
    out.push_back({"prefill", "skewed", big, 1, 0, prefill[prefill.size() / 2], ranks.front()});
  }
  return out;
}

// The shrunk config of the grid's model for `experts` routed experts.
nlohmann::json shrunk_config(const nlohmann::json& config, const std::string& name, bool quick, std::int64_t experts) {
  model::ShapeOverrides o;
  o.layers = 4;
  o.experts = experts;
  if (quick) {  // small widths with Llama 4 Maverick's head structure (GQA 5, head_dim 128)
    o.hidden = 1024;
    o.heads = 10;
    o.kv_heads = 2;
    o.head_dim = 128;
    o.moe_intermediate = 1024;
    o.vocab = 8192;
  } else {  // Maverick widths; vocabulary cut so the embedding does not dominate memory
    o.vocab = 16384;
  }
  const auto parsed = model::parse_hf_config(config, name, name);
  if (parsed.dense_intermediate > 0 && parsed.dense_intermediate != parsed.moe_intermediate && quick) o.dense_intermediate = 2048;
  try {
    return model::apply_shape_overrides(config, o, name);
  } catch (const InputError& e) {
    throw InputError(std::string("validate --device cpu: cannot shrink ") + name + " for the grid: " + e.what());
  }
}

// A copy of `m` whose router favours the first experts: their router rows scaled by `factor` (larger logits win
// top-k more often), the skewed router validate measures.
std::shared_ptr<const executor::Model> skew_router(const executor::Model& m, std::int64_t hot, float factor) {
  auto copy = std::make_shared<executor::Model>(m);
  for (auto& layer : copy->layers) {
    if (!layer.moe) continue;
    auto& r = layer.router;
    if (r.dtype != kernels::WeightDtype::bf16) throw InputError("validate: the skewed router needs BF16 router weights");
    auto* bits = reinterpret_cast<std::uint16_t*>(r.data.data());
    for (std::int64_t e = 0; e < std::min(hot, r.rows); ++e)
      for (std::int64_t k = 0; k < r.cols; ++k) {
        std::uint16_t& b = bits[e * r.cols + k];
        b = kernels::float_to_bf16(kernels::bf16_to_float(b) * factor);
      }
  }
  return copy;
}

// Run `body(rank, ctx, comm)` on `ranks` threads at once, each with its own pool of `threads_per_rank` threads.
template <class F>
void run_ranks(int ranks, int threads_per_rank, F&& body) {
  auto comms = executor::make_in_process_group(ranks);
  std::vector<std::exception_ptr> failures(static_cast<std::size_t>(ranks));
  auto one = [&](int rank) {
    try {
      kernels::ThreadPool pool(threads_per_rank);
      const kernels::CpuContext ctx{kernels::best_cpu_path(), &pool};
      body(rank, ctx, ranks > 1 ? comms[static_cast<std::size_t>(rank)].get() : nullptr);
    } catch (...) {
      failures[static_cast<std::size_t>(rank)] = std::current_exception();
    }
  };
  std::vector<std::thread> others;
  for (int r = 1; r < ranks; ++r) others.emplace_back(one, r);
  one(0);
  for (auto& t : others) t.join();
  for (const auto& f : failures)
    if (f) std::rethrow_exception(f);
}

std::map<std::string, double> op_diff(const executor::OpTimes& after, const executor::OpTimes& before) {
  std::map<std::string, double> out;
  for (const auto& [name, s] : after.seconds) {
    const auto it = before.seconds.find(name);
    const double v = s - (it == before.seconds.end() ? 0 : it->second);
    if (v > 0) out[name] = v;
  }
  return out;
}

// Repetitions of one point: the fastest (interference from other processes only adds time) with its own op times,
// every repetition's time for the spread, and the experts touched per MoE layer and step.
struct Measured {
  double seconds = 0, touched_sum = 0;
  int touched_n = 0;
  std::vector<double> samples;
  std::map<std::string, double> ops;
  void add(double t, std::map<std::string, double> op_times) {
    if (samples.empty() || t < seconds) {
      seconds = t;
      ops = std::move(op_times);
    }
    samples.push_back(t);
  }
  void add(const Measured& m) {
    if (!m.samples.empty() && (samples.empty() || m.seconds < seconds)) {
      seconds = m.seconds;
      ops = m.ops;
    }
    samples.insert(samples.end(), m.samples.begin(), m.samples.end());
    touched_sum += m.touched_sum;
    touched_n += m.touched_n;
  }
  // Run-to-run noise: (median − fastest) / fastest of the repetitions.
  double spread() const { return samples.empty() ? 0 : (median(samples) - seconds) / seconds; }
  double touched() const { return touched_n ? touched_sum / touched_n : 0; }
};

// The op times of repetition i on the rank with the most work outside collectives: the rank the simulator prices
// (the busiest expert-parallel rank), whose collectives wait least for the others.
std::map<std::string, double> busiest_rank_ops(const std::vector<std::vector<std::map<std::string, double>>>& ops, std::size_t i) {
  std::size_t best = 0;
  double most = -1;
  for (std::size_t r = 0; r < ops.size(); ++r) {
    double work = 0;
    for (const auto& [name, s] : ops[r][i])
      if (name.find("all_reduce") == std::string::npos && name.find("dispatch") == std::string::npos &&
          name.find("combine") == std::string::npos)
        work += s;
    if (work > most) {
      most = work;
      best = r;
    }
  }
  return ops[best][i];
}

Measured measure_decode(const std::vector<std::shared_ptr<const executor::Model>>& shards, int threads_per_rank,
                        const Point& p, int steps, std::uint64_t seed) {
  Measured m;
  const int ranks = static_cast<int>(shards.size());
  std::vector<double> times;                                       // rank 0's step times
  std::vector<std::vector<std::map<std::string, double>>> ops(static_cast<std::size_t>(ranks));  // [rank][step]
  const std::int64_t V = shards.front()->config().vocab, k = shards.front()->config().experts_per_token;
  const std::int64_t experts_per_rank = shards.front()->config().num_experts / static_cast<std::int64_t>(shards.size());
  run_ranks(static_cast<int>(shards.size()), threads_per_rank, [&](int rank, const kernels::CpuContext& ctx, executor::Communicator* comm) {
    executor::Session s(shards[static_cast<std::size_t>(rank)], ctx, p.batch, comm);
    s.fill_cache(p.context, steps + 2, seed);
    std::uint64_t state = seed ^ 0x5eedull;
    std::vector<std::int32_t> tokens(static_cast<std::size_t>(p.batch));
    for (int i = 0; i <= steps; ++i) {
      for (auto& t : tokens) t = static_cast<std::int32_t>(splitmix64(state) % static_cast<std::uint64_t>(V));
      if (comm) comm->barrier();
      const executor::OpTimes before = s.op_times();
      const auto t0 = Clock::now();
      s.decode(tokens);
      const double t = seconds_since(t0);
      if (i == 0) continue;  // step 0 warms up
      ops[static_cast<std::size_t>(rank)].push_back(op_diff(s.op_times(), before));
      if (rank != 0) continue;
      times.push_back(t);
      for (const auto& layer : s.routing()) {  // distinct experts this step chose per MoE layer, on the busiest rank
        const std::set<std::int32_t> ids(layer.end() - p.batch * k, layer.end());
        std::size_t most = 0;
        for (const auto& shard : shards) {
          const std::int64_t lo = shard->sharding().expert_begin, hi = lo + experts_per_rank;
          most = std::max<std::size_t>(most, static_cast<std::size_t>(std::count_if(ids.begin(), ids.end(), [&](std::int32_t e) { return e >= lo && e < hi; })));
        }
        m.touched_sum += to_double(static_cast<std::int64_t>(most));
        ++m.touched_n;
      }
    }
  });
  for (std::size_t i = 0; i < times.size(); ++i) m.add(times[i], busiest_rank_ops(ops, i));
  return m;
}

Measured measure_prefill(const std::vector<std::shared_ptr<const executor::Model>>& shards, int threads_per_rank,
                         const Point& p, int reps, std::uint64_t seed) {
  Measured m;
  const int ranks = static_cast<int>(shards.size());
  std::vector<double> times;
  std::vector<std::vector<std::map<std::string, double>>> ops(static_cast<std::size_t>(ranks));
  const std::int64_t V = shards.front()->config().vocab;
  std::uint64_t state = seed ^ 0x9a11ull;
  std::vector<std::int32_t> prompt(static_cast<std::size_t>(p.tokens));
  for (auto& t : prompt) t = static_cast<std::int32_t>(splitmix64(state) % static_cast<std::uint64_t>(V));
  run_ranks(static_cast<int>(shards.size()), threads_per_rank, [&](int rank, const kernels::CpuContext& ctx, executor::Communicator* comm) {
    for (int i = 0; i < reps; ++i) {
      executor::Session s(shards[static_cast<std::size_t>(rank)], ctx, 1, comm);
      if (comm) comm->barrier();
      const auto t0 = Clock::now();
      s.prefill({prompt});
      const double t = seconds_since(t0);
      ops[static_cast<std::size_t>(rank)].push_back(s.op_times().seconds);
      if (rank == 0) times.push_back(t);
    }
  });
  for (std::size_t i = 0; i < times.size(); ++i) m.add(times[i], busiest_rank_ops(ops, i));
  return m;
}

// The routing trace of a seeded prompt through `model` as per-layer expert loads (what run --trace-routing writes
// and simulate --expert-loads reads).
std::vector<std::vector<double>> trace_loads(const std::shared_ptr<const executor::Model>& model, int threads,
                                             std::int64_t tokens, std::uint64_t seed) {
  kernels::ThreadPool pool(threads);
  executor::Session s(model, kernels::CpuContext{kernels::best_cpu_path(), &pool}, 1);
  std::uint64_t state = seed ^ 0x7ace;
  std::vector<std::int32_t> prompt(static_cast<std::size_t>(tokens));
  for (auto& t : prompt) t = static_cast<std::int32_t>(splitmix64(state) % static_cast<std::uint64_t>(model->config().vocab));
  s.prefill({prompt});
  std::vector<std::vector<double>> loads;
  for (const auto& layer : s.routing()) {
    std::vector<double> counts(static_cast<std::size_t>(model->config().num_experts), 0.0);
    for (auto e : layer) counts[static_cast<std::size_t>(e)] += 1;
    loads.push_back(counts);
  }
  return loads;
}

// Predicts one point with `profile` (raw or fitted).
struct Prediction {
  double seconds = 0, touched = 0;
  std::map<std::string, double> ops;
};

Prediction predict(const model::ModelConfig& m, const model::Precision& precision, const simulator::Hardware& hw,
                   const simulator::RoutingModel& routing, const Point& p, int steps) {
  simulator::StepModelRequest q;
  q.graph.model = &m;
  q.graph.precision = precision;
  q.graph.layout.tp = p.ranks;
  q.graph.layout.ep = m.is_moe() ? p.ranks : 1;
  q.graph.activation_bytes = 4;  // the executor's activations are fp32
  q.hardware = hw;
  q.routing = routing;
  const simulator::StepModel sm(q);
  const model::AttentionKind window = simulator::window_kind(sm.graph());
  const simulator::StepShape shape = p.phase == "decode"
      ? simulator::decode_shape(to_double(p.batch), p.context + 1 + steps / 2, sm.graph(), window)
      : simulator::prefill_shape(p.tokens, 0, true, sm.graph(), window);
  Prediction out;
  out.seconds = sm.step_time_s(shape);
  for (const auto& o : sm.breakdown(shape)) out.ops[o.op.name] += o.time_s;
  out.touched = sm.values(shape)[static_cast<std::size_t>(model::StepVar::experts_touched)];
  return out;
}

std::string point_id(const Point& p) {
  std::string s = p.phase + " e" + std::to_string(p.experts) + " r" + std::to_string(p.ranks);
  s += p.phase == "decode" ? " b" + std::to_string(p.batch) + " ctx" + std::to_string(p.context) : " p" + std::to_string(p.tokens);
  return s + " " + p.router;
}

// A progress line (the caller's log) and a step of the progress bar, when the request has them.
void say(const CpuValidateRequest& r, const std::string& s) {
  if (r.progress) r.progress(s);
  if (r.bar) r.bar->step("validate: " + s);
}

// The grid's points, each checked for sizes and against the profile's rank layouts.
std::vector<Point> checked_grid(const CpuValidateRequest& r) {
  for (int n : r.grid.ranks)
    if (n < 1 || n > 2) throw InputError("--ranks " + std::to_string(n) + ": validate runs 1 or 2 in-process ranks");
  std::vector<Point> points = default_grid(r.quick, r.grid);
  for (const auto& p : points) {
    if (p.batch < 1 || p.context < 0 || (p.phase == "prefill" && p.tokens < 1) || p.experts < 1)
      throw InputError("validate grid: batches, prompt tokens and experts must be positive, contexts 0 or more");
    r.profile.curves(p.ranks);  // throws when the profile lacks this rank layout
  }
  return points;
}

// The grid's models by expert count: the shrunk config each checkpoint is written from, and the config parsed.
struct GridModels {
  std::map<std::int64_t, nlohmann::json> configs;
  std::map<std::int64_t, model::ModelConfig> parsed;
};

GridModels grid_models(const CpuValidateRequest& r, const std::vector<Point>& points) {
  GridModels g;
  for (const auto& p : points)
    if (!g.configs.count(p.experts)) {
      g.configs[p.experts] = shrunk_config(r.config, r.model_name, r.quick, p.experts);
      g.parsed[p.experts] = model::parse_hf_config(g.configs[p.experts], r.model_name, r.model_name);
    }
  return g;
}

// Refuses, before anything runs, a point whose BF16 weights (twice for the skewed router's copy), fp32 KV cache and
// activations would take more than 85 % of the `available` memory (0: unknown, no check).
void check_memory(const std::vector<Point>& points, const GridModels& models, int steps, double available) {
  for (const auto& p : points) {
    const model::ModelConfig& m = models.parsed.at(p.experts);
    const double weights = 2.0 * to_double(model::summarize(m).params.text) * (p.router == "skewed" ? 2 : 1);
    const double kv = to_double(p.batch) * to_double(p.context + steps + 2) * to_double(static_cast<std::int64_t>(m.layers.size())) * 2.0 * to_double(m.num_kv_heads * m.head_dim) * 4.0;
    const double act = to_double(std::max<std::int64_t>(p.tokens, p.batch)) * to_double(m.hidden + 2 * std::max(m.moe_intermediate, m.dense_intermediate) + m.vocab) * 4.0 * 4;
    const double need = weights + kv + act;
    if (available > 0 && need > 0.85 * available)
      throw InputError("validate grid point '" + point_id(p) + "' needs about " + format_gb(need) + " (weights " + format_gb(weights) +
                       ", fp32 KV cache " + format_gb(kv) + ") but " + format_gb(available) +
                       " is available: use smaller --batches/--contexts/--prefill or fewer --experts");
  }
}

// The shape of the grid's models, for the report.
std::string shape_text(const model::ModelConfig& m) {
  return std::to_string(m.layers.size()) + " layers, hidden " + std::to_string(m.hidden) + ", " + std::to_string(m.num_heads) + "/" +
         std::to_string(m.num_kv_heads) + " heads x " + std::to_string(m.head_dim) + ", expert intermediate " +
         std::to_string(m.moe_intermediate) + (m.dense_intermediate > 0 ? ", dense " + std::to_string(m.dense_intermediate) : "") +
         ", vocab " + std::to_string(m.vocab) + ", top-" + std::to_string(m.experts_per_token) + ", BF16 weights";
}

// One measured point.
struct Run {
  Point p;
  Measured m;
  std::vector<std::vector<double>> loads;  // skewed: the traced expert loads
};

// Runs every point. Points are grouped by model (expert count x router); each checkpoint is written and loaded
// once. Every point is measured once per round, so a burst of interference from other processes spoils one
// repetition of many points rather than every repetition of one; when all models fit in memory together a round
// spans the whole grid, otherwise each model's group runs its rounds and is released.
class GridMeasurement {
 public:
  GridMeasurement(const CpuValidateRequest& r, const std::vector<Point>& points, const GridModels& models, int rounds, int steps)
      : r_(r), models_(models), rounds_(rounds), steps_(steps) {
    for (const auto& [experts, config] : models.configs)
      for (const std::string router : {"uniform", "skewed"}) {
        Group g;
        g.experts = experts;
        g.router = router;
        for (const auto& p : points)
          if (p.experts == experts && p.router == router) g.points.push_back(&p);
        if (g.points.empty()) continue;
        g.measured.resize(g.points.size());
        all_weights_ += 2.0 * to_double(model::summarize(models.parsed.at(experts)).params.text);
        groups_.push_back(std::move(g));
      }
    work_ = r.work_dir.empty() ? std::filesystem::temp_directory_path() / "moeplan_validate" : r.work_dir;
  }

  // The runs in group order, each point's repetitions merged.
  std::vector<Run> run(double available) {
    const bool together = available <= 0 || all_weights_ < 0.4 * available;
    // The steps say() announces: one checkpoint per expert count, one round per group.
    if (r_.bar) r_.bar->set_total(static_cast<std::int64_t>(models_.configs.size() + groups_.size() * static_cast<std::size_t>(rounds_)));
    if (together) {
      for (auto& g : groups_) prepare(g);
      for (int round = 0; round < rounds_; ++round)
        for (auto& g : groups_) measure_round(g, round);
    } else {
      for (auto& g : groups_) {
        prepare(g);
        for (int round = 0; round < rounds_; ++round) measure_round(g, round);
        release(g);
      }
    }
    if (r_.bar) r_.bar->advance();  // the last round announced is done
    std::vector<Run> runs;
    for (auto& g : groups_)
      for (std::size_t i = 0; i < g.points.size(); ++i) {
        runs.emplace_back();
        runs.back().p = *g.points[i];
        runs.back().m = std::move(g.measured[i]);
        runs.back().loads = g.loads;
      }
    return runs;
  }

 private:
  struct Group {
    std::int64_t experts = 0;
    std::string router;
    std::vector<const Point*> points;
    std::vector<Measured> measured;
    std::shared_ptr<const executor::Model> model;
    std::map<int, std::vector<std::shared_ptr<const executor::Model>>> shards;
    std::vector<std::vector<double>> loads;
  };

  // Writes and loads the group's checkpoint (once per expert count), skews its router, shards it per rank count.
  void prepare(Group& g) {
    if (!bases_.count(g.experts)) {
      say(r_, "writing and loading a seeded " + std::to_string(g.experts) + "-expert checkpoint");
      executor::RandomWeightsOptions opt;
      opt.seed = r_.seed + static_cast<std::uint64_t>(g.experts);
      const auto dir = work_ / ("e" + std::to_string(g.experts));
      executor::write_random_checkpoint(models_.configs.at(g.experts), r_.model_name, dir, opt);
      bases_[g.experts] = executor::Model::load(dir);
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);  // loaded into memory; the files are not needed again
    }
    const auto& base = bases_.at(g.experts);
    g.model = g.router == "skewed" ? skew_router(*base, std::max<std::int64_t>(1, g.experts / 8), 3.0f) : base;
    if (g.router == "skewed") g.loads = trace_loads(g.model, r_.profile.threads, 256, r_.seed);
    for (const Point* p : g.points) {
      auto& sh = g.shards[p->ranks];
      if (sh.empty())
        for (int k = 0; k < p->ranks; ++k)
          sh.push_back(p->ranks > 1
                           ? g.model->sharded(
                                 model::ParallelLayout{
                                     .tp = p->ranks, .ep = g.model->config().is_moe() ? p->ranks : 1, .pp = 1, .dp = 1},
                                 k)
                           : g.model);
    }
  }

  void measure_round(Group& g, int round) {
    say(r_, "round " + std::to_string(round + 1) + " of " + std::to_string(rounds_) + ": " + std::to_string(g.points.size()) + " points, " +
                std::to_string(g.experts) + " experts, " + g.router + " router");
    for (std::size_t i = 0; i < g.points.size(); ++i) {
      const Point& p = *g.points[i];
      const auto& sh = g.shards.at(p.ranks);
      const int tpr = r_.profile.curves(p.ranks).threads_per_rank;
      if (p.phase == "decode") {
        g.measured[i].add(measure_decode(sh, tpr, p, steps_, r_.seed + static_cast<std::uint64_t>(round)));
      } else {
        if (round == 0) {
          Point warm = p;
          warm.tokens = std::min<std::int64_t>(p.tokens, 32);
          measure_prefill(sh, tpr, warm, 1, r_.seed);
        }
        g.measured[i].add(measure_prefill(sh, tpr, p, 1, r_.seed));
      }
    }
  }

  // Frees the group's model, and its expert count's checkpoint when no later group needs it.
  void release(Group& g) {
    g.model.reset();
    g.shards.clear();
    bool later = false;
    for (const auto& o : groups_) later = later || (o.experts == g.experts && o.model == nullptr && &o != &g && o.measured.front().samples.empty());
    if (!later) bases_.erase(g.experts);
  }

  const CpuValidateRequest& r_;
  const GridModels& models_;
  const int rounds_, steps_;
  std::vector<Group> groups_;
  double all_weights_ = 0;
  std::filesystem::path work_;
  std::map<std::int64_t, std::shared_ptr<const executor::Model>> bases_;
};

// Held out: every other run within each category (phase x ranks x router), in grid order.
std::vector<bool> held_out_split(const std::vector<Run>& runs) {
  std::map<std::string, int> seen;
  std::vector<bool> held(runs.size());
  for (std::size_t i = 0; i < runs.size(); ++i) held[i] = seen[runs[i].p.category()]++ % 2 == 1;
  return held;
}

// Every run predicted with `profile` (as calibrated, or fitted), skewed runs from their traced loads.
std::vector<Prediction> predict_runs(const std::vector<Run>& runs, const GridModels& models, const model::PrecisionTable& precisions,
                                     const simulator::HostProfile& profile, int steps) {
  const simulator::Hardware hw = simulator::profile_hardware(std::make_shared<const simulator::HostProfile>(profile));
  std::vector<Prediction> preds;
  for (const auto& run : runs) {
    const model::ModelConfig& m = models.parsed.at(run.p.experts);
    const int ep = m.is_moe() ? run.p.ranks : 1;
    const auto routing = run.p.router == "skewed" ? simulator::RoutingModel::histogram(run.loads, m.experts_per_token, ep)
                                                  : simulator::RoutingModel::uniform(m.num_experts, m.experts_per_token, ep);
    preds.push_back(predict(m, model::resolve_precision("bf16", m, precisions), hw, routing, run.p, steps));
  }
  return preds;
}

// What one phase's calibration runs say: per fit key (phase, ranks, op) the points (log tokens, log measured /
// predicted), and per run its tokens and the time outside the timed ops.
struct PhaseSamples {
  std::map<std::string, std::vector<std::pair<double, double>>> ratios;
  std::vector<double> tokens, remainder;
};

PhaseSamples phase_samples(const std::string& phase, const std::vector<Run>& runs, const std::vector<bool>& held,
                           const std::vector<Prediction>& base_preds) {
  PhaseSamples s;
  for (std::size_t i = 0; i < runs.size(); ++i) {
    if (held[i] || runs[i].p.phase != phase) continue;
    const double t = phase == "decode" ? to_double(runs[i].p.batch) : to_double(runs[i].p.tokens);
    double timed = 0;
    for (const auto& [op, seconds] : runs[i].m.ops) {
      timed += seconds;
      const auto it = base_preds[i].ops.find(op);
      if (it != base_preds[i].ops.end() && it->second > 0 && seconds > 0)
        s.ratios[simulator::fit_key(phase, runs[i].p.ranks, op)].emplace_back(std::log(t), std::log(seconds / it->second));
    }
    s.tokens.push_back(t);
    s.remainder.push_back(std::max(0.0, runs[i].m.seconds - timed));
  }
  return s;
}

// Per (ranks, op): log(measured / predicted) = log scale + slope · log tokens, least squares, into fit.op_scale and
// fit.op_slope.
void fit_op_corrections(const std::string& phase, const std::map<std::string, std::vector<std::pair<double, double>>>& ratios,
                        simulator::ProfileFit& fit) {
  for (const auto& [key, v] : ratios) {
    double mx = 0, my = 0;
    for (const auto& [x, y] : v) {
      mx += x;
      my += y;
    }
    mx /= to_double(static_cast<std::int64_t>(v.size()));
    my /= to_double(static_cast<std::int64_t>(v.size()));
    double sxx = 0, sxy = 0, lo = v.front().first, hi = lo;
    for (const auto& [x, y] : v) {
      sxx += (x - mx) * (x - mx);
      sxy += (x - mx) * (y - my);
      lo = std::min(lo, x);
      hi = std::max(hi, x);
    }
    // A slope needs points at least a factor of 4 apart in tokens; otherwise the geometric mean alone. It is
    // bounded to ±0.5 (a correction growing faster than √tokens would say the curves are wrong, not the fit).
    // Too few points for a slope on 2 ranks: the 1-rank slope of the same op (the map is sorted, r1 comes first).
    double slope = 0;
    if (hi - lo >= std::log(4.0) && sxx > 0) {
      slope = std::clamp(sxy / sxx, -0.5, 0.5);
    } else if (key.find("/r1:") == std::string::npos) {
      const std::string one = phase + "/r1:" + key.substr(key.find(':') + 1);
      if (const auto it = fit.op_slope.find(one); it != fit.op_slope.end()) slope = it->second;
    }
    fit.op_scale[key] = std::exp(my - slope * mx);
    if (slope != 0) fit.op_slope[key] = slope;
  }
}

// remainder = a + b · tokens, least squares with both >= 0; returns {a, b}.
std::pair<double, double> fit_remainder(const std::vector<double>& tokens, const std::vector<double>& remainder) {
  double a = 0, b = 0;
  const double n = to_double(static_cast<std::int64_t>(tokens.size()));
  if (n >= 2) {
    double sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      sx += tokens[i];
      sy += remainder[i];
      sxx += tokens[i] * tokens[i];
      sxy += tokens[i] * remainder[i];
    }
    const double den = n * sxx - sx * sx;
    b = den > 0 ? (n * sxy - sx * sy) / den : 0;
    a = (sy - b * sx) / n;
    if (b < 0) {
      b = 0;
      a = sy / n;
    }
    if (a < 0) {
      a = 0;
      b = sxx > 0 ? sxy / sxx : 0;
    }
  } else if (n == 1) {
    a = remainder.front();
  }
  return {a, b};
}

// The fit on the calibration half: per-op corrections, and per phase the time outside the ops and the token range
// the fit saw.
simulator::ProfileFit fit_profile(const std::vector<Run>& runs, const std::vector<bool>& held, const std::vector<Prediction>& base_preds) {
  simulator::ProfileFit fit;
  for (const std::string phase : {"prefill", "decode"}) {
    const PhaseSamples s = phase_samples(phase, runs, held, base_preds);
    fit_op_corrections(phase, s.ratios, fit);
    const auto [a, b] = fit_remainder(s.tokens, s.remainder);
    if (!s.tokens.empty()) {
      const auto [lo, hi] = std::minmax_element(s.tokens.begin(), s.tokens.end());
      (phase == "decode" ? fit.decode_tokens_min : fit.prefill_tokens_min) = *lo;
      (phase == "decode" ? fit.decode_tokens_max : fit.prefill_tokens_max) = *hi;
    }
    (phase == "decode" ? fit.decode_fixed_s : fit.prefill_fixed_s) = a;
    (phase == "decode" ? fit.decode_per_token_s : fit.prefill_per_token_s) = b;
  }
  fit.configurations = static_cast<int>(std::count(held.begin(), held.end(), false));
  return fit;
}

ValidationRow validation_row(const Run& run, bool held_out, const Prediction& pred) {
  ValidationRow row;
  row.id = point_id(run.p);
  row.phase = run.p.phase;
  row.held_out = held_out;
  row.experts = run.p.experts;
  row.batch = run.p.batch;
  row.context = run.p.context;
  row.tokens = run.p.tokens;
  row.ranks = run.p.ranks;
  row.router = run.p.router;
  row.measured_s = run.m.seconds;
  row.predicted_s = pred.seconds;
  row.error = (row.predicted_s - row.measured_s) / row.measured_s;
  row.spread = run.m.spread();
  row.experts_touched_measured = run.m.touched();
  row.experts_touched_predicted = run.p.phase == "decode" ? pred.touched : 0;
  row.measured_ops = run.m.ops;
  row.predicted_ops = pred.ops;
  return row;
}

// The errors of out.rows: per phase on each half and per router, op by op on the held-out half (with each op's share
// of the phase's measured time), the median spread; and the held-out residuals the fitted profile keeps.
void summarize_rows(CpuValidation& out, simulator::HostProfile& fitted) {
  std::map<std::string, std::vector<double>> errors;  // "decode/held", "decode/cal", ...
  std::map<std::string, std::vector<double>> residuals;
  std::map<std::string, std::vector<double>> op_errors;
  std::map<std::string, double> op_time, phase_time;
  std::vector<double> spreads;
  for (const ValidationRow& row : out.rows) {
    spreads.push_back(row.spread);
    errors[row.phase + (row.held_out ? "/held" : "/cal")].push_back(row.error);
    if (!row.held_out) continue;
    residuals[row.phase].push_back(row.measured_s / row.predicted_s - 1);
    if (row.phase == "decode") errors[std::string("decode/") + row.router].push_back(row.error);
    for (const auto& [op, s] : row.measured_ops) {
      const auto it = row.predicted_ops.find(op);
      if (it != row.predicted_ops.end() && s > 0) op_errors[row.phase + ":" + op].push_back((it->second - s) / s);
      op_time[row.phase + ":" + op] += s;
    }
    phase_time[row.phase] += row.measured_s;
  }
  out.decode_held_out = stats(errors["decode/held"]);
  out.prefill_held_out = stats(errors["prefill/held"]);
  out.decode_calibration = stats(errors["decode/cal"]);
  out.prefill_calibration = stats(errors["prefill/cal"]);
  out.decode_uniform = stats(errors["decode/uniform"]);
  out.decode_skewed = stats(errors["decode/skewed"]);
  for (const auto& [key, v] : op_errors) {
    OpError e;
    const auto colon = key.find(':');
    e.phase = key.substr(0, colon);
    e.op = key.substr(colon + 1);
    e.n = static_cast<int>(v.size());
    e.median_abs_error = stats(v).median_abs;
    e.share = phase_time[e.phase] > 0 ? op_time[key] / phase_time[e.phase] : 0;
    out.ops.push_back(e);
  }
  std::sort(out.ops.begin(), out.ops.end(), [](const OpError& a, const OpError& b) {
    return a.phase != b.phase ? a.phase > b.phase : a.share > b.share;
  });
  out.median_spread = median(spreads);
  for (const std::string phase : {"prefill", "decode"}) {
    const auto& v = residuals[phase];
    if (v.empty()) continue;
    const ErrorStats abs = stats(v);
    (phase == "decode" ? fitted.decode_residuals : fitted.prefill_residuals) =
        simulator::Residuals{abs.n, abs.median_abs, abs.p90_abs, quantile(v, 0.05), quantile(v, 0.95)};
  }
}

}  // namespace

CpuValidation validate_cpu(const CpuValidateRequest& r) {
  const auto t_start = Clock::now();
  const std::vector<Point> points = checked_grid(r);
  // Every point is measured in each of `rounds` passes over its model's points (GridMeasurement).
  const int rounds = 3, steps = r.quick ? 2 : 3;
  const auto precisions = model::PrecisionTable::load(data_dir() / "precisions.yaml");
  const GridModels models = grid_models(r, points);
  const double available = meminfo_bytes("MemAvailable");
  check_memory(points, models, steps, available);

  CpuValidation out;
  out.model = r.model_name;
  out.date = today_utc();
  out.cpu_model = simulator::this_cpu_model();
  out.cpu_path = kernels::cpu_path_name(kernels::best_cpu_path());
  out.threads = r.threads > 0 ? r.threads : r.profile.threads;
  out.shape = shape_text(models.parsed.begin()->second);

  const std::vector<Run> runs = GridMeasurement(r, points, models, rounds, steps).run(available);
  const std::vector<bool> held = held_out_split(runs);
  // Predictions with the profile as calibrated (no fit), then the fit on the calibration half.
  simulator::HostProfile raw = r.profile;
  raw.fit.reset();
  raw.prefill_residuals.reset();
  raw.decode_residuals.reset();
  const simulator::ProfileFit fit = fit_profile(runs, held, predict_runs(runs, models, precisions, raw, steps));
  simulator::HostProfile fitted = raw;
  fitted.fit = fit;
  const auto preds = predict_runs(runs, models, precisions, fitted, steps);
  for (std::size_t i = 0; i < runs.size(); ++i) out.rows.push_back(validation_row(runs[i], held[i], preds[i]));
  summarize_rows(out, fitted);

  out.seconds = seconds_since(t_start);
  fitted.validation_summary = out.date + ": moeplan validate --device cpu" + std::string(r.quick ? " --quick" : "") + " on " +
                              r.model_name + " (" + out.shape + "), " + std::to_string(runs.size()) + " points, " +
                              std::to_string(fit.configurations) + " fitted, the rest held out";
  out.fitted = std::move(fitted);
  return out;
}

}  // namespace moeplan::calibrate
