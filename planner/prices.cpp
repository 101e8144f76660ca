// planner/prices: the $/GPU-hour each GPU is planned at (see prices.hpp).
#include "planner/prices.hpp"

#include <algorithm>
#include <cmath>

#include "common/error.hpp"
#include "common/text.hpp"

namespace moeplan::planner {

namespace {

double parse_usd(const std::string& text, const std::string& what) {
  std::size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  // std::stod also reads hexadecimal ("0x10"): a price is written in decimal.
  if (used == 0 || used != text.size() || text.find_first_of("xX") != std::string::npos || !std::isfinite(v) ||
      !(v > 0) || v > kMaxUsdPerGpuHour)
    throw InputError("--gpu-price " + what + ": the price must be a number of USD per GPU-hour above 0 and at most " +
                     format_fixed(kMaxUsdPerGpuHour, 0) + ", got '" + text + "'");
  return v;
}

bool excluded(const PriceChoice& c, const std::string& provider) {
  return std::find(c.exclude_providers.begin(), c.exclude_providers.end(), provider) != c.exclude_providers.end();
}

bool provider_ok(const PriceChoice& c, const std::string& provider) {
  return !excluded(c, provider) && (c.provider.empty() || provider == c.provider);
}

}  // namespace

void parse_gpu_prices(const std::vector<std::string>& entries, const gpu_db::Database& db, PriceChoice& out) {
  if (entries.empty()) throw InputError("--gpu-price is empty: give USD per GPU-hour, or GPU=USD entries (h100-sxm=2.49,b200=5.50)");
  if (entries.size() == 1 && entries[0].find('=') == std::string::npos) {
    out.usd_per_gpu_hour_all = parse_usd(entries[0], "'" + entries[0] + "'");
    return;
  }
  std::map<std::string, std::string> written;  // canonical name -> the entry that set it
  for (const auto& entry : entries) {
    const auto eq = entry.find('=');
    if (eq == std::string::npos)
      throw InputError("--gpu-price '" + entry + "': give GPU=USD entries, e.g. h100-sxm=2.49,b200=5.50 (or one USD for every GPU)");
    const gpu_db::GpuSpec& g = db.gpu(entry.substr(0, eq));
    if (const auto it = written.find(g.name); it != written.end())
      throw InputError("--gpu-price: GPU " + g.name + " is given twice ('" + it->second + "' and '" + entry + "')");
    written[g.name] = entry;
    out.usd_per_gpu_hour[g.name] = parse_usd(entry.substr(eq + 1), "'" + entry + "'");
  }
}

std::vector<std::string> parse_providers(const std::vector<std::string>& names, const gpu_db::Database& db,
                                         const std::string& option) {
  const auto known = db.gpu_price_providers();
  std::vector<std::string> out;
  for (const auto& name : names) {
    const auto it = std::find_if(known.begin(), known.end(), [&](const std::string& k) { return to_lower(k) == to_lower(name); });
    if (it == known.end())
      throw InputError(option + ": " + unknown_name_message("provider", name, known, "data/prices/gpu_hourly.yaml lists them"));
    out.push_back(*it);
  }
  if (out.empty()) throw InputError(option + " is empty: name providers of data/prices/gpu_hourly.yaml");
  return out;
}

void check_price_choice(const PriceChoice& c, const gpu_db::Database& db, const std::vector<const gpu_db::GpuSpec*>& gpus) {
  if (c.usd_per_gpu_hour_all > 0 || (c.exclude_providers.empty() && c.provider.empty())) return;
  for (const gpu_db::GpuSpec* g : gpus)
    if (c.usd_per_gpu_hour.count(g->name) || gpu_price(c, db, g->name).usd_per_gpu_hour > 0) return;
  std::string why = c.provider.empty() ? "" : "--price-source " + c.provider;
  if (!c.exclude_providers.empty())
    why += (why.empty() ? "" : " with ") + std::string("--exclude-provider ") + join(c.exclude_providers, ",");
  throw InputError(why + " leaves no on-demand price for any GPU planned; drop a provider from the exclusions, pick "
                   "another --price-source, or give --gpu-price GPU=USD");
}

GpuPriceUsed gpu_price(const PriceChoice& c, const gpu_db::Database& db, const std::string& gpu_name) {
  GpuPriceUsed p;
  if (const auto it = c.usd_per_gpu_hour.find(gpu_name); it != c.usd_per_gpu_hour.end()) {
    p.usd_per_gpu_hour = it->second;
  } else if (c.usd_per_gpu_hour_all > 0) {
    p.usd_per_gpu_hour = c.usd_per_gpu_hour_all;
  }
  if (p.usd_per_gpu_hour > 0) {
    // A GPU price alone: the network is added for multi-node rows (--network-price 0: none).
    p.source = "--gpu-price";
    p.overridden = true;
    return p;
  }
  const auto row = db.choose_price(gpu_name, [&](const std::string& provider) { return provider_ok(c, provider); },
                                   !c.provider.empty());
  if (!row) return p;
  p.usd_per_gpu_hour = row->usd_per_gpu_hour;
  p.source = row->provider + " " + row->date;
  p.network_included = row->network_included;
  p.confidence = row->confidence;
  p.flags = row->flags;
  return p;
}

std::string price_rule_text(const PriceChoice& c) {
  std::string s = "GPU prices: per GPU the cheapest on-demand row of data/prices/gpu_hourly.yaml";
  if (!c.provider.empty()) s += " from --price-source " + c.provider + " (flagged rows too)";
  s += " with confidence medium or high and no flag (dated before the GPU's launch; below half or above twice the "
       "median of its rows), else the cheapest unflagged low-confidence row";
  if (!c.exclude_providers.empty()) s += "; --exclude-provider " + join(c.exclude_providers, ", ");
  if (c.usd_per_gpu_hour_all > 0) s = "GPU prices: --gpu-price $" + format_fixed(c.usd_per_gpu_hour_all, 2) + " per GPU-hour for every GPU";
  if (!c.usd_per_gpu_hour.empty()) {
    std::vector<std::string> given;
    for (const auto& [gpu, usd] : c.usd_per_gpu_hour) given.push_back(gpu + " $" + format_fixed(usd, 2));
    s += "; --gpu-price " + join(given, ", ");
  }
  return s + " (column \"price\": the confidence of the row used; docs/planner.md \"Cost\")";
}

}  // namespace moeplan::planner
