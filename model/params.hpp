// model/params: exact parameter counts from the weight list of a ModelConfig (no hardware, no dtype).
#pragma once
#include <array>
#include <cstdint>

#include "model/config.hpp"

namespace moeplan::model {

struct ParamCounts {
  std::array<std::int64_t, kModuleCount> by_module{};  // indexed by Module
  std::int64_t text = 0;      // language model: embedding, decoder layers, final norm, lm_head (no MTP, no vision)
  std::int64_t vision = 0;    // vision encoder + projector
  std::int64_t mtp = 0;       // multi-token-prediction modules as stored in the checkpoint
  std::int64_t total = 0;     // text + vision + mtp: everything the checkpoint stores
  // Parameters one token touches in a forward pass of the text model: everything but the routed experts, plus
  // top-k experts per MoE layer. `active_with_embedding` counts the input embedding rows (as Meta's "17B
  // active" does); `active_without_embedding` leaves the embedding out.
  std::int64_t active_with_embedding = 0;
  std::int64_t active_without_embedding = 0;

  std::int64_t of(Module m) const { return by_module[static_cast<std::size_t>(m)]; }
};

ParamCounts count_params(const ModelConfig& c);

// Parameters of one decoder layer (all of its tensors).
std::int64_t layer_params(const LayerSpec& l);

}  // namespace moeplan::model
