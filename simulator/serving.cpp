// simulator/serving: the continuous-batching event loop (see serving.hpp; docs/simulator.md "Serving model").
#include "simulator/serving.hpp"

#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>

#include "common/error.hpp"
#include "common/numeric.hpp"

namespace moeplan::simulator {

double Percentiles::stat(std::string_view name) const {
  if (name == "mean") return mean;
  if (name == "median" || name == "p50") return p50;
  if (name == "p90") return p90;
  if (name == "p99") return p99;
  throw std::logic_error("Percentiles: no statistic '" + std::string(name) + "'");
}

namespace {


struct Request {
  double arrival_s = 0;
  std::int64_t prefilled = 0;   // prompt tokens in the cache
  std::int64_t generated = 0;   // output tokens produced
  std::int64_t chunk = 0;       // prompt tokens scheduled in the current step
  double first_token_s = -1;
  double last_token_s = 0;
};

// Uniform in (0, 1] from 53 random bits (the same on every standard library, unlike std::*_distribution).
double unit(std::mt19937_64& rng) { return (static_cast<double>(rng() >> 11) + 1.0) * (1.0 / 9007199254740992.0); }

bool same_shape(const StepShape& a, const StepShape& b) {
  return a.decode_tokens == b.decode_tokens && a.prefill_tokens == b.prefill_tokens && a.logit_tokens == b.logit_tokens &&
         a.pairs_decode_full == b.pairs_decode_full && a.pairs_decode_window == b.pairs_decode_window &&
         a.pairs_prefill_full == b.pairs_prefill_full && a.pairs_prefill_window == b.pairs_prefill_window &&
         a.kv_read_full == b.kv_read_full && a.kv_read_window == b.kv_read_window;
}

}  // namespace

Percentiles weighted_percentiles(std::vector<std::pair<double, double>> samples) {
  Percentiles p;
  double total = 0, sum = 0;
  for (const auto& [v, w] : samples) {
    total += w;
    sum += v * w;
  }
  if (total <= 0) return p;
  p.mean = sum / total;
  std::sort(samples.begin(), samples.end());
  auto at = [&](double q) {
    const double target = q * total;
    double acc = 0;
    for (const auto& [v, w] : samples) {
      acc += w;
      if (acc >= target - 1e-9) return v;
    }
    return samples.back().first;
  };
  p.p50 = at(0.50);
  p.p90 = at(0.90);
  p.p99 = at(0.99);
  return p;
}

namespace {

// One serving run (docs/simulator.md "Serving model"): its requests, attention groups, queue and clock. The
// constructor checks the workload and sizes the run; run() then repeats the step's phases (the running sequences'
// shapes, admission, the step's price, the tokens it produced) until every request has finished.
class ServingLoop {
 public:
  ServingLoop(const StepModel& model, const ServingLimits& lim, const Workload& w);
  ServingResult run(int gpus);

 private:
  struct Group {
    std::vector<std::int64_t> running;
    double kv_used = 0;
    StepShape shape;
    std::int64_t decoding = 0;
  };
  void check_limits() const;
  void size_kv();
  void size_requests();
  void set_arrivals();
  void shape_running(Group& g);
  void admit();
  // The captured CUDA-graph batch a decode-only step runs as (ServingLimits::graph_padded_batches), 0 when none.
  double graph_batch() const;
  void price_step(double total_tokens);
  void advance(Group& g);
  void finish(std::int64_t id, Group& g);
  ServingResult summary(int gpus);
  Request& req(std::int64_t id) { return reqs_[static_cast<std::size_t>(id)]; }

  const StepModel& model_;
  const ServingLimits& lim_;
  const Workload& w_;
  const int dp_;
  model::AttentionKind window_kind_ = model::AttentionKind::chunked;
  bool has_window_ = false;
  std::int64_t window_tokens_ = 0;
  double reserve_ = 0;              // KV reserved per request for its whole prompt + output, on one GPU of its group
  std::int64_t batch_cap_ = 0;
  bool explicit_arrivals_ = false, static_batch_ = false, timed_ = false;
  std::int64_t n_ = 0, n_all_ = 0, copies_ = 1, concurrency_ = 0;  // requests of the simulated groups, of all
  std::vector<Request> reqs_;
  std::vector<Group> groups_;
  std::vector<std::int64_t> still_, order_;
  std::vector<StepShape> step_shapes_;  // each group's shape as this step runs it (graph padding included)
  std::deque<std::int64_t> waiting_;
  std::int64_t next_ = 0, completed_ = 0;
  std::vector<std::pair<double, double>> ttft_, tpot_, e2e_, itl_, per_user_, decode_speed_;
  double t_ = 0, batch_time_ = 0;
  ServingResult res_;
};

ServingLoop::ServingLoop(const StepModel& model, const ServingLimits& lim, const Workload& w)
    : model_(model), lim_(lim), w_(w), dp_(std::max(1, model.layout().dp)) {
  check_limits();
  window_kind_ = window_kind(model.graph());
  has_window_ = model.graph().has_window;
  window_tokens_ = model.graph().window_tokens;
  size_kv();
  size_requests();
  set_arrivals();
}

void ServingLoop::check_limits() const {
  if (w_.input_tokens < 1 || w_.output_tokens < 1) throw InputError("--input and --output must be at least 1 token");
  if (lim_.max_batch < 1) throw InputError("--max-batch must be at least 1");
  if (lim_.max_num_batched_tokens < 1) throw InputError("--max-num-batched-tokens must be at least 1");
}

// KV reserved per request, and the batch the KV capacity allows.
void ServingLoop::size_kv() {
  const std::int64_t length = w_.input_tokens + w_.output_tokens;
  reserve_ = lim_.kv_bytes_per_token_full * to_double(length) +
             lim_.kv_bytes_per_token_window * to_double(lim_.window_tokens > 0 ? std::min(length, lim_.window_tokens) : length);
  res_.kv_limited_batch = reserve_ > 0 ? static_cast<std::int64_t>(std::floor(lim_.kv_capacity_bytes / reserve_)) : lim_.max_batch;
  if (res_.kv_limited_batch < 1)
    throw InputError("one request of " + std::to_string(length) + " tokens needs " +
                     std::to_string(static_cast<long long>(reserve_ / 1e6)) + " MB of KV per GPU but only " +
                     std::to_string(static_cast<long long>(std::max(0.0, lim_.kv_capacity_bytes) / 1e6)) +
                     " MB are free after weights: use more GPUs, a smaller precision, --kv-dtype fp8 or shorter requests");
  batch_cap_ = std::min(lim_.max_batch, res_.kv_limited_batch);
}

// The requests and attention groups simulated. All dp groups are: each schedules its own sequences, and since they
// meet in every MoE layer, a step lasts as long as the slowest group (one group's prefill chunk delays them all).
void ServingLoop::size_requests() {
  const Workload& w = w_;
  explicit_arrivals_ = !w.arrival_times_s.empty();
  std::int64_t n = w.num_requests;
  if (explicit_arrivals_) {
    n = static_cast<std::int64_t>(w.arrival_times_s.size());
  } else if (n <= 0) {
    n = 1000;
    if (w.mode == LoadMode::max) n = std::max<std::int64_t>(1000, 4 * batch_cap_ * dp_);
    if (w.mode == LoadMode::closed || w.mode == LoadMode::static_batch) n = std::max<std::int64_t>(1000, 4 * w.concurrency);
  }
  if ((w.mode == LoadMode::closed || w.mode == LoadMode::static_batch) && !explicit_arrivals_ && w.concurrency < 1)
    throw InputError("--concurrency must be at least 1 (or max)");
  if (w.mode == LoadMode::poisson && !explicit_arrivals_ && !(w.request_rate_per_s > 0))
    throw InputError("--request-rate must be a positive number of requests per second");
  if (explicit_arrivals_ && w.arrive_prefilled && w.output_tokens == 1)
    throw InputError("disaggregated serving needs --output of at least 2 tokens (the prefill pool makes the first)");
  // Groups alike: a closed loop spread evenly over the groups is simulated on one group, the others its copies.
  copies_ = w.groups_alike && w.mode == LoadMode::closed && !explicit_arrivals_ && w.concurrency % dp_ == 0 && n % dp_ == 0
                ? dp_
                : 1;
  n_all_ = n;
  concurrency_ = w.concurrency / copies_;
  n_ = n / copies_;
  static_batch_ = w.mode == LoadMode::static_batch && !explicit_arrivals_;
  timed_ = explicit_arrivals_ || w.mode == LoadMode::poisson;
  groups_.resize(static_cast<std::size_t>(dp_ / copies_));
  order_.resize(groups_.size());
}

// Arrival times (given, or Poisson), or the first requests of a closed loop / max load queued at t = 0.
void ServingLoop::set_arrivals() {
  const Workload& w = w_;
  reqs_.resize(static_cast<std::size_t>(n_));
  std::mt19937_64 rng(w.seed);
  if (explicit_arrivals_) {
    for (std::size_t i = 0; i < reqs_.size(); ++i) {
      reqs_[i].arrival_s = w.arrival_times_s[i];
      if (w.arrive_prefilled) {
        reqs_[i].prefilled = w.input_tokens;
        reqs_[i].generated = 1;
        reqs_[i].first_token_s = reqs_[i].last_token_s = w.origin_first_token_s[i];
      }
    }
  } else if (w.mode == LoadMode::poisson) {
    double t = 0;
    for (auto& r : reqs_) {
      t += -std::log(unit(rng)) / w.request_rate_per_s;
      r.arrival_s = t;
    }
  }
  if (!timed_) {
    const std::int64_t first = w.mode == LoadMode::max ? n_ : std::min(n_, concurrency_);
    for (; next_ < first; ++next_) waiting_.push_back(next_);
  }
  res_.first_token_times_s.assign(reqs_.size(), 0.0);
  ttft_.reserve(reqs_.size());
}

// A group's step before admission: its decoding sequences, then its partial prefills in admission order within the
// token budget.
void ServingLoop::shape_running(Group& g) {
  g.shape = StepShape{};
  g.decoding = 0;
  std::int64_t budget = lim_.max_num_batched_tokens;
  // Decoding sequences: their shapes summed as integers (keys and cached tokens), then one shape: the same sums
  // as adding a one-sequence shape per request, without the per-request shape arithmetic.
  double keys_full = 0, keys_window = 0;
  for (std::int64_t id : g.running) {
    Request& r = req(id);
    r.chunk = 0;
    if (r.prefilled == w_.input_tokens) {
      const std::int64_t context = w_.input_tokens + r.generated;
      keys_full += to_double(context);
      if (has_window_) keys_window += window_keys(context, window_tokens_, window_kind_);
      ++g.decoding;
    }
  }
  if (g.decoding > 0) {
    g.shape.decode_tokens = g.shape.logit_tokens = to_double(g.decoding);
    g.shape.pairs_decode_full = g.shape.kv_read_full = keys_full;
    g.shape.pairs_decode_window = g.shape.kv_read_window = keys_window;
  }
  budget -= g.decoding;
  for (std::int64_t id : g.running) {
    Request& r = req(id);
    if (r.prefilled < w_.input_tokens && budget > 0) {
      r.chunk = std::min(w_.input_tokens - r.prefilled, budget);
      g.shape += prefill_shape(r.chunk, r.prefilled, r.prefilled + r.chunk == w_.input_tokens, model_.graph(), window_kind_);
      budget -= r.chunk;
    }
  }
}

// Admission: the least-loaded group first (attention-DP balancing); a static batch only refills an empty group and
// prefills its whole batch in one pass.
void ServingLoop::admit() {
  for (std::size_t i = 0; i < order_.size(); ++i) order_[i] = static_cast<std::int64_t>(i);
  std::stable_sort(order_.begin(), order_.end(), [&](std::int64_t a, std::int64_t b) {
    return groups_[static_cast<std::size_t>(a)].running.size() < groups_[static_cast<std::size_t>(b)].running.size();
  });
  for (std::int64_t gi : order_) {
    Group& g = groups_[static_cast<std::size_t>(gi)];
    if (static_batch_ && !g.running.empty()) continue;
    // A static batch is admitted whole; its prompts run in one step, or in ubatches of the token budget (llama.cpp),
    // the requests past the first ubatch starting theirs in later steps (shape_running).
    const bool whole_batch = static_batch_ && !lim_.prefill_in_ubatches;
    std::int64_t budget = whole_batch ? std::numeric_limits<std::int64_t>::max()
                                      : lim_.max_num_batched_tokens - static_cast<std::int64_t>(g.shape.tokens());
    while (!waiting_.empty() && (budget > 0 || static_batch_) && static_cast<std::int64_t>(g.running.size()) < batch_cap_ &&
           g.kv_used + reserve_ <= lim_.kv_capacity_bytes * (1 + 1e-12)) {
      const std::int64_t id = waiting_.front();
      waiting_.pop_front();
      Request& r = req(id);
      g.kv_used += reserve_;
      g.running.push_back(id);
      if (r.prefilled == w_.input_tokens) continue;  // arrived with its KV (disaggregated decode pool)
      r.chunk = std::min(w_.input_tokens, std::max<std::int64_t>(0, budget));
      if (r.chunk == 0) continue;
      g.shape += prefill_shape(r.chunk, 0, r.chunk == w_.input_tokens, model_.graph(), window_kind_);
      budget -= r.chunk;
    }
  }
}

// A step with no prompt tokens in any group is a CUDA-graph replay when its batch is at most the largest captured
// size: every group runs the next captured size at or above the largest group's batch, the rest dummy sequences
// (TensorRT-LLM pads attention-DP ranks to one graph size; vLLM and SGLang pad the same way).
double ServingLoop::graph_batch() const {
  const std::vector<std::int64_t>& sizes = lim_.graph_padded_batches;
  if (sizes.empty()) return 0;
  double batch = 0;
  for (const Group& g : groups_) {
    if (g.shape.prefill_tokens > 0) return 0;
    batch = std::max(batch, g.shape.decode_tokens);
  }
  if (!(batch > 0)) return 0;
  for (const std::int64_t size : sizes)
    // A padded batch above the engine's max batch is not run (TensorRT-LLM model_engine.py _get_padded_batch: "No
    // padding if it would create too many concurrent requests"): eager, unpadded.
    if (to_double(size) >= batch) return size <= lim_.max_batch ? to_double(size) : 0;
  return 0;  // beyond the captured sizes: eager, unpadded
}

// The step lasts as long as the slowest group; the clock advances by it. Dummy sequences of a padded graph run
// every op (their tokens meet the others in the MoE layers and produce logits) with a one-token cache.
void ServingLoop::price_step(double total_tokens) {
  const double padded = graph_batch();
  step_shapes_.resize(groups_.size());
  for (std::size_t i = 0; i < groups_.size(); ++i) {
    StepShape& s = step_shapes_[i] = groups_[i].shape;
    const double dummies = padded - s.decode_tokens;
    if (padded > 0 && dummies > 0) {
      s += decode_shape(dummies, 1, model_.graph(), window_kind_);
      total_tokens += dummies * to_double(copies_);
    }
  }
  double dt = 0;
  std::int64_t decoding = 0;
  const StepShape* priced = nullptr;  // attention groups in lock-step have equal shapes: priced once
  double priced_s = 0;
  for (std::size_t i = 0; i < groups_.size(); ++i) {
    const Group& g = groups_[i];
    const StepShape& shape = step_shapes_[i];
    if (!priced || !same_shape(*priced, shape)) {
      priced = &shape;
      priced_s = model_.step_time_s(shape, total_tokens);
    }
    dt = std::max(dt, priced_s);
    decoding += g.decoding;
    res_.peak_batch = std::max(res_.peak_batch, static_cast<std::int64_t>(g.running.size()));
  }
  t_ += dt;
  ++res_.steps;
  batch_time_ += to_double(decoding) / to_double(static_cast<std::int64_t>(groups_.size())) * dt;
  if (res_.steps > 200000000) throw std::logic_error("serving loop: too many steps");
}

// What the step produced in a group: prompt chunks cached (the last one samples the first token), one token per
// decoding sequence (its inter-token gap), and the requests that finished.
void ServingLoop::advance(Group& g) {
  still_.clear();
  double last_gap = -1, gap_count = 0;
  for (std::int64_t id : g.running) {
    Request& r = req(id);
    bool done = false;
    if (r.chunk > 0) {
      r.prefilled += r.chunk;
      if (r.prefilled == w_.input_tokens) {  // the step that ends the prompt samples the first token
        r.generated = 1;
        r.first_token_s = r.last_token_s = t_;
        done = w_.output_tokens == 1;
      }
    } else if (r.prefilled == w_.input_tokens) {
      const double gap = (t_ - r.last_token_s) * 1e3;
      if (gap != last_gap) {
        if (gap_count > 0) itl_.emplace_back(last_gap, gap_count);
        last_gap = gap;
        gap_count = 0;
      }
      ++gap_count;
      r.last_token_s = t_;
      done = ++r.generated == w_.output_tokens;
    }
    if (done) finish(id, g);
    else still_.push_back(id);
  }
  if (gap_count > 0) itl_.emplace_back(last_gap, gap_count);
  g.running.swap(still_);
}

// A finished request's latencies; a closed loop replaces it with the next.
void ServingLoop::finish(std::int64_t id, Group& g) {
  Request& r = req(id);
  const double arrived = w_.arrive_prefilled ? w_.origin_arrival_s[static_cast<std::size_t>(id)] : r.arrival_s;
  const double e = t_ - arrived;
  res_.first_token_times_s[static_cast<std::size_t>(id)] = r.first_token_s;
  e2e_.emplace_back(e * 1e3, 1);
  ttft_.emplace_back((r.first_token_s - arrived) * 1e3, 1);
  per_user_.emplace_back(to_double(w_.output_tokens) / e, 1);
  if (w_.output_tokens > 1) {
    const double tp = (t_ - r.first_token_s) / to_double(w_.output_tokens - 1);
    tpot_.emplace_back(tp * 1e3, 1);
    if (tp > 0) decode_speed_.emplace_back(1.0 / tp, 1);
  }
  g.kv_used -= reserve_;
  ++completed_;
  if ((w_.mode == LoadMode::closed || w_.mode == LoadMode::static_batch) && !explicit_arrivals_ && next_ < n_) {
    req(next_).arrival_s = t_;
    waiting_.push_back(next_++);
  }
}

ServingResult ServingLoop::run(int gpus) {
  while (completed_ < n_) {
    if (timed_)
      while (next_ < n_ && req(next_).arrival_s <= t_) waiting_.push_back(next_++);
    for (Group& g : groups_) shape_running(g);
    admit();
    double total_tokens = 0;
    bool any_running = false;
    for (Group& g : groups_) {
      total_tokens += g.shape.tokens();
      any_running = any_running || !g.running.empty();
    }
    total_tokens *= to_double(copies_);  // the copies' tokens meet this group's in every MoE layer
    if (total_tokens <= 0) {  // idle: wait for the next arrival
      if (any_running) continue;  // only KV hand-overs were admitted: they decode from the next step
      if (timed_ && next_ < n_) {
        t_ = std::max(t_, req(next_).arrival_s);
        continue;
      }
      throw std::logic_error("serving loop: nothing to schedule");
    }
    price_step(total_tokens);
    for (Group& g : groups_) advance(g);
  }
  return summary(gpus);
}

// Percentiles and rates over the run.
ServingResult ServingLoop::summary(int gpus) {
  const Workload& w = w_;
  ServingResult& res = res_;
  double first_arrival = reqs_.front().arrival_s;
  if (w.arrive_prefilled) first_arrival = *std::min_element(w.origin_arrival_s.begin(), w.origin_arrival_s.end());
  for (const Request& r : reqs_) res.arrival_times_s.push_back(r.arrival_s);
  res.ttft_ms = weighted_percentiles(std::move(ttft_));
  res.tpot_ms = weighted_percentiles(std::move(tpot_));
  res.itl_ms = weighted_percentiles(std::move(itl_));
  res.e2e_ms = weighted_percentiles(std::move(e2e_));
  res.output_tokens_per_s_per_user = weighted_percentiles(std::move(per_user_)).mean;
  res.decode_tokens_per_s_per_user = weighted_percentiles(std::move(decode_speed_)).mean;
  res.requests = n_all_;
  res.duration_s = t_ - first_arrival;
  res.requests_per_s = to_double(res.requests) / res.duration_s;
  res.output_tokens_per_s = to_double(res.requests * w.output_tokens) / res.duration_s;
  res.input_tokens_per_s = to_double(res.requests * w.input_tokens) / res.duration_s;
  res.output_tokens_per_s_per_gpu = res.output_tokens_per_s / gpus;
  res.mean_batch = t_ > 0 ? batch_time_ / t_ : 0;
  res.kv_bound = res.kv_limited_batch < lim_.max_batch && res.peak_batch >= res.kv_limited_batch;
  return std::move(res_);
}

}  // namespace

ServingResult simulate_serving(const StepModel& model, const ServingLimits& lim, const Workload& w, int gpus) {
  return ServingLoop(model, lim, w).run(gpus);
}

}  // namespace moeplan::simulator
