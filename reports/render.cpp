#include "reports/render.hpp"

#include <algorithm>
#include <sstream>

#include "common/error.hpp"
#include "reports/charts.hpp"

namespace moeplan::reports {

Format parse_format(const std::string& s) {
  if (s == "table") return Format::table;
  if (s == "md" || s == "markdown") return Format::md;
  if (s == "json") return Format::json;
  if (s == "csv") return Format::csv;
  if (s == "html") return Format::html;
  throw InputError("unknown --format '" + s + "' (use table, md, json, csv or html)");
}

const char* format_name(Format f) {
  switch (f) {
    case Format::table: return "table";
    case Format::md: return "md";
    case Format::json: return "json";
    case Format::csv: return "csv";
    case Format::html: return "html";
  }
  return "?";
}

namespace {

// Display width of UTF-8 text: count code points, not bytes (for "×", "≤" and the like).
std::size_t width(const std::string& s) {
  std::size_t n = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80) ++n;
  return n;
}

std::string pad(const std::string& s, std::size_t w, bool right) {
  const std::size_t have = width(s);
  if (have >= w) return s;
  const std::string fill(w - have, ' ');
  return right ? fill + s : s + fill;
}

void text_table(std::ostringstream& out, const Table& t) {
  std::vector<std::size_t> w(t.columns.size());
  for (std::size_t c = 0; c < t.columns.size(); ++c) w[c] = width(t.columns[c]);
  for (const auto& row : t.rows)
    for (std::size_t c = 0; c < row.size() && c < w.size(); ++c) w[c] = std::max(w[c], width(row[c]));
  auto right = [&](std::size_t c) { return c < t.right_align.size() && t.right_align[c]; };
  // One padded line of cells, without trailing blanks.
  auto line = [&](const std::vector<std::string>& cells) {
    std::string text;
    for (std::size_t c = 0; c < cells.size(); ++c) text += (c ? "  " : "") + pad(cells[c], c < w.size() ? w[c] : 0, right(c));
    while (!text.empty() && text.back() == ' ') text.pop_back();
    return text;
  };
  if (!t.title.empty()) out << t.title << "\n";
  out << line(t.columns) << "\n";
  for (std::size_t c = 0; c < t.columns.size(); ++c) out << (c ? "  " : "") << std::string(w[c], '-');
  out << "\n";
  for (const auto& row : t.rows) out << line(row) << "\n";
}

std::string md_cell(std::string s) {
  std::string out;
  for (char c : s) out += (c == '|') ? std::string("\\|") : std::string(1, c);
  return out;
}

void md_table(std::ostringstream& out, const Table& t) {
  if (!t.title.empty()) out << "### " << t.title << "\n\n";
  out << "|";
  for (const auto& c : t.columns) out << " " << md_cell(c) << " |";
  out << "\n|";
  for (std::size_t c = 0; c < t.columns.size(); ++c) out << (c < t.right_align.size() && t.right_align[c] ? "---:|" : "---|");
  out << "\n";
  for (const auto& row : t.rows) {
    out << "|";
    for (const auto& cell : row) out << " " << md_cell(cell) << " |";
    out << "\n";
  }
  out << "\n";
}

std::string csv_cell(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += (c == '"') ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

// The page's style: light and dark colours (prefers-color-scheme), print in black on white, tables that scroll
// sideways on a narrow screen. Charts draw text and axes in currentColor, so they follow.
constexpr const char* kPageCss = R"css(
:root { color-scheme: light dark; --fg: #1b1f24; --bg: #ffffff; --muted: #57606a; --rule: #d0d7de; --stripe: #f6f8fa; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e6edf3; --bg: #0d1117; --muted: #9198a1; --rule: #30363d; --stripe: #161b22; }
}
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg);
       margin: 0 auto; max-width: 1280px; padding: 1rem 1.5rem; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; border-bottom: 1px solid var(--rule); padding-bottom: 2px; margin-top: 2rem; }
.lead, ul.notes { color: var(--muted); }
ul.notes { font-size: 12px; overflow-wrap: anywhere; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 12px; font-variant-numeric: tabular-nums; margin: .5rem 0 1rem; }
caption { text-align: left; font-weight: 600; padding: 4px 0; }
th, td { border-bottom: 1px solid var(--rule); padding: 2px 8px; text-align: left; white-space: nowrap; }
th.num, td.num { text-align: right; }
tbody tr:nth-child(even) { background: var(--stripe); }
figure { margin: .5rem 0 1.25rem; }
svg.chart { max-width: 100%; height: auto; color: var(--fg); }
@media print {
  :root { --fg: #000000; --bg: #ffffff; --muted: #333333; --rule: #999999; --stripe: #eeeeee; }
  body { max-width: none; padding: 0; } nav { display: none; }
  section > h2, figure, table { break-inside: avoid; } .scroll { overflow: visible; } table { font-size: 9px; }
}
)css";

void html_table(std::ostringstream& out, const Table& t) {
  auto cls = [&](std::size_t c) { return c < t.right_align.size() && t.right_align[c] ? " class=\"num\"" : ""; };
  out << "<div class=\"scroll\"><table>\n";
  if (!t.title.empty()) out << "<caption>" << xml_escape(t.title) << "</caption>\n";
  out << "<thead><tr>";
  for (std::size_t c = 0; c < t.columns.size(); ++c) out << "<th" << cls(c) << ">" << xml_escape(t.columns[c]) << "</th>";
  out << "</tr></thead>\n<tbody>\n";
  for (const auto& row : t.rows) {
    out << "<tr>";
    for (std::size_t c = 0; c < row.size(); ++c) out << "<td" << cls(c) << ">" << xml_escape(row[c]) << "</td>";
    out << "</tr>\n";
  }
  out << "</tbody></table></div>\n";
}

// One report's body: header lines, charts, tables, notes.
void html_body(std::ostringstream& out, const Report& r) {
  if (!r.header.empty()) {
    out << "<p class=\"lead\">";
    for (std::size_t i = 0; i < r.header.size(); ++i) out << (i ? "<br/>\n" : "") << xml_escape(r.header[i]);
    out << "</p>\n";
  }
  for (const auto& c : r.charts) out << "<figure>\n" << c.svg << "</figure>\n";
  for (const auto& t : r.tables) html_table(out, t);
  if (!r.notes.empty()) {
    out << "<ul class=\"notes\">\n";
    for (const auto& n : r.notes) out << "<li>" << xml_escape(n) << "</li>\n";
    out << "</ul>\n";
  }
}

// The page: XHTML-style (every element closed, attributes quoted) so that it also parses as XML.
std::string html_page(const std::string& title, const std::vector<std::string>& intro, const std::vector<Section>& sections) {
  std::ostringstream out;
  out << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n"
      << "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n"
      << "<title>" << xml_escape(title) << "</title>\n<style>" << kPageCss << "</style>\n</head>\n<body>\n"
      << "<header><h1>" << xml_escape(title) << "</h1>\n";
  for (const auto& line : intro) out << "<p class=\"lead\">" << xml_escape(line) << "</p>\n";
  out << "</header>\n";
  const bool titled = sections.size() > 1;
  if (titled) {
    out << "<nav><ol>\n";
    for (std::size_t i = 0; i < sections.size(); ++i)
      out << "<li><a href=\"#s" << i + 1 << "\">" << xml_escape(sections[i].title) << "</a></li>\n";
    out << "</ol></nav>\n";
  }
  for (std::size_t i = 0; i < sections.size(); ++i) {
    out << "<section id=\"s" << i + 1 << "\">\n";
    if (!sections[i].title.empty()) out << "<h2>" << xml_escape(sections[i].title) << "</h2>\n";
    html_body(out, sections[i].report);
    out << "</section>\n";
  }
  out << "</body>\n</html>\n";
  return out.str();
}

}  // namespace

std::string render(const Report& r, Format f) {
  std::ostringstream out;
  switch (f) {
    case Format::json: out << r.json.dump(2) << "\n"; break;
    case Format::table:
      for (const auto& h : r.header) out << h << "\n";
      for (const auto& t : r.tables) {
        out << "\n";
        text_table(out, t);
      }
      if (!r.notes.empty()) out << "\n";
      for (const auto& n : r.notes) out << n << "\n";
      break;
    case Format::md:
      for (const auto& h : r.header) out << h << "  \n";
      out << "\n";
      for (const auto& c : r.charts) {  // the page's charts as tables of their numbers
        md_table(out, c.data);
        for (const auto& n : c.notes) out << n << "  \n";
        out << "\n";
      }
      for (const auto& t : r.tables) md_table(out, t);
      for (const auto& n : r.notes) out << "- " << n << "\n";
      break;
    case Format::csv:
      // One table per block; blocks separated by an empty line. Header and notes are not data.
      for (std::size_t i = 0; i < r.tables.size(); ++i) {
        const auto& t = r.tables[i];
        if (i) out << "\n";
        for (std::size_t c = 0; c < t.columns.size(); ++c) out << (c ? "," : "") << csv_cell(t.columns[c]);
        out << "\n";
        for (const auto& row : t.rows) {
          for (std::size_t c = 0; c < row.size(); ++c) out << (c ? "," : "") << csv_cell(row[c]);
          out << "\n";
        }
      }
      break;
    case Format::html: {
      // One report as a page: its first header line is the page title.
      const std::string title = r.header.empty() ? "moeplan" : r.header.front();
      Report body = r;
      if (!body.header.empty()) body.header.erase(body.header.begin());
      return html_page(title, {}, {{"", body}});
    }
  }
  return out.str();
}

std::string render_document(const std::string& title, const std::vector<std::string>& intro,
                            const std::vector<Section>& sections, Format f) {
  std::ostringstream out;
  switch (f) {
    case Format::html: return html_page(title, intro, sections);
    case Format::json: {
      nlohmann::json doc = {{"title", title}, {"intro", intro}, {"sections", nlohmann::json::array()}};
      for (const auto& s : sections) doc["sections"].push_back({{"title", s.title}, {"result", s.report.json}});
      out << doc.dump(2) << "\n";
      break;
    }
    case Format::md:
      out << "# " << title << "\n\n";
      for (const auto& line : intro) out << line << "  \n";
      for (const auto& s : sections) out << "\n## " << s.title << "\n\n" << render(s.report, f);
      break;
    case Format::table:
      out << title << "\n";
      for (const auto& line : intro) out << line << "\n";
      for (const auto& s : sections) out << "\n== " << s.title << " ==\n" << render(s.report, f);
      break;
    case Format::csv:
      for (std::size_t i = 0; i < sections.size(); ++i) out << (i ? "\n" : "") << render(sections[i].report, f);
      break;
  }
  return out.str();
}

std::string layout_text(const model::ParallelLayout& l) {
  std::string s = "tp" + std::to_string(l.tp);
  if (l.ep > 1) s += " ep" + std::to_string(l.ep);
  if (l.dp > 1) s += " dp" + std::to_string(l.dp);
  if (l.pp > 1) s += " pp" + std::to_string(l.pp);
  return s;
}

}  // namespace moeplan::reports
