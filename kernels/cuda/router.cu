// CUDA router top-k: one warp per token. The warp holds the token's logits in registers (experts / 32 per lane),
// takes the k largest by k rounds of a warp arg-max (ties to the lower id, as router_topk_ref), and forms the
// weights of the scoring rule in fp32. Twin: router_topk_ref (kernels/ref/router.cpp, double).
#include <cuda_runtime.h>

#include <stdexcept>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/device.cuh"
#include "kernels/gpu_ops.hpp"

namespace moeplan::kernels::cuda {

namespace {

constexpr int WARP = 32;
constexpr int WARPS_PER_BLOCK = 4;
constexpr int MAX_PER_LANE = 32;  // experts <= 1024
constexpr int MAX_K = 8;
constexpr unsigned FULL_MASK = 0xffffffffu;

// The better of two (value, id) candidates: larger value, then lower id; id -1 is no candidate.
__device__ inline void better(float& v, int& id, float v2, int id2) {
  if (id2 >= 0 && (id < 0 || v2 > v || (v2 == v && id2 < id))) {
    v = v2;
    id = id2;
  }
}

__device__ inline float warp_sum(float v) {
  for (int o = WARP / 2; o > 0; o /= 2) v += __shfl_xor_sync(FULL_MASK, v, o);
  return v;
}

// logits: [tokens, experts]; ids, weights: [tokens, k]
__global__ void router_topk_kernel(const float* __restrict__ logits, long long tokens, int experts, int k,
                                   RouterScoring scoring, std::int32_t* __restrict__ ids, float* __restrict__ weights) {
  const long long t = blockIdx.x * static_cast<long long>(WARPS_PER_BLOCK) + threadIdx.x / WARP;
  const int lane = threadIdx.x % WARP;
  if (t >= tokens) return;  // whole warps leave together
  // 1. this lane's logits: experts lane, lane + 32, ...
  float v[MAX_PER_LANE];
  unsigned taken = 0;
  const int per_lane = (experts + WARP - 1) / WARP;
  for (int j = 0; j < per_lane; ++j) {
    const int e = lane + j * WARP;
    v[j] = e < experts ? logits[t * experts + e] : -INFINITY;
  }
  // 2. k rounds: each lane's best untaken candidate, then the warp's best of those
  int chosen[MAX_K];
  float chosen_logit[MAX_K];
  for (int slot = 0; slot < k; ++slot) {
    float best_v = 0.f;
    int best_id = -1;
    for (int j = 0; j < per_lane; ++j) {
      const int e = lane + j * WARP;
      if (e < experts && !(taken & (1u << j))) better(best_v, best_id, v[j], e);
    }
    for (int o = WARP / 2; o > 0; o /= 2) {
      const float ov = __shfl_xor_sync(FULL_MASK, best_v, o);
      const int oid = __shfl_xor_sync(FULL_MASK, best_id, o);
      better(best_v, best_id, ov, oid);
    }
    chosen[slot] = best_id;
    chosen_logit[slot] = best_v;
    if (best_id % WARP == lane) taken |= 1u << (best_id / WARP);
  }
  // 3. weights of the scoring rule
  float denominator = 1.f, max_logit = 0.f;
  if (scoring != RouterScoring::sigmoid_topk) {
    max_logit = chosen_logit[0];  // the largest logit overall
    float sum = 0.f;
    for (int j = 0; j < per_lane; ++j)
      if (lane + j * WARP < experts) sum += expf(v[j] - max_logit);
    sum = warp_sum(sum);
    float chosen_sum = 0.f;
    for (int slot = 0; slot < k; ++slot) chosen_sum += expf(chosen_logit[slot] - max_logit);
    denominator = scoring == RouterScoring::softmax_topk_renorm ? chosen_sum : sum;
  }
  if (lane == 0)
    for (int slot = 0; slot < k; ++slot) {
      ids[t * k + slot] = chosen[slot];
      weights[t * k + slot] = scoring == RouterScoring::sigmoid_topk
                                  ? 1.f / (1.f + expf(-chosen_logit[slot]))
                                  : expf(chosen_logit[slot] - max_logit) / denominator;
    }
}

}  // namespace

void router_topk(const float* logits, std::int64_t tokens, std::int64_t experts, std::int64_t k,
                 RouterScoring scoring, std::int32_t* ids, float* weights, Stream stream) {
  if (experts < 1 || experts > WARP * MAX_PER_LANE || k < 1 || k > experts || k > MAX_K || tokens < 0)
    throw std::invalid_argument("cuda::router_topk: need 1 <= k <= min(experts, 8) and experts <= 1024");
  if (tokens == 0) return;
  const auto blocks = static_cast<unsigned>(gpu::ceil_div(tokens, WARPS_PER_BLOCK));
  router_topk_kernel<<<blocks, WARPS_PER_BLOCK * WARP, 0, as_stream(stream)>>>(
      logits, tokens, static_cast<int>(experts), static_cast<int>(k), scoring, ids, weights);
  MOEPLAN_CUDA_CHECK_LAUNCH();
}

}  // namespace moeplan::kernels::cuda
