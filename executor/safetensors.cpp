// Safetensors reading (validated, memory-mapped) and writing (streaming, atomic). Every check here exists because
// a broken or hostile file must end in one InputError line, never in a read outside the mapped bytes.
#include "executor/safetensors.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <system_error>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "common/files.hpp"

namespace moeplan::executor {

using nlohmann::json;

std::string printable_name(std::string_view name) {
  constexpr std::size_t kMaxChars = 200;
  std::string out;
  std::size_t i = 0;
  for (; i < name.size() && out.size() < kMaxChars; ++i) {
    const auto c = static_cast<unsigned char>(name[i]);
    if (c >= 0x20 && c < 0x7F && c != '\\') {
      out += static_cast<char>(c);
    } else {
      static const char* kHex = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xF];
    }
  }
  if (i < name.size()) out += "...";
  return out;
}

std::string quoted_name(std::string_view name) {
  std::string out = "'";  // appended step by step: GCC 12 warns falsely (-Wrestrict) on "'" + string at -O3
  out += printable_name(name);
  out += '\'';
  return out;
}

std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string out = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(shape[i]);
  }
  return out + "]";
}

namespace {

// A JSON value for a message: compact, one line, at most ~80 characters.
std::string shown(const json& value) {
  std::string text = printable_name(value.dump());
  if (text.size() > 80) text = text.substr(0, 77) + "...";
  return text;
}

// Elements of a shape; nullopt when the product overflows 64 bits. Any zero dimension gives 0 before any product
// is formed, so [2^62, 2^62, 0] is 0 rather than an overflow.
std::optional<std::uint64_t> checked_elements(const std::vector<std::int64_t>& shape) {
  if (std::find(shape.begin(), shape.end(), 0) != shape.end()) return 0;
  std::uint64_t n = 1;
  for (const auto d : shape)
    if (__builtin_mul_overflow(n, static_cast<std::uint64_t>(d), &n)) return std::nullopt;
  return n;
}

// A non-negative JSON integer up to INT64_MAX, or nullopt. ("-0" parses as a signed 0, which is fine.)
std::optional<std::int64_t> non_negative(const json& v) {
  if (v.is_number_unsigned()) {
    const auto u = v.get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(INT64_MAX)) return std::nullopt;
    return static_cast<std::int64_t>(u);
  }
  if (v.is_number_integer() && v.get<std::int64_t>() >= 0) return v.get<std::int64_t>();
  return std::nullopt;
}

// Thrown from inside the JSON parser callback, turned into an InputError with the file name outside it.
struct HeaderShapeError {
  std::string message;
};

// One tensor's header entry -> TensorInfo, or InputError. `data_bytes`: size of the data section.
TensorInfo read_entry(const std::string& origin, const std::string& name, const json& entry, std::uint64_t data_bytes) {
  const std::string where = origin + ": tensor " + quoted_name(name);
  if (!entry.is_object())
    throw InputError(where + ": header entry must be an object with dtype, shape and data_offsets, got " + shown(entry));
  TensorInfo t;
  t.name = name;
  t.file = origin;

  const auto dtype_it = entry.find("dtype");
  if (dtype_it == entry.end() || !dtype_it->is_string())
    throw InputError(where + ": missing or non-string 'dtype' in the header; the file is corrupt");
  const auto dtype = parse_dtype(dtype_it->get<std::string>());
  if (!dtype)
    throw InputError(where + " has dtype " + printable_name(dtype_it->get<std::string>()) + ", which moeplan does not read (" +
                     supported_dtype_names() + "); convert the checkpoint, e.g. with torch .to(torch.bfloat16)");
  t.dtype = *dtype;

  const auto shape_it = entry.find("shape");
  if (shape_it == entry.end() || !shape_it->is_array())
    throw InputError(where + ": missing 'shape' list in the header; the file is corrupt");
  for (const auto& d : *shape_it) {
    const auto dim = non_negative(d);
    if (!dim) throw InputError(where + ": shape must be a list of non-negative integers, got " + shown(*shape_it));
    t.shape.push_back(*dim);
  }

  const auto offsets_it = entry.find("data_offsets");
  if (offsets_it == entry.end() || !offsets_it->is_array() || offsets_it->size() != 2 ||
      !non_negative((*offsets_it)[0]) || !non_negative((*offsets_it)[1]))
    throw InputError(where + ": data_offsets must be [begin, end] with non-negative integers, got " +
                     (offsets_it == entry.end() ? std::string("nothing") : shown(*offsets_it)));
  const auto begin = static_cast<std::uint64_t>(*non_negative((*offsets_it)[0]));
  const auto end = static_cast<std::uint64_t>(*non_negative((*offsets_it)[1]));
  const std::string offsets = "data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) + "]";
  if (end < begin) throw InputError(where + ": " + offsets + " end before they begin; the file is corrupt");
  if (end > data_bytes)
    throw InputError(where + ": " + offsets + " run past the data section (" + std::to_string(data_bytes) +
                     " bytes); the file is truncated or corrupt");

  const auto elements = checked_elements(t.shape);
  std::uint64_t needed = 0;
  if (!elements || __builtin_mul_overflow(*elements, static_cast<std::uint64_t>(dtype_bytes(t.dtype)), &needed))
    throw InputError(where + ": shape " + shape_text(t.shape) + " is too large to exist; the file is corrupt");
  if (needed != end - begin)
    throw InputError(where + ": shape " + shape_text(t.shape) + " of " + dtype_name(t.dtype) + " needs " +
                     std::to_string(needed) + " bytes but " + offsets + " hold " + std::to_string(end - begin) +
                     "; the file is corrupt");
  t.data_begin = begin;
  t.bytes = static_cast<std::size_t>(needed);
  return t;
}

void read_metadata(const std::string& origin, const json& value, std::map<std::string, std::string>& out) {
  if (!value.is_object())
    throw InputError(origin + ": __metadata__ must be an object of strings, got " + shown(value) + "; the file is corrupt");
  for (const auto& [key, v] : value.items()) {
    if (!v.is_string())
      throw InputError(origin + ": __metadata__ entry " + quoted_name(key) + " must be a string, got " + shown(v));
    out[key] = v.get<std::string>();
  }
}

}  // namespace

std::int64_t TensorInfo::elements() const { return static_cast<std::int64_t>(checked_elements(shape).value_or(0)); }
std::int64_t TensorView::elements() const { return static_cast<std::int64_t>(checked_elements(shape).value_or(0)); }

std::vector<float> TensorView::to_float() const {
  std::vector<float> out(static_cast<std::size_t>(elements()));
  decode_to_float(dtype, data, out.size(), out.data());
  return out;
}

SafetensorsHeader parse_safetensors(const std::byte* data, std::size_t size, const std::string& origin) {
  if (size < 8)
    throw InputError(origin + ": " + std::to_string(size) +
                     " bytes is too short for a safetensors file (it starts with an 8-byte header length); the file is truncated");
  std::uint64_t header_bytes = 0;
  std::memcpy(&header_bytes, data, 8);  // little-endian u64 (static_assert in weights_dtype.hpp)
  if (header_bytes > kMaxSafetensorsHeaderBytes)
    throw InputError(origin + ": header length " + std::to_string(header_bytes) +
                     " bytes is implausible (limit 100 MB); the file is corrupt or not safetensors");
  if (header_bytes > size - 8)
    throw InputError(origin + ": header length " + std::to_string(header_bytes) + " bytes runs past the end of the file (" +
                     std::to_string(size) + " bytes); the file is truncated");

  const char* text = reinterpret_cast<const char*>(data + 8);
  std::set<std::string> keys;
  // Refuse nesting deeper than the format has (object -> tensor object -> shape list) and duplicate tensor names,
  // which a plain parse would silently resolve to the last one.
  auto guard = [&keys](int depth, json::parse_event_t event, json& parsed) {
    if ((event == json::parse_event_t::object_start || event == json::parse_event_t::array_start) && depth >= 3)
      throw HeaderShapeError{"header nests deeper than a safetensors header can"};
    if (event == json::parse_event_t::key && depth == 1 && !keys.insert(parsed.get<std::string>()).second)
      throw HeaderShapeError{"header names tensor " + quoted_name(parsed.get<std::string>()) + " twice"};
    return true;
  };
  json header;
  try {
    header = json::parse(text, text + header_bytes, guard);
  } catch (const HeaderShapeError& e) {
    throw InputError(origin + ": " + e.message + "; the file is corrupt");
  } catch (const json::exception& e) {
    throw InputError(origin + ": header is not valid JSON (" + printable_name(e.what()) + "); the file is corrupt or not safetensors");
  }
  if (!header.is_object())
    throw InputError(origin + ": header must be a JSON object, got " + std::string(header.type_name()) +
                     "; the file is corrupt or not safetensors");

  SafetensorsHeader out;
  out.data_offset = static_cast<std::size_t>(8 + header_bytes);
  const std::uint64_t data_bytes = size - out.data_offset;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      read_metadata(origin, entry, out.metadata);
      continue;
    }
    if (name.empty()) throw InputError(origin + ": header holds a tensor with an empty name; the file is corrupt");
    out.tensors.push_back(read_entry(origin, name, entry, data_bytes));
  }

  // No two tensors may share a byte: sort by start and compare each with the furthest end seen so far.
  std::vector<const TensorInfo*> by_offset;
  for (const auto& t : out.tensors)
    if (t.bytes > 0) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const TensorInfo* a, const TensorInfo* b) { return a->data_begin < b->data_begin; });
  const TensorInfo* furthest = nullptr;
  for (const TensorInfo* t : by_offset) {
    if (furthest && t->data_begin < furthest->data_begin + furthest->bytes)
      throw InputError(origin + ": tensor " + quoted_name(t->name) + " overlaps tensor " + quoted_name(furthest->name) +
                       " in the data section (data_offsets cross); the file is corrupt");
    if (!furthest || t->data_begin + t->bytes > furthest->data_begin + furthest->bytes) furthest = t;
  }
  std::sort(out.tensors.begin(), out.tensors.end(), [](const TensorInfo& a, const TensorInfo& b) { return a.name < b.name; });
  return out;
}

// ---- MappedFile

MappedFile MappedFile::open(const std::filesystem::path& path) {
  // A FIFO or device in place of a weights file is refused before open() could wait on it; O_NONBLOCK covers a
  // file swapped for one between the stat and the open (the fstat below refuses it then).
  struct stat before {};
  if (::stat(path.c_str(), &before) == 0 && !S_ISREG(before.st_mode))
    throw InputError("cannot map " + path.string() + ": not a regular file");
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) throw InputError("cannot open " + path.string() + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw InputError("cannot map " + path.string() + ": not a regular file");
  }
  MappedFile m;
  m.size_bytes_ = static_cast<std::size_t>(st.st_size);
  if (m.size_bytes_ > 0) {
    void* p = ::mmap(nullptr, m.size_bytes_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      throw InputError("cannot map " + path.string() + ": " + std::strerror(err));
    }
    m.data_ = static_cast<const std::byte*>(p);
  }
  ::close(fd);  // the mapping keeps the file alive
  return m;
}

MappedFile::MappedFile(MappedFile&& other) noexcept : data_(other.data_), size_bytes_(other.size_bytes_) {
  other.data_ = nullptr;
  other.size_bytes_ = 0;
}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    if (data_) ::munmap(const_cast<std::byte*>(data_), size_bytes_);
    data_ = other.data_;
    size_bytes_ = other.size_bytes_;
    other.data_ = nullptr;
    other.size_bytes_ = 0;
  }
  return *this;
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<std::byte*>(data_), size_bytes_);
}

// ---- SafetensorsFile

SafetensorsFile SafetensorsFile::open(const std::filesystem::path& path) {
  SafetensorsFile f;
  f.path_ = path.string();
  f.map_ = MappedFile::open(path);
  f.header_ = parse_safetensors(f.map_.data(), f.map_.size_bytes(), f.path_);
  return f;
}

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  const auto& ts = header_.tensors;
  const auto it = std::lower_bound(ts.begin(), ts.end(), name, [](const TensorInfo& t, std::string_view n) { return t.name < n; });
  return it != ts.end() && it->name == name ? &*it : nullptr;
}

TensorView SafetensorsFile::view(const TensorInfo& info) const {
  return {info.name, info.dtype, info.shape, map_.data() + header_.data_offset + info.data_begin, info.bytes, path_};
}

// ---- Checkpoint

namespace {

// A weight_map file name must stay inside the checkpoint directory.
bool safe_relative(const std::string& file) {
  if (file.empty() || file.front() == '/' || file.find('\\') != std::string::npos) return false;
  for (const auto& part : std::filesystem::path(file))
    if (part == "..") return false;
  return true;
}

}  // namespace

Checkpoint Checkpoint::open(const std::filesystem::path& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path target = path;
  if (fs::is_directory(path, ec)) {
    if (fs::exists(path / "model.safetensors.index.json", ec)) {
      target = path / "model.safetensors.index.json";
    } else if (fs::exists(path / "model.safetensors", ec)) {
      target = path / "model.safetensors";
    } else {
      std::vector<fs::path> found;
      for (const auto& e : fs::directory_iterator(path, ec))
        if (e.path().extension() == ".safetensors") found.push_back(e.path());
      if (found.size() != 1)
        throw InputError(path.string() + ": " +
                         (found.empty() ? std::string("no .safetensors file")
                                        : std::to_string(found.size()) + " .safetensors files") +
                         " and no model.safetensors.index.json; give a checkpoint directory, a .safetensors file or an index");
      target = found.front();
    }
  } else if (!fs::exists(path, ec)) {
    throw InputError(path.string() + ": no such checkpoint file or directory");
  }

  Checkpoint c;
  c.origin_ = target.string();
  const std::string target_name = target.filename().string();
  if (target_name.size() > 11 && target_name.ends_with(".index.json")) {
    c.sharded_ = true;
    const json index = parse_json_file(target);
    if (!index.is_object() || !index.contains("weight_map") || !index.at("weight_map").is_object())
      throw InputError(c.origin_ + ": expected an object with a \"weight_map\" object {tensor: file}");
    // Open every named file once, in name order.
    std::map<std::string, std::size_t> file_index;
    for (const auto& [tensor, file] : index.at("weight_map").items()) {
      if (!file.is_string() || !safe_relative(file.get<std::string>()))
        throw InputError(c.origin_ + ": weight_map maps tensor " + quoted_name(tensor) + " to " + shown(file) +
                         "; expected a file name inside the checkpoint directory");
      file_index.emplace(file.get<std::string>(), 0);
    }
    c.files_.reserve(file_index.size());
    for (auto& [file, i] : file_index) {
      const fs::path shard = target.parent_path() / file;
      if (!fs::is_regular_file(shard, ec))
        throw InputError(c.origin_ + ": weight_map names " + printable_name(file) + ", which does not exist in " +
                         target.parent_path().string() + "; the download is incomplete");
      i = c.files_.size();
      c.files_.push_back(SafetensorsFile::open(shard));
    }
    for (const auto& [tensor, file] : index.at("weight_map").items()) {
      const std::size_t i = file_index.at(file.get<std::string>());
      const TensorInfo* info = c.files_[i].find(tensor);
      if (!info)
        throw InputError(c.origin_ + ": weight_map maps tensor " + quoted_name(tensor) + " to " + c.files_[i].path() +
                         ", which does not hold it; the index and the shards disagree");
      c.entries_.emplace(tensor, Entry{info, i});
    }
    for (std::size_t i = 0; i < c.files_.size(); ++i)
      for (const auto& t : c.files_[i].tensors()) {
        const auto it = c.entries_.find(t.name);
        if (it == c.entries_.end() || it->second.file != i)
          throw InputError(c.files_[i].path() + ": holds tensor " + quoted_name(t.name) + " that " + c.origin_ +
                           (it == c.entries_.end() ? " does not map" : " maps to another file") +
                           "; the index is stale, regenerate it");
      }
  } else {
    c.files_.push_back(SafetensorsFile::open(target));
    for (const auto& t : c.files_.front().tensors()) c.entries_.emplace(t.name, Entry{&t, 0});
  }
  return c;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(entries_.size());
  for (const auto& [name, e] : entries_) out.push_back(name);
  return out;
}

const TensorInfo* Checkpoint::find(std::string_view name) const {
  const auto it = entries_.find(name);
  return it == entries_.end() ? nullptr : it->second.info;
}

TensorView Checkpoint::view(std::string_view name) const {
  const auto it = entries_.find(name);
  if (it == entries_.end()) throw InputError(origin_ + ": no tensor " + quoted_name(name) + " in this checkpoint");
  return files_[it->second.file].view(*it->second.info);
}

std::uint64_t Checkpoint::total_tensor_bytes() const {
  std::uint64_t total = 0;
  for (const auto& [name, e] : entries_) total += e.info->bytes;
  return total;
}

// ---- Writing

std::size_t TensorSpec::bytes() const {
  const auto n = checked_elements(shape);
  std::uint64_t b = 0;
  if (!n || __builtin_mul_overflow(*n, static_cast<std::uint64_t>(dtype_bytes(dtype)), &b))
    throw InputError("tensor " + quoted_name(name) + ": shape " + shape_text(shape) + " is too large to write");
  return static_cast<std::size_t>(b);
}

void write_safetensors(const std::filesystem::path& path, const std::vector<TensorSpec>& tensors,
                       const std::map<std::string, std::string>& metadata, const TensorFill& fill) {
  namespace fs = std::filesystem;
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::uint64_t offset = 0;
  for (const auto& t : tensors) {
    if (t.name.empty() || t.name == "__metadata__" || header.contains(t.name))
      throw InputError("cannot write " + path.string() + ": tensor name " + quoted_name(t.name) + " is empty, reserved or repeated");
    for (const auto d : t.shape)
      if (d < 0) throw InputError("cannot write " + path.string() + ": tensor " + quoted_name(t.name) + " has a negative dimension");
    const std::uint64_t bytes = t.bytes();
    header[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // the data section starts 8-byte aligned

  const fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw InputError("cannot write " + path.string() + ": directory " + dir.string() + " does not exist");
  std::string tmp_name = ".";
  tmp_name += path.filename().string();
  tmp_name += ".tmp.";
  tmp_name += std::to_string(::getpid());
  const fs::path tmp = dir / tmp_name;
  try {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw InputError("cannot write " + path.string() + ": directory is not writable");
    const std::uint64_t n = text.size();
    out.write(reinterpret_cast<const char*>(&n), 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    // Fill in chunks of whole innermost rows of at most ~64 MB (one row if a row is larger), so a huge tensor
    // never needs one huge buffer.
    constexpr std::size_t kChunkBytes = std::size_t{64} << 20;
    std::vector<std::byte> buffer;
    for (const auto& t : tensors) {
      const std::size_t bytes = t.bytes();
      const std::size_t row_bytes = std::max<std::size_t>(
          1, (t.shape.empty() ? 1 : static_cast<std::size_t>(t.shape.back())) * dtype_bytes(t.dtype));
      const std::size_t chunk = std::max(row_bytes, kChunkBytes / row_bytes * row_bytes);
      for (std::size_t done = 0; done < bytes; done += chunk) {
        const std::size_t len = std::min(chunk, bytes - done);
        buffer.assign(len, std::byte{0});
        fill(t, done / dtype_bytes(t.dtype), std::span<std::byte>(buffer.data(), len));
        out.write(reinterpret_cast<const char*>(buffer.data()), static_cast<std::streamsize>(len));
      }
    }
    out.close();
    if (!out) throw InputError("cannot write " + path.string() + ": write failed (disk full?)");
    fs::rename(tmp, path, ec);
    if (ec) throw InputError("cannot write " + path.string() + ": " + ec.message());
  } catch (...) {
    fs::remove(tmp, ec);
    throw;
  }
}

}  // namespace moeplan::executor
