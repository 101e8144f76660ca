// simulator/gpu_profile: the GPU op-profile reader and lookups (see gpu_profile.hpp; grammar in docs/gpu_profiles.md).
#include "simulator/gpu_profile.hpp"
#include "simulator/gpu_profile_write.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <stdexcept>

#include "common/error.hpp"
#include "common/files.hpp"
#include "simulator/step_cost.hpp"

namespace moeplan::simulator {

namespace {
constexpr const char* kMagic = "moeplan-gpu-profile 1";

struct KindName {
  GpuCurveKind kind;
  const char* name;
};
constexpr KindName kKinds[] = {
    {GpuCurveKind::moe, "moe"},
    {GpuCurveKind::gemm, "gemm"},
    {GpuCurveKind::attn_prefill, "attn_prefill"},
    {GpuCurveKind::attn_decode, "attn_decode"},
    {GpuCurveKind::all_reduce, "all_reduce"},
    {GpuCurveKind::all_gather, "all_gather"},
    {GpuCurveKind::alltoall, "alltoall"},
    {GpuCurveKind::reduce_scatter, "reduce_scatter"},
};

// Splits on runs of spaces/tabs.
std::vector<std::string_view> words(std::string_view s) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
    const std::size_t j = i;
    while (i < s.size() && s[i] != ' ' && s[i] != '\t') ++i;
    if (i > j) out.push_back(s.substr(j, i - j));
  }
  return out;
}

}  // namespace

std::string GpuCurve::Where::str() const { return (file ? *file : std::string("?")) + ":" + std::to_string(line); }

namespace {

double number(std::string_view w, const GpuCurve::Where& where) {
  double v = 0;
  const auto [p, ec] = std::from_chars(w.data(), w.data() + w.size(), v);
  if (ec != std::errc() || p != w.data() + w.size() || !std::isfinite(v))
    throw InputError(where.str() + ": '" + std::string(w) + "' is not a number");
  return v;
}

// The dtype of a shape (" dtype=fp8 ..."), for the index.
std::string shape_dtype(const std::string& shape) {
  const std::size_t at = shape.find(" dtype=");
  if (at == std::string::npos) return "";
  const std::size_t from = at + 7;
  return shape.substr(from, shape.find(' ', from) - from);
}

std::string index_key(GpuCurveKind kind, const std::string& dtype) {
  return std::string(gpu_curve_kind_name(kind)) + " " + dtype;
}

// The separator between shape and points is ':' standing alone (values may hold a colon: dtype=aic:w4a8_...).
std::size_t separator(std::string_view rest) {
  for (std::size_t i = rest.find(':'); i != std::string_view::npos; i = rest.find(':', i + 1)) {
    const bool left = i == 0 || rest[i - 1] == ' ' || rest[i - 1] == '\t';
    const bool right = i + 1 == rest.size() || rest[i + 1] == ' ' || rest[i + 1] == '\t';
    if (left && right) return i;
  }
  return std::string_view::npos;
}

// The shape of one curve line, normalised to " k=v k=v " (single spaces).
std::string parse_shape(std::string_view fields, const GpuCurve::Where& where) {
  std::string shape = " ";
  for (std::string_view f : words(fields)) {
    const std::size_t eq = f.find('=');
    if (eq == std::string_view::npos || eq == 0 || eq + 1 == f.size())
      throw InputError(where.str() + ": shape field '" + std::string(f) + "' is not key=value");
    shape.append(f).push_back(' ');
  }
  return shape;
}

Curve parse_points(std::string_view text, const GpuCurve::Where& where) {
  Curve c;
  const auto pts = words(text);
  if (pts.empty() || pts.size() % 2 != 0)
    throw InputError(where.str() + ": expected x y pairs after ':' (got " + std::to_string(pts.size()) + " numbers; truncated?)");
  c.x.reserve(pts.size() / 2);
  c.y.reserve(pts.size() / 2);
  for (std::size_t i = 0; i < pts.size(); i += 2) {
    const double x = number(pts[i], where), us = number(pts[i + 1], where);
    if (!(x > 0) || !(us > 0)) throw InputError(where.str() + ": sizes and times must be positive");
    if (!c.x.empty() && !(x > c.x.back()))
      throw InputError(where.str() + ": sizes must be strictly ascending (" + std::string(pts[i]) + " after " +
                       std::string(pts[i - 2]) + ")");
    c.x.push_back(x);
    c.y.push_back(us * 1e-6);
  }
  return c;
}
}  // namespace

const char* gpu_curve_kind_name(GpuCurveKind k) {
  for (const auto& kn : kKinds)
    if (kn.kind == k) return kn.name;
  return "?";
}

const Curve& GpuCurve::seconds() const {
  if (!parsed_.set.load(std::memory_order_acquire)) {
    static std::mutex mu;
    std::lock_guard<std::mutex> lock(mu);
    if (!parsed_.set.load(std::memory_order_relaxed)) {
      seconds_ = parse_points(std::string_view(*text_).substr(points_at_, points_len_), where_);
      parsed_.set.store(true, std::memory_order_release);
    }
  }
  return seconds_;
}

GpuProfile read_gpu_profile(const std::filesystem::path& path, bool lazy) {
  const auto text = std::make_shared<const std::string>(read_text_file(path));
  const std::string file = path.string();
  const auto file_name = std::make_shared<const std::string>(file);
  GpuProfile p;
  p.file = path;
  std::size_t pos = 0;
  int line_no = 0;
  bool magic = false;
  std::map<std::string, std::string*> header = {{"gpu", &p.gpu},         {"engine", &p.engine},
                                                {"engine_version", &p.engine_version},
                                                {"source", &p.source},   {"license", &p.license},
                                                {"exported", &p.exported}};
  while (pos < text->size()) {
    std::size_t end = text->find('\n', pos);
    if (end == std::string::npos) end = text->size();
    std::string_view line(text->data() + pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (const std::size_t hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
    while (!line.empty() && (line.back() == ' ' || line.back() == '\t' || line.back() == '\r')) line.remove_suffix(1);
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
    if (line.empty()) continue;
    const auto where = [&] { return file + ":" + std::to_string(line_no); };
    if (!magic) {
      if (line != kMagic) throw InputError(where() + ": not a GPU op profile (the first line must be '" + kMagic + "')");
      magic = true;
      continue;
    }
    const std::size_t sp = line.find_first_of(" \t");
    const std::string_view head = line.substr(0, sp);
    const std::string_view rest = sp == std::string_view::npos ? std::string_view() : line.substr(sp + 1);
    const KindName* kind = nullptr;
    for (const auto& kn : kKinds)
      if (head == kn.name) kind = &kn;
    if (kind) {
      const std::size_t colon = separator(rest);
      if (colon == std::string_view::npos) throw InputError(where() + ": expected ' : ' between the shape and the points");
      GpuCurve c;
      c.kind = kind->kind;
      c.line = line_no;
      c.where_ = {file_name, line_no};
      c.shape = parse_shape(rest.substr(0, colon), c.where_);
      c.points_at_ = static_cast<std::size_t>(rest.data() - text->data()) + colon + 1;
      c.points_len_ = rest.size() - colon - 1;
      if (lazy) {
        c.text_ = text;
      } else {
        c.seconds_ = parse_points(rest.substr(colon + 1), c.where_);
        c.parsed_.set = true;
      }
      p.curves.push_back(std::move(c));
      continue;
    }
    const std::string key(head);
    if (const auto h = header.find(key); h != header.end()) {
      std::string v(rest);
      while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.erase(v.begin());
      if (v.empty()) throw InputError(where() + ": '" + key + "' has no value");
      *h->second = v;
      continue;
    }
    if (key == "table") {
      p.tables.emplace_back(rest);
      continue;
    }
    throw InputError(where() + ": unknown line kind '" + key + "'");
  }
  if (!magic) throw InputError(file + ": empty file, not a GPU op profile");
  for (const char* key : {"gpu", "engine"})
    if (header[key]->empty()) throw InputError(file + ": the header has no '" + key + "' line (truncated?)");
  for (std::size_t i = 0; i < p.curves.size(); ++i)
    p.index_.emplace(index_key(p.curves[i].kind, shape_dtype(p.curves[i].shape)), i);
  return p;
}

namespace {
// "kind dtype" (the index key), then " key=value " per wanted field: the needles a curve's shape must contain.
std::string wanted_fields(const std::map<std::string, std::string>& want) {
  std::string out;
  for (const auto& [k, v] : want) out += " " + k + "=" + v + " ";
  return out;
}
std::string dtype_wanted(const std::map<std::string, std::string>& want) {
  const auto dt = want.find("dtype");
  return dt == want.end() ? "" : dt->second;
}
}  // namespace

std::vector<const GpuCurve*> GpuProfile::scan(GpuCurveKind kind, const std::map<std::string, std::string>& want,
                                              std::size_t limit) const {
  std::vector<std::string> needles;  // " key=value " per wanted field, built once for all the curves scanned
  needles.reserve(want.size());
  for (const auto& [k, v] : want) needles.push_back(" " + k + "=" + v + " ");
  std::vector<const GpuCurve*> hits;
  const auto [lo, hi] = index_.equal_range(index_key(kind, dtype_wanted(want)));
  for (auto it = lo; it != hi && hits.size() < limit; ++it) {
    const GpuCurve& c = curves[it->second];
    bool match = true;
    for (const std::string& n : needles) match = match && c.shape.find(n) != std::string::npos;
    if (match) hits.push_back(&c);
  }
  return hits;
}

const GpuCurve* GpuProfile::find(GpuCurveKind kind, const std::map<std::string, std::string>& want) const {
  std::string key = index_key(kind, dtype_wanted(want)) + wanted_fields(want);
  std::lock_guard<std::mutex> lock(memo_->mu);
  if (const auto m = memo_->found.find(key); m != memo_->found.end()) return m->second;
  const std::vector<const GpuCurve*> hits = scan(kind, want, 1);
  const GpuCurve* hit = hits.empty() ? nullptr : hits.front();
  memo_->found.emplace(std::move(key), hit);
  return hit;
}

std::vector<const GpuCurve*> GpuProfile::find_all(GpuCurveKind kind,
                                                  const std::map<std::string, std::string>& want) const {
  std::string key = index_key(kind, dtype_wanted(want)) + wanted_fields(want);
  std::lock_guard<std::mutex> lock(memo_->mu);
  if (const auto m = memo_->found_all.find(key); m != memo_->found_all.end()) return m->second;
  std::vector<const GpuCurve*> hits = scan(kind, want, static_cast<std::size_t>(-1));
  memo_->found_all.emplace(std::move(key), hits);
  return hits;
}

std::shared_ptr<const GpuProfile> shipped_gpu_profile(const std::filesystem::path& data_dir, const std::string& gpu,
                                                      const std::string& engine) {
  static std::mutex mu;
  static std::map<std::string, std::shared_ptr<const GpuProfile>> cache;
  const std::filesystem::path path = data_dir / "gpu_profiles" / gpu / (engine + ".prof");
  std::lock_guard<std::mutex> lock(mu);
  const std::string key = path.string();
  if (const auto it = cache.find(key); it != cache.end()) return it->second;
  std::shared_ptr<const GpuProfile> p;
  if (std::filesystem::exists(path)) p = std::make_shared<const GpuProfile>(read_gpu_profile(path, /*lazy=*/true));
  cache[key] = p;
  return p;
}

std::shared_ptr<const GpuProfile> choose_gpu_profile(const std::filesystem::path& data_dir, const std::string& gpu,
                                                     const std::string& engine, const std::string& choice,
                                                     std::vector<std::string>* notes) {
  std::shared_ptr<const GpuProfile> p;
  if (choice == "none") {
    if (notes) notes->push_back("GPU op profile: none (--gpu-profile none); every op priced by the roofline");
    return p;
  }
  if (choice.empty() || choice == "auto") {
    p = shipped_gpu_profile(data_dir, gpu, engine);
    if (notes && !p)
      notes->push_back("GPU op profile: none shipped for " + gpu + " under " + engine + "; every op priced by the roofline");
  } else {
    if (!std::filesystem::exists(choice)) throw InputError("--gpu-profile " + choice + ": no such file (or use auto / none)");
    p = std::make_shared<const GpuProfile>(read_gpu_profile(choice));
    if (notes && (p->gpu != gpu || p->engine != engine))
      notes->push_back("warning: --gpu-profile " + choice + " describes " + p->gpu + " under " + p->engine + ", not " + gpu +
                       " under " + engine + "; its curves price this run as given");
  }
  if (notes && p)
    notes->push_back("GPU op profile: " + p->file.string() + " (" + p->engine + " " + p->engine_version + "; " + p->source +
                     "); ops it holds are priced from measured kernels, the rest by the roofline (column 'priced')");
  return p;
}

std::string gpu_profile_dtype(const std::string& f) {
  if (f.empty()) return "bf16";
  const std::size_t colon = f.find(':');
  return colon == std::string::npos ? f : f.substr(0, colon);
}

std::vector<std::string> gpu_profile_expert_dtypes(const std::string& weight_format, bool fp4_tensor_cores) {
  const std::string own = gpu_profile_dtype(weight_format);
  if (own == "mxfp4" && fp4_tensor_cores) return {"aic:w4a8_mxfp4_mxfp8", own};
  return {own};
}

bool is_expert_block_op(const char* op_name) {
  const std::string_view n = op_name;
  return n == "moe.experts.gate_up" || n == "moe.experts.act" || n == "moe.experts.down";
}

const GpuCurve* find_gemm_curve(const GpuProfile& p, const std::string& weight_format, std::int64_t n, std::int64_t k) {
  return p.find(GpuCurveKind::gemm,
                {{"dtype", gpu_profile_dtype(weight_format)}, {"n", std::to_string(n)}, {"k", std::to_string(k)}});
}

const GpuCurve* find_expert_block_curve(const GpuProfile& p, const ExpertBlockShape& b, const std::string& dist) {
  const auto find = [&](const std::string& d) -> const GpuCurve* {
    for (const std::string& dtype : gpu_profile_expert_dtypes(b.weight_format, b.fp4_tensor_cores))
      if (const GpuCurve* c = p.find(GpuCurveKind::moe, {{"dtype", dtype},
                                                         {"hidden", std::to_string(b.hidden)},
                                                         {"inter", std::to_string(b.inter)},
                                                         {"experts", std::to_string(b.experts)},
                                                         {"topk", std::to_string(b.top_k)},
                                                         {"tp", std::to_string(b.moe_tp)},
                                                         {"ep", std::to_string(b.ep)},
                                                         {"dist", d}}))
        return c;
    return nullptr;
  };
  const GpuCurve* c = dist != "balanced" ? find(dist) : nullptr;
  return c ? c : find("balanced");
}

namespace {
// The value of `key` in a curve's shape (" key=value "), "" when absent.
std::string shape_field(const std::string& shape, const std::string& key) {
  const std::string needle = " " + key + "=";
  const std::size_t at = shape.find(needle);
  if (at == std::string::npos) return "";
  const std::size_t from = at + needle.size();
  return shape.substr(from, shape.find(' ', from) - from);
}
}  // namespace

std::string gpu_curve_field(const GpuCurve& c, const std::string& key) { return shape_field(c.shape, key); }

bool skewed_curve_dist(const std::string& dist) { return !dist.empty() && dist != "balanced"; }

bool skewed_block_curve(const GpuCurve& c) { return skewed_curve_dist(shape_field(c.shape, "dist")); }

namespace {
// router.yaml: the default dist and one per model_type (each entry {dist, source, read}).
struct BlockCurveDists {
  std::string fallback;
  std::map<std::string, std::string> by_model_type;
};

std::string block_curve_dist_entry(const YAML::Node& n, const std::string& where) {
  if (!n.IsMap()) throw InputError(where + ": expected {dist, source, read}");
  for (const char* key : {"dist", "source", "read"})
    if (!n[key] || !n[key].IsScalar() || n[key].Scalar().empty())
      throw InputError(where + ": missing or empty '" + key + "' (every value names its source and the date read)");
  const std::string dist = n["dist"].Scalar();
  if (dist != "balanced" && dist.rfind("power_law_", 0) != 0)
    throw InputError(where + ": dist '" + dist + "' is not a profile router (balanced or power_law_<alpha>)");
  return dist;
}

BlockCurveDists read_block_curve_dists(const std::filesystem::path& path) {
  const std::string file = path.string();
  const YAML::Node root = parse_yaml_file(path);
  const auto line = [&](const YAML::Node& n) { return file + ":" + std::to_string(n.Mark().line + 1); };
  if (!root.IsMap() || !root["default"]) throw InputError(file + ": expected a top-level 'default' entry");
  BlockCurveDists d;
  d.fallback = block_curve_dist_entry(root["default"], line(root["default"]));
  if (const YAML::Node types = root["model_types"]) {
    if (!types.IsMap()) throw InputError(line(types) + ": 'model_types' must map a model_type to an entry");
    for (const auto& kv : types) d.by_model_type[kv.first.Scalar()] = block_curve_dist_entry(kv.second, line(kv.second));
  }
  return d;
}
}  // namespace

std::string default_block_curve_dist(const std::filesystem::path& data_dir, const std::string& model_type) {
  static std::mutex mu;
  static std::map<std::string, BlockCurveDists> cache;
  const std::filesystem::path path = data_dir / "gpu_profiles" / "router.yaml";
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(path.string());
  if (it == cache.end()) it = cache.emplace(path.string(), read_block_curve_dists(path)).first;
  const auto t = it->second.by_model_type.find(model_type);
  return t != it->second.by_model_type.end() ? t->second : it->second.fallback;
}

std::string block_curve_dist(const RoutingModel& routing, const model::ModelConfig& model) {
  return routing.curve_dist() == "auto" ? default_block_curve_dist(data_dir(), model.model_type) : routing.curve_dist();
}

namespace {
// The curves of one attention table's shape, one kernel (the one measured at the most batch sizes, the first in the
// file on a tie), by ascending batch.
std::vector<std::pair<double, const GpuCurve*>> attention_curves_by_batch(const GpuProfile& p, GpuCurveKind kind,
                                                                         const AttentionShape& shape,
                                                                         std::string* kernel) {
  const std::vector<const GpuCurve*> all = p.find_all(kind, {{"dtype", "bf16"},
                                                             {"kv", shape.kv_dtype},
                                                             {"heads", std::to_string(shape.heads)},
                                                             {"kv_heads", std::to_string(shape.kv_heads)},
                                                             {"head_dim", std::to_string(shape.head_dim)},
                                                             {"window", std::to_string(shape.window)}});
  std::vector<std::pair<std::string, std::size_t>> kernels;
  for (const GpuCurve* c : all) {
    const std::string k = shape_field(c->shape, "kernel");
    auto it = std::find_if(kernels.begin(), kernels.end(), [&](const auto& e) { return e.first == k; });
    if (it == kernels.end()) kernels.emplace_back(k, 1);
    else ++it->second;
  }
  std::vector<std::pair<double, const GpuCurve*>> out;
  if (kernels.empty()) return out;
  const auto best = std::max_element(kernels.begin(), kernels.end(),
                                     [](const auto& a, const auto& b) { return a.second < b.second; });
  *kernel = best->first;
  for (const GpuCurve* c : all) {
    if (shape_field(c->shape, "kernel") != *kernel) continue;
    const double batch = std::atof(shape_field(c->shape, "batch").c_str());
    if (batch >= 1) out.emplace_back(batch, c);
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return out;
}

// Log-log interpolation between two batches' times (linear where a time is not positive).
double between_batches(double batch, double b0, double t0, double b1, double t1) {
  const double f = std::log(batch / b0) / std::log(b1 / b0);
  return t0 > 0 && t1 > 0 ? t0 * std::pow(t1 / t0, f) : t0 + (t1 - t0) * f;
}
}  // namespace

DecodeAttentionCurves find_decode_attention_curves(const GpuProfile& p, const AttentionShape& shape,
                                                   model::AttentionKind window_kind) {
  DecodeAttentionCurves out;
  out.by_batch_ = attention_curves_by_batch(p, GpuCurveKind::attn_decode, shape, &out.kernel_);
  out.window_ = shape.window;
  out.window_kind_ = window_kind;
  return out;
}

PrefillAttentionCurves find_prefill_attention_curves(const GpuProfile& p, const AttentionShape& shape,
                                                     model::AttentionKind window_kind) {
  PrefillAttentionCurves out;
  out.by_batch_ = attention_curves_by_batch(p, GpuCurveKind::attn_prefill, shape, &out.kernel_);
  out.window_ = shape.window;
  out.window_kind_ = window_kind;
  return out;
}

double prompt_pairs(double tokens, std::int64_t window, model::AttentionKind kind) {
  if (!(tokens > 0)) return 0;
  const double full = tokens * (tokens + 1) / 2;
  if (window <= 0) return full;
  const double w = static_cast<double>(window);
  if (tokens <= w) return full;
  if (kind == model::AttentionKind::chunked) {  // whole chunks of w, then the rest
    const double chunks = std::floor(tokens / w), rest = tokens - chunks * w;
    return chunks * w * (w + 1) / 2 + rest * (rest + 1) / 2;
  }
  return w * (w + 1) / 2 + (tokens - w) * w;  // sliding: positions past w attend w keys
}

double PrefillAttentionCurves::at_batch(std::size_t i, double length, bool* extrapolated) const {
  const Curve& c = by_batch_[i].second->seconds();
  if (length < c.x.front()) return c.y.front();
  if (length <= c.x.back()) return c.at(length);
  if (extrapolated) *extrapolated = true;
  const double at_end = prompt_pairs(c.x.back(), window_, window_kind_);
  return at_end > 0 ? c.y.back() * prompt_pairs(length, window_, window_kind_) / at_end : c.y.back();
}

double PrefillAttentionCurves::seconds(double tokens, double pairs_full, bool* extrapolated) const {
  const std::size_t n = by_batch_.size();
  if (n == 0 || !(tokens > 0) || !(pairs_full > 0)) return 0;
  const double length = std::max(1.0, 2 * pairs_full / tokens - 1);
  const double batch = tokens / length;
  const double b_lo = by_batch_.front().first, b_hi = by_batch_.back().first;
  if (batch <= b_lo) {
    const double floor_s = by_batch_.front().second->seconds().y.front();
    return std::max(floor_s, at_batch(0, length, extrapolated) * batch / b_lo);
  }
  if (batch >= b_hi) {
    if (batch > b_hi && extrapolated) *extrapolated = true;
    return at_batch(n - 1, length, extrapolated) * batch / b_hi;
  }
  std::size_t hi = 1;
  while (by_batch_[hi].first < batch) ++hi;
  return between_batches(batch, by_batch_[hi - 1].first, at_batch(hi - 1, length, extrapolated), by_batch_[hi].first,
                         at_batch(hi, length, extrapolated));
}

double DecodeAttentionCurves::at_batch(std::size_t i, double position, double keys, double s_per_key,
                                       bool* extrapolated) const {
  const auto& [batch, curve] = by_batch_[i];
  const Curve& c = curve->seconds();
  if (position < c.x.front()) {
    if (extrapolated) *extrapolated = true;
    return c.y.front();
  }
  if (position <= c.x.back()) return c.at(position);
  if (extrapolated) *extrapolated = true;
  // Beyond the last measured position: that time plus the KV read of the keys the curve did not cover.
  const auto last = static_cast<std::int64_t>(c.x.back());
  const double keys_last = window_ > 0 ? window_keys(last, window_, window_kind_) : static_cast<double>(last);
  return c.y.back() + batch * std::max(0.0, keys - keys_last) * s_per_key;
}

double DecodeAttentionCurves::seconds(double batch, double position, double keys, double s_per_key,
                                      bool* extrapolated) const {
  const std::size_t n = by_batch_.size();
  if (n == 0 || !(batch > 0)) return 0;
  if (batch <= by_batch_.front().first) {
    if (batch < by_batch_.front().first && extrapolated) *extrapolated = true;
    return at_batch(0, position, keys, s_per_key, extrapolated);
  }
  if (batch >= by_batch_.back().first) {
    if (batch > by_batch_.back().first && extrapolated) *extrapolated = true;
    return at_batch(n - 1, position, keys, s_per_key, extrapolated) * batch / by_batch_.back().first;
  }
  std::size_t hi = 1;
  while (by_batch_[hi].first < batch) ++hi;
  return between_batches(batch, by_batch_[hi - 1].first, at_batch(hi - 1, position, keys, s_per_key, extrapolated),
                         by_batch_[hi].first, at_batch(hi, position, keys, s_per_key, extrapolated));
}

namespace {
// v > 0 to 3 significant digits, as a plain decimal ("1230", "45.6", "0.0789").
std::string three_digits(double v) {
  const int exponent = static_cast<int>(std::floor(std::log10(v)));
  const int decimals = std::max(0, 2 - exponent);
  const double step = std::pow(10.0, exponent - 2);
  const double rounded = std::round(v / step) * step;
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, rounded);
  return buf;
}
void check_token(const std::string& what, const std::string& value) {
  if (value.empty() || value.find_first_of(" \t\n=#:") != std::string::npos) {
    std::string message = "gpu_profile_text: ";
    message.append(what).append(" '").append(value).append("' is empty or holds a space, '=', '#' or ':'");
    throw std::invalid_argument(message);
  }
}
}  // namespace

std::string gpu_profile_text(const GpuProfileData& p) {
  // Built with append: GCC 12's -Wrestrict misfires on chains of "literal" + std::string.
  std::string out = kMagic;
  out += '\n';
  for (const auto& [key, value] : std::initializer_list<std::pair<const char*, const std::string*>>{
           {"gpu", &p.gpu}, {"engine", &p.engine}, {"engine_version", &p.engine_version}, {"source", &p.source},
           {"license", &p.license}, {"exported", &p.exported}}) {
    if (value->empty() || value->find('\n') != std::string::npos || value->find('#') != std::string::npos)
      throw std::invalid_argument(std::string("gpu_profile_text: the header's ") + key + " is empty or holds '#' or a newline");
    out.append(key).append(" ").append(*value).append("\n");
  }
  for (const auto& t : p.tables) out.append("table ").append(t).append("\n");
  for (const auto& c : p.comments) out.append("# ").append(c).append("\n");
  for (const GpuProfileCurveData& c : p.curves) {
    if (c.x.empty() || c.x.size() != c.seconds.size())
      throw std::invalid_argument("gpu_profile_text: a curve needs as many times as sizes, and at least one");
    out.append(gpu_curve_kind_name(c.kind));
    for (const auto& [k, v] : c.fields) {
      check_token("field", k);
      check_token("value of " + k, v);
      out.append(" ").append(k).append("=").append(v);
    }
    out.append(" :");
    for (std::size_t i = 0; i < c.x.size(); ++i) {
      const double x = c.x[i], us = c.seconds[i] * 1e6;
      if (!(x > 0) || x != std::floor(x) || (i > 0 && !(x > c.x[i - 1])))
        throw std::invalid_argument("gpu_profile_text: sizes must be whole, positive and ascending");
      if (!(us > 0) || !std::isfinite(us)) throw std::invalid_argument("gpu_profile_text: times must be positive and finite");
      out.append(" ").append(std::to_string(static_cast<long long>(x))).append(" ").append(three_digits(us));
    }
    out.append("\n");
  }
  return out;
}

}  // namespace moeplan::simulator
