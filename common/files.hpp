// File helpers: read a whole file, parse JSON/YAML with errors that name the file and line, and write an
// output file atomically (temporary file + rename) so a failed command never leaves a half-written file.
#pragma once
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

namespace moeplan {

// Throws InputError("cannot read FILE: reason") when the file is missing or unreadable.
std::string read_text_file(const std::filesystem::path& path);

// Parse JSON; a syntax error becomes InputError("FILE:LINE:COL: malformed JSON: ...").
nlohmann::json parse_json_file(const std::filesystem::path& path);
nlohmann::json parse_json_text(const std::string& text, const std::string& origin);

// Parse YAML; a syntax error becomes InputError("FILE:LINE:COL: malformed YAML: ...").
YAML::Node parse_yaml_file(const std::filesystem::path& path);
YAML::Node parse_yaml_text(const std::string& text, const std::string& origin);

// Write `content` to `path` through a temporary file in the same directory, then rename.
void write_file_atomic(const std::filesystem::path& path, const std::string& content);

// The data/ directory: $MOEPLAN_DATA_DIR, else ../share/moeplan/data or ../data beside the executable, else the
// source tree's data/ (compiled in). Throws InputError when none holds gpus.yaml.
std::filesystem::path data_dir();

}  // namespace moeplan
