// Bad input on the command line, table-driven: each row is an argv, the exit code it must give and a piece of the
// one-line message. Rows are grouped by the class of failure they guard against (crashes and hangs, runaway sizes,
// library type errors, silent nonsense, data loss, files, message escaping, ignored input). Files the rows need
// are made in a scratch directory first; "@NAME" in an argument stands for the path of scratch file NAME.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

#include "app/cli.hpp"
#include "app/limits.hpp"
#include "tests/app/cli_run.hpp"
#include "tests/test_util.hpp"

using namespace moeplan;
namespace fs = std::filesystem;

namespace {

struct Row {
  const char* what;                // the failure class and case
  std::vector<std::string> argv;   // "@NAME" -> scratch file NAME
  int code;                        // expected exit code
  std::string message;             // a piece of stderr (empty: exit code only)
};

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << text;
}

nlohmann::json llama_config() { return nlohmann::json::parse(std::ifstream(test::data() / "models" / "llama3.1-8b" / "config.json")); }

// The scratch files of the table: configs with one defect each, YAML files, a FIFO, a directory.
struct Scratch {
  fs::path dir = fs::temp_directory_path() / ("moeplan_badinput_" + std::to_string(::getpid()));
  Scratch() {
    fs::remove_all(dir);
    fs::create_directories(dir);
    auto config = [&](const std::string& name, const std::function<void(nlohmann::json&)>& change) {
      auto j = llama_config();
      change(j);
      write(dir / name / "config.json", j.dump());
    };
    // Crashes and hangs
    write(dir / "nested" / "config.json", std::string(1000000, '['));
    write(dir / "fifo_weights" / "config.json",
          nlohmann::json::parse(std::ifstream(test::data() / "models" / "mixtral-8x7b" / "config.json")).dump());
    ::mkfifo((dir / "fifo_weights" / "model.safetensors").c_str(), 0600);
    ::mkfifo((dir / "fifo.yaml").c_str(), 0600);
    // Type errors
    config("type_int", [](auto& j) { j["model_type"] = 7; });
    config("text_string", [](auto& j) { j["text_config"] = "x"; });
    write(dir / "huge_number" / "config.json",
          llama_config().dump().substr(0, llama_config().dump().size() - 1) + ",\"x\":" + std::string(400, '9') + "}");
    config("eps_string", [](auto& j) { j["rms_norm_eps"] = "small"; });
    // Type errors in the fields only the executor reads (run --weights): config.json, then the index
    auto built_in = [&](const std::string& model, const std::string& name, const std::function<void(nlohmann::json&)>& change) {
      auto j = nlohmann::json::parse(std::ifstream(test::data() / "models" / model / "config.json"));
      change(j);
      write(dir / name / "config.json", j.dump());
    };
    built_in("llama4-maverick", "attn_scale_string", [](auto& j) { j["text_config"]["attn_scale"] = "0.1"; });
    built_in("llama4-maverick", "rope_factor_string", [](auto& j) {
      j["text_config"]["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", "8"}};
    });
    built_in("llama4-maverick", "rope_scaling_list", [](auto& j) { j["text_config"]["rope_scaling"] = {8, 1}; });
    built_in("qwen3-30b-a3b", "norm_topk_string", [](auto& j) { j["norm_topk_prob"] = "true"; });
    built_in("mixtral-8x7b", "weight_map_list", [](auto&) {});
    write(dir / "weight_map_list" / "model.safetensors.index.json", R"({"weight_map": ["model.safetensors"]})");
    // Silent nonsense
    config("heads_over_hidden", [](auto& j) {
      j["hidden_size"] = 64;
      j["num_attention_heads"] = 128;
      j["num_key_value_heads"] = 128;
    });
    config("eps_zero", [](auto& j) { j["rms_norm_eps"] = 0; });
    config("theta_negative", [](auto& j) { j["rope_theta"] = -1; });
    auto mixtral = nlohmann::json::parse(std::ifstream(test::data() / "models" / "mixtral-8x7b" / "config.json"));
    mixtral["num_experts_per_tok"] = 9;
    write(dir / "topk" / "config.json", mixtral.dump());
    // Ignored input: layer lists out of range
    auto maverick = nlohmann::json::parse(std::ifstream(test::data() / "models" / "llama4-maverick" / "config.json"));
    maverick["text_config"]["moe_layers"] = {1, 3, 480};
    write(dir / "moe_layers" / "config.json", maverick.dump());
    maverick = nlohmann::json::parse(std::ifstream(test::data() / "models" / "llama4-maverick" / "config.json"));
    maverick["text_config"]["no_rope_layers"] = {1, 0};
    write(dir / "no_rope" / "config.json", maverick.dump());
    maverick["text_config"]["no_rope_layers"] = std::vector<int>(48, 2);
    write(dir / "no_rope_values" / "config.json", maverick.dump());
    nlohmann::json loads = {{"experts", 128}, {"layers", {std::vector<int>(128, 1)}}};
    write(dir / "loads.json", loads.dump());
    // YAML option files
    write(dir / "anchor_map.yaml", "gpu: &g {a: 1}\n");
    write(dir / "deep.yaml", "gpu: " + std::string(100, '[') + std::string(100, ']') + "\n");
    std::string laughs = "l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n";  // each level repeats the one before ten times
    for (int i = 1; i < 9; ++i) {  // appended piece by piece: GCC 12 warns falsely (-Wrestrict) on "l" + to_string
      const std::string level = std::to_string(i), prev = std::to_string(i - 1);
      laughs.append("l").append(level).append(": &l").append(level).append(" [");
      for (int k = 0; k < 10; ++k) laughs.append(k ? ", *l" : "*l").append(prev);
      laughs.append("]\n");
    }
    write(dir / "laughs.yaml", laughs);
    write(dir / "complex_key.yaml", "? [count, tp]\n: 8\n");
    write(dir / "nested_list.yaml", "gpus: [[h100-sxm]]\n");
    write(dir / "nested_ids.yaml", "published: true\nid: [[DN-01]]\n");
    write(dir / "switch_word.yaml", "breakdown: maybe\n");
    write(dir / "scalar_list.yaml", "count: [8]\n");
    write(dir / "two_docs.yaml", "count: 8\n---\ncount: 4\n");
    // yaml-cpp 0.7 reads the ',' after a closed top-level flow map as an endless run of empty documents
    write(dir / "flow_map_comma.yaml", "{count: 8},\ngpu: h100-sxm\n");
    write(dir / "unknown_key.yaml", "no-such-option: 1\n");
    write(dir / "placeholder.yaml", "count: '%value%'\n");
    write(dir / "no_value.yaml", "count:\n");
    write(dir / "points.yaml", "points:\n  - id: [1, 2]\n");
    write(dir / "profile.yaml", "host: {a: 1}\n");
    // Files
    fs::create_directories(dir / "a_directory");
    fs::create_symlink(dir / "target.txt", dir / "link.txt");
    ::mkfifo((dir / "out_fifo").c_str(), 0600);
    write(dir / "checkpoint" / "config.json", "{\"real\": true}");
    write(dir / "checkpoint" / "model.safetensors.index.json", "{}");
  }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  std::vector<std::string> expand(std::vector<std::string> argv) const {
    for (auto& a : argv)
      if (a.size() > 1 && a[0] == '@') a = (dir / a.substr(1)).string();
    return argv;
  }
};

const std::vector<Row>& rows() {
  const std::string mib(1 << 20, 'g');
  static const std::vector<Row> kRows = {
      // 1. Crashes and hangs
      {"1 JSON nested a million deep", {"run", "--weights", "@nested"}, 2, "nested deeper than 64"},
      {"1 --threads without bound", {"run", "--random-weights", "1", "--threads", "2000"}, 2, "--threads 2000 is out of range"},
      {"1 a FIFO as model.safetensors", {"run", "--weights", "@fifo_weights"}, 2, "not a regular file"},
      {"1 a FIFO with no writer as --config-file", {"memory", "--config-file", "@fifo.yaml"}, 2, "expected a map"},
      // Boost.Program_options fills %placeholders% of its messages until none is left: a word holding one looped
      {"1 an unknown option holding %original_token%", {"memory", "--x%original_token%"}, 2,
       "unrecognised option '--x\\x25original_token\\x25'"},
      {"1 a value holding %value%", {"memory", "--count", "%value%"}, 2, "the argument ('\\x25value\\x25') for option '--count'"},
      {"1 a YAML value holding %value%", {"memory", "--config-file", "@placeholder.yaml"}, 2, "('\\x25value\\x25')"},
      // 2. Runaway sizes
      {"2 plan --max-batch 2^63-1", {"plan", "--max-batch", "9223372036854775807"}, 2, "--max-batch"},
      {"2 simulate --concurrency 1e9", {"simulate", "--concurrency", "1000000000"}, 2, "--concurrency 1000000000 is out of range"},
      {"2 simulate --concurrency near 2^63", {"simulate", "--concurrency", "9223372036854775807"}, 2, "out of range"},
      {"2 simulate --static-batch 1e9", {"simulate", "--static-batch", "1000000000"}, 2, "--static-batch 1000000000 is out of range"},
      {"2 simulate --num-requests 1e9", {"simulate", "--num-requests", "1000000000"}, 2, "--num-requests 1000000000 is out of range"},
      {"2 simulate --disaggregate 2^31-1", {"simulate", "--disaggregate", "2147483647"}, 2, "--disaggregate 2147483647 is out of range"},
      {"2 simulate --cuda-graph-batch-sizes descending", {"simulate", "--cuda-graph-batch-sizes", "8,4"}, 2, "ascending order"},
      {"2 simulate --cuda-graph-batch-sizes 2^63", {"simulate", "--cuda-graph-batch-sizes", "9223372036854775807"}, 2,
       "--cuda-graph-batch-sizes '9223372036854775807': use batch sizes from 1 to 1,000,000"},
      {"2 run --batch 1e9", {"run", "--random-weights", "1", "--batch", "1000000000"}, 2, "--batch 1000000000 is out of range"},
      {"2 run --prompt-tokens 1e9", {"run", "--random-weights", "1", "--prompt-tokens", "1000000000"}, 2, "--prompt-tokens 1000000000 is out of range"},
      {"2 run beyond the model's context", {"run", "--random-weights", "1", "--model", "mixtral-8x7b", "--prompt-tokens", "40000"}, 2,
       "exceeds mixtral-8x7b's context of 32768"},
      {"2 run batch x tokens", {"run", "--random-weights", "1", "--batch", "65536", "--prompt-tokens", "1000"}, 2, "tokens a CPU run may hold"},
      {"2 --model /dev/zero", {"memory", "--model", "/dev/zero"}, 2, "not a regular file"},
      {"2 --config-file /dev/zero", {"memory", "--config-file", "/dev/zero"}, 2, "not a regular file"},
      {"2 memory --context 2^40", {"memory", "--context", "1099511627776"}, 2, "--context 1099511627776 is out of range"},
      // 3. Library type errors
      {"3 model_type a number", {"memory", "--model", "@type_int/config.json"}, 2, "field 'model_type' must be a string"},
      {"3 text_config a string", {"memory", "--model", "@text_string/config.json"}, 2, "field 'text_config' must be a JSON object"},
      {"3 a 400-digit number", {"memory", "--model", "@huge_number/config.json"}, 2, "malformed JSON"},
      {"3 rms_norm_eps a string", {"memory", "--model", "@eps_string/config.json"}, 2, "field 'rms_norm_eps' must be a positive number"},
      {"3 run: attn_scale a string", {"run", "--weights", "@attn_scale_string"}, 2, "config.json: field 'attn_scale' must be a number, got \"0.1\""},
      {"3 run: rope_scaling factor a string", {"run", "--weights", "@rope_factor_string"}, 2, "config.json: field 'factor' must be a number"},
      {"3 run: rope_scaling a list", {"run", "--weights", "@rope_scaling_list"}, 2, "config.json: field 'rope_scaling' must be a JSON object"},
      {"3 run: norm_topk_prob a string", {"run", "--weights", "@norm_topk_string"}, 2, "config.json: field 'norm_topk_prob' must be true or false"},
      {"3 run: index weight_map a list", {"run", "--weights", "@weight_map_list"}, 2, "index.json: expected an object with a \"weight_map\" object"},
      {"3 run top-k above the expert count", {"run", "--random-weights", "1", "--model", "mixtral-8x7b", "--experts", "1"}, 2,
       "fewer than experts_per_token=2"},
      {"3 YAML anchor on a map", {"memory", "--config-file", "@anchor_map.yaml"}, 2, "must be a value or a list of values"},
      {"3 YAML nested 100 deep", {"memory", "--config-file", "@deep.yaml"}, 2, "nested deeper than 64"},
      {"3 YAML aliases expanding to 10^9 nodes", {"memory", "--config-file", "@laughs.yaml"}, 2, "more than a million nodes"},
      {"3 YAML complex key", {"memory", "--config-file", "@complex_key.yaml"}, 2, "option names must be plain text"},
      {"3 YAML list for a one-value option", {"plan", "--config-file", "@nested_list.yaml"}, 2, "takes one value, not a list"},
      {"3 YAML nested list", {"validate", "--config-file", "@nested_ids.yaml"}, 2, "nested list or map"},
      {"3 --profile with a map where text belongs", {"simulate", "--profile", "@profile.yaml"}, 2, "profile.yaml"},
      {"3 malformed --points", {"validate", "--published", "--points", "@points.yaml"}, 2, "points.yaml"},
      // 4. Silent nonsense
      {"4 --request-rate denormal", {"simulate", "--request-rate", "4.9e-324"}, 2, "--request-rate"},
      {"4 --ram-gb inf", {"simulate", "--ram-gb", "inf"}, 2, "--ram-gb inf is out of range"},
      {"4 --ram-gb nan", {"memory", "--ram-gb", "nan"}, 2, "--ram-gb nan is out of range"},
      {"4 --gpu-price 1e308", {"plan", "--gpu-price", "1e308"}, 2, "--gpu-price"},
      {"4 --utilization 1e-308", {"plan", "--utilization", "1e-308"}, 2, "--utilization"},
      {"4 --tokens-per-month denormal", {"compare-api", "--tokens-per-month", "4.9e-324"}, 2, "--tokens-per-month"},
      {"4 --tokens-per-month 1e20", {"compare-api", "--tokens-per-month", "1e20"}, 2, "--tokens-per-month 1e+20 is out of range"},
      {"4 --gpu-price in hexadecimal", {"plan", "--gpu-price", "0x10"}, 2, "got '0x10'"},
      {"4 128 heads on hidden 64", {"memory", "--model", "@heads_over_hidden/config.json"}, 2, "head_dim would be 0"},
      {"4 top-k above the expert count", {"memory", "--model", "@topk/config.json"}, 2, "experts per token (top-k) exceed the 8"},
      {"4 rms_norm_eps 0", {"memory", "--model", "@eps_zero/config.json"}, 2, "field 'rms_norm_eps' must be a positive number"},
      {"4 rope_theta negative", {"memory", "--model", "@theta_negative/config.json"}, 2, "field 'rope_theta' must be a positive number"},
      // 5. Data loss
      {"5 --weights-out onto a checkpoint", {"run", "--random-weights", "1", "--model", "mixtral-8x7b", "--layers", "1", "--hidden", "64", "--intermediate", "64",
        "--heads", "2", "--kv-heads", "1", "--vocab", "128", "--weights-out", "@checkpoint"}, 2,
       "holds files moeplan did not write"},
      // 6. Files
      {"6 -o a directory", {"models", "-o", "@a_directory"}, 2, "it is a directory"},
      {"6 -o a symbolic link", {"models", "-o", "@link.txt"}, 2, "symbolic link"},
      {"6 -o a FIFO", {"models", "-o", "@out_fifo"}, 2, "not a regular file"},
      {"6 -o in a missing directory", {"models", "-o", "@missing/x.json"}, 2, "does not exist"},
      {"6 run -o a directory fails before running", {"run", "--random-weights", "1", "--model", "mixtral-8x7b", "--layers", "1", "--hidden", "64", "-o", "@a_directory"}, 2,
       "it is a directory"},
      // 7. Messages (escaping is checked for every row below; these echo hostile text)
      {"7 ESC and newline echoed", {"memory", "--gpu", "\x1b[31mred\nsecond line"}, 2, "\\x1B[31mred\\nsecond line"},
      {"7 bytes that are not UTF-8", {"memory", "--gpu", "h\xff\xfe"}, 2, "h\\xFF\\xFE"},
      {"7 a 1 MiB value", {"memory", "--gpu", mib}, 2, "(1048576 bytes)"},
      {"7 a 1 MiB command", {mib}, 2, "(1048576 bytes)"},
      // 8. Silently ignored input
      {"8 a positional argument", {"memory", "h100-sxm"}, 2, "unexpected argument 'h100-sxm'"},
      {"8 a value after a switch", {"simulate", "--breakdown", "yes"}, 2, "unexpected argument 'yes'"},
      {"8 a switch in YAML that is not a boolean", {"simulate", "--config-file", "@switch_word.yaml"}, 2, "is a switch: give true or false"},
      {"8 a one-item list for a one-value option", {"memory", "--config-file", "@scalar_list.yaml"}, 2,
       "scalar_list.yaml:1: option 'count' takes one value, not a list"},
      {"8 later YAML documents", {"memory", "--config-file", "@two_docs.yaml"}, 2, "holds more than one YAML document"},
      {"8 a stray comma after a flow map (endless empty documents in yaml-cpp)", {"memory", "--config-file", "@flow_map_comma.yaml"}, 2,
       "holds more than one YAML document"},
      {"8 unknown YAML key", {"memory", "--config-file", "@unknown_key.yaml"}, 2, "unrecognised option"},
      {"8 a YAML key with no value", {"memory", "--config-file", "@no_value.yaml"}, 2, "option 'count' must be a value or a list of values (found no value)"},
      {"8 --prompt 1.5", {"run", "--random-weights", "1", "--prompt", "1.5"}, 2, "--prompt '1.5'"},
      {"8 --prompt negative", {"run", "--random-weights", "1", "--prompt", "3,-2"}, 2, "--prompt '3,-2'"},
      {"8 --counts ''", {"plan", "--counts", ""}, 2, "--counts is empty"},
      {"8 --counts ','", {"plan", "--counts", ","}, 2, "--counts is empty"},
      {"8 --precisions ''", {"plan", "--precisions", ""}, 2, "--precisions is empty"},
      {"8 --seed -1", {"run", "--random-weights", "1", "--seed", "-1"}, 2, "--seed"},
      {"8 gpus --hosts --local", {"gpus", "--hosts", "--local"}, 2, "at most one of --hosts, --local and --gpu"},
      {"8 moe_layers out of range", {"memory", "--model", "@moe_layers/config.json"}, 2, "moe_layers names layer 480"},
      {"8 no_rope_layers of the wrong length", {"memory", "--model", "@no_rope/config.json"}, 2, "no_rope_layers has 2 entries"},
      {"8 no_rope_layers values other than 0/1", {"memory", "--model", "@no_rope_values/config.json"}, 2, "must be 0 (NoPE) or 1"},
      {"8 --expert-loads with the wrong layer count", {"simulate", "--expert-loads", "@loads.json"}, 2, "the model has 24 MoE layers"},
      {"8 --force without --weights-out", {"run", "--random-weights", "1", "--force"}, 2, "--force applies to --weights-out"},
      {"8 calibrate --repeats without --device cuda", {"calibrate", "--repeats", "-1"}, 2, "--repeats -1 is out of range"},
      {"8 calibrate --repeats on the CPU", {"calibrate", "--repeats", "3"}, 2, "--repeats is for calibrate --device cuda"},
      {"8 calibrate --cuda-device on the CPU", {"calibrate", "--cuda-device", "1"}, 2, "--cuda-device is for calibrate --device cuda"},
      {"8 calibrate --device cuda with a CPU option", {"calibrate", "--device", "cuda", "--passes", "2"}, 2, "--passes is for calibrate --device cpu"},
      {"8 run --cuda-device on the CPU", {"run", "--random-weights", "1", "--cuda-device", "1"}, 2, "--cuda-device is for run --device cuda"},
      {"8 run --process-per-rank on the CPU", {"run", "--random-weights", "1", "--process-per-rank"}, 2, "--process-per-rank is for run --device cuda"},
      {"8 run --cuda-graphs on the CPU", {"run", "--random-weights", "1", "--cuda-graphs"}, 2, "--cuda-graphs is for run --device cuda"},
      {"8 run --cuda-device negative", {"run", "--random-weights", "1", "--device", "cuda", "--cuda-device", "-1"}, 2, "--cuda-device -1 is out of range"},
      {"8 validate --published with a --device cpu option", {"validate", "--published", "--profile", "vm"}, 2, "--profile is for validate --device cpu"},
      {"8 validate --published --quick", {"validate", "--published", "--quick"}, 2, "--quick is for validate --device"},
      {"8 validate --device cpu with --points", {"validate", "--device", "cpu", "--points", "@points.yaml"}, 2, "--points is for validate --published"},
      {"8 validate --device cuda with a grid option", {"validate", "--device", "cuda", "--batches", "4"}, 2, "--batches is for validate --device cpu"},
  };
  return kRows;
}

}  // namespace

TEST_CASE("bad input: every row exits as listed with one escaped line naming the input", "[badinput]") {
  const Scratch scratch;
  for (const Row& row : rows()) {
    INFO(row.what);
    const auto r = test::run(scratch.expand(row.argv));
    CHECK(r.code == row.code);
    if (row.code == 2) {
      CHECK(test::one_line(r.err));
      CHECK(r.err.rfind("moeplan: error: ", 0) == 0);
      CHECK(r.err.size() < 4096);
      CHECK(r.err.find('\x1b') == std::string::npos);
      CHECK_THAT(r.err, Catch::Contains(row.message));
    }
  }
}

TEST_CASE("bad input: refused writes leave the files there as they were", "[badinput]") {
  const Scratch scratch;
  const auto checkpoint = scratch.dir / "checkpoint";
  const auto r = test::run({"run", "--random-weights", "1", "--model", "mixtral-8x7b", "--layers", "1", "--hidden", "64",
                            "--intermediate", "64", "--heads", "2", "--kv-heads", "1", "--vocab", "128", "--weights-out",
                            checkpoint.string()});
  CHECK_THAT(r.err, Catch::Contains("holds files moeplan did not write"));
  CHECK(r.code == 2);
  CHECK(std::ifstream(checkpoint / "config.json").rdbuf() != nullptr);
  std::string config((std::istreambuf_iterator<char>(*std::make_unique<std::ifstream>(checkpoint / "config.json"))), {});
  CHECK(config == "{\"real\": true}");
  CHECK(fs::exists(checkpoint / "model.safetensors.index.json"));
  CHECK_FALSE(fs::exists(checkpoint / "model.safetensors"));
  // -o onto a link or FIFO leaves the node; a failing -o after `run` leaves no trace file behind.
  CHECK(test::run({"models", "-o", (scratch.dir / "link.txt").string()}).code == 2);
  CHECK(fs::is_symlink(scratch.dir / "link.txt"));
  CHECK(test::run({"models", "-o", (scratch.dir / "out_fifo").string()}).code == 2);
  CHECK(fs::is_fifo(scratch.dir / "out_fifo"));
  const auto trace = scratch.dir / "trace.json";
  CHECK(test::run({"run", "--random-weights", "1", "--model", "mixtral-8x7b", "--layers", "1", "--hidden", "64",
                   "--trace-routing", trace.string(), "-o",
                   (scratch.dir / "a_directory").string()}).code == 2);
  CHECK_FALSE(fs::exists(trace));
  // A prompt id beyond the vocabulary is refused before the random checkpoint is written.
  const auto weights = scratch.dir / "never_written";
  const auto vocab = test::run({"run",
                                "--random-weights",
                                "1",
                                "--model",
                                "mixtral-8x7b",
                                "--layers",
                                "1",
                                "--hidden",
                                "64",
                                "--intermediate",
                                "64",
                                "--heads",
                                "2",
                                "--kv-heads",
                                "1",
                                "--vocab",
                                "128",
                                "--prompt",
                                "1,500",
                                "--weights-out",
                                weights.string()});
  CHECK(vocab.code == 2);
  CHECK_THAT(vocab.err, Catch::Contains("token id 500 is outside the vocabulary of 128"));
  CHECK_FALSE(fs::exists(weights));
}

TEST_CASE("bad input: a YAML switch given as yes/no is honoured, not dropped", "[badinput]") {
  const Scratch scratch;
  write(scratch.dir / "breakdown.yaml", "breakdown: yes\nmodel: qwen3-30b-a3b\ncount: 1\nconcurrency: 1\nnum-requests: 2\ninput: 64\noutput: 8\n");
  const auto on = test::run({"simulate", "--config-file", (scratch.dir / "breakdown.yaml").string(), "--format", "json"});
  REQUIRE(on.code == 0);
  CHECK(nlohmann::json::parse(on.out).contains("breakdown"));
  write(scratch.dir / "no_breakdown.yaml", "breakdown: no\nmodel: qwen3-30b-a3b\ncount: 1\nconcurrency: 1\nnum-requests: 2\ninput: 64\noutput: 8\n");
  const auto off = test::run({"simulate", "--config-file", (scratch.dir / "no_breakdown.yaml").string(), "--format", "json"});
  REQUIRE(off.code == 0);
  CHECK_FALSE(nlohmann::json::parse(off.out).contains("breakdown"));
}

TEST_CASE("bad input: a GPU or count named twice is planned once", "[badinput]") {
  auto rows_of = [](std::vector<std::string> extra) {
    std::vector<std::string> argv = {"plan", "--precisions", "fp8", "--engine", "generic", "--format", "json", "--top", "100"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    const auto r = test::run(argv);
    REQUIRE(r.code == 0);
    const auto j = nlohmann::json::parse(r.out);
    return std::make_pair(j.at("configurations").size(), j.at("configurations_evaluated").get<std::int64_t>());
  };
  const auto once = rows_of({"--gpus", "h100-sxm", "--counts", "8"});
  CHECK(once.first > 0);
  CHECK(rows_of({"--gpus", "h100-sxm,h100-sxm", "--counts", "8,8"}) == once);
  CHECK(rows_of({"--gpus", "h100-sxm,h100,h100-sxm5", "--counts", "8"}) == once);  // three names of one GPU
}

TEST_CASE("bad input: docs/limits.md lists every bound of the table", "[badinput]") {
  std::ifstream in(fs::path(test::data()).parent_path() / "docs" / "limits.md");
  const std::string doc((std::istreambuf_iterator<char>(in)), {});
  REQUIRE_FALSE(doc.empty());
  for (const auto& b : app::option_bounds()) {
    INFO(b.option);
    CHECK_THAT(doc, Catch::Contains("| `--" + std::string(b.option) + "` |"));
  }
}

TEST_CASE("bad input: profiles are written to the user's data directory, never data/", "[badinput]") {
  const char* old = std::getenv("XDG_DATA_HOME");
  const std::string saved = old ? old : "";
  ::setenv("XDG_DATA_HOME", "/tmp/moeplan-xdg-test", 1);
  CHECK(app::default_profile_path().string().rfind("/tmp/moeplan-xdg-test/moeplan/profiles/", 0) == 0);
  // A bare --profile name is found among the shipped profiles when the user has none of that name.
  CHECK(app::find_profile("vm") == test::data() / "profiles" / "vm.yaml");
  CHECK_THROWS_AS(app::find_profile("no-such-profile"), InputError);
  if (old) ::setenv("XDG_DATA_HOME", saved.c_str(), 1);
  else ::unsetenv("XDG_DATA_HOME");
}

TEST_CASE("bad input: a configuration that does not fit prints a shortfall, never a negative size", "[badinput]") {
  const auto j = test::run({"memory", "--concurrency", "1000", "--context", "1000000", "--format", "json"});
  REQUIRE(j.code == 0);
  const auto m = nlohmann::json::parse(j.out);
  CHECK(m.at("fits") == false);
  CHECK(m.at("free_bytes").get<double>() == 0);
  CHECK(m.at("shortfall_bytes").get<double>() > 0);
  const auto table = test::run({"memory", "--concurrency", "1000", "--context", "1000000"});
  REQUIRE(table.code == 0);
  CHECK_THAT(table.out, Catch::Contains("short by"));
  for (std::size_t i = table.out.find(" -"); i != std::string::npos; i = table.out.find(" -", i + 1))  // no negative number
    CHECK_FALSE(std::isdigit(static_cast<unsigned char>(table.out[i + 2])));
}
