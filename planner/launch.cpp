// planner/launch: launch commands and the engines' documented flags (see launch.hpp).
#include "planner/launch.hpp"

#include <sstream>
#include <utility>

#include "common/error.hpp"
#include "common/files.hpp"
#include "common/text.hpp"

namespace moeplan::planner {

bool EngineFlagList::documents(const std::string& flag) const {
  for (const auto& t : tools)
    if (t.flags.count(flag)) return true;
  return false;
}

bool EngineFlagList::documents_key(const std::string& key) const {
  for (const auto& t : tools)
    if (t.keys.count(key)) return true;
  return false;
}

const EngineFlagList::Check* EngineFlagList::check_of(const std::string& flag) const {
  for (const auto& t : tools)
    for (const auto& c : t.checked)
      if (c.names.count(flag)) return &c;
  return nullptr;
}

namespace {

// A tool's `checked` (field "flags") or `keys_checked` (field "keys") list: each entry names its source, the date it
// was read, and a commit (40 hex digits) or, for a tool documented only by its manual, the manual's version.
std::vector<EngineFlagList::Check> load_checks(const YAML::Node& list, const char* names_field, const std::string& what,
                                               const std::string& where) {
  std::vector<EngineFlagList::Check> out;
  if (!list || !list.IsSequence() || list.size() == 0) throw InputError(where + ": " + what + " needs a checked list");
  for (const auto& n : list) {
    EngineFlagList::Check c;
    c.source = yaml_get<std::string>(n, "source", where);
    c.read = yaml_get<std::string>(n, "read", where);
    if (n["commit"]) c.commit = yaml_get<std::string>(n, "commit", where);
    if (n["version"]) c.version = yaml_get<std::string>(n, "version", where);
    const bool hex40 = c.commit.size() == 40 && c.commit.find_first_not_of("0123456789abcdef") == std::string::npos;
    if (c.source.empty() || c.read.empty() || (!hex40 && c.version.empty()))
      throw InputError(where + ": " + what + ": a check of '" + c.source +
                       "' needs a source, the date read, and a 40-hex commit (or the manual's version)");
    if (!n[names_field] || !n[names_field].IsSequence() || n[names_field].size() == 0)
      throw InputError(where + ": " + what + ": the check of '" + c.source + "' lists no " + names_field);
    for (const auto& f : n[names_field]) c.names.insert(f.as<std::string>());
    out.push_back(std::move(c));
  }
  return out;
}

// Every listed name is in one check, and every checked name is listed.
void require_checked(const std::set<std::string>& listed, const std::vector<EngineFlagList::Check>& checks,
                     const std::string& what, const std::string& where) {
  std::set<std::string> found;
  for (const auto& c : checks) found.insert(c.names.begin(), c.names.end());
  for (const auto& f : listed)
    if (!found.count(f)) throw InputError(where + ": " + what + " lists " + f + ", which no checked entry found in a source");
  for (const auto& f : found)
    if (!listed.count(f)) throw InputError(where + ": " + what + " checked " + f + " but does not list it");
}

EngineFlagList::Tool load_tool(const YAML::Node& t, const std::string& engine, const std::string& where) {
  EngineFlagList::Tool tool;
  tool.tool = yaml_get<std::string>(t, "tool", where);
  tool.docs = yaml_get<std::string>(t, "docs", where);
  const std::string what = engine + " tool '" + tool.tool + "'";
  if (tool.docs.empty()) throw InputError(where + ": " + what + " needs docs");
  if (!t["flags"] || !t["flags"].IsSequence() || t["flags"].size() == 0)
    throw InputError(where + ": " + what + " needs a 'flags' list");
  for (const auto& f : t["flags"]) tool.flags.insert(f.as<std::string>());
  tool.checked = load_checks(t["checked"], "flags", what, where);
  require_checked(tool.flags, tool.checked, what, where);
  if (t["keys"]) {
    for (const auto& k : t["keys"]) tool.keys.insert(k.as<std::string>());
    tool.keys_checked = load_checks(t["keys_checked"], "keys", what + " keys", where);
    require_checked(tool.keys, tool.keys_checked, what + " keys", where);
  }
  return tool;
}

}  // namespace

EngineFlags EngineFlags::load(const std::filesystem::path& yaml_path, const gpu_db::EngineTable& engines) {
  EngineFlags out;
  out.file_ = yaml_path.string();
  const std::string& where = out.file_;
  const YAML::Node root = parse_yaml_file(yaml_path);
  if (!root.IsMap() || !root["engines"] || !root["engines"].IsSequence())
    throw InputError(where + ": expected a top-level 'engines' list");
  for (const auto& e : root["engines"]) {
    EngineFlagList list;
    list.engine = yaml_get<std::string>(e, "engine", where);
    list.version = yaml_get<std::string>(e, "version", where);
    const std::string& named = engines.engine(list.engine).versions;  // InputError for an unknown engine
    if (list.version != named)
      throw InputError(where + ": " + list.engine + "'s flags were read for version '" + list.version +
                       "', but data/engines.yaml models version '" + named + "': read them again for that version");
    if (!e["tools"] || !e["tools"].IsSequence() || e["tools"].size() == 0)
      throw InputError(where + ": " + list.engine + " needs a 'tools' list");
    for (const auto& t : e["tools"]) list.tools.push_back(load_tool(t, list.engine, where));
    for (const auto& other : out.engines_)
      if (other.engine == list.engine) throw InputError(where + ": engine " + list.engine + " is listed twice");
    out.engines_.push_back(std::move(list));
  }
  return out;
}

const EngineFlagList& EngineFlags::engine(const std::string& name) const {
  for (const auto& e : engines_)
    if (e.engine == name) return e;
  throw InputError(file_ + ": no documented flags for engine " + name);
}

std::vector<std::string> command_flags(const std::string& command) {
  std::vector<std::string> out;
  std::istringstream words(command);
  std::string w;
  while (words >> w)
    if (w.size() > 1 && w[0] == '-' && !(w[1] >= '0' && w[1] <= '9')) out.push_back(w.substr(0, w.find('=')));
  return out;
}

namespace {

// What every engine's command needs: the checkpoint, the row and its memory settings.
struct LaunchInputs {
  std::string repo;
  const PlanRow& row;
  std::int64_t max_model_len = 0;
  std::string kv;    // "fp8" or "auto"
  std::string util;  // gpu memory share, 2 decimals
};

// The head node's address and the ports the multi-node commands use (placeholders the user fills in; the ports are
// the engines' documentation examples).
constexpr const char* kHeadAddress = "<node0-ip>";

// The nodes after node 0, named for a note: "node 1" for two nodes, "each node i (1 to 3)" for four.
std::string other_nodes_named(int nodes) {
  return nodes == 2 ? "node 1" : "each node i (1 to " + std::to_string(nodes - 1) + ")";
}

// vLLM (docs/planner.md "Launch commands"): --max-num-seqs is per data-parallel rank, i.e. the row's batch per attention
// group. Over several nodes each node runs its own `vllm serve` holding dp / nodes ranks (the first with the API
// server, the others --headless); a replica wider than a node (tp x pp > GPUs per node) runs on a Ray cluster.
LaunchCommand vllm_command(const LaunchInputs& in) {
  const auto& l = in.row.layout;
  std::string base = "vllm serve " + in.repo + " --tensor-parallel-size " + std::to_string(l.tp);
  if (l.pp > 1) base += " --pipeline-parallel-size " + std::to_string(l.pp);
  if (l.dp > 1) base += " --data-parallel-size " + std::to_string(l.dp);
  if (l.ep > 1) base += " --enable-expert-parallel";
  base += " --max-model-len " + std::to_string(in.max_model_len) + " --kv-cache-dtype " + in.kv + " --gpu-memory-utilization " +
          in.util + " --max-num-seqs " + std::to_string(in.row.batch);
  LaunchCommand c{"vLLM", base,
                  "--max-num-seqs is per data-parallel rank; with --data-parallel-size, vLLM runs attention data "
                  "parallel and experts over tp x dp",
                  0, "", {}};
  const int nodes = in.row.nodes;
  if (nodes <= 1) return c;
  const int replica = l.tp * l.pp;
  if (replica <= in.row.gpus_per_node && l.dp % nodes == 0) {
    const std::string local = std::to_string(l.dp / nodes);
    const std::string rendezvous =
        " --data-parallel-address " + std::string(kHeadAddress) + " --data-parallel-rpc-port 13345";
    c.command = base + " --data-parallel-size-local " + local + rendezvous;
    c.other_nodes = base + " --headless --data-parallel-size-local " + local + " --data-parallel-start-rank <" + local +
                    " x i>" + rendezvous;
    c.note += "; node 0 runs the API server and data-parallel ranks 0-" + std::to_string(l.dp / nodes - 1) + ", " +
              other_nodes_named(nodes) + " the next " + local + " ranks";
    return c;
  }
  c.command = "ray start --head --port 6379 && " + base + " --distributed-executor-backend ray" +
              (l.dp > 1 ? " --data-parallel-backend ray" : "");
  c.other_nodes = "ray start --address " + std::string(kHeadAddress) + ":6379";
  c.note += "; one replica spans " + std::to_string((replica + in.row.gpus_per_node - 1) / in.row.gpus_per_node) +
            " nodes, so the GPUs form a Ray cluster: start the other nodes' Ray workers, then serve from node 0";
  return c;
}

// SGLang: --tp-size is the GPUs of a pipeline stage (tp x dp), --dp-size splits them for attention; over several
// nodes every node runs the same command with its --node-rank. The flags are the names server_args.py defines
// (--tp-size, --dp-size, --ep-size), not the documentation's --tp / --dp, which argparse takes only as abbreviations.
LaunchCommand sglang_command(const LaunchInputs& in) {
  const auto& l = in.row.layout;
  std::string sg = "python -m sglang.launch_server --model-path " + in.repo + " --tp-size " + std::to_string(l.tp * l.dp);
  if (l.pp > 1) sg += " --pp-size " + std::to_string(l.pp);
  if (l.ep > 1) sg += " --ep-size " + std::to_string(l.ep);
  if (l.dp > 1) sg += " --dp-size " + std::to_string(l.dp) + " --enable-dp-attention";
  sg += " --context-length " + std::to_string(in.max_model_len) + " --mem-fraction-static " + in.util;
  if (in.kv == "fp8") sg += " --kv-cache-dtype fp8_e4m3";
  LaunchCommand c{"SGLang", sg, "SGLang's --tp-size is the GPUs per pipeline stage; --dp-size splits them for attention", 0, "", {}};
  if (in.row.nodes <= 1) return c;
  const std::string multi = " --nnodes " + std::to_string(in.row.nodes) + " --dist-init-addr " + kHeadAddress + ":5000";
  c.command = sg + multi + " --node-rank 0";
  c.other_nodes = sg + multi + " --node-rank <i>";
  c.note += "; every node runs the command with its own --node-rank (0 on node 0, i on " +
            other_nodes_named(in.row.nodes) + ")";
  return c;
}

// TensorRT-LLM: --tp_size counts all GPUs of a stage; over several nodes one srun (or mpirun) starts a rank per GPU
// under trtllm-llmapi-launch.
LaunchCommand trtllm_command(const LaunchInputs& in) {
  const auto& l = in.row.layout;
  const std::string trt = "trtllm-serve " + in.repo + " --tp_size " + std::to_string(l.tp * l.dp) + " --ep_size " +
                          std::to_string(l.ep) + " --pp_size " + std::to_string(l.pp) + " --max_batch_size " +
                          std::to_string(in.row.batch) + " --max_seq_len " + std::to_string(in.max_model_len) +
                          " --kv_cache_free_gpu_memory_fraction " + in.util;
  std::string note = "TensorRT-LLM's tp_size counts all GPUs of a stage";
  std::vector<std::string> keys;
  if (l.dp > 1) {
    note += "; add `enable_attention_dp: true` to --extra_llm_api_options";
    keys.push_back("enable_attention_dp");
  }
  if (in.kv == "fp8") {
    note += "; `kv_cache_config: {dtype: fp8}` there for the FP8 KV cache";
    keys.push_back("kv_cache_config.dtype");
  }
  LaunchCommand c{"TensorRT-LLM", trt, note, 0, "", keys};
  if (in.row.nodes <= 1) return c;
  c.command = "srun -N " + std::to_string(in.row.nodes) + " --ntasks " + std::to_string(in.row.count) + " --ntasks-per-node " +
              std::to_string(in.row.gpus_per_node) + " --mpi=pmix trtllm-llmapi-launch " + trt;
  c.note += "; one rank per GPU over " + std::to_string(in.row.nodes) + " nodes (Slurm; under mpirun: mpirun -n " +
            std::to_string(in.row.count) + " -H <hosts> trtllm-llmapi-launch trtllm-serve ...)";
  return c;
}

// llama-server: one slot per sequence, the context shared by the slots; layers (pp) or rows (tp) split the GPUs.
LaunchCommand llamacpp_command(const LaunchInputs& in) {
  const auto& l = in.row.layout;
  std::string ll = "llama-server -hf " + in.repo + " -ngl 999 -np " + std::to_string(in.row.batch) + " -c " +
                   std::to_string(in.max_model_len * in.row.batch) + " --cont-batching";
  if (l.gpus() > 1) ll += l.tp > 1 ? " --split-mode row" : " --split-mode layer";
  if (in.kv == "fp8") ll += " --cache-type-k q8_0 --cache-type-v q8_0";
  return {"llama.cpp", ll,
          "llama.cpp loads GGUF: convert the checkpoint with convert_hf_to_gguf.py if " + in.repo +
              " has no GGUF files; -c is the context shared by the -np slots",
          0, "", {}};
}

// Every flag of the command, on node 0 and on the other nodes, and every config key of its note is one the engine's
// list holds, checked against its source, for its version.
void require_documented(const LaunchCommand& c, const EngineFlags& flags, const std::string& engine) {
  const EngineFlagList& documented = flags.engine(engine);
  for (const std::string* line : {&c.command, &c.other_nodes})
    for (const auto& f : command_flags(*line))
      if (!documented.documents(f))
        throw InputError(flags.file() + ": " + engine + " " + documented.version + " lists no flag " + f +
                         ", which moeplan's " + c.engine + " launch command uses (add it with the source file and " +
                         "commit that define it, or use an engine version that has it)");
  for (const auto& k : c.config_keys)
    if (!documented.documents_key(k))
      throw InputError(flags.file() + ": " + engine + " " + documented.version + " lists no config key " + k +
                       ", which moeplan's " + c.engine + " launch note names");
}

}  // namespace

std::vector<LaunchCommand> launch_commands(const std::filesystem::path& data_dir, const std::string& model_name,
                                           const PlanRow& row, std::int64_t max_model_len, model::KvDtype kv_dtype,
                                           double gpu_memory_utilization) {
  const auto checkpoints_yaml = data_dir / "checkpoints.yaml";
  // The repository: an exact (model, format) row, else the model's bf16 row with a note.
  const std::string format = row.precision.substr(0, row.precision.find(':'));
  std::string repo, base, note;
  const YAML::Node root = parse_yaml_file(checkpoints_yaml);
  for (const auto& n : root["checkpoints"]) {
    const std::string where = checkpoints_yaml.string();
    if (yaml_get<std::string>(n, "model", where) != model_name) continue;
    const std::string f = yaml_get<std::string>(n, "format", where);
    if (f == format || (format == "fp8-block" && f == "fp8")) repo = yaml_get<std::string>(n, "repo", where);
    if (f == "bf16") base = yaml_get<std::string>(n, "repo", where);
  }
  if (repo.empty()) {
    repo = base.empty() ? "<checkpoint of " + model_name + ">" : base;
    note = "no published " + format + " checkpoint listed in data/checkpoints.yaml: quantise " + repo + " to " + format +
           " (e.g. with NVIDIA ModelOpt or llm-compressor) or let the engine quantise on load";
  }
  const LaunchInputs in{repo, row, max_model_len, kv_dtype == model::KvDtype::fp8 ? "fp8" : "auto",
                        format_fixed(gpu_memory_utilization, 2)};
  std::vector<std::pair<std::string, LaunchCommand>> built;  // (engines.yaml name, command)
  const std::string engine = row.engine ? row.engine->name : "generic";
  if (engine == "llamacpp") built = {{"llamacpp", llamacpp_command(in)}};
  else if (engine == "vllm") built = {{"vllm", vllm_command(in)}};
  else if (engine == "sglang") built = {{"sglang", sglang_command(in)}};
  else if (engine == "trtllm") built = {{"trtllm", trtllm_command(in)}};
  else built = {{"vllm", vllm_command(in)}, {"sglang", sglang_command(in)}, {"trtllm", trtllm_command(in)}};
  const EngineFlags flags =
      EngineFlags::load(data_dir / "engine_flags.yaml", gpu_db::EngineTable::load(data_dir / "engines.yaml"));
  std::vector<LaunchCommand> out;
  for (auto& [name, c] : built) {
    require_documented(c, flags, name);
    if (!note.empty()) c.note = note + "; " + c.note;
    out.push_back(std::move(c));
  }
  return out;
}

}  // namespace moeplan::planner
