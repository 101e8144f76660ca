// simulator/profile: measured host profiles (see profile.hpp; format and method in docs/validation.md).
#include "simulator/profile.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "common/error.hpp"
#include "common/files.hpp"
#include "common/text.hpp"

namespace moeplan::simulator {

using model::OpKind;
using model::StepVar;

namespace {
std::size_t ix(StepVar v) { return static_cast<std::size_t>(v); }

// Six significant digits, written as the plain scalar itself: measured figures carry no more, and the file stays
// readable (a double would be emitted with all 17 digits).
std::string sig6(double v) {
  std::ostringstream s;
  s.precision(6);
  s << v;
  return s.str();
}
std::vector<std::string> sig6(const std::vector<double>& v) {
  std::vector<std::string> out;
  for (double x : v) out.push_back(sig6(x));
  return out;
}

// ---- reading, with one InputError line per bad field

double positive(const YAML::Node& n, const char* key, const std::string& where) {
  const double v = yaml_get<double>(n, key, where);
  if (!(v > 0) || !std::isfinite(v)) throw InputError(where + ": '" + key + "' must be a positive number");
  return v;
}

double non_negative(const YAML::Node& n, const char* key, const std::string& where) {
  const double v = yaml_get<double>(n, key, where);
  if (!(v >= 0) || !std::isfinite(v)) throw InputError(where + ": '" + key + "' must be 0 or a positive number");
  return v;
}

// {x_key: [...], y_key: [...]} with y in giga-units: returns y in units.
Curve read_curve(const YAML::Node& n, const char* x_key, const char* y_key, const std::string& where) {
  if (!n || !n.IsMap()) throw InputError(where + ": expected a map with '" + x_key + "' and '" + y_key + "'");
  Curve c;
  c.x = yaml_get<std::vector<double>>(n, x_key, where);
  c.y = yaml_get<std::vector<double>>(n, y_key, where);
  if (c.x.empty() || c.x.size() != c.y.size())
    throw InputError(where + ": '" + x_key + "' and '" + y_key + "' must be non-empty lists of the same length");
  for (std::size_t i = 0; i < c.x.size(); ++i) {
    if (!(c.x[i] > 0) || !(c.y[i] > 0) || !std::isfinite(c.x[i]) || !std::isfinite(c.y[i]))
      throw InputError(where + ": every value of '" + x_key + "' and '" + y_key + "' must be a positive number");
    if (i > 0 && !(c.x[i] > c.x[i - 1])) throw InputError(where + ": '" + x_key + "' must increase strictly");
    c.y[i] *= 1e9;
  }
  return c;
}

std::map<std::string, Curve> read_curves(const YAML::Node& n, const char* x_key, const std::string& where) {
  if (!n || !n.IsMap() || n.size() == 0) throw InputError(where + ": expected a map of weight dtype to curve");
  std::map<std::string, Curve> out;
  for (const auto& kv : n) {
    const std::string dtype = kv.first.as<std::string>();
    if (profile_dtype(dtype) != dtype)
      throw InputError(where + ": unknown weight dtype '" + dtype + "' (use bf16, f16, fp8, int8 or f32)");
    out[dtype] = read_curve(kv.second, x_key, "gflops", where + "." + dtype);
  }
  return out;
}

Residuals read_residuals(const YAML::Node& n, const std::string& where) {
  Residuals r;
  r.n = yaml_get<int>(n, "n", where);
  if (r.n < 1) throw InputError(where + ": 'n' must be at least 1");
  r.median_abs = non_negative(n, "median_abs", where);
  r.p90_abs = non_negative(n, "p90_abs", where);
  r.q05 = yaml_get<double>(n, "q05", where);
  r.q95 = yaml_get<double>(n, "q95", where);
  if (!(r.q05 <= r.q95) || r.q05 <= -1) throw InputError(where + ": need -1 < q05 <= q95");
  return r;
}

// ---- writing

YAML::Node curve_node(const Curve& c, const char* x_key) {
  YAML::Node n;
  n[x_key] = sig6(c.x);
  std::vector<double> g;
  for (double v : c.y) g.push_back(v / 1e9);
  n["gflops"] = sig6(g);
  n[x_key].SetStyle(YAML::EmitterStyle::Flow);
  n["gflops"].SetStyle(YAML::EmitterStyle::Flow);
  return n;
}

YAML::Node residuals_node(const Residuals& r) {
  YAML::Node n;
  n["n"] = r.n;
  n["median_abs"] = sig6(r.median_abs);
  n["p90_abs"] = sig6(r.p90_abs);
  n["q05"] = sig6(r.q05);
  n["q95"] = sig6(r.q95);
  return n;
}
}  // namespace

double Curve::at(double v) const {
  if (x.empty()) return 0;
  if (v <= x.front()) return y.front();
  if (v >= x.back()) return y.back();
  const auto it = std::upper_bound(x.begin(), x.end(), v);
  const std::size_t i = static_cast<std::size_t>(it - x.begin());
  const double t = std::log(v / x[i - 1]) / std::log(x[i] / x[i - 1]);
  return std::exp(std::log(y[i - 1]) + t * (std::log(y[i]) - std::log(y[i - 1])));
}

const ProfileCurves& HostProfile::curves(int ranks) const {
  for (const auto& c : layouts)
    if (c.ranks == ranks) return c;
  std::string have;
  for (const auto& c : layouts) have += (have.empty() ? "" : ", ") + std::to_string(c.ranks);
  throw InputError(file.string() + ": measured for " + have + " rank(s), not " + std::to_string(ranks) +
                   "; run moeplan calibrate --ranks " + std::to_string(ranks));
}

std::string profile_dtype(const std::string& f) {
  if (f == "bf16" || f.empty()) return "bf16";
  if (f == "fp16" || f == "f16" || f == "float16") return "f16";
  if (f == "fp32" || f == "f32" || f == "float32") return "f32";
  if (f.rfind("fp8", 0) == 0 || f == "f8_e4m3") return "fp8";
  if (f == "int8" || f == "i8" || f == "w8a8-int8") return "int8";
  return f;  // a format the CPU executor does not run: the profile has no curve for it
}

std::string fit_key(const std::string& phase, int ranks, const std::string& op) {
  return phase + "/r" + std::to_string(ranks) + ":" + op;
}

double ProfileFit::clamp_tokens(bool prefill, double tokens) const {
  const double lo = prefill ? prefill_tokens_min : decode_tokens_min, hi = prefill ? prefill_tokens_max : decode_tokens_max;
  if (lo > 0 && tokens < lo) return lo;
  if (hi > 0 && tokens > hi) return hi;
  return tokens;
}

std::pair<double, double> fit_correction(const ProfileFit* fit, const std::string& phase, int ranks, const std::string& op) {
  if (!fit) return {1.0, 0.0};
  for (const std::string& key : {fit_key(phase, ranks, op), phase + ":" + op}) {
    const auto s = fit->op_scale.find(key);
    if (s == fit->op_scale.end()) continue;
    const auto sl = fit->op_slope.find(key);
    return {s->second, sl == fit->op_slope.end() ? 0.0 : sl->second};
  }
  return {1.0, 0.0};
}

namespace {

HostProfile read_profile_document(const std::filesystem::path& path) {
  const YAML::Node root = parse_yaml_file(path);
  const std::string w = path.string();
  if (!root.IsMap()) throw InputError(w + ": expected a moeplan profile (a YAML map; docs/validation.md)");
  HostProfile p;
  p.file = path;
  p.host = yaml_get<std::string>(root, "host", w);
  p.cpu_model = yaml_get<std::string>(root, "cpu_model", w);
  p.cpu_path = yaml_get<std::string>(root, "cpu_path", w);
  p.date = yaml_get<std::string>(root, "date", w);
  if (root["moeplan_version"]) p.moeplan_version = yaml_get<std::string>(root, "moeplan_version", w);
  p.threads = yaml_get<int>(root, "threads", w);
  if (p.threads < 1) throw InputError(w + ": 'threads' must be at least 1");
  p.memory_bytes = positive(root, "memory_gb", w) * 1e9;
  p.read_bytes_per_s = positive(root, "read_gb_per_s", w) * 1e9;
  p.triad_bytes_per_s = positive(root, "triad_gb_per_s", w) * 1e9;
  if (root["peak_gflops"]) {
    if (!root["peak_gflops"].IsMap()) throw InputError(w + ": 'peak_gflops' must map weight dtype to GFLOP/s");
    for (const auto& kv : root["peak_gflops"]) p.peak_flops[kv.first.as<std::string>()] = positive(root["peak_gflops"], kv.first.as<std::string>().c_str(), w + ".peak_gflops") * 1e9;
  }
  const YAML::Node layouts = root["layouts"];
  if (!layouts || !layouts.IsSequence() || layouts.size() == 0)
    throw InputError(w + ": 'layouts' must list the measured rank layouts (run moeplan calibrate)");
  for (std::size_t i = 0; i < layouts.size(); ++i) {
    const YAML::Node n = layouts[i];
    const std::string lw = w + ": layouts[" + std::to_string(i) + "]";
    ProfileCurves c;
    c.ranks = yaml_get<int>(n, "ranks", lw);
    c.threads_per_rank = yaml_get<int>(n, "threads_per_rank", lw);
    if (c.ranks < 1 || c.threads_per_rank < 1) throw InputError(lw + ": 'ranks' and 'threads_per_rank' must be at least 1");
    for (const auto& o : p.layouts)
      if (o.ranks == c.ranks) throw InputError(lw + ": rank count " + std::to_string(c.ranks) + " appears twice");
    c.gemm_flops_per_s = read_curves(n["gemm"], "rows", lw + ".gemm");
    c.expert_flops_per_s = read_curves(n["expert_gemm"], "rows_per_expert", lw + ".expert_gemm");
    c.attention_decode_flops_per_s = read_curve(n["attention_decode"], "keys", "gflops", lw + ".attention_decode");
    c.attention_prefill_flops_per_s = read_curve(n["attention_prefill"], "keys", "gflops", lw + ".attention_prefill");
    c.elementwise_s_per_byte = 1.0 / (positive(n, "elementwise_gb_per_s", lw) * 1e9);
    c.op_overhead_s = non_negative(n, "op_overhead_us", lw) * 1e-6;
    if (c.ranks > 1) {
      c.collective_fixed_s = non_negative(n, "collective_fixed_us", lw) * 1e-6;
      c.collective_s_per_byte = 1.0 / (positive(n, "collective_gb_per_s", lw) * 1e9);
    }
    p.layouts.push_back(std::move(c));
  }
  if (const YAML::Node f = root["fit"]) {
    const std::string fw = w + ": fit";
    ProfileFit fit;
    fit.configurations = yaml_get<int>(f, "configurations", fw);
    fit.prefill_fixed_s = yaml_get<double>(f, "prefill_fixed_us", fw) * 1e-6;
    fit.prefill_per_token_s = yaml_get<double>(f, "prefill_per_token_us", fw) * 1e-6;
    fit.decode_fixed_s = yaml_get<double>(f, "decode_fixed_us", fw) * 1e-6;
    fit.decode_per_token_s = yaml_get<double>(f, "decode_per_token_us", fw) * 1e-6;
    auto range = [&](const char* key, double& lo, double& hi) {  // optional [min, max] tokens
      const YAML::Node n = f[key];
      if (!n) return;
      if (!n.IsSequence() || n.size() != 2)
        throw InputError(fw + "." + key + ": expected [min, max] tokens per step, e.g. [1, 64]");
      try {
        lo = n[0].as<double>();
        hi = n[1].as<double>();
      } catch (const YAML::Exception&) {
        lo = hi = -1;
      }
      if (!(lo >= 1 && hi >= lo && std::isfinite(hi)))
        throw InputError(fw + "." + key + ": expected [min, max] tokens per step with 1 <= min <= max");
    };
    range("decode_tokens", fit.decode_tokens_min, fit.decode_tokens_max);
    range("prefill_tokens", fit.prefill_tokens_min, fit.prefill_tokens_max);
    const YAML::Node s = f["op_scale"];
    if (!s || !s.IsMap()) throw InputError(fw + ": 'op_scale' must map phase/rN:op to a factor");
    auto check_key = [&](const std::string& key, const char* what) {
      if ((key.rfind("prefill", 0) != 0 && key.rfind("decode", 0) != 0) || key.find(':') == std::string::npos)
        throw InputError(fw + "." + what + ": key '" + key + "' must look like decode/r1:attn.qkv or prefill:mlp.down");
    };
    for (const auto& kv : s) {
      const std::string key = kv.first.as<std::string>();
      check_key(key, "op_scale");
      fit.op_scale[key] = positive(s, key.c_str(), fw + ".op_scale");
    }
    if (const YAML::Node sl = f["op_slope"]) {
      if (!sl.IsMap()) throw InputError(fw + ": 'op_slope' must map phase/rN:op to an exponent");
      for (const auto& kv : sl) {
        const std::string key = kv.first.as<std::string>();
        check_key(key, "op_slope");
        const double v = yaml_get<double>(sl, key.c_str(), fw + ".op_slope");
        if (!std::isfinite(v) || std::fabs(v) > 2) throw InputError(fw + ".op_slope: '" + key + "' must be a number in [-2, 2]");
        fit.op_slope[key] = v;
      }
    }
    p.fit = std::move(fit);
  }
  if (const YAML::Node r = root["residuals"]) {
    if (r["prefill"]) p.prefill_residuals = read_residuals(r["prefill"], w + ": residuals.prefill");
    if (r["decode"]) p.decode_residuals = read_residuals(r["decode"], w + ": residuals.decode");
  }
  if (root["validation"]) p.validation_summary = yaml_get<std::string>(root, "validation", w);
  return p;
}

}  // namespace

HostProfile read_profile(const std::filesystem::path& path) {
  return read_document(printable(path.string()), [&] { return read_profile_document(path); });
}

std::string profile_yaml(const HostProfile& p) {
  YAML::Node root;
  root["host"] = p.host;
  root["cpu_model"] = p.cpu_model;
  root["cpu_path"] = p.cpu_path;
  root["threads"] = p.threads;
  root["date"] = p.date;
  root["moeplan_version"] = p.moeplan_version;
  root["memory_gb"] = sig6(p.memory_bytes / 1e9);
  root["read_gb_per_s"] = sig6(p.read_bytes_per_s / 1e9);
  root["triad_gb_per_s"] = sig6(p.triad_bytes_per_s / 1e9);
  for (const auto& [k, v] : p.peak_flops) root["peak_gflops"][k] = sig6(v / 1e9);
  for (const auto& c : p.layouts) {
    YAML::Node n;
    n["ranks"] = c.ranks;
    n["threads_per_rank"] = c.threads_per_rank;
    for (const auto& [k, v] : c.gemm_flops_per_s) n["gemm"][k] = curve_node(v, "rows");
    for (const auto& [k, v] : c.expert_flops_per_s) n["expert_gemm"][k] = curve_node(v, "rows_per_expert");
    n["attention_decode"] = curve_node(c.attention_decode_flops_per_s, "keys");
    n["attention_prefill"] = curve_node(c.attention_prefill_flops_per_s, "keys");
    n["elementwise_gb_per_s"] = sig6(1.0 / c.elementwise_s_per_byte / 1e9);
    n["op_overhead_us"] = sig6(c.op_overhead_s * 1e6);
    if (c.ranks > 1) {
      n["collective_fixed_us"] = sig6(c.collective_fixed_s * 1e6);
      n["collective_gb_per_s"] = sig6(1.0 / c.collective_s_per_byte / 1e9);
    }
    root["layouts"].push_back(n);
  }
  if (p.fit) {
    YAML::Node f;
    f["configurations"] = p.fit->configurations;
    f["prefill_fixed_us"] = sig6(p.fit->prefill_fixed_s * 1e6);
    f["prefill_per_token_us"] = sig6(p.fit->prefill_per_token_s * 1e6);
    f["decode_fixed_us"] = sig6(p.fit->decode_fixed_s * 1e6);
    f["decode_per_token_us"] = sig6(p.fit->decode_per_token_s * 1e6);
    if (p.fit->decode_tokens_max > 0) {
      f["decode_tokens"].push_back(sig6(p.fit->decode_tokens_min));
      f["decode_tokens"].push_back(sig6(p.fit->decode_tokens_max));
      f["decode_tokens"].SetStyle(YAML::EmitterStyle::Flow);
    }
    if (p.fit->prefill_tokens_max > 0) {
      f["prefill_tokens"].push_back(sig6(p.fit->prefill_tokens_min));
      f["prefill_tokens"].push_back(sig6(p.fit->prefill_tokens_max));
      f["prefill_tokens"].SetStyle(YAML::EmitterStyle::Flow);
    }
    for (const auto& [k, v] : p.fit->op_scale) f["op_scale"][k] = sig6(v);
    for (const auto& [k, v] : p.fit->op_slope) f["op_slope"][k] = sig6(v);
    root["fit"] = f;
  }
  if (p.prefill_residuals) root["residuals"]["prefill"] = residuals_node(*p.prefill_residuals);
  if (p.decode_residuals) root["residuals"]["decode"] = residuals_node(*p.decode_residuals);
  if (!p.validation_summary.empty()) root["validation"] = p.validation_summary;
  YAML::Emitter e;
  e << root;
  return "# moeplan host profile: written by `moeplan calibrate`; fit and residuals by `moeplan validate`.\n"
         "# Rates in GFLOP/s (GEMM by rows M, routed experts by rows per expert, attention by keys per query);\n"
         "# format and method: docs/validation.md.\n" +
         std::string(e.c_str()) + "\n";
}

std::string this_host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0 || buf[0] == 0) return "localhost";
  return buf;
}

std::string this_cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      std::string v = colon == std::string::npos ? "" : line.substr(colon + 1);
      v.erase(0, v.find_first_not_of(" \t"));
      return v;
    }
  return "unknown CPU";
}

std::string profile_mismatch(const HostProfile& p, int threads_now) {
  std::vector<std::string> diffs;
  if (p.cpu_model != this_cpu_model()) diffs.push_back("CPU '" + p.cpu_model + "', this machine '" + this_cpu_model() + "'");
  if (p.host != this_host_name()) diffs.push_back("host '" + p.host + "', this machine '" + this_host_name() + "'");
  if (threads_now > 0 && p.threads != threads_now)
    diffs.push_back(std::to_string(p.threads) + " threads, now " + std::to_string(threads_now));
  if (diffs.empty()) return "";
  std::string s = p.file.string() + " was measured on another machine or setup (";
  for (std::size_t i = 0; i < diffs.size(); ++i) s += (i ? "; " : "") + diffs[i];
  return s + "): its predictions describe that machine";
}

double profile_op_seconds(const ProfileCurves& c, const model::Op& op, const model::StepValues& x) {
  if (model::is_collective(op.kind)) {
    if (op.group_ranks <= 1) return 0;
    const double bytes = op.comm_bytes.at(x);
    return bytes > 0 ? c.collective_fixed_s + bytes * c.collective_s_per_byte : 0;
  }
  const double flops = op.flops.at(x);
  auto curve = [&](const std::map<std::string, Curve>& m) -> const Curve& {
    const std::string key = profile_dtype(op.weight_format);
    const auto it = m.find(key);
    if (it == m.end())
      throw InputError(std::string("op ") + op.name + ": the profile has no measured rate for weights in '" + op.weight_format +
                       "' (the CPU executor runs bf16, f16, fp8, int8 and f32; run moeplan calibrate --dtypes " + key + ")");
    return it->second;
  };
  switch (op.kind) {
    case OpKind::gemm:
    case OpKind::lm_head:
    case OpKind::router: {
      const double m = op.rows.at(x);
      if (m <= 0 || flops <= 0) return 0;
      return c.op_overhead_s + flops / curve(c.gemm_flops_per_s).at(m);
    }
    case OpKind::expert_gemm: {
      const double touched = x[ix(StepVar::experts_touched)], rows = op.rows.at(x);
      if (rows <= 0 || touched <= 0 || flops <= 0) return 0;
      return c.op_overhead_s + flops / curve(c.expert_flops_per_s).at(rows / touched);
    }
    case OpKind::attention_decode:
    case OpKind::attention_prefill: {
      const bool decode = op.kind == OpKind::attention_decode;
      const double queries = x[ix(decode ? StepVar::decode_tokens : StepVar::prefill_tokens)];
      if (queries <= 0 || flops <= 0) return 0;
      const double pairs = flops / (4.0 * static_cast<double>(op.heads * op.head_dim));
      const Curve& r = decode ? c.attention_decode_flops_per_s : c.attention_prefill_flops_per_s;
      return flops / r.at(pairs / queries);
    }
    default: {
      const double bytes = op.act_bytes.at(x) + op.weight_bytes.at(x);
      if (bytes <= 0 && flops <= 0) return 0;
      return c.op_overhead_s + bytes * c.elementwise_s_per_byte;
    }
  }
}

}  // namespace moeplan::simulator
