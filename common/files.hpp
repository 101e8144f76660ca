// File helpers: read a whole file, parse JSON/YAML with errors that name the file and line, and write an
// output file atomically (temporary file + rename) so a failed command never leaves a half-written file.
#pragma once
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include "common/error.hpp"

namespace moeplan {

// Throws InputError("cannot read FILE: reason") when the file is missing or unreadable.
std::string read_text_file(const std::filesystem::path& path);

// Parse JSON; a syntax error becomes InputError("FILE:LINE:COL: malformed JSON: ...").
nlohmann::json parse_json_file(const std::filesystem::path& path);
nlohmann::json parse_json_text(const std::string& text, const std::string& origin);

// Parse YAML; a syntax error becomes InputError("FILE:LINE:COL: malformed YAML: ...").
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

// Write `content` to `path` through a temporary file in the same directory, then rename.
void write_file_atomic(const std::filesystem::path& path, const std::string& content);

// The data/ directory: $MOEPLAN_DATA_DIR, else ../share/moeplan/data or ../data beside the executable, else the
// source tree's data/ (compiled in). Throws InputError when none holds gpus.yaml.
std::filesystem::path data_dir();

}  // namespace moeplan
