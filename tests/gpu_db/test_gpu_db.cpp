// The shipped hardware and price data load, hold the datasheet values, and bad data is reported by file and line.
#include <catch2/catch.hpp>

#include <fstream>
#include <iterator>

#include "common/error.hpp"
#include "gpu_db/gpu_db.hpp"
#include "tests/test_util.hpp"

using namespace moeplan;
using namespace moeplan::gpu_db;

TEST_CASE("the GPU database has at least 45 accelerators with dense datasheet peaks") {
  const auto db = Database::load(test::data());
  CHECK(db.gpus().size() >= 45);
  const auto& h100 = db.gpu("h100-sxm");
  CHECK(h100.memory_bytes == Approx(80e9));
  CHECK(h100.mem_bandwidth_bytes_per_s == Approx(3.35e12));
  CHECK(h100.peak_flops_dense.at("bf16") == Approx(989.4e12).epsilon(0.001));  // dense, not the 1,979 sparse figure
  CHECK(h100.peak_flops_dense.at("fp8") == Approx(1979e12).epsilon(0.001));
  CHECK_FALSE(h100.has_dtype("fp4"));
  const auto& h200 = db.gpu("h200-sxm");
  CHECK(h200.memory_bytes == Approx(141e9));
  CHECK(h200.mem_bandwidth_bytes_per_s == Approx(4.8e12));
  const auto& mi300x = db.gpu("mi300x");
  CHECK(mi300x.memory_gb_marketed == 192);  // 8 HBM3 stacks of 24 GiB: data says GiB
  CHECK(mi300x.peak_flops_dense.at("bf16") == Approx(1307.4e12).epsilon(0.001));
  // Published microbenchmarks (AMD's max-achievable FLOPs blog; Azure's BabelStream run), with their sources.
  CHECK(mi300x.measured_gemm_flops.at("fp8") == Approx(1223.6e12));
  CHECK(mi300x.measured_gemm_flops.at("bf16") == Approx(708e12));
  CHECK(mi300x.measured_stream_bytes_per_s == Approx(4.10e12));
  CHECK(mi300x.measured_source.find("rocm.blogs.amd.com") != std::string::npos);
  CHECK(db.gpu("mi325x").measured_gemm_flops.size() == 2);
  CHECK(h100.measured_gemm_flops.empty());
  CHECK(h100.measured_stream_bytes_per_s == 0);
  // Every GPU says where its numbers come from.
  for (const auto& g : db.gpus()) {
    INFO(g.name);
    CHECK_FALSE(g.source.empty());
    CHECK_FALSE(g.date.empty());
    CHECK(db.link(g.interconnect) != nullptr);
  }
  for (const char* name : {"b300", "b200", "gb200", "h20", "l40s", "l4", "a100-80gb-sxm", "v100-32gb", "t4", "rtx-4090",
                           "rtx-5090", "mi355x", "mi325x"})
    CHECK_NOTHROW(db.gpu(name));
}

TEST_CASE("hosts, links and prices load with sources") {
  const auto db = Database::load(test::data());
  CHECK(db.hosts().size() >= 8);
  CHECK(db.links().size() >= 8);
  CHECK_FALSE(db.gpu_prices().empty());
  CHECK_FALSE(db.api_prices().empty());
  for (const auto& p : db.api_prices()) {
    INFO(p.provider << " " << p.model);
    CHECK_FALSE(p.source.empty());
    CHECK_FALSE(p.date.empty());
  }
  const auto price = db.cheapest_on_demand("h100-sxm");
  REQUIRE(price.has_value());
  CHECK(price->usd_per_gpu_hour > 0.5);
  CHECK(price->usd_per_gpu_hour < 10);
}

TEST_CASE("the network file: a NIC rule for every form factor, a sourced port price, links with labels") {
  const auto db = Database::load(test::data());
  for (const auto& r : db.nic_rules()) {
    CHECK_FALSE(r.source.empty());
    CHECK_FALSE(r.date.empty());
    CHECK(r.nics_per_gpu > 0);
  }
  for (const auto& g : db.gpus()) {
    INFO(g.name);
    CHECK(db.default_nics_per_node(g) >= 1);
  }
  // HGX boards: one port per GPU; PCIe servers: one per 2 GPUs; a 4-card workstation node: 2.
  CHECK(db.default_nics_per_node(db.gpu("h100-sxm")) == 8);
  CHECK(db.default_nics_per_node(db.gpu("l40s")) == 4);
  CHECK(db.default_nics_per_node(db.gpu("rtx-pro-6000")) == 2);
  CHECK(db.default_nics_per_node(db.gpu("gh200")) == 1);
  const auto& port = db.network_port_price();
  CHECK_FALSE(port.source.empty());
  CHECK_FALSE(port.date.empty());
  CHECK(port.usd_per_port_hour() == Approx(port.usd_per_port / (port.amortisation_years * 8760)));
  CHECK(db.link("infiniband-ndr")->short_name == "ib-ndr400");
  CHECK(db.link("nvlink4")->short_name == "nvlink4");  // the name when the data gives no label
  // Price rows say whether their instances come with a scale-out fabric.
  bool some = false;
  for (const auto& p : db.gpu_prices()) some = some || p.network_included;
  CHECK(some);
}

TEST_CASE("unknown GPU names suggest the closest ones") {
  const auto db = Database::load(test::data());
  CHECK_THROWS_WITH(db.gpu("h100-sx"), Catch::Contains("unknown GPU 'h100-sx'") && Catch::Contains("h100-sxm"));
  CHECK_THROWS_AS(db.host("no-such-host"), InputError);
}

namespace {
// A copy of data/ in a temporary directory with one file replaced.
std::filesystem::path data_with(const std::string& relative, const std::string& content) {
  const auto dir = std::filesystem::temp_directory_path() / ("moeplan_db_" + std::to_string(std::hash<std::string>{}(relative + content)));
  std::filesystem::remove_all(dir);
  std::filesystem::copy(test::data(), dir, std::filesystem::copy_options::recursive);
  std::ofstream(dir / relative) << content;
  return dir;
}
}  // namespace

TEST_CASE("bad data files are reported with file and line") {
  CHECK_THROWS_WITH(Database::load(data_with("gpus.yaml", "gpus:\n  - name: x\n    memory_gb: [80\n")),
                    Catch::Contains("gpus.yaml:") && Catch::Contains("malformed YAML"));
  const std::string gpu =
      "gpus:\n  - {name: x, vendor: amd, memory_gb: 80, mem_bandwidth_tb_s: 2, tflops_dense: {bf16: 100}, source: s, date: d,\n"
      "     measured: ";
  CHECK_THROWS_WITH(Database::load(data_with("gpus.yaml", gpu + "{gemm_tflops: {bf16: 120}, source: s, date: d}}\n")),
                    Catch::Contains("gpus.yaml:") && Catch::Contains("exceeds the dense peak"));
  CHECK_THROWS_WITH(Database::load(data_with("gpus.yaml", gpu + "{gemm_tflops: {fp8: 50}, source: s, date: d}}\n")),
                    Catch::Contains("no tflops_dense peak"));
  CHECK_THROWS_WITH(Database::load(data_with("gpus.yaml", gpu + "{stream_tb_s: 3, source: s, date: d}}\n")),
                    Catch::Contains("exceeds mem_bandwidth_tb_s"));
  CHECK_THROWS_WITH(Database::load(data_with("gpus.yaml", gpu + "{stream_tb_s: 1.5, date: d}}\n")),
                    Catch::Contains("missing key 'source'"));
  CHECK_THROWS_WITH(Database::load(data_with("ram_sizes.yaml", "ram_sizes:\n  - {gb: 64, dimms: a, source: s}\n  - {gb: 32, dimms: b, source: s}\n")),
                    Catch::Contains("ram_sizes.yaml:3") && Catch::Contains("ascending"));
  CHECK_THROWS_WITH(Database::load(data_with("ram_sizes.yaml", "ram_sizes:\n  - {gb: 64, dimms: a}\n")),
                    Catch::Contains("missing key 'source'"));
  CHECK_THROWS_WITH(Database::load(data_with("links.yaml", "links:\n  - name: x\n    bogus: 1\n")),
                    Catch::Contains("links.yaml:2") && Catch::Contains("unknown key 'bogus'"));
  CHECK_THROWS_WITH(
      Database::load(data_with("prices/gpu_hourly.yaml",
                               "prices:\n  - {provider: p, gpu: no-such-gpu, usd_per_gpu_hour: 1, tier: on-demand, date: d, source: s}\n")),
      Catch::Contains("unknown GPU 'no-such-gpu'"));
  CHECK_THROWS_WITH(
      Database::load(data_with("prices/gpu_hourly.yaml",
                               "prices:\n  - {provider: p, gpu: h100-sxm, usd_per_gpu_hour: -1, tier: on-demand, date: d, source: s}\n")),
      Catch::Contains("must be positive"));
  CHECK_THROWS_WITH(Database::load(data_with("network.yaml",
                                             "nics:\n  - {form_factors: [sxm], nics_per_gpu: 1, source: s, date: d}\n"
                                             "port_price: {usd_per_port: 1, amortisation_years: 4, source: s, date: d}\n")),
                    Catch::Contains("network.yaml") && Catch::Contains("no NIC rule for form factor"));
  CHECK_THROWS_WITH(Database::load(data_with("network.yaml",
                                             "nics:\n  - {form_factors: [sxm, oam, superchip, pcie, card], nics_per_gpu: 0, "
                                             "source: s, date: d}\nport_price: {usd_per_port: 1, amortisation_years: 4, "
                                             "source: s, date: d}\n")),
                    Catch::Contains("network.yaml:2") && Catch::Contains("must be positive"));
  // A unified host's llama.cpp backend is one whose kernels the simulator knows.
  std::ifstream in(test::data() / "hosts.yaml");
  std::string hosts((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string backend = "llamacpp_backend: cuda";
  REQUIRE(hosts.find(backend) != std::string::npos);
  hosts.replace(hosts.find(backend), backend.size(), "llamacpp_backend: rocm");
  CHECK_THROWS_WITH(Database::load(data_with("hosts.yaml", hosts)),
                    Catch::Contains("hosts.yaml:") && Catch::Contains("llamacpp_backend must be cuda, metal or vulkan"));
}

TEST_CASE("every priced GPU has a sourced launch date, and price rows before it or far from the median are flagged") {
  const auto db = Database::load(test::data());
  int before_launch = 0;
  for (const auto& p : db.gpu_prices()) {
    INFO(p.provider << " " << p.gpu << " " << p.date);
    const auto& g = db.gpu(p.gpu);
    REQUIRE(g.launch_date.size() == 10);
    CHECK_FALSE(g.launch_source.empty());
    const bool early = p.date < g.launch_date;
    before_launch += early ? 1 : 0;
    CHECK(early == (!p.flags.empty() && p.flags.front().rfind("dated before launch", 0) == 0));
    if (!p.flags.empty()) CHECK(p.confidence == Confidence::low);
  }
  // The one row dated before its GPU: packet.ai's RTX PRO 6000 post (2025-01-12, the card was announced 2025-03-18).
  CHECK(before_launch == 1);
  bool packet = false;
  for (const auto& p : db.gpu_prices())
    if (p.provider == "packet.ai" && p.gpu == "rtx-pro-6000") {
      packet = true;
      // Two on-demand rows are left for the Workstation Edition (AWS's g7e is the Server Edition), too few for the
      // median rule (unit-tested below), so the launch flag is its only one.
      REQUIRE(p.flags.size() == 1);
      // Its GPU's launch day is verified against its sources (gpus.yaml), so the flag names the day alone.
      CHECK(p.flags[0] == "dated before launch (2025-03-18)");
    }
  CHECK(packet);
  // Launch dates: a verified one's source names the day's year; the unverified ones are marked so in the data.
  int verified = 0, unverified = 0;
  for (const auto& g : db.gpus()) {
    if (g.launch_date.empty()) continue;
    INFO(g.name << " " << g.launch_date << " " << g.launch_source);
    if (g.launch_verified) {
      ++verified;
      CHECK(g.launch_source.find(g.launch_date.substr(0, 4)) != std::string::npos);
    } else {
      ++unverified;
    }
  }
  CHECK(verified >= 10);
  CHECK(db.gpu("h100-sxm").launch_verified);
  CHECK_FALSE(db.gpu("t4").launch_verified);
  CHECK(verified + unverified == 27);
  // deploybase.ai rows are marked low in the file itself.
  for (const auto& p : db.gpu_prices())
    if (p.source.find("deploybase.ai") != std::string::npos) CHECK(p.confidence == Confidence::low);
  // No API row has input above output; the Lambda Maverick row (LiteLLM only) is low.
  for (const auto& a : db.api_prices()) {
    INFO(a.provider << " " << a.model);
    CHECK(a.usd_per_m_input_tokens <= a.usd_per_m_output_tokens);
    CHECK(a.flags.empty());
    if (a.provider == "Lambda" && a.model == "llama4-maverick") CHECK(a.confidence == Confidence::low);
  }
}

namespace {
// A copy of data/ with several files replaced.
std::filesystem::path data_with_files(const std::vector<std::pair<std::string, std::string>>& files) {
  std::string key;
  for (const auto& [f, c] : files) key += f + c;
  const auto dir = std::filesystem::temp_directory_path() / ("moeplan_db2_" + std::to_string(std::hash<std::string>{}(key)));
  std::filesystem::remove_all(dir);
  std::filesystem::copy(test::data(), dir, std::filesystem::copy_options::recursive);
  for (const auto& [f, c] : files) std::ofstream(dir / f) << c;
  return dir;
}
}  // namespace

TEST_CASE("the price checks: launch date, outliers, dates, confidence, input above output") {
  const std::string head = "prices:\n";
  auto row = [](const char* provider, double usd, const char* date) {
    return std::string("  - {provider: ") + provider + ", gpu: h100-sxm, usd_per_gpu_hour: " + std::to_string(usd) +
           ", tier: on-demand, date: \"" + date + "\", source: s}\n";
  };
  // Median of 2.0, 2.2, 2.4, 0.9, 5.0 is 2.2: 0.9 (0.41x) and 5.0 (2.27x) are outliers; 2022-01-01 precedes the H100.
  const auto db = Database::load(data_with("prices/gpu_hourly.yaml",
                                           head + row("a", 2.0, "2026-01-01") + row("b", 2.2, "2026-01-01") +
                                               row("c", 2.4, "2022-01-01") + row("d", 0.9, "2026-01-01") +
                                               row("e", 5.0, "2026-01-01")));
  std::map<std::string, std::vector<std::string>> flags;
  for (const auto& p : db.gpu_prices()) flags[p.provider] = p.flags;
  CHECK(flags["a"].empty());
  CHECK(flags["b"].empty());
  CHECK(flags["c"] == std::vector<std::string>{"dated before launch (2022-03-22)"});
  CHECK(flags["d"] == std::vector<std::string>{"0.41x the median $2.20 of 5 on-demand rows"});
  CHECK(flags["e"] == std::vector<std::string>{"2.27x the median $2.20 of 5 on-demand rows"});
  // The default skips the flagged rows: a's $2.00, not d's $0.90 or c's.
  const auto chosen = db.choose_price("h100-sxm", [](const std::string&) { return true; }, false);
  REQUIRE(chosen);
  CHECK(chosen->provider == "a");
  // Two rows are too few to call one an outlier.
  const auto two = Database::load(data_with("prices/gpu_hourly.yaml", head + row("a", 1.0, "2026-01-01") + row("b", 9.0, "2026-01-01")));
  for (const auto& p : two.gpu_prices()) CHECK(p.flags.empty());
  CHECK_THROWS_WITH(Database::load(data_with("prices/gpu_hourly.yaml", head + row("a", 1.0, "March 2026"))),
                    Catch::Contains("gpu_hourly.yaml:2") && Catch::Contains("must be a date YYYY-MM-DD"));
  CHECK_THROWS_WITH(Database::load(data_with("prices/gpu_hourly.yaml",
                                             head + "  - {provider: a, gpu: h100-sxm, usd_per_gpu_hour: 1, tier: on-demand, "
                                                    "date: \"2026-01-01\", source: s, confidence: sure}\n")),
                    Catch::Contains("confidence must be high, medium or low"));
  // A priced GPU needs a launch date.
  const std::string gpus =
      "gpus:\n  - {name: x, vendor: amd, memory_gb: 80, mem_bandwidth_tb_s: 2, tflops_dense: {bf16: 100}, "
      "form_factor: pcie, interconnect: pcie5, source: s, date: d}\n";
  CHECK_THROWS_WITH(
      Database::load(data_with_files({{"gpus.yaml", gpus},
                                      {"prices/gpu_hourly.yaml", "prices:\n  - {provider: a, gpu: x, usd_per_gpu_hour: 1, "
                                                                 "tier: on-demand, date: \"2026-01-01\", source: s}\n"}})),
      Catch::Contains("GPU x has prices but no launch_date"));
  // An API row with input above output is flagged and counts as low.
  const auto api = Database::load(data_with(
      "prices/api.yaml", "prices:\n  - {provider: p, model: llama4-maverick, usd_per_m_input_tokens: 1.41, "
                         "usd_per_m_output_tokens: 0.35, date: \"2026-07-24\", source: s}\n"));
  REQUIRE(api.api_prices().size() == 1);
  CHECK(api.api_prices()[0].flags == std::vector<std::string>{"input above output"});
  CHECK(api.api_prices()[0].confidence == Confidence::low);
}
