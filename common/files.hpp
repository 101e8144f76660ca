// File helpers: read a whole file (bounded), parse JSON/YAML with errors that name the file and line, turn the
// JSON/YAML libraries' type errors into InputError, and write an output file atomically (temporary file + rename)
// so a failed command never leaves a half-written file.
#pragma once
#include <cstdint>
#include <exception>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include "common/error.hpp"

namespace moeplan {

// The largest text file (config, YAML, profile, measurement file) read: 64 MiB. The largest real input, a
// profile with every curve, is under 1 MiB; /dev/zero or a runaway file stops here instead of filling memory.
inline constexpr std::uint64_t kMaxTextFileBytes = std::uint64_t{64} << 20;
// Nesting depth of JSON and YAML inputs: HF configs nest 3 deep, data files 4; 64 leaves room and keeps the
// recursive copy and destruction of a parsed tree far from the stack limit.
inline constexpr int kMaxNestingDepth = 64;

// Throws InputError("cannot read FILE: reason") when the file is missing, unreadable, not a regular file or a
// pipe (a device such as /dev/zero), or longer than `max_bytes`. Opening never blocks (a FIFO with no writer
// reads as empty).
std::string read_text_file(const std::filesystem::path& path, std::uint64_t max_bytes = kMaxTextFileBytes);

// Parse JSON; a syntax error, a number out of range or nesting deeper than kMaxNestingDepth becomes
// InputError("FILE:LINE:COL: malformed JSON: ...").
nlohmann::json parse_json_file(const std::filesystem::path& path);
nlohmann::json parse_json_text(const std::string& text, const std::string& origin);

// Parse YAML (one document, nesting up to kMaxNestingDepth); a syntax error becomes
// InputError("FILE:LINE:COL: malformed YAML: ...").
YAML::Node parse_yaml_file(const std::filesystem::path& path);
YAML::Node parse_yaml_text(const std::string& text, const std::string& origin);

// A required key of a YAML map as T; missing or mistyped keys become InputError("WHERE:LINE: ...").
template <typename T>
T yaml_get(const YAML::Node& n, const char* key, const std::string& where) {
  if (!n[key]) throw InputError(where + ": missing key '" + key + "'");
  try {
    return n[key].as<T>();
  } catch (const YAML::Exception&) {
    throw InputError(where + ":" + std::to_string(n[key].Mark().line + 1) + ": key '" + key + "' has the wrong type");
  }
}

// Runs `read` (code that takes values out of a parsed JSON or YAML document) and turns the libraries' own
// exceptions (a field of the wrong type, a YAML conversion) into InputError("ORIGIN: ..."): the one place a
// mistyped input file becomes exit 2. JSON messages say the expected and found type ("type must be number, but is
// string"; readers that name the field check it first, as model/config.cpp's Fields do), YAML ones the line and
// column. (nlohmann's JSON_DIAGNOSTICS would add the field's path but trips GCC 12's -Warray-bounds at -O3.)
template <typename Fn>
auto read_document(const std::string& origin, Fn&& read) -> decltype(read()) {
  try {
    return read();
  } catch (const nlohmann::json::exception& e) {
    std::string what = e.what();
    if (what.rfind("[json.exception.", 0) == 0 && what.find("] ") != std::string::npos) what = what.substr(what.find("] ") + 2);
    throw InputError(origin + ": wrong JSON value: " + what);
  } catch (const YAML::Exception& e) {
    throw InputError(origin + ":" + std::to_string(e.mark.line + 1) + ":" + std::to_string(e.mark.column + 1) +
                     ": wrong YAML value: " + e.msg);
  }
}

// Write `content` to `path` through a temporary file in the same directory, then rename. /dev/stdout and
// /dev/stderr are written directly; any other existing node that is not a regular file (a directory, symlink,
// FIFO, device) is refused rather than replaced.
void write_file_atomic(const std::filesystem::path& path, const std::string& content);
// The checks write_file_atomic makes before writing (the target kind, its directory): commands call it for every
// output they were asked to write before doing the work, so a bad -o fails before anything else is written.
void check_output_path(const std::filesystem::path& path);

// The data/ directory: $MOEPLAN_DATA_DIR, else ../share/moeplan/data or ../data beside the executable, else the
// source tree's data/ (compiled in). Throws InputError when none holds gpus.yaml.
std::filesystem::path data_dir();

// Where moeplan writes user files (measured profiles): $XDG_DATA_HOME/moeplan, else ~/.local/share/moeplan.
// data/ holds only shipped files and is never written at run time. Throws InputError when neither variable is set.
std::filesystem::path user_data_dir();

}  // namespace moeplan
