// The safetensors reader and writer: a valid image parses to the right tensors, every broken image fails with a
// one-line InputError naming the file and the rule, files map and read back, sharded checkpoints are checked
// against their index.
#include <catch2/catch.hpp>

#include <cstring>
#include <fstream>
#include <functional>

#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "executor/safetensors.hpp"
#include "tests/executor/safetensors_images.hpp"
#include "tests/executor/executor_test_util.hpp"

using namespace moeplan;
using namespace moeplan::executor;
using moeplan::test::Bytes;
using moeplan::test::TempDir;
using moeplan::test::error_of;

namespace {

std::vector<TensorSpec> two_tensors() {
  return {{"w", Dtype::bf16, {2, 3}}, {"s", Dtype::f32, {3}}};
}

// w[i] = i - 2 (exact in BF16), s[i] = 0.5 * i.
void fill_two(const TensorSpec& spec, std::size_t first, std::span<std::byte> out) {
  const std::size_t n = out.size() / dtype_bytes(spec.dtype);
  std::vector<float> values(n);
  for (std::size_t i = 0; i < n; ++i)
    values[i] = spec.name == "w" ? static_cast<float>(first + i) - 2.0f : 0.5f * static_cast<float>(first + i);
  encode_from_float(spec.dtype, values.data(), n, out.data());
}

}  // namespace

TEST_CASE("parse_safetensors reads a valid header: tensors by name, offsets, metadata") {
  const Bytes image = test::valid_safetensors_image();
  const auto h = parse_safetensors(image.data(), image.size(), "mem.safetensors");
  REQUIRE(h.tensors.size() == 3);
  CHECK(h.tensors[0].name == "a");
  CHECK(h.tensors[0].dtype == Dtype::bf16);
  CHECK(h.tensors[0].shape == std::vector<std::int64_t>{2, 3});
  CHECK(h.tensors[0].bytes == 12);
  CHECK(h.tensors[1].name == "b");
  CHECK(h.tensors[1].data_begin == 12);
  CHECK(h.tensors[1].elements() == 4);
  CHECK(h.tensors[2].name == "c");
  CHECK(h.tensors[2].bytes == 0);
  CHECK(h.metadata.at("format") == "pt");
  CHECK(h.data_offset == 8 + std::strlen(test::kValidHeader));
}

TEST_CASE("every broken safetensors image fails with one InputError line naming the file and the rule") {
  for (const auto& c : test::broken_safetensors_images()) {
    INFO(c.rule);
    const std::string message = error_of([&] { (void)parse_safetensors(c.bytes.data(), c.bytes.size(), "broken.safetensors"); });
    CHECK_THAT(message, Catch::Contains(c.expect));
    CHECK_THAT(message, Catch::StartsWith("broken.safetensors: "));
    CHECK(message.find('\n') == std::string::npos);
  }
}

TEST_CASE("errors about a tensor name it, and unprintable names are escaped onto one line") {
  const Bytes image = test::safetensors_image(R"({"bad\nname":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})", 8);
  const std::string message = error_of([&] { (void)parse_safetensors(image.data(), image.size(), "f.safetensors"); });
  CHECK_THAT(message, Catch::Contains("tensor 'bad\\x0aname' has dtype I64"));
  CHECK(message.find('\n') == std::string::npos);
}

TEST_CASE("SafetensorsFile maps a file and views each tensor's bytes in place") {
  TempDir dir("st-file");
  test::write_bytes(dir / "m.safetensors", test::valid_safetensors_image());
  const auto f = SafetensorsFile::open(dir / "m.safetensors");
  const TensorInfo* b = f.find("b");
  REQUIRE(b);
  CHECK(f.find("zzz") == nullptr);
  const TensorView v = f.view(*b);
  CHECK(v.bytes == 16);
  // The test image's data byte i is i & 0xFF, and b starts 12 bytes into the data section.
  CHECK(static_cast<int>(v.data[0]) == 12);
  CHECK(static_cast<int>(v.data[15]) == 27);
  CHECK(v.file == (dir / "m.safetensors").string());
}

TEST_CASE("opening a missing, empty or directory path is an InputError") {
  TempDir dir("st-missing");
  CHECK_THAT(error_of([&] { (void)SafetensorsFile::open(dir / "none.safetensors"); }), Catch::Contains("none.safetensors"));
  test::write_bytes(dir / "empty.safetensors", {});
  CHECK_THAT(error_of([&] { (void)SafetensorsFile::open(dir / "empty.safetensors"); }), Catch::Contains("too short"));
  CHECK_THAT(error_of([&] { (void)MappedFile::open(dir.path()); }), Catch::Contains("not a regular file"));
}

TEST_CASE("write_safetensors writes an 8-byte aligned header and values that read back exactly") {
  TempDir dir("st-write");
  write_safetensors(dir / "x.safetensors", two_tensors(), {{"format", "pt"}}, fill_two);
  const Bytes bytes = test::read_bytes(dir / "x.safetensors");
  std::uint64_t header_bytes = 0;
  std::memcpy(&header_bytes, bytes.data(), 8);
  CHECK(header_bytes % 8 == 0);
  CHECK(bytes.size() == 8 + header_bytes + 12 + 12);

  const auto f = SafetensorsFile::open(dir / "x.safetensors");
  CHECK(f.metadata().at("format") == "pt");
  CHECK(f.view(*f.find("w")).to_float() == std::vector<float>{-2, -1, 0, 1, 2, 3});
  CHECK(f.view(*f.find("s")).to_float() == std::vector<float>{0, 0.5f, 1});
  // Nothing but the file itself is left behind.
  int files = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir.path())) ++files;
  CHECK(files == 1);
}

TEST_CASE("write_safetensors refuses repeated names and leaves no file when the fill throws") {
  TempDir dir("st-write-bad");
  const std::vector<TensorSpec> twice = {{"w", Dtype::bf16, {1}}, {"w", Dtype::bf16, {1}}};
  CHECK_THAT(error_of([&] { write_safetensors(dir / "x.safetensors", twice, {}, fill_two); }), Catch::Contains("repeated"));
  const TensorFill failing = [](const TensorSpec&, std::size_t, std::span<std::byte>) { throw InputError("fill failed"); };
  CHECK_THROWS_AS(write_safetensors(dir / "y.safetensors", two_tensors(), {}, failing), InputError);
  CHECK(std::filesystem::is_empty(dir.path()));
}

TEST_CASE("write_safetensors fills huge tensors in chunks of whole rows") {
  TempDir dir("st-chunks");
  // Rows of 36 MB (9M F32): a 64 MB chunk holds one whole row, so the fill is called once per row.
  const std::vector<TensorSpec> specs = {{"big", Dtype::f32, {2, 9'000'000}}};
  std::vector<std::size_t> firsts, sizes;
  write_safetensors(dir / "big.safetensors", specs, {}, [&](const TensorSpec&, std::size_t first, std::span<std::byte> out) {
    firsts.push_back(first);
    sizes.push_back(out.size());
  });
  CHECK(firsts == std::vector<std::size_t>{0, 9'000'000});
  CHECK(sizes == std::vector<std::size_t>{36'000'000, 36'000'000});
}

TEST_CASE("Checkpoint opens a file, a directory with model.safetensors, or the only .safetensors in a directory") {
  TempDir dir("ckpt-single");
  write_safetensors(dir / "weights.safetensors", two_tensors(), {}, fill_two);
  const auto by_dir = Checkpoint::open(dir.path());
  CHECK(!by_dir.sharded());
  CHECK(by_dir.names() == std::vector<std::string>{"s", "w"});
  CHECK(by_dir.view("w").to_float()[5] == 3.0f);
  CHECK_THAT(error_of([&] { (void)by_dir.view("missing"); }), Catch::Contains("no tensor 'missing'"));
  const auto by_file = Checkpoint::open(dir / "weights.safetensors");
  CHECK(by_file.size() == 2);
  CHECK(by_file.total_tensor_bytes() == 24);

  write_safetensors(dir / "other.safetensors", two_tensors(), {}, fill_two);
  CHECK_THAT(error_of([&] { (void)Checkpoint::open(dir.path()); }), Catch::Contains("2 .safetensors files"));
  TempDir empty("ckpt-empty");
  CHECK_THAT(error_of([&] { (void)Checkpoint::open(empty.path()); }), Catch::Contains("no .safetensors file"));
  CHECK_THAT(error_of([&] { (void)Checkpoint::open(empty / "nope"); }), Catch::Contains("no such checkpoint"));
}

namespace {

// Two shards: w in a.safetensors, s in b.safetensors, and an index saying so (edited by `edit`).
void write_sharded(const TempDir& dir, const std::function<void(nlohmann::json&)>& edit = {}) {
  write_safetensors(dir / "a.safetensors", {two_tensors()[0]}, {}, fill_two);
  write_safetensors(dir / "b.safetensors", {two_tensors()[1]}, {}, fill_two);
  nlohmann::json index = {{"metadata", {{"total_size", 24}}}, {"weight_map", {{"w", "a.safetensors"}, {"s", "b.safetensors"}}}};
  if (edit) edit(index);
  std::ofstream(dir / "model.safetensors.index.json") << index.dump();
}

}  // namespace

TEST_CASE("a sharded checkpoint reads every tensor from the shard its index names") {
  TempDir dir("ckpt-sharded");
  write_sharded(dir);
  const auto c = Checkpoint::open(dir.path());
  CHECK(c.sharded());
  CHECK(c.files().size() == 2);
  CHECK(c.find("w")->file == (dir / "a.safetensors").string());
  CHECK(c.view("s").to_float() == std::vector<float>{0, 0.5f, 1});
  CHECK(c.view("w").to_float() == std::vector<float>{-2, -1, 0, 1, 2, 3});
}

TEST_CASE("a sharded checkpoint whose index disagrees with its shards is refused") {
  SECTION("a weight_map file that does not exist") {
    TempDir dir("idx-missing-file");
    write_sharded(dir, [](nlohmann::json& j) { j["weight_map"]["s"] = "c.safetensors"; });
    CHECK_THAT(error_of([&] { (void)Checkpoint::open(dir.path()); }), Catch::Contains("names c.safetensors, which does not exist"));
  }
  SECTION("a tensor mapped to a shard that does not hold it") {
    TempDir dir("idx-wrong-shard");
    write_sharded(dir, [](nlohmann::json& j) { j["weight_map"]["s"] = "a.safetensors"; });
    const std::string message = error_of([&] { (void)Checkpoint::open(dir.path()); });
    CHECK_THAT(message, Catch::Contains("maps tensor 's'"));
    CHECK_THAT(message, Catch::Contains("does not hold it"));
  }
  SECTION("a shard holding a tensor the index does not map") {
    TempDir dir("idx-stale");
    write_sharded(dir);
    write_safetensors(dir / "b.safetensors", {two_tensors()[1], {"x", Dtype::bf16, {1}}}, {}, fill_two);
    CHECK_THAT(error_of([&] { (void)Checkpoint::open(dir.path()); }), Catch::Contains("holds tensor 'x'"));
  }
  SECTION("a file name outside the checkpoint directory") {
    TempDir dir("idx-escape");
    write_sharded(dir, [](nlohmann::json& j) { j["weight_map"]["s"] = "../b.safetensors"; });
    CHECK_THAT(error_of([&] { (void)Checkpoint::open(dir.path()); }), Catch::Contains("inside the checkpoint directory"));
  }
  SECTION("an index without a weight_map") {
    TempDir dir("idx-no-map");
    write_sharded(dir, [](nlohmann::json& j) { j.erase("weight_map"); });
    CHECK_THAT(error_of([&] { (void)Checkpoint::open(dir.path()); }), Catch::Contains("weight_map"));
  }
  SECTION("a broken shard is reported under its own name") {
    TempDir dir("idx-broken-shard");
    write_sharded(dir);
    test::write_bytes(dir / "b.safetensors", Bytes(4));
    CHECK_THAT(error_of([&] { (void)Checkpoint::open(dir.path()); }), Catch::Contains("b.safetensors: 4 bytes is too short"));
  }
}
