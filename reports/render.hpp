// reports/render: a Report (header lines, tables, notes, and the same result as JSON) rendered as an aligned
// text table, Markdown, CSV or JSON. Computation never happens here.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace moeplan::reports {

enum class Format { table, md, json, csv };
Format parse_format(const std::string& s);  // throws InputError
const char* format_name(Format f);

struct Table {
  std::string title;
  std::vector<std::string> columns;
  std::vector<bool> right_align;                 // per column; numbers right-aligned
  std::vector<std::vector<std::string>> rows;
};

struct Report {
  std::vector<std::string> header;   // lines printed before the tables
  std::vector<Table> tables;
  std::vector<std::string> notes;    // lines printed after the tables
  nlohmann::json json;               // the machine-readable result (--format json)
};

std::string render(const Report& report, Format format);

}  // namespace moeplan::reports
