// Fuzz the command line itself: the input is argv (arguments separated by NUL bytes), optionally followed by
// "\x01" and the text of a YAML option file that is passed as --config-file. Every outcome must be exit 0 or exit 2
// (InputError); exit 1 (anything else escaping, an internal error) aborts, as does a sanitizer report.
//
// The harness runs in a scratch directory and drops inputs holding '/', so no file outside it can be read or
// written (-o, --weights-out and option files resolve there). `run`, `calibrate` and `validate --device` execute
// models and measure the machine, which takes seconds to hours per input: they are left to the test suite
// (tests/badinput), as are `plan` and `compare-api` sweeps over the whole GPU database and numbers of five digits
// or more (which the bounds table checks before any work).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "app/cli.hpp"

namespace {

std::filesystem::path scratch_path() {
  return std::filesystem::temp_directory_path() / ("moeplan_fuzz_cli_" + std::to_string(::getpid()));
}

// Removed when the fuzzer exits normally (-max_total_time, -runs); a crash leaves it for inspection.
void remove_scratch_dir() {
  std::error_code ec;
  std::filesystem::remove_all(scratch_path(), ec);
}

const std::filesystem::path& scratch_dir() {
  static const std::filesystem::path dir = [] {
    auto d = scratch_path();
    std::filesystem::create_directories(d);
    std::atexit(remove_scratch_dir);
    std::filesystem::current_path(d);
    ::setenv("XDG_DATA_HOME", d.c_str(), 1);  // profiles the commands look for resolve here too
    return d;
  }();
  return dir;
}

bool allowed(const std::vector<std::string>& args) {
  if (args.empty()) return true;
  for (const char* slow : {"run", "calibrate", "validate"})
    if (args[0] == slow) return false;
  if (args[0] == "plan" || args[0] == "compare-api") {
    // A plan over the whole GPU database costs seconds: the fuzzer plans one named GPU at most two counts.
    bool gpus = false, counts = false;
    for (const auto& a : args) {
      gpus = gpus || a.rfind("--gpus", 0) == 0;
      counts = counts || a.rfind("--counts", 0) == 0;
    }
    if (!gpus || !counts) return false;
  }
  return true;
}

}  // namespace

// Every input runs in the scratch directory, but libFuzzer reads the seed files (and writes failing inputs) by the
// paths it was given, after the first input has changed directory: relative corpus directories and artifact paths
// are made absolute here, before any input runs.
extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  static std::vector<std::string> args;
  static std::vector<char*> pointers;
  const std::filesystem::path cwd = std::filesystem::current_path();
  for (int i = 0; i < *argc; ++i) {
    std::string a = (*argv)[i];
    for (const char* flag : {"-artifact_prefix=", "-exact_artifact_path="})
      if (a.rfind(flag, 0) == 0 && a.size() > std::strlen(flag) && a[std::strlen(flag)] != '/')
        a = flag + (cwd / a.substr(std::strlen(flag))).string();
    if (i > 0 && !a.empty() && a[0] != '-' && a[0] != '/') a = (cwd / a).string();
    args.push_back(a);
  }
  for (auto& a : args) pointers.push_back(a.data());
  pointers.push_back(nullptr);
  *argv = pointers.data();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  if (input.find('/') != std::string::npos || size > 4096) return 0;
  // Sizes of five digits and more are the bounds table's business (tests/badinput); below that every command
  // finishes in about a second, which keeps the fuzzer's executions per second useful.
  int digits = 0;
  for (const char c : input) {
    digits = (c >= '0' && c <= '9') ? digits + 1 : 0;
    if (digits > 4) return 0;
  }
  const auto& dir = scratch_dir();
  const auto split = input.find('\x01');
  std::vector<std::string> args;
  std::stringstream in(input.substr(0, split));
  for (std::string a; std::getline(in, a, '\0');) args.push_back(a);
  if (split != std::string::npos) {
    std::ofstream(dir / "options.yaml", std::ios::binary | std::ios::trunc) << input.substr(split + 1);
    args.insert(args.end(), {"--config-file", "options.yaml"});
  }
  if (!allowed(args)) return 0;
  // The option file may name a command's slow options too; those inputs are skipped the same way.
  if (split != std::string::npos) {
    const std::string yaml = input.substr(split + 1);
    if (yaml.find("gpus") == std::string::npos && !args.empty() && (args[0] == "plan" || args[0] == "compare-api")) return 0;
  }
  std::ostringstream out, err;
  const int code = moeplan::app::run(args, out, err);
  if (code != 0 && code != 2) {
    std::fprintf(stderr, "exit %d: %s\n", code, err.str().c_str());
    std::abort();
  }
  return 0;
}
