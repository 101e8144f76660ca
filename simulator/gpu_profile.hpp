// simulator/gpu_profile: measured kernel times of one GPU under one serving engine (a "GPU op profile"), read from
// data/gpu_profiles/<gpu>/<engine>.prof, and the lookups the step pricing makes in it. A profile holds curves: time
// as a function of one size (tokens, rows, context, message bytes) for one fixed shape of an op kind. Between
// measured points a curve is interpolated log-log; beyond its ends the op is priced by the roofline anchored at the
// nearest measured point, and marked extrapolated. File grammar, units and sources: docs/gpu_profiles.md.
#pragma once
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "model/config.hpp"
#include "simulator/profile.hpp"
#include "simulator/routing.hpp"

namespace moeplan::simulator {

// Kinds of curve a profile holds, by the file's first word on a curve line.
enum class GpuCurveKind { moe, gemm, attn_prefill, attn_decode, all_reduce, all_gather, alltoall, reduce_scatter };
const char* gpu_curve_kind_name(GpuCurveKind k);

struct GpuProfile;
GpuProfile read_gpu_profile(const std::filesystem::path& path, bool lazy);

struct GpuCurve {
  GpuCurveKind kind = GpuCurveKind::gemm;
  std::string shape;   // the shape fields as written: " dtype=fp8 hidden=5120 ... " (spaced at both ends)
  int line = 0;        // where it was read
  // file:line for messages, formatted only when one is thrown.
  struct Where {
    std::shared_ptr<const std::string> file;
    int line = 0;
    std::string str() const;
  };
  // x: tokens / rows / context / bytes; y: seconds per call. A shipped profile parses a curve's points when it is
  // first asked for (plan reads every GPU's profiles and uses a few curves of each).
  const Curve& seconds() const;
  double x_min() const { return seconds().x.front(); }
  double x_max() const { return seconds().x.back(); }

 private:
  friend GpuProfile read_gpu_profile(const std::filesystem::path& path, bool lazy);
  std::shared_ptr<const std::string> text_;  // the file, while points are unparsed
  std::size_t points_at_ = 0, points_len_ = 0;
  Where where_;
  // Parsed once, by whichever thread asks first (the planner's serving checks run in parallel).
  struct Flag {
    std::atomic<bool> set{false};
    Flag() = default;
    Flag(const Flag& o) : set(o.set.load()) {}
    Flag& operator=(const Flag& o) {
      set = o.set.load();
      return *this;
    }
  };
  mutable Curve seconds_;
  mutable Flag parsed_;
};

struct GpuProfile {
  std::string gpu, engine, engine_version, source, license, exported;
  std::vector<std::string> tables;  // provenance line of each op table ("moe 1.3.0rc20 collected=...")
  std::vector<GpuCurve> curves;
  std::filesystem::path file;

  // The curve of `kind` whose fields include every (key, value) of `want` (fields the curve lacks do not match);
  // nullptr when there is none.
  const GpuCurve* find(GpuCurveKind kind, const std::map<std::string, std::string>& want) const;
  // Every such curve, in file order.
  std::vector<const GpuCurve*> find_all(GpuCurveKind kind, const std::map<std::string, std::string>& want) const;

 private:
  friend GpuProfile read_gpu_profile(const std::filesystem::path& path, bool lazy);
  std::multimap<std::string, std::size_t> index_;  // "kind dtype" → curve, to keep lookups short
  // The curves matching `want`, at most `limit`, in file order (find and find_all memoise its answers).
  std::vector<const GpuCurve*> scan(GpuCurveKind kind, const std::map<std::string, std::string>& want,
                                    std::size_t limit) const;
  // Answers already given (the planner asks the same shapes for every layout and precision), shared by copies.
  struct Memo {
    std::mutex mu;
    std::unordered_map<std::string, const GpuCurve*> found;
    std::unordered_map<std::string, std::vector<const GpuCurve*>> found_all;
  };
  std::shared_ptr<Memo> memo_ = std::make_shared<Memo>();
};

// Reads a profile; throws InputError naming the file and line for anything malformed or truncated. `lazy`: check
// the header and every curve's shape now, and a curve's points when first used (the error names the line then).
GpuProfile read_gpu_profile(const std::filesystem::path& path, bool lazy);
inline GpuProfile read_gpu_profile(const std::filesystem::path& path) { return read_gpu_profile(path, false); }

// The profile of `gpu` under `engine` from `data_dir`/gpu_profiles, read once per process; nullptr when the
// project ships none for that pair.
std::shared_ptr<const GpuProfile> shipped_gpu_profile(const std::filesystem::path& data_dir, const std::string& gpu,
                                                      const std::string& engine);

// The profile a command prices `gpu` under `engine` with. `choice`: "auto" (the shipped profile for the pair, or
// none), "none" (the roofline alone), or a profile file (read strictly; a profile of another GPU or engine is used
// with a warning naming both). Appends one line saying what was used to `notes`.
std::shared_ptr<const GpuProfile> choose_gpu_profile(const std::filesystem::path& data_dir, const std::string& gpu,
                                                     const std::string& engine, const std::string& choice,
                                                     std::vector<std::string>* notes);

// A profile's weight-dtype key for a moeplan weight format ("fp8-block" stays, "fp8:experts" → "fp8").
std::string gpu_profile_dtype(const std::string& weight_format);
// The two lookups the step pricing makes (StepModel and StepFormula alike): a dense GEMM's curve by weight format and
// shape, and the routed-expert block's by its whole shape on a layout (balanced router); nullptr when not measured.
struct ExpertBlockShape {
  std::string weight_format;
  std::int64_t hidden = 0, inter = 0, experts = 0, top_k = 0;
  int moe_tp = 1, ep = 1;
  bool fp4_tensor_cores = false;
};
const GpuCurve* find_gemm_curve(const GpuProfile& p, const std::string& weight_format, std::int64_t n, std::int64_t k);
// The block's curve under the router workload `dist` (a `dist=` value, e.g. "power_law_1.2"), or under the balanced
// router when the profile lacks that one.
const GpuCurve* find_expert_block_curve(const GpuProfile& p, const ExpertBlockShape& shape,
                                        const std::string& dist = "balanced");
// Whether a block curve was measured under a skewed router (its `dist` is not "balanced"): the skew, and the busiest
// rank it makes, are then in the measurement.
bool skewed_block_curve(const GpuCurve& c);
bool skewed_curve_dist(const std::string& dist);  // the same for a `dist` value ("" and "balanced" are not)
// A shape field of a curve ("dist", "kernel", ...), "" when the curve has none.
std::string gpu_curve_field(const GpuCurve& c, const std::string& key);

// The router workload whose MoE curves price a step when the command line names no router: the `dist` that
// `data_dir`/gpu_profiles/router.yaml gives for the Hugging Face `model_type` (its default for any other), read once
// per process. Throws InputError naming the file for a missing or malformed one.
std::string default_block_curve_dist(const std::filesystem::path& data_dir, const std::string& model_type);
// The router workload a step's block curve is looked up under: routing.curve_dist(), "auto" resolved by
// default_block_curve_dist(data_dir(), model.model_type).
std::string block_curve_dist(const RoutingModel& routing, const model::ModelConfig& model);

// The shape an attention table (decode or prefill) is keyed by, besides batch and kernel.
struct AttentionShape {
  std::string kv_dtype;  // "bf16", "fp16", "fp8"
  std::int64_t heads = 0, kv_heads = 0, head_dim = 0;  // on one GPU
  std::int64_t window = 0;                              // chunk or sliding window; 0 = full attention
};
// Decode attention of one shape, measured at several batch sizes: AIConfigurator's generation tables hold one curve
// per batch (sequences), with x = the sequence position (keys attended, window included) and y = one layer's time.
class DecodeAttentionCurves {
 public:
  bool empty() const { return by_batch_.empty(); }
  std::size_t size() const { return by_batch_.size(); }
  const std::string& kernel() const { return kernel_; }
  // Seconds of one call for `batch` sequences at mean position `position`, each attending `keys` keys on average
  // (the window applied). Inside the measured batches and positions: the curves at the two batches around `batch`,
  // each interpolated log-log at `position`, then log-log in batch. A position beyond a curve's last point adds
  // batch × (keys − keys at that point) × `s_per_key` (the roofline's seconds per sequence and key) to the last
  // point's time: decode attention is a fixed cost per call and per sequence plus a KV read per key, and the
  // measured fixed part stays. A batch beyond the largest measured one scales that curve's time by the batch ratio
  // (sequences are independent work); below the smallest, its time stays (the fixed cost per call). Sets
  // *extrapolated when any of these leaves the measured range. docs/gpu_profiles.md "Decode attention".
  double seconds(double batch, double position, double keys, double s_per_key, bool* extrapolated) const;

 private:
  friend DecodeAttentionCurves find_decode_attention_curves(const GpuProfile& p, const AttentionShape& shape,
                                                            model::AttentionKind window_kind);
  double at_batch(std::size_t i, double position, double keys, double s_per_key, bool* extrapolated) const;
  std::vector<std::pair<double, const GpuCurve*>> by_batch_;  // ascending batch
  std::string kernel_;
  std::int64_t window_ = 0;
  model::AttentionKind window_kind_ = model::AttentionKind::global;
};
// Prefill (context) attention of one shape, measured at several batch sizes: AIConfigurator's context tables hold
// one curve per batch (sequences), x = prompt tokens per sequence, each a fresh prompt (no cached prefix), and y = one
// layer's time.
// (query, key) pairs of one fresh prompt of `tokens` tokens: tokens (tokens + 1) / 2 under full causal attention,
// fewer under a window of `kind` (the window_keys of each position summed). Exact for whole tokens, so the pairs of
// positions a+1..b are prompt_pairs(b) - prompt_pairs(a) (prefill_shape's windowed chunks).
double prompt_pairs(double tokens, std::int64_t window, model::AttentionKind kind);
class PrefillAttentionCurves {
 public:
  bool empty() const { return by_batch_.empty(); }
  const std::string& kernel() const { return kernel_; }
  // Seconds of one call over `tokens` prompt tokens whose queries have `pairs_full` (query, key) pairs under full
  // causal attention (their cached prefixes included). The step is read as the fresh prompts with the same tokens and
  // pairs: length L = 2 pairs_full / tokens − 1 and tokens / L of them (a chunk of a long prompt is a fraction of
  // one). At that length: the curves at the two measured batches around it, interpolated log-log in length and in
  // batch; below the smallest batch that batch's time scaled by the batch ratio (pairs are proportional), never
  // below its shortest measured prompt (the fixed cost per call); above the largest, scaled by the batch ratio.
  // Beyond the longest measured prompt: that time scaled by prompt_pairs (the causal compute) and *extrapolated set;
  // below the shortest, its time. docs/gpu_profiles.md "Prefill attention".
  double seconds(double tokens, double pairs_full, bool* extrapolated) const;

 private:
  friend PrefillAttentionCurves find_prefill_attention_curves(const GpuProfile& p, const AttentionShape& shape,
                                                              model::AttentionKind window_kind);
  double at_batch(std::size_t i, double length, bool* extrapolated) const;
  std::vector<std::pair<double, const GpuCurve*>> by_batch_;  // ascending batch
  std::string kernel_;
  std::int64_t window_ = 0;
  model::AttentionKind window_kind_ = model::AttentionKind::global;
};
// The prefill-attention curves of a shape (compute dtype bf16, as for decode); empty when the profile has none. The
// kernel: the one measured at the most batch sizes, the first in the file on a tie.
PrefillAttentionCurves find_prefill_attention_curves(const GpuProfile& p, const AttentionShape& shape,
                                                     model::AttentionKind window_kind);

// The decode-attention curves of a shape (compute dtype bf16, as the profiles measure it); empty when the profile
// has none. Where a profile holds several kernels for the shape (vLLM and SGLang tables), the one measured at the
// most batch sizes, the first in the file on a tie.
DecodeAttentionCurves find_decode_attention_curves(const GpuProfile& p, const AttentionShape& shape,
                                                   model::AttentionKind window_kind);

// Whether an op is one of the routed-expert block's (moe.experts.gate_up, .act, .down), which a block curve prices
// as one.
bool is_expert_block_op(const char* op_name);

// The dtype keys to look a routed-expert block up by, in order: MXFP4 experts on GPUs with FP4 tensor cores run
// the W4A8 MXFP4 x MXFP8 grouped GEMM (AIConfigurator measures gpt-oss's experts with it on Blackwell), else the
// format's own key.
std::vector<std::string> gpu_profile_expert_dtypes(const std::string& weight_format, bool fp4_tensor_cores);

// Time of one call at size x on a curve: interpolated inside the measured range; outside it the curve's end value
// times roofline(x) / roofline(end) (the roofline's shape, anchored to the measurement). `roofline_s` gives the
// roofline time at a size. Sets *extrapolated when x is outside the range.
template <class Roofline>
double curve_seconds(const GpuCurve& c, double x, Roofline roofline_s, bool* extrapolated) {
  const double lo = c.x_min(), hi = c.x_max();
  if (x >= lo && x <= hi) return c.seconds().at(x);
  if (extrapolated) *extrapolated = true;
  const double end = x < lo ? lo : hi;
  const double r_end = roofline_s(end);
  if (!(r_end > 0)) return c.seconds().at(end);
  return c.seconds().at(end) * roofline_s(x) / r_end;
}

}  // namespace moeplan::simulator
