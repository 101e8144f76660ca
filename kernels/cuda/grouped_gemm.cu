// CUDA grouped expert GEMM (BF16, or FP8 e4m3 with per-channel or 128 x 128 block scales), SwiGLU optionally fused.
// Twins: grouped_gemm_bf16_ref, grouped_gemm_fp8_ref (kernels/ref/gpu_ops.cpp).
//
// Tiling: a block of 4 warps computes BLOCK_M x BLOCK_N outputs of one expert (grid.x: N tiles; grid.y: the M tiles
// of all experts in expert order, gpu::expert_tile_lookup; blocks past the last tile exit). K advances BLOCK_K at a
// time through shared memory; each warp owns a 32 x 32 quarter as 2 x 2 WMMA 16x16x16 BF16 fragments with fp32
// accumulators (tensor cores on sm_80 and later; a wgmma/TMA pipeline for sm_90 is future work). FP8 operands are
// widened to BF16 on their way into shared memory (exact: e4m3's 3 mantissa bits fit BF16's 7), so one MMA path
// serves both. Scales: per-token x scales and per-channel w scales multiply in the epilogue; 128 x 128 block scales
// vary along K, so each 128-wide K group is accumulated apart and added with its scale.
// Fused SwiGLU: a block's 64 B rows are 32 gate rows n and the 32 up rows N/2 + n, so the epilogue has both halves
// and writes silu(gate) * up: [R, N/2] without the [R, N] intermediate going to memory.
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <stdexcept>
#include <string>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/device.cuh"
#include "kernels/gpu_ops.hpp"

namespace moeplan::kernels::cuda {

namespace {

namespace wmma = nvcuda::wmma;

constexpr int BLOCK_M = 64, BLOCK_N = 64, BLOCK_K = 32;
constexpr int THREADS = 128;           // 4 warps as 2 x 2, each 32 x 32 outputs
constexpr int SMEM_LD = BLOCK_K + 8;   // BF16 row stride of the A and B tiles (multiple of 8 as WMMA requires)
constexpr int C_LD = BLOCK_N + 4;      // fp32 row stride of the epilogue tile
constexpr int VEC = 8;                 // elements per vector load (16 B of BF16, 8 B of FP8)
constexpr int SCALE_GROUP_STEPS = static_cast<int>(gpu::kFp8ScaleBlock) / BLOCK_K;  // K steps per 128-wide group

enum class Operand { bf16, fp8 };
enum class Scales { none, per_channel, block_128 };

struct GemmArgs {
  const void* x;               // [R, K] BF16 or FP8
  const float* x_scale;        // [R] (FP8) or nullptr
  const void* w;               // [E, N, K]
  const float* w_scale;        // FP8 scales as gpu::Fp8ScaleLayout lays them out, or nullptr
  const std::int64_t* expert_offsets;  // [E + 1]
  long long experts, n, k;
  float* y;                    // [R, N] or [R, N / 2]
};

// Weight row (within the expert) of B-tile row r in N tile j: plain, 64 consecutive rows; fused, 32 gate rows then
// the 32 matching up rows. Returns -1 past the end.
template <bool FUSE>
__device__ inline long long b_tile_row(int r, long long j, long long n) {
  if (!FUSE) {
    const long long row = j * BLOCK_N + r;
    return row < n ? row : -1;
  }
  const long long half = n / 2, col = j * (BLOCK_N / 2) + (r % (BLOCK_N / 2));
  if (col >= half) return -1;
  return r < BLOCK_N / 2 ? col : half + col;
}

// Copies VEC elements (one 16-byte BF16 or 8-byte FP8 vector) into shared memory as BF16; zeros when src is null.
template <Operand OP>
__device__ inline void load_vec(const void* src, __nv_bfloat16* dst) {
  if (OP == Operand::bf16) {
    const uint4 v = src ? *static_cast<const uint4*>(src) : make_uint4(0, 0, 0, 0);
    *reinterpret_cast<uint4*>(dst) = v;
    return;
  }
  const uint2 v = src ? *static_cast<const uint2*>(src) : make_uint2(0, 0);
  const auto* bytes = reinterpret_cast<const __nv_fp8_storage_t*>(&v);
  for (int i = 0; i < VEC; ++i) {
    const __half h = __half(__nv_cvt_fp8_to_halfraw(bytes[i], __NV_E4M3));
    dst[i] = __float2bfloat16_rn(__half2float(h));
  }
}

// One BLOCK_M x BLOCK_K tile of x and BLOCK_N x BLOCK_K of w into shared memory (rows outside the tile: zeros).
template <Operand OP, bool FUSE>
__device__ void load_tiles(const GemmArgs& a, const gpu::ExpertTile& tile, long long j, long long k0,
                           __nv_bfloat16 (*sa)[SMEM_LD], __nv_bfloat16 (*sb)[SMEM_LD]) {
  constexpr int elem_bytes = OP == Operand::bf16 ? 2 : 1;
  const auto* x = static_cast<const unsigned char*>(a.x);
  const auto* w = static_cast<const unsigned char*>(a.w) + tile.expert * a.n * a.k * elem_bytes;
  constexpr int vecs_per_row = BLOCK_K / VEC;
  for (int v = threadIdx.x; v < BLOCK_M * vecs_per_row; v += THREADS) {
    const int r = v / vecs_per_row, c = (v % vecs_per_row) * VEC;
    const long long row = tile.row_begin + r, col = k0 + c;
    const bool in = row < tile.row_end && col < a.k;
    load_vec<OP>(in ? x + (row * a.k + col) * elem_bytes : nullptr, &sa[r][c]);
  }
  for (int v = threadIdx.x; v < BLOCK_N * vecs_per_row; v += THREADS) {
    const int r = v / vecs_per_row, c = (v % vecs_per_row) * VEC;
    const long long row = b_tile_row<FUSE>(r, j, a.n), col = k0 + c;
    const bool in = row >= 0 && col < a.k;
    load_vec<OP>(in ? w + (row * a.k + col) * elem_bytes : nullptr, &sb[r][c]);
  }
}

using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major>;
using FragB = wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major>;
using FragC = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;

// The warp's 2 x 2 fragments += A-tile rows x B-tile rows^T over BLOCK_K.
__device__ inline void mma_tile(const __nv_bfloat16 (*sa)[SMEM_LD], const __nv_bfloat16 (*sb)[SMEM_LD], int warp_m,
                                int warp_n, FragC (&acc)[2][2]) {
  for (int kk = 0; kk < BLOCK_K; kk += 16) {
    FragA fa[2];
    FragB fb[2];
    for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(fa[i], &sa[warp_m * 32 + i * 16][kk], SMEM_LD);
    // B = W^T: element (k, n) sits at sb[n][k], i.e. column-major with leading dimension SMEM_LD
    for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(fb[i], &sb[warp_n * 32 + i * 16][kk], SMEM_LD);
    for (int i = 0; i < 2; ++i)
      for (int jj = 0; jj < 2; ++jj) wmma::mma_sync(acc[i][jj], fa[i], fb[jj], acc[i][jj]);
  }
}

// The scale of the warp's 32 columns for the 128-wide K group holding k0. The 32 weight rows start at a multiple of
// 32 (fused: half + a multiple of 32, with half % 32 == 0), so they share one 128-row block.
template <bool FUSE>
__device__ inline float block_scale(const GemmArgs& a, long long expert, long long j, int warp_n, long long k0) {
  const long long row = b_tile_row<FUSE>(warp_n * 32, j, a.n);
  if (row < 0) return 0.f;
  return a.w_scale[gpu::fp8_weight_scale_index(gpu::Fp8ScaleLayout::block_128, a.n, a.k, expert, row, k0)];
}

// Output scale of element (row, weight row n): the per-token x scale times the per-channel w scale, as they apply.
template <Scales SC>
__device__ inline float out_scale(const GemmArgs& a, long long expert, long long row, long long n) {
  if (SC == Scales::none) return 1.f;
  const float xs = a.x_scale[row];
  if (SC == Scales::block_128) return xs;
  return xs * a.w_scale[gpu::fp8_weight_scale_index(gpu::Fp8ScaleLayout::per_channel, a.n, a.k, expert, n, 0)];
}

// Accumulators -> shared C tile -> y (scaled; through SwiGLU when fused).
template <Scales SC, bool FUSE>
__device__ void store_tile(const GemmArgs& a, const gpu::ExpertTile& tile, long long j, int warp_m, int warp_n,
                           FragC (&acc)[2][2], float (*sc)[C_LD]) {
  for (int i = 0; i < 2; ++i)
    for (int jj = 0; jj < 2; ++jj)
      wmma::store_matrix_sync(&sc[warp_m * 32 + i * 16][warp_n * 32 + jj * 16], acc[i][jj], C_LD, wmma::mem_row_major);
  __syncthreads();
  const long long out_cols = FUSE ? a.n / 2 : a.n;
  constexpr int tile_cols = FUSE ? BLOCK_N / 2 : BLOCK_N;
  for (int v = threadIdx.x; v < BLOCK_M * tile_cols; v += THREADS) {
    const int r = v / tile_cols, c = v % tile_cols;
    const long long row = tile.row_begin + r, col = j * tile_cols + c;
    if (row >= tile.row_end || col >= out_cols) continue;
    if (!FUSE) {
      a.y[row * out_cols + col] = sc[r][c] * out_scale<SC>(a, tile.expert, row, col);
      continue;
    }
    const float gate = sc[r][c] * out_scale<SC>(a, tile.expert, row, col);
    const float up = sc[r][c + BLOCK_N / 2] * out_scale<SC>(a, tile.expert, row, a.n / 2 + col);
    a.y[row * out_cols + col] = gate / (1.f + expf(-gate)) * up;
  }
}

template <Operand OP, Scales SC, bool FUSE>
__global__ void __launch_bounds__(THREADS) grouped_gemm_kernel(GemmArgs a) {
  // WMMA loads and stores need 256-bit aligned addresses: the bases are, and every fragment offset is a multiple
  // of 32 bytes (16 rows of 80 or 272 bytes; 16 BF16 or 16 / 32 floats across)
  __shared__ __align__(32) __nv_bfloat16 sa[BLOCK_M][SMEM_LD];
  __shared__ __align__(32) __nv_bfloat16 sb[BLOCK_N][SMEM_LD];
  __shared__ __align__(32) float sc[BLOCK_M][C_LD];
  __shared__ long long tile_shared[3];  // expert, row_begin, row_end (a plain array: no constructor in shared memory)
  // 1. which expert and rows this block's M tile covers
  if (threadIdx.x == 0) {
    const gpu::ExpertTile t = gpu::expert_tile_lookup(a.expert_offsets, a.experts, blockIdx.y, BLOCK_M);
    tile_shared[0] = t.expert;
    tile_shared[1] = t.row_begin;
    tile_shared[2] = t.row_end;
  }
  __syncthreads();
  gpu::ExpertTile tile;
  tile.expert = tile_shared[0];
  tile.row_begin = tile_shared[1];
  tile.row_end = tile_shared[2];
  if (tile.expert < 0) return;
  const long long j = blockIdx.x;
  const int warp = threadIdx.x / 32, warp_m = warp / 2, warp_n = warp % 2;
  // 2. the K loop: stage tiles, multiply; 128-block scales fold each K group into acc with its scale
  FragC acc[2][2], part[2][2];
  for (int i = 0; i < 2; ++i)
    for (int jj = 0; jj < 2; ++jj) {
      wmma::fill_fragment(acc[i][jj], 0.f);
      wmma::fill_fragment(part[i][jj], 0.f);
    }
  int step = 0;
  for (long long k0 = 0; k0 < a.k; k0 += BLOCK_K, ++step) {
    load_tiles<OP, FUSE>(a, tile, j, k0, sa, sb);
    __syncthreads();
    mma_tile(sa, sb, warp_m, warp_n, SC == Scales::block_128 ? part : acc);
    __syncthreads();
    if (SC == Scales::block_128 && ((step + 1) % SCALE_GROUP_STEPS == 0 || k0 + BLOCK_K >= a.k)) {
      const float s = block_scale<FUSE>(a, tile.expert, j, warp_n, k0);
      for (int i = 0; i < 2; ++i)
        for (int jj = 0; jj < 2; ++jj) {
          for (int e = 0; e < acc[i][jj].num_elements; ++e) acc[i][jj].x[e] += s * part[i][jj].x[e];
          wmma::fill_fragment(part[i][jj], 0.f);
        }
    }
  }
  // 3. epilogue
  store_tile<SC, FUSE>(a, tile, j, warp_m, warp_n, acc, sc);
}

template <Operand OP, Scales SC>
void launch(const GemmArgs& a, const GroupedGemmShape& s, cudaStream_t stream) {
  const long long n_tiles = s.fuse_swiglu ? gpu::ceil_div(s.n / 2, BLOCK_N / 2) : gpu::ceil_div(s.n, BLOCK_N);
  const long long m_tiles = gpu::grouped_gemm_max_m_tiles(s.rows, s.experts, BLOCK_M);
  if (m_tiles > 65535 || n_tiles > (1ll << 31) - 1)
    throw std::invalid_argument("cuda::grouped_gemm: " + std::to_string(s.rows) + " rows exceed the grid");
  const dim3 grid(static_cast<unsigned>(n_tiles), static_cast<unsigned>(m_tiles));
  if (s.fuse_swiglu)
    grouped_gemm_kernel<OP, SC, true><<<grid, THREADS, 0, stream>>>(a);
  else
    grouped_gemm_kernel<OP, SC, false><<<grid, THREADS, 0, stream>>>(a);
  MOEPLAN_CUDA_CHECK_LAUNCH();
}

void check_shape(const GroupedGemmShape& s) {
  if (s.rows < 0 || s.experts < 1 || s.n < 1 || s.k < 1)
    throw std::invalid_argument("cuda::grouped_gemm: rows >= 0 and positive experts, n, k required");
  if (s.k % VEC != 0) throw std::invalid_argument("cuda::grouped_gemm: k must be a multiple of 8");
  if (s.fuse_swiglu && s.n % 2 != 0) throw std::invalid_argument("cuda::grouped_gemm: fused SwiGLU needs an even n");
}

}  // namespace

void grouped_gemm_bf16(const std::uint16_t* x_sorted, const std::uint16_t* w, const std::int64_t* expert_offsets,
                       const GroupedGemmShape& shape, float* y, Stream stream) {
  check_shape(shape);
  if (shape.rows == 0) return;
  const GemmArgs a{x_sorted, nullptr, w, nullptr, expert_offsets, shape.experts, shape.n, shape.k, y};
  launch<Operand::bf16, Scales::none>(a, shape, as_stream(stream));
}

void grouped_gemm_fp8(const std::uint8_t* x_q, const float* x_scale, const std::uint8_t* w_q, const float* w_scale,
                      gpu::Fp8ScaleLayout layout, const std::int64_t* expert_offsets, const GroupedGemmShape& shape,
                      float* y, Stream stream) {
  check_shape(shape);
  if (layout == gpu::Fp8ScaleLayout::block_128 && shape.fuse_swiglu && (shape.n / 2) % 32 != 0)
    throw std::invalid_argument("cuda::grouped_gemm_fp8: fused SwiGLU with 128-block scales needs (n / 2) % 32 == 0");
  if (shape.rows == 0) return;
  const GemmArgs a{x_q, x_scale, w_q, w_scale, expert_offsets, shape.experts, shape.n, shape.k, y};
  if (layout == gpu::Fp8ScaleLayout::per_channel)
    launch<Operand::fp8, Scales::per_channel>(a, shape, as_stream(stream));
  else
    launch<Operand::fp8, Scales::block_128>(a, shape, as_stream(stream));
}

}  // namespace moeplan::kernels::cuda
