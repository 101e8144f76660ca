// The command line in-process for the app tests: app::run with captured streams, and the one-line error check.
#pragma once
#include <sstream>
#include <string>
#include <vector>

#include "app/cli.hpp"

namespace moeplan::test {

struct CliResult {
  int code;
  std::string out, err;
};

inline CliResult run(std::vector<std::string> args) {
  std::ostringstream out, err;
  const int code = app::run(args, out, err);
  return {code, out.str(), err.str()};
}

// A message of exactly one line (ending in its newline).
inline bool one_line(const std::string& s) { return !s.empty() && s.find('\n') == s.size() - 1; }

}  // namespace moeplan::test
