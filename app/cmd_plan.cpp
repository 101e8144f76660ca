// `moeplan plan`: rank every configuration for a model, workload, SLO and budget. `moeplan compare-api`: the best
// self-hosted configuration against every API price for the model, with the break-even volume.
#include <algorithm>
#include <filesystem>
#include <future>
#include <iostream>
#include <optional>

#include "app/cli.hpp"
#include "app/config_options.hpp"
#include "app/plan_options.hpp"
#include "common/async.hpp"
#include "common/error.hpp"
#include "common/files.hpp"
#include "common/progress.hpp"
#include "common/text.hpp"
#include "planner/plan.hpp"
#include "planner/serving_compare.hpp"
#include "reports/plan_report.hpp"
#include "simulator/engine.hpp"
#include "simulator/profile.hpp"
#include "simulator/published.hpp"

namespace po = boost::program_options;

namespace moeplan::app {

void add_plan_options(po::options_description& d, PlanOptions& o) {
  add_model_option(d, o.model_name);
  d.add_options()
      ("input", po::value<std::int64_t>(&o.input)->default_value(1000), "prompt tokens per request")
      ("output", po::value<std::int64_t>(&o.output)->default_value(1000), "output tokens per request")
      ("gpus", po::value<std::string>(&o.gpus), "comma-separated GPU names (default: every GPU in data/gpus.yaml)")
      ("precisions", po::value<std::string>(&o.precisions),
       "comma-separated precisions (default: bf16,fp8,nvfp4 and the checkpoint's own)")
      ("counts", po::value<std::string>(&o.counts)->default_value("1,2,4,8,16,32,64"), "GPU counts to try")
      ("ttft-ms", po::value<double>(&o.ttft), "SLO: time to first token, ms")
      ("tpot-ms", po::value<double>(&o.tpot)->default_value(50),
       "SLO: time per output token, ms (default 50 = 20 tok/s per user, DeepSeek's production figure)")
      ("min-tokens-per-s-per-user", po::value<double>(&o.min_user), "SLO: decode speed each user sees (1000 / TPOT)")
      ("slo-percentile", po::value<int>(&o.slo_percentile)->default_value(90),
       "percentile of TTFT and TPOT (simulate's serving loop) that the SLOs hold: 50, 90 or 99")
      ("budget-per-month", po::value<double>(&o.budget_month), "USD per month for the GPUs (730 h)")
      ("budget-per-hour", po::value<double>(&o.budget_hour), "USD per hour for the GPUs")
      ("gpu-price", po::value<std::string>(&o.gpu_price),
       "USD per GPU-hour instead of data/prices: GPU=USD entries (h100-sxm=2.49,b200=5.50; any GPU name or alias), or "
       "one USD for every GPU; at most 100")
      ("exclude-provider", po::value<std::string>(&o.exclude_providers),
       "comma-separated providers of data/prices/gpu_hourly.yaml whose rows are not used")
      ("price-source", po::value<std::string>(&o.price_source),
       "price every GPU from this provider of data/prices/gpu_hourly.yaml only (its flagged rows too); GPUs it does not "
       "list have no price unless --gpu-price gives one")
      ("utilization", po::value<double>(&o.utilization)->default_value(1.0),
       "share of hours serving at the operating point (1.0 = 100 %; idle hours are paid too)")
      ("objective", po::value<std::string>(&o.objective)->default_value("usd-per-m-tokens"),
       "rank by usd-per-m-tokens, tokens-per-s-per-user, tokens-per-s-per-dollar or fewest-gpus")
      ("top", po::value<int>(&o.top)->default_value(10), "rows to print")
      ("max-batch", po::value<std::int64_t>(&o.max_batch)->default_value(1024), "largest batch per attention group")
      ("internode", po::value<std::string>(&o.internode)->default_value("infiniband-ndr"),
       "link between nodes (data/links.yaml inter-node entries: infiniband-ndr, infiniband-xdr, roce-400g, ...)")
      ("nics-per-node", po::value<int>(&o.nics_per_node),
       "NIC ports of --internode per node, for every GPU (default from data/network.yaml: one per GPU on SXM/OAM "
       "boards, one per 2 GPUs in PCIe servers)")
      ("network-price", po::value<double>(&o.network_price),
       "USD per NIC port-hour added to multi-node rows whose GPU price does not include the network (default from "
       "data/network.yaml; 0: none)")
      ("tokens-per-month", po::value<double>(&o.tokens_per_month),
       "input + output tokens served per month: each API's and the self-hosted row's monthly bill at that volume "
       "(self-hosted: whole replicas rented for the month, at least one)")
      ("host", po::value<std::string>(&o.host),
       "plan this CPU host instead of GPUs: a hosts.yaml entry with a measured profile (needs --gpu-price per host-hour)")
      ("profile", po::value<std::string>(&o.profile),
       "plan the host a measured profile describes (moeplan calibrate/validate): rows get error bars from its residuals")
      ("gpu-profile", po::value<std::string>(&o.gpu_profile)->default_value("auto"),
       "auto: price ops from each engine's shipped GPU op profile (data/gpu_profiles) where it holds them; none: roofline")
      ("engine", po::value<std::string>(&o.engine)->default_value("auto"),
       "serving engines to plan (data/engines.yaml): auto (every engine on the GPUs it runs on), default (each "
       "vendor's: NVIDIA trtllm, AMD/Intel vllm), one of trtllm, vllm, sglang, llamacpp, or generic (the plain roofline)");
  add_kv_dtype_option(d, o.kv_dtype);
  add_engine_memory_options(d, o.engine_memory);
}

namespace {

// plan --host/--profile: the host as the one device, its measured profile's rank counts as the layouts.
planner::HostCandidate host_candidate(const PlanOptions& o, const po::variables_map& vm, const gpu_db::Database& db,
                                      std::vector<std::string>& notes) {
  if (vm.count("gpus") || !vm["counts"].defaulted())
    throw InputError("plan --host/--profile plans one host: drop --gpus and --counts");
  if (!vm.count("gpu-price"))
    throw InputError("plan --host/--profile: hosts have no price data; give --gpu-price, the host's USD per hour "
                     "(e.g. the cloud VM's on-demand price)");
  std::shared_ptr<const simulator::HostProfile> profile;
  std::string name;
  if (vm.count("host")) {
    const gpu_db::HostSpec& h = db.host(o.host);
    name = h.name;
    if (!vm.count("profile")) {
      if (h.profile.empty())
        throw InputError("plan --host " + h.name + ": data/hosts.yaml names no measured profile for it; plan prices a host "
                         "from one (moeplan calibrate + validate --device cpu on it, then --profile FILE), or use "
                         "moeplan simulate --host " + h.name + " for a datasheet estimate");
      profile = std::make_shared<const simulator::HostProfile>(simulator::read_profile(data_dir() / h.profile));
    }
  }
  if (vm.count("profile")) profile = std::make_shared<const simulator::HostProfile>(simulator::read_profile(find_profile(o.profile)));
  if (name.empty()) name = profile->host;
  if (const std::string warn = simulator::profile_mismatch(*profile, 0); !warn.empty()) notes.push_back("warning: " + warn);
  if (!profile->decode_residuals || !profile->prefill_residuals)
    notes.push_back("no error bars: profile " + profile->file.string() + " has no held-out residuals yet (run moeplan "
                    "validate --device cpu --profile " + profile->file.string() + ")");
  planner::HostCandidate c;
  c.device.name = name;
  c.device.memory_bytes = profile->memory_bytes;
  c.hardware = simulator::profile_hardware(profile);
  c.ranks.clear();
  for (const auto& l : profile->layouts) c.ranks.push_back(l.ranks);
  return c;
}

// The precisions to plan: --precisions (each once); on a host, the weight formats the CPU executor runs and its
// profile measured; otherwise bf16, fp8, nvfp4 and the checkpoint's own.
void plan_precisions(planner::PlanRequest& q, const PlanOptions& o, const po::variables_map& vm, const Planned& p) {
  if (vm.count("precisions")) {
    for (const auto& spec : split_list(o.precisions))
      if (std::find(q.precision_specs.begin(), q.precision_specs.end(), spec) == q.precision_specs.end())
        q.precision_specs.push_back(spec);
    if (q.precision_specs.empty()) throw InputError("--precisions is empty: give formats, e.g. bf16,fp8");
  } else if (q.host) {
    // The weight formats the CPU executor runs and the profile measured.
    for (const char* spec : {"bf16", "fp16", "fp8", "int8"})
      if (q.host->hardware.profile->peak_flops.count(simulator::profile_dtype(spec))) q.precision_specs.push_back(spec);
  } else {
    q.precision_specs = {"bf16", "fp8", "nvfp4"};
    const auto own = model::resolve_precision("auto", p.model, *p.precisions);
    const std::string own_format = own.format ? own.format->name : "bf16";
    if (own_format != "bf16" && own_format != "fp8" && own_format != "nvfp4") q.precision_specs.push_back(own.spec);
    // Dense models have no "experts" policy; a bare format picks the family's usual one.
  }
}

// The GPUs (--gpus, else every GPU in the database; none on a host) and --counts, each once.
void plan_devices(planner::PlanRequest& q, const PlanOptions& o, const po::variables_map& vm, const gpu_db::Database& db) {
  if (q.host) {
    // the host is the one device
  } else if (vm.count("gpus")) {
    q.gpus = gpu_list(o.gpus, db);  // a GPU named twice (or by two aliases) would repeat every row
  } else {
    for (const auto& g : db.gpus()) q.gpus.push_back(&g);
  }
  q.counts.clear();
  for (const auto& c : split_list(o.counts)) {
    const std::optional<std::int64_t> v = parse_integer(c);
    if (!v || *v < 1 || *v > 4096)
      throw InputError("--counts '" + printable(o.counts) + "': use GPU counts from 1 to 4096, e.g. 1,2,4,8");
    const int count = static_cast<int>(*v);
    if (std::find(q.counts.begin(), q.counts.end(), count) == q.counts.end()) q.counts.push_back(count);  // once each
  }
  if (q.counts.empty() && !q.host) throw InputError("--counts is empty: give GPU counts, e.g. 1,2,4,8");
}

// GPU prices: --gpu-price, --exclude-provider and --price-source over data/prices; a host's one price per host-hour.
void plan_prices(planner::PlanRequest& q, const PlanOptions& o, const po::variables_map& vm, const gpu_db::Database& db) {
  if (vm.count("gpu-price")) planner::parse_gpu_prices(split_list(o.gpu_price), db, q.prices);
  if (vm.count("exclude-provider"))
    q.prices.exclude_providers = planner::parse_providers(split_list(o.exclude_providers), db, "--exclude-provider");
  if (vm.count("price-source")) {
    const auto picked = planner::parse_providers(split_list(o.price_source), db, "--price-source");
    if (picked.size() != 1) throw InputError("--price-source takes one provider, got '" + o.price_source + "'");
    q.prices.provider = picked.front();
  }
  q.gpu_price_usd_per_hour = q.prices.usd_per_gpu_hour_all;
  if (q.host && (!q.prices.usd_per_gpu_hour.empty() || !(q.gpu_price_usd_per_hour > 0)))
    throw InputError("plan --host/--profile: --gpu-price takes one USD per host-hour (e.g. --gpu-price 0.10)");
  if (!q.host) planner::check_price_choice(q.prices, db, q.gpus);
}

// The scale-out network's port price: --network-price, else data/network.yaml's.
void plan_network_price(planner::PlanRequest& q, const PlanOptions& o, const po::variables_map& vm, const gpu_db::Database& db) {
  if (vm.count("network-price")) {
    q.network_usd_per_port_hour = o.network_price;
    q.network_price_source = "--network-price";
  } else {
    const auto& port = db.network_port_price();
    q.network_usd_per_port_hour = port.usd_per_port_hour();
    q.network_price_source = "data/network.yaml: $" + with_commas(static_cast<std::int64_t>(std::llround(port.usd_per_port))) +
                             " per port over " + format_fixed(port.amortisation_years, 0) + " years, " + port.date;
  }
}

// Engines: auto = every engine (not the plain roofline) on the GPUs it runs on; a named one must run on every GPU
// named by --gpus. Their max batch, tokens per step and KV dtype apply where the options were not given.
void plan_engines(planner::PlanRequest& q, const PlanOptions& o, const po::variables_map& vm, const Planned& p) {
  const std::string engine = to_lower(o.engine);
  if (q.host) {
    if (!vm["engine"].defaulted() && engine != "generic" && engine != "auto")
      throw InputError("plan --host/--profile prices the measured host itself: drop --engine");
  } else if (engine == "auto" || engine == "default") {
    for (const auto& e : p.engines->engines())
      if (!e.generic()) q.engines.push_back(&e);
    if (engine == "default") q.vendor_defaults = p.engines.get();
  } else {
    const gpu_db::EngineSpec& e = p.engines->engine(o.engine);
    if (!e.generic()) {
      if (vm.count("gpus"))
        for (const gpu_db::GpuSpec* g : q.gpus) p.engines->require_runs_on(e, *g);
      q.engines.push_back(&e);
    }
  }
  if (o.gpu_profile != "auto" && o.gpu_profile != "none")
    throw InputError("--gpu-profile " + o.gpu_profile + ": plan takes auto or none (a profile file is for simulate)");
  q.gpu_profiles = o.gpu_profile == "auto";
  q.engine_max_batch = vm["max-batch"].defaulted();
  q.engine_max_num_batched_tokens = vm["max-num-batched-tokens"].defaulted();
  q.engine_kv_dtype = vm["kv-dtype"].defaulted();
}

}  // namespace

namespace {
// The published set, read on its own thread while the model and tables load (a GPU plan marks the rows outside its
// range: docs/validation.md "What the set covers"); an empty future for a host plan or when the file is absent.
std::future<simulator::PublishedSet> read_published_set(const std::filesystem::path& data, const po::variables_map& vm) {
  const auto points = data / "validation" / "public_points.yaml";
  if (vm.count("host") || vm.count("profile") || !std::filesystem::exists(points)) return {};
  return start_async([points] { return simulator::load_published(points); });
}
}  // namespace

Planned run_plan(const PlanOptions& o, const po::variables_map& vm, const gpu_db::Database& db, Progress* progress) {
  const auto data = data_dir();
  std::future<simulator::PublishedSet> published = read_published_set(data, vm);
  Planned p{model::load_model(o.model_name, data),
            std::make_shared<const model::PrecisionTable>(model::PrecisionTable::load(data / "precisions.yaml")),
            std::make_shared<const gpu_db::EngineTable>(gpu_db::EngineTable::load(data / "engines.yaml")), {}, {}};
  auto& q = p.request;
  q.model = &p.model;
  q.precisions = p.precisions.get();
  std::vector<std::string> notes;
  if (vm.count("host") || vm.count("profile")) q.host = host_candidate(o, vm, db, notes);
  plan_precisions(q, o, vm, p);
  plan_devices(q, o, vm, db);
  q.input_tokens = o.input;
  q.output_tokens = o.output;
  q.kv_dtype = model::parse_kv_dtype(o.kv_dtype);
  q.max_batch = o.max_batch;
  q.max_num_batched_tokens = o.engine_memory.max_batched;
  q.gpu_memory_utilization = o.engine_memory.utilization;
  q.ttft_ms = o.ttft;
  q.tpot_ms = o.tpot;
  q.min_tokens_per_s_per_user = o.min_user;
  q.budget_usd_per_month = o.budget_month;
  q.budget_usd_per_hour = o.budget_hour;
  plan_prices(q, o, vm, db);
  q.utilization = o.utilization;
  q.objective = planner::parse_objective(o.objective);
  q.internode_link = o.internode;
  q.nics_per_node = o.nics_per_node;
  plan_network_price(q, o, vm, db);
  if (!q.host && published.valid()) q.validated = simulator::validated_range(published.get(), db);
  q.slo_percentile = o.slo_percentile;
  q.serving_rows = o.top;  // the rows shown are the rows checked by the serving loop
  q.model_arg = o.model_name;
  plan_engines(q, o, vm, p);
  std::optional<Progress> own;  // the caller's bar (moeplan report's, over its whole run), else the plan's own
  if (progress == nullptr) progress = &own.emplace("plan: serving checks", 0, std::cerr, stderr_is_terminal());
  q.progress = progress;
  p.result = planner::plan(q, db);
  if (own) own->finish();
  q.progress = nullptr;
  p.result.notes.insert(p.result.notes.end(), notes.begin(), notes.end());
  return p;
}

const planner::PlanRow* cheapest_row(const planner::PlanResult& result) {
  const planner::PlanRow* cheapest = result.rows.empty() ? nullptr : &result.rows.front();
  for (const auto& r : result.rows)
    if (r.usd_per_m_blended_tokens < cheapest->usd_per_m_blended_tokens) cheapest = &r;
  return cheapest;
}

std::vector<planner::LaunchCommand> plan_launch_commands(const Planned& p, const PlanOptions& o) {
  std::vector<planner::LaunchCommand> launch;
  if (p.result.rows.empty() || p.request.host) return launch;  // the engines' launch commands are for GPUs
  const auto& best = p.result.rows.front();
  if (p.request.engines.empty())
    return planner::launch_commands(data_dir(), p.model.name, best, o.input + o.output, p.request.kv_dtype,
                                    p.request.gpu_memory_utilization);
  // The first shown row of each engine gets that engine's command (its own KV dtype).
  std::vector<const gpu_db::EngineSpec*> done;
  const auto& rows = p.result.rows;
  for (std::size_t i = 0; i < rows.size() && static_cast<int>(i) < o.top; ++i) {
    if (std::find(done.begin(), done.end(), rows[i].engine) != done.end()) continue;
    done.push_back(rows[i].engine);
    model::KvDtype kv = p.request.kv_dtype;
    if (p.request.engine_kv_dtype && rows[i].engine)
      kv = simulator::engine_kv_dtype(*rows[i].engine, model::resolve_precision(rows[i].precision, p.model, *p.precisions));
    for (auto& l : planner::launch_commands(data_dir(), p.model.name, rows[i], o.input + o.output, kv,
                                            p.request.gpu_memory_utilization)) {
      l.row = static_cast<int>(i) + 1;
      launch.push_back(std::move(l));
    }
  }
  return launch;
}

int cmd_plan(const std::vector<std::string>& args, std::ostream& out) {
  Common common;
  PlanOptions o;
  po::options_description d("plan options");
  add_common_options(d, common);
  add_plan_options(d, o);
  d.add_options()("verbose", "also print how many configurations and operating points were evaluated, and the time");
  po::variables_map vm;
  if (!parse("plan",
             "--model M [--input L --output L] [--ttft-ms --tpot-ms --min-tokens-per-s-per-user] "
             "[--budget-per-month $ | --budget-per-hour $] [--gpus list] [--precisions list] [--top K]",
             args, d, vm, out))
    return kExitOk;
  const auto db = gpu_db::Database::load(data_dir());
  const Planned p = run_plan(o, vm, db);
  const std::vector<planner::LaunchCommand> launch = plan_launch_commands(p, o);
  std::optional<planner::ApiComparison> api;
  if (!p.result.rows.empty()) {
    const auto& best = p.result.rows.front();
    try {
      api = planner::compare_api(db, p.model.name, best, o.input, o.output, o.tokens_per_month);
    } catch (const InputError&) {
      // no API prices for this model: the plan stands without the column
    }
  }
  emit(reports::plan_report(p.request, p.result, launch, api, o.top, vm.count("verbose") > 0), common, out);
  return kExitOk;
}

int cmd_compare_api(const std::vector<std::string>& args, std::ostream& out) {
  Common common;
  PlanOptions o;
  po::options_description d("compare-api options");
  add_common_options(d, common);
  add_plan_options(d, o);
  po::variables_map vm;
  if (!parse("compare-api", "--model M [--input L --output L] [SLO, budget and GPU options of plan]", args, d, vm, out))
    return kExitOk;
  const auto db = gpu_db::Database::load(data_dir());
  Planned p = run_plan(o, vm, db);
  if (p.result.rows.empty())
    throw InputError("no self-hosted configuration meets the constraints for " + p.model.name +
                     "; relax --ttft-ms/--tpot-ms or the budget (moeplan plan shows the closest)");
  const planner::PlanRow* cheapest = cheapest_row(p.result);
  const auto cmp = planner::compare_api(db, p.model.name, *cheapest, o.input, o.output, o.tokens_per_month);
  emit(reports::compare_api_report(p.request, *cheapest, cmp), common, out);
  return kExitOk;
}

}  // namespace moeplan::app
