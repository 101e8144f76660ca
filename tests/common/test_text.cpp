// Name suggestions and number formatting used in every error and table.
#include <catch2/catch.hpp>

#include "common/text.hpp"

using namespace moeplan;

TEST_CASE("closest names and number formatting") {
  CHECK(edit_distance("h100", "h200") == 1);
  const auto close = closest_names("h100", {"a100-80gb-sxm", "h100-sxm", "h100-pcie", "t4"});
  REQUIRE(close.size() >= 2);
  CHECK(close[0].rfind("h100", 0) == 0);
  CHECK(closest_names("zzzzzz", {"h100-sxm"}).empty());
  CHECK(with_commas(401583781376) == "401,583,781,376");
  CHECK(with_commas(-1234) == "-1,234");
  CHECK(format_gb(52e9) == "52.00 GB");
}
