#include "common/files.hpp"

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <sstream>
#include <system_error>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml-cpp/eventhandler.h>

#include "common/error.hpp"
#include "common/text.hpp"

namespace moeplan {

namespace {

// Closes a file descriptor on every path out of a function.
struct FdCloser {
  int fd;
  ~FdCloser() {
    if (fd >= 0) ::close(fd);
  }
};

std::string errno_text(int err) { return std::strerror(err); }

// Writes all of `content` to `fd`; returns 0 or the errno of the failed write.
int write_all(int fd, const std::string& content) {
  for (std::size_t done = 0; done < content.size();) {
    const ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    done += static_cast<std::size_t>(n);
  }
  return 0;
}

}  // namespace

std::string read_text_file(const std::filesystem::path& path, std::uint64_t max_bytes) {
  const std::string name = printable(path.string());
  // O_NONBLOCK: opening a FIFO that has no writer returns at once instead of waiting for one.
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) throw InputError("cannot read " + name + ": " + errno_text(errno));
  const FdCloser closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw InputError("cannot read " + name + ": " + errno_text(errno));
  if (S_ISDIR(st.st_mode)) throw InputError("cannot read " + name + ": it is a directory, expected a file");
  if (!S_ISREG(st.st_mode) && !S_ISFIFO(st.st_mode))
    throw InputError("cannot read " + name + ": not a regular file (a device or socket)");
  const std::string too_long = "cannot read " + name + ": longer than the " + std::to_string(max_bytes >> 20) +
                               " MiB an input file may have";
  if (S_ISREG(st.st_mode) && static_cast<std::uint64_t>(st.st_size) > max_bytes) throw InputError(too_long);
  // Blocking reads from here: a pipe with a writer delivers its data, one without reads as end of file.
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) (void)::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  std::string text;
  if (S_ISREG(st.st_mode)) text.reserve(static_cast<std::size_t>(st.st_size));
  char buffer[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw InputError("cannot read " + name + ": " + errno_text(errno));
    if (n == 0) break;
    if (text.size() + static_cast<std::uint64_t>(n) > max_bytes) throw InputError(too_long);
    text.append(buffer, static_cast<std::size_t>(n));
  }
  return text;
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
  const std::string where = printable(origin);
  // The parser itself keeps its own stack; the callback stops nesting before the tree it builds gets deep enough
  // for a recursive copy or destructor to overflow the call stack.
  const auto limit_depth = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json&) {
    if ((event == nlohmann::json::parse_event_t::object_start || event == nlohmann::json::parse_event_t::array_start) &&
        depth >= kMaxNestingDepth)
      throw InputError(where + ": malformed JSON: nested deeper than " + std::to_string(kMaxNestingDepth) + " levels");
    return true;
  };
  try {
    return nlohmann::json::parse(text, limit_depth);
  } catch (const nlohmann::json::parse_error& e) {
    // e.byte is 1-based position of the offending byte.
    const auto [line, col] = line_col(text, e.byte > 0 ? e.byte - 1 : 0);
    std::string what = e.what();
    const auto cut = what.find("parse error");
    if (cut != std::string::npos) what = what.substr(cut);
    throw InputError(where + ":" + std::to_string(line) + ":" + std::to_string(col) + ": malformed JSON: " + what);
  } catch (const nlohmann::json::exception& e) {
    // out_of_range.406: a number beyond double (a 400-digit literal)
    throw InputError(where + ": malformed JSON: " + std::string(e.what()));
  }
}

nlohmann::json parse_json_file(const std::filesystem::path& path) {
  return parse_json_text(read_text_file(path), path.string());
}

namespace {
// Receives a document's parse events and keeps nothing: enough to count documents without building them.
struct YamlEventSink final : YAML::EventHandler {
  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

// The number of YAML documents in `text`, counting stops at `cap`. Bounded on purpose: yaml-cpp 0.7 reads a stray
// ',' after a closed top-level flow collection ("{a: 1},") as an endless run of empty documents, so YAML::LoadAll
// on such a file never returns and fills memory (2 GB in seconds; fuzz/fuzz_yaml found it).
std::size_t count_yaml_documents(const std::string& text, std::size_t cap) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  YamlEventSink sink;
  std::size_t documents = 0;
  while (documents < cap && parser.HandleNextDocument(sink)) ++documents;
  return documents;
}
}  // namespace

YAML::Node parse_yaml_text(const std::string& text, const std::string& origin) {
  const std::string where = printable(origin);
  YAML::Node root;
  try {
    // yaml-cpp's parser stops nesting itself (YAML::DeepRecursion); the first document is parsed twice (events,
    // then nodes), which costs little beside what the readers do with it.
    if (count_yaml_documents(text, 2) > 1)
      throw InputError(where + ": holds more than one YAML document (separated by ---); expected one");
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw InputError(where + ":" + std::to_string(e.mark.line + 1) + ":" + std::to_string(e.mark.column + 1) +
                     ": malformed YAML: " + e.msg);
  }
  // Depth and size as the readers will see them: aliases share nodes, so a small file can expand to billions
  // of nodes ("billion laughs"); the walk stops at kMaxNestingDepth levels or a million nodes.
  std::size_t visited = 0;
  const std::function<void(const YAML::Node&, int)> walk = [&](const YAML::Node& n, int depth) {
    if (depth > kMaxNestingDepth)
      throw InputError(where + ":" + std::to_string(n.Mark().line + 1) + ": malformed YAML: nested deeper than " +
                       std::to_string(kMaxNestingDepth) + " levels");
    if (++visited > 1000000) throw InputError(where + ": malformed YAML: more than a million nodes (aliases expanding?)");
    if (n.IsSequence())
      for (const auto& child : n) walk(child, depth + 1);
    else if (n.IsMap())
      for (const auto& kv : n) {
        walk(kv.first, depth + 1);
        walk(kv.second, depth + 1);
      }
  };
  walk(root, 0);
  return root;
}

YAML::Node parse_yaml_file(const std::filesystem::path& path) {
  return parse_yaml_text(read_text_file(path), path.string());
}

namespace {
bool is_standard_stream(const std::filesystem::path& path) { return path == "/dev/stdout" || path == "/dev/stderr"; }
}  // namespace

void check_output_path(const std::filesystem::path& path) {
  const std::string name = printable(path.string());
  if (path.empty()) throw InputError("cannot write to an empty file name");
  if (is_standard_stream(path)) return;
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) throw InputError("cannot write " + name + ": it is a directory; name a file in it");
    if (S_ISLNK(st.st_mode))
      throw InputError("cannot write " + name + ": it is a symbolic link; name the file itself (it would be replaced)");
    if (!S_ISREG(st.st_mode))
      throw InputError("cannot write " + name + ": not a regular file (a FIFO, device or socket would be replaced)");
  } else if (errno != ENOENT) {
    throw InputError("cannot write " + name + ": " + errno_text(errno));
  }
  const auto dir = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec))
    throw InputError("cannot write " + name + ": directory " + printable(dir.string()) + " does not exist");
  if (::access(dir.c_str(), W_OK) != 0) throw InputError("cannot write " + name + ": " + errno_text(errno));
}

void write_file_atomic(const std::filesystem::path& path, const std::string& content) {
  check_output_path(path);
  const std::string name = printable(path.string());
  if (is_standard_stream(path)) {  // the terminal or a pipe: nothing to rename
    const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) throw InputError("cannot write " + name + ": " + errno_text(errno));
    const FdCloser closer{fd};
    if (const int err = write_all(fd, content)) throw InputError("cannot write " + name + ": " + errno_text(err));
    return;
  }
  const auto dir = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  std::string tmp_name = ".";  // built step by step: GCC 12 warns falsely (-Wrestrict) on "." + string at -O3
  tmp_name += path.filename().string();
  tmp_name += ".tmp.";
  tmp_name += std::to_string(::getpid());
  tmp_name += ".";
  static std::atomic<unsigned> counter{0};
  tmp_name += std::to_string(counter.fetch_add(1));
  const std::string tmp = (dir / tmp_name).string();
  // O_EXCL | O_NOFOLLOW: a new file of our own, never an existing node or a link placed there; mode 0666 less umask.
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
  if (fd < 0) throw InputError("cannot write " + name + ": " + errno_text(errno));
  int err = write_all(fd, content);
  if (::close(fd) != 0 && err == 0) err = errno;  // a full disk may report itself only here
  if (err == 0 && ::rename(tmp.c_str(), path.c_str()) != 0) err = errno;
  if (err != 0) {
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
    throw InputError("cannot write " + name + ": " + errno_text(err));
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

namespace moeplan {

std::filesystem::path user_data_dir() {
  if (const char* xdg = std::getenv("XDG_DATA_HOME"); xdg && *xdg && std::filesystem::path(xdg).is_absolute())
    return std::filesystem::path(xdg) / "moeplan";
  if (const char* home = std::getenv("HOME"); home && *home) return std::filesystem::path(home) / ".local" / "share" / "moeplan";
  throw InputError("cannot find a user data directory: set XDG_DATA_HOME or HOME");
}

}  // namespace moeplan
