// planner/prices: which $/GPU-hour each GPU is planned at (docs/planner.md "Cost"): per-GPU overrides (--gpu-price),
// providers left out (--exclude-provider) or picked (--price-source), and the default choice among
// data/prices/gpu_hourly.yaml's rows (gpu_db::Database::choose_price).
#pragma once
#include <map>
#include <string>
#include <vector>

#include "gpu_db/gpu_db.hpp"

namespace moeplan::planner {

// The highest $/GPU-hour accepted from the command line: about 7x the dearest on-demand row in
// data/prices/gpu_hourly.yaml (AWS p6 B200, $14.24). Above it the figure is taken for a typo (a month or a node price).
inline constexpr double kMaxUsdPerGpuHour = 100.0;

struct PriceChoice {
  double usd_per_gpu_hour_all = 0;                  // --gpu-price USD: every GPU (and a planned host's hour)
  std::map<std::string, double> usd_per_gpu_hour;   // --gpu-price GPU=USD,...: by canonical GPU name
  std::vector<std::string> exclude_providers;       // --exclude-provider, as written in gpu_hourly.yaml
  std::string provider;                             // --price-source: only this provider's rows (flagged ones too)
  bool empty() const { return usd_per_gpu_hour_all <= 0 && usd_per_gpu_hour.empty() && exclude_providers.empty() && provider.empty(); }
};

// --gpu-price, split at commas: one "USD" (every GPU) or "GPU=USD" entries with any name or alias the database
// accepts. Throws InputError naming the entry for an unknown GPU, a price that is not a finite number in
// (0, kMaxUsdPerGpuHour], or one GPU given twice (two aliases of one GPU included).
void parse_gpu_prices(const std::vector<std::string>& entries, const gpu_db::Database& db, PriceChoice& out);
// --exclude-provider / --price-source, split at commas: provider names of gpu_hourly.yaml, case-insensitive; throws
// InputError with the closest names for an unknown one or none. Returns the names as the file writes them.
std::vector<std::string> parse_providers(const std::vector<std::string>& names, const gpu_db::Database& db,
                                         const std::string& option);
// Throws InputError when the choice leaves no price for any of `gpus` (every provider excluded, or --price-source
// listing none of them and no --gpu-price for them).
void check_price_choice(const PriceChoice& c, const gpu_db::Database& db, const std::vector<const gpu_db::GpuSpec*>& gpus);

// The price a GPU is planned at: an override, else the default row under the provider filters. `usd_per_gpu_hour`
// 0: none. `source` names the provider and date (or the option); confidence and flags come from the row.
struct GpuPriceUsed {
  double usd_per_gpu_hour = 0;
  std::string source;
  bool network_included = false;
  bool overridden = false;                          // from --gpu-price
  gpu_db::Confidence confidence = gpu_db::Confidence::medium;
  std::vector<std::string> flags;
};
GpuPriceUsed gpu_price(const PriceChoice& c, const gpu_db::Database& db, const std::string& gpu_name);

// One line for a plan's header: how the GPU prices were chosen (the rule, and the options that changed it).
std::string price_rule_text(const PriceChoice& c);

}  // namespace moeplan::planner
