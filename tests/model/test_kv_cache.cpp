// KV cache bytes per sequence: chunked, sliding and MLA layers keep less than global ones.
#include <catch2/catch.hpp>

#include "model/kv_cache.hpp"
#include "tests/test_util.hpp"

using namespace moeplan;
using namespace moeplan::model;

TEST_CASE("Maverick BF16 KV at 131,072 tokens is 7,650,410,496 bytes, not 393,216 x T") {
  const auto m = test::load("llama4-maverick");
  // 4096 B per layer per token x (12 global x 131072 + 36 chunked x 8192)
  CHECK(kv_bytes_per_sequence(m, 131072, KvDtype::bf16) == 7'650'410'496LL);
  CHECK(kv_bytes_per_sequence(m, 131072, KvDtype::bf16) != 393'216LL * 131072);
  // Every layer at full length (runtimes without chunk-aware caches): 48 x 4096 x T.
  CHECK(kv_bytes_per_sequence(m, 131072, KvDtype::bf16, KvMode::full_length) == 196'608LL * 131072);
  CHECK(kv_bytes_per_token_all_layers(m, KvDtype::bf16) == 196'608);
  // Below the chunk every layer holds every token.
  CHECK(kv_bytes_per_sequence(m, 4096, KvDtype::bf16) == 196'608LL * 4096);
  // FP8 halves it.
  CHECK(kv_bytes_per_sequence(m, 131072, KvDtype::fp8) == 7'650'410'496LL / 2);
}

TEST_CASE("DeepSeek-V3 MLA keeps the 576-wide latent per layer") {
  const auto m = test::load("deepseek-v3");
  CHECK(kv_bytes_per_token_all_layers(m, KvDtype::bf16) == 61 * (512 + 64) * 2);
  CHECK(kv_bytes_per_sequence(m, 1000, KvDtype::fp8) == 61LL * 576 * 1000);
}

TEST_CASE("gpt-oss sliding layers keep at most 128 tokens") {
  const auto m = test::load("gpt-oss-120b");
  const std::int64_t per_layer_token = 2 * 8 * 64 * 2;  // K and V, 8 KV heads, head_dim 64, bf16
  CHECK(kv_bytes_per_sequence(m, 10000, KvDtype::bf16) == per_layer_token * (18 * 10000 + 18 * 128));
  CHECK(kv_bytes_per_sequence(m, 100, KvDtype::bf16) == per_layer_token * 36 * 100);
}

TEST_CASE("dense Llama 3.1 8B: 128 KiB per token in BF16") {
  const auto m = test::load("llama3.1-8b");
  CHECK(kv_bytes_per_token_all_layers(m, KvDtype::bf16) == 131'072);
}
