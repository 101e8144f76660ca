// executor/safetensors: read Hugging Face safetensors checkpoints, one file or sharded (model.safetensors.index.json),
// memory-mapped read-only, with every header field validated before any tensor byte is touched; and write them
// (streaming, atomically) for the seeded random checkpoints.
//
// File format (https://github.com/huggingface/safetensors, README "Format"):
//   [8 bytes: N, u64 little-endian] [N bytes: JSON header] [data section]
//   header = {"__metadata__": {str: str}?, "<tensor>": {"dtype": "BF16", "shape": [..], "data_offsets": [b, e]}, ...}
//   offsets are relative to the start of the data section; e - b = prod(shape) * dtype size.
// Differences from the Rust reference reader: gaps between tensors are allowed (it refuses them; they are harmless
// here), and only the five dtypes of weights_dtype.hpp are accepted.
#pragma once
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "executor/weights_dtype.hpp"

namespace moeplan::executor {

// A whole file mapped read-only (RAII: unmapped on destruction; move-only). An empty file maps to no bytes.
// If another process truncates the file while it is mapped, reading the lost pages raises SIGBUS: checkpoints
// must not be rewritten while moeplan runs (the writer below replaces files by rename, which is safe).
class MappedFile {
 public:
  static MappedFile open(const std::filesystem::path& path);  // throws InputError naming the file
  MappedFile() = default;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const std::byte* data() const { return data_; }
  std::size_t size_bytes() const { return size_bytes_; }

 private:
  const std::byte* data_ = nullptr;
  std::size_t size_bytes_ = 0;
};

// One tensor's header entry, validated. `data_begin` is relative to the data section of its file.
struct TensorInfo {
  std::string name;
  Dtype dtype = Dtype::bf16;
  std::vector<std::int64_t> shape;  // row-major, outermost first (PyTorch order)
  std::uint64_t data_begin = 0;     // bytes from the start of the data section
  std::size_t bytes = 0;            // = elements() * dtype_bytes(dtype)
  std::string file;                 // the file it lives in (for messages)
  std::int64_t elements() const;
};

// A tensor's bytes inside a mapped file. `data` may be unaligned (safetensors does not align tensors): read it
// with memcpy or decode_to_float, never through a cast to uint16_t* / float*.
struct TensorView {
  std::string name;
  Dtype dtype = Dtype::bf16;
  std::vector<std::int64_t> shape;
  const std::byte* data = nullptr;
  std::size_t bytes = 0;
  std::string file;
  std::int64_t elements() const;
  std::vector<float> to_float() const;  // every element decoded to float (for tests and small tensors)
};

// The validated header of one safetensors byte image.
struct SafetensorsHeader {
  std::vector<TensorInfo> tensors;               // sorted by name
  std::map<std::string, std::string> metadata;   // "__metadata__" (string values only)
  std::size_t data_offset = 0;                   // 8 + N: where the data section starts in the file
};

// Header lengths above this are refused (the Rust reference uses the same 100 MB bound).
inline constexpr std::uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;

// Validate the image `data[0..size)` of a safetensors file (`origin` names it in errors). Never reads outside
// the given bytes; every problem is an InputError "ORIGIN: ... tensor 'NAME' ...: fix" on one line.
SafetensorsHeader parse_safetensors(const std::byte* data, std::size_t size, const std::string& origin);

// One mapped, validated safetensors file. Move-only.
class SafetensorsFile {
 public:
  static SafetensorsFile open(const std::filesystem::path& path);

  const std::string& path() const { return path_; }
  const std::vector<TensorInfo>& tensors() const { return header_.tensors; }
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  const TensorInfo* find(std::string_view name) const;  // nullptr when absent
  TensorView view(const TensorInfo& info) const;        // `info` must come from this file

 private:
  std::string path_;
  MappedFile map_;
  SafetensorsHeader header_;
};

// A checkpoint: one safetensors file, or the shards named by a model.safetensors.index.json ("weight_map":
// {tensor: file}). The index is the truth: every file it names must exist and hold the tensors mapped to it,
// and a shard may not hold a tensor the index does not map to it (a stale index). Move-only.
class Checkpoint {
 public:
  // `path`: a .safetensors file, a *.safetensors.index.json, or a directory holding model.safetensors.index.json,
  // model.safetensors, or exactly one *.safetensors file.
  static Checkpoint open(const std::filesystem::path& path);

  const std::string& origin() const { return origin_; }  // the file or index that was opened
  bool sharded() const { return sharded_; }
  const std::vector<SafetensorsFile>& files() const { return files_; }
  std::size_t size() const { return entries_.size(); }
  std::vector<std::string> names() const;                 // sorted
  const TensorInfo* find(std::string_view name) const;   // nullptr when absent
  TensorView view(std::string_view name) const;          // throws InputError naming the checkpoint and tensor
  std::uint64_t total_tensor_bytes() const;

 private:
  struct Entry {
    const TensorInfo* info;  // points into files_[file].tensors() (stable: files_ is never resized after open)
    std::size_t file;
  };
  std::string origin_;
  bool sharded_ = false;
  std::vector<SafetensorsFile> files_;
  std::map<std::string, Entry, std::less<>> entries_;
};

// ---- Writing.

// A tensor to write: its name, dtype and shape; the bytes come from the fill callback.
struct TensorSpec {
  std::string name;
  Dtype dtype = Dtype::bf16;
  std::vector<std::int64_t> shape;
  std::size_t bytes() const;
};

// Fills `out` with the encoded elements [first_element, first_element + out.size() / dtype size) of `spec`
// (row-major). The writer calls it tensor by tensor, in order, in chunks of whole innermost rows (shape.back()
// elements), so a fill that works row by row (per-channel FP8 scales) always sees complete rows.
using TensorFill = std::function<void(const TensorSpec& spec, std::size_t first_element, std::span<std::byte> out)>;

// Write a safetensors file at `path`: header (tensors in the given order, offsets contiguous, header padded with
// spaces to a multiple of 8 bytes as the Rust writer does), then each tensor's bytes from `fill`. Written to a
// temporary file in the same directory and renamed into place, so a failure leaves no partial file. Throws
// InputError for unwritable paths, duplicate names or dtype/shape sizes that overflow.
void write_safetensors(const std::filesystem::path& path, const std::vector<TensorSpec>& tensors,
                       const std::map<std::string, std::string>& metadata, const TensorFill& fill);

// `name` made safe for a one-line message: control and non-ASCII bytes escaped, long names shortened.
std::string printable_name(std::string_view name);
// The same in single quotes: 'model.norm.weight'.
std::string quoted_name(std::string_view name);
// "[5120, 8192]"
std::string shape_text(const std::vector<std::int64_t>& shape);

}  // namespace moeplan::executor
