// Precision formats: bits per weight with scales, policies, and whole-checkpoint sizes.
#include <catch2/catch.hpp>

#include "common/error.hpp"
#include "model/params.hpp"
#include "model/shard.hpp"
#include "tests/test_util.hpp"

using namespace moeplan;
using namespace moeplan::model;

TEST_CASE("precision fp8 means Maverick's usual experts-only policy") {
  const auto m = test::load("llama4-maverick");
  const auto p = resolve_precision("fp8", m, test::precisions());
  CHECK(p.spec == "fp8:experts");
  CHECK(resolve_precision("fp8:all-linear", m, test::precisions()).spec == "fp8:all-linear");
  // A dense model gets all-linear for fp8, and experts-only is refused.
  const auto dense = test::load("llama3.1-8b");
  CHECK(resolve_precision("fp8", dense, test::precisions()).spec == "fp8:all-linear");
  CHECK_THROWS_AS(resolve_precision("fp8:experts", dense, test::precisions()), InputError);
  CHECK_THROWS_WITH(resolve_precision("fp7", m, test::precisions()), Catch::Contains("unknown precision 'fp7'"));
  CHECK_THROWS_WITH(resolve_precision("fp8:some", m, test::precisions()), Catch::Contains("policy"));
}

TEST_CASE("checkpoint sizes: Maverick BF16 ~803 GB, FP8 (experts) ~ 417 GB as published") {
  const auto m = test::load("llama4-maverick");
  // Published (the meta-llama Hugging Face checkpoints' file sizes; docs/memory.md "Weight bytes"): ~803 GB BF16,
  // ~417 GB FP8 — both with the vision tower.
  const double bf16 = weight_bytes_total(m, resolve_precision("bf16", m, test::precisions()), true).total;
  CHECK(bf16 == Approx(2.0 * 401'583'781'376LL));
  const double fp8 = weight_bytes_total(m, resolve_precision("fp8", m, test::precisions()), true).total;
  // Experts in 1 byte + one fp32 scale per output row; everything else 2 bytes.
  const double experts = 24.0 * 128 * 3 * 5120 * 8192;
  const double expert_rows = 24.0 * 128 * (2 * 8192 + 5120);
  CHECK(fp8 == Approx(experts + expert_rows * 4 + 2.0 * (401'583'781'376.0 - experts)));
  CHECK(fp8 / 1e9 == Approx(417).margin(3));
}

TEST_CASE("scale overheads: nvfp4 4.5 bits, mxfp4 4.25, int4 group-128 4.15625, q8_0 8.5") {
  const auto m = test::load("mixtral-8x7b");
  const auto& t = test::precisions();
  const WeightGroup w{Module::routed_experts, Role::gate, Shard::experts, 14336, 4096, 8, true};
  CHECK(weight_group_bytes(w, resolve_precision("nvfp4", m, t), 0, 32) == Approx(static_cast<double>(w.params()) * 4.5 / 8));
  CHECK(weight_group_bytes(w, resolve_precision("mxfp4", m, t), 0, 32) == Approx(static_cast<double>(w.params()) * 4.25 / 8));
  CHECK(weight_group_bytes(w, resolve_precision("int4-awq", m, t), 0, 32) == Approx(static_cast<double>(w.params()) * (4 + 20.0 / 128) / 8));
  CHECK(weight_group_bytes(w, resolve_precision("q8_0", m, t), 0, 32) == Approx(static_cast<double>(w.params()) * 8.5 / 8));
  // A router stays in bf16 under every policy.
  const WeightGroup router{Module::router, Role::router, Shard::replicated, 8, 4096, 1, true};
  CHECK(weight_group_bytes(router, resolve_precision("q8_0", m, t), 0, 32) == Approx(8 * 4096 * 2));
}

TEST_CASE("q4_k_m uses Q6_K for ffn_down only on llama.cpp's use_more_bits layers") {
  const auto m = test::load("llama3.1-8b");
  const auto p = resolve_precision("q4_k_m", m, test::precisions());
  const WeightGroup down{Module::dense_mlp, Role::down, Shard::tensor, 4096, 14336, 1, true};
  // n = 32: layers 0..3 and 28..31 get more bits, and every third layer in between starting at 6.
  CHECK(weight_group_bytes(down, p, 0, 32) == Approx(static_cast<double>(down.params()) * 6.5625 / 8));
  CHECK(weight_group_bytes(down, p, 4, 32) == Approx(static_cast<double>(down.params()) * 4.5 / 8));
  CHECK(weight_group_bytes(down, p, 6, 32) == Approx(static_cast<double>(down.params()) * 6.5625 / 8));
  CHECK(weight_group_bytes(down, p, 31, 32) == Approx(static_cast<double>(down.params()) * 6.5625 / 8));
}

TEST_CASE("mxfp4_moe: the ggml-org gpt-oss GGUF files, MXFP4 experts and Q8_0 elsewhere, at llama-bench's sizes") {
  // llama.cpp benches/dgx-spark.md (build 6918) lists gpt-oss 20B MXFP4 MoE at 11.27 GiB and 120B at 59.02 GiB.
  for (const auto& [name, gib] : {std::pair{"gpt-oss-20b", 11.27}, std::pair{"gpt-oss-120b", 59.02}}) {
    INFO(name);
    const auto m = test::load(name);
    const Precision p = resolve_precision("mxfp4_moe", m, test::precisions());
    CHECK(p.spec == "mxfp4_moe:all");
    const double bytes = weight_bytes_total(m, p, false).total;
    CHECK(bytes / (1024.0 * 1024 * 1024) == Approx(gib).epsilon(0.01));
    // The experts-only mxfp4 prices the rest in bf16: about 1 GiB (20B) to 2 GiB (120B) more than the file.
    CHECK(weight_bytes_total(m, resolve_precision("mxfp4", m, test::precisions()), false).total > bytes * 1.03);
  }
  const auto m = test::load("gpt-oss-20b");
  const Precision p = resolve_precision("mxfp4_moe", m, test::precisions());
  const WeightGroup expert{Module::routed_experts, Role::down, Shard::experts, 2880, 2880, 32, true};
  const WeightGroup q{Module::attention, Role::q, Shard::tensor, 4096, 2880, 1, true};
  const WeightGroup head{Module::lm_head, Role::head, Shard::vocab, 201088, 2880, 1, true};
  CHECK(weight_group_bytes(expert, p, 0, 24) == Approx(static_cast<double>(expert.params()) * 4.25 / 8));
  CHECK(weight_group_bytes(q, p, 0, 24) == Approx(static_cast<double>(q.params()) * 8.5 / 8));
  CHECK(weight_group_bytes(head, p, -1, 24) == Approx(static_cast<double>(head.params()) * 8.5 / 8));
}

TEST_CASE("malformed precisions.yaml names file and line") {
  CHECK_THROWS_WITH(PrecisionTable::load(test::fixtures() / "bad" / "precisions_bad.yaml"),
                    Catch::Contains("precisions_bad.yaml:") && Catch::Contains("malformed YAML"));
}

TEST_CASE("weight bytes per GPU from group_bytes' running sums equal the group-by-group sum, module by module") {
  // The planner passes group_bytes (layer_sums) to weight_bytes_per_gpu; everything else sums group by group.
  for (const char* name : {"llama4-maverick", "qwen3-235b-a22b", "deepseek-v3", "gpt-oss-120b", "llama3.1-70b"}) {
    const auto m = test::load(name);
    for (const char* spec : {"bf16", "fp8", "nvfp4"}) {
      const Precision p = resolve_precision(spec, m, test::precisions());
      const GroupBytes cached = group_bytes(m, p);
      REQUIRE(cached.layer_sums.size() == m.layers.size() + 1);
      for (const ParallelLayout l : {ParallelLayout{1, 1, 1, 1}, ParallelLayout{8, 8, 1, 1}, ParallelLayout{4, 1, 2, 1},
                                     ParallelLayout{1, 8, 4, 8}, ParallelLayout{2, 2, 2, 1}}) {
        INFO(name << " " << spec << " tp=" << l.tp << " ep=" << l.ep << " pp=" << l.pp << " dp=" << l.dp);
        const WeightBytes slow = weight_bytes_per_gpu(m, p, l, false);
        const WeightBytes fast = weight_bytes_per_gpu(m, p, l, false, &cached);
        CHECK(fast.stage == slow.stage);
        CHECK(fast.total == Approx(slow.total).epsilon(1e-12));
        for (int mod = 0; mod < kModuleCount; ++mod)
          CHECK(fast.by_module[static_cast<std::size_t>(mod)] ==
                Approx(slow.by_module[static_cast<std::size_t>(mod)]).epsilon(1e-12).margin(1e-6));
      }
    }
  }
}
