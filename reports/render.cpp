#include "reports/render.hpp"

#include <algorithm>
#include <sstream>

#include "common/error.hpp"

namespace moeplan::reports {

Format parse_format(const std::string& s) {
  if (s == "table") return Format::table;
  if (s == "md" || s == "markdown") return Format::md;
  if (s == "json") return Format::json;
  if (s == "csv") return Format::csv;
  throw InputError("unknown --format '" + s + "' (use table, md, json or csv)");
}

const char* format_name(Format f) {
  switch (f) {
    case Format::table: return "table";
    case Format::md: return "md";
    case Format::json: return "json";
    case Format::csv: return "csv";
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
  }
  return out.str();
}

}  // namespace moeplan::reports
