// GPU op profiles: the reader and its errors, pricing ops from measured curves (inside their range) and by the
// roofline (outside it, marked extrapolated), the planner's collapsed formula agreeing with StepModel, and every
// shipped profile reading cleanly.
#include <catch2/catch.hpp>

#include <array>
#include <cmath>
#include <fstream>
#include <random>
#include <sstream>

#include "common/error.hpp"
#include "gpu_db/gpu_db.hpp"
#include "simulator/gpu_profile.hpp"
#include "simulator/step_cost.hpp"
#include "simulator/step_formula.hpp"
#include "tests/test_util.hpp"

using namespace moeplan;
using namespace moeplan::simulator;

namespace {

const gpu_db::Database& db() {
  static const auto d = gpu_db::Database::load(test::data());
  return d;
}

std::filesystem::path write_temp(const std::string& name, const std::string& text) {
  const auto path = test::temp_path("moeplan_test_" + name);
  std::ofstream(path) << text;
  return path;
}

constexpr const char* kHeader =
    "moeplan-gpu-profile 1\n"
    "gpu h100-sxm\n"
    "engine trtllm\n"
    "engine_version 1.0\n"
    "source test\n";

// Expects read_gpu_profile to throw an InputError whose message names the file and `line`.
void check_bad(const std::string& name, const std::string& text, int line, const std::string& says) {
  const auto path = write_temp(name, text);
  try {
    read_gpu_profile(path);
    FAIL("no error for " << name);
  } catch (const InputError& e) {
    const std::string msg = e.what();
    INFO(msg);
    CHECK(msg.find(path.string() + (line > 0 ? ":" + std::to_string(line) : "")) != std::string::npos);
    CHECK(msg.find(says) != std::string::npos);
  }
}

struct Setup {
  model::ModelConfig m;
  StepModelRequest request;
  std::shared_ptr<const model::OpGraph> graph;
};

// Maverick FP8 on 8 H100s, tp 8 / ep 8 (dp 1): one decode-sized GEMM curve for attn.qkv's shape and one expert-block
// curve, both measured over x in [1, 64] only, so larger steps fall outside them.
void maverick(Setup& s) {
  s.m = test::load("llama4-maverick");
  s.request.graph.model = &s.m;
  s.request.graph.precision = model::resolve_precision("fp8", s.m, test::precisions());
  s.request.graph.layout = {8, 8, 1, 1};
  s.request.hardware = gpu_hardware(db(), db().gpu("h100-sxm"));
  s.request.routing = RoutingModel::uniform(s.m.num_experts, s.m.experts_per_token, 8);
  s.graph = std::make_shared<const model::OpGraph>(model::build_op_graph(s.request.graph));
}

const model::Op& op_named(const model::OpGraph& g, const std::string& name) {
  for (const auto& op : g.ops)
    if (name == op.name) return op;
  FAIL("no op " << name);
  return g.ops.front();
}

// gemm curve: 10 us at 1 row rising to 40 us at 64 rows; block curve: 100 us at 1 token, 400 us at 64.
std::string maverick_profile(const Setup& s) {
  const model::Op& qkv = op_named(*s.graph, "attn.qkv");
  const model::Op& up = op_named(*s.graph, "moe.experts.gate_up");
  std::ostringstream o;
  o << kHeader << "table gemm 1.0\n"
    << "gemm dtype=" << gpu_profile_dtype(qkv.weight_format) << " n=" << qkv.n << " k=" << qkv.k
    << " kernel=test : 1 10 8 20 64 40\n"
    << "moe dtype=" << gpu_profile_dtype(up.weight_format) << " hidden=5120 inter=8192 experts=128 topk=1 tp=1 ep=8"
    << " dist=balanced kernel=test : 1 100 8 200 64 400\n";
  return o.str();
}

}  // namespace

TEST_CASE("GPU profile: header, curves, lookups by shape and log-log interpolation") {
  const auto path = write_temp("gpu_profile_ok.prof", std::string(kHeader) +
                                                          "license Apache-2.0\n"
                                                          "# a comment line\n"
                                                          "\n"
                                                          "table moe 1.0 collected=n.s.\n"
                                                          "gemm dtype=fp8 n=896 k=5120 kernel=a : 1 10 4 20   # tail\n"
                                                          "gemm dtype=bf16 n=896 k=5120 kernel=a : 1 30 4 40\n"
                                                          "moe dtype=aic:w4a8 hidden=8 : 1 5\n");
  const GpuProfile p = read_gpu_profile(path);
  CHECK(p.gpu == "h100-sxm");
  CHECK(p.engine == "trtllm");
  CHECK(p.engine_version == "1.0");
  CHECK(p.license == "Apache-2.0");
  REQUIRE(p.tables.size() == 1);
  REQUIRE(p.curves.size() == 3);
  CHECK(p.find(GpuCurveKind::moe, {{"dtype", "aic:w4a8"}, {"hidden", "8"}}) == &p.curves[2]);
  const GpuCurve* c = p.find(GpuCurveKind::gemm, {{"dtype", "fp8"}, {"n", "896"}, {"k", "5120"}});
  REQUIRE(c);
  CHECK(c->line == 10);
  CHECK(c->seconds().at(1) == Approx(10e-6));
  CHECK(c->seconds().at(2) == Approx(std::sqrt(10e-6 * 20e-6)));  // halfway in log x: geometric mean in y
  CHECK(p.find(GpuCurveKind::gemm, {{"dtype", "fp8"}, {"n", "897"}, {"k", "5120"}}) == nullptr);
  CHECK(p.find(GpuCurveKind::moe, {{"dtype", "fp8"}}) == nullptr);
  CHECK(p.find(GpuCurveKind::gemm, {{"dtype", "bf16"}, {"n", "896"}})->seconds().at(4) == Approx(40e-6));
  // Outside the range: the roofline's shape anchored at the end point, flagged.
  bool extrapolated = false;
  CHECK(curve_seconds(*c, 8, [](double x) { return x * 1e-6; }, &extrapolated) == Approx(40e-6));
  CHECK(extrapolated);
  extrapolated = false;
  CHECK(curve_seconds(*c, 2, [](double x) { return x; }, &extrapolated) == Approx(std::sqrt(200.0) * 1e-6));
  CHECK_FALSE(extrapolated);
}

TEST_CASE("GPU profile: malformed or truncated files name the file and line") {
  check_bad("magic.prof", "moeplan-gpu-profile 2\n", 1, "not a GPU op profile");
  check_bad("empty.prof", "", 0, "empty file");
  check_bad("kind.prof", std::string(kHeader) + "gemmm dtype=fp8 : 1 2\n", 6, "unknown line kind 'gemmm'");
  check_bad("odd.prof", std::string(kHeader) + "gemm dtype=fp8 n=1 k=1 : 1 2 4\n", 6, "truncated");
  check_bad("colon.prof", std::string(kHeader) + "gemm dtype=fp8 n=1 k=1 1 2\n", 6, "expected ' : '");
  check_bad("order.prof", std::string(kHeader) + "gemm dtype=fp8 : 4 2 1 3\n", 6, "strictly ascending");
  check_bad("nan.prof", std::string(kHeader) + "gemm dtype=fp8 : 1 nan\n", 6, "not a number");
  check_bad("neg.prof", std::string(kHeader) + "gemm dtype=fp8 : 1 -2\n", 6, "positive");
  check_bad("field.prof", std::string(kHeader) + "gemm dtype : 1 2\n", 6, "key=value");
  check_bad("header.prof", "moeplan-gpu-profile 1\ngpu h100-sxm\n", 0, "no 'engine' line");
  // Read lazily, a curve's bad points are found when the curve is first used, still naming its line.
  const auto lazy = write_temp("lazy.prof", std::string(kHeader) + "gemm dtype=fp8 n=1 k=1 : 1 2 4\n");
  const GpuProfile p = read_gpu_profile(lazy, true);
  REQUIRE(p.curves.size() == 1);
  try {
    (void)p.curves[0].seconds();
    FAIL("no error for a lazily read truncated curve");
  } catch (const InputError& e) {
    CHECK(std::string(e.what()).find(lazy.string() + ":6") != std::string::npos);
  }
}

TEST_CASE("GPU profile prices the expert block and GEMMs from its curves, and extrapolates by the roofline") {
  Setup s;
  maverick(s);
  const auto roofline = StepModel(s.request, s.graph);
  s.request.hardware.gpu_profile =
      std::make_shared<const GpuProfile>(read_gpu_profile(write_temp("maverick.prof", maverick_profile(s))));
  const StepModel profiled(s.request, s.graph);
  model::AttentionKind chunked = model::AttentionKind::chunked;

  // Decode of 8 sequences: 8 tokens; on ep 8 the busiest rank's assignments × 8 / top-1 is the curve's x.
  const StepShape small = decode_shape(8, 2000, *s.graph, chunked);
  const auto x = profiled.values(small);
  const double block_tokens = x[static_cast<std::size_t>(model::StepVar::expert_assignments)] * 8;
  REQUIRE(block_tokens >= 1);
  REQUIRE(block_tokens <= 64);
  const GpuProfile& prof = *s.request.hardware.gpu_profile;
  const GpuCurve& block = prof.curves[1];
  const GpuCurve& gemm = prof.curves[0];
  double up_s = 0, qkv_s = 0, down_s = 0;
  int moe_layers = 0, layers = 0;
  for (const OpTime& o : profiled.breakdown(small)) {
    const std::string name = o.op.name;
    if (name == "moe.experts.gate_up") {
      CHECK(std::string(o.source) == "profile");
      up_s += o.time_s;
      moe_layers += o.op.repeat;
    } else if (name == "moe.experts.down") {
      down_s += o.time_s;
    } else if (name == "attn.qkv") {
      CHECK(std::string(o.source) == "profile");
      qkv_s += o.time_s;
      layers += o.op.repeat;
    } else if (name == "attn.o") {
      CHECK(std::string(o.source) == "roofline");  // no curve for its shape
    }
  }
  CHECK(moe_layers == 24);
  CHECK(layers == 48);
  // The curve was measured with a balanced router (A assignments touch min(16, A) experts of a rank); this
  // routing touches fewer, and the memory-bound block reads fewer weights: the curve scaled down, by less than
  // the touched ratio at most.
  const double touched = x[static_cast<std::size_t>(model::StepVar::experts_touched)];
  const double assignments = x[static_cast<std::size_t>(model::StepVar::expert_assignments)];
  REQUIRE(touched < std::min(16.0, assignments));
  const double ratio = up_s / (24 * block.seconds().at(block_tokens));
  CHECK(ratio < 1);
  CHECK(ratio >= touched / std::min(16.0, assignments) * 0.999);
  CHECK(down_s == 0);  // the block's curve covers it
  // One sequence: one assignment touches one expert, as in the balanced measurement: the curve exactly.
  double one_up_s = 0;
  for (const OpTime& o : profiled.breakdown(decode_shape(1, 2000, *s.graph, chunked)))
    if (std::string(o.op.name) == "moe.experts.gate_up") one_up_s += o.time_s;
  CHECK(one_up_s == Approx(24 * block.seconds().at(8)));
  CHECK(qkv_s == Approx(48 * gemm.seconds().at(8)));
  // The step differs from the roofline's by exactly the priced ops' difference.
  double roof_block = 0, roof_qkv = 0;
  for (const OpTime& o : roofline.breakdown(small)) {
    const std::string name = o.op.name;
    if (name == "moe.experts.gate_up" || name == "moe.experts.down" || name == "moe.experts.act") roof_block += o.time_s;
    if (name == "attn.qkv") roof_qkv += o.time_s;
  }
  CHECK(profiled.step_time_s(small) - roofline.step_time_s(small) ==
        Approx(up_s + qkv_s - roof_block - roof_qkv).epsilon(1e-9));

  // 512 sequences: beyond both curves; every op is the roofline's, marked extrapolated.
  const StepShape big = decode_shape(512, 2000, *s.graph, chunked);
  CHECK(profiled.step_time_s(big) == Approx(roofline.step_time_s(big)).epsilon(1e-12));
  bool saw = false;
  for (const OpTime& o : profiled.breakdown(big))
    if (std::string(o.op.name) == "moe.experts.gate_up" || std::string(o.op.name) == "attn.qkv") {
      CHECK(std::string(o.source) == "extrapolated");
      saw = true;
    }
  CHECK(saw);
}

namespace {
// The planner's collapsed formula on Maverick's plane (decode at 3,000 tokens, a 2,000-token prompt) on the setup's
// hardware.
struct PlaneFormula {
  StepPlane plane;
  OpSignatures signatures;
  PlaneOps ops;
  DeviceRates rates;
  StepFormula formula;
  explicit PlaneFormula(const Setup& s)
      : plane(s.m, s.request.graph.layout, s.request.routing, decode_shape(1, 3000, *s.graph, model::AttentionKind::chunked),
              prefill_shape(2000, 0, true, *s.graph, model::AttentionKind::chunked)),
        ops(*s.graph, plane, signatures),
        rates(s.request.hardware, signatures) {
    formula.assign(ops, rates);
  }
};
}  // namespace

TEST_CASE("StepFormula prices a GPU profile's curves as StepModel does, inside and outside their ranges") {
  Setup s;
  maverick(s);
  s.request.hardware.gpu_profile =
      std::make_shared<const GpuProfile>(read_gpu_profile(write_temp("maverick_f.prof", maverick_profile(s))));
  const StepModel sm(s.request, s.graph);
  PlaneFormula f(s);
  REQUIRE(f.ops.exact());
  const StepPlane& plane = f.plane;
  StepFormula& formula = f.formula;
  PlanePoints points;
  std::vector<double> want;
  for (double a : {1.0, 3.0, 8.0, 40.0, 64.0, 300.0, 2000.0})
    for (double b : {0.0, 0.001, 0.5}) {
      const double w = sm.step_time_s(plane.shape(a, b));
      INFO("a = " << a << ", b = " << b);
      CHECK(formula.step_time_s(plane.point(a, b)) == Approx(w).epsilon(1e-9));
      if (b > 0) {
        points.push_back(plane.point(a, b));
        want.push_back(w);
      }
    }
  std::vector<double> got(points.size());
  formula.step_times_s(points, got.size(), got.data());
  for (std::size_t k = 0; k < got.size(); ++k) CHECK(got[k] == Approx(want[k]).epsilon(1e-9));
}

TEST_CASE("Every shipped GPU op profile reads, names its GPU and engine, and its GPU is in the database") {
  int files = 0;
  for (const auto& dir : std::filesystem::directory_iterator(test::data() / "gpu_profiles")) {
    if (!dir.is_directory()) continue;
    for (const auto& f : std::filesystem::directory_iterator(dir.path())) {
      if (f.path().extension() != ".prof") continue;
      INFO(f.path());
      const GpuProfile p = read_gpu_profile(f.path());  // strict: every curve's points parsed now
      CHECK(p.gpu == dir.path().filename().string());
      CHECK(p.engine == f.path().stem().string());
      CHECK_NOTHROW(db().gpu(p.gpu));
      CHECK_FALSE(p.license.empty());
      CHECK_FALSE(p.source.empty());
      // AIConfigurator's tables hold hundreds of curves per file; the AMD profiles only the published shapes.
      CHECK(p.curves.size() > (db().gpu(p.gpu).vendor == "amd" ? 10u : 100u));
      ++files;
    }
  }
  CHECK(files >= 20);
  // The shape the simulator prices Maverick's experts by on 8 H200s (tp 1, ep 8) under TensorRT-LLM is measured,
  // flat from 128 to 2,048 tokens (bandwidth-bound at about 0.5 ms).
  const auto p = shipped_gpu_profile(test::data(), "h200-sxm", "trtllm");
  REQUIRE(p);
  const GpuCurve* c = p->find(GpuCurveKind::moe, {{"dtype", "fp8"}, {"hidden", "5120"}, {"inter", "8192"},
                                                   {"experts", "128"}, {"topk", "1"}, {"tp", "1"}, {"ep", "8"},
                                                   {"dist", "balanced"}});
  REQUIRE(c);
  CHECK(c->seconds().at(128) == Approx(0.51e-3).epsilon(0.05));
  CHECK(c->seconds().at(2048) == Approx(0.54e-3).epsilon(0.05));
  CHECK(shipped_gpu_profile(test::data(), "mi300x", "trtllm") == nullptr);
}

TEST_CASE("The MI300X profiles from published kernel timings price Llama 3.1 70B's FP8 GEMMs, beyond them the roofline") {
  // Shipped for vLLM and SGLang (the same aiter timings), found by auto, and read strictly.
  for (const char* engine : {"vllm", "sglang"}) {
    INFO(engine);
    const auto p = shipped_gpu_profile(test::data(), "mi300x", engine);
    REQUIRE(p);
    CHECK(p->gpu == "mi300x");
    CHECK(p->engine == engine);
    CHECK_NOTHROW(read_gpu_profile(p->file));
    std::vector<std::string> notes;
    CHECK(choose_gpu_profile(test::data(), "mi300x", engine, "auto", &notes) == p);
    REQUIRE(notes.size() == 1);
    CHECK(notes[0].find("mi300x/" + std::string(engine) + ".prof") != std::string::npos);
  }
  const auto prof = shipped_gpu_profile(test::data(), "mi300x", "vllm");
  // A profile of another GPU passed as a file still warns.
  std::vector<std::string> warn;
  choose_gpu_profile(test::data(), "h100-sxm", "vllm", prof->file.string(), &warn);
  REQUIRE(warn.size() == 2);
  CHECK(warn[0].rfind("warning:", 0) == 0);

  // The gate+up GEMM of Llama 3.1 70B at tp 8 (n = 2 x 28672 / 8, k = 8192): aiter's tuned time at m = 1 and 256.
  const GpuCurve* up = find_gemm_curve(*prof, "fp8", 7168, 8192);
  REQUIRE(up);
  CHECK(up->seconds().at(1) == Approx(26.4e-6).epsilon(0.01));
  CHECK(up->seconds().at(256) == Approx(59.3e-6).epsilon(0.01));
  CHECK(up->x_max() == 16384);
  CHECK(find_gemm_curve(*prof, "int8", 7168, 8192) != nullptr);  // the measured int8 curve, same numbers
  CHECK(find_gemm_curve(*prof, "bf16", 7168, 8192) == nullptr);  // no published bf16 timings
  // MI355X (aiter's gfx950 table): the same shape, 19.0 us at m = 1 and 30.3 us at m = 256.
  const auto mi355x = shipped_gpu_profile(test::data(), "mi355x", "vllm");
  REQUIRE(mi355x);
  const GpuCurve* up355 = find_gemm_curve(*mi355x, "fp8", 7168, 8192);
  REQUIRE(up355);
  CHECK(up355->seconds().at(1) == Approx(19.0e-6).epsilon(0.01));
  CHECK(up355->seconds().at(256) == Approx(30.3e-6).epsilon(0.01));

  const model::ModelConfig m = test::load("llama3.1-70b");
  StepModelRequest q;
  q.graph.model = &m;
  q.graph.precision = model::resolve_precision("fp8", m, test::precisions());
  q.graph.layout = {8, 1, 1, 1};
  q.hardware = gpu_hardware(db(), db().gpu("mi300x"));
  const auto graph = std::make_shared<const model::OpGraph>(model::build_op_graph(q.graph));
  const StepModel roofline(q, graph);
  q.hardware.gpu_profile = prof;
  const StepModel profiled(q, graph);
  const model::AttentionKind kind = model::AttentionKind::chunked;

  // Decode of 4 sequences: the four linear layers from their curves at m = 4, the rest by the roofline.
  double up_s = 0;
  int layers = 0;
  for (const OpTime& o : profiled.breakdown(decode_shape(4, 1000, *graph, kind))) {
    const std::string name = o.op.name;
    if (name == "attn.qkv" || name == "attn.o" || name == "mlp.gate_up" || name == "mlp.down") {
      INFO(name);
      CHECK(std::string(o.source) == "profile");
      CHECK(o.op.weight_format == "fp8");
    }
    if (name == "mlp.gate_up") {
      up_s = o.time_s;
      layers = o.op.repeat;
    }
    if (name == "lm_head") CHECK(std::string(o.source) == "roofline");  // vocabulary / 8 rows: not measured
  }
  CHECK(layers == 80);
  CHECK(up_s == Approx(80 * up->seconds().at(4)));
  // The all-reduces after attention and after the MLP from RCCL's measured curve on 8 MI300X (rccl-tests
  // all_reduce_perf): 64 sequences all-reduce 64 x 8192 x 2 B = 1 MiB per layer, 28.4 us measured; 256 sequences
  // 4 MiB, 53.0 us. The alpha-beta model over xGMI would give less at both sizes.
  for (const auto& [seqs, us] : {std::pair{64.0, 28.4}, std::pair{256.0, 53.0}}) {
    INFO(seqs << " sequences");
    int seen = 0;
    for (const OpTime& o : profiled.breakdown(decode_shape(seqs, 1000, *graph, kind)))
      if (o.op.kind == model::OpKind::all_reduce && std::string(o.op.name) != "embed.all_reduce") {
        CHECK(std::string(o.source) == "profile");
        CHECK(o.time_s == Approx(80 * us * 1e-6).epsilon(0.005));
        ++seen;
      }
    CHECK(seen == 2);  // attn.all_reduce, mlp.all_reduce
    for (const OpTime& o : roofline.breakdown(decode_shape(seqs, 1000, *graph, kind)))
      if (std::string(o.op.name) == "attn.all_reduce") CHECK(o.time_s < 80 * us * 1e-6);
  }
  // MI300X's tuned 8-bit GEMMs stream weights well below 80 % of the 5.3 TB/s peak: the measured step is slower.
  CHECK(profiled.step_time_s(decode_shape(4, 1000, *graph, kind)) >
        1.2 * roofline.step_time_s(decode_shape(4, 1000, *graph, kind)));

  // A 20,000-token prefill step lies beyond the measured m = 16,384: the roofline prices it, marked extrapolated.
  bool saw = false;
  for (const OpTime& o : profiled.breakdown(prefill_shape(20000, 0, true, *graph, kind)))
    if (std::string(o.op.name) == "mlp.gate_up") {
      CHECK(std::string(o.source) == "extrapolated");
      saw = true;
    }
  CHECK(saw);
}

namespace {
// Decode-attention curves for Maverick on tp 8 (5 query heads, 1 KV head of 128 on a GPU, bf16 KV), full and
// chunked (8192) layers: batch 1 from 10 us (position 2) to 20 us (position 4096); batch 64 from 100 us to 120 us at
// position 128, its last point.
// One table of `kind` for Maverick's tp-8 attention shape (5 query heads, 1 KV head of 128, bf16 KV), the same curves
// for its full and its chunked (8192) layers: one curve per {batch, kernel, "x y x y ..."}.
std::string maverick_attention_table(const char* kind, std::initializer_list<std::array<const char*, 3>> curves) {
  std::ostringstream o;
  o << kHeader << "table " << kind << " 1.0\n";
  for (const char* window : {"0", "8192"})
    for (const auto& [batch, kernel, points] : curves)
      o << kind << " dtype=bf16 kv=bf16 heads=5 kv_heads=1 head_dim=128 window=" << window << " batch=" << batch
        << " kernel=" << kernel << " : " << points << "\n";
  return o.str();
}
std::string maverick_attention_profile() {  // kernel "other": another kernel, measured at fewer batches
  return maverick_attention_table("attn_decode",
                                  {{"1", "k", "2 10 4096 20"}, {"64", "k", "2 100 128 120"}, {"8", "other", "2 1 4096 1"}});
}

// Gives s the GPU profile `text` (through a temporary file `name`) and returns the StepModel that prices with it.
StepModel with_profile(Setup& s, const std::string& name, const std::string& text) {
  s.request.hardware.gpu_profile = std::make_shared<const GpuProfile>(read_gpu_profile(write_temp(name, text)));
  return StepModel(s.request, s.graph);
}

// One op of a step priced with a profile and by the roofline alone: its time summed over its layers (each priced
// as `source` says), the layers counted; the step's time moves by exactly that op's change.
struct OpAgainstRoofline {
  double profiled_s = 0, roofline_s = 0;
  int layers = 0;
};
OpAgainstRoofline op_against_roofline(const StepModel& sm, const StepModel& roofline, const StepShape& step,
                                      const std::string& name, const std::string& source) {
  OpAgainstRoofline r;
  for (const OpTime& o : sm.breakdown(step))
    if (o.op.name == name) {
      CHECK(o.source == source);
      r.profiled_s += o.time_s;
      r.layers += o.op.repeat;
    }
  for (const OpTime& o : roofline.breakdown(step))
    if (o.op.name == name) r.roofline_s += o.time_s;
  CHECK(sm.step_time_s(step) - roofline.step_time_s(step) == Approx(r.profiled_s - r.roofline_s).epsilon(1e-9));
  return r;
}

// The planner's collapsed formula on Maverick's plane (PlaneFormula) agrees with StepModel at a decoding sequences
// and b of a prompt, for each a given and b in {0, 0.5}.
void check_formula_matches_model(Setup& s, const StepModel& sm, std::initializer_list<double> sequences) {
  PlaneFormula f(s);
  REQUIRE(f.ops.exact());
  for (double a : sequences)
    for (double b : {0.0, 0.5}) {
      if (a == 0 && b == 0) continue;
      INFO("a = " << a << ", b = " << b);
      CHECK(f.formula.step_time_s(f.plane.point(a, b)) == Approx(sm.step_time_s(f.plane.shape(a, b))).epsilon(1e-9));
    }
}
}  // namespace

TEST_CASE("Decode attention from measured curves: log-log in position and batch, extended by the KV read beyond") {
  const GpuProfile p = read_gpu_profile(write_temp("attn.prof", maverick_attention_profile()));
  const DecodeAttentionCurves c =
      find_decode_attention_curves(p, {"bf16", 5, 1, 128, 0}, model::AttentionKind::global);
  REQUIRE(c.size() == 2);  // kernel k: measured at two batches; "other" at one
  CHECK(c.kernel() == "k");
  CHECK(find_decode_attention_curves(p, {"fp8", 5, 1, 128, 0}, model::AttentionKind::global).empty());
  const double per_key = 1e-9;
  bool ex = false;
  // Batch 1 inside its range: the curve.
  CHECK(c.seconds(1, 64, 64, per_key, &ex) == Approx(p.curves[0].seconds().at(64)));
  CHECK_FALSE(ex);
  // Batch 8 between the measured 1 and 64 at position 100: log-log between the two curves' values there.
  const double t1 = p.curves[0].seconds().at(100), t64 = p.curves[1].seconds().at(100);
  CHECK(c.seconds(8, 100, 100, per_key, &ex) == Approx(t1 * std::pow(t64 / t1, std::log(8.0) / std::log(64.0))));
  CHECK_FALSE(ex);
  // Batch 64 at position 1128, beyond its last point (128): 120 us plus 64 sequences × 1000 keys × 1 ns.
  CHECK(c.seconds(64, 1128, 1128, per_key, &ex) == Approx(120e-6 + 64 * 1000 * 1e-9));
  CHECK(ex);
  // Batch 256, beyond the largest measured batch: batch 64's time × 4.
  ex = false;
  CHECK(c.seconds(256, 100, 100, per_key, &ex) == Approx(4 * p.curves[1].seconds().at(100)));
  CHECK(ex);
  // A chunked layer attends at most 8192 keys: beyond the last point only keys past those the curve saw count.
  const DecodeAttentionCurves w =
      find_decode_attention_curves(p, {"bf16", 5, 1, 128, 8192}, model::AttentionKind::chunked);
  REQUIRE(w.size() == 2);
  CHECK(w.seconds(64, 9000, 50, per_key, &ex) == Approx(120e-6));  // fewer keys attended than at position 128
}

TEST_CASE("StepModel and StepFormula price decode attention from a profile's curves alike") {
  Setup s;
  maverick(s);
  const auto roofline = StepModel(s.request, s.graph);
  const StepModel sm = with_profile(s, "maverick_attn.prof", maverick_attention_profile());
  const model::AttentionKind chunked = model::AttentionKind::chunked;
  // 8 sequences at 2000 tokens: inside the batch range and inside batch 1's positions, beyond batch 64's.
  const auto attn = op_against_roofline(sm, roofline, decode_shape(8, 2000, *s.graph, chunked), "attn.decode",
                                        "extrapolated");
  CHECK(attn.layers == 48);
  CHECK(attn.profiled_s > 48 * 10e-6);
  // One sequence at 2000 tokens: batch 1's curve, measured.
  for (const OpTime& o : sm.breakdown(decode_shape(1, 2000, *s.graph, chunked)))
    if (std::string(o.op.name) == "attn.decode") CHECK(std::string(o.source) == "profile");

  check_formula_matches_model(s, sm, {0.0, 1.0, 3.0, 64.0, 300.0, 2000.0});
}

namespace {
// Context attention of the same shape: kernel k at batches 1 and 8, "other" at one batch.
std::string maverick_prefill_profile() {
  return maverick_attention_table("attn_prefill", {{"1", "k", "16 10 1024 100 4096 1000"},
                                                   {"8", "k", "16 20 1024 600"},
                                                   {"2", "other", "16 1 1024 1"}});
}
}  // namespace

TEST_CASE("Prefill attention from measured curves: a step read as fresh prompts, by pairs beyond the curves") {
  using model::AttentionKind;
  CHECK(prompt_pairs(4, 0, AttentionKind::global) == 10);
  CHECK(prompt_pairs(4, 2, AttentionKind::sliding) == 7);   // 1 + 2 + 2 + 2
  CHECK(prompt_pairs(5, 2, AttentionKind::chunked) == 7);   // (1 + 2) + (1 + 2) + 1
  CHECK(prompt_pairs(2, 8, AttentionKind::sliding) == 3);   // inside the window: full causal
  const GpuProfile p = read_gpu_profile(write_temp("prefill.prof", maverick_prefill_profile()));
  const PrefillAttentionCurves c = find_prefill_attention_curves(p, {"bf16", 5, 1, 128, 0}, AttentionKind::global);
  REQUIRE_FALSE(c.empty());
  CHECK(c.kernel() == "k");
  CHECK(find_prefill_attention_curves(p, {"fp8", 5, 1, 128, 0}, AttentionKind::global).empty());
  const auto pairs = [](double prompts, double length) { return prompts * length * (length + 1) / 2; };
  bool ex = false;
  // One prompt of 1024 and eight of 1024: the measured points.
  CHECK(c.seconds(1024, pairs(1, 1024), &ex) == Approx(100e-6));
  CHECK(c.seconds(8 * 1024, pairs(8, 1024), &ex) == Approx(600e-6));
  // Four: log-log between batches 1 and 8.
  CHECK(c.seconds(4 * 1024, pairs(4, 1024), &ex) == Approx(100e-6 * std::pow(6.0, std::log(4.0) / std::log(8.0))));
  CHECK_FALSE(ex);
  // Sixteen: batch 8's time twice, beyond the measured batches.
  CHECK(c.seconds(16 * 1024, pairs(16, 1024), &ex) == Approx(1200e-6));
  CHECK(ex);
  // One prompt of 8192, beyond batch 1's longest (4096): that time scaled by the causal pairs.
  ex = false;
  CHECK(c.seconds(8192, pairs(1, 8192), &ex) == Approx(1000e-6 * pairs(1, 8192) / pairs(1, 4096)));
  CHECK(ex);
  // A 1024-token chunk after 3072 cached tokens: the pairs of a 7168-token prompt, a seventh of one.
  const double chunk_pairs = 1024.0 * 3072 + pairs(1, 1024);
  CHECK(c.seconds(1024, chunk_pairs, &ex) == Approx(1000e-6 * pairs(1, 7168) / pairs(1, 4096) / 7));
  // A one-token prompt: the shortest measured prompt's time (the fixed cost of a call).
  ex = false;
  CHECK(c.seconds(1, 1, &ex) == Approx(10e-6));
  CHECK_FALSE(ex);
  // A chunked layer beyond the curve: its pairs, not the full ones, scale the last point.
  const PrefillAttentionCurves w = find_prefill_attention_curves(p, {"bf16", 5, 1, 128, 8192}, AttentionKind::chunked);
  REQUIRE_FALSE(w.empty());
  CHECK(w.seconds(16384, pairs(1, 16384), &ex) ==
        Approx(1000e-6 * prompt_pairs(16384, 8192, AttentionKind::chunked) / pairs(1, 4096)));
}

TEST_CASE("StepModel and StepFormula price prefill attention from a profile's curves alike") {
  Setup s;
  maverick(s);
  const auto roofline = StepModel(s.request, s.graph);
  const StepModel sm = with_profile(s, "maverick_pre.prof", maverick_prefill_profile());
  const model::AttentionKind chunked = model::AttentionKind::chunked;
  // A 1024-token prompt: batch 1's curve at a measured length, on every layer (full and chunked alike here).
  const auto attn = op_against_roofline(sm, roofline, prefill_shape(1024, 0, true, *s.graph, chunked), "attn.prefill",
                                        "profile");
  CHECK(attn.layers == 48);
  CHECK(attn.profiled_s == Approx(48 * 100e-6));
  // A chunk deep into a long prompt: past the measured lengths.
  for (const OpTime& o : sm.breakdown(prefill_shape(2048, 16384, false, *s.graph, chunked)))
    if (std::string(o.op.name) == "attn.prefill") CHECK(std::string(o.source) == "extrapolated");

  check_formula_matches_model(s, sm, {0.0, 1.0, 3.0, 64.0, 300.0});
}

TEST_CASE("All-reduces priced from measured curves: the faster implementation per size, formula and model alike") {
  Setup s;
  maverick(s);
  const auto roofline = StepModel(s.request, s.graph);
  // Custom all-reduce: 5 us up to 64 KiB, 100 us at 16 MiB; NCCL: 20 us at 1 KiB, 60 us at 16 MiB.
  const std::string text = std::string(kHeader) + "table custom_allreduce 1.0\n" +
                           "all_reduce dtype=bf16 ranks=8 impl=custom kernel=k : 1024 5 65536 5 16777216 100\n" +
                           "all_reduce dtype=fp16 ranks=8 impl=nccl : 1024 20 16777216 60\n" +
                           "all_reduce dtype=int8 ranks=8 impl=nccl : 1024 1 16777216 1\n";  // quantised: not used
  s.request.hardware.gpu_profile = std::make_shared<const GpuProfile>(read_gpu_profile(write_temp("ar.prof", text)));
  const GpuProfile& prof = *s.request.hardware.gpu_profile;
  const StepModel sm(s.request, s.graph);
  const model::AttentionKind chunked = model::AttentionKind::chunked;
  for (double seqs : {8.0, 512.0}) {  // 80 KiB and 5 MiB messages: inside both curves
    const StepShape step = decode_shape(seqs, 2000, *s.graph, chunked);
    double ar_s = 0, roof_ar_s = 0, want_s = 0;
    for (const OpTime& o : sm.breakdown(step))
      if (o.op.kind == model::OpKind::all_reduce) {
        CHECK(std::string(o.source) == "profile");
        ar_s += o.time_s;
        const double bytes = o.op.comm_bytes.at(sm.values(step));
        want_s += o.op.repeat * std::min(prof.curves[0].seconds().at(bytes), prof.curves[1].seconds().at(bytes));
      }
    for (const OpTime& o : roofline.breakdown(step))
      if (o.op.kind == model::OpKind::all_reduce) roof_ar_s += o.time_s;
    INFO("sequences " << seqs);
    CHECK(ar_s == Approx(want_s));
    CHECK(sm.step_time_s(step) - roofline.step_time_s(step) == Approx(ar_s - roof_ar_s).epsilon(1e-9));
  }
  check_formula_matches_model(s, sm, {1.0, 64.0, 2000.0, 20000.0});
}

namespace {
// The setup's block shape measured twice: under the balanced router (100 → 400 us) and under AIConfigurator's
// power-law workload (300 → 900 us, the busiest rank's skew inside).
std::string maverick_skewed_profile(const Setup& s) {
  const model::Op& up = op_named(*s.graph, "moe.experts.gate_up");
  const std::string shape = "moe dtype=" + gpu_profile_dtype(up.weight_format) +
                            " hidden=5120 inter=8192 experts=128 topk=1 tp=1 ep=8";
  return std::string(kHeader) + "table moe 1.0\n" + shape + " dist=balanced kernel=test : 1 100 8 200 64 400\n" + shape +
         " dist=power_law_1.2 kernel=test : 1 300 8 500 64 900\n";
}

double block_seconds(const StepModel& sm, const StepShape& shape, std::string* source) {
  double t = 0;
  for (const OpTime& o : sm.breakdown(shape))
    if (is_expert_block_op(o.op.name)) {
      t += o.time_s;
      if (std::string(o.op.name) == "moe.experts.gate_up") *source = o.source;
    }
  return t;
}
}  // namespace

TEST_CASE("The expert block is priced from the profile's power-law curve unless the user names a router") {
  Setup s;
  maverick(s);
  s.request.hardware.gpu_profile = std::make_shared<const GpuProfile>(
      read_gpu_profile(write_temp("maverick_skewed.prof", maverick_skewed_profile(s))));
  const GpuProfile& prof = *s.request.hardware.gpu_profile;
  // Maverick (model_type llama4) takes router.yaml's default workload, AIConfigurator's alpha 1.2.
  CHECK(default_block_curve_dist(test::data(), "llama4") == "power_law_1.2");
  CHECK(default_block_curve_dist(test::data(), "deepseek_v3") == "power_law_1.01");
  CHECK(block_curve_dist(s.request.routing, s.m) == "power_law_1.2");
  const ExpertBlockShape shape{op_named(*s.graph, "moe.experts.gate_up").weight_format, 5120, 8192, 128, 1, 1, 8, false};
  const GpuCurve* skewed = find_expert_block_curve(prof, shape, "power_law_1.2");
  const GpuCurve* balanced = find_expert_block_curve(prof, shape);
  REQUIRE(skewed);
  REQUIRE(balanced);
  CHECK(skewed_block_curve(*skewed));
  CHECK_FALSE(skewed_block_curve(*balanced));
  CHECK(find_expert_block_curve(prof, shape, "power_law_1.01") == balanced);  // not measured: the balanced curve

  // Uniform router (the default): the power-law curve at x = the step's MoE tokens, with no routing ratio.
  const StepShape eight = decode_shape(8, 2000, *s.graph, model::AttentionKind::chunked);
  const StepModel uniform(s.request, s.graph);
  std::string source;
  CHECK(block_seconds(uniform, eight, &source) == Approx(24 * skewed->seconds().at(8)).epsilon(1e-12));
  CHECK(source == "profile");
  // A router the user gives (here Zipf) keeps the balanced curve, scaled by that router's own statistics.
  s.request.routing = RoutingModel::zipf(s.m.num_experts, s.m.experts_per_token, 8, 1.0);
  CHECK(block_curve_dist(s.request.routing, s.m) == "balanced");
  const StepModel zipf(s.request, s.graph);
  const double zipf_s = block_seconds(zipf, eight, &source);
  CHECK(source == "profile");
  CHECK(zipf_s < 24 * skewed->seconds().at(8));
  CHECK(zipf_s <= 24 * balanced->seconds().at(64) * (1 + 1e-12));

  // The planner's formula prices the skewed curve as StepModel does.
  s.request.routing = RoutingModel::uniform(s.m.num_experts, s.m.experts_per_token, 8);
  const StepModel sm(s.request, s.graph);
  PlaneFormula f(s);
  for (double a : {1.0, 8.0, 40.0, 300.0})
    for (double b : {0.0, 0.001, 0.5}) {
      INFO("a = " << a << ", b = " << b);
      CHECK(f.formula.step_time_s(f.plane.point(a, b)) == Approx(sm.step_time_s(f.plane.shape(a, b))).epsilon(1e-9));
    }
}

TEST_CASE("A missing or malformed router workload file names the file") {
  const auto dir = test::temp_path("moeplan_test_router");
  std::filesystem::create_directories(dir / "gpu_profiles");
  const auto path = dir / "gpu_profiles" / "router.yaml";
  const auto expect = [&](const std::string& text, const std::string& says) {
    std::ofstream(path) << text;
    try {
      default_block_curve_dist(dir, "gpt_oss");
      FAIL("no error for " << text);
    } catch (const InputError& e) {
      INFO(e.what());
      CHECK(std::string(e.what()).find(path.string()) != std::string::npos);
      CHECK(std::string(e.what()).find(says) != std::string::npos);
    }
  };
  // A file that fails to read is not remembered, so the same path serves every case.
  expect("default: {dist: power_law_1.2, source: x}\n", "missing or empty 'read'");
  expect("default: {dist: zipf_2, source: x, read: 2026-12-03}\n", "not a profile router");
  expect("default: {dist: balanced, source: x, read: 2026-12-03}\nmodel_types: [a, b]\n", ":2: 'model_types'");
  expect("default: {dist: balanced\n", "malformed YAML");
  expect("other: 1\n", "top-level 'default'");
  std::filesystem::remove(path);
  CHECK_THROWS_AS(default_block_curve_dist(dir, "gpt_oss"), InputError);
  std::filesystem::remove_all(dir);
}

TEST_CASE("Attention-DP MoE by allgather and reduce-scatter: the pieces, quantized dispatch, measured NCCL curves") {
  Setup s;
  maverick(s);
  // DEP8: attention data parallel over 8 GPUs, experts over the same 8.
  s.request.graph.layout = {1, 8, 1, 8};
  s.request.graph.precision = model::resolve_precision("nvfp4", s.m, test::precisions());
  s.request.hardware = gpu_hardware(db(), db().gpu("b200"));
  s.request.routing = RoutingModel::uniform(s.m.num_experts, s.m.experts_per_token, 8);
  s.graph = std::make_shared<const model::OpGraph>(model::build_op_graph(s.request.graph));
  CHECK(op_named(*s.graph, "moe.dispatch").kind == model::OpKind::all_to_all);  // the default: top-k copies
  s.request.graph.moe_dp_comm = model::MoeDpComm::allgather;
  s.graph = std::make_shared<const model::OpGraph>(model::build_op_graph(s.request.graph));
  const model::Op& dispatch = op_named(*s.graph, "moe.dispatch");
  const model::Op& combine = op_named(*s.graph, "moe.combine");
  CHECK(dispatch.kind == model::OpKind::all_gather);
  CHECK(combine.kind == model::OpKind::all_gather);
  CHECK(dispatch.group_ranks == 8);
  // One rank's piece: its tokens' hidden vectors, bf16 both ways unless the gather carries quantized activations.
  CHECK(dispatch.comm_bytes.coefficient(model::StepVar::tokens) == 2.0 * 5120);
  CHECK(combine.comm_bytes.coefficient(model::StepVar::tokens) == 2.0 * 5120);
  s.request.graph.quantized_dispatch = true;
  s.graph = std::make_shared<const model::OpGraph>(model::build_op_graph(s.request.graph));
  CHECK(op_named(*s.graph, "moe.dispatch").comm_bytes.coefficient(model::StepVar::tokens) == (0.5 + 1.0 / 16) * 5120);
  CHECK(op_named(*s.graph, "moe.combine").comm_bytes.coefficient(model::StepVar::tokens) == 2.0 * 5120);

  // NCCL curves of 8 ranks, x = the whole buffer (8 pieces): the gather 10 -> 200 us, the reduce-scatter 20 -> 400.
  const std::string text = std::string(kHeader) + "table nccl 2.0\n" +
                           "all_gather dtype=fp16 ranks=8 impl=nccl : 1024 10 268435456 200\n" +
                           "reduce_scatter dtype=fp16 ranks=8 impl=nccl : 1024 20 268435456 400\n";
  const auto roofline = StepModel(s.request, s.graph);
  s.request.hardware.gpu_profile = std::make_shared<const GpuProfile>(read_gpu_profile(write_temp("ag.prof", text)));
  const GpuProfile& prof = *s.request.hardware.gpu_profile;
  const StepModel sm(s.request, s.graph);
  const StepShape step = decode_shape(256, 2000, *s.graph, model::AttentionKind::chunked);
  double gather_s = 0, want_s = 0;
  for (const OpTime& o : sm.breakdown(step)) {
    const std::string name = o.op.name;
    if (name != "moe.dispatch" && name != "moe.combine") continue;
    CHECK(std::string(o.source) == "profile");
    gather_s += o.time_s;
    const double buffer = 8 * o.op.comm_bytes.at(sm.values(step));
    want_s += o.op.repeat * prof.curves[name == "moe.combine" ? 1 : 0].seconds().at(buffer);
  }
  CHECK(gather_s == Approx(want_s));
  CHECK(gather_s > 0);
  CHECK(sm.step_time_s(step) != roofline.step_time_s(step));
  check_formula_matches_model(s, sm, {1.0, 64.0, 2000.0});
}
