// simulator/hardware: Hardware from the database entries (see hardware.hpp; sources in docs/simulator.md).
#include "simulator/hardware.hpp"

#include <stdexcept>

#include "common/error.hpp"

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

Hardware gpu_hardware(const gpu_db::Database& db, const gpu_db::GpuSpec& gpu, const std::string& inter_link) {
  Hardware h;
  h.name = gpu.name;
  h.memory_bytes = gpu.memory_bytes;
  h.mem_bandwidth_bytes_per_s = gpu.mem_bandwidth_bytes_per_s;
  h.peak_flops = gpu.peak_flops_dense;
  h.fp4_format = gpu.fp4_format;
  h.gpus_per_node = gpu.gpus_per_node > 0 ? gpu.gpus_per_node : 8;
  if (const gpu_db::LinkSpec* l = db.link(gpu.interconnect)) {
    h.intra_link = l->name;
    h.intra_bandwidth_bytes_per_s = l->bandwidth_bytes_per_s_per_direction;
    h.intra_latency_s = l->latency_s;
  }
  const std::string inter = inter_link.empty() ? "infiniband-ndr" : inter_link;
  const gpu_db::LinkSpec* l = db.link(inter);
  if (!l) throw InputError("--internode " + inter + ": not in data/links.yaml (try infiniband-ndr, infiniband-xdr, roce-400g)");
  if (l->scope != "inter-node")
    throw InputError("--internode " + inter + ": is an intra-node link; name an inter-node one (infiniband-ndr, roce-400g, ...)");
  h.inter_link = l->name;
  h.inter_bandwidth_bytes_per_s = l->bandwidth_bytes_per_s_per_direction;
  h.inter_latency_s = l->latency_s;
  return h;
}

Efficiency host_efficiency() {
  Efficiency e;
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
  e.comm_bandwidth = 1.0;
  e.all_to_all_bandwidth = 1.0;
  e.dequant_compute = 0.50;
  e.op_overhead_us = 5.0;       // thread-pool fork/join per op
  e.collective_base_us = 0;
  e.step_overhead_us = 50;
  e.source = "host defaults (docs/simulator.md)";
  return e;
}

Hardware host_hardware(const gpu_db::HostSpec& host, double fallback_flops) {
  Hardware h;
  h.name = host.name;
  h.host = true;
  h.memory_bytes = host.memory_bytes;
  h.mem_bandwidth_bytes_per_s = host.mem_bandwidth_bytes_per_s;
  h.peak_flops = host.peak_flops_dense;
  if (h.peak_flops.empty()) {
    if (fallback_flops <= 0)
      throw InputError("host " + host.name + " has no compute peak in data/hosts.yaml; give --host-tflops");
    h.peak_flops["bf16"] = fallback_flops;
  }
  h.gpus_per_node = 1;
  h.eff = host_efficiency();
  return h;
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
