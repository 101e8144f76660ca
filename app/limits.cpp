// app/limits: bounds on numeric options (see limits.hpp). Each bound is far above any real deployment and low
// enough that the work it sizes (a serving simulation's requests, a CPU run's tokens, a plan's batch list) stays
// within seconds to minutes and every product of two bounded sizes stays inside int64.
#include "app/limits.hpp"

#include <cmath>
#include <cstdint>
#include <cstdio>

#include "common/error.hpp"
#include "common/text.hpp"

namespace po = boost::program_options;

namespace moeplan::app {

namespace {
constexpr double kTokens = 16777216;  // 2^24: above the longest context of any supported model (Llama 4 Scout, 10M)
constexpr double kDim = 1048576;      // 2^20: model/config.cpp's bound on a transformer dimension
constexpr double kSeed = 9223372036854775807.0;  // 2^63 - 1: a negative seed parses as a huge unsigned number
}  // namespace

const std::vector<OptionBound>& option_bounds() {
  static const std::vector<OptionBound> kBounds = {
      // Layout and hardware counts: the largest GPU count plan tries is 4096 (app/cmd_plan.cpp --counts).
      {"count", 1, 4096, "GPUs"},
      {"tp", 1, 4096, "ranks"},
      {"ep", 1, 4096, "ranks"},
      {"pp", 1, 4096, "stages"},
      {"dp", 1, 4096, "ranks"},
      {"max-gpus", 1, 4096, "GPUs"},
      {"disaggregate", 0, 1024, "prefill replicas"},
      {"nics-per-node", 1, 64, "NIC ports"},
      {"host-cores", 1, 65536, "cores"},
      {"threads", 0, 1024, "threads (0: all)"},
      {"ranks", 1, 64, "in-process ranks"},
      {"passes", 1, 100, "passes"},
      {"repeats", 1, 10000, "timed calls"},
      {"cuda-device", 0, 1023, "(a CUDA device index)"},
      // Token and sequence counts.
      {"context", 1, kTokens, "tokens"},
      {"input", 1, kTokens, "tokens"},
      {"output", 1, kTokens, "tokens"},
      {"max-num-batched-tokens", 1, kTokens, "tokens per step"},
      {"concurrency", 1, 1000000, "sequences"},
      {"max-concurrency", 1, 1000000, "sequences"},
      {"static-batch", 1, 1000000, "sequences"},
      {"max-batch", 1, 1000000, "sequences"},
      {"num-requests", 0, 1000000, "requests (0: automatic)"},
      {"gpu-layers", 0, 100000, "layers"},
      // moeplan run executes on this CPU: a prompt of 2^20 tokens already takes hours.
      {"prompt-tokens", 1, 1048576, "tokens"},
      {"gen-tokens", 0, 1048576, "tokens"},
      {"batch", 1, 65536, "sequences"},
      {"batches", 1, 65536, "sequences"},
      {"contexts", 1, kTokens, "tokens"},
      {"prefill", 1, 1048576, "tokens"},
      {"layers", 1, 10000, "layers"},
      {"experts", 1, kDim, "experts"},
      {"hidden", 1, kDim, "elements"},
      {"intermediate", 1, kDim, "elements"},
      {"heads", 1, kDim, "heads"},
      {"kv-heads", 1, kDim, "heads"},
      {"vocab", 1, kDim, "tokens"},
      {"seed", 0, kSeed, "(a negative seed wraps to a huge unsigned number)"},
      {"random-weights", 0, kSeed, "(a negative seed wraps to a huge unsigned number)"},
      // Rates, prices and fractions: finite, and small enough that products and reciprocals stay finite.
      {"request-rate", 1e-6, 1e6, "requests per second"},
      {"gpu-price", 1e-4, 1e4, "USD per GPU-hour"},
      {"network-price", 0, 1e4, "USD per NIC port-hour"},
      {"budget-per-month", 1e-2, 1e12, "USD"},
      {"budget-per-hour", 1e-4, 1e9, "USD"},
      {"tokens-per-month", 1, 1e16, "tokens"},
      {"utilization", 1e-3, 1, "(a fraction of hours)"},
      {"gpu-memory-utilization", 1e-3, 1, "(a fraction of memory)"},
      {"ram-gb", 1e-3, 1e6, "GB"},
      {"ttft-ms", 1e-3, 1e9, "ms"},
      {"tpot-ms", 1e-3, 1e9, "ms"},
      {"min-tokens-per-s-per-user", 1e-6, 1e9, "tokens per second"},
      {"top", 1, 100000, "rows"},
      {"zipf", 1e-6, 100, "(a Zipf exponent)"},
      {"mem-bandwidth-gbps", 1e-3, 1e6, "GB/s"},
      {"host-tflops", 1e-6, 1e6, "TFLOP/s"},
      {"temperature", 0, 1000, ""},
  };
  return kBounds;
}

namespace {

std::string number_text(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, std::fabs(v) < 1e15 && v == std::floor(v) ? "%.0f" : "%g", v);
  return buf;
}

const OptionBound* find_bound(const std::string& option) {
  for (const auto& b : option_bounds())
    if (option == b.option) return &b;
  return nullptr;
}

// A value and its text as parsed (integers exactly, not through double).
struct Value {
  double number;
  std::string text;
};

void check(const OptionBound& b, const Value& v) {
  if (v.number >= b.min && v.number <= b.max) return;  // false for NaN
  std::string range = number_text(b.min) + ".." + (b.max == kSeed ? std::string("9223372036854775807") : number_text(b.max));
  if (*b.unit) range += std::string(" ") + b.unit;
  throw InputError("--" + std::string(b.option) + " " + v.text + " is out of range: use " + range);
}

template <typename T>
Value integer(T x) {
  return {static_cast<double>(x), std::to_string(x)};
}

// The option's value(s); empty for non-numeric options.
std::vector<Value> values(const boost::any& v) {
  if (const auto* i = boost::any_cast<int>(&v)) return {integer(*i)};
  if (const auto* l = boost::any_cast<std::int64_t>(&v)) return {integer(*l)};
  if (const auto* u = boost::any_cast<std::uint64_t>(&v)) return {integer(*u)};
  if (const auto* d = boost::any_cast<double>(&v)) return {{*d, number_text(*d)}};
  if (const auto* f = boost::any_cast<float>(&v)) return {{static_cast<double>(*f), number_text(static_cast<double>(*f))}};
  std::vector<Value> out;
  if (const auto* vi = boost::any_cast<std::vector<int>>(&v))
    for (int x : *vi) out.push_back(integer(x));
  if (const auto* vl = boost::any_cast<std::vector<std::int64_t>>(&v))
    for (std::int64_t x : *vl) out.push_back(integer(x));
  return out;
}

}  // namespace

void check_option_bounds(const po::variables_map& vm) {
  for (const auto& b : option_bounds()) {
    if (!vm.count(b.option)) continue;
    for (const Value& x : values(vm[b.option].value())) check(b, x);
  }
}

void check_option_bound(const std::string& option, double value) {
  if (const OptionBound* b = find_bound(option)) check(*b, {value, number_text(value)});
}

}  // namespace moeplan::app
