// planner/serving_compare: self-hosting against API prices (break-even volume and utilisation). Formulas:
// docs/planner.md. The launch commands of a chosen configuration are in planner/launch.hpp.
#pragma once
#include <filesystem>
#include <string>
#include <vector>

#include "gpu_db/gpu_db.hpp"
#include "planner/launch.hpp"
#include "planner/plan.hpp"

namespace moeplan::planner {

struct ApiOffer {
  gpu_db::ApiPrice price;
  double usd_per_m_blended = 0;  // at the workload's input:output ratio
  double usd_per_1000_requests = 0;  // 1000 requests of the workload's input + output tokens
  double usd_per_month = 0;      // at ApiComparison::tokens_per_month (0 when none is given)
};

// The self-hosted bill for a monthly volume (docs/planner.md "Cost"): the row's GPUs are rented by the month, so the
// volume needs whole replicas for the whole month, at least one: replicas = max(1, ceil(volume / capacity)).
struct SelfHostedMonth {
  double gpu_hours_needed = 0;   // volume / tokens per hour of one replica x its GPUs
  double gpu_hours_billed = 0;   // replicas x GPUs x 730 h
  int replicas = 0;
  double usd = 0;                // replicas x the row's $/month (GPUs and network)
};

struct ApiComparison {
  std::vector<ApiOffer> offers;          // cheapest first
  // The offer the break-even and "vs API" use: the cheapest of confidence medium or high without a flag (an API row
  // marked unreliable, or with input above output, is listed but not relied on); the cheapest offer when none is.
  std::size_t reference = 0;
  const ApiOffer& reference_offer() const { return offers.at(reference); }
  double self_usd_per_m_blended = 0;     // at the plan's utilisation
  double self_usd_per_month = 0;         // the replica rented all month
  double self_capacity_tokens_per_month = 0;   // input + output tokens one replica serves at 100 %
  double breakeven_tokens_per_month = 0; // above this monthly volume self-hosting is cheaper than the reference API
  double breakeven_utilization = 0;      // the same as a share of one replica's capacity (> 1: never on one replica)
  double self_usd_per_1000_requests = 0; // the row's $/M blended x the request's tokens x 1000
  double tokens_per_month = 0;           // --tokens-per-month (0: not given; then `month` is empty)
  SelfHostedMonth month;
};

// The self-hosted bill for `tokens_per_month` input + output tokens on `self` (capacity: tokens per month of one
// replica at 100 % of hours).
SelfHostedMonth self_hosted_month(const PlanRow& self, double capacity_tokens_per_month, double tokens_per_month);

// Throws InputError when no API price is listed for the model, or when `tokens_per_month` is negative or not finite
// (0: no monthly volume).
ApiComparison compare_api(const gpu_db::Database& db, const std::string& model_name, const PlanRow& self,
                          std::int64_t input_tokens, std::int64_t output_tokens, double tokens_per_month = 0);

}  // namespace moeplan::planner
