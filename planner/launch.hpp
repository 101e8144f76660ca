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

// One engine's documented launch flags, for the version data/engines.yaml names.
struct EngineFlagList {
  struct Tool {
    std::string tool;   // e.g. "vllm serve", "ray start"
    std::string docs;   // where the flags were read (URL at that version)
    std::set<std::string> flags;
  };
  std::string engine;   // engines.yaml name: vllm, sglang, trtllm, llamacpp
  std::string version;  // equals engines.yaml's `versions` of that engine
  std::vector<Tool> tools;
  bool documents(const std::string& flag) const;  // listed by any of the engine's tools
};

class EngineFlags {
 public:
  // Throws InputError naming the file for malformed YAML, an engine or tool without docs or flags, an engine
  // engines.yaml does not have, or a version other than the one engines.yaml names for it.
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
};

// Suggested launch commands, from `data_dir`'s checkpoints.yaml (the (model, format) -> published repository map),
// engines.yaml and engine_flags.yaml. A row planned for an engine gets that engine's command only; a row of the
// plain roofline (no engine) gets vLLM's, SGLang's and TensorRT-LLM's. A row over several nodes gets each engine's
// multi-node flags (docs/planner.md "Launch commands"). Every flag printed, on every node, is one engine_flags.yaml
// lists for the engine's version: InputError naming the flag and the file otherwise (nothing is printed).
std::vector<LaunchCommand> launch_commands(const std::filesystem::path& data_dir, const std::string& model_name,
                                           const PlanRow& row, std::int64_t max_model_len, model::KvDtype kv_dtype,
                                           double gpu_memory_utilization);

}  // namespace moeplan::planner
