// simulator/serving: the continuous-batching event loop (see serving.hpp; docs/simulator.md "Serving model").
#include "simulator/serving.hpp"

#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>
#include <random>

#include "common/error.hpp"

namespace moeplan::simulator {

namespace {

double d(std::int64_t v) { return static_cast<double>(v); }

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

ServingResult simulate_serving(const StepModel& model, const ServingLimits& lim, const Workload& w, int gpus) {
  const int dp = std::max(1, model.layout().dp);
  if (w.input_tokens < 1 || w.output_tokens < 1) throw InputError("--input and --output must be at least 1 token");
  if (lim.max_batch < 1) throw InputError("--max-batch must be at least 1");
  if (lim.max_num_batched_tokens < 1) throw InputError("--max-num-batched-tokens must be at least 1");
  const model::AttentionKind window_kind = [&] {
    for (const auto& c : model.graph().layer_classes)
      if (c.attention == model::AttentionKind::sliding) return model::AttentionKind::sliding;
    return model::AttentionKind::chunked;
  }();
  const bool has_window = model.graph().has_window;
  const std::int64_t window_tokens = model.graph().window_tokens;

  // KV reserved per request for its whole prompt + output, on one GPU of its attention group.
  const std::int64_t length = w.input_tokens + w.output_tokens;
  const double reserve = lim.kv_bytes_per_token_full * d(length) +
                         lim.kv_bytes_per_token_window * d(lim.window_tokens > 0 ? std::min(length, lim.window_tokens) : length);
  ServingResult res;
  res.kv_limited_batch = reserve > 0 ? static_cast<std::int64_t>(std::floor(lim.kv_capacity_bytes / reserve)) : lim.max_batch;
  if (res.kv_limited_batch < 1)
    throw InputError("one request of " + std::to_string(length) + " tokens needs " +
                     std::to_string(static_cast<long long>(reserve / 1e6)) + " MB of KV per GPU but only " +
                     std::to_string(static_cast<long long>(std::max(0.0, lim.kv_capacity_bytes) / 1e6)) +
                     " MB are free after weights: use more GPUs, a smaller precision, --kv-dtype fp8 or shorter requests");
  const std::int64_t batch_cap = std::min(lim.max_batch, res.kv_limited_batch);

  // All dp attention groups are simulated: each schedules its own sequences, and since they meet in every MoE
  // layer, a step lasts as long as the slowest group (one group's prefill chunk delays them all).
  const bool explicit_arrivals = !w.arrival_times_s.empty();
  std::int64_t n = w.num_requests;
  if (explicit_arrivals) {
    n = static_cast<std::int64_t>(w.arrival_times_s.size());
  } else if (n <= 0) {
    n = 1000;
    if (w.mode == LoadMode::max) n = std::max<std::int64_t>(1000, 4 * batch_cap * dp);
    if (w.mode == LoadMode::closed || w.mode == LoadMode::static_batch) n = std::max<std::int64_t>(1000, 4 * w.concurrency);
  }
  if ((w.mode == LoadMode::closed || w.mode == LoadMode::static_batch) && !explicit_arrivals && w.concurrency < 1)
    throw InputError("--concurrency must be at least 1 (or max)");
  if (w.mode == LoadMode::poisson && !explicit_arrivals && !(w.request_rate_per_s > 0))
    throw InputError("--request-rate must be a positive number of requests per second");
  if (explicit_arrivals && w.arrive_prefilled && w.output_tokens == 1)
    throw InputError("disaggregated serving needs --output of at least 2 tokens (the prefill pool makes the first)");
  // Groups alike: a closed loop spread evenly over the groups is simulated on one group, the others its copies.
  const std::int64_t copies = w.groups_alike && w.mode == LoadMode::closed && !explicit_arrivals &&
                                      w.concurrency % dp == 0 && n % dp == 0
                                  ? dp
                                  : 1;
  const std::int64_t n_all = n, concurrency = w.concurrency / copies;
  n /= copies;
  const bool static_batch = w.mode == LoadMode::static_batch && !explicit_arrivals;

  std::vector<Request> reqs(static_cast<std::size_t>(n));
  std::mt19937_64 rng(w.seed);
  if (explicit_arrivals) {
    for (std::size_t i = 0; i < reqs.size(); ++i) {
      reqs[i].arrival_s = w.arrival_times_s[i];
      if (w.arrive_prefilled) {
        reqs[i].prefilled = w.input_tokens;
        reqs[i].generated = 1;
        reqs[i].first_token_s = reqs[i].last_token_s = w.origin_first_token_s[i];
      }
    }
  } else if (w.mode == LoadMode::poisson) {
    double t = 0;
    for (auto& r : reqs) {
      t += -std::log(unit(rng)) / w.request_rate_per_s;
      r.arrival_s = t;
    }
  }

  struct Group {
    std::vector<std::int64_t> running;
    double kv_used = 0;
    StepShape shape;
    std::int64_t decoding = 0;
  };
  std::vector<Group> groups(static_cast<std::size_t>(dp / copies));
  std::vector<std::int64_t> still, order(groups.size());
  std::deque<std::int64_t> waiting;
  std::int64_t next = 0, completed = 0;
  const bool timed = explicit_arrivals || w.mode == LoadMode::poisson;
  if (!timed) {
    const std::int64_t first = w.mode == LoadMode::max ? n : std::min(n, concurrency);
    for (; next < first; ++next) waiting.push_back(next);
  }
  res.first_token_times_s.assign(reqs.size(), 0.0);

  std::vector<std::pair<double, double>> ttft, tpot, e2e, itl, per_user, decode_speed;
  ttft.reserve(reqs.size());
  double t = 0, batch_time = 0;
  double first_arrival = reqs.front().arrival_s;
  if (w.arrive_prefilled) first_arrival = *std::min_element(w.origin_arrival_s.begin(), w.origin_arrival_s.end());
  auto finish = [&](std::int64_t id, Group& g) {
    Request& r = reqs[static_cast<std::size_t>(id)];
    const double arrived = w.arrive_prefilled ? w.origin_arrival_s[static_cast<std::size_t>(id)] : r.arrival_s;
    const double e = t - arrived;
    res.first_token_times_s[static_cast<std::size_t>(id)] = r.first_token_s;
    e2e.emplace_back(e * 1e3, 1);
    ttft.emplace_back((r.first_token_s - arrived) * 1e3, 1);
    per_user.emplace_back(d(w.output_tokens) / e, 1);
    if (w.output_tokens > 1) {
      const double tp = (t - r.first_token_s) / d(w.output_tokens - 1);
      tpot.emplace_back(tp * 1e3, 1);
      if (tp > 0) decode_speed.emplace_back(1.0 / tp, 1);
    }
    g.kv_used -= reserve;
    ++completed;
    if ((w.mode == LoadMode::closed || w.mode == LoadMode::static_batch) && !explicit_arrivals && next < n) {
      reqs[static_cast<std::size_t>(next)].arrival_s = t;
      waiting.push_back(next++);
    }
  };

  while (completed < n) {
    if (timed)
      while (next < n && reqs[static_cast<std::size_t>(next)].arrival_s <= t) waiting.push_back(next++);

    double total_tokens = 0;
    for (Group& g : groups) {
      g.shape = StepShape{};
      g.decoding = 0;
      std::int64_t budget = lim.max_num_batched_tokens;
      // Decoding sequences: their shapes summed as integers (keys and cached tokens), then one shape: the same sums
      // as adding a one-sequence shape per request, without the per-request shape arithmetic.
      double keys_full = 0, keys_window = 0;
      for (std::int64_t id : g.running) {
        Request& r = reqs[static_cast<std::size_t>(id)];
        r.chunk = 0;
        if (r.prefilled == w.input_tokens) {
          const std::int64_t context = w.input_tokens + r.generated;
          keys_full += d(context);
          if (has_window) keys_window += window_keys(context, window_tokens, window_kind);
          ++g.decoding;
        }
      }
      if (g.decoding > 0) {
        g.shape.decode_tokens = g.shape.logit_tokens = d(g.decoding);
        g.shape.pairs_decode_full = g.shape.kv_read_full = keys_full;
        g.shape.pairs_decode_window = g.shape.kv_read_window = keys_window;
      }
      budget -= g.decoding;
      for (std::int64_t id : g.running) {  // partial prefills continue in admission order
        Request& r = reqs[static_cast<std::size_t>(id)];
        if (r.prefilled < w.input_tokens && budget > 0) {
          r.chunk = std::min(w.input_tokens - r.prefilled, budget);
          g.shape += prefill_shape(r.chunk, r.prefilled, r.prefilled + r.chunk == w.input_tokens, model.graph(), window_kind);
          budget -= r.chunk;
        }
      }
    }
    // Admission: the least-loaded group first (attention-DP balancing); a static batch only refills an empty group
    // and prefills its whole batch in one pass.
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<std::int64_t>(i);
    std::stable_sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) {
      return groups[static_cast<std::size_t>(a)].running.size() < groups[static_cast<std::size_t>(b)].running.size();
    });
    for (std::int64_t gi : order) {
      Group& g = groups[static_cast<std::size_t>(gi)];
      if (static_batch && !g.running.empty()) continue;
      std::int64_t budget = static_batch ? std::numeric_limits<std::int64_t>::max()
                                         : lim.max_num_batched_tokens - static_cast<std::int64_t>(g.shape.tokens());
      while (!waiting.empty() && budget > 0 && static_cast<std::int64_t>(g.running.size()) < batch_cap &&
             g.kv_used + reserve <= lim.kv_capacity_bytes * (1 + 1e-12)) {
        const std::int64_t id = waiting.front();
        waiting.pop_front();
        Request& r = reqs[static_cast<std::size_t>(id)];
        g.kv_used += reserve;
        g.running.push_back(id);
        if (r.prefilled == w.input_tokens) continue;  // arrived with its KV (disaggregated decode pool)
        r.chunk = std::min(w.input_tokens, budget);
        g.shape += prefill_shape(r.chunk, 0, r.chunk == w.input_tokens, model.graph(), window_kind);
        budget -= r.chunk;
      }
    }
    bool any_running = false;
    for (Group& g : groups) {
      total_tokens += g.shape.tokens();
      any_running = any_running || !g.running.empty();
    }
    total_tokens *= d(copies);  // the copies' tokens meet this group's in every MoE layer

    if (total_tokens <= 0) {  // idle: wait for the next arrival
      if (any_running) continue;  // only KV hand-overs were admitted: they decode from the next step
      if (timed && next < n) {
        t = std::max(t, reqs[static_cast<std::size_t>(next)].arrival_s);
        continue;
      }
      throw std::logic_error("serving loop: nothing to schedule");
    }
    double dt = 0;
    std::int64_t decoding = 0;
    const StepShape* priced = nullptr;  // attention groups in lock-step have equal shapes: priced once
    double priced_s = 0;
    for (const Group& g : groups) {
      if (!priced || !same_shape(*priced, g.shape)) {
        priced = &g.shape;
        priced_s = model.step_time_s(g.shape, total_tokens);
      }
      dt = std::max(dt, priced_s);
      decoding += g.decoding;
      res.peak_batch = std::max(res.peak_batch, static_cast<std::int64_t>(g.running.size()));
    }
    t += dt;
    ++res.steps;
    batch_time += d(decoding) / d(static_cast<std::int64_t>(groups.size())) * dt;
    if (res.steps > 200000000) throw std::logic_error("serving loop: too many steps");

    for (Group& g : groups) {
      still.clear();
      double last_gap = -1, gap_count = 0;
      for (std::int64_t id : g.running) {
        Request& r = reqs[static_cast<std::size_t>(id)];
        bool done = false;
        if (r.chunk > 0) {
          r.prefilled += r.chunk;
          if (r.prefilled == w.input_tokens) {  // the step that ends the prompt samples the first token
            r.generated = 1;
            r.first_token_s = r.last_token_s = t;
            done = w.output_tokens == 1;
          }
        } else if (r.prefilled == w.input_tokens) {
          const double gap = (t - r.last_token_s) * 1e3;
          if (gap != last_gap) {
            if (gap_count > 0) itl.emplace_back(last_gap, gap_count);
            last_gap = gap;
            gap_count = 0;
          }
          ++gap_count;
          r.last_token_s = t;
          done = ++r.generated == w.output_tokens;
        }
        if (done) finish(id, g);
        else still.push_back(id);
      }
      if (gap_count > 0) itl.emplace_back(last_gap, gap_count);
      g.running.swap(still);
    }
  }

  for (const Request& r : reqs) res.arrival_times_s.push_back(r.arrival_s);
  res.ttft_ms = weighted_percentiles(std::move(ttft));
  res.tpot_ms = weighted_percentiles(std::move(tpot));
  res.itl_ms = weighted_percentiles(std::move(itl));
  res.e2e_ms = weighted_percentiles(std::move(e2e));
  res.output_tokens_per_s_per_user = weighted_percentiles(std::move(per_user)).mean;
  res.decode_tokens_per_s_per_user = weighted_percentiles(std::move(decode_speed)).mean;
  res.requests = n_all;
  res.duration_s = t - first_arrival;
  res.requests_per_s = d(res.requests) / res.duration_s;
  res.output_tokens_per_s = d(res.requests * w.output_tokens) / res.duration_s;
  res.input_tokens_per_s = d(res.requests * w.input_tokens) / res.duration_s;
  res.output_tokens_per_s_per_gpu = res.output_tokens_per_s / gpus;
  res.mean_batch = t > 0 ? batch_time / t : 0;
  res.kv_bound = res.kv_limited_batch < lim.max_batch && res.peak_batch >= res.kv_limited_batch;
  return res;
}

}  // namespace moeplan::simulator
