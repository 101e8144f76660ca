// Launch commands: every flag moeplan prints for vLLM, SGLang, TensorRT-LLM and llama.cpp, and every
// extra_llm_api_options key its notes name, is one data/engine_flags.yaml lists as checked against the engine's source
// (file and commit) for the version data/engines.yaml names, on one node and over several; vLLM's --max-num-seqs is
// per data-parallel rank; multi-node rows get each engine's multi-node flags.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "common/error.hpp"
#include "gpu_db/engines.hpp"
#include "gpu_db/gpu_db.hpp"
#include "planner/launch.hpp"
#include "tests/test_util.hpp"

using namespace moeplan;
using namespace moeplan::planner;

namespace {

std::string value_after(const std::string& command, const std::string& flag) {
  const auto at = command.find(flag + " ");
  if (at == std::string::npos) return "";
  std::istringstream rest(command.substr(at + flag.size() + 1));
  std::string v;
  rest >> v;
  return v;
}

struct Fixture {
  gpu_db::Database db = gpu_db::Database::load(test::data());
  gpu_db::EngineTable engines = gpu_db::EngineTable::load(test::data() / "engines.yaml");
  EngineFlags documented = EngineFlags::load(test::data() / "engine_flags.yaml", engines);

  // Rows over one node, over several with a replica inside a node, and with a replica wider than a node.
  std::vector<PlanRow> rows(const std::string& engine) {
    std::vector<PlanRow> out;
    auto make = [&](int count, model::ParallelLayout l, int gpus_per_node, std::int64_t batch) {
      PlanRow r;
      r.gpu = &db.gpu("b200");
      r.engine = &engines.engine(engine);
      r.count = count;
      r.precision = "nvfp4:all-linear";
      r.layout = l;
      r.batch = batch;
      r.gpus_per_node = gpus_per_node;
      r.nodes = (count + gpus_per_node - 1) / gpus_per_node;
      out.push_back(r);
    };
    make(8, {1, 8, 1, 8}, 8, 607);    // tp1 ep8 dp8, one node
    make(8, {4, 4, 2, 1}, 8, 64);     // tp4 ep4 pp2, one node
    make(32, {1, 32, 1, 32}, 8, 128); // tp1 ep32 dp32 over 4 nodes
    make(64, {1, 32, 2, 32}, 4, 256); // tp1 ep32 dp32 pp2 over 16 four-GPU nodes
    make(16, {16, 16, 1, 1}, 8, 64);  // tp16: one replica over 2 nodes
    return out;
  }
  std::vector<LaunchCommand> launch(const PlanRow& r, model::KvDtype kv = model::KvDtype::fp8) {
    return launch_commands(test::data(), "llama4-maverick", r, 2000, kv, 0.9);
  }
  // Every flag of every command the builder prints for the engine, over one-node and multi-node layouts and both KV
  // dtypes, and every config key of its notes, against the flags and keys the engine's `checked` / `keys_checked`
  // entries found in a source: read here from the file, not through the builder's own check.
  void check_documented(const std::string& engine) {
    const YAML::Node file = YAML::LoadFile((test::data() / "engine_flags.yaml").string());
    std::set<std::string> checked_flags, checked_keys;
    for (const auto& e : file["engines"])
      if (e["engine"].as<std::string>() == engine)
        for (const auto& tool : e["tools"]) {
          for (const auto& c : tool["checked"]) {
            INFO(engine << ": " << c["source"].as<std::string>());
            CHECK((c["commit"] ? c["commit"].as<std::string>().size() == 40 : c["version"].IsDefined()));
            for (const auto& f : c["flags"]) checked_flags.insert(f.as<std::string>());
          }
          for (const auto& c : tool["keys_checked"])
            for (const auto& k : c["keys"]) checked_keys.insert(k.as<std::string>());
        }
    REQUIRE(checked_flags.size() >= 8);
    std::size_t flags_seen = 0, keys_seen = 0;
    for (const auto& r : rows(engine))
      for (auto kv : {model::KvDtype::fp8, model::KvDtype::bf16})
        for (const auto& c : launch(r, kv)) {
          for (const auto* line : {&c.command, &c.other_nodes})
            for (const auto& f : command_flags(*line)) {
              INFO(engine << ": " << *line);
              CHECK(checked_flags.count(f) == 1);
              ++flags_seen;
            }
          for (const auto& k : c.config_keys) {
            INFO(engine << ": " << c.note);
            CHECK(checked_keys.count(k) == 1);
            CHECK(c.note.find(k.substr(0, k.find('.'))) != std::string::npos);  // the note names the key
            ++keys_seen;
          }
        }
    CHECK(flags_seen > 40);
    if (engine == "trtllm") CHECK(keys_seen >= 4);  // attention DP rows and every FP8-KV row name their keys
  }
};

}  // namespace

TEST_CASE_METHOD(Fixture, "the flags file covers every engine that has launch commands, each with its version and docs") {
  for (const char* e : {"vllm", "sglang", "trtllm", "llamacpp"}) {
    INFO(e);
    const EngineFlagList& list = documented.engine(e);
    CHECK(list.version == engines.engine(e).versions);  // the version the simulator models
    for (const auto& t : list.tools) {
      CHECK_FALSE(t.docs.empty());
      CHECK(t.docs.find("https://") != std::string::npos);
      for (const auto& f : t.flags) {
        const auto* c = list.check_of(f);  // every listed flag names the file (and commit) it was found in
        REQUIRE(c != nullptr);
        CHECK_FALSE(c->read.empty());
        CHECK((c->commit.size() == 40 || !c->version.empty()));
      }
    }
  }
  CHECK(command_flags("srun -N 2 --mpi=pmix x --ntasks-per-node 8 <node0-ip>:5000 -1") ==
        std::vector<std::string>{"-N", "--mpi", "--ntasks-per-node"});
  // A flag the engine does not document is caught: TensorRT-LLM spells its options with underscores.
  CHECK_FALSE(documented.engine("trtllm").documents("--tp-size"));
  CHECK(documented.engine("trtllm").documents("--tp_size"));
  // SGLang defines --tp-size / --dp-size / --ep-size; its documentation's --tp / --dp are argparse abbreviations.
  CHECK(documented.engine("sglang").documents("--tp-size"));
  CHECK_FALSE(documented.engine("sglang").documents("--tp"));
  CHECK_FALSE(documented.engine("sglang").documents("--dp"));
  // The engines' own flags were read in their source at a commit: vLLM's arg_utils.py, TensorRT-LLM's serve.py.
  CHECK(documented.engine("vllm").check_of("--max-num-seqs")->source.find("vllm/engine/arg_utils.py") != std::string::npos);
  CHECK(documented.engine("trtllm").check_of("--ep_size")->commit.size() == 40);
  CHECK(documented.engine("trtllm").documents_key("kv_cache_config.dtype"));
  CHECK_FALSE(documented.engine("trtllm").documents_key("kv_cache_dtype"));
}

namespace {
// A copy of data/ with engine_flags.yaml edited: every `from` replaced by `to`.
std::filesystem::path data_with_flags(const std::string& from, const std::string& to) {
  const auto dir = std::filesystem::temp_directory_path() / ("moeplan_flags_" + std::to_string(std::hash<std::string>{}(from + to)));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  for (const char* f : {"checkpoints.yaml", "engines.yaml", "engine_flags.yaml"}) std::filesystem::copy(test::data() / f, dir / f);
  std::ifstream in(dir / "engine_flags.yaml");
  std::stringstream text;
  text << in.rdbuf();
  std::string s = text.str();
  REQUIRE(s.find(from) != std::string::npos);
  for (auto at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) s.replace(at, from.size(), to);
  std::ofstream(dir / "engine_flags.yaml") << s;
  return dir;
}
}  // namespace

TEST_CASE_METHOD(Fixture, "a launch command with a flag the engine's list lacks, or a list for another version, is refused") {
  PlanRow r = rows("vllm")[0];
  CHECK(launch_commands(test::data(), "llama4-maverick", r, 2000, model::KvDtype::fp8, 0.9).size() == 1);
  // --enable-expert-parallel dropped from vLLM's lists: the tp1 ep8 dp8 row needs it.
  const auto no_ep = data_with_flags("--enable-expert-parallel, ", "");
  CHECK_THROWS_WITH(launch_commands(no_ep, "llama4-maverick", r, 2000, model::KvDtype::fp8, 0.9),
                    Catch::Contains("engine_flags.yaml") && Catch::Contains("--enable-expert-parallel"));
  // A row without expert parallelism does not print it, so the same list serves.
  r.layout = {8, 1, 1, 1};
  CHECK(launch_commands(no_ep, "llama4-maverick", r, 2000, model::KvDtype::fp8, 0.9).size() == 1);
  // A list read for another version than engines.yaml's is refused.
  const auto old = data_with_flags("version: \"0.5.x\"", "version: \"0.4.x\"");
  CHECK_THROWS_WITH(EngineFlags::load(old / "engine_flags.yaml", engines), Catch::Contains("0.4.x") && Catch::Contains("0.5.x"));
  CHECK_THROWS_AS(launch_commands(old, "llama4-maverick", r, 2000, model::KvDtype::fp8, 0.9), InputError);
  // A flag listed without a source check, or a check without its commit, is refused when the file is read.
  const auto unchecked = data_with_flags("--max-num-batched-tokens]\n        checked", "--max-num-batched-tokens, --api-server-count]\n        checked");
  CHECK_THROWS_WITH(EngineFlags::load(unchecked / "engine_flags.yaml", engines), Catch::Contains("--api-server-count"));
  const auto no_commit = data_with_flags("commit: 99d7eb5d6a512cfcc5a2b104f24ebf2d6cda772b", "commit: 99d7eb5d");
  CHECK_THROWS_WITH(EngineFlags::load(no_commit / "engine_flags.yaml", engines), Catch::Contains("40-hex commit"));
  // TensorRT-LLM's attention-DP, FP8-KV row names both keys; a key checked but not listed is refused.
  PlanRow t = rows("trtllm")[0];  // dp8 and FP8 KV: both keys
  const auto no_key = data_with_flags("keys: [enable_attention_dp, kv_cache_config.dtype]", "keys: [kv_cache_config.dtype]");
  CHECK_THROWS_WITH(EngineFlags::load(no_key / "engine_flags.yaml", engines), Catch::Contains("enable_attention_dp"));
  CHECK(launch_commands(test::data(), "llama4-maverick", t, 2000, model::KvDtype::fp8, 0.9).front().config_keys.size() == 2);
  for (const auto& d : {no_ep, old, unchecked, no_commit, no_key}) std::filesystem::remove_all(d);
}

TEST_CASE_METHOD(Fixture, "every vLLM flag printed is documented for vLLM 0.10-0.12") { check_documented("vllm"); }
TEST_CASE_METHOD(Fixture, "every SGLang flag printed is documented for SGLang 0.5") { check_documented("sglang"); }
TEST_CASE_METHOD(Fixture, "every TensorRT-LLM flag printed is documented for TensorRT-LLM 1.0-1.2") { check_documented("trtllm"); }
TEST_CASE_METHOD(Fixture, "every llama.cpp flag printed is documented for llama-server") { check_documented("llamacpp"); }

TEST_CASE_METHOD(Fixture, "vLLM: --max-num-seqs is the batch of one data-parallel rank") {
  const auto rs = rows("vllm");
  const auto one = launch(rs[0]).front();
  CHECK(value_after(one.command, "--max-num-seqs") == "607");  // not 607 x 8
  CHECK(value_after(one.command, "--data-parallel-size") == "8");
  CHECK(one.other_nodes.empty());
}

TEST_CASE_METHOD(Fixture, "multi-node rows get each engine's multi-node flags") {
  const auto v = rows("vllm");
  // 32 GPUs over 4 nodes, dp32: 8 ranks per node; node 0 serves the API, the others run headless from rank 8 i.
  const auto dp = launch(v[2]).front();
  CHECK(value_after(dp.command, "--data-parallel-size-local") == "8");
  CHECK(value_after(dp.command, "--data-parallel-address") == "<node0-ip>");
  CHECK(dp.command.find("--data-parallel-rpc-port") != std::string::npos);
  CHECK(dp.command.find("--headless") == std::string::npos);
  CHECK(dp.other_nodes.find("--headless") != std::string::npos);
  CHECK(dp.other_nodes.find("--data-parallel-start-rank <8 x i>") != std::string::npos);
  CHECK(value_after(dp.command, "--max-num-seqs") == "128");
  CHECK(dp.note.find("node 0 runs the API server and data-parallel ranks 0-7, each node i (1 to 3) the next 8 ranks") !=
        std::string::npos);
  // 64 GPUs on 4-GPU nodes with pp2: 2 ranks of 2 GPUs per node.
  CHECK(value_after(launch(v[3]).front().command, "--data-parallel-size-local") == "2");
  // tp16 over two 8-GPU nodes: a Ray cluster.
  const auto ray = launch(v[4]).front();
  CHECK(ray.command.find("--distributed-executor-backend ray") != std::string::npos);
  CHECK(ray.other_nodes.rfind("ray start --address", 0) == 0);

  const auto sg = launch(rows("sglang")[2]).front();
  CHECK(value_after(sg.command, "--nnodes") == "4");
  CHECK(value_after(sg.command, "--node-rank") == "0");
  CHECK(value_after(sg.command, "--dist-init-addr") == "<node0-ip>:5000");
  CHECK(value_after(sg.other_nodes, "--node-rank") == "<i>");
  CHECK(sg.note.find("(0 on node 0, i on each node i (1 to 3))") != std::string::npos);

  const auto trt = launch(rows("trtllm")[2]).front();
  CHECK(trt.command.rfind("srun -N 4 --ntasks 32 --ntasks-per-node 8 --mpi=pmix trtllm-llmapi-launch trtllm-serve", 0) == 0);
  CHECK(trt.other_nodes.empty());  // one srun starts every rank
  // One node: no multi-node flags at all.
  for (const char* e : {"vllm", "sglang", "trtllm"}) {
    const auto c = launch(rows(e)[0]).front();
    for (const char* f : {"--nnodes", "--data-parallel-address", "srun", "--headless"}) CHECK(c.command.find(f) == std::string::npos);
  }
}
