// model/claims: statements that pages make about a model (layers, KV bytes per token, heads, experts, NoPE
// layers, weight sizes, decode speed at a bandwidth, ...) kept as data in data/claims.yaml, each checked against what
// the model's config.json implies. Every quantity a claim may name maps to one computation in claim_quantities(); a new
// claim needs no code. File format: docs/views.md.
#pragma once
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "model/config.hpp"
#include "model/precision.hpp"

namespace moeplan::model {

// What a claim states its figure at, for the quantities that need it: the weights' precision, a memory bandwidth.
struct ClaimContext {
  const Precision* precision = nullptr;
  double bandwidth_bytes_per_s = 0;
};

// One quantity a claim may name and how the config gives it. `compute` returns nothing when the model has no
// such quantity (e.g. experts of a dense model, the NoPE interval of a model without NoPE layers).
struct ClaimQuantity {
  const char* name;
  const char* meaning;  // what is computed, from which config fields
  std::optional<double> (*compute)(const ModelConfig&, const ClaimContext&);
  bool needs_precision = false;  // the claim gives `precision`
  bool needs_bandwidth = false;  // the claim gives `bandwidth_gb_s`
};
const std::vector<ClaimQuantity>& claim_quantities();
const ClaimQuantity* find_claim_quantity(const std::string& name);

struct Claim {
  std::string model;      // built-in model name
  std::string source;     // page URL, or a plain statement that it was not recorded
  std::string read;       // date the page was read (YYYY-MM-DD) or "not recorded"
  std::string text;       // the claim as the page puts it
  std::string quantity;   // a claim_quantities() name
  double value = 0;       // the claimed value
  double tolerance = 0;   // relative; 0 = must be equal
  std::string reason;     // why the claim differs from the config (shown when it does)
  std::string precision;  // the weights' precision the figure is for (quantities that need it), as --precision
  double bandwidth_gb_s = 0;  // the memory bandwidth the figure is for (quantities that need it)
  std::string where;      // FILE:LINE of the entry
};

// Reads data/claims.yaml (or another file of the same form). `known_models` (when not empty) are the model names
// a claim may name. Throws InputError naming FILE:LINE for malformed YAML, a missing or unknown key, a value that
// is not a number, an unknown quantity or an unknown model.
std::vector<Claim> load_claims(const std::filesystem::path& file, const std::vector<std::string>& known_models);

struct ClaimCheck {
  Claim claim;
  std::optional<double> computed;  // what the config implies (none: the model has no such quantity)
  bool matches = false;            // |claimed - computed| <= tolerance x |computed|
};

// The claims about `model` (by name), each against the config; a claim's precision is resolved for the model in
// `precisions` (an InputError naming the claim's FILE:LINE when the model cannot take it).
std::vector<ClaimCheck> check_claims(const std::vector<Claim>& claims, const ModelConfig& model,
                                     const PrecisionTable& precisions);

// The interval N of "every Nth layer has no RoPE" (layers N-1, 2N-1, ... are NoPE); none when the model has no NoPE
// layers or they do not follow one interval.
std::optional<std::int64_t> nope_layer_interval(const ModelConfig& model);

}  // namespace moeplan::model
