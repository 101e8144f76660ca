// reports/model_report: `moeplan models` (see model_report.hpp).
#include "reports/model_report.hpp"

#include "common/text.hpp"
#include "model/params.hpp"

namespace moeplan::reports {

using nlohmann::json;
using namespace moeplan::model;

namespace {
json params_json(const ParamCounts& p) {
  json by_module = json::object();
  for (int i = 0; i < kModuleCount; ++i)
    if (p.by_module[static_cast<std::size_t>(i)]) by_module[module_name(static_cast<Module>(i))] = p.by_module[static_cast<std::size_t>(i)];
  return {{"total", p.total}, {"text", p.text}, {"vision", p.vision}, {"mtp", p.mtp},
          {"active_with_embedding", p.active_with_embedding}, {"active_without_embedding", p.active_without_embedding},
          {"by_module", by_module}};
}
}  // namespace

Report models_report(const std::vector<ModelSummary>& models) {
  Report r;
  Table t;
  t.columns = {"model", "type", "layers", "MoE/dense", "experts", "attention", "total params", "active params",
               "KV B/token (bf16)", "KV @128k (bf16)", "max context"};
  t.right_align = {false, false, true, false, false, false, true, true, true, true, true};
  r.json = json::array();
  for (const auto& s : models) {
    t.rows.push_back({s.name, s.model_type, std::to_string(s.layers),
                      std::to_string(s.moe_layers) + "/" + std::to_string(s.dense_layers), s.experts_text, s.attention_text,
                      format_params(static_cast<double>(s.params.total)),
                      format_params(static_cast<double>(s.params.active_with_embedding)),
                      with_commas(s.kv_bytes_per_token_bf16), format_gb(static_cast<double>(s.kv_bytes_128k_bf16)),
                      with_commas(s.max_context_tokens)});
    r.json.push_back({{"name", s.name}, {"model_type", s.model_type}, {"layers", s.layers}, {"moe_layers", s.moe_layers},
                      {"dense_layers", s.dense_layers}, {"global_layers", s.global_layers},
                      {"chunked_layers", s.chunked_layers}, {"sliding_layers", s.sliding_layers},
                      {"mla_layers", s.mla_layers}, {"nope_layers", s.nope_layers},
                      {"attention_window_tokens", s.attention_window_tokens}, {"experts", s.experts_text},
                      {"params", params_json(s.params)}, {"kv_bytes_per_token_bf16", s.kv_bytes_per_token_bf16},
                      {"kv_bytes_per_sequence_8k_bf16", s.kv_bytes_8k_bf16},
                      {"kv_bytes_per_sequence_128k_bf16", s.kv_bytes_128k_bf16},
                      {"max_context_tokens", s.max_context_tokens}});
  }
  r.tables.push_back(std::move(t));
  r.notes.push_back("active params count the input embedding; KV B/token assumes every layer keeps the token; "
                    "KV @128k keeps only the chunk/window on chunked/sliding layers");
  return r;
}

Report model_detail_report(const ModelConfig& m, const ModelSummary& s) {
  Report r;
  r.header = {"model " + m.name + " (" + m.model_type + ", " + m.source + ")",
              "hidden " + std::to_string(m.hidden) + ", " + std::to_string(m.num_layers) + " layers, " +
                  std::to_string(m.num_heads) + " query heads, " + std::to_string(m.num_kv_heads) + " KV heads, head_dim " +
                  std::to_string(m.head_dim) + ", vocab " + with_commas(m.vocab),
              "MLP: " + std::to_string(s.moe_layers) + " MoE (" + s.experts_text + ") + " + std::to_string(s.dense_layers) +
                  " dense; attention: " + s.attention_text};
  Table t;
  t.title = "parameters by module";
  t.columns = {"module", "params", "share"};
  t.right_align = {false, true, true};
  for (int i = 0; i < kModuleCount; ++i) {
    const auto n = s.params.by_module[static_cast<std::size_t>(i)];
    if (!n) continue;
    t.rows.push_back({module_name(static_cast<Module>(i)), with_commas(n),
                      format_fixed(100.0 * static_cast<double>(n) / static_cast<double>(s.params.total), 2) + " %"});
  }
  t.rows.push_back({"text (language model)", with_commas(s.params.text), ""});
  if (s.params.vision) t.rows.push_back({"vision (encoder + projector)", with_commas(s.params.vision), ""});
  if (s.params.mtp) t.rows.push_back({"mtp (multi-token prediction)", with_commas(s.params.mtp), ""});
  t.rows.push_back({"total", with_commas(s.params.total), ""});
  t.rows.push_back({"active per token (with input embedding)", with_commas(s.params.active_with_embedding), ""});
  t.rows.push_back({"active per token (without input embedding)", with_commas(s.params.active_without_embedding), ""});
  r.tables.push_back(std::move(t));

  Table layers;
  layers.title = "layers";
  layers.columns = {"layer", "mlp", "attention", "position", "params"};
  layers.right_align = {true, false, false, false, true};
  json layers_json = json::array();
  for (const auto& l : m.layers) {
    std::string attn = attention_kind_name(l.attention);
    if (l.attention_window_tokens) attn += "(" + std::to_string(l.attention_window_tokens) + ")";
    const char* mlp = l.mlp == MlpKind::moe ? "moe" : "dense";
    const char* pos = l.attention == AttentionKind::mla ? "rope (decoupled)" : (l.rope ? "rope" : "nope");
    layers.rows.push_back({std::to_string(l.index), mlp, attn, pos, with_commas(layer_params(l))});
    layers_json.push_back({{"index", l.index}, {"mlp", mlp}, {"attention", attention_kind_name(l.attention)},
                           {"attention_window_tokens", l.attention_window_tokens}, {"rope", l.rope},
                           {"params", layer_params(l)}});
  }
  r.tables.push_back(std::move(layers));
  r.json = {{"name", m.name}, {"model_type", m.model_type}, {"source", m.source}, {"hidden", m.hidden},
            {"num_layers", m.num_layers}, {"num_heads", m.num_heads}, {"num_kv_heads", m.num_kv_heads},
            {"head_dim", m.head_dim}, {"vocab", m.vocab}, {"num_experts", m.num_experts},
            {"experts_per_token", m.experts_per_token}, {"num_shared_experts", m.num_shared_experts},
            {"max_context_tokens", m.max_context_tokens}, {"checkpoint_precision", m.checkpoint_quant.precision},
            {"params", params_json(s.params)}, {"kv_bytes_per_token_bf16", s.kv_bytes_per_token_bf16},
            {"layers", layers_json}};
  r.notes.push_back("active per token = all non-expert weights + top-k of the routed experts in every MoE layer");
  return r;
}

}  // namespace moeplan::reports
