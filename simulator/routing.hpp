// simulator/routing: how many distinct experts a batch of tokens touches and how many (token, expert) assignments
// the busiest expert-parallel rank computes, for a uniform router, a Zipf-skewed one, or measured per-layer expert
// loads. The expert bytes a step reads follow the distinct experts; under EP the step waits for the busiest rank.
// Derivation: docs/simulator.md ("MoE routing").
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace moeplan::simulator {

struct RoutingStats {
  double experts_touched = 0;      // distinct experts with ≥ 1 token on the busiest rank
  double busiest_assignments = 0;  // (token, expert) assignments on the busiest rank (expected maximum over ranks)
  double mean_assignments = 0;     // the mean over ranks, for comparison
};

class RoutingModel {
 public:
  // Uniform router: every expert equally likely (the balanced case).
  static RoutingModel uniform(std::int64_t experts, std::int64_t top_k, int ep);
  // Zipf(alpha): the r-th most popular expert has probability ∝ r^-alpha; popularity ranks are spread over the
  // expert ids by a fixed permutation (no load balancer), experts placed contiguously on ranks.
  static RoutingModel zipf(std::int64_t experts, std::int64_t top_k, int ep, double alpha);
  // Measured loads: one row of per-expert token counts per MoE layer (file format in docs/simulator.md).
  static RoutingModel histogram(const std::vector<std::vector<double>>& layer_loads, std::int64_t top_k, int ep);

  // Statistics for `tokens` tokens entering one MoE layer (summed over the DP ranks that share it).
  RoutingStats at(double tokens) const;
  std::string describe() const { return description_; }
  // The router workload of a GPU profile's routed-expert curves that prices the block: "auto" for the uniform router
  // (the command line named none: the profile's default workload for the model, data/gpu_profiles/router.yaml),
  // "balanced" for a router the user gave (--zipf, --expert-loads), whose own statistics scale the balanced curve.
  const std::string& curve_dist() const { return curve_dist_; }

 private:
  std::int64_t experts_ = 0, top_k_ = 0;
  int ep_ = 1;
  bool uniform_ = true;
  std::string description_;
  std::string curve_dist_ = "auto";
  // Per layer (one row for uniform/zipf): per-token selection probability of each expert (Σ = top_k).
  std::vector<std::vector<double>> select_prob_;
};

// Reads an expert-load file: JSON {"experts": E, "layers": [[count per expert] per MoE layer]} or the routing trace
// of `moeplan run --trace-routing` (same keys). Throws InputError naming the file on malformed input.
// moe_layers > 0: the file must hold exactly that many rows (one per MoE layer).
std::vector<std::vector<double>> read_expert_loads(const std::filesystem::path& path, std::int64_t experts,
                                                   std::int64_t moe_layers = 0);

}  // namespace moeplan::simulator
