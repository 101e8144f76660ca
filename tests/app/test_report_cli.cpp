// `moeplan report` in-process: the HTML parses and holds every section and chart; its numbers agree with the
// commands it stands for (memory per GPU = the plan row's VRAM, #1 at its operating point = the serving check);
// Markdown and JSON variants; a missing output directory exits 2 and writes nothing.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "app/cli.hpp"
#include "simulator/published.hpp"
#include "tests/app/cli_run.hpp"
#include "tests/test_util.hpp"
#include "tests/reports/markup_check.hpp"

using nlohmann::json;
using moeplan::test::count_of;
using moeplan::test::markup_error;
using moeplan::test::one_line;
using moeplan::test::run;

namespace {

// A small but complete report: two GPUs keep the plan quick; every section still has rows.
std::vector<std::string> small(std::vector<std::string> extra) {
  std::vector<std::string> a = {"report", "--model", "llama4-maverick", "--gpus", "b200,h100-sxm", "--top", "3"};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

const json& section(const json& doc, const std::string& prefix) {
  for (const auto& s : doc.at("sections"))
    if (s.at("title").get<std::string>().rfind(prefix, 0) == 0) return s.at("result");
  FAIL("no section " << prefix);
  return doc;
}

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

TEST_CASE("report: one HTML page with every section and chart, well formed") {
  const auto r = run(small({}));
  REQUIRE(r.code == 0);
  const std::string& html = r.out;
  INFO(markup_error(html));
  CHECK(markup_error(html).empty());
  CHECK(html.rfind("<!DOCTYPE html>", 0) == 0);
  for (const char* title : {"Model: llama4-maverick", "Claims check", "Fit matrix", "Plan (moeplan plan)", "Memory per GPU of the plan rows",
                            "#1 under load", "API prices and break-even", "RAM hosts", "Validation: llama4-maverick",
                            "Validation: the published set"})
    CHECK(html.find(std::string("<h2>") + title) != std::string::npos);
  // Charts: cost/speed (plan), VRAM bars and memory against context, throughput and TPOT against load, API prices
  // (Maverick has no published measurement: no predicted-against-measured chart).
  CHECK(count_of(html, "<svg") == 6);
  // The VRAM chart: three rows, each with weights by module, KV, activations, overhead and (when positive) free.
  const auto vram = html.find("memory per GPU of the shown plan rows");
  REQUIRE(vram != std::string::npos);
  const std::string vram_svg = html.substr(vram, html.find("</svg>", vram) - vram);
  CHECK(count_of(vram_svg, "class=\"limit\"") == 3);
  CHECK(count_of(vram_svg, "class=\"mark segment\"") >= 3 * 5);
  // Nothing fetched: no script, no external stylesheet, image or frame, no CSS import or url().
  for (const char* fetch : {"<script", "<link", "<img", "<iframe", " src=", "@import", "url("})
    CHECK(html.find(fetch) == std::string::npos);
}

TEST_CASE("report: every section names where its numbers come from, every chart its source") {
  const auto r = run(small({}));
  REQUIRE(r.code == 0);
  const std::string& html = r.out;
  // Each section's text outside its tables and charts names a data file or the model's config.json.
  std::size_t sections = 0;
  for (auto at = html.find("<h2>"); at != std::string::npos; at = html.find("<h2>", at + 1)) {
    const auto end = std::min(html.find("<h2>", at + 1), html.find("</body>", at));
    std::string text = html.substr(at, end - at);
    for (const char* tag : {"svg", "table"})  // drop the tables and charts: the note must be in the section's lines
      for (auto open = text.find(std::string("<") + tag); open != std::string::npos; open = text.find(std::string("<") + tag)) {
        const auto close = text.find(std::string("</") + tag + ">", open);
        REQUIRE(close != std::string::npos);
        text.erase(open, close + std::string(tag).size() + 3 - open);
      }
    INFO(text.substr(0, 200));
    const bool names_data = text.find("data/") != std::string::npos || text.find("config.json") != std::string::npos;
    CHECK(names_data);
    ++sections;
  }
  CHECK(sections == 10);
  // Each chart has a source line, and the memory and load charts name their data files.
  CHECK(count_of(html, "class=\"source\"") >= count_of(html, "<svg"));
  const auto vram = html.find("memory per GPU of the shown plan rows");
  REQUIRE(vram != std::string::npos);
  CHECK(html.substr(vram, html.find("</svg>", vram) - vram).find("data/gpus.yaml") != std::string::npos);
  CHECK(html.find("links data/links.yaml") != std::string::npos);
  CHECK(html.find("data/hosts.yaml") != std::string::npos);
}

TEST_CASE("report: memory per GPU equals the plan row's, #1 at its operating point equals the serving check") {
  const auto r = run(small({"--format", "json"}));
  REQUIRE(r.code == 0);
  const json doc = json::parse(r.out);
  const json& plan = section(doc, "Plan");
  const json& memory = section(doc, "Memory per GPU");
  REQUIRE(memory.at("rows").size() == 3);
  for (std::size_t i = 0; i < 3; ++i) {
    // moeplan memory with the row's GPUs, layout, precision and KV dtype at batch x dp sequences of input + output.
    const json& c = plan.at("configurations")[i];
    const auto mem = run({"memory", "--model", "llama4-maverick", "--gpu", c.at("gpu").get<std::string>(), "--count", std::to_string(c.at("count").get<int>()),
                          "--precision", c.at("precision").get<std::string>(), "--tp", std::to_string(c.at("tp").get<int>()), "--ep",
                          std::to_string(c.at("ep").get<int>()), "--dp", std::to_string(c.at("dp").get<int>()), "--pp",
                          std::to_string(c.at("pp").get<int>()), "--kv-dtype", c.at("kv_dtype").get<std::string>(), "--context", "2000",
                          "--concurrency", std::to_string(c.at("batch").get<std::int64_t>() * c.at("dp").get<std::int64_t>()),
                          "--format", "json"});
    REQUIRE(mem.code == 0);
    const double total = memory.at("rows")[i].at("total_bytes").get<double>();
    CHECK(total == json::parse(mem.out).at("total_bytes").get<double>());
    // The plan's own VRAM figure is the same sum within 1 %.
    CHECK(total == Approx(c.at("vram_used_bytes_per_gpu").get<double>()).epsilon(0.01));
  }
  // Memory against context rises with the context in every precision, and lower precisions need less.
  const json& curves = memory.at("context_curves");
  REQUIRE(curves.size() >= 2);
  for (const auto& c : curves) {
    const auto bytes = c.at("total_bytes").get<std::vector<double>>();
    REQUIRE(bytes.size() == 11);  // 1,024 .. 1,048,576 tokens
    for (std::size_t k = 1; k < bytes.size(); ++k) CHECK(bytes[k] > bytes[k - 1]);
  }
  const json& load = section(doc, "#1 under load");
  const json& best = plan.at("configurations")[0];
  const auto operating = load.at("operating_concurrency").get<std::int64_t>();
  CHECK(operating == best.at("serving").at("concurrency").get<std::int64_t>());
  bool found = false;
  for (const auto& p : load.at("points")) {
    if (p.at("concurrency").get<std::int64_t>() != operating) continue;
    found = true;
    CHECK(p.at("tpot_ms_p90").get<double>() == Approx(best.at("serving").at("tpot_ms").at("p90").get<double>()).epsilon(1e-9));
    CHECK(p.at("output_tokens_per_s").get<double>() ==
          Approx(best.at("serving").at("output_tokens_per_s").get<double>()).epsilon(1e-9));
  }
  CHECK(found);
  // Throughput grows with the load up to the operating point.
  const auto& pts = load.at("points");
  for (std::size_t k = 1; k < pts.size() && pts[k].at("concurrency").get<std::int64_t>() <= operating; ++k)
    CHECK(pts[k].at("output_tokens_per_s").get<double>() > pts[k - 1].at("output_tokens_per_s").get<double>());
  // Hosts: every hosts.yaml entry, a fitting one simulated; validation: Maverick's published rows.
  const json& hosts = section(doc, "RAM hosts");
  CHECK(hosts.at("rows").size() >= 10);
  bool any_fit = false;
  for (const auto& h : hosts.at("rows"))
    if (h.at("fits").get<bool>()) any_fit = any_fit || h.at("decode_tokens_per_s").get<double>() > 0;
  CHECK(any_fit);
  CHECK(section(doc, "Validation: llama4-maverick").at("rows").empty());  // none published
  CHECK(section(doc, "Validation: the published set").at("groups").size() > 5);
}

TEST_CASE("report: a model with published measurements gets them predicted again, with the chart") {
  const auto r = run({"report", "--model", "mixtral-8x7b", "--gpus", "h100-sxm", "--top", "2"});
  REQUIRE(r.code == 0);
  CHECK(markup_error(r.out).empty());
  CHECK(r.out.find("<h2>Validation: mixtral-8x7b") != std::string::npos);
  const auto at = r.out.find("predicted against measured");
  REQUIRE(at != std::string::npos);
  const std::string svg = r.out.substr(at, r.out.find("</svg>", at) - at);
  // One mark per published row of the model (all of them run).
  std::size_t rows = 0;
  for (const auto& p : moeplan::simulator::load_published(moeplan::test::data() / "validation" / "public_points.yaml").points)
    rows += p.model == "mixtral-8x7b";
  REQUIRE(rows > 0);
  CHECK(count_of(svg, "class=\"mark") == rows);
}

TEST_CASE("report: -o FILE.md writes Markdown, a missing directory exits 2 and writes nothing") {
  const auto dir = std::filesystem::temp_directory_path() / ("moeplan_report_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto md = dir / "report.md";
  const auto r = run(small({"-o", md.string()}));
  REQUIRE(r.code == 0);
  CHECK(r.out.empty());
  const std::string text = slurp(md);
  CHECK(text.rfind("# moeplan report: llama4-maverick\n", 0) == 0);
  CHECK(text.find("\n## Plan (moeplan plan)\n") != std::string::npos);
  CHECK(text.find("<svg") == std::string::npos);

  const auto missing = dir / "no-such-dir" / "report.html";
  const auto bad = run(small({"-o", missing.string()}));
  CHECK(bad.code == 2);
  CHECK(one_line(bad.err));
  CHECK(bad.err.find("no-such-dir") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(missing.parent_path()));
  // Nothing else appeared beside the Markdown file (no temporary left behind).
  std::size_t files = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir)) ++files;
  CHECK(files == 1);
  CHECK(run(small({"--host", "ddr5-desktop-2ch"})).code == 2);
  CHECK(run(small({"--format", "pdf"})).code == 2);
  std::filesystem::remove_all(dir);
}

TEST_CASE("report: --format md gives every chart of the HTML page as a table with one row per point") {
  const auto html = run(small({}));
  const auto md = run(small({"--format", "md"}));
  REQUIRE(html.code == 0);
  REQUIRE(md.code == 0);
  // The points of each SVG chart, in page order: a bar chart's bars (its category labels), else its marks.
  std::vector<std::size_t> points;
  for (auto at = html.out.find("<svg"); at != std::string::npos; at = html.out.find("<svg", at + 1)) {
    const std::string svg = html.out.substr(at, html.out.find("</svg>", at) - at);
    const std::size_t bars = count_of(svg, "class=\"category\"");
    points.push_back(bars > 0 ? bars : count_of(svg, "class=\"mark"));
  }
  REQUIRE(points.size() == 6);
  // The Markdown: a "### Chart: ..." table per chart, in the same order, with as many rows as points.
  std::vector<std::size_t> rows;
  std::istringstream lines(md.out);
  std::string line;
  bool in_chart = false;
  int table_line = 0;
  while (std::getline(lines, line)) {
    if (line.rfind("### ", 0) == 0) {
      in_chart = line.rfind("### Chart: ", 0) == 0;
      if (in_chart) rows.push_back(0);
      table_line = 0;
    } else if (in_chart && line.rfind("|", 0) == 0) {
      if (++table_line > 2) ++rows.back();  // after the header and the alignment line
    } else if (in_chart && !line.empty()) {
      in_chart = false;  // the chart's notes follow its table
    }
  }
  CHECK(rows == points);
  CHECK(md.out.find("<svg") == std::string::npos);
  // The API chart's bars come with a text bar; the cheapest offer's is the shortest.
  CHECK(md.out.find("\xE2\x96\x88") != std::string::npos);
}
