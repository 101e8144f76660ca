// calibrate --device cuda and validate --device cuda, host side: the GPU op-profile writer read back by the
// simulator's reader, the op timings on the CPU backend, and the device-vs-CPU logit comparison with a backend that
// rounds matmul inputs as the CUDA backend does (kernels/ref twins of its conversions) and one that computes wrong.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <unistd.h>

#include "calibrate/gpu_calibrate.hpp"
#include "calibrate/validate_device.hpp"
#include "common/error.hpp"
#include "common/files.hpp"
#include "executor/backend_cpu.hpp"
#include "executor/backend_cuda.hpp"
#include "kernels/gpu_ops.hpp"
#include "kernels/matmul.hpp"
#include "simulator/gpu_profile_write.hpp"
#include "tests/test_util.hpp"

using namespace moeplan;

namespace {

std::filesystem::path temp_file(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / ("moeplan_device_calibrate_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return dir / name;
}

simulator::GpuProfileData synthetic_profile() {
  simulator::GpuProfileData p;
  p.gpu = "h200-sxm";
  p.engine = "moeplan";
  p.engine_version = "cuda-backend";
  p.source = "moeplan calibrate --device cuda on cuda NVIDIA H200, device 0, model llama4-maverick";
  p.license = "measured on this machine";
  p.exported = "2026-12-03";
  p.comments = {"synthetic timings"};
  simulator::GpuProfileCurveData g;
  g.kind = simulator::GpuCurveKind::gemm;
  g.fields = {{"dtype", "bf16"}, {"n", "1024"}, {"k", "5120"}, {"kernel", "moeplan_cuda"}};
  g.x = {1, 4, 16, 256};
  g.seconds = {12.34e-6, 12.96e-6, 15.5e-6, 0.0001234567};
  simulator::GpuProfileCurveData m;
  m.kind = simulator::GpuCurveKind::moe;
  m.fields = {{"dtype", "bf16"}, {"hidden", "5120"}, {"inter", "8192"}, {"experts", "16"}, {"topk", "1"},
              {"tp", "1"},       {"ep", "1"},        {"dist", "balanced"}, {"kernel", "moeplan_cuda"}};
  m.x = {1, 64};
  m.seconds = {0.00021, 0.0031};
  p.curves = {g, m};
  return p;
}

}  // namespace

TEST_CASE("a GPU op profile written by calibrate reads back through the simulator's reader and lookups") {
  const simulator::GpuProfileData p = synthetic_profile();
  const auto path = temp_file("synthetic.prof");
  write_file_atomic(path, simulator::gpu_profile_text(p));
  const simulator::GpuProfile read = simulator::read_gpu_profile(path);
  CHECK(read.gpu == "h200-sxm");
  CHECK(read.engine == "moeplan");
  CHECK(read.exported == "2026-12-03");
  REQUIRE(read.curves.size() == 2);
  const simulator::GpuCurve* gemm = simulator::find_gemm_curve(read, "bf16", 1024, 5120);
  REQUIRE(gemm != nullptr);
  REQUIRE(gemm->seconds().x.size() == 4);
  // 3 significant digits: 12.34 us -> 12.3, 12.96 -> 13.0, 123.4567 -> 123
  CHECK(gemm->seconds().y[0] == Approx(12.3e-6).epsilon(1e-9));
  CHECK(gemm->seconds().y[1] == Approx(13.0e-6).epsilon(1e-9));
  CHECK(gemm->seconds().y[3] == Approx(123e-6).epsilon(1e-9));
  simulator::ExpertBlockShape shape;
  shape.weight_format = "bf16";
  shape.hidden = 5120;
  shape.inter = 8192;
  shape.experts = 16;
  shape.top_k = 1;
  const simulator::GpuCurve* moe = simulator::find_expert_block_curve(read, shape);
  REQUIRE(moe != nullptr);
  CHECK(moe->seconds().at(64) == Approx(0.0031).epsilon(1e-9));
  std::filesystem::remove_all(path.parent_path());
}

TEST_CASE("the profile writer refuses what the reader could not read back") {
  simulator::GpuProfileData p = synthetic_profile();
  p.curves[0].seconds[1] = 0;
  CHECK_THROWS_AS(simulator::gpu_profile_text(p), std::invalid_argument);
  p = synthetic_profile();
  p.curves[0].x = {1, 4, 4, 256};
  CHECK_THROWS_AS(simulator::gpu_profile_text(p), std::invalid_argument);
  p = synthetic_profile();
  p.curves[0].fields[0].second = "bf 16";
  CHECK_THROWS_AS(simulator::gpu_profile_text(p), std::invalid_argument);
  p = synthetic_profile();
  p.gpu.clear();
  CHECK_THROWS_AS(simulator::gpu_profile_text(p), std::invalid_argument);
}

TEST_CASE("calibrate's op timings run on a backend and give one curve per matmul shape and the expert block") {
  const auto backend = executor::make_cpu_backend(kernels::CpuContext{});
  calibrate::GpuCalibrateRequest q;
  nlohmann::json config = parse_json_file(test::fixtures() / "oracle" / "llama4_qknorm" / "config.json");
  q.model = model::parse_hf_config(config, "llama4_qknorm", "fixture");
  q.tokens = {1, 3, 8};
  q.repeats = 1;
  q.gpu = "h200-sxm";
  q.device_description = backend->description();
  q.date = "2026-12-03";
  const simulator::GpuProfileData p = calibrate::calibrate_gpu_ops(*backend, q);
  const auto shapes = calibrate::gemm_shapes(q.model);
  REQUIRE(p.curves.size() == shapes.size() + 1);  // + the routed-expert block
  CHECK(p.curves.back().kind == simulator::GpuCurveKind::moe);
  for (const auto& c : p.curves) {
    REQUIRE(c.x.size() == 3);
    for (double s : c.seconds) CHECK(s > 0);
  }
  const auto path = temp_file("cpu.prof");
  write_file_atomic(path, simulator::gpu_profile_text(p));
  const simulator::GpuProfile read = simulator::read_gpu_profile(path);
  for (const auto& s : shapes) CHECK(simulator::find_gemm_curve(read, "bf16", s.n, s.k) != nullptr);
  std::filesystem::remove_all(path.parent_path());
  q.tokens = {4, 2};
  CHECK_THROWS_AS(calibrate::calibrate_gpu_ops(*backend, q), InputError);
}

TEST_CASE("calibrate's decode-attention curves read back as the curves the simulator prices decode attention from") {
  const auto backend = executor::make_cpu_backend(kernels::CpuContext{});
  calibrate::GpuCalibrateRequest q;
  nlohmann::json config = parse_json_file(test::fixtures() / "oracle" / "llama4_qknorm" / "config.json");
  // head_dim 32: a size the paged decode kernel takes (the fixture's 16 is not, and is reported unmeasured)
  q.tokens = {1, 2};
  q.decode_batches = {1, 3};
  q.decode_keys = {5, 12, 20};
  q.repeats = 1;
  q.gpu = "h200-sxm";
  q.device_description = backend->description();
  q.date = "2026-12-03";
  q.model = model::parse_hf_config(config, "llama4_qknorm", "fixture");
  simulator::GpuProfileData narrow = calibrate::calibrate_gpu_ops(*backend, q);
  for (const auto& c : narrow.curves) CHECK(c.kind != simulator::GpuCurveKind::attn_decode);
  CHECK(std::count_if(narrow.comments.begin(), narrow.comments.end(),
                      [](const std::string& c) { return c.find("not measured: paged_attention_decode: head_dim") != std::string::npos; }) > 0);
  config["head_dim"] = 32;
  q.model = model::parse_hf_config(config, "llama4_qknorm", "fixture");
  // 4 query and 2 KV heads on 1 and 2 GPUs, chunk-8 and global layers: 4 shapes, a curve per batch each
  const auto shapes = calibrate::decode_shapes(q.model);
  REQUIRE(shapes.size() == 4);
  const simulator::GpuProfileData p = calibrate::calibrate_gpu_ops(*backend, q);
  const auto decode = std::count_if(p.curves.begin(), p.curves.end(),
                                    [](const auto& c) { return c.kind == simulator::GpuCurveKind::attn_decode; });
  CHECK(decode == 8);
  const auto path = temp_file("decode.prof");
  write_file_atomic(path, simulator::gpu_profile_text(p));
  const simulator::GpuProfile read = simulator::read_gpu_profile(path);
  for (const auto& s : shapes) {
    INFO("heads " << s.heads << " kv_heads " << s.kv_heads << " window " << s.window);
    const auto kind = s.window > 0 ? model::AttentionKind::chunked : model::AttentionKind::global;
    const simulator::DecodeAttentionCurves curves =
        simulator::find_decode_attention_curves(read, {"bf16", s.heads, s.kv_heads, 32, s.window}, kind);
    REQUIRE(curves.size() == 2);
    CHECK(curves.kernel() == "moeplan_cuda");
    bool extrapolated = false;
    CHECK(curves.seconds(2, 12, 12, 1e-9, &extrapolated) > 0);  // between the measured batches, at a measured point
    CHECK_FALSE(extrapolated);
  }
  std::filesystem::remove_all(path.parent_path());
  q.decode_keys = {12, 5};
  CHECK_THROWS_AS(calibrate::calibrate_gpu_ops(*backend, q), InputError);
}

namespace {

std::shared_ptr<executor::Backend> cpu_backend() {
  return std::shared_ptr<executor::Backend>(executor::make_cpu_backend(kernels::CpuContext{}));
}
std::shared_ptr<executor::Backend> cuda_numerics_backend() {
  return std::shared_ptr<executor::Backend>(executor::make_cuda_numerics_cpu_backend(kernels::CpuContext{}));
}

calibrate::DeviceValidateRequest fixture_request(std::function<std::shared_ptr<executor::Backend>()> device,
                                                 std::function<std::shared_ptr<executor::Backend>()> reference) {
  calibrate::DeviceValidateRequest q;
  q.fixtures_dir = test::fixtures() / "oracle";
  q.make_device = std::move(device);
  q.make_reference = std::move(reference);
  return q;
}

}  // namespace

TEST_CASE("the CUDA numerics reference rounds a matmul's input as the CUDA backend does, and refuses what it refuses") {
  const auto b = executor::make_cuda_numerics_cpu_backend(kernels::CpuContext{});
  // x [2, 16] with values BF16 cannot hold; w [3, 16] BF16
  std::vector<float> x(32);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = 1.0f + 0.001f * static_cast<float>(i) + 1e-5f;
  std::vector<std::uint16_t> w(48);
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = kernels::float_to_bf16(0.25f * static_cast<float>(i % 7) - 0.5f);
  const kernels::WeightView view{kernels::WeightDtype::bf16, w.data(), 3, 16, nullptr};
  std::vector<float> y(6), exact(6), rounded_ref(6), xr(x.size());
  b->matmul(x.data(), 2, view, y.data(), false);
  kernels::matmul_ref(x.data(), 2, view, exact.data(), false);
  for (std::size_t i = 0; i < x.size(); ++i) xr[i] = kernels::bf16_to_float(kernels::float_to_bf16(x[i]));
  kernels::matmul_ref(xr.data(), 2, view, rounded_ref.data(), false);
  CHECK(y == rounded_ref);
  CHECK(y != exact);
  const kernels::WeightView f16{kernels::WeightDtype::f16, w.data(), 3, 16, nullptr};
  CHECK_THROWS_WITH(b->matmul(x.data(), 2, f16, y.data(), false), Catch::Contains("no kernel for f16 weights"));
}

TEST_CASE("validate --device: the CPU backend against itself differs by nothing on every fixture") {
  auto q = fixture_request(cpu_backend, cpu_backend);
  q.make_fp32 = cpu_backend;
  const auto checks = calibrate::validate_device(q);
  REQUIRE(checks.size() == 5);
  for (const auto& c : checks) {
    INFO(c.fixture);
    CHECK(c.max_abs_diff == 0);
    CHECK(c.max_abs_diff_fp32 == 0);
    CHECK(c.argmax_mismatches == 0);
    CHECK(c.rows == 2 * 12 + 2 * 4);
    CHECK(c.pass());
  }
  CHECK(checks[0].fixture == "llama4_fp8");
  CHECK(checks[0].dtype == kernels::WeightDtype::fp8_e4m3);
  CHECK(checks[1].dtype == kernels::WeightDtype::bf16);
}

TEST_CASE("validate --device: a device without the BF16/FP8 input rounding fails against the CUDA numerics reference") {
  // The fp32 CPU backend stands for a device whose matmuls keep fp32 inputs: every fixture differs from the rounding
  // reference by more than a kernel's reordered sums may, so the check tells the two apart.
  const auto checks = calibrate::validate_device(fixture_request(cpu_backend, cuda_numerics_backend));
  REQUIRE(checks.size() == 5);
  for (const auto& c : checks) {
    INFO(c.fixture << ": max |diff| " << c.max_abs_diff << " of max |logit| " << c.max_abs_logit << ", allowed "
                   << c.allowed << ", argmax differs in " << c.argmax_mismatches << " of " << c.rows << " rows");
    CHECK(c.max_abs_diff > 2 * c.allowed);
    CHECK_FALSE(c.pass());
  }
  CHECK_THROWS_AS(calibrate::validate_device([] {
                    auto q = fixture_request(cpu_backend, cpu_backend);
                    q.fixtures_dir = test::fixtures() / "no-such-dir";
                    return q;
                  }()),
                  InputError);
}
