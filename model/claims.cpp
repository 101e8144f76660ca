#include "model/claims.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <set>

#include "common/error.hpp"
#include "common/files.hpp"
#include "common/text.hpp"
#include "model/kv_cache.hpp"
#include "model/params.hpp"

namespace moeplan::model {

namespace {

std::optional<double> num(std::int64_t v) { return static_cast<double>(v); }
std::optional<double> moe_only(const ModelConfig& m, std::int64_t v) {
  if (!m.is_moe()) return std::nullopt;
  return static_cast<double>(v);
}

}  // namespace

std::optional<std::int64_t> nope_layer_interval(const ModelConfig& m) {
  std::vector<int> nope;
  for (const auto& l : m.layers)
    if (!l.rope && l.attention != AttentionKind::mla) nope.push_back(l.index);
  if (nope.empty()) return std::nullopt;
  const std::int64_t interval = nope.front() + 1;
  // Every Nth layer: layers N-1, 2N-1, ... and no others.
  for (std::size_t i = 0; i < nope.size(); ++i)
    if (nope[i] != static_cast<std::int64_t>(i + 1) * interval - 1) return std::nullopt;
  if (static_cast<std::int64_t>(nope.size()) != m.num_layers / interval) return std::nullopt;
  return interval;
}

const std::vector<ClaimQuantity>& claim_quantities() {
  static const std::vector<ClaimQuantity> kQuantities = {
      {"num_layers", "decoder layers (num_hidden_layers)",
       [](const ModelConfig& m, const ClaimContext&) { return num(m.num_layers); }},
      {"hidden_size", "hidden size (hidden_size)",
       [](const ModelConfig& m, const ClaimContext&) { return num(m.hidden); }},
      {"num_heads", "query heads (num_attention_heads)",
       [](const ModelConfig& m, const ClaimContext&) { return num(m.num_heads); }},
      {"num_kv_heads", "KV heads (num_key_value_heads)",
       [](const ModelConfig& m, const ClaimContext&) { return num(m.num_kv_heads); }},
      {"head_dim", "dimension of one head (head_dim)",
       [](const ModelConfig& m, const ClaimContext&) { return num(m.head_dim); }},
      {"vocab_size", "vocabulary (vocab_size)", [](const ModelConfig& m, const ClaimContext&) { return num(m.vocab); }},
      {"max_context_tokens", "longest context (max_position_embeddings)",
       [](const ModelConfig& m, const ClaimContext&) { return num(m.max_context_tokens); }},
      {"num_experts", "routed experts per MoE layer",
       [](const ModelConfig& m, const ClaimContext&) { return moe_only(m, m.num_experts); }},
      {"active_experts", "routed experts per token (top-k, num_experts_per_tok; shared experts not counted)",
       [](const ModelConfig& m, const ClaimContext&) { return moe_only(m, m.experts_per_token); }},
      {"shared_experts", "shared experts per MoE layer",
       [](const ModelConfig& m, const ClaimContext&) { return moe_only(m, m.num_shared_experts); }},
      {"moe_layers", "decoder layers with an MoE MLP",
       [](const ModelConfig& m, const ClaimContext&) { return moe_only(m, m.count_layers(MlpKind::moe)); }},
      {"kv_bytes_per_token",
       "BF16 K+V bytes one token adds when every layer keeps it (KV heads x head_dim x 2 x 2 bytes, summed over "
       "layers; MLA: the latent)",
       [](const ModelConfig& m, const ClaimContext&) { return num(kv_bytes_per_token_all_layers(m, KvDtype::bf16)); }},
      {"nope_layer_interval",
       "every Nth layer has no RoPE (no_rope_layers, or no_rope_layer_interval when that list is empty)",
       [](const ModelConfig& m, const ClaimContext&) -> std::optional<double> {
         if (const auto n = nope_layer_interval(m)) return static_cast<double>(*n);
         return std::nullopt;
       }},
      {"total_params", "parameters the checkpoint stores (text, vision and MTP)",
       [](const ModelConfig& m, const ClaimContext&) { return num(count_params(m).total); }},
      {"active_params",
       "parameters one token touches per forward pass, input embedding included (the basis of decode tokens/s: "
       "weight bytes read per token)",
       [](const ModelConfig& m, const ClaimContext&) { return num(count_params(m).active_with_embedding); }},
      {"weight_gb",
       "GB (1e9 bytes) of the text model's weights stored in the claim's precision (decoder layers, embedding, "
       "output head; no vision tower)",
       [](const ModelConfig& m, const ClaimContext& c) -> std::optional<double> {
         return text_weight_bytes(m, *c.precision).stored / 1e9;
       },
       true, false},
      {"decode_tokens_per_s_bound",
       "the claim's bandwidth_gb_s over the weight bytes one decode token reads in the claim's precision (top-k of "
       "the routed experts, every other decoder weight, the output head, one embedding row): the most tokens/s one "
       "sequence can decode there, KV cache and compute left out",
       [](const ModelConfig& m, const ClaimContext& c) -> std::optional<double> {
         return c.bandwidth_bytes_per_s / text_weight_bytes(m, *c.precision).read_per_token;
       },
       true, true},
  };
  return kQuantities;
}

const ClaimQuantity* find_claim_quantity(const std::string& name) {
  for (const auto& q : claim_quantities())
    if (name == q.name) return &q;
  return nullptr;
}

namespace {

std::string line_of(const std::string& file, const YAML::Node& n) { return file + ":" + std::to_string(n.Mark().line + 1); }

std::string scalar(const YAML::Node& entry, const char* key, const std::string& where, bool required) {
  const YAML::Node n = entry[key];
  if (!n) {
    if (required) throw InputError(where + ": claim has no '" + key + "'");
    return "";
  }
  if (!n.IsScalar()) throw InputError(where + ": '" + key + "' must be a single value");
  std::string s = n.as<std::string>();
  if (required && s.empty()) throw InputError(where + ": '" + key + "' is empty");
  return s;
}

// A number as YAML writes it, or with thousands separators ("393,216").
double number(const YAML::Node& entry, const char* key, const std::string& file, const std::string& where, bool required,
              double fallback) {
  const YAML::Node n = entry[key];
  if (!n) {
    if (required) throw InputError(where + ": claim has no '" + key + "'");
    return fallback;
  }
  const std::string at = line_of(file, n);
  if (!n.IsScalar()) throw InputError(at + ": '" + std::string(key) + "' must be a number");
  std::string s = n.as<std::string>();
  s.erase(std::remove(s.begin(), s.end(), ','), s.end());
  std::size_t used = 0;
  double v = 0;
  try {
    v = std::stod(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (s.empty() || used != s.size() || !std::isfinite(v))
    throw InputError(at + ": '" + std::string(key) + "' must be a number, not '" + n.as<std::string>() + "'");
  return v;
}

bool is_date(const std::string& s) {
  if (s.size() != 10 || s[4] != '-' || s[7] != '-') return false;
  for (std::size_t i : {0u, 1u, 2u, 3u, 5u, 6u, 8u, 9u})
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) return false;
  return true;
}

// `precision` and `bandwidth_gb_s`: given exactly when the claim's quantity needs them.
void read_context_keys(const YAML::Node& entry, const std::string& file, const std::string& where,
                       const ClaimQuantity& q, Claim& c) {
  c.precision = scalar(entry, "precision", where, q.needs_precision);
  if (!q.needs_precision && entry["precision"])
    throw InputError(line_of(file, entry["precision"]) + ": quantity '" + c.quantity + "' takes no 'precision'");
  c.bandwidth_gb_s = number(entry, "bandwidth_gb_s", file, where, q.needs_bandwidth, 0);
  if (!q.needs_bandwidth && entry["bandwidth_gb_s"])
    throw InputError(line_of(file, entry["bandwidth_gb_s"]) + ": quantity '" + c.quantity +
                     "' takes no 'bandwidth_gb_s'");
  if (q.needs_bandwidth && !(c.bandwidth_gb_s > 0))
    throw InputError(line_of(file, entry["bandwidth_gb_s"]) + ": 'bandwidth_gb_s' must be positive");
}

}  // namespace

std::vector<Claim> load_claims(const std::filesystem::path& path, const std::vector<std::string>& known_models) {
  const std::string file = path.string();
  const YAML::Node root = parse_yaml_file(path);
  if (!root.IsMap() || !root["claims"] || !root["claims"].IsSequence())
    throw InputError(file + ":" + std::to_string(root.Mark().line + 1) + ": expected a map with a 'claims' list");
  static const std::set<std::string> kKeys = {"model", "source",    "read",   "claim",     "quantity",
                                              "value", "tolerance", "reason", "precision", "bandwidth_gb_s"};
  std::vector<std::string> quantity_names;
  for (const auto& q : claim_quantities()) quantity_names.push_back(q.name);
  std::vector<Claim> out;
  for (const auto& entry : root["claims"]) {
    const std::string where = line_of(file, entry);
    if (!entry.IsMap()) throw InputError(where + ": each claim must be a map (model, source, read, claim, quantity, value, reason)");
    for (const auto& kv : entry) {
      const std::string key = kv.first.as<std::string>();
      if (!kKeys.count(key))
        throw InputError(line_of(file, kv.first) + ": " +
                         unknown_name_message("key", key, {kKeys.begin(), kKeys.end()},
                                              "a claim has model, source, read, claim, quantity, value, tolerance, "
                                              "reason, precision, bandwidth_gb_s"));
    }
    Claim c;
    c.where = where;
    c.model = scalar(entry, "model", where, true);
    c.source = scalar(entry, "source", where, true);
    c.read = scalar(entry, "read", where, true);
    c.text = scalar(entry, "claim", where, true);
    c.quantity = scalar(entry, "quantity", where, true);
    c.value = number(entry, "value", file, where, true, 0);
    c.tolerance = number(entry, "tolerance", file, where, false, 0);
    c.reason = scalar(entry, "reason", where, false);
    if (c.tolerance < 0) throw InputError(line_of(file, entry["tolerance"]) + ": 'tolerance' must be 0 or more (a relative share)");
    if (c.read != "not recorded" && !is_date(c.read))
      throw InputError(line_of(file, entry["read"]) + ": 'read' must be a date (YYYY-MM-DD) or \"not recorded\", not '" + c.read + "'");
    const ClaimQuantity* q = find_claim_quantity(c.quantity);
    if (!q)
      throw InputError(line_of(file, entry["quantity"]) + ": " +
                       unknown_name_message("quantity", c.quantity, quantity_names,
                                            "known: " + join(quantity_names, ", ")));
    read_context_keys(entry, file, where, *q, c);
    if (!known_models.empty() && std::find(known_models.begin(), known_models.end(), c.model) == known_models.end())
      throw InputError(line_of(file, entry["model"]) + ": " +
                       unknown_name_message("model", c.model, known_models, "`moeplan models` lists them"));
    out.push_back(std::move(c));
  }
  return out;
}

std::vector<ClaimCheck> check_claims(const std::vector<Claim>& claims, const ModelConfig& model,
                                     const PrecisionTable& precisions) {
  std::vector<ClaimCheck> out;
  for (const auto& c : claims) {
    if (c.model != model.name) continue;
    const ClaimQuantity* q = find_claim_quantity(c.quantity);
    if (!q) throw InputError(c.where + ": unknown quantity '" + c.quantity + "'");
    ClaimCheck k;
    k.claim = c;
    std::optional<Precision> precision;
    if (q->needs_precision) {
      try {
        precision = resolve_precision(c.precision, model, precisions);
      } catch (const InputError& e) {
        throw InputError(c.where + ": precision '" + printable(c.precision) + "': " + e.what());
      }
    }
    k.computed = q->compute(model, ClaimContext{precision ? &*precision : nullptr, c.bandwidth_gb_s * 1e9});
    if (k.computed) {
      const double allowed = std::max(c.tolerance * std::fabs(*k.computed), 1e-9 * std::max(1.0, std::fabs(*k.computed)));
      k.matches = std::fabs(c.value - *k.computed) <= allowed;
    }
    out.push_back(std::move(k));
  }
  return out;
}

}  // namespace moeplan::model
