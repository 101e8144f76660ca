// app/cli: the `moeplan` command line. Subcommands parse their options (Boost.Program_options), call the
// libraries and render a report. Exit codes: 0 success, 2 bad input (one line on stderr), 1 internal error.
#pragma once
#include <filesystem>
#include <initializer_list>
#include <iosfwd>
#include <string>
#include <vector>

#include <boost/program_options.hpp>

#include "reports/render.hpp"

namespace moeplan::app {

inline constexpr int kExitOk = 0;
inline constexpr int kExitInternal = 1;
inline constexpr int kExitBadInput = 2;

// Runs the command line; never calls exit(). Output goes to `out` (or to --output FILE, atomically).
int run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

// Shared by subcommands.
struct Common {
  std::string format = "table";
  std::string output;       // -o FILE; empty: stdout
  std::string config_file;  // --config-file FILE (YAML map of option names to values)
};
void add_common_options(boost::program_options::options_description& d, Common& c);

// Parse `args` (after the subcommand name) into `vm`, merging --config-file; returns false when --help was printed.
bool parse(const std::string& command, const std::string& usage, const std::vector<std::string>& args,
           boost::program_options::options_description& options, boost::program_options::variables_map& vm,
           std::ostream& out);

void emit(const reports::Report& report, const Common& common, std::ostream& out);

// Options of one mode of a command given in another are refused, not ignored: the first of `names` the user gave
// (on the command line or in --config-file; a default does not count) is InputError("--NAME is for `mode`").
void refuse_given(const boost::program_options::variables_map& vm, std::initializer_list<const char*> names,
                  const std::string& mode);

// "a, b,c" -> {"a", "b", "c"} (blank items dropped): the list options (--gpus, --precisions, ...).
std::vector<std::string> split_list(const std::string& s);

int cmd_models(const std::vector<std::string>& args, std::ostream& out);
int cmd_gpus(const std::vector<std::string>& args, std::ostream& out);
int cmd_memory(const std::vector<std::string>& args, std::ostream& out);
int cmd_fit_matrix(const std::vector<std::string>& args, std::ostream& out);
int cmd_hosts(const std::vector<std::string>& args, std::ostream& out);
int cmd_claims(const std::vector<std::string>& args, std::ostream& out);
int cmd_simulate(const std::vector<std::string>& args, std::ostream& out);
int cmd_plan(const std::vector<std::string>& args, std::ostream& out);
int cmd_compare_api(const std::vector<std::string>& args, std::ostream& out);
int cmd_run(const std::vector<std::string>& args, std::ostream& out);
int cmd_validate(const std::vector<std::string>& args, std::ostream& out);
int cmd_calibrate(const std::vector<std::string>& args, std::ostream& out);
int cmd_report(const std::vector<std::string>& args, std::ostream& out);

// <user data dir>/profiles/<this host>.yaml (common/files.hpp user_data_dir): where calibrate writes and validate
// looks by default. Runtime never writes data/.
std::filesystem::path default_profile_path();
// --profile NAME|FILE: an existing path as given; a bare name from the user's profiles, then data/profiles/.
std::filesystem::path find_profile(const std::string& name_or_path);

}  // namespace moeplan::app
