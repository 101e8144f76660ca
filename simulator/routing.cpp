// simulator/routing: distinct experts and the busiest EP rank (see routing.hpp; derivation in docs/simulator.md).
#include "simulator/routing.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "common/files.hpp"
#include "common/numeric.hpp"
#include "common/text.hpp"

namespace moeplan::simulator {

namespace {


// Expected maximum of n independent standard normals, Blom's approximation Φ⁻¹((n − 0.375)/(n + 0.25)).
double expected_max_normal(int n) {
  if (n <= 1) return 0;
  const double p = (n - 0.375) / (n + 0.25);
  // Acklam-style rational approximation of the normal quantile is overkill here; use the
  // Abramowitz-Stegun 26.2.23 form for p > 0.5 (error < 4.5e-4).
  const double t = std::sqrt(-2.0 * std::log(1.0 - p));
  return t - (2.515517 + 0.802853 * t + 0.010328 * t * t) / (1 + 1.432788 * t + 0.189269 * t * t + 0.001308 * t * t * t);
}

}  // namespace

RoutingModel RoutingModel::uniform(std::int64_t experts, std::int64_t top_k, int ep) {
  RoutingModel r;
  r.experts_ = experts;
  r.top_k_ = top_k;
  r.ep_ = ep;
  r.uniform_ = true;
  r.description_ = "uniform";
  return r;
}

RoutingModel RoutingModel::zipf(std::int64_t experts, std::int64_t top_k, int ep, double alpha) {
  if (!(alpha >= 0) || alpha > 10) throw InputError("--zipf " + std::to_string(alpha) + ": use a skew between 0 and 10");
  RoutingModel r = uniform(experts, top_k, ep);
  r.uniform_ = false;
  r.curve_dist_ = "balanced";
  r.description_ = "zipf(" + std::to_string(alpha).substr(0, 4) + ")";
  std::vector<double> w(static_cast<std::size_t>(experts));
  double sum = 0;
  for (std::int64_t i = 0; i < experts; ++i) sum += (w[static_cast<std::size_t>(i)] = std::pow(to_double(i + 1), -alpha));
  // Spread popularity ranks over ids with a fixed stride coprime to E (a permutation with no rank structure).
  std::int64_t stride = experts / 2 + 1;
  while (std::gcd(stride, experts) != 1) ++stride;
  std::vector<double> prob(static_cast<std::size_t>(experts));
  for (std::int64_t i = 0; i < experts; ++i) {
    const double p = std::min(1.0, to_double(top_k) * w[static_cast<std::size_t>(i)] / sum);
    prob[static_cast<std::size_t>((i * stride) % experts)] = p;
  }
  r.select_prob_.push_back(std::move(prob));
  return r;
}

RoutingModel RoutingModel::histogram(const std::vector<std::vector<double>>& layer_loads, std::int64_t top_k, int ep) {
  if (layer_loads.empty()) throw InputError("expert loads: no layers");
  RoutingModel r = uniform(static_cast<std::int64_t>(layer_loads.front().size()), top_k, ep);
  r.uniform_ = false;
  r.curve_dist_ = "balanced";
  r.description_ = "measured loads (" + std::to_string(layer_loads.size()) + " layers)";
  for (const auto& loads : layer_loads) {
    const double total = std::accumulate(loads.begin(), loads.end(), 0.0);
    std::vector<double> prob(loads.size());
    for (std::size_t e = 0; e < loads.size(); ++e) prob[e] = total > 0 ? std::min(1.0, to_double(top_k) * loads[e] / total) : 0;
    r.select_prob_.push_back(std::move(prob));
  }
  return r;
}

RoutingStats RoutingModel::at(double tokens) const {
  RoutingStats s;
  if (experts_ <= 0 || tokens <= 0) return s;
  const double per_rank = to_double(experts_) / ep_;
  const double z = expected_max_normal(ep_);
  if (uniform_) {
    // Each token picks k of E experts: an expert is missed by all T tokens with probability (1 − k/E)^T.
    s.mean_assignments = tokens * to_double(top_k_) / ep_;
    // Rank loads are binomial(T·k, 1/ep); the busiest is about mean + z·σ, and at least ⌈mean⌉ (a single token
    // still lands whole on one rank).
    const double sigma = std::sqrt(tokens * to_double(top_k_) * (1.0 / ep_) * (1.0 - 1.0 / ep_));
    s.busiest_assignments = std::min(tokens * to_double(top_k_), std::max(std::ceil(s.mean_assignments - 1e-9), s.mean_assignments + z * sigma));
    // Its A assignments fall on its E/ep experts uniformly: distinct = (E/ep)·(1 − (1 − ep/E)^A). For large T this
    // equals (E/ep)·(1 − (1 − k/E)^T), the expected distinct experts of T tokens with top-k of E.
    s.experts_touched = per_rank * (1.0 - std::pow(1.0 - 1.0 / per_rank, s.busiest_assignments));
    return s;
  }
  // Skewed: per layer, expected load of each rank, then the busiest rank (mean + z·√mean, Poisson-like spread),
  // averaged over layers.
  const std::size_t per = static_cast<std::size_t>(per_rank);
  for (const auto& prob : select_prob_) {
    double busiest = 0, busiest_touched = 0;  // expected loads; a busiest rank has at least one whole token
    for (int rank = 0; rank < ep_; ++rank) {
      double load = 0, touched = 0;
      for (std::size_t e = rank * per; e < (rank + 1) * per && e < prob.size(); ++e) {
        load += tokens * prob[e];
        touched += 1.0 - std::pow(1.0 - prob[e], tokens);
      }
      const double high = load + (ep_ > 1 ? z * std::sqrt(load) : 0.0);
      if (high > busiest) {
        busiest = high;
        busiest_touched = touched;
      }
    }
    s.busiest_assignments += std::min(tokens * to_double(top_k_), std::max(busiest, std::ceil(tokens * to_double(top_k_) / ep_ - 1e-9)));
    busiest_touched = std::max(busiest_touched, std::min(1.0, tokens));
    s.experts_touched += busiest_touched;
  }
  const double layers = to_double(static_cast<std::int64_t>(select_prob_.size()));
  s.busiest_assignments /= layers;
  s.experts_touched /= layers;
  s.mean_assignments = tokens * to_double(top_k_) / ep_;
  return s;
}

std::vector<std::vector<double>> read_expert_loads(const std::filesystem::path& path, std::int64_t experts,
                                                   std::int64_t moe_layers) {
  const nlohmann::json j = parse_json_file(path);
  const std::string where = printable(path.string());
  if (!j.is_object() || !j.contains("layers") || !j["layers"].is_array() || j["layers"].empty())
    throw InputError(where + ": expected {\"experts\": E, \"layers\": [[count per expert], ...]}");
  if (j.contains("experts") && (!j["experts"].is_number_integer() || j["experts"].get<std::int64_t>() != experts))
    throw InputError(where + ": \"experts\" does not match the model's " + std::to_string(experts) + " routed experts");
  if (moe_layers > 0 && static_cast<std::int64_t>(j["layers"].size()) != moe_layers)
    throw InputError(where + ": lists " + std::to_string(j["layers"].size()) + " layers; the model has " +
                     std::to_string(moe_layers) + " MoE layers (one row each, in order)");
  std::vector<std::vector<double>> out;
  for (std::size_t l = 0; l < j["layers"].size(); ++l) {
    const auto& row = j["layers"][l];
    if (!row.is_array() || static_cast<std::int64_t>(row.size()) != experts)
      throw InputError(where + ": layer " + std::to_string(l) + " must list " + std::to_string(experts) + " expert counts");
    std::vector<double> loads;
    for (const auto& v : row) {
      if (!v.is_number() || !(v.get<double>() >= 0) || !std::isfinite(v.get<double>()))
        throw InputError(where + ": layer " + std::to_string(l) + " has a count that is not a non-negative number");
      loads.push_back(v.get<double>());
    }
    if (std::all_of(loads.begin(), loads.end(), [](double x) { return x == 0; }))
      throw InputError(where + ": layer " + std::to_string(l) + " routes no tokens (every count is 0)");
    out.push_back(std::move(loads));
  }
  return out;
}

}  // namespace moeplan::simulator
