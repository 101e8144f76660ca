// planner/serving_compare: API break-even and launch commands (see serving_compare.hpp).
#include "planner/serving_compare.hpp"

#include <algorithm>
#include <cmath>

#include "common/error.hpp"
#include "common/files.hpp"
#include "common/text.hpp"
#include "planner/cost.hpp"

namespace moeplan::planner {

SelfHostedMonth self_hosted_month(const PlanRow& self, double capacity_tokens_per_month, double tokens_per_month) {
  SelfHostedMonth m;
  if (capacity_tokens_per_month <= 0) return m;
  const double replica_months = tokens_per_month / capacity_tokens_per_month;
  m.gpu_hours_needed = replica_months * self.count * kHoursPerMonth;
  m.replicas = std::max(1, static_cast<int>(std::ceil(replica_months - 1e-12)));
  m.gpu_hours_billed = m.replicas * self.count * kHoursPerMonth;
  m.usd = m.replicas * self.usd_per_month;
  return m;
}

ApiComparison compare_api(const gpu_db::Database& db, const std::string& model_name, const PlanRow& self,
                          std::int64_t input_tokens, std::int64_t output_tokens, double tokens_per_month) {
  if (!(tokens_per_month >= 0) || !std::isfinite(tokens_per_month))
    throw InputError("--tokens-per-month must be a positive number of tokens");
  const double in = static_cast<double>(input_tokens), out = static_cast<double>(output_tokens);
  const double request_m_tokens = (in + out) / 1e6;  // one request, in millions of tokens
  ApiComparison c;
  c.tokens_per_month = tokens_per_month;
  for (const auto& p : db.api_prices()) {
    if (p.model != model_name) continue;
    ApiOffer o{p, (in * p.usd_per_m_input_tokens + out * p.usd_per_m_output_tokens) / (in + out)};
    o.usd_per_1000_requests = 1000 * request_m_tokens * o.usd_per_m_blended;
    o.usd_per_month = tokens_per_month / 1e6 * o.usd_per_m_blended;
    c.offers.push_back(o);
  }
  if (c.offers.empty())
    throw InputError("no API price for " + model_name + " in data/prices/api.yaml (models with prices: see that file)");
  std::sort(c.offers.begin(), c.offers.end(),
            [](const ApiOffer& a, const ApiOffer& b) { return a.usd_per_m_blended < b.usd_per_m_blended; });
  const auto trusted = std::find_if(c.offers.begin(), c.offers.end(), [](const ApiOffer& o) {
    return o.price.flags.empty() && o.price.confidence != gpu_db::Confidence::low;
  });
  c.reference = trusted == c.offers.end() ? 0 : static_cast<std::size_t>(trusted - c.offers.begin());
  c.self_usd_per_m_blended = self.usd_per_m_blended_tokens;
  c.self_usd_per_1000_requests = 1000 * request_m_tokens * self.usd_per_m_blended_tokens;
  c.self_usd_per_month = self.usd_per_month;
  const double tokens_per_s = self.output_tokens_per_s * (in + out) / out;
  c.self_capacity_tokens_per_month = tokens_per_s * 3600.0 * kHoursPerMonth;
  // Renting the replica all month costs the same at any volume; the API costs volume × price.
  c.breakeven_tokens_per_month = c.self_usd_per_month / c.reference_offer().usd_per_m_blended * 1e6;
  c.breakeven_utilization = c.breakeven_tokens_per_month / c.self_capacity_tokens_per_month;
  if (tokens_per_month > 0) c.month = self_hosted_month(self, c.self_capacity_tokens_per_month, tokens_per_month);
  return c;
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
                  0, ""};
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
    c.note += "; node 0 runs the API server and data-parallel ranks 0-" + std::to_string(l.dp / nodes - 1) +
              ", node i (1-" + std::to_string(nodes - 1) + ") the next " + local + " ranks";
    return c;
  }
  c.command = "ray start --head --port 6379 && " + base + " --distributed-executor-backend ray" +
              (l.dp > 1 ? " --data-parallel-backend ray" : "");
  c.other_nodes = "ray start --address " + std::string(kHeadAddress) + ":6379";
  c.note += "; one replica spans " + std::to_string((replica + in.row.gpus_per_node - 1) / in.row.gpus_per_node) +
            " nodes, so the GPUs form a Ray cluster: start the other nodes' Ray workers, then serve from node 0";
  return c;
}

// SGLang: --tp is the GPUs of a pipeline stage (tp x dp), --dp splits them for attention; over several nodes every
// node runs the same command with its --node-rank.
LaunchCommand sglang_command(const LaunchInputs& in) {
  const auto& l = in.row.layout;
  std::string sg = "python -m sglang.launch_server --model-path " + in.repo + " --tp " + std::to_string(l.tp * l.dp);
  if (l.pp > 1) sg += " --pp-size " + std::to_string(l.pp);
  if (l.ep > 1) sg += " --ep " + std::to_string(l.ep);
  if (l.dp > 1) sg += " --dp " + std::to_string(l.dp) + " --enable-dp-attention";
  sg += " --context-length " + std::to_string(in.max_model_len) + " --mem-fraction-static " + in.util;
  if (in.kv == "fp8") sg += " --kv-cache-dtype fp8_e4m3";
  LaunchCommand c{"SGLang", sg, "SGLang's --tp is the GPUs per pipeline stage; --dp splits them for attention", 0, ""};
  if (in.row.nodes <= 1) return c;
  const std::string multi = " --nnodes " + std::to_string(in.row.nodes) + " --dist-init-addr " + kHeadAddress + ":5000";
  c.command = sg + multi + " --node-rank 0";
  c.other_nodes = sg + multi + " --node-rank <i>";
  c.note += "; every node runs the command with its --node-rank (1-" + std::to_string(in.row.nodes - 1) + " on the others)";
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
  if (l.dp > 1) note += "; add `enable_attention_dp: true` to --extra_llm_api_options";
  if (in.kv == "fp8") note += "; `kv_cache_config: {dtype: fp8}` there for the FP8 KV cache";
  LaunchCommand c{"TensorRT-LLM", trt, note, 0, ""};
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
          0, ""};
}

}  // namespace

std::vector<LaunchCommand> launch_commands(const std::filesystem::path& checkpoints_yaml, const std::string& model_name,
                                           const PlanRow& row, std::int64_t max_model_len, model::KvDtype kv_dtype,
                                           double gpu_memory_utilization) {
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
  std::vector<LaunchCommand> out;
  const std::string engine = row.engine ? row.engine->name : "generic";
  if (engine == "llamacpp") out = {llamacpp_command(in)};
  else if (engine == "vllm") out = {vllm_command(in)};
  else if (engine == "sglang") out = {sglang_command(in)};
  else if (engine == "trtllm") out = {trtllm_command(in)};
  else out = {vllm_command(in), sglang_command(in), trtllm_command(in)};
  if (!note.empty())
    for (auto& c : out) c.note = note + "; " + c.note;
  return out;
}

}  // namespace moeplan::planner
