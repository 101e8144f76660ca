// app/limits: the one table of bounds on every numeric option, checked for every command right after parsing, so
// no size reaches a loop or an allocation before it is known to be sane (docs/limits.md lists them with reasons).
#pragma once
#include <string>
#include <vector>

#include <boost/program_options.hpp>

namespace moeplan::app {

struct OptionBound {
  const char* option;  // the option's long name, as typed after "--"
  double min, max;     // inclusive
  const char* unit;    // what the value counts, for the message
};

// Every bound, in one place.
const std::vector<OptionBound>& option_bounds();

// Throws InputError("--NAME VALUE is out of range: use MIN..MAX UNIT") for the first option in `vm` whose value
// (or any value of a list option) lies outside its bound, NaN and infinities included.
void check_option_bounds(const boost::program_options::variables_map& vm);

// The same check for a value an option carries inside text (simulate --concurrency N).
void check_option_bound(const std::string& option, double value);

}  // namespace moeplan::app
