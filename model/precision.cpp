#include "model/precision.hpp"

#include <algorithm>
#include <cmath>

#include "common/error.hpp"
#include "common/files.hpp"
#include "common/text.hpp"

namespace moeplan::model {

const char* policy_name(QuantPolicy p) {
  switch (p) {
    case QuantPolicy::experts: return "experts";
    case QuantPolicy::all_linear: return "all-linear";
    case QuantPolicy::all: return "all";
  }
  return "?";
}

namespace {

QuantPolicy parse_policy(const std::string& s, const std::string& where) {
  if (s == "experts") return QuantPolicy::experts;
  if (s == "all-linear") return QuantPolicy::all_linear;
  if (s == "all") return QuantPolicy::all;
  throw InputError(where + ": unknown quantisation policy '" + s + "' (use experts, all-linear or all)");
}

Role parse_role(const std::string& s, const std::string& where) {
  static const std::vector<std::pair<std::string, Role>> kRoles = {
      {"q", Role::q}, {"k", Role::k}, {"v", Role::v}, {"o", Role::o}, {"gate", Role::gate}, {"up", Role::up},
      {"down", Role::down}, {"head", Role::head}, {"embed", Role::embed}};
  for (const auto& [name, role] : kRoles)
    if (name == s) return role;
  throw InputError(where + ": unknown role '" + s + "' in overrides");
}

Module parse_module(const std::string& s, const std::string& where) {
  for (int i = 0; i < kModuleCount; ++i)
    if (s == module_name(static_cast<Module>(i))) return static_cast<Module>(i);
  throw InputError(where + ": unknown module '" + s + "' in overrides");
}

// An override applies to a weight whose role and module it lists (an empty list matches every one).
bool override_matches(const FormatOverride& o, const WeightGroup& w) {
  const bool role = o.roles.empty() || std::find(o.roles.begin(), o.roles.end(), w.role) != o.roles.end();
  const bool module = o.modules.empty() || std::find(o.modules.begin(), o.modules.end(), w.module) != o.modules.end();
  return role && module;
}


// llama.cpp src/llama-quant.cpp: use_more_bits(i, n) = i < n/8 || i >= 7n/8 || (i - n/8) % 3 == 2.
bool use_more_bits(int layer, int n) {
  return layer < n / 8 || layer >= 7 * n / 8 || (layer - n / 8) % 3 == 2;
}


double format_bytes(const WeightGroup& w, const PrecisionFormat& f) {
  const double values = static_cast<double>(w.params());
  double scales = 0;
  const auto rows = static_cast<double>(w.rows), cols = static_cast<double>(w.cols), count = static_cast<double>(w.count);
  switch (f.granularity) {
    case ScaleGranularity::none: break;
    case ScaleGranularity::per_channel: scales = rows * count; break;
    case ScaleGranularity::block:
      scales = std::ceil(rows / static_cast<double>(f.block_rows)) * std::ceil(cols / static_cast<double>(f.block_cols)) * count;
      break;
    case ScaleGranularity::group: scales = rows * std::ceil(cols / static_cast<double>(f.group_size)) * count; break;
  }
  return values * f.weight_bits / 8.0 + scales * f.scale_bits / 8.0;
}

}  // namespace

bool policy_covers(QuantPolicy policy, const WeightGroup& w) {
  if (!w.matrix) return false;
  switch (w.module) {
    case Module::routed_experts: return true;
    case Module::attention:
    case Module::shared_experts:
    case Module::dense_mlp:
    case Module::mtp: return policy != QuantPolicy::experts;
    case Module::embedding:
    case Module::lm_head: return policy == QuantPolicy::all;
    case Module::router:
    case Module::norms:
    case Module::vision: return false;
  }
  return false;
}

PrecisionTable PrecisionTable::load(const std::filesystem::path& yaml_path) {
  const YAML::Node root = parse_yaml_file(yaml_path);
  const std::string file = yaml_path.string();
  PrecisionTable t;
  if (!root["formats"] || !root["formats"].IsSequence()) throw InputError(file + ": expected a 'formats' list");
  for (const auto& n : root["formats"]) {
    const std::string where = file + ":" + std::to_string(n.Mark().line + 1);
    PrecisionFormat f;
    f.name = yaml_get<std::string>(n, "name", where);
    f.weight_bits = yaml_get<double>(n, "weight_bits", where);
    if (!(f.weight_bits > 0 && f.weight_bits <= 32)) throw InputError(where + ": weight_bits must be in (0, 32]");
    if (n["scale_bits"]) f.scale_bits = yaml_get<double>(n, "scale_bits", where);
    const std::string g = n["scale_granularity"] ? yaml_get<std::string>(n, "scale_granularity", where) : "none";
    if (g == "none") f.granularity = ScaleGranularity::none;
    else if (g == "per-channel") f.granularity = ScaleGranularity::per_channel;
    else if (g == "block") {
      f.granularity = ScaleGranularity::block;
      f.block_rows = yaml_get<std::int64_t>(n, "block_rows", where);
      f.block_cols = yaml_get<std::int64_t>(n, "block_cols", where);
      if (f.block_rows <= 0 || f.block_cols <= 0) throw InputError(where + ": block_rows and block_cols must be positive");
    } else if (g == "group") {
      f.granularity = ScaleGranularity::group;
      f.group_size = yaml_get<std::int64_t>(n, "group_size", where);
      if (f.group_size <= 0) throw InputError(where + ": group_size must be positive");
    } else {
      throw InputError(where + ": unknown scale_granularity '" + g + "' (none, per-channel, block, group)");
    }
    f.compute_dtype = n["compute_dtype"] ? yaml_get<std::string>(n, "compute_dtype", where) : "bf16";
    if (n["default_policy"]) f.default_policy = parse_policy(yaml_get<std::string>(n, "default_policy", where), where);
    if (n["description"]) f.description = yaml_get<std::string>(n, "description", where);
    if (n["source"]) f.source = yaml_get<std::string>(n, "source", where);
    if (n["overrides"]) {
      for (const auto& o : n["overrides"]) {
        FormatOverride fo;
        for (const auto& r : o["roles"]) fo.roles.push_back(parse_role(r.as<std::string>(), where));
        for (const auto& m : o["modules"]) fo.modules.push_back(parse_module(m.as<std::string>(), where));
        if (fo.roles.empty() && fo.modules.empty()) throw InputError(where + ": an override names roles or modules");
        fo.use_more_bits_layers_only = o["layers"] && o["layers"].as<std::string>() == "use_more_bits";
        fo.format = yaml_get<std::string>(o, "format", where);
        f.overrides.push_back(fo);
      }
    }
    if (t.find(f.name)) throw InputError(where + ": format '" + f.name + "' is listed twice");
    t.formats_.push_back(std::move(f));
  }
  for (const auto& f : t.formats_)
    for (const auto& o : f.overrides)
      if (!t.find(o.format)) throw InputError(file + ": format '" + f.name + "' overrides to unknown format '" + o.format + "'");
  if (root["usual_policies"]) {
    for (const auto& n : root["usual_policies"]) {
      const std::string where = file + ":" + std::to_string(n.Mark().line + 1);
      t.usual_.push_back({yaml_get<std::string>(n, "model_type", where), yaml_get<std::string>(n, "format", where),
                          parse_policy(yaml_get<std::string>(n, "policy", where), where),
                          n["source"] ? n["source"].as<std::string>() : ""});
    }
  }
  return t;
}

const PrecisionFormat* PrecisionTable::find(const std::string& name) const {
  for (const auto& f : formats_)
    if (f.name == name) return &f;
  return nullptr;
}

const PrecisionFormat& PrecisionTable::format(const std::string& name) const {
  if (const auto* f = find(name)) return *f;
  throw InputError(unknown_name_message("precision", name, names(),
                                        "use FORMAT or FORMAT:POLICY with POLICY = experts, all-linear or all"));
}

std::vector<std::string> PrecisionTable::names() const {
  std::vector<std::string> out;
  for (const auto& f : formats_) out.push_back(f.name);
  return out;
}

Precision resolve_precision(const std::string& spec_in, const ModelConfig& model, const PrecisionTable& table) {
  std::string spec = to_lower(spec_in);
  if (spec.empty() || spec == "auto") {
    spec = model.checkpoint_quant.precision.empty() ? model.torch_dtype : model.checkpoint_quant.precision;
  }
  Precision p;
  p.table = &table;
  p.high_precision_bytes = model.torch_dtype == "fp32" ? 4.0 : 2.0;
  const auto colon = spec.find(':');
  const std::string format_name = spec.substr(0, colon);
  p.format = &table.format(format_name);
  if (colon != std::string::npos) {
    p.policy = parse_policy(spec.substr(colon + 1), "--precision " + spec_in);
  } else {
    p.policy = p.format->default_policy;
    for (const auto& u : table.usual_policies())
      if (u.model_type == model.model_type && u.format == format_name) p.policy = u.policy;
  }
  if (p.format->quantised() && !model.is_moe() && p.policy == QuantPolicy::experts)
    throw InputError("--precision " + spec_in + ": policy 'experts' quantises nothing in the dense model " + model.name +
                     "; use " + format_name + ":all-linear");
  p.spec = p.format->quantised() ? format_name + ":" + policy_name(p.policy) : format_name;
  return p;
}

double weight_group_bytes(const WeightGroup& w, const Precision& p, int layer, int num_layers) {
  if (!p.format->quantised()) return static_cast<double>(w.params()) * p.format->weight_bits / 8.0;
  if (!policy_covers(p.policy, w)) return static_cast<double>(w.params()) * p.high_precision_bytes;
  const PrecisionFormat* f = p.format;
  for (const auto& o : p.format->overrides) {
    if (!override_matches(o, w)) continue;
    if (o.use_more_bits_layers_only && (layer < 0 || !use_more_bits(layer, num_layers))) continue;
    f = p.table->find(o.format);
    break;
  }
  return format_bytes(w, *f);
}

static_assert(static_cast<int>(Shard::vocab) + 1 == GroupBytes::kShardCount, "GroupBytes::layer_sums has a column per Shard");

GroupBytes group_bytes(const ModelConfig& m, const Precision& p) {
  const int n = static_cast<int>(m.num_layers);
  GroupBytes b;
  b.layers.reserve(m.layers.size());
  for (std::size_t i = 0; i < m.layers.size(); ++i) {
    std::vector<double> row;
    row.reserve(m.layers[i].weights.size());
    for (const WeightGroup& w : m.layers[i].weights) row.push_back(weight_group_bytes(w, p, static_cast<int>(i), n));
    b.layers.push_back(std::move(row));
  }
  for (const WeightGroup& w : m.globals) b.globals.push_back(weight_group_bytes(w, p, -1, n));
  for (const WeightGroup& w : m.vision) b.vision.push_back(weight_group_bytes(w, p, -1, n));
  b.layer_sums.assign(m.layers.size() + 1, {});
  for (std::size_t i = 0; i < m.layers.size(); ++i) {
    b.layer_sums[i + 1] = b.layer_sums[i];
    for (std::size_t g = 0; g < m.layers[i].weights.size(); ++g) {
      const WeightGroup& w = m.layers[i].weights[g];
      b.layer_sums[i + 1][static_cast<std::size_t>(w.module) * GroupBytes::kShardCount + static_cast<std::size_t>(w.shard)] +=
          b.layers[i][g];
    }
  }
  return b;
}

TextWeightBytes text_weight_bytes(const ModelConfig& m, const Precision& p) {
  const GroupBytes b = group_bytes(m, p);
  const double routed_share =
      m.num_experts > 0 ? static_cast<double>(m.experts_per_token) / static_cast<double>(m.num_experts) : 1;
  TextWeightBytes out;
  for (std::size_t i = 0; i < m.layers.size(); ++i)
    for (std::size_t g = 0; g < m.layers[i].weights.size(); ++g) {
      out.stored += b.layers[i][g];
      out.read_per_token +=
          m.layers[i].weights[g].module == Module::routed_experts ? b.layers[i][g] * routed_share : b.layers[i][g];
    }
  for (std::size_t g = 0; g < m.globals.size(); ++g) {
    const WeightGroup& w = m.globals[g];
    out.stored += b.globals[g];
    const bool one_row = w.module == Module::embedding && !m.tie_word_embeddings && w.rows > 0;
    out.read_per_token += one_row ? b.globals[g] / static_cast<double>(w.rows) : b.globals[g];
  }
  return out;
}

KvDtype parse_kv_dtype(const std::string& s_in) {
  const std::string s = to_lower(s_in);
  if (s == "bf16" || s == "bfloat16") return KvDtype::bf16;
  if (s == "fp16" || s == "float16" || s == "half") return KvDtype::fp16;
  if (s == "fp8" || s == "fp8_e4m3" || s == "fp8-e4m3") return KvDtype::fp8;
  throw InputError("unknown --kv-dtype '" + s_in + "' (use bf16, fp16 or fp8)");
}

const char* kv_dtype_name(KvDtype d) {
  switch (d) {
    case KvDtype::bf16: return "bf16";
    case KvDtype::fp16: return "fp16";
    case KvDtype::fp8: return "fp8";
  }
  return "?";
}

int kv_dtype_bytes(KvDtype d) { return d == KvDtype::fp8 ? 1 : 2; }

}  // namespace moeplan::model
