// planner/serving_compare: API break-even and launch commands (see serving_compare.hpp).
#include "planner/serving_compare.hpp"

#include <algorithm>
#include <cmath>

#include "common/error.hpp"
#include "common/files.hpp"
#include "common/text.hpp"
#include "planner/cost.hpp"

namespace moeplan::planner {

SelfHostedMonth self_hosted_month(const PlanRow& self, double capacity_tokens_per_month, double tokens_per_month) {
  SelfHostedMonth m;
  if (capacity_tokens_per_month <= 0) return m;
  const double replica_months = tokens_per_month / capacity_tokens_per_month;
  m.gpu_hours_needed = replica_months * self.count * kHoursPerMonth;
  m.replicas = std::max(1, static_cast<int>(std::ceil(replica_months - 1e-12)));
  m.gpu_hours_billed = m.replicas * self.count * kHoursPerMonth;
  m.usd = m.replicas * self.usd_per_month;
  return m;
}

ApiComparison compare_api(const gpu_db::Database& db, const std::string& model_name, const PlanRow& self,
                          std::int64_t input_tokens, std::int64_t output_tokens, double tokens_per_month) {
  if (!(tokens_per_month >= 0) || !std::isfinite(tokens_per_month))
    throw InputError("--tokens-per-month must be a positive number of tokens");
  const double in = static_cast<double>(input_tokens), out = static_cast<double>(output_tokens);
  const double request_m_tokens = (in + out) / 1e6;  // one request, in millions of tokens
  ApiComparison c;
  c.tokens_per_month = tokens_per_month;
  for (const auto& p : db.api_prices()) {
    if (p.model != model_name) continue;
    ApiOffer o{p, (in * p.usd_per_m_input_tokens + out * p.usd_per_m_output_tokens) / (in + out)};
    o.usd_per_1000_requests = 1000 * request_m_tokens * o.usd_per_m_blended;
    o.usd_per_month = tokens_per_month / 1e6 * o.usd_per_m_blended;
    c.offers.push_back(o);
  }
  if (c.offers.empty())
    throw InputError("no API price for " + model_name + " in data/prices/api.yaml (models with prices: see that file)");
  std::sort(c.offers.begin(), c.offers.end(),
            [](const ApiOffer& a, const ApiOffer& b) { return a.usd_per_m_blended < b.usd_per_m_blended; });
  const auto trusted = std::find_if(c.offers.begin(), c.offers.end(), [](const ApiOffer& o) {
    return o.price.flags.empty() && o.price.confidence != gpu_db::Confidence::low;
  });
  c.reference = trusted == c.offers.end() ? 0 : static_cast<std::size_t>(trusted - c.offers.begin());
  c.self_usd_per_m_blended = self.usd_per_m_blended_tokens;
  c.self_usd_per_1000_requests = 1000 * request_m_tokens * self.usd_per_m_blended_tokens;
  c.self_usd_per_month = self.usd_per_month;
  const double tokens_per_s = self.output_tokens_per_s * (in + out) / out;
  c.self_capacity_tokens_per_month = tokens_per_s * 3600.0 * kHoursPerMonth;
  // Renting the replica all month costs the same at any volume; the API costs volume × price.
  c.breakeven_tokens_per_month = c.self_usd_per_month / c.reference_offer().usd_per_m_blended * 1e6;
  c.breakeven_utilization = c.breakeven_tokens_per_month / c.self_capacity_tokens_per_month;
  if (tokens_per_month > 0) c.month = self_hosted_month(self, c.self_capacity_tokens_per_month, tokens_per_month);
  return c;
}

}  // namespace moeplan::planner
