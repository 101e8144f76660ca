// planner/launch: the launch commands of vLLM, SGLang, TensorRT-LLM and llama.cpp for a chosen configuration, and
// the engines' documented command-line flags (data/engine_flags.yaml) that every printed flag is checked against.
// Flag choices per engine and layout: docs/planner.md "Launch commands".
#pragma once
#include <cstdint>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "gpu_db/engines.hpp"
#include "model/precision.hpp"
#include "planner/plan.hpp"

namespace moeplan::planner {

// One engine's launch flags, for the version data/engines.yaml names, each checked against the engine's source.
struct EngineFlagList {
  // Where a set of flags (or extra_llm_api_options keys) was found: a source file at a commit, or a tool's manual.
  struct Check {
    std::string source;  // "owner/repo:path" of the file read, or the manual's URL
    std::string commit;  // 40-hex commit of the file read; "" for a manual
    std::string version; // the manual's version when there is no commit
    std::string read;    // date read
    std::set<std::string> names;  // the flags (or keys) found there
  };
  struct Tool {
    std::string tool;   // e.g. "vllm serve", "ray start"
    std::string docs;   // where the flags are documented (URL at that version)
    std::set<std::string> flags;     // each in one of `checked`
    std::vector<Check> checked;
    std::set<std::string> keys;      // extra_llm_api_options keys (TensorRT-LLM), each in one of `keys_checked`
    std::vector<Check> keys_checked;
  };
  std::string engine;   // engines.yaml name: vllm, sglang, trtllm, llamacpp
  std::string version;  // equals engines.yaml's `versions` of that engine
  std::vector<Tool> tools;
  bool documents(const std::string& flag) const;  // listed (and so checked) by any of the engine's tools
  bool documents_key(const std::string& key) const;
  // The check that lists `flag`; nullptr when none does.
  const Check* check_of(const std::string& flag) const;
};

class EngineFlags {
 public:
  // Throws InputError naming the file for malformed YAML, an engine or tool without docs or flags, a flag (or key)
  // no `checked` entry lists, a check without a source, date and commit (or manual version), an engine engines.yaml
  // does not have, or a version other than the one engines.yaml names for it.
  static EngineFlags load(const std::filesystem::path& yaml_path, const gpu_db::EngineTable& engines);
  const EngineFlagList& engine(const std::string& name) const;  // InputError when the file has none
  const std::vector<EngineFlagList>& engines() const { return engines_; }
  const std::string& file() const { return file_; }

 private:
  std::vector<EngineFlagList> engines_;
  std::string file_;
};

// The flags of a command line: words starting with '-' that are not negative numbers, each without its "=value".
std::vector<std::string> command_flags(const std::string& command);

struct LaunchCommand {
  std::string engine, command, note;  // command: the one to run, on node 0 of a multi-node row
  int row = 0;  // the plan row (1-based rank) it launches; 0: the plan's #1 without engines
  std::string other_nodes;  // a multi-node row's command on nodes 1..N-1 ("<i>": the node's index); "" when none
  std::vector<std::string> config_keys;  // extra_llm_api_options keys the note names (dotted), checked like flags
};

// Suggested launch commands, from `data_dir`'s checkpoints.yaml (the (model, format) -> published repository map),
// engines.yaml and engine_flags.yaml. A row planned for an engine gets that engine's command only; a row of the
// plain roofline (no engine) gets vLLM's, SGLang's and TensorRT-LLM's. A row over several nodes gets each engine's
// multi-node flags (docs/planner.md "Launch commands"). Every flag printed, on every node, and every config key the
// note names is one engine_flags.yaml lists, checked against the engine's source, for the engine's version:
// InputError naming the flag and the file otherwise (nothing is printed).
std::vector<LaunchCommand> launch_commands(const std::filesystem::path& data_dir, const std::string& model_name,
                                           const PlanRow& row, std::int64_t max_model_len, model::KvDtype kv_dtype,
                                           double gpu_memory_utilization);

}  // namespace moeplan::planner
