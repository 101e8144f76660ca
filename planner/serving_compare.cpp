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
  c.self_usd_per_m_blended = self.usd_per_m_blended_tokens;
  c.self_usd_per_1000_requests = 1000 * request_m_tokens * self.usd_per_m_blended_tokens;
  c.self_usd_per_month = self.usd_per_month;
  const double tokens_per_s = self.output_tokens_per_s * (in + out) / out;
  c.self_capacity_tokens_per_month = tokens_per_s * 3600.0 * kHoursPerMonth;
  // Renting the replica all month costs the same at any volume; the API costs volume × price.
  c.breakeven_tokens_per_month = c.self_usd_per_month / c.offers.front().usd_per_m_blended * 1e6;
  c.breakeven_utilization = c.breakeven_tokens_per_month / c.self_capacity_tokens_per_month;
  if (tokens_per_month > 0) c.month = self_hosted_month(self, c.self_capacity_tokens_per_month, tokens_per_month);
  return c;
}

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
  const auto& l = row.layout;
  const std::string kv = kv_dtype == model::KvDtype::fp8 ? "fp8" : "auto";
  const std::string util = format_fixed(gpu_memory_utilization, 2);
  std::vector<LaunchCommand> out;
  std::string vllm = "vllm serve " + repo + " --tensor-parallel-size " + std::to_string(l.tp);
  if (l.pp > 1) vllm += " --pipeline-parallel-size " + std::to_string(l.pp);
  if (l.dp > 1) vllm += " --data-parallel-size " + std::to_string(l.dp);
  if (l.ep > 1) vllm += " --enable-expert-parallel";
  vllm += " --max-model-len " + std::to_string(max_model_len) + " --kv-cache-dtype " + kv + " --gpu-memory-utilization " +
          util + " --max-num-seqs " + std::to_string(row.batch * l.dp);
  out.push_back({"vLLM", vllm, "with --data-parallel-size, vLLM runs attention data parallel and experts over tp x dp"});
  std::string sg = "python -m sglang.launch_server --model-path " + repo + " --tp " + std::to_string(l.tp * l.dp);
  if (l.pp > 1) sg += " --pp-size " + std::to_string(l.pp);
  if (l.ep > 1) sg += " --ep " + std::to_string(l.ep);
  if (l.dp > 1) sg += " --dp " + std::to_string(l.dp) + " --enable-dp-attention";
  sg += " --context-length " + std::to_string(max_model_len) + " --mem-fraction-static " + util;
  if (kv == "fp8") sg += " --kv-cache-dtype fp8_e4m3";
  out.push_back({"SGLang", sg, "SGLang's --tp is the GPUs per pipeline stage; --dp splits them for attention"});
  std::string trt = "trtllm-serve " + repo + " --tp_size " + std::to_string(l.tp * l.dp) + " --ep_size " +
                    std::to_string(l.ep) + " --pp_size " + std::to_string(l.pp) + " --max_batch_size " +
                    std::to_string(row.batch) + " --max_seq_len " + std::to_string(max_model_len) +
                    " --kv_cache_free_gpu_memory_fraction " + util;
  std::string trt_note = "TensorRT-LLM's tp_size counts all GPUs of a stage";
  if (l.dp > 1) trt_note += "; add `enable_attention_dp: true` to --extra_llm_api_options";
  if (kv == "fp8") trt_note += "; `kv_cache_config: {dtype: fp8}` there for the FP8 KV cache";
  out.push_back({"TensorRT-LLM", trt, trt_note});
  const std::string engine = row.engine ? row.engine->name : "generic";
  if (engine == "llamacpp") {
    // llama-server: one slot per sequence, the context shared by the slots; layers (pp) or rows (tp) split the GPUs.
    std::string ll = "llama-server -hf " + repo + " -ngl 999 -np " + std::to_string(row.batch) + " -c " +
                     std::to_string(max_model_len * row.batch) + " --cont-batching";
    if (l.gpus() > 1) ll += l.tp > 1 ? " --split-mode row" : " --split-mode layer";
    if (kv == "fp8") ll += " --cache-type-k q8_0 --cache-type-v q8_0";
    out = {{"llama.cpp", ll, "llama.cpp loads GGUF: convert the checkpoint with convert_hf_to_gguf.py if " + repo +
                                 " has no GGUF files; -c is the context shared by the -np slots"}};
  } else if (engine != "generic") {
    const std::string display = row.engine->display_name;
    std::vector<LaunchCommand> one;
    for (auto& c : out)
      if (c.engine == display) one.push_back(std::move(c));
    out = std::move(one);
  }
  if (!note.empty())
    for (auto& c : out) c.note = note + "; " + c.note;
  return out;
}

}  // namespace moeplan::planner
