// data/engines.yaml: every engine loads with a source and a date for every value, runs where its docs say, and
// malformed files are refused naming file:line and the field.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <iterator>

#include <unistd.h>

#include "common/error.hpp"
#include "gpu_db/engines.hpp"
#include "tests/test_util.hpp"

using namespace moeplan;

namespace {
std::string load_error(const std::string& yaml) {
  // One file per process: ctest runs this file's test cases as parallel processes.
  const auto path = std::filesystem::temp_directory_path() / ("moeplan_test_engines." + std::to_string(::getpid()) + ".yaml");
  std::ofstream(path) << yaml;
  std::string message;
  try {
    gpu_db::EngineTable::load(path);
  } catch (const InputError& e) {
    message = e.what();
  }
  std::filesystem::remove(path);
  return message;
}

// load_error of the shipped engines.yaml with the first occurrence of each `from` replaced by its `to` (each must
// occur: a missing one fails the test, so an edit of the data file cannot turn a case into a silent pass).
std::string shipped_error(std::initializer_list<std::pair<std::string, std::string>> edits) {
  std::ifstream in(test::data() / "engines.yaml");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (const auto& [from, to] : edits) {
    const std::size_t at = text.find(from);
    REQUIRE(at != std::string::npos);
    text.replace(at, from.size(), to);
  }
  return load_error(text);
}
}  // namespace

TEST_CASE("engines.yaml loads, and every engine states every value with a source and the date read") {
  const auto t = gpu_db::EngineTable::load(test::data() / "engines.yaml");
  REQUIRE(t.engines().size() >= 5);
  for (const char* name : {"generic", "trtllm", "vllm", "sglang", "llamacpp"}) CHECK_NOTHROW(t.engine(name));
  const std::vector<std::string> fields = {
      "versions", "vendors", "architectures", "hosts", "kv_dtype_modelopt", "max_batch", "max_num_batched_tokens",
      "chunked_prefill", "cuda_graphs", "cuda_graph_max_batch", "scheduler", "moe_kernels", "step_overhead_us",
      "op_overhead_us", "op_overhead_eager_us"};
  for (const auto& e : t.engines()) {
    INFO(e.name);
    for (const auto& f : fields) {
      INFO(f);
      REQUIRE(e.sources.count(f) == 1);
      CHECK(e.sources.at(f).source.size() > 10);
      CHECK(e.sources.at(f).read.size() == 10);  // YYYY-MM-DD, on or after the file's first reading
      CHECK(e.sources.at(f).read >= "2026-12-02");
    }
    CHECK(e.max_batch > 0);
    CHECK(e.step_overhead_us >= 0);
  }
  // generic is the Efficiency defaults exactly (simulator/hardware.hpp).
  const auto& g = t.engine("generic");
  CHECK(g.step_overhead_us == 30);
  CHECK(g.kernel_overhead_us() == 2.0);
  CHECK(g.max_batch == 1024);
  CHECK(g.max_num_batched_tokens == 8192);
  CHECK(g.kv_dtype_modelopt == "bf16");
  CHECK(t.engine("TensorRT-LLM").name == "trtllm");  // aliases, case-insensitive
  CHECK(t.engine("llama.cpp").name == "llamacpp");
}

TEST_CASE("engines run on the vendors and architectures their docs list") {
  const auto db = gpu_db::Database::load(test::data());
  const auto t = gpu_db::EngineTable::load(test::data() / "engines.yaml");
  const auto& trt = t.engine("trtllm");
  CHECK(trt.runs_on(db.gpu("h100-sxm")));
  CHECK(trt.runs_on(db.gpu("a100-80gb-sxm")));
  CHECK_FALSE(trt.runs_on(db.gpu("v100-sxm2-32gb")));  // Ampere and later
  CHECK_FALSE(trt.runs_on(db.gpu("mi300x")));
  CHECK(t.engine("vllm").runs_on(db.gpu("mi300x")));
  CHECK(t.engine("sglang").runs_on(db.gpu("mi355x")));
  CHECK(t.engine("llamacpp").hosts);
  CHECK_FALSE(trt.hosts);
  CHECK(t.vendor_default(db.gpu("b200")).name == "trtllm");
  CHECK(t.vendor_default(db.gpu("mi300x")).name == "vllm");
  CHECK(t.host_default().name == "llamacpp");
  for (const auto* e : t.supporting(db.gpu("mi300x"))) CHECK(e->name != "trtllm");
  try {
    t.require_runs_on(trt, db.gpu("mi300x"));
    FAIL("trtllm accepted on mi300x");
  } catch (const InputError& e) {
    const std::string m = e.what();
    CHECK(m.find("vllm") != std::string::npos);
    CHECK(m.find("sglang") != std::string::npos);
    CHECK(m.find("trtllm,") == std::string::npos);
  }
  try {
    t.engine("vlm");
    FAIL("unknown engine accepted");
  } catch (const InputError& e) {
    const std::string m = e.what();
    CHECK(m.find("vllm") != std::string::npos);
    CHECK(m.find("llamacpp") != std::string::npos);
  }
}

TEST_CASE("a malformed engines file names file:line and the field") {
  const std::string head = "engines:\n  - name: generic\n";
  const std::string m1 = load_error(head + "    versions: {value: \"-\", source: \"x\"}\n");
  CHECK(m1.find(".yaml:3") != std::string::npos);
  CHECK(m1.find("versions") != std::string::npos);
  CHECK(m1.find("read") != std::string::npos);
  const std::string m2 = load_error(head + "    versions: {value: \"-\", source: \"x\", read: 2026-12-02}\n    speed: 3\n");
  CHECK(m2.find(":4") != std::string::npos);
  CHECK(m2.find("speed") != std::string::npos);
  const std::string m3 = load_error(head + "    versions: {value: \"-\", source: \"x\", read: 2026-12-02}\n");
  CHECK(m3.find("vendors") != std::string::npos);  // a missing field, named
  const std::string m4 = load_error("engines: 3\n");
  CHECK(m4.find("'engines' list") != std::string::npos);
}

TEST_CASE("an engine's kernel terms, when given, are in range") {
  for (const char* bad : {"0", "1.5", "-1"}) {
    INFO(bad);
    CHECK(shipped_error({{"dequant_compute: {value: 1.0,", std::string("dequant_compute: {value: ") + bad + ","}})
              .find("dequant_compute must be in (0, 1]") != std::string::npos);
  }
  CHECK(shipped_error({{"gemv_max_rows: {value: 8,", "gemv_max_rows: {value: -1,"}})
            .find("gemv_max_rows must be 0 to 1024") != std::string::npos);
  // llama.cpp's expert token tiles are whole multiples of 8 tokens (MMQ's mmq_x steps, Metal's 32).
  for (const char* bad : {"100", "-8", "2048"}) {
    INFO(bad);
    CHECK(shipped_error({{"expert_tile_rows_cuda: {value: 128,", std::string("expert_tile_rows_cuda: {value: ") + bad + ","}})
              .find("expert_tile_rows_cuda / _metal must be a multiple of 8") != std::string::npos);
  }
}

TEST_CASE("CUDA-graph batch sizes: ascending, ending at cuda_graph_max_batch, and required for padding") {
  const auto engines = gpu_db::EngineTable::load(test::data() / "engines.yaml");
  // TensorRT-LLM's LLM API captures 1..31, 32, 64, 128 and does not pad; vLLM and SGLang pad to theirs.
  const auto& trt = engines.engine("trtllm");
  CHECK_FALSE(trt.cuda_graph_padding);
  REQUIRE(trt.cuda_graph_batch_sizes.size() == 34);
  CHECK(trt.cuda_graph_batch_sizes[30] == 31);
  CHECK(trt.cuda_graph_batch_sizes.back() == 128);
  CHECK(engines.engine("vllm").cuda_graph_padding);
  CHECK(engines.engine("vllm").cuda_graph_batch_sizes.back() == 512);
  CHECK(engines.engine("sglang").cuda_graph_batch_sizes[4] == 12);
  const std::string sizes = "cuda_graph_batch_sizes: {value: [1], source:";  // llama.cpp's
  for (const auto& [bad, says] : std::vector<std::pair<std::string, std::string>>{
           {"[1, 1]", "positive and ascending"}, {"[0, 1]", "positive and ascending"}, {"[1, 2]", "must end at"}}) {
    INFO(bad);
    CHECK(shipped_error({{sizes, "cuda_graph_batch_sizes: {value: " + bad + ", source:"}}).find(says) != std::string::npos);
  }
  CHECK(shipped_error({{sizes, "cuda_graph_batch_sizes: {value: [], source:"},
                       {"cuda_graph_padding: {value: false, source: \"ggml", "cuda_graph_padding: {value: true, source: \"ggml"}})
            .find("cuda_graph_padding needs") != std::string::npos);
}

TEST_CASE("Attention-DP MoE communication: the engines' defaults gather, the generic roofline keeps all-to-all") {
  const auto engines = gpu_db::EngineTable::load(test::data() / "engines.yaml");
  for (const char* name : {"trtllm", "vllm", "sglang"}) {
    INFO(name);
    CHECK(engines.engine(name).moe_dp_allgather);
  }
  CHECK(engines.engine("trtllm").moe_dp_quantized_dispatch);  // CUTLASS MoE quantizes NVFP4 / FP8 before gathering
  CHECK_FALSE(engines.engine("vllm").moe_dp_quantized_dispatch);
  CHECK_FALSE(engines.engine("generic").moe_dp_allgather);
  CHECK(shipped_error({{"moe_dp_comm: {value: allgather,", "moe_dp_comm: {value: broadcast,"}})
            .find("moe_dp_comm must be all_to_all or allgather") != std::string::npos);
}
