// kernels/router: MoE routing. router_topk turns router logits into each token's k experts and their weights, in
// the three scoring rules of the supported models; build_expert_dispatch, gather_rows and scatter_add_rows move
// token rows into expert order and back (around grouped_matmul in kernels/matmul.hpp).
// Which side applies the router weight differs by model, and the caller chooses it:
//   Llama 4:         gather_rows(..., row_scale = weights)  (the sigmoid weight scales the expert INPUT),
//                    scatter_add_rows(..., row_scale = nullptr)
//   Qwen3, Mixtral:  gather_rows(..., nullptr), scatter_add_rows(..., row_scale = weights) (scales the OUTPUT)
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/cpu_features.hpp"

namespace moeplan::kernels {

// How logits become (expert ids, weights). Top-k takes the k largest values, ties to the lower expert id; the
// ids come out in that order (largest first).
//   sigmoid_topk         Llama 4: top-k of the logits; weight = sigmoid(logit). No softmax, no renormalisation.
//   softmax_topk_renorm  Qwen3 with norm_topk_prob = true, and Mixtral: p = softmax over all E logits; top-k of p;
//                        weights = p / sum of the k chosen p. (Mixtral's softmax over only the top-k logits is the
//                        same numbers.)
//   softmax_topk         Qwen3 with norm_topk_prob = false: weights = the chosen softmax probabilities as they are.
enum class RouterScoring { sigmoid_topk, softmax_topk_renorm, softmax_topk };

// logits: [tokens, experts] (finite); ids: [tokens, k]; weights: [tokens, k]; 1 <= k <= experts.
void router_topk_ref(const float* logits, std::int64_t tokens, std::int64_t experts, std::int64_t k,
                     RouterScoring scoring, std::int32_t* ids, float* weights);
// Fast version: the same per-token computation (identical results), threaded over tokens.
void router_topk(const CpuContext& ctx, const float* logits, std::int64_t tokens, std::int64_t experts,
                 std::int64_t k, RouterScoring scoring, std::int32_t* ids, float* weights);

// The (token, slot) pairs of a routing, sorted by expert: R = tokens * k rows, expert by expert, each expert's rows
// in token order.
struct ExpertDispatch {
  std::vector<std::int64_t> expert_offsets;  // [experts + 1]: expert e owns rows expert_offsets[e] .. [e+1]-1
  std::vector<std::int64_t> row_token;       // [R]: the token each row came from
  std::vector<float> row_weight;             // [R]: that token's router weight for this expert
};
// ids, weights: [tokens, k] as router_topk writes them. Throws std::invalid_argument on an id outside [0, experts).
ExpertDispatch build_expert_dispatch(const std::int32_t* ids, const float* weights, std::int64_t tokens,
                                     std::int64_t k, std::int64_t experts);

// x_sorted[r, :] = x[row_token[r], :] * (row_scale ? row_scale[r] : 1)
//   x: [tokens, hidden]; row_token, row_scale: [rows]; x_sorted: [rows, hidden]
void gather_rows(const CpuContext& ctx, const float* x, std::int64_t hidden, const std::int64_t* row_token,
                 const float* row_scale, std::int64_t rows, float* x_sorted);

// y[row_token[r], :] += y_sorted[r, :] * (row_scale ? row_scale[r] : 1), rows added in order r = 0, 1, ...
// (deterministic: threads split the hidden dimension, not the rows).
//   y_sorted: [rows, hidden]; y: [tokens, hidden]
void scatter_add_rows(const CpuContext& ctx, const float* y_sorted, std::int64_t hidden,
                      const std::int64_t* row_token, const float* row_scale, std::int64_t rows, float* y);

}  // namespace moeplan::kernels
