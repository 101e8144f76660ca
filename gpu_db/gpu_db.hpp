// gpu_db: hardware and prices as data. Loads data/gpus.yaml, hosts.yaml, links.yaml, network.yaml,
// prices/gpu_hourly.yaml and prices/api.yaml into plain structs; every entry keeps its source and date. No performance
// is computed here.
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace moeplan::gpu_db {

struct GpuSpec {
  std::string name;          // id used on the command line
  std::string display_name;
  std::vector<std::string> aliases;
  std::string vendor, architecture, form_factor, memory_type;
  double memory_bytes = 0;                 // memory_gb in its stated unit (GB = 1e9, GiB = 2^30)
  double memory_gb_marketed = 0;
  std::string memory_unit;                 // "GB" or "GiB"
  double mem_bandwidth_bytes_per_s = 0;    // vendor peak
  std::map<std::string, double> peak_flops_dense;  // dtype (bf16, fp16, fp8, int8, fp4) -> FLOP/s (dense)
  std::string fp4_format;                  // nvfp4, mxfp4 or empty
  std::string interconnect;                // id in links.yaml
  std::optional<double> interconnect_bytes_per_s_bidir;
  int pcie_gen = 0;
  int gpus_per_node = 8;
  double tdp_w = 0;
  std::string confidence, source, date, notes;
  // The day the vendor announced the product (YYYY-MM-DD) and where that is stated; required for a GPU with rental
  // prices, since no price can predate it (docs/planner.md "Cost").
  std::string launch_date, launch_source;
  bool launch_verified = false;  // launch_source was read to state launch_date (gpus.yaml launch_verified)
  // Published microbenchmarks of the GPU (gpus.yaml `measured`, each with its source): the large dense GEMM rate a
  // vendor library reaches, by dtype (FLOP/s), and STREAM-class memory bandwidth (bytes/s). Empty / 0 where none
  // is recorded; the roofline then keeps its generic efficiency shares (simulator/hardware.cpp).
  std::map<std::string, double> measured_gemm_flops;
  double measured_stream_bytes_per_s = 0;
  std::string measured_source;

  bool has_dtype(const std::string& dtype) const { return peak_flops_dense.count(dtype) > 0; }
};

struct HostSpec {
  std::string name, display_name, kind, memory_type;  // kind: cpu | unified
  double memory_bytes = 0;
  int memory_channels = 0;
  double mem_bandwidth_bytes_per_s = 0;
  std::map<std::string, double> peak_flops_dense;
  int cores = 0;
  double clock_ghz = 0;                // all-core clock the CPU compute figure uses (0: not in the data)
  double fp32_flops_per_cycle = 0;     // per core (0: not in the data)
  // Unified-memory hosts: the integrated GPU's dense FLOP/s by dtype (llama.cpp runs there: Metal, Vulkan, CUDA).
  std::map<std::string, double> gpu_peak_flops_dense;
  // llama.cpp's achieved share of mem_bandwidth in batch-1 decode measured on this very chip (0: the class default).
  double llamacpp_decode_bandwidth_share = 0;
  // llama.cpp's achieved FLOP/s in prompt processing measured on this very chip's integrated GPU (0: not measured).
  double llamacpp_prefill_flops = 0;
  // The llama.cpp backend that runs the integrated GPU (cuda, metal, vulkan; "": not stated): its kernels' tile shapes
  // (data/engines.yaml expert_tile_rows_*).
  std::string llamacpp_backend;
  std::string profile;  // a measured profile (moeplan calibrate), relative to data/, used when simulating this host
  std::string source, date, notes;
};

// hosts.yaml's defaults: llama.cpp's decode bandwidth share per class of host (from published llama-bench runs of
// other models; the file's header shows the rows and the arithmetic) and the server assumed when only RAM is given.
struct HostDefaults {
  double cpu_decode_bandwidth_share = 0, unified_gpu_decode_bandwidth_share = 0;
  std::string cpu_share_source, unified_gpu_share_source;
  // llama.cpp's decode share with F16/BF16 weights on Apple's GPUs (Metal), where 16-bit weights stream faster than
  // the Q4_0 runs the chips' own shares come from; 0 when hosts.yaml gives none.
  double metal_16bit_decode_bandwidth_share = 0;
  std::string metal_16bit_share_source;
  std::string cpu_host;  // a hosts.yaml entry with cores, clock and FLOP/cycle
};

// A RAM size one can buy (data/ram_sizes.yaml): DIMM count x DIMM size, and where those DIMMs are documented.
struct RamSize {
  double gb = 0;       // decimal GB
  std::string reason;  // e.g. "12 x 32 GB RDIMM (12-channel server)"
  std::string source;
};

struct LinkSpec {
  std::string name, display_name, scope;    // scope: intra-node | inter-node
  std::string short_name;                   // label in plan rows (the name when the data gives none)
  double bandwidth_bytes_per_s_per_direction = 0;
  double latency_s = 0;
  std::string source, date, notes;
};

// How far a price row can be trusted (docs/planner.md "Cost"): the file's `confidence` (high: the provider's own page;
// medium, the default: a dated secondary page or dataset; low: a source the file marks unreliable), lowered to low
// by any flag the loader raises.
enum class Confidence { low, medium, high };
const char* confidence_name(Confidence c);

struct GpuPrice {
  std::string provider, gpu, tier, date, source, notes;
  double usd_per_gpu_hour = 0;
  bool network_included = false;  // the instance comes with a scale-out fabric (e.g. EFA, InfiniBand cluster network)
  Confidence confidence = Confidence::medium;
  // Set by the loader: "dated before launch (YYYY-MM-DD)", "0.38x the median" (below half or above twice the median
  // of the GPU's rows of the same tier, when it has at least kMinRowsForOutlier rows).
  std::vector<std::string> flags;
};
// The outlier rule: a row below kOutlierLow or above kOutlierHigh times the median of the GPU's rows of its tier
// (the row included), judged only where the GPU has at least kMinRowsForOutlier rows of that tier.
inline constexpr double kOutlierLow = 0.5, kOutlierHigh = 2.0;
inline constexpr int kMinRowsForOutlier = 3;

// data/network.yaml: the scale-out network's default NIC ports per node and its price per port (docs/planner.md
// "Cost", docs/simulator.md "Collectives").
struct NicRule {
  std::vector<std::string> form_factors;    // gpus.yaml form_factor values it covers
  double nics_per_gpu = 1;                  // ports of the --internode link per GPU (a node has at least one)
  std::string source, date, notes;
};
struct NetworkPortPrice {
  double usd_per_port = 0;                  // switch ports, cables and optics per NIC port
  double amortisation_years = 0;
  std::string source, date, notes;
  double usd_per_port_hour() const { return usd_per_port / (amortisation_years * 8760.0); }
};

struct ApiPrice {
  std::string provider, model, model_variant, date, source, notes;
  double usd_per_m_input_tokens = 0, usd_per_m_output_tokens = 0;
  std::optional<double> usd_per_m_cached_input_tokens;
  std::optional<std::int64_t> context_tokens;
  bool conflict = false;
  Confidence confidence = Confidence::medium;  // as GpuPrice; an "input above output" flag lowers it to low
  std::vector<std::string> flags;
};

class Database {
 public:
  // Loads and validates every file under `data_dir`. Throws InputError naming file and line on bad data.
  static Database load(const std::filesystem::path& data_dir);

  const std::vector<GpuSpec>& gpus() const { return gpus_; }
  const std::vector<HostSpec>& hosts() const { return hosts_; }
  const HostDefaults& host_defaults() const { return host_defaults_; }
  const std::vector<RamSize>& ram_sizes() const { return ram_sizes_; }  // ascending
  const std::vector<LinkSpec>& links() const { return links_; }
  const std::vector<NicRule>& nic_rules() const { return nic_rules_; }
  const NetworkPortPrice& network_port_price() const { return port_price_; }
  const std::vector<GpuPrice>& gpu_prices() const { return gpu_prices_; }
  const std::vector<ApiPrice>& api_prices() const { return api_prices_; }

  // Lookup by name or alias (case-insensitive); throws InputError with the closest names.
  const GpuSpec& gpu(const std::string& name) const;
  const HostSpec& host(const std::string& name) const;
  const LinkSpec* link(const std::string& name) const;
  std::vector<std::string> gpu_names() const;
  std::vector<std::string> host_names() const;

  // The NIC rule for a GPU's form factor (network.yaml; every form factor in gpus.yaml has one), and the default NIC
  // ports per node it gives: round(gpus_per_node x nics_per_gpu), at least 1.
  const NicRule& nic_rule(const GpuSpec& gpu) const;
  int default_nics_per_node(const GpuSpec& gpu) const;

  // Lowest on-demand price for a GPU, if any source lists one.
  std::optional<GpuPrice> cheapest_on_demand(const std::string& gpu_name) const;
  // The default price of a GPU (docs/planner.md "Cost"): among its on-demand rows whose provider passes `provider_ok`,
  // the cheapest unflagged one of confidence medium or high, else the cheapest unflagged one; flagged rows only when
  // `allow_flagged` (a provider picked by name). nullopt when no row qualifies.
  std::optional<GpuPrice> choose_price(const std::string& gpu_name,
                                       const std::function<bool(const std::string& provider)>& provider_ok,
                                       bool allow_flagged) const;
  // Provider names of gpu_hourly.yaml, as written there.
  std::vector<std::string> gpu_price_providers() const;

 private:
  std::vector<GpuSpec> gpus_;
  std::vector<HostSpec> hosts_;
  HostDefaults host_defaults_;
  std::vector<RamSize> ram_sizes_;
  std::vector<LinkSpec> links_;
  std::vector<NicRule> nic_rules_;
  NetworkPortPrice port_price_;
  std::vector<GpuPrice> gpu_prices_;
  std::vector<ApiPrice> api_prices_;
};

}  // namespace moeplan::gpu_db
