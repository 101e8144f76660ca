// SVG charts: each is well-formed markup with as many marks (class "mark") as its data has points, states its
// title, axis labels and source, escapes text, and refuses non-finite values. HTML pages and documents parse too.
#include <catch2/catch.hpp>

#include <cmath>
#include <stdexcept>

#include "reports/charts.hpp"
#include "reports/render.hpp"
#include "reports/result_charts.hpp"
#include "tests/reports/markup_check.hpp"

using namespace moeplan;
using namespace moeplan::reports;
using moeplan::test::count_of;
using moeplan::test::markup_error;

namespace {

const ChartText kText{"a <title> & more", "x unit", "y unit", "the source"};

void check_frame(const std::string& svg) {
  CHECK(markup_error(svg).empty());
  INFO(markup_error(svg));
  CHECK(svg.find("a &lt;title&gt; &amp; more") != std::string::npos);
  CHECK(svg.find(">x unit</text>") != std::string::npos);
  CHECK(svg.find(">y unit</text>") != std::string::npos);
  CHECK(svg.find("source: the source") != std::string::npos);
  CHECK(svg.find("nan") == std::string::npos);
  CHECK(svg.find("inf") == std::string::npos);
}

// The boxes of a chart's tick and point labels, estimated from the SVG alone: 0.6 x font size per character, from
// 0.8 x size above the baseline to 0.2 x size below, placed by text-anchor.
struct LabelBox {
  std::string text;
  double x0, y0, x1, y1;
};
std::string attribute(const std::string& tag, const std::string& name) {
  const auto at = tag.find(" " + name + "=\"");
  if (at == std::string::npos) return "";
  const auto from = at + name.size() + 3;
  return tag.substr(from, tag.find('"', from) - from);
}
std::vector<LabelBox> label_boxes(const std::string& svg) {
  std::vector<LabelBox> out;
  for (auto at = svg.find("<text "); at != std::string::npos; at = svg.find("<text ", at + 1)) {
    const auto end = svg.find('>', at);
    const std::string tag = svg.substr(at, end - at);
    const std::string cls = attribute(tag, "class");
    if (cls != "tick" && cls != "point-label") continue;
    std::string text = svg.substr(end + 1, svg.find("</text>", end) - end - 1);
    std::size_t chars = 0;
    for (std::size_t i = 0; i < text.size(); ++i) {
      if (text[i] == '&') i = text.find(';', i);  // an entity is one character
      chars += (static_cast<unsigned char>(text[i]) & 0xC0) != 0x80;
    }
    const std::string size = attribute(tag, "font-size");
    const double font = size.empty() ? 12 : std::stod(size);
    const double x = std::stod(attribute(tag, "x")), y = std::stod(attribute(tag, "y"));
    const double w = 0.6 * font * static_cast<double>(chars);
    const std::string anchor = attribute(tag, "text-anchor");
    const double x0 = anchor == "end" ? x - w : anchor == "middle" ? x - w / 2 : x;
    out.push_back({text, x0, y - 0.8 * font, x0 + w, y + 0.2 * font});
  }
  return out;
}
// "" when no two label boxes overlap, else the first pair.
std::string overlapping_labels(const std::string& svg) {
  const auto boxes = label_boxes(svg);
  for (std::size_t i = 0; i < boxes.size(); ++i)
    for (std::size_t j = i + 1; j < boxes.size(); ++j) {
      const auto& a = boxes[i];
      const auto& b = boxes[j];
      if (a.x0 < b.x1 && b.x0 < a.x1 && a.y0 < b.y1 && b.y0 < a.y1) return a.text + " and " + b.text;
    }
  return "";
}

}  // namespace

TEST_CASE("stacked bars: one mark per non-zero segment, a limit line per bar that has one") {
  const std::vector<std::string> segments = {"weights", "KV", "free"};
  const std::vector<StackedBar> bars = {{"a", {50, 10, 12}, 72}, {"b", {40, 0, 32}, 72}, {"c", {80, 5, 0}, 0}};
  const std::string svg = stacked_bar_chart(kText, segments, bars, "usable").svg;
  check_frame(svg);
  CHECK(count_of(svg, "class=\"mark") == 7);
  CHECK(count_of(svg, "class=\"limit\"") == 2);
  CHECK(count_of(svg, "class=\"legend\"") == 4);  // three segments and the limit
  // Segments of a bar abut: the second starts where the first ends (50 of an axis to 100 GB).
  CHECK(svg.find("<title>a: weights 50</title>") != std::string::npos);
  CHECK_THROWS_AS(stacked_bar_chart(kText, segments, {{"bad", {1, 2}, 0}}), std::invalid_argument);
}

TEST_CASE("bar chart: one mark per bar, the highlighted one marked, log axis ticks by decade") {
  std::vector<Bar> bars;
  for (int i = 0; i < 12; ++i) bars.push_back({"offer " + std::to_string(i), 0.05 * (i + 1), i == 3});
  const std::string svg = bar_chart(kText, bars).svg;
  check_frame(svg);
  CHECK(count_of(svg, "class=\"mark") == 12);
  CHECK(count_of(svg, "class=\"mark bar highlight\"") == 1);
  const std::string log = bar_chart(kText, {{"a", 3, false}, {"b", 3000, false}}, true).svg;
  check_frame(log);
  CHECK(count_of(log, "class=\"mark") == 2);
  for (const char* tick : {">1</text>", ">10</text>", ">100</text>", ">1k</text>", ">10k</text>"}) CHECK(log.find(tick) != std::string::npos);
  CHECK(log.find("e+") == std::string::npos);
}

TEST_CASE("line chart: one circle per point of every series, reference lines drawn") {
  const std::vector<Series> series = {{"bf16", {1024, 2048, 4096, 8192}, {800, 801, 803, 806}},
                                      {"fp8", {1024, 2048, 4096}, {420, 421, 423}}};
  const std::string svg = line_chart(kText, series, true, false, {{"usable 72 GB", 72}}).svg;
  check_frame(svg);
  CHECK(count_of(svg, "class=\"mark") == 7);
  CHECK(count_of(svg, "class=\"series\"") == 2);
  CHECK(count_of(svg, "class=\"reference\"") == 1);
  CHECK(svg.find(">usable 72 GB</text>") != std::string::npos);
  CHECK_THROWS_AS(line_chart(kText, {{"bad", {1, 2}, {1}}}), std::invalid_argument);
  CHECK_THROWS_AS(line_chart(kText, {{"nan", {1, 2}, {1, NAN}}}), std::invalid_argument);
  CHECK_THROWS_AS(line_chart(kText, {{"inf", {1, INFINITY}, {1, 2}}}), std::invalid_argument);
}

TEST_CASE("scatter: marks per point, labels where given, the Pareto front and the y = x band") {
  ScatterOptions opt;
  opt.series_names = {"trtllm", "vllm"};
  opt.pareto_front = true;
  opt.log_y = true;
  const std::vector<ScatterPoint> points = {{20, 0.04, 0, "#1", true, ""}, {25, 0.05, 0, "#2", true, ""},
                                            {30, 0.09, 1, "", true, ""},   {22, 0.08, 1, "", false, ""}};
  const std::string svg = scatter_chart(kText, points, opt).svg;
  check_frame(svg);
  CHECK(count_of(svg, "class=\"mark") == 4);
  CHECK(count_of(svg, "class=\"mark point on-front\"") == 3);
  CHECK(count_of(svg, "class=\"point-label\"") == 2);
  CHECK(count_of(svg, "class=\"front\"") == 1);

  ScatterOptions pv;
  pv.log_x = pv.log_y = true;
  pv.identity = true;
  pv.band = 0.25;
  const std::string band = scatter_chart(kText, {{100, 120, 0, "", false, ""}, {5, 4, 0, "", false, ""}, {3000, 2000, 0, "", false, ""}}, pv).svg;
  check_frame(band);
  CHECK(count_of(band, "class=\"mark") == 3);
  CHECK(count_of(band, "class=\"band\"") == 1);
  CHECK(count_of(band, "class=\"identity\"") == 1);
  CHECK(band.find("y = x ± 25 %") != std::string::npos);
  // Non-positive values on a log axis sit on the axis rather than producing NaN coordinates.
  const std::string zero = scatter_chart(kText, {{0, 1, 0, "", false, ""}, {10, 100, 0, "", false, ""}}, pv).svg;
  check_frame(zero);
  CHECK(count_of(zero, "class=\"mark") == 2);
}

TEST_CASE("result charts: the cost/speed chart plots the first ranked rows and every Pareto row") {
  planner::PlanResult res;
  for (int i = 0; i < 150; ++i) {
    planner::PlanRow r;
    r.output_tokens_per_s_per_user = 20 + (i % 17);
    r.usd_per_m_blended_tokens = 0.03 + 0.001 * i;
    r.pareto = i % 40 == 0;  // rows 0, 40, 80, 120
    res.rows.push_back(r);
  }
  CHECK(cost_speed_rows(res, 100).size() == 101);  // rows 0..99 and row 120
  const std::string svg = cost_speed_chart(res, 100, 10, "plan").svg;
  CHECK(markup_error(svg).empty());
  CHECK(count_of(svg, "class=\"mark") == 101);
  CHECK(count_of(svg, "class=\"point-label\"") == 10);
  CHECK(svg.find(">#10</text>") != std::string::npos);
  CHECK(svg.find(">#11</text>") == std::string::npos);
}

TEST_CASE("labels: no two tick or point labels overlap, however close the points") {
  // Ten labelled points within a few pixels of each other, and more around them: the cost chart's #1..#10.
  planner::PlanResult res;
  for (int i = 0; i < 60; ++i) {
    planner::PlanRow r;
    r.output_tokens_per_s_per_user = 40 + 0.05 * i;
    r.usd_per_m_blended_tokens = 0.100 + 0.0005 * (i % 7);
    r.pareto = i < 3;
    res.rows.push_back(r);
  }
  const std::string crowded = cost_speed_chart(res, 60, 10, "plan").svg;
  INFO(crowded);
  CHECK(overlapping_labels(crowded).empty());
  const auto placed = count_of(crowded, "class=\"point-label\"");
  CHECK(placed >= 4);   // the crowd still gets several labels, moved apart (some with a leader line)
  CHECK(placed <= 10);
  CHECK(count_of(crowded, "class=\"leader\"") >= 1);
  CHECK(crowded.find(">#1</text>") != std::string::npos);  // the first row is labelled first
  CHECK(count_of(crowded, "class=\"mark") == 60);           // every point is still drawn
  // Points far apart keep every label at its first place.
  ScatterOptions opt;
  const Chart apart = scatter_chart(kText, {{1, 1, 0, "#1", false, ""}, {50, 50, 0, "#2", false, ""}, {100, 100, 0, "#3", false, ""}}, opt);
  CHECK(overlapping_labels(apart.svg).empty());
  CHECK(count_of(apart.svg, "class=\"point-label\"") == 3);
  CHECK(count_of(apart.svg, "class=\"leader\"") == 0);
  // Long tick labels on a wide log axis, and points labelled on top of the axis' labels.
  ScatterOptions log;
  log.log_x = log.log_y = true;
  std::vector<ScatterPoint> wide;
  for (int i = 0; i < 12; ++i) wide.push_back({std::pow(10.0, i * 0.5), std::pow(10.0, i * 0.4), 0, "row " + std::to_string(i), false, ""});
  const std::string ticks = scatter_chart(kText, wide, log).svg;
  CHECK(overlapping_labels(ticks).empty());
  CHECK(count_of(ticks, "class=\"tick\"") >= 6);
  // The check itself sees an overlap: two labels drawn at one place.
  CHECK_FALSE(overlapping_labels("<svg><text class=\"tick\" x=\"10\" y=\"10\">abc</text>"
                                 "<text class=\"point-label\" x=\"12\" y=\"12\" font-size=\"11\">abc</text></svg>").empty());
}

TEST_CASE("result charts: a VRAM bar has a segment per weight module, KV, activations, overhead and free") {
  simulator::MemoryBreakdown b;
  b.weights.by_module[static_cast<std::size_t>(model::Module::attention)] = 2e9;
  b.weights.by_module[static_cast<std::size_t>(model::Module::routed_experts)] = 40e9;
  b.kv_bytes = 5e9;
  b.activation_bytes = 1e9;
  b.overhead_bytes = 1.5e9;
  b.usable_bytes = 72e9;
  b.free_bytes = 72e9 - 49.5e9;
  const std::string svg = vram_chart("t", "s", {{"8x h100", b}, {"16x h100", b}}, false).svg;
  CHECK(markup_error(svg).empty());
  CHECK(count_of(svg, "class=\"mark") == 2 * 6);
  CHECK(count_of(svg, "class=\"limit\"") == 2);
  b.free_bytes = -3e9;  // does not fit: no free segment, never a negative one
  const std::string over = vram_chart("t", "s", {{"4x h100", b}}, false).svg;
  CHECK(count_of(over, "class=\"mark") == 5);
  CHECK(over.find("free 0") == std::string::npos);
}

TEST_CASE("chart data: one table row per bar, stacked bar or point, in the axes' units, rendered by --format md") {
  const Chart stacked = stacked_bar_chart(kText, {"weights", "KV"}, {{"a", {50, 10}, 72}, {"b", {40, 0}, 0}, {"c", {8, 2}, 0}}, "usable");
  REQUIRE(stacked.data.rows.size() == 3);
  CHECK(stacked.data.title == "Chart: a <title> & more");
  CHECK(stacked.data.columns == std::vector<std::string>{"y unit", "weights", "KV", "total, x unit", "usable", ""});
  CHECK(std::vector<std::string>(stacked.data.rows[0].begin(), stacked.data.rows[0].begin() + 5) ==
        std::vector<std::string>{"a", "50", "10", "60", "72"});
  CHECK(stacked.data.rows[1][4].empty());  // no limit on b
  // Text bars: the largest extent (the limit, 72) is 20 blocks; 60 is 17, 10 is 3 (3 bytes each in UTF-8).
  CHECK(stacked.data.rows[0][5].size() == 17 * 3);
  CHECK(stacked.data.rows[2][5].size() == 3 * 3);

  std::vector<Bar> bars;
  for (int i = 0; i < 5; ++i) bars.push_back({"offer " + std::to_string(i), 0.5 * (i + 1), i == 2});
  const Chart bar = bar_chart(kText, bars);
  REQUIRE(bar.data.rows.size() == 5);
  CHECK(bar.data.rows[2] == std::vector<std::string>{"offer 2 (highlighted)", "1.5", bar.data.rows[2][2]});
  CHECK(bar.data.rows[4][2].size() == 20 * 3);
  CHECK(bar.data.rows[0][2].size() == 4 * 3);

  const Chart line = line_chart(kText, {{"bf16", {1024, 2048, 4096}, {800, 801, 803}}, {"fp8", {1024, 2048}, {420, 421}}}, true,
                                false, {{"usable 72 GB", 72}});
  REQUIRE(line.data.rows.size() == 5);
  CHECK(line.data.rows[4] == std::vector<std::string>{"fp8", "2048", "421"});
  CHECK(line.notes.front() == "dashed line: usable 72 GB (72)");
  CHECK(line.notes.back() == "source: the source");

  ScatterOptions opt;
  opt.series_names = {"trtllm", "vllm"};
  opt.pareto_front = true;
  const Chart scatter = scatter_chart(kText, {{20, 0.04, 0, "#1", true, ""}, {22, 0.08, 1, "", false, "#7"}}, opt);
  REQUIRE(scatter.data.rows.size() == 2);
  CHECK(scatter.data.rows[0] == std::vector<std::string>{"#1", "trtllm", "20", "0.04", "yes"});
  CHECK(scatter.data.rows[1] == std::vector<std::string>{"#7", "vllm", "22", "0.08", ""});

  Report r;
  r.charts = {line, scatter};
  const std::string md = render(r, Format::md);
  CHECK(count_of(md, "### Chart: a <title> & more") == 2);
  CHECK(md.find("| fp8 | 2048 | 421 |") != std::string::npos);
  CHECK(md.find("| #7 | vllm | 22 | 0.08 |  |") != std::string::npos);
  CHECK(md.find("source: the source") != std::string::npos);
  CHECK(md.find("<svg") == std::string::npos);
  CHECK(render(r, Format::table).find("Chart:") == std::string::npos);  // the text table leaves charts out
}

TEST_CASE("html: one self-contained page that parses, escapes cells and carries the charts") {
  Report r;
  r.header = {"memory per GPU: <model>", "second line"};
  Table t;
  t.title = "components";
  t.columns = {"name", "GB"};
  t.right_align = {false, true};
  t.rows = {{"weights & <b>", "50.10"}, {"KV", "2.10"}};
  r.tables.push_back(t);
  r.notes = {"a note > 8 GPUs"};
  r.charts.push_back(bar_chart(kText, {{"a", 1, false}}));
  const std::string html = render(r, Format::html);
  INFO(markup_error(html));
  CHECK(markup_error(html).empty());
  CHECK(html.rfind("<!DOCTYPE html>", 0) == 0);
  CHECK(html.find("<title>memory per GPU: &lt;model&gt;</title>") != std::string::npos);
  CHECK(html.find("<td>weights &amp; &lt;b&gt;</td><td class=\"num\">50.10</td>") != std::string::npos);
  CHECK(html.find("<li>a note &gt; 8 GPUs</li>") != std::string::npos);
  CHECK(html.find("prefers-color-scheme: dark") != std::string::npos);
  CHECK(html.find("@media print") != std::string::npos);
  CHECK(count_of(html, "<svg") == 1);
  // Self-contained: nothing fetched, no script.
  CHECK(html.find("<script") == std::string::npos);
  CHECK(html.find("http://") == html.find("http://www.w3.org/2000/svg"));
  CHECK(html.find("https://") == std::string::npos);
  CHECK(parse_format("html") == Format::html);

  const std::vector<Section> sections = {{"First", r}, {"Second", r}};
  const std::string doc = render_document("doc & title", {"intro"}, sections, Format::html);
  CHECK(markup_error(doc).empty());
  CHECK(count_of(doc, "<section id=") == 2);
  CHECK(count_of(doc, "<svg") == 2);
  CHECK(doc.find("<a href=\"#s2\">Second</a>") != std::string::npos);
  const std::string md = render_document("doc", {"intro"}, sections, Format::md);
  CHECK(md.rfind("# doc\n", 0) == 0);
  CHECK(count_of(md, "\n## ") == 2);
  CHECK(md.find("<svg") == std::string::npos);
  const auto j = nlohmann::json::parse(render_document("doc", {}, sections, Format::json));
  CHECK(j.at("sections").size() == 2);
  CHECK(j.at("sections")[1].at("title") == "Second");
}
