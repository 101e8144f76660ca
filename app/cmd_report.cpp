// `moeplan report`: one shareable deployment report of a model — its facts, the claims check, the fit matrix, the
// plan with its launch commands, the shown rows' memory per GPU and memory against context, #1 under several loads,
// the API comparison and break-even, the RAM-host view and the published validation — as one self-contained HTML
// page (inline CSS and SVG) or Markdown. Each section is what the named command computes, from the same libraries.
#include <algorithm>
#include <filesystem>
#include <iostream>

#include "app/cli.hpp"
#include "app/plan_options.hpp"
#include "common/error.hpp"
#include "common/files.hpp"
#include "common/progress.hpp"
#include "common/text.hpp"
#include "model/claims.hpp"
#include "model/summary.hpp"
#include "moeplan/config.hpp"
#include "reports/deployment_report.hpp"
#include "reports/model_report.hpp"
#include "reports/plan_report.hpp"
#include "reports/published_report.hpp"
#include "reports/views_report.hpp"
#include "simulator/engine.hpp"
#include "simulator/fit_matrix.hpp"
#include "simulator/host_view.hpp"
#include "simulator/published.hpp"
#include "simulator/simulate.hpp"

namespace po = boost::program_options;

namespace moeplan::app {

namespace {

reports::Section model_section(const model::ModelConfig& m) {
  return {"Model: " + m.name, reports::model_detail_report(m, model::summarize(m))};
}

reports::Section claims_section(const model::ModelConfig& m, const model::PrecisionTable& table,
                                const std::filesystem::path& data) {
  const auto file = data / "claims.yaml";
  const auto claims = model::load_claims(file, model::builtin_model_names(data));
  return {"Claims check (moeplan claims)",
          reports::claims_report(m, file.string(), model::check_claims(claims, m, table))};
}

reports::Section fit_matrix_section(const model::ModelConfig& m, const model::PrecisionTable& table, const gpu_db::Database& db) {
  simulator::FitMatrixRequest q;  // fit-matrix's defaults: 8,192 tokens, one sequence, every GPU
  q.model = &m;
  q.precisions = fit_matrix_precisions(m, table);
  for (const auto& g : db.gpus()) q.gpus.push_back(&g);
  return {"Fit matrix (moeplan fit-matrix)", reports::fit_matrix_report(q, simulator::fit_matrix(q))};
}

// A GPU row's memory per GPU at its operating point, from the request the serving check simulates.
simulator::MemoryRequest row_memory_request(const simulator::SimulateRequest& s) {
  return simulator::memory_request(s, s.workload.input_tokens + s.workload.output_tokens, s.workload.concurrency);
}

std::string row_config(const planner::PlanRow& r) {
  return std::to_string(r.count) + "x " + r.gpu->name + " " + r.precision + (r.engine ? " " + r.engine->name : "") + " tp" +
         std::to_string(r.layout.tp) + " ep" + std::to_string(r.layout.ep) + " dp" + std::to_string(r.layout.dp) + " pp" +
         std::to_string(r.layout.pp);
}

// The shown rows' memory per GPU, and #1's GPUs and layout at every power-of-two context in each planned precision.
reports::Section memory_section(const Planned& p, const gpu_db::Database& db, int top) {
  std::vector<reports::PlanMemory> rows;
  for (std::size_t i = 0; i < p.result.rows.size() && static_cast<int>(i) < top; ++i) {
    const auto& row = p.result.rows[i];
    const auto sim = planner::row_simulate_request(p.request, db, row);
    rows.push_back({static_cast<int>(i) + 1, &row, simulator::memory_breakdown(row_memory_request(sim))});
  }
  const auto& best = p.result.rows.front();
  auto base = row_memory_request(planner::row_simulate_request(p.request, db, best));
  base.concurrency = 1;
  std::vector<reports::ContextCurve> curves;
  double usable = 0;
  for (const auto& spec : p.request.precision_specs) {
    reports::ContextCurve c;
    try {
      base.precision = model::resolve_precision(spec, p.model, *p.precisions);
      c.precision = base.precision.spec;
      for (std::int64_t ctx = 1024; ctx <= p.model.max_context_tokens; ctx *= 2) {
        base.context_tokens = ctx;
        const auto b = simulator::memory_breakdown(base);
        c.context_tokens.push_back(static_cast<double>(ctx));
        c.total_bytes.push_back(b.total_bytes);
        usable = b.usable_bytes;
      }
    } catch (const InputError&) {
      continue;  // a precision this layout cannot hold is left out of the chart, as plan leaves it out
    }
    if (!c.context_tokens.empty()) curves.push_back(std::move(c));
  }
  const std::string config = std::to_string(best.count) + "x " + best.gpu->name + " tp" + std::to_string(best.layout.tp) +
                             " ep" + std::to_string(best.layout.ep) + " dp" + std::to_string(best.layout.dp) + " pp" +
                             std::to_string(best.layout.pp) + ", KV " + model::kv_dtype_name(base.kv_dtype);
  return {"Memory per GPU of the plan rows", reports::plan_memory_report(p.model.name, rows, config, curves, usable)};
}

// #1 at 1, 4, 16, ... requests in flight up to its operating point, at the operating point and at twice it.
reports::Section load_section(const Planned& p, const gpu_db::Database& db) {
  const auto& best = p.result.rows.front();
  simulator::SimulateRequest q = planner::row_simulate_request(p.request, db, best);
  const std::int64_t operating = q.workload.concurrency;
  std::vector<std::int64_t> loads;
  for (std::int64_t c = 1; c < operating; c *= 4) loads.push_back(c);
  loads.insert(loads.end(), {operating, 2 * operating});
  std::vector<reports::ConcurrencyPoint> points;
  for (std::int64_t c : loads) {
    q.workload.concurrency = c;
    q.workload.num_requests = c * p.request.serving_requests_per_slot;
    const auto s = simulator::simulate(q).serving;
    points.push_back({c, s.output_tokens_per_s, s.tpot_ms.p50, s.tpot_ms.p90});
  }
  const std::string command = best.serving ? best.serving->simulate_command : "moeplan simulate (" + row_config(best) + ")";
  return {"#1 under load (moeplan simulate)",
          reports::load_sweep_report(row_config(best), points, operating, p.request.tpot_ms, command)};
}

reports::Section api_section(const Planned& p, const gpu_db::Database& db, const PlanOptions& o) {
  const planner::PlanRow* cheapest = cheapest_row(p.result);
  try {
    const auto cmp = planner::compare_api(db, p.model.name, *cheapest, o.input, o.output);
    return {"API prices and break-even (moeplan compare-api)", reports::compare_api_report(p.request, *cheapest, cmp)};
  } catch (const InputError& e) {
    reports::Report r;
    r.header = {std::string("no API comparison: ") + e.what()};
    r.json = {{"error", e.what()}};
    return {"API prices and break-even (moeplan compare-api)", r};
  }
}

// The RAM view (moeplan hosts) of every host in data/hosts.yaml at q4_k_m (the usual GGUF), one sequence of the
// workload's input + output tokens.
reports::Section hosts_section(const model::ModelConfig& m, const model::PrecisionTable& table, const gpu_db::Database& db,
                               const PlanOptions& o) {
  const auto data = data_dir();
  const auto engines = gpu_db::EngineTable::load(data / "engines.yaml");
  simulator::HostViewRequest q;
  q.model = &m;
  q.engine = &engines.host_default();
  q.precisions = {model::resolve_precision("q4_k_m", m, table)};
  q.context_tokens = o.input + o.output;
  q.output_tokens = o.output;
  q.ram_sizes = db.ram_sizes();
  for (const auto& h : db.hosts()) q.hosts.push_back(simulator::host_target(db, data, h, {}));
  return {"RAM hosts (llama.cpp)", reports::host_view_report(q, simulator::host_view(q))};
}

// The published measurements of this model predicted again (validate --published --id ...), and the whole set's
// error groups as data/validation/error_bars.yaml records them (re-running all rows takes minutes, not seconds).
std::vector<reports::Section> validation_sections(const model::ModelConfig& m, const gpu_db::Database& db,
                                                  const std::filesystem::path& data) {
  std::vector<reports::Section> out;
  const auto file = data / "validation" / "public_points.yaml";
  std::vector<std::string> ids;
  simulator::PublishedSet set;
  if (std::filesystem::exists(file)) {
    set = simulator::load_published(file);
    for (const auto& pt : set.points)
      if (pt.model == m.name) ids.push_back(pt.id);
  }
  const std::string title = "Validation: " + m.name + " against published measurements (moeplan validate --published --id ...)";
  if (ids.empty()) {
    reports::Report r;
    r.header = {"no published measurements of " + m.name + " in data/validation/public_points.yaml: its predictions "
                "carry the error of the other models' rows below"};
    r.json = {{"rows", nlohmann::json::array()}};
    out.push_back({title, r});
  } else {
    set.excluded.clear();  // the other models' exclusions are not this report's
    out.push_back({title, reports::published_report(simulator::validate_published(set, db, data, ids), set)});
  }
  const auto bars = data / "validation" / "error_bars.yaml";
  if (std::filesystem::exists(bars)) {
    reports::Report r;
    r.header = {"the simulator's error on every published measurement (" + std::to_string(set.points.size()) +
                " rows of data/validation/public_points.yaml), as data/validation/error_bars.yaml records it (moeplan "
                "validate --published --write-error-bars writes it; simulate draws its error bars from it)"};
    nlohmann::json groups;
    r.tables.push_back(reports::error_groups_table(simulator::load_error_bars(bars), groups));
    r.json = {{"file", "data/validation/error_bars.yaml"}, {"groups", groups}};
    out.push_back({"Validation: the published set's error by engine, vendor and phase", r});
  }
  return out;
}

// -o FILE.md without --format: Markdown; otherwise the report's default, HTML.
void choose_format(Common& common, const po::variables_map& vm) {
  if (!vm["format"].defaulted()) return;
  const std::string ext = to_lower(std::filesystem::path(common.output).extension().string());
  if (ext == ".md" || ext == ".markdown") common.format = "md";
}

}  // namespace

int cmd_report(const std::vector<std::string>& args, std::ostream& out) {
  Common common;
  PlanOptions o;
  po::options_description d("report options");
  // The common options (add_common_options) with the report's own default format.
  d.add_options()("help,h", "show this help")(
      "format", po::value<std::string>(&common.format)->default_value("html"),
      "output: html (one self-contained page), md, json, table or csv; -o FILE.md alone means md")(
      "output-file,o", po::value<std::string>(&common.output), "write to FILE instead of stdout (atomically)")(
      "config-file", po::value<std::string>(&common.config_file), "YAML file of options (keys are option names)");
  add_plan_options(d, o);
  po::variables_map vm;
  const std::string usage =
      "--model M [-o report.html | -o report.md] [plan options: --input --output --tpot-ms --gpus --precisions --top ...]\n\n"
      "A deployment report: model facts, claims check, fit matrix, the plan (--top rows) with launch commands, the "
      "shown rows' memory per GPU and memory against context, #1 at several concurrencies, the API comparison and "
      "break-even, llama.cpp on the RAM hosts, and the published validation of the model. Default format html (one "
      "self-contained page: inline CSS and SVG charts, nothing fetched); md for -o FILE.md; --format table, md, json, "
      "csv or html.";
  if (!parse("report", usage, args, d, vm, out)) return kExitOk;
  if (vm.count("host") || vm.count("profile"))
    throw InputError("report plans GPUs; for a measured host use moeplan plan --host/--profile");
  choose_format(common, vm);
  const auto format = reports::parse_format(common.format);
  if (!common.output.empty()) {  // a missing directory is refused before the work, in the writer's words
    const std::filesystem::path path(common.output);
    const auto dir = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec))
      throw InputError("cannot write " + path.string() + ": directory " + dir.string() + " does not exist");
  }
  // One bar over the whole run (stderr, on a terminal only): the plan's serving checks advance it one unit each, then
  // each section after the plan is one unit; the total is known once the plan has its rows.
  Progress progress("report: plan", 1, std::cerr, stderr_is_terminal());
  progress.step("report: plan");
  const auto data = data_dir();
  const auto db = gpu_db::Database::load(data);
  const Planned p = run_plan(o, vm, db, &progress);
  progress.set_total(progress.done() + (p.result.rows.empty() ? 5 : 8));  // the steps below and the final unit
  const model::ModelConfig& m = p.model;
  std::vector<reports::Section> sections{model_section(m)};
  progress.step("report: claims and fit matrix");
  sections.push_back(claims_section(m, *p.precisions, data));
  sections.push_back(fit_matrix_section(m, *p.precisions, db));
  std::optional<planner::ApiComparison> api;
  if (!p.result.rows.empty()) {
    try {
      api = planner::compare_api(db, m.name, p.result.rows.front(), o.input, o.output);
    } catch (const InputError&) {
      // no API prices for this model: the plan stands without the column
    }
  }
  sections.push_back({"Plan (moeplan plan)", reports::plan_report(p.request, p.result, plan_launch_commands(p, o), api, o.top, false)});
  if (!p.result.rows.empty()) {
    progress.step("report: memory of the plan rows");
    sections.push_back(memory_section(p, db, o.top));
    progress.step("report: #1 under load");
    sections.push_back(load_section(p, db));
    progress.step("report: API prices");
    sections.push_back(api_section(p, db, o));
  }
  progress.step("report: RAM hosts");
  sections.push_back(hosts_section(m, *p.precisions, db, o));
  progress.step("report: published validation");
  for (auto& v : validation_sections(m, db, data)) sections.push_back(std::move(v));
  progress.step("report: writing");
  const std::vector<std::string> intro = {
      "moeplan " + std::string(MOEPLAN_VERSION) + " deployment report for " + m.name + ": " + with_commas(o.input) + " in / " +
          with_commas(o.output) + " out tokens per request; every section names the command that prints it alone",
      "sources: model config " + m.source + "; hardware, prices, engines and measurements in the data/ files each "
      "table names (data/SOURCES.md)"};
  const std::string text = reports::render_document("moeplan report: " + m.name, intro, sections, format);
  progress.advance();  // the last unit: the bar shows 100 % before it is erased
  progress.finish();
  if (common.output.empty()) out << text;
  else write_file_atomic(common.output, text);
  return kExitOk;
}

}  // namespace moeplan::app
