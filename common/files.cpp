#include "common/files.hpp"

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <system_error>

#include <unistd.h>

#include "common/error.hpp"

namespace moeplan {

std::string read_text_file(const std::filesystem::path& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw InputError("cannot read " + path.string() + ": it is a directory, expected a file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError("cannot read " + path.string() + ": no such file or not readable");
  // A regular file is read in one piece at its size; anything else (a pipe) through the stream buffer.
  const auto size = std::filesystem::is_regular_file(path, ec) ? std::filesystem::file_size(path, ec) : 0;
  if (!ec && size > 0) {
    std::string text(static_cast<std::size_t>(size), '\0');
    in.read(text.data(), static_cast<std::streamsize>(size));
    text.resize(static_cast<std::size_t>(in.gcount()));
    if (in.gcount() == static_cast<std::streamsize>(size) && in.peek() == std::char_traits<char>::eof()) return text;
    std::ostringstream rest;  // the file grew while read: take the rest too
    rest << in.rdbuf();
    return text + rest.str();
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

namespace {
// 1-based line and column of byte offset `pos` in `text`.
std::pair<std::size_t, std::size_t> line_col(const std::string& text, std::size_t pos) {
  std::size_t line = 1, col = 1;
  for (std::size_t i = 0; i < pos && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return {line, col};
}
}  // namespace

nlohmann::json parse_json_text(const std::string& text, const std::string& origin) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    // e.byte is 1-based position of the offending byte.
    const auto [line, col] = line_col(text, e.byte > 0 ? e.byte - 1 : 0);
    std::string what = e.what();
    const auto cut = what.find("parse error");
    if (cut != std::string::npos) what = what.substr(cut);
    throw InputError(origin + ":" + std::to_string(line) + ":" + std::to_string(col) + ": malformed JSON: " + what);
  }
}

nlohmann::json parse_json_file(const std::filesystem::path& path) {
  return parse_json_text(read_text_file(path), path.string());
}

YAML::Node parse_yaml_text(const std::string& text, const std::string& origin) {
  try {
    return YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw InputError(origin + ":" + std::to_string(e.mark.line + 1) + ":" + std::to_string(e.mark.column + 1) +
                     ": malformed YAML: " + e.msg);
  }
}

YAML::Node parse_yaml_file(const std::filesystem::path& path) {
  return parse_yaml_text(read_text_file(path), path.string());
}

void write_file_atomic(const std::filesystem::path& path, const std::string& content) {
  const auto dir = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec))
    throw InputError("cannot write " + path.string() + ": directory " + dir.string() + " does not exist");
  std::string tmp_name = ".";  // built step by step: GCC 12 warns falsely (-Wrestrict) on "." + string at -O3
  tmp_name += path.filename().string();
  tmp_name += ".tmp.";
  tmp_name += std::to_string(::getpid());
  const auto tmp = dir / tmp_name;
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw InputError("cannot write " + path.string() + ": directory is not writable");
    out << content;
    out.close();
    if (!out) {
      std::filesystem::remove(tmp, ec);
      throw InputError("cannot write " + path.string() + ": write failed (disk full?)");
    }
  }
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    throw InputError("cannot write " + path.string() + ": " + ec.message());
  }
}

std::filesystem::path data_dir() {
  std::vector<std::filesystem::path> candidates;
  if (const char* env = std::getenv("MOEPLAN_DATA_DIR"); env && *env) candidates.emplace_back(env);
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    candidates.push_back(exe.parent_path() / ".." / "share" / "moeplan" / "data");
    candidates.push_back(exe.parent_path() / ".." / "data");
  }
  candidates.emplace_back(MOEPLAN_SOURCE_DATA_DIR);
  for (const auto& c : candidates)
    if (std::filesystem::exists(c / "gpus.yaml", ec)) return std::filesystem::weakly_canonical(c, ec);
  throw InputError("cannot find the data directory (looked for gpus.yaml in $MOEPLAN_DATA_DIR, beside the binary and in " +
                   std::string(MOEPLAN_SOURCE_DATA_DIR) + "); set MOEPLAN_DATA_DIR to the project's data/ folder");
}

}  // namespace moeplan
