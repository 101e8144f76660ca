// Reference router top-k: per token, scores in double, top-k by repeated selection of the largest remaining logit
// (ties to the lower expert id), then the scoring rule's weights. Also the dispatch order (a stable counting sort).
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/router.hpp"

namespace moeplan::kernels {

void router_topk_ref(const float* logits, std::int64_t tokens, std::int64_t experts, std::int64_t k,
                     RouterScoring scoring, std::int32_t* ids, float* weights) {
  if (k < 1 || k > experts) throw std::invalid_argument("router_topk: k must be in [1, experts]");
  std::vector<bool> taken(static_cast<std::size_t>(experts));
  std::vector<double> prob(static_cast<std::size_t>(experts));
  for (std::int64_t t = 0; t < tokens; ++t) {
    const float* row = logits + t * experts;
    // 1. top-k of the logits (softmax is monotone, so the same experts as top-k of the probabilities); a strict
    //    comparison keeps the lowest id among equal logits
    std::fill(taken.begin(), taken.end(), false);
    for (std::int64_t slot = 0; slot < k; ++slot) {
      std::int64_t best = -1;
      for (std::int64_t e = 0; e < experts; ++e)
        if (!taken[static_cast<std::size_t>(e)] && (best < 0 || row[e] > row[best])) best = e;
      taken[static_cast<std::size_t>(best)] = true;
      ids[t * k + slot] = static_cast<std::int32_t>(best);
    }
    // 2. the weights of the chosen experts
    if (scoring == RouterScoring::sigmoid_topk) {
      for (std::int64_t slot = 0; slot < k; ++slot) {
        const double logit = row[ids[t * k + slot]];
        weights[t * k + slot] = static_cast<float>(1.0 / (1.0 + std::exp(-logit)));
      }
      continue;
    }
    // softmax over all experts, maximum subtracted
    double max_logit = row[0], sum = 0;
    for (std::int64_t e = 1; e < experts; ++e) max_logit = std::max(max_logit, static_cast<double>(row[e]));
    for (std::int64_t e = 0; e < experts; ++e) {
      prob[static_cast<std::size_t>(e)] = std::exp(row[e] - max_logit);
      sum += prob[static_cast<std::size_t>(e)];
    }
    double chosen_sum = 0;
    for (std::int64_t slot = 0; slot < k; ++slot) chosen_sum += prob[static_cast<std::size_t>(ids[t * k + slot])];
    // softmax_topk: p / sum over all; softmax_topk_renorm: p / sum over the chosen k
    const double denominator = scoring == RouterScoring::softmax_topk_renorm ? chosen_sum : sum;
    for (std::int64_t slot = 0; slot < k; ++slot)
      weights[t * k + slot] = static_cast<float>(prob[static_cast<std::size_t>(ids[t * k + slot])] / denominator);
  }
}

ExpertDispatch build_expert_dispatch(const std::int32_t* ids, const float* weights, std::int64_t tokens,
                                     std::int64_t k, std::int64_t experts) {
  ExpertDispatch d;
  const std::int64_t rows = tokens * k;
  // 1. count the rows of each expert
  d.expert_offsets.assign(static_cast<std::size_t>(experts + 1), 0);
  for (std::int64_t r = 0; r < rows; ++r) {
    if (ids[r] < 0 || ids[r] >= experts)
      throw std::invalid_argument("build_expert_dispatch: expert id " + std::to_string(ids[r]) + " outside [0, " +
                                  std::to_string(experts) + ")");
    ++d.expert_offsets[static_cast<std::size_t>(ids[r]) + 1];
  }
  // 2. prefix sum: where each expert's block starts
  for (std::int64_t e = 0; e < experts; ++e)
    d.expert_offsets[static_cast<std::size_t>(e + 1)] += d.expert_offsets[static_cast<std::size_t>(e)];
  // 3. place the (token, slot) pairs in token order within each block
  std::vector<std::int64_t> cursor(d.expert_offsets.begin(), d.expert_offsets.end() - 1);
  d.row_token.resize(static_cast<std::size_t>(rows));
  d.row_weight.resize(static_cast<std::size_t>(rows));
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::int64_t dest = cursor[static_cast<std::size_t>(ids[r])]++;
    d.row_token[static_cast<std::size_t>(dest)] = r / k;
    d.row_weight[static_cast<std::size_t>(dest)] = weights ? weights[r] : 1.0f;
  }
  return d;
}

}  // namespace moeplan::kernels
