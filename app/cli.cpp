#include "app/cli.hpp"

#include <iostream>
#include <sstream>

#include "app/limits.hpp"
#include "common/error.hpp"
#include "common/files.hpp"
#include "common/text.hpp"
#include "moeplan/config.hpp"

namespace po = boost::program_options;

namespace moeplan::app {

namespace {

std::string pad_right(const std::string& s, std::size_t w) { return s.size() >= w ? s + " " : s + std::string(w - s.size(), ' '); }

struct Subcommand {
  const char* name;
  const char* summary;
  int (*fn)(const std::vector<std::string>&, std::ostream&);
};

const std::vector<Subcommand>& subcommands() {
  static const std::vector<Subcommand> kCommands = {
      {"models", "list built-in models: layers, experts, attention, parameters, KV bytes", cmd_models},
      {"gpus", "list the hardware database (--hosts for CPU hosts, --local for this machine's GPUs)", cmd_gpus},
      {"memory", "memory per GPU: weights, KV cache, activations, overhead, fit, largest concurrency", cmd_memory},
      {"fit-matrix", "every GPU x precision: smallest GPU count that fits, headroom class, largest concurrency", cmd_fit_matrix},
      {"hosts", "CPU / unified-memory hosts and one-GPU offload: RAM needed, fits, recommended RAM, llama.cpp tok/s", cmd_hosts},
      {"claims", "recorded claims about a model (layers, KV bytes per token, heads, ...) against its config", cmd_claims},
      {"simulate", "predict TTFT, TPOT, ITL, E2E and tokens/s of one configuration under a load (--breakdown: per op)", cmd_simulate},
      {"plan", "rank GPU x count x precision x layout for a workload, SLO and budget, with $/M tokens", cmd_plan},
      {"compare-api", "the cheapest self-hosted configuration against API prices, with the break-even volume", cmd_compare_api},
      {"run", "execute the model on this CPU (real or seeded random weights): tokens/s and per-op times", cmd_run},
      {"calibrate", "measure this host's kernels (bandwidth, GEMM/attention curves, overheads) into a profile", cmd_calibrate},
      {"validate", "predicted vs measured: --device cpu runs the model here; --published checks published benchmarks", cmd_validate},
      {"report", "a deployment report of a model: plan, memory, load, API prices, hosts, validation (HTML with SVG charts, or md)", cmd_report},
  };
  return kCommands;
}

void print_usage(std::ostream& out) {
  out << "moeplan " << MOEPLAN_VERSION << ": plan, price and validate serving of Mixture-of-Experts models\n\n"
      << "usage: moeplan COMMAND [options]     (moeplan COMMAND --help for its options)\n\ncommands:\n";
  for (const auto& c : subcommands()) out << "  " << pad_right(c.name, 12) << c.summary << "\n";
  out << "\nexit codes: 0 ok, 2 bad input (one line on stderr), 1 internal error\n";
}

// A YAML scalar's text, refusing what a command-line value cannot be (no value, a list inside a list, a map).
std::string scalar_text(const YAML::Node& n, const std::string& where, const std::string& option) {
  if (!n.IsScalar())
    throw InputError(where + ":" + std::to_string(n.Mark().line + 1) + ": option '" + printable(option) +
                     "' must be a value or a list of values (found " + (n.IsNull() ? "no value" : "a nested list or map") +
                     ")");
  return n.Scalar();
}

// A YAML map {option: value} becomes "--option value" arguments (lists repeat the option). An option that takes no
// value (a switch such as breakdown) must be a YAML boolean: true gives the switch, false leaves it out.
std::vector<std::string> config_file_args(const std::string& path, const po::options_description& options) {
  const std::string where = printable(path);
  const YAML::Node root = parse_yaml_file(path);
  if (!root.IsMap()) throw InputError(where + ": expected a map of option names to values");
  std::vector<std::string> args;
  for (const auto& kv : root) {
    if (!kv.first.IsScalar())
      throw InputError(where + ":" + std::to_string(kv.first.Mark().line + 1) + ": option names must be plain text");
    const std::string name = kv.first.Scalar(), key = "--" + name;
    const po::option_description* option = options.find_nothrow(name, false);
    if (option && option->semantic()->max_tokens() == 0) {
      bool on = false;
      if (!kv.second.IsScalar() || !YAML::convert<bool>::decode(kv.second, on))
        throw InputError(where + ":" + std::to_string(kv.second.Mark().line + 1) + ": option '" + printable(name) +
                         "' is a switch: give true or false");
      if (on) args.push_back(key);
    } else if (kv.second.IsSequence()) {
      // Only options that take several values take a list (one value listed once would pass for a scalar).
      if (option && option->semantic()->max_tokens() <= 1)
        throw InputError(where + ":" + std::to_string(kv.second.Mark().line + 1) + ": option '" + printable(name) +
                         "' takes one value, not a list");
      for (const auto& v : kv.second) args.insert(args.end(), {key, scalar_text(v, where, name)});
    } else {
      args.insert(args.end(), {key, scalar_text(kv.second, where, name)});
    }
  }
  return args;
}

}  // namespace

namespace {
constexpr const char* kPositional = "positional-argument";  // never a real option name

// Boost.Program_options writes its message by replacing each %placeholder% of the template with a value until none
// is left, so a value that holds its own placeholder (an argument "--count %value%") never ends. The values (the
// user's words) are made printable with their '%' shown as \x25, in place, before what() is asked for; the map is
// protected, so it is reached through a member pointer formed in a derived class.
struct Substitutions : po::error_with_option_name {
  static auto member() { return &Substitutions::m_substitutions; }
};

std::string option_error_text(po::error& e) {
  auto* named = dynamic_cast<po::error_with_option_name*>(&e);
  if (!named) return printable(e.what());
  for (auto& [key, value] : named->*Substitutions::member()) {
    std::string safe;
    for (char c : printable(value)) safe += c == '%' ? std::string("\\x25") : std::string(1, c);
    value = safe;
  }
  return printable_message(e.what());
}
}  // namespace

void refuse_given(const po::variables_map& vm, std::initializer_list<const char*> names, const std::string& mode) {
  for (const char* name : names)
    if (vm.count(name) && !vm[name].defaulted()) throw InputError("--" + std::string(name) + " is for " + mode);
}

void add_common_options(po::options_description& d, Common& c) {
  d.add_options()("help,h", "show this help")(
      "format", po::value<std::string>(&c.format)->default_value("table"), "output: table, md, json, csv or html (one self-contained page)")(
      "output-file,o", po::value<std::string>(&c.output), "write to FILE instead of stdout (atomically)")(
      "config-file", po::value<std::string>(&c.config_file), "YAML file of options (keys are option names)");
}

bool parse(const std::string& command, const std::string& usage, const std::vector<std::string>& args,
           po::options_description& options, po::variables_map& vm, std::ostream& out) {
  try {
    // No positional arguments: a stray word (a value after a switch, a misplaced file name) is an error that
    // names it. They are collected under a hidden option so the message can quote the first one.
    po::options_description hidden, all;
    hidden.add_options()(kPositional, po::value<std::vector<std::string>>());
    all.add(options).add(hidden);
    po::positional_options_description positional;
    positional.add(kPositional, -1);
    po::store(po::command_line_parser(args).options(all).positional(positional).run(), vm);
    if (vm.count(kPositional))
      throw InputError("moeplan " + command + ": unexpected argument '" + printable(vm[kPositional].as<std::vector<std::string>>().front()) +
                       "' (options start with --; a switch takes no value; see moeplan " + command + " --help)");
    // Command-line values win over the config file: store the file after the command line.
    if (vm.count("config-file")) {
      const std::string file = vm["config-file"].as<std::string>();
      const auto file_args = config_file_args(file, options);
      try {
        po::store(po::command_line_parser(file_args).options(options).positional({}).run(), vm);
      } catch (po::error& e) {
        throw InputError("moeplan " + command + ": " + printable(file) + ": " + option_error_text(e) +
                         " (keys are the option names of moeplan " + command + " --help)");
      }
    }
    if (vm.count("help")) {
      out << "usage: moeplan " << command << " " << usage << "\n\n" << options << "\n";
      return false;
    }
    po::notify(vm);
  } catch (po::error& e) {
    throw InputError("moeplan " + command + ": " + option_error_text(e) + " (see moeplan " + command + " --help)");
  }
  check_option_bounds(vm);
  // Every output file is checked before any work starts, so a bad -o fails before other files are written.
  for (const char* name : {"output-file", "trace-routing", "write-error-bars"})
    if (vm.count(name) && !vm[name].defaulted()) check_output_path(vm[name].as<std::string>());
  return true;
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) {
    item.erase(0, item.find_first_not_of(' '));
    item.erase(item.find_last_not_of(' ') + 1);
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

void emit(const reports::Report& report, const Common& common, std::ostream& out) {
  const std::string text = reports::render(report, reports::parse_format(common.format));
  if (common.output.empty()) out << text;
  else write_file_atomic(common.output, text);
}

int run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  try {
    if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
      print_usage(out);  // moeplan alone: the usage, and on stderr the one line that says what was missing
      if (args.empty()) throw InputError("no command given: name one of those listed above (moeplan COMMAND --help)");
      return kExitOk;
    }
    if (args[0] == "--version") {
      out << "moeplan " << MOEPLAN_VERSION << " (CUDA kernels " << (MOEPLAN_HAVE_CUDA ? "ON" : "OFF") << ")\n";
      return kExitOk;
    }
    for (const auto& c : subcommands())
      if (args[0] == c.name) return c.fn(std::vector<std::string>(args.begin() + 1, args.end()), out);
    std::vector<std::string> names;
    for (const auto& c : subcommands()) names.push_back(c.name);
    throw InputError(unknown_name_message("command", args[0], names, "`moeplan --help` lists them"));
  } catch (const InputError& e) {
    err << "moeplan: error: " << printable_message(e.what()) << "\n";
    return kExitBadInput;
  } catch (const std::exception& e) {
    err << "moeplan: internal error: " << printable_message(e.what()) << "\n";
    return kExitInternal;
  }
}

}  // namespace moeplan::app
