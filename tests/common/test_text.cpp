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

TEST_CASE("printable escapes control bytes and invalid UTF-8 and cuts long values") {
  CHECK(printable("h100-sxm") == "h100-sxm");
  CHECK(printable("a\nb\tc\rd") == "a\\nb\\tc\\rd");
  CHECK(printable("\x1b[31mred") == "\\x1B[31mred");
  CHECK(printable("back\\slash") == "back\\\\slash");
  CHECK(printable("caf\xc3\xa9") == "caf\xc3\xa9");         // valid UTF-8 stays
  CHECK(printable("\xff\xfe") == "\\xFF\\xFE");             // not UTF-8
  CHECK(printable("\xc2\x9b" "2J") == "\\xC2\\x9B2J");       // C1 control (CSI) in UTF-8 form
  CHECK(printable("\xe0\x80\xaf") == "\\xE0\\x80\\xAF");     // overlong
  CHECK(printable("\xed\xa0\x80") == "\\xED\\xA0\\x80");     // surrogate
  CHECK(printable("\xf0\x9f\x98") == "\\xF0\\x9F\\x98");     // truncated sequence
  const std::string long_value(1000, 'x');
  CHECK(printable(long_value) == std::string(120, 'x') + "... (1000 bytes)");
  CHECK(printable_message("a\\b\nc") == "a\\b\\nc");        // a whole message keeps its backslashes
}
