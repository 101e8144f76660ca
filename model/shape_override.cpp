// Shape overrides: edit the HF config document per family, keep per-layer patterns consistent, re-parse, and refuse
// results that lose a kind of layer the original has.
#include "model/shape_override.hpp"

#include <algorithm>
#include <charconv>
#include <set>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "common/text.hpp"
#include "model/config.hpp"

namespace moeplan::model {

using nlohmann::json;

namespace {

using Field = std::optional<std::int64_t> ShapeOverrides::*;
struct Key {
  const char* name;
  Field field;
};
constexpr Key kKeys[] = {
    {"layers", &ShapeOverrides::layers},
    {"experts", &ShapeOverrides::experts},
    {"experts_per_token", &ShapeOverrides::experts_per_token},
    {"hidden", &ShapeOverrides::hidden},
    {"intermediate", &ShapeOverrides::intermediate},
    {"moe_intermediate", &ShapeOverrides::moe_intermediate},
    {"dense_intermediate", &ShapeOverrides::dense_intermediate},
    {"heads", &ShapeOverrides::heads},
    {"kv_heads", &ShapeOverrides::kv_heads},
    {"head_dim", &ShapeOverrides::head_dim},
    {"vocab", &ShapeOverrides::vocab},
};

// The HF config keys of one family (empty: the family has no such dimension).
struct FamilyKeys {
  const char* experts;
  const char* moe_intermediate;
  const char* dense_intermediate;
};

FamilyKeys family_keys(const std::string& type) {
  if (type == "llama4") return {"num_local_experts", "intermediate_size", "intermediate_size_mlp"};
  if (type == "qwen3_moe") return {"num_experts", "moe_intermediate_size", "intermediate_size"};
  return {"num_local_experts", "intermediate_size", ""};  // mixtral: every layer is MoE
}

// A layer's kind as far as structure goes: MLP, attention kind, RoPE.
using LayerKind = std::tuple<MlpKind, AttentionKind, bool>;
std::string kind_text(const LayerKind& k) {
  return std::string(std::get<0>(k) == MlpKind::moe ? "MoE" : "dense") + " + " + attention_kind_name(std::get<1>(k)) +
         (std::get<2>(k) ? "" : " NoPE");
}

std::int64_t value_or(const json& j, const char* key, std::int64_t fallback) {
  return j.contains(key) && j.at(key).is_number_integer() ? j.at(key).get<std::int64_t>() : fallback;
}

}  // namespace

bool ShapeOverrides::empty() const {
  return std::none_of(std::begin(kKeys), std::end(kKeys), [this](const Key& k) { return (this->*k.field).has_value(); });
}

std::string shape_override_keys() {
  std::vector<std::string> names;
  for (const auto& k : kKeys) names.emplace_back(k.name);
  return join(names, ", ");
}

ShapeOverrides parse_shape_overrides(std::string_view spec) {
  ShapeOverrides o;
  std::vector<std::string> names;
  for (const auto& k : kKeys) names.emplace_back(k.name);
  std::size_t start = 0;
  while (start <= spec.size()) {
    const std::size_t comma = std::min(spec.find(',', start), spec.size());
    std::string_view item = spec.substr(start, comma - start);
    start = comma + 1;
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (item.empty()) continue;
    const std::size_t eq = item.find('=');
    const std::string key(item.substr(0, eq));
    const auto it = std::find_if(std::begin(kKeys), std::end(kKeys), [&](const Key& k) { return key == k.name; });
    if (it == std::end(kKeys))
      throw InputError("shape override: " + unknown_name_message("key", key, names, "keys: " + shape_override_keys()));
    if (eq == std::string_view::npos)
      throw InputError("shape override '" + std::string(item) + "': expected " + key + "=<positive integer>");
    const std::string_view text = item.substr(eq + 1);
    std::int64_t value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size() || value <= 0)
      throw InputError("shape override '" + std::string(item) + "': " + key + " must be a positive integer");
    if ((o.*(it->field)).has_value()) throw InputError("shape override: " + key + " is given twice");
    o.*(it->field) = value;
  }
  return o;
}

namespace {

// The overrides this family can take: positive values, and a dense intermediate only where dense layers exist.
void check_overrides(const ShapeOverrides& o, const std::string& type, const FamilyKeys& keys, const std::string& origin) {
  if (type != "llama4" && type != "qwen3_moe" && type != "mixtral")
    throw InputError(origin + ": shape overrides support llama4, qwen3_moe and mixtral, not " + type);
  for (const auto& k : kKeys)
    if ((o.*k.field).has_value() && *(o.*k.field) <= 0)
      throw InputError(origin + ": shape override " + k.name + "=" + std::to_string(*(o.*k.field)) + " must be positive");
  if (o.dense_intermediate && !*keys.dense_intermediate)
    throw InputError(origin + ": shape override dense_intermediate does not apply: " + type + " has no dense MLP layers");
}

// Each given dimension into its HF key of this family.
void write_dimensions(json& target, const ShapeOverrides& o, const FamilyKeys& keys) {
  auto set = [&target](const char* key, const std::optional<std::int64_t>& v) {
    if (v) target[key] = *v;
  };
  set("num_hidden_layers", o.layers);
  set(keys.experts, o.experts);
  set("num_experts_per_tok", o.experts_per_token);
  set("hidden_size", o.hidden);
  set("num_attention_heads", o.heads);
  set("num_key_value_heads", o.kv_heads);
  set("head_dim", o.head_dim);
  set("vocab_size", o.vocab);
  set(keys.moe_intermediate, o.moe_intermediate ? o.moe_intermediate : o.intermediate);
  if (*keys.dense_intermediate) set(keys.dense_intermediate, o.dense_intermediate ? o.dense_intermediate : o.intermediate);
}

// Special token ids past a smaller vocabulary would index outside the embedding (transformers refuses a
// pad_token_id >= vocab_size): drop them.
void drop_token_ids_past(json& target, std::int64_t vocab) {
  for (const char* key : {"pad_token_id", "bos_token_id", "eos_token_id"}) {
    if (!target.contains(key)) continue;
    json& id = target[key];
    if (id.is_array()) {
      json kept = json::array();
      for (const auto& v : id)
        if (!v.is_number_integer() || v.get<std::int64_t>() < vocab) kept.push_back(v);
      id = kept.empty() ? json(nullptr) : kept;
    } else if (id.is_number_integer() && id.get<std::int64_t>() >= vocab) {
      id = nullptr;
    }
  }
}

// Dimensions that must agree with each other, checked on the resulting values.
void check_dimensions(const json& target, const ModelConfig& before, const FamilyKeys& keys, const std::string& origin) {
  const std::int64_t heads = value_or(target, "num_attention_heads", before.num_heads);
  const std::int64_t kv_heads = value_or(target, "num_key_value_heads", heads);
  if (heads % kv_heads != 0)
    throw InputError(origin + ": shape override gives heads=" + std::to_string(heads) + " and kv_heads=" +
                     std::to_string(kv_heads) + "; heads must be a multiple of kv_heads");
  const bool explicit_head_dim = target.contains("head_dim") && !target.at("head_dim").is_null();
  if (!explicit_head_dim && value_or(target, "hidden_size", before.hidden) % heads != 0)
    throw InputError(origin + ": shape override gives hidden=" + std::to_string(value_or(target, "hidden_size", 0)) +
                     ", not divisible by heads=" + std::to_string(heads) + " (this config derives head_dim from them); set head_dim too");
  const std::int64_t experts = value_or(target, keys.experts, before.num_experts);
  const std::int64_t top_k = value_or(target, "num_experts_per_tok", before.experts_per_token);
  if (experts < top_k)
    throw InputError(origin + ": shape override gives experts=" + std::to_string(experts) + ", fewer than experts_per_token=" +
                     std::to_string(top_k) + "; lower experts_per_token too");
}

// Per-layer patterns follow a new layer count: lists of every layer are cut, lists of layer indices lose those past
// it.
void cut_layer_patterns(json& target, std::int64_t layers, const std::string& origin) {
  for (const char* key : {"no_rope_layers", "layer_types"}) {
    if (!target.contains(key) || !target.at(key).is_array() || target.at(key).empty()) continue;
    json& list = target[key];
    if (static_cast<std::int64_t>(list.size()) < layers)
      throw InputError(origin + ": shape override layers=" + std::to_string(layers) + " exceeds the " +
                       std::to_string(list.size()) + " entries of " + key + "; the pattern cannot be extended");
    list.erase(list.begin() + layers, list.end());
  }
  for (const char* key : {"moe_layers", "mlp_only_layers"}) {
    if (!target.contains(key) || !target.at(key).is_array()) continue;
    json kept = json::array();
    for (const auto& i : target.at(key))
      if (!i.is_number_integer() || i.get<std::int64_t>() < layers) kept.push_back(i);
    target[key] = kept;
  }
  if (target.contains("max_window_layers") && target.at("max_window_layers").is_number_integer())
    target["max_window_layers"] = std::min(target.at("max_window_layers").get<std::int64_t>(), layers);
}

// Every kind of layer the original has must survive; the smallest layer count that keeps them all is one past the
// latest first occurrence of a kind (layer i keeps its kind when the layer count shrinks).
void check_layer_kinds_kept(const ModelConfig& before, const ModelConfig& after, const std::string& origin) {
  std::vector<LayerKind> first_seen;
  std::size_t keep_all = 0;
  for (const auto& l : before.layers) {
    const LayerKind k{l.mlp, l.attention, l.rope};
    if (std::find(first_seen.begin(), first_seen.end(), k) == first_seen.end()) {
      first_seen.push_back(k);
      keep_all = static_cast<std::size_t>(l.index) + 1;
    }
  }
  for (const auto& k : first_seen) {
    const bool kept = std::any_of(after.layers.begin(), after.layers.end(),
                                  [&](const LayerSpec& l) { return LayerKind{l.mlp, l.attention, l.rope} == k; });
    if (!kept)
      throw InputError(origin + ": shape override layers=" + std::to_string(after.num_layers) + " drops every " +
                       kind_text(k) + " layer of the original; use layers >= " + std::to_string(keep_all) +
                       " to keep each kind of layer");
  }
}

}  // namespace

json apply_shape_overrides(json config, const ShapeOverrides& o, const std::string& origin) {
  const ModelConfig before = parse_hf_config(config, "original", origin);
  const FamilyKeys keys = family_keys(before.model_type);
  check_overrides(o, before.model_type, keys, origin);
  json& target = before.model_type == "llama4" && config.contains("text_config") ? config["text_config"] : config;
  write_dimensions(target, o, keys);
  if (o.vocab) drop_token_ids_past(target, *o.vocab);
  check_dimensions(target, before, keys, origin);
  if (o.layers) cut_layer_patterns(target, *o.layers, origin);
  check_layer_kinds_kept(before, parse_hf_config(config, "overridden", origin), origin);
  return config;
}

}  // namespace moeplan::model
