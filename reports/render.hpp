// reports/render: a Report (header lines, tables, notes, charts, and the same result as JSON) rendered as an
// aligned text table, Markdown, CSV, JSON or one self-contained HTML page (inline CSS and SVG, nothing fetched, no
// script). Several reports make one document as titled sections (moeplan report). Computation never happens here.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/shard.hpp"

namespace moeplan::reports {

enum class Format { table, md, json, csv, html };
Format parse_format(const std::string& s);  // throws InputError
const char* format_name(Format f);

struct Table {
  std::string title;
  std::vector<std::string> columns;
  std::vector<bool> right_align;                 // per column; numbers right-aligned
  std::vector<std::vector<std::string>> rows;
};

// A chart: the SVG drawing (--format html) and the numbers it plots as a table (--format md), one row per data point
// (a bar, a stacked bar, a point of a line or a scatter), with the lines that go with it (reference lines, source).
struct Chart {
  std::string svg;
  Table data;                      // title "Chart: <the chart's title>"
  std::vector<std::string> notes;  // reference lines, "source: ..."
};

struct Report {
  std::vector<std::string> header;   // lines printed before the tables
  std::vector<Table> tables;
  std::vector<std::string> notes;    // lines printed after the tables
  std::vector<Chart> charts;         // reports/charts.hpp: drawn by --format html, given as tables by --format md
  nlohmann::json json;               // the machine-readable result (--format json)
};

std::string render(const Report& report, Format format);

// A layout as the tables print it: tp always, ep, dp and pp where above 1 ("tp1 ep32 dp32", "tp8 pp2").
std::string layout_text(const model::ParallelLayout& l);

// A document of titled sections: html gives one page with a heading per section and a contents list, md a "##"
// heading per section, table the same in text, json {"title", "sections": [{"title", "result"}]}, csv each
// section's tables in turn. `intro`: lines under the document title.
struct Section {
  std::string title;
  Report report;
};
std::string render_document(const std::string& title, const std::vector<std::string>& intro,
                            const std::vector<Section>& sections, Format format);

}  // namespace moeplan::reports
