// Rendering: aligned tables, Markdown escaping, CSV quoting, JSON passthrough.
#include <catch2/catch.hpp>

#include "common/error.hpp"
#include "reports/render.hpp"

using namespace moeplan;
using namespace moeplan::reports;

TEST_CASE("tables align columns, csv quotes, md escapes pipes") {
  Report r;
  Table t;
  t.columns = {"name", "value"};
  t.right_align = {false, true};
  t.rows = {{"a", "1"}, {"long|name", "1,000"}};
  r.tables.push_back(t);
  r.json = {{"k", 1}};
  CHECK(render(r, Format::table) == "\nname       value\n---------  -----\na              1\nlong|name  1,000\n");
  CHECK(render(r, Format::csv) == "name,value\na,1\nlong|name,\"1,000\"\n");
  CHECK(render(r, Format::md).find("long\\|name") != std::string::npos);
  CHECK(render(r, Format::json) == "{\n  \"k\": 1\n}\n");
  CHECK_THROWS_AS(parse_format("xml"), InputError);
}
