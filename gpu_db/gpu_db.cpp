#include "gpu_db/gpu_db.hpp"

#include <algorithm>
#include <cmath>
#include <future>
#include <map>
#include <set>

#include <yaml-cpp/yaml.h>

#include "common/async.hpp"
#include "common/error.hpp"
#include "common/files.hpp"
#include "common/text.hpp"

namespace moeplan::gpu_db {

namespace {

// FILE:LINE of a node, the prefix of every error about it.
std::string where_of(const YAML::Node& n, const std::filesystem::path& file) {
  return file.string() + ":" + std::to_string(n.Mark().line + 1);
}

// Reads typed keys of one YAML map entry; errors name the file, the line and the key.
class Entry {
 public:
  Entry(const YAML::Node& n, const std::string& file, std::set<std::string> allowed)
      : n_(n), where_(where_of(n, file)) {
    if (!n.IsMap()) throw InputError(where_ + ": expected a map of keys");
    allowed.insert("notes");
    for (const auto& kv : n) {
      const auto key = kv.first.as<std::string>();
      if (!allowed.count(key))
        throw InputError(where_ + ": unknown key '" + key + "' (allowed: " +
                         join(std::vector<std::string>(allowed.begin(), allowed.end()), ", ") + ")");
    }
  }
  bool has(const char* key) const { return n_[key] && !n_[key].IsNull(); }
  template <typename T>
  T get(const char* key) const {
    if (!has(key)) throw InputError(where_ + ": missing key '" + key + "'");
    try {
      return n_[key].as<T>();
    } catch (const YAML::Exception&) {
      throw InputError(where_ + ": key '" + key + "' has the wrong type (line " + std::to_string(n_[key].Mark().line + 1) + ")");
    }
  }
  template <typename T>
  T get_or(const char* key, T fallback) const { return has(key) ? get<T>(key) : fallback; }
  double positive(const char* key) const {
    const double v = get<double>(key);
    if (!(v > 0)) throw InputError(where_ + ": key '" + key + "' must be positive, got " + std::to_string(v));
    return v;
  }
  std::map<std::string, double> tflops(const char* key) const {
    std::map<std::string, double> out;
    if (!has(key)) return out;
    if (!n_[key].IsMap()) throw InputError(where_ + ": '" + key + "' must be a map of dtype: TFLOPS");
    for (const auto& kv : n_[key]) {
      if (kv.second.IsNull()) continue;
      const auto dtype = kv.first.as<std::string>();
      double v = 0;
      try {
        v = kv.second.as<double>();
      } catch (const YAML::Exception&) {
        throw InputError(where_ + ": '" + key + "." + dtype + "' must be a number");
      }
      if (!(v > 0)) throw InputError(where_ + ": '" + key + "." + dtype + "' must be positive (omit a dtype the hardware lacks)");
      out[dtype] = v * 1e12;
    }
    return out;
  }
  const std::string& where() const { return where_; }

 private:
  const YAML::Node& n_;
  std::string where_;
};

// The data files, parsed concurrently: yaml-cpp's scanner is most of the load's time. Each file is taken where the
// load reads it, so a bad file raises the same error, in the same order, as parsing them one after another.
class ParsedFiles {
 public:
  explicit ParsedFiles(const std::vector<std::filesystem::path>& paths) {
    for (const auto& p : paths) parsed_.emplace(p.string(), start_async([p] { return parse_yaml_file(p); }).share());
  }
  YAML::Node root(const std::filesystem::path& path) const {
    const auto it = parsed_.find(path.string());
    return it == parsed_.end() ? parse_yaml_file(path) : it->second.get();
  }

 private:
  std::map<std::string, std::shared_future<YAML::Node>> parsed_;
};

YAML::Node list_of(const ParsedFiles& files, const std::filesystem::path& path, const char* key) {
  const YAML::Node root = files.root(path);
  if (!root.IsMap() || !root[key] || !root[key].IsSequence())
    throw InputError(path.string() + ": expected a top-level '" + key + "' list");
  return root[key];
}

double gb_to_bytes(double gb, const std::string& unit, const std::string& where) {
  if (unit == "GB") return gb * 1e9;
  if (unit == "GiB") return gb * 1073741824.0;
  throw InputError(where + ": memory_unit must be GB or GiB, got '" + unit + "'");
}

// A YYYY-MM-DD date, as every dated row writes it (string order is then date order).
std::string iso_date(const std::string& s, const std::string& where) {
  const bool ok = s.size() == 10 && s[4] == '-' && s[7] == '-' &&
                  std::all_of(s.begin(), s.end(), [](char c) { return c == '-' || (c >= '0' && c <= '9'); });
  if (!ok) throw InputError(where + " must be a date YYYY-MM-DD, got '" + s + "'");
  return s;
}

Confidence parse_confidence(const Entry& e) {
  const std::string c = e.get_or<std::string>("confidence", "medium");
  if (c == "high") return Confidence::high;
  if (c == "medium") return Confidence::medium;
  if (c == "low") return Confidence::low;
  throw InputError(e.where() + ": confidence must be high, medium or low, got '" + c + "'");
}

// A price row of a GPU: its date must not precede the GPU's launch (rows dated earlier are flagged, not dropped: the
// page's date is wrong or the row is not the GPU it names).
void check_launch(GpuPrice& p, const GpuSpec& g, const std::string& where) {
  if (g.launch_date.empty())
    throw InputError(where + ": GPU " + g.name + " has prices but no launch_date in gpus.yaml (add it with launch_source)");
  if (p.date < g.launch_date)
    p.flags.push_back("dated before launch (" + g.launch_date + (g.launch_verified ? "" : ", a launch date not verified") + ")");
}

// The outlier rule (gpu_db.hpp): each row against the median of its GPU's rows of the same tier.
void flag_outliers(std::vector<GpuPrice>& prices) {
  std::map<std::pair<std::string, std::string>, std::vector<double>> by_gpu_tier;
  for (const auto& p : prices) by_gpu_tier[{p.gpu, p.tier}].push_back(p.usd_per_gpu_hour);
  for (auto& [key, v] : by_gpu_tier) std::sort(v.begin(), v.end());
  for (auto& p : prices) {
    const auto& v = by_gpu_tier.at({p.gpu, p.tier});
    if (static_cast<int>(v.size()) < kMinRowsForOutlier) continue;
    const std::size_t n = v.size();
    const double median = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
    const double ratio = p.usd_per_gpu_hour / median;
    if (ratio < kOutlierLow || ratio > kOutlierHigh)
      p.flags.push_back(format_fixed(ratio, 2) + "x the median $" + format_fixed(median, 2) + " of " + std::to_string(n) +
                        " " + p.tier + " rows");
  }
}

// Flags lower a row's confidence: a flagged price is never better than low.
template <typename Price>
void lower_flagged(std::vector<Price>& prices) {
  for (auto& p : prices)
    if (!p.flags.empty()) p.confidence = Confidence::low;
}

// ---------------------------------------------------------------- gpus.yaml

void read_measured(const YAML::Node& mn, const std::filesystem::path& file, GpuSpec& g) {
  const Entry me(mn, file.string(), {"gemm_tflops", "stream_tb_s", "source", "date"});
  g.measured_gemm_flops = me.tflops("gemm_tflops");
  for (const auto& [dtype, flops] : g.measured_gemm_flops) {
    const auto peak = g.peak_flops_dense.find(dtype);
    if (peak == g.peak_flops_dense.end())
      throw InputError(me.where() + ": measured.gemm_tflops." + dtype + " has no tflops_dense peak to compare with");
    if (flops > peak->second)
      throw InputError(me.where() + ": measured.gemm_tflops." + dtype + " exceeds the dense peak");
  }
  if (me.has("stream_tb_s")) {
    g.measured_stream_bytes_per_s = me.positive("stream_tb_s") * 1e12;
    if (g.measured_stream_bytes_per_s > g.mem_bandwidth_bytes_per_s)
      throw InputError(me.where() + ": measured.stream_tb_s exceeds mem_bandwidth_tb_s");
  }
  g.measured_source = me.get<std::string>("source");
  (void)me.get<std::string>("date");  // required: the day the sources were read
}

GpuSpec read_gpu(const YAML::Node& n, const std::filesystem::path& file) {
  const Entry e(n, file.string(),
                {"name",         "display_name",  "aliases",     "vendor",        "architecture",
                 "form_factor",  "memory_gb",     "memory_unit", "memory_type",   "mem_bandwidth_tb_s",
                 "tflops_dense", "fp4_format",    "tflops_note", "interconnect",  "interconnect_gb_s_bidir",
                 "pcie_gen",     "gpus_per_node", "tdp_w",       "confidence",    "source",
                 "date",         "measured",      "launch_date", "launch_source", "launch_verified"});
  GpuSpec g;
  g.name = to_lower(e.get<std::string>("name"));
  g.display_name = e.get_or<std::string>("display_name", g.name);
  if (e.has("aliases"))
    for (const auto& a : e.get<std::vector<std::string>>("aliases")) g.aliases.push_back(to_lower(a));
  g.vendor = e.get<std::string>("vendor");
  g.architecture = e.get_or<std::string>("architecture", "");
  g.form_factor = e.get_or<std::string>("form_factor", "");
  g.memory_type = e.get_or<std::string>("memory_type", "");
  g.memory_gb_marketed = e.positive("memory_gb");
  g.memory_unit = e.get_or<std::string>("memory_unit", "GB");
  g.memory_bytes = gb_to_bytes(g.memory_gb_marketed, g.memory_unit, e.where());
  g.mem_bandwidth_bytes_per_s = e.positive("mem_bandwidth_tb_s") * 1e12;
  g.peak_flops_dense = e.tflops("tflops_dense");
  if (g.peak_flops_dense.empty()) throw InputError(e.where() + ": tflops_dense needs at least one dtype");
  g.fp4_format = e.get_or<std::string>("fp4_format", "");
  g.interconnect = e.get_or<std::string>("interconnect", "pcie");
  if (e.has("interconnect_gb_s_bidir")) g.interconnect_bytes_per_s_bidir = e.positive("interconnect_gb_s_bidir") * 1e9;
  g.pcie_gen = e.get_or<int>("pcie_gen", 0);
  g.gpus_per_node = e.get_or<int>("gpus_per_node", 8);
  if (g.gpus_per_node < 1) throw InputError(e.where() + ": gpus_per_node must be at least 1");
  g.tdp_w = e.get_or<double>("tdp_w", 0);
  g.confidence = e.get_or<std::string>("confidence", "");
  g.source = e.get<std::string>("source");
  g.date = e.get<std::string>("date");
  g.notes = e.get_or<std::string>("notes", "");
  if (e.has("launch_date")) {
    g.launch_date = iso_date(e.get<std::string>("launch_date"), e.where() + ": launch_date");
    g.launch_source = e.get<std::string>("launch_source");
    g.launch_verified = e.get<bool>("launch_verified");  // required beside the date: whether its source states it
  }
  if (e.has("measured")) read_measured(n["measured"], file, g);
  return g;
}

std::vector<GpuSpec> read_gpus(const ParsedFiles& files, const std::filesystem::path& file) {
  std::vector<GpuSpec> gpus;
  std::set<std::string> ids;
  for (const auto& n : list_of(files, file, "gpus")) {
    GpuSpec g = read_gpu(n, file);
    std::vector<std::string> all_ids = g.aliases;
    all_ids.push_back(g.name);
    for (const auto& id : all_ids)
      if (!ids.insert(id).second)
        throw InputError(where_of(n, file) + ": GPU name or alias '" + id + "' is used twice");
    gpus.push_back(std::move(g));
  }
  return gpus;
}

// ---------------------------------------------------------------- hosts.yaml

HostSpec read_host(const YAML::Node& n, const std::filesystem::path& file) {
  const Entry e(
      n, file.string(),
      {"name", "display_name", "kind", "memory_gb", "memory_type", "memory_channels", "mem_bandwidth_gb_s",
       "tflops_dense", "cores", "clock_ghz", "fp32_flops_per_cycle", "gpu_tflops_dense",
       "llamacpp_decode_bandwidth_share", "llamacpp_prefill_tflops", "llamacpp_backend", "profile", "source", "date"});
  HostSpec h;
  h.name = to_lower(e.get<std::string>("name"));
  h.display_name = e.get_or<std::string>("display_name", h.name);
  h.kind = e.get<std::string>("kind");
  if (h.kind != "cpu" && h.kind != "unified") throw InputError(e.where() + ": kind must be cpu or unified");
  h.memory_bytes = e.positive("memory_gb") * 1e9;
  h.memory_type = e.get_or<std::string>("memory_type", "");
  h.memory_channels = e.get_or<int>("memory_channels", 0);
  h.mem_bandwidth_bytes_per_s = e.positive("mem_bandwidth_gb_s") * 1e9;
  h.peak_flops_dense = e.tflops("tflops_dense");
  h.cores = e.get_or<int>("cores", 0);
  if (h.cores < 0) throw InputError(e.where() + ": key 'cores' must be positive");
  if (e.has("clock_ghz")) h.clock_ghz = e.positive("clock_ghz");
  if (e.has("fp32_flops_per_cycle")) h.fp32_flops_per_cycle = e.positive("fp32_flops_per_cycle");
  h.gpu_peak_flops_dense = e.tflops("gpu_tflops_dense");
  if (!h.gpu_peak_flops_dense.empty() && h.kind != "unified")
    throw InputError(e.where() + ": gpu_tflops_dense is for unified-memory hosts (kind: unified)");
  if (e.has("llamacpp_decode_bandwidth_share")) {
    h.llamacpp_decode_bandwidth_share = e.positive("llamacpp_decode_bandwidth_share");
    if (h.llamacpp_decode_bandwidth_share > 1)
      throw InputError(e.where() + ": llamacpp_decode_bandwidth_share is a fraction (at most 1)");
  }
  if (e.has("llamacpp_prefill_tflops")) {
    if (h.gpu_peak_flops_dense.empty())
      throw InputError(e.where() +
                       ": llamacpp_prefill_tflops is measured on an integrated GPU (give gpu_tflops_dense)");
    h.llamacpp_prefill_flops = e.positive("llamacpp_prefill_tflops") * 1e12;
  }
  h.llamacpp_backend = e.get_or<std::string>("llamacpp_backend", "");
  if (!h.llamacpp_backend.empty() && h.llamacpp_backend != "cuda" && h.llamacpp_backend != "metal" &&
      h.llamacpp_backend != "vulkan")
    throw InputError(e.where() + ": llamacpp_backend must be cuda, metal or vulkan");
  if (!h.llamacpp_backend.empty() && h.gpu_peak_flops_dense.empty())
    throw InputError(e.where() + ": llamacpp_backend names the integrated GPU's backend (give gpu_tflops_dense)");
  h.profile = e.get_or<std::string>("profile", "");
  h.source = e.get<std::string>("source");
  h.date = e.get<std::string>("date");
  h.notes = e.get_or<std::string>("notes", "");
  return h;
}

std::vector<HostSpec> read_hosts(const ParsedFiles& files, const std::filesystem::path& file) {
  std::vector<HostSpec> hosts;
  std::set<std::string> names;
  for (const auto& n : list_of(files, file, "hosts")) {
    HostSpec h = read_host(n, file);
    if (!names.insert(h.name).second) throw InputError(where_of(n, file) + ": host '" + h.name + "' is listed twice");
    hosts.push_back(std::move(h));
  }
  return hosts;
}

// The defaults: one share per class of host, and the server assumed for --ram-gb without a compute figure.
HostDefaults read_host_defaults(const ParsedFiles& files, const std::filesystem::path& file,
                                const std::vector<HostSpec>& hosts) {
  HostDefaults d;
  const YAML::Node root = files.root(file);
  const YAML::Node shares = root["llamacpp_decode_bandwidth_share"];
  if (!shares || !shares.IsSequence())
    throw InputError(file.string() + ": expected a top-level 'llamacpp_decode_bandwidth_share' list");
  for (const auto& n : shares) {
    const Entry e(n, file.string(), {"class", "share", "rows", "source"});
    const std::string cls = e.get<std::string>("class");
    const double v = e.positive("share");
    if (v > 1) throw InputError(e.where() + ": share is a fraction (at most 1)");
    if (cls == "cpu") {
      d.cpu_decode_bandwidth_share = v;
      d.cpu_share_source = e.get<std::string>("source");
    } else if (cls == "unified_gpu") {
      d.unified_gpu_decode_bandwidth_share = v;
      d.unified_gpu_share_source = e.get<std::string>("source");
    } else if (cls == "metal_16bit") {
      d.metal_16bit_decode_bandwidth_share = v;
      d.metal_16bit_share_source = e.get<std::string>("source");
    } else {
      throw InputError(e.where() + ": class must be cpu, unified_gpu or metal_16bit");
    }
  }
  if (d.cpu_decode_bandwidth_share <= 0 || d.unified_gpu_decode_bandwidth_share <= 0)
    throw InputError(file.string() + ": llamacpp_decode_bandwidth_share needs a cpu and a unified_gpu row");
  if (!root["default_cpu_host"]) throw InputError(file.string() + ": expected a top-level 'default_cpu_host'");
  d.cpu_host = to_lower(root["default_cpu_host"].as<std::string>());
  const auto host = std::find_if(hosts.begin(), hosts.end(), [&](const HostSpec& h) { return h.name == d.cpu_host; });
  if (host == hosts.end())
    throw InputError(file.string() + ": default_cpu_host '" + d.cpu_host + "' is not a listed host");
  if (host->cores <= 0 || host->clock_ghz <= 0 || host->fp32_flops_per_cycle <= 0)
    throw InputError(file.string() + ": default_cpu_host " + host->name +
                     " needs cores, clock_ghz and fp32_flops_per_cycle");
  return d;
}

// ---------------------------------------------------------------- ram_sizes.yaml, links.yaml, network.yaml

std::vector<RamSize> read_ram_sizes(const ParsedFiles& files, const std::filesystem::path& file) {
  std::vector<RamSize> sizes;
  for (const auto& n : list_of(files, file, "ram_sizes")) {
    const Entry e(n, file.string(), {"gb", "dimms", "source"});
    RamSize r{e.positive("gb"), e.get<std::string>("dimms"), e.get<std::string>("source")};
    if (!sizes.empty() && r.gb <= sizes.back().gb)
      throw InputError(e.where() + ": ram_sizes must be listed in ascending gb");
    sizes.push_back(std::move(r));
  }
  return sizes;
}

std::vector<LinkSpec> read_links(const ParsedFiles& files, const std::filesystem::path& file) {
  std::vector<LinkSpec> links;
  std::set<std::string> names;
  for (const auto& n : list_of(files, file, "links")) {
    const Entry e(n, file.string(),
                  {"name", "short_name", "display_name", "scope", "bandwidth_gb_s_per_direction", "latency_us",
                   "source", "date"});
    LinkSpec l;
    l.name = to_lower(e.get<std::string>("name"));
    l.short_name = e.get_or<std::string>("short_name", l.name);
    l.display_name = e.get_or<std::string>("display_name", l.name);
    l.scope = e.get<std::string>("scope");
    if (l.scope != "intra-node" && l.scope != "inter-node")
      throw InputError(e.where() + ": scope must be intra-node or inter-node");
    l.bandwidth_bytes_per_s_per_direction = e.positive("bandwidth_gb_s_per_direction") * 1e9;
    l.latency_s = e.positive("latency_us") * 1e-6;
    l.source = e.get<std::string>("source");
    l.date = e.get<std::string>("date");
    l.notes = e.get_or<std::string>("notes", "");
    if (!names.insert(l.name).second) throw InputError(e.where() + ": link '" + l.name + "' is listed twice");
    links.push_back(std::move(l));
  }
  return links;
}

// The scale-out network: NIC ports per node by form factor (every GPU's form factor needs a rule).
std::vector<NicRule> read_nic_rules(const ParsedFiles& files, const std::filesystem::path& file,
                                    const std::vector<GpuSpec>& gpus) {
  std::vector<NicRule> rules;
  std::set<std::string> covered;
  for (const auto& n : list_of(files, file, "nics")) {
    const Entry e(n, file.string(), {"form_factors", "nics_per_gpu", "source", "date"});
    NicRule r;
    for (const auto& f : e.get<std::vector<std::string>>("form_factors")) {
      r.form_factors.push_back(to_lower(f));
      if (!covered.insert(r.form_factors.back()).second)
        throw InputError(e.where() + ": form factor '" + f + "' has a NIC rule already");
    }
    r.nics_per_gpu = e.positive("nics_per_gpu");
    r.source = e.get<std::string>("source");
    r.date = e.get<std::string>("date");
    r.notes = e.get_or<std::string>("notes", "");
    rules.push_back(std::move(r));
  }
  for (const auto& g : gpus)
    if (!covered.count(g.form_factor))
      throw InputError(file.string() + ": no NIC rule for form factor '" + g.form_factor + "' (GPU " + g.name + ")");
  return rules;
}

// The fabric's price per port.
NetworkPortPrice read_port_price(const ParsedFiles& files, const std::filesystem::path& file) {
  const YAML::Node price = files.root(file)["port_price"];
  if (!price) throw InputError(file.string() + ": expected a top-level 'port_price'");
  const Entry e(price, file.string(), {"usd_per_port", "amortisation_years", "source", "date"});
  NetworkPortPrice p;
  p.usd_per_port = e.positive("usd_per_port");
  p.amortisation_years = e.positive("amortisation_years");
  p.source = e.get<std::string>("source");
  p.date = e.get<std::string>("date");
  p.notes = e.get_or<std::string>("notes", "");
  return p;
}

// ---------------------------------------------------------------- prices/

// Each row must name a GPU of `db` (loaded before the prices); outliers and rows dated before launch are flagged.
std::vector<GpuPrice> read_gpu_prices(const ParsedFiles& files, const std::filesystem::path& file, const Database& db) {
  std::vector<GpuPrice> prices;
  for (const auto& n : list_of(files, file, "prices")) {
    const Entry e(n, file.string(),
                  {"provider", "gpu", "usd_per_gpu_hour", "tier", "date", "source", "network_included", "confidence"});
    GpuPrice p;
    p.provider = e.get<std::string>("provider");
    p.gpu = to_lower(e.get<std::string>("gpu"));
    p.usd_per_gpu_hour = e.positive("usd_per_gpu_hour");
    p.tier = e.get<std::string>("tier");
    p.date = e.get<std::string>("date");
    p.source = e.get<std::string>("source");
    p.notes = e.get_or<std::string>("notes", "");
    p.network_included = e.get_or<bool>("network_included", false);
    p.confidence = parse_confidence(e);
    const GpuSpec& g = db.gpu(p.gpu);  // must name a GPU in gpus.yaml
    p.gpu = g.name;
    p.date = iso_date(p.date, e.where() + ": date");
    check_launch(p, g, e.where());
    prices.push_back(std::move(p));
  }
  flag_outliers(prices);
  lower_flagged(prices);
  return prices;
}

std::vector<ApiPrice> read_api_prices(const ParsedFiles& files, const std::filesystem::path& file) {
  std::vector<ApiPrice> prices;
  for (const auto& n : list_of(files, file, "prices")) {
    const Entry e(n, file.string(),
                  {"provider", "model", "model_variant", "usd_per_m_input_tokens", "usd_per_m_output_tokens",
                   "usd_per_m_cached_input_tokens", "context_tokens", "date", "source", "conflict", "confidence"});
    ApiPrice p;
    p.provider = e.get<std::string>("provider");
    p.model = e.get<std::string>("model");
    p.model_variant = e.get_or<std::string>("model_variant", "");
    p.usd_per_m_input_tokens = e.positive("usd_per_m_input_tokens");
    p.usd_per_m_output_tokens = e.positive("usd_per_m_output_tokens");
    if (e.has("usd_per_m_cached_input_tokens"))
      p.usd_per_m_cached_input_tokens = e.positive("usd_per_m_cached_input_tokens");
    if (e.has("context_tokens")) p.context_tokens = e.get<std::int64_t>("context_tokens");
    p.date = e.get<std::string>("date");
    p.source = e.get<std::string>("source");
    p.conflict = e.get_or<bool>("conflict", false);
    p.notes = e.get_or<std::string>("notes", "");
    p.confidence = parse_confidence(e);
    // Output tokens cost more than input tokens at every provider (decode reads the weights per token); a row with
    // input above output is most likely swapped or mistyped at its source.
    if (p.usd_per_m_input_tokens > p.usd_per_m_output_tokens) p.flags.push_back("input above output");
    prices.push_back(std::move(p));
  }
  lower_flagged(prices);
  return prices;
}

}  // namespace

const char* confidence_name(Confidence c) {
  switch (c) {
    case Confidence::high: return "high";
    case Confidence::medium: return "medium";
    case Confidence::low: return "low";
  }
  return "?";
}

// The phases read the files in this order, so a bad file raises the same error as reading them one after another.
Database Database::load(const std::filesystem::path& dir) {
  const auto hosts = dir / "hosts.yaml", network = dir / "network.yaml";
  const ParsedFiles files({dir / "gpus.yaml", hosts, dir / "ram_sizes.yaml", dir / "links.yaml", network,
                           dir / "prices" / "gpu_hourly.yaml", dir / "prices" / "api.yaml"});
  Database db;
  db.gpus_ = read_gpus(files, dir / "gpus.yaml");
  db.hosts_ = read_hosts(files, hosts);
  db.host_defaults_ = read_host_defaults(files, hosts, db.hosts_);
  db.ram_sizes_ = read_ram_sizes(files, dir / "ram_sizes.yaml");
  db.links_ = read_links(files, dir / "links.yaml");
  for (const auto& g : db.gpus_)
    if (!db.link(g.interconnect))
      throw InputError((dir / "gpus.yaml").string() + ": GPU '" + g.name + "' names interconnect '" + g.interconnect +
                       "', which links.yaml does not define");
  db.nic_rules_ = read_nic_rules(files, network, db.gpus_);
  db.port_price_ = read_port_price(files, network);
  db.gpu_prices_ = read_gpu_prices(files, dir / "prices" / "gpu_hourly.yaml", db);
  db.api_prices_ = read_api_prices(files, dir / "prices" / "api.yaml");
  return db;
}

const GpuSpec& Database::gpu(const std::string& name_in) const {
  const std::string name = to_lower(name_in);
  for (const auto& g : gpus_) {
    if (g.name == name) return g;
    for (const auto& a : g.aliases)
      if (a == name) return g;
  }
  throw InputError(unknown_name_message("GPU", name_in, gpu_names(), "`moeplan gpus` lists them"));
}

const HostSpec& Database::host(const std::string& name_in) const {
  const std::string name = to_lower(name_in);
  for (const auto& h : hosts_)
    if (h.name == name) return h;
  throw InputError(unknown_name_message("host", name_in, host_names(), "`moeplan gpus --hosts` lists them"));
}

const LinkSpec* Database::link(const std::string& name) const {
  for (const auto& l : links_)
    if (l.name == name) return &l;
  return nullptr;
}

std::vector<std::string> Database::gpu_names() const {
  std::vector<std::string> out;
  for (const auto& g : gpus_) out.push_back(g.name);
  return out;
}

std::vector<std::string> Database::host_names() const {
  std::vector<std::string> out;
  for (const auto& h : hosts_) out.push_back(h.name);
  return out;
}

const NicRule& Database::nic_rule(const GpuSpec& gpu) const {
  for (const auto& r : nic_rules_)
    for (const auto& f : r.form_factors)
      if (f == gpu.form_factor) return r;
  throw InputError("data/network.yaml: no NIC rule for form factor '" + gpu.form_factor + "' (GPU " + gpu.name + ")");
}

int Database::default_nics_per_node(const GpuSpec& gpu) const {
  const double ports = std::round(std::max(1, gpu.gpus_per_node) * nic_rule(gpu).nics_per_gpu);
  return std::max(1, static_cast<int>(ports));
}

std::optional<GpuPrice> Database::cheapest_on_demand(const std::string& gpu_name) const {
  std::optional<GpuPrice> best;
  for (const auto& p : gpu_prices_)
    if (p.gpu == gpu_name && p.tier == "on-demand" && (!best || p.usd_per_gpu_hour < best->usd_per_gpu_hour)) best = p;
  return best;
}

std::optional<GpuPrice> Database::choose_price(const std::string& gpu_name,
                                               const std::function<bool(const std::string&)>& provider_ok,
                                               bool allow_flagged) const {
  // Preference: unflagged medium/high, then unflagged low, then (picked by name only) flagged; the cheapest within.
  auto rank = [](const GpuPrice& p) { return (p.flags.empty() ? 0 : 2) + (p.confidence == Confidence::low ? 1 : 0); };
  const GpuPrice* best = nullptr;
  for (const auto& p : gpu_prices_) {
    if (p.gpu != gpu_name || p.tier != "on-demand" || !provider_ok(p.provider)) continue;
    if (!p.flags.empty() && !allow_flagged) continue;
    if (!best || rank(p) < rank(*best) || (rank(p) == rank(*best) && p.usd_per_gpu_hour < best->usd_per_gpu_hour)) best = &p;
  }
  return best ? std::optional<GpuPrice>(*best) : std::nullopt;
}

std::vector<std::string> Database::gpu_price_providers() const {
  std::vector<std::string> out;
  for (const auto& p : gpu_prices_)
    if (std::find(out.begin(), out.end(), p.provider) == out.end()) out.push_back(p.provider);
  return out;
}

}  // namespace moeplan::gpu_db
