// model/precision: weight formats (bits per weight with scales) loaded from data/precisions.yaml, the policy of
// which modules a format quantises, and the bytes of every weight tensor under a chosen precision.
#pragma once
#include <array>
#include <filesystem>
#include <string>
#include <vector>

#include "model/config.hpp"

namespace moeplan::model {

enum class ScaleGranularity { none, per_channel, block, group };
enum class QuantPolicy { experts, all_linear, all };

const char* policy_name(QuantPolicy p);

struct FormatOverride {
  std::vector<Role> roles;                 // empty: every role
  std::vector<Module> modules;             // empty: every module
  bool use_more_bits_layers_only = false;  // llama.cpp's use_more_bits(layer, n_layers)
  std::string format;                      // name of another format
};

struct PrecisionFormat {
  std::string name;
  double weight_bits = 16;                  // bits per weight value (GGUF: including in-block scales)
  double scale_bits = 0;                    // bits per separate scale (+ zero point)
  ScaleGranularity granularity = ScaleGranularity::none;
  std::int64_t block_rows = 0, block_cols = 0, group_size = 0;
  std::string compute_dtype;                // bf16, fp16, fp8, int8, fp4
  QuantPolicy default_policy = QuantPolicy::all_linear;
  std::string description, source;
  std::vector<FormatOverride> overrides;
  bool quantised() const { return weight_bits < 16; }
};

struct UsualPolicy {
  std::string model_type, format;
  QuantPolicy policy;
  std::string source;
};

class PrecisionTable {
 public:
  static PrecisionTable load(const std::filesystem::path& yaml_path);
  const PrecisionFormat& format(const std::string& name) const;  // throws InputError with suggestions
  const PrecisionFormat* find(const std::string& name) const;
  std::vector<std::string> names() const;
  const std::vector<PrecisionFormat>& formats() const { return formats_; }
  const std::vector<UsualPolicy>& usual_policies() const { return usual_; }

 private:
  std::vector<PrecisionFormat> formats_;
  std::vector<UsualPolicy> usual_;
};

// A resolved precision: `--precision fp8` (the model's usual policy), `fp8:experts`, `fp8:all-linear`, `bf16`...
struct Precision {
  std::string spec;                 // canonical "format:policy" (or just "bf16")
  const PrecisionFormat* format = nullptr;
  QuantPolicy policy = QuantPolicy::all_linear;
  double high_precision_bytes = 2;  // bytes per weight of what stays unquantised (the checkpoint dtype)
  const PrecisionTable* table = nullptr;
};

// Parse "FORMAT[:POLICY]" for this model; "" or "auto" means the checkpoint's own precision.
Precision resolve_precision(const std::string& spec, const ModelConfig& model, const PrecisionTable& table);

// Whether a policy quantises this weight group (matrices only; routers, norms and vision stay high precision).
bool policy_covers(QuantPolicy policy, const WeightGroup& w);

// Bytes of one weight group (all `count` tensors) stored in this precision. `layer` / `num_layers` let GGUF
// mixes choose per layer (-1 for tensors outside the decoder layers).
double weight_group_bytes(const WeightGroup& w, const Precision& p, int layer, int num_layers);

// weight_group_bytes of every weight group of a model in one precision: per decoder layer (in LayerSpec::weights
// order), the globals and the vision tower. Whoever sizes many layouts of one precision (the planner) computes it
// once and passes it to weight_bytes_per_gpu, build_op_graph and memory_breakdown; the values are the same.
struct GroupBytes {
  std::vector<std::vector<double>> layers;
  std::vector<double> globals, vision;
  // Running sums over the decoder layers by (module, shard): layer_sums[i][module * kShardCount + shard] = the bytes
  // of layers [0, i) in that module and shard, so a pipeline stage's weights per module are two lookups per shard.
  static constexpr int kShardCount = 5;
  std::vector<std::array<double, kModuleCount * kShardCount>> layer_sums;  // [layers + 1]
};
GroupBytes group_bytes(const ModelConfig& model, const Precision& precision);

// The text model's weights in one precision (decoder layers, embedding, output head; no vision, no MTP): the bytes
// stored, and the bytes one decode token reads: every decoder weight but the routed experts, experts_per_token of
// num_experts of those, the output head and one embedding row (a tied embedding is read whole as the head).
struct TextWeightBytes {
  double stored = 0, read_per_token = 0;
};
TextWeightBytes text_weight_bytes(const ModelConfig& model, const Precision& precision);

// KV cache element types.
enum class KvDtype { bf16, fp16, fp8 };
KvDtype parse_kv_dtype(const std::string& s);  // throws InputError
const char* kv_dtype_name(KvDtype d);
int kv_dtype_bytes(KvDtype d);

}  // namespace moeplan::model
