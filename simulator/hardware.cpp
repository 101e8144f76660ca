// simulator/hardware: Hardware from the database entries (see hardware.hpp; sources in docs/simulator.md).
#include "simulator/hardware.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "common/error.hpp"
#include "common/text.hpp"

namespace moeplan::simulator {

double Hardware::peak_for(const std::string& dtype, std::string* used) const {
  auto pick = [&](const std::string& d) -> double {
    auto it = peak_flops.find(d);
    if (it == peak_flops.end()) return 0;
    if (used) *used = d;
    return it->second;
  };
  std::string want = dtype;
  // FP4 tensor cores exist in one flavour per GPU; an mxfp4 checkpoint on NVFP4 hardware still runs at the FP4
  // rate (Blackwell supports both block formats; docs/simulator.md).
  if (double v = pick(want); v > 0) return v;
  for (const char* d : {"bf16", "fp16"})
    if (double v = pick(d); v > 0) return v;
  throw InputError(name + ": no FLOP/s peak for " + dtype + " or bf16 in the hardware data");
}

double Efficiency::expert_tile_rows(double step_tokens) const {
  if (expert_tile_rows_max <= 0) return 0;
  if (!expert_tile_fits_step || !(step_tokens > 0)) return expert_tile_rows_max;
  const double tiles = std::ceil(step_tokens / expert_tile_rows_max);
  const double width = std::ceil(step_tokens / tiles);
  const double step = width > 40 ? 16 : 8;  // mmq_get_granularity_host: 16 for mmq_x >= 48 (int8 MMA)
  return std::min(expert_tile_rows_max, std::ceil(width / step) * step);
}

Hardware gpu_hardware(const gpu_db::Database& db, const gpu_db::GpuSpec& gpu, const std::string& inter_link,
                      int nics_per_node) {
  Hardware h;
  h.name = gpu.name;
  h.kernel_backend = gpu.vendor == "nvidia" ? "cuda" : gpu.vendor == "amd" ? "hip" : gpu.vendor;
  h.memory_bytes = gpu.memory_bytes;
  h.mem_bandwidth_bytes_per_s = gpu.mem_bandwidth_bytes_per_s;
  h.peak_flops = gpu.peak_flops_dense;
  h.fp4_format = gpu.fp4_format;
  h.gpus_per_node = gpu.gpus_per_node > 0 ? gpu.gpus_per_node : 8;
  // Published microbenchmarks of this GPU replace the generic shares: the large-GEMM rate per dtype and STREAM.
  for (const auto& [dtype, flops] : gpu.measured_gemm_flops) h.eff.gemm_compute_measured[dtype] = flops / h.peak_flops.at(dtype);
  if (gpu.measured_stream_bytes_per_s > 0) h.eff.memory = gpu.measured_stream_bytes_per_s / h.mem_bandwidth_bytes_per_s;
  if (!gpu.measured_gemm_flops.empty() || gpu.measured_stream_bytes_per_s > 0)
    h.eff.source += ", measured shares of " + gpu.name + " (data/gpus.yaml)";
  if (const gpu_db::LinkSpec* l = db.link(gpu.interconnect)) {
    h.intra_link = l->name;
    h.intra_label = l->short_name;
    h.intra_bandwidth_bytes_per_s = l->bandwidth_bytes_per_s_per_direction;
    h.intra_latency_s = l->latency_s;
  }
  const std::string inter = inter_link.empty() ? "infiniband-ndr" : inter_link;
  const gpu_db::LinkSpec* l = db.link(inter);
  if (!l) throw InputError("--internode " + inter + ": not in data/links.yaml (try infiniband-ndr, infiniband-xdr, roce-400g)");
  if (l->scope != "inter-node")
    throw InputError("--internode " + inter + ": is an intra-node link; name an inter-node one (infiniband-ndr, roce-400g, ...)");
  if (nics_per_node < 0) throw InputError("--nics-per-node must be a positive number of NIC ports per node");
  h.inter_link = l->name;
  h.inter_label = l->short_name;
  h.nics_per_node = nics_per_node > 0 ? nics_per_node : db.default_nics_per_node(gpu);
  h.nic_bandwidth_bytes_per_s = l->bandwidth_bytes_per_s_per_direction;
  h.inter_bandwidth_bytes_per_s = h.node_nic_bandwidth_bytes_per_s() / h.gpus_per_node;
  h.inter_latency_s = l->latency_s;
  return h;
}

std::string network_assumption(const Hardware& hw, int gpus, bool nics_given) {
  const int gpn = std::max(1, hw.gpus_per_node);
  const int nodes = (std::max(1, gpus) + gpn - 1) / gpn;
  auto gb = [](double bytes_per_s) { return format_fixed(bytes_per_s / 1e9, bytes_per_s < 100e9 ? 1 : 0) + " GB/s"; };
  std::string s = "network: " + std::to_string(nodes) + (nodes == 1 ? " node" : " nodes") + " of " + std::to_string(gpn) +
                  " GPUs; " + hw.intra_link + " (" + gb(hw.intra_bandwidth_bytes_per_s) + ") within a node; " +
                  std::to_string(hw.nics_per_node) + " x " + hw.inter_link + " (" + gb(hw.nic_bandwidth_bytes_per_s) +
                  ") per node = " + gb(hw.inter_bandwidth_bytes_per_s) + " per GPU between nodes";
  if (nodes == 1) s += " (unused)";
  s += nics_given ? " (--nics-per-node)" : " (NICs per node: data/network.yaml; --nics-per-node, --internode change them)";
  return s;
}

namespace {
// What a single host pays outside its kernels, whether its CPU or its integrated GPU computes: one device, no
// collectives, a step and op dispatch through llama.cpp's host loop.
void host_fixed_costs(Efficiency& e) {
  e.comm_bandwidth = 1.0;
  e.all_to_all_bandwidth = 1.0;
  e.op_overhead_us = 5.0;       // thread-pool fork/join per op
  e.collective_base_us = 0;
  e.step_overhead_us = 50;
}
}  // namespace

Efficiency host_efficiency() {
  Efficiency e;
  host_fixed_costs(e);
  e.gemm_compute = 0.60;        // blocked BF16/FP32 GEMM on AVX-512/AVX2 cores (llama.cpp, oneDNN: 50-70 %)
  e.gemm_rows_half = 0;         // no tensor-core tiles to fill: a CPU GEMV runs at the memory rate
  e.expert_compute = 0.50;
  e.expert_rows_half = 0;
  e.expert_memory = 0.75;       // experts stream like any other weight on a host
  e.expert_block_us = 0;
  e.attention_compute = 0.40;
  e.memory = 0.75;              // STREAM reaches 70-90 % of DDR peak (hosts.yaml header); token generation ~75 %
  e.kv_memory = 0.70;
  e.elementwise_memory = 0.60;
  e.dequant_compute = 0.50;
  e.source = "host defaults (docs/simulator.md)";
  return e;
}

Efficiency unified_gpu_efficiency() {
  Efficiency e;  // the GPU op-class terms (GEMM, experts, attention, tile fill, dequantisation)
  // llama.cpp multiplies by matrix-vector kernels up to 8 rows (ggml-metal-ops.cpp: `ne11_mm_min = 8`, the
  // break-even of its simdgroup-matrix kernel; the CUDA backend's mul_mat_vec_q likewise): a decode step fills no tiles.
  e.gemv_max_rows = 8;
  host_fixed_costs(e);
  e.source = "integrated-GPU defaults (docs/simulator.md)";
  return e;
}

Hardware host_hardware(const gpu_db::HostSpec& host, double fallback_flops, bool on_gpu) {
  Hardware h;
  h.name = host.name;
  h.host = true;
  h.memory_bytes = host.memory_bytes;
  h.mem_bandwidth_bytes_per_s = host.mem_bandwidth_bytes_per_s;
  if (on_gpu && host.gpu_peak_flops_dense.empty())
    throw InputError("host " + host.name + " has no integrated-GPU figure (gpu_tflops_dense) in data/hosts.yaml");
  h.peak_flops = on_gpu ? host.gpu_peak_flops_dense : host.peak_flops_dense;
  if (h.peak_flops.empty()) {
    if (fallback_flops <= 0)
      throw InputError("host " + host.name + " has no compute peak in data/hosts.yaml; give --host-tflops");
    h.peak_flops["bf16"] = fallback_flops;
  }
  h.gpus_per_node = 1;
  h.integrated_gpu = on_gpu;
  if (on_gpu) h.kernel_backend = host.llamacpp_backend;
  h.eff = on_gpu ? unified_gpu_efficiency() : host_efficiency();
  if (host.llamacpp_decode_bandwidth_share > 0) {
    h.eff.memory = host.llamacpp_decode_bandwidth_share;
    h.eff.source += ", memory = llama.cpp's decode share (data/hosts.yaml)";
  }
  return h;
}

namespace {
// Where hosts.yaml records llama.cpp's prompt-processing rate on this chip (measured on other models' pp runs), the
// GEMM efficiency becomes that rate over the 16-bit peak, and the expert and attention terms move by the same ratio
// (measured rate / the roofline's GEMM rate): the chip's kernels, not the generic assumption, set the compute rate.
void scale_to_llamacpp_prefill(Hardware& hw, double measured_flops, std::vector<std::string>& note) {
  std::string used;
  const double peak = hw.peak_for("bf16", &used);
  const double ratio = measured_flops / (peak * hw.eff.gemm_compute);
  hw.eff.gemm_compute *= ratio;
  hw.eff.expert_compute *= ratio;
  hw.eff.attention_compute *= ratio;
  hw.eff.source += ", compute = llama.cpp's measured prompt rate (data/hosts.yaml)";
  note.push_back("host prefill: llama.cpp's measured " + format_fixed(measured_flops / 1e12, 1) + " TFLOP/s on this chip (" +
                 "data/hosts.yaml llamacpp_prefill_tflops) = " + format_fixed(hw.eff.gemm_compute, 3) + " of the " + used +
                 " peak; expert and attention terms x " + format_fixed(ratio, 3));
}
}  // namespace

// A host from the database (or from --ram-gb), with the flags' overrides, priced as llama.cpp runs it: a
// unified-memory host on its integrated GPU, a CPU host (or an offload host, `cpu_only`) on its cores. Every figure
// comes from data/hosts.yaml or a flag, and a note says which (docs/simulator.md "Hosts and offloading").
Hardware llamacpp_host(const gpu_db::Database& db, const gpu_db::HostSpec& spec, const HostFlags& f, bool cpu_only,
                        std::vector<std::string>* notes) {
  std::vector<std::string> discard;
  std::vector<std::string>& note = notes ? *notes : discard;
  gpu_db::HostSpec h = spec;
  if (f.bandwidth_gbps > 0) h.mem_bandwidth_bytes_per_s = f.bandwidth_gbps * 1e9;
  if (h.mem_bandwidth_bytes_per_s <= 0)
    throw InputError(h.name + ": no memory bandwidth known; give --mem-bandwidth-gbps (e.g. 89.6 for 2-channel DDR5-5600)");
  const gpu_db::HostDefaults& dflt = db.host_defaults();
  const bool on_gpu = !cpu_only && f.tflops <= 0 && f.cores <= 0 && h.kind == "unified" && !h.gpu_peak_flops_dense.empty();
  // llama.cpp's decode bandwidth share: the chip's own row, else its class's median (data/hosts.yaml header).
  std::string share_from = "its own llama.cpp row in data/hosts.yaml";
  if (!on_gpu && h.kind == "unified") h.llamacpp_decode_bandwidth_share = 0;  // its row is the GPU's
  if (h.llamacpp_decode_bandwidth_share <= 0) {
    h.llamacpp_decode_bandwidth_share = on_gpu ? dflt.unified_gpu_decode_bandwidth_share : dflt.cpu_decode_bandwidth_share;
    share_from = std::string("the ") + (on_gpu ? "unified-GPU" : "CPU") + " median of published llama-bench runs (" +
                 (on_gpu ? dflt.unified_gpu_share_source : dflt.cpu_share_source) + ")";
  }
  const std::string bw_note = "memory: " + format_fixed(h.mem_bandwidth_bytes_per_s / 1e9, 1) + " GB/s x " +
                              format_fixed(h.llamacpp_decode_bandwidth_share, 3) + " = llama.cpp's decode share, from " + share_from;
  double fallback = 0;
  if (on_gpu) {
    const double peak = h.gpu_peak_flops_dense.count("bf16") ? h.gpu_peak_flops_dense.at("bf16") : h.gpu_peak_flops_dense.begin()->second;
    note.push_back("host compute: " + h.name + "'s integrated GPU, " + format_fixed(peak / 1e12, 1) +
                    " TFLOP/s bf16 dense (data/hosts.yaml gpu_tflops_dense), as llama.cpp runs it (Metal/Vulkan/CUDA); "
                    "--host-cores or --host-tflops price its CPU instead");
  } else if (f.tflops > 0) {
    h.peak_flops_dense = {{"bf16", f.tflops * 1e12}};
    note.push_back("host compute: " + format_fixed(f.tflops, 2) + " TFLOP/s (--host-tflops)");
  } else {
    // cores x FP32 FLOP/cycle x clock: the host's own figures where hosts.yaml has them, else the default server's.
    const gpu_db::HostSpec& server = db.host(dflt.cpu_host);
    const bool own_rate = h.clock_ghz > 0 && h.fp32_flops_per_cycle > 0;
    const double clock = own_rate ? h.clock_ghz : server.clock_ghz;
    const double per_cycle = own_rate ? h.fp32_flops_per_cycle : server.fp32_flops_per_cycle;
    std::string cores_from = "--host-cores";
    int cores = f.cores;
    if (cores <= 0 && h.cores > 0) {
      cores = h.cores;
      cores_from = h.name + " in data/hosts.yaml";
    }
    if (cores <= 0) {
      cores = server.cores;
      cores_from = "assumed: " + server.name + " (" + server.display_name + ") in data/hosts.yaml";
    }
    fallback = cores * per_cycle * clock * 1e9;
    h.peak_flops_dense.clear();  // a unified host's tflops_dense would be its GPU's
    note.push_back("host compute: " + std::to_string(cores) + " cores (" + cores_from + ") x " + format_fixed(per_cycle, 0) +
                    " FP32 FLOP/cycle x " + format_fixed(clock, 2) + " GHz (" + (own_rate ? h.name : server.name) +
                    " in data/hosts.yaml) = " + format_fixed(fallback / 1e12, 2) + " TFLOP/s; --host-cores or --host-tflops replace it");
  }
  note.push_back("host " + bw_note);
  if (!on_gpu) return host_hardware(h, fallback, on_gpu);
  // llama.cpp's CUDA/Metal/Vulkan kernels multiply quantised weights on int8 (MMQ) or fp16 units, never with FP8/FP4
  // tensor-core instructions in the builds engines.yaml covers (b6000-b7000; native MXFP4 on Blackwell arrived in
  // https://github.com/ggml-org/llama.cpp/pull/17906, 2025-12-10): the integrated GPU is priced at its 16-bit rate.
  for (const char* low : {"fp8", "fp4"}) h.gpu_peak_flops_dense.erase(low);
  if (h.gpu_peak_flops_dense.empty()) throw InputError("host " + h.name + " has no 16-bit figure in gpu_tflops_dense (data/hosts.yaml)");
  Hardware hw = host_hardware(h, fallback, on_gpu);
  if (h.llamacpp_prefill_flops > 0) scale_to_llamacpp_prefill(hw, h.llamacpp_prefill_flops, note);
  // On Apple's GPUs 16-bit weights stream at their own measured share (the chips' shares above are Q4_0 runs).
  if (h.llamacpp_backend == "metal" && dflt.metal_16bit_decode_bandwidth_share > 0) {
    hw.eff.memory_16bit = dflt.metal_16bit_decode_bandwidth_share;
    hw.eff.source += ", F16/BF16 weights at llama.cpp's Metal 16-bit decode share (data/hosts.yaml)";
    note.push_back("host memory, F16/BF16 weights: " + format_fixed(h.mem_bandwidth_bytes_per_s / 1e9, 1) + " GB/s x " +
                   format_fixed(dflt.metal_16bit_decode_bandwidth_share, 3) +
                   " = llama.cpp's 16-bit decode share on Metal, from published llama-bench runs of other models (" +
                   dflt.metal_16bit_share_source + ")");
  }
  return hw;
}

Hardware profile_hardware(std::shared_ptr<const HostProfile> profile) {
  if (!profile) throw std::logic_error("profile_hardware: no profile");
  Hardware h;
  h.name = profile->host + " (" + profile->cpu_model + ", profile " + profile->file.filename().string() + ")";
  h.host = true;
  h.memory_bytes = profile->memory_bytes;
  h.mem_bandwidth_bytes_per_s = profile->triad_bytes_per_s;
  for (const auto& [dtype, flops] : profile->peak_flops) h.peak_flops[dtype == "f16" ? "fp16" : dtype] = flops;
  if (h.peak_flops.empty()) h.peak_flops["bf16"] = profile->read_bytes_per_s;  // unused: the curves price every op
  h.gpus_per_node = 1;
  h.eff = host_efficiency();
  h.eff.source = "measured profile " + profile->file.string();
  h.profile = std::move(profile);
  return h;
}

}  // namespace moeplan::simulator
