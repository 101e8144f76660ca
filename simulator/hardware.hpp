// simulator/hardware: what the roofline needs to know about a device (a GPU from gpus.yaml, a CPU or
// unified-memory host from hosts.yaml, or a host described by flags), its links, and the efficiency terms that turn
// datasheet peaks into achievable rates. Every default is sourced in docs/simulator.md.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "gpu_db/gpu_db.hpp"
#include "simulator/gpu_profile.hpp"
#include "simulator/profile.hpp"

namespace moeplan::simulator {

// Achievable share of datasheet peaks, by op class, and fixed costs. Defaults for GPUs; host_efficiency() below
// for CPUs. A calibration profile replaces these with measured values.
struct Efficiency {
  double gemm_compute = 0.70;          // large dense GEMM, share of the dense peak (cuBLAS on H100: ~0.7)
  // The same share measured on this GPU, by compute dtype (gpus.yaml `measured.gemm_tflops` / dense peak); a dtype
  // listed here replaces gemm_compute for dense GEMMs and lm_head.
  std::map<std::string, double> gemm_compute_measured;
  double gemm_rows_half = 64;          // rows at which a GEMM reaches half of gemm_compute (tile fill)
  double gemv_max_rows = 0;            // steps of at most this many rows run matrix-vector kernels: no tile-fill term
                                       // (llama.cpp's GPU kernels, 8; 0: always tiles. Not linear in the batch:
                                       // the planner prices hardware with it by StepModel, not StepFormula)
  // The routed-expert block (permute, grouped GEMMs, activation, un-permute) where no GPU op profile holds its
  // shape: fitted to measured grouped-MoE kernels, not to end-to-end rows (data/gpu_profiles/kernel_fits.yaml,
  // medians of the TensorRT-LLM bf16 and fp8 fits on H100, H200 and B200; docs/simulator.md).
  double expert_compute = 0.517;       // share of the dense peak at many tokens per expert
  double expert_rows_half = 146;       // tokens per expert for half of expert_compute
  double expert_memory = 0.72;         // share of peak bandwidth reading the touched experts' weights
  double expert_block_us = 38;         // fixed time of one block (routing, permute, launches), split over its 2 GEMMs
  // An engine whose expert GEMMs run as token tiles per expert (llama.cpp; 0: the grouped-GEMM curve above): each
  // touched expert computes ceil(its tokens / tile) tiles of `tile` columns, the tile being this many tokens (Metal),
  // or, with expert_tile_fits_step, the narrowest multiple of 8 up to this many that covers the step's tokens in the
  // fewest tiles (CUDA MMQ's mmq_x). expert_tile_columns() below; docs/simulator.md "Engines".
  double expert_tile_rows_max = 0;
  bool expert_tile_fits_step = false;
  double attention_compute = 0.55;     // FlashAttention-class prefill, share of the bf16 peak
  double memory = 0.80;                // weight and activation streaming, share of peak memory bandwidth (a GPU's
                                       // measured STREAM share where gpus.yaml records one)
  double memory_16bit = 0;             // F16/BF16 weight streaming where measured apart from `memory` (llama.cpp
                                       // on Metal: data/hosts.yaml metal_16bit); 0 = `memory`
  double kv_memory = 0.70;             // paged KV reads in decode attention
  double elementwise_memory = 0.60;    // norms, rope, activations (small, launch-dominated kernels)
  double comm_bandwidth = 0.80;        // NCCL bus bandwidth / link bandwidth (all-reduce, all-gather)
  double all_to_all_bandwidth = 0.60;  // all-to-all: many small messages, lower link utilisation
  double dequant_compute = 0.50;       // weight-only formats computed in bf16: extra time share for dequantisation
  double op_overhead_us = 2.0;         // fixed time per kernel (launch gap + tail) with CUDA graphs
  double collective_base_us = 6.6;     // NCCL base latency per collective call (tuning.cc, LL protocol)
  double step_overhead_us = 30;        // per forward step: scheduler, sampling, host-device sync
  std::string source = "defaults (docs/simulator.md)";

  // The token tile of an expert GEMM in a step of `step_tokens` tokens (0: no tile model). CUDA MMQ
  // (mmq.cuh mul_mat_q_case): the first mmq_x in 8, 16, ..., max (16, 32, ... from 48 on) that reaches the fewest
  // tiles ceil(step_tokens / mmq_x), i.e. the narrowest allowed width >= step_tokens / ceil(step_tokens / max).
  double expert_tile_rows(double step_tokens) const;

  // The share of the dense peak a dense GEMM computing in `dtype` reaches: measured where recorded, else gemm_compute.
  double gemm_share(const std::string& dtype) const {
    const auto it = gemm_compute_measured.find(dtype);
    return it == gemm_compute_measured.end() ? gemm_compute : it->second;
  }
};

// One device type and the fabric between its copies.
struct Hardware {
  std::string name;
  bool host = false;                           // CPU or unified-memory host: no collectives, no CUDA overhead
  bool integrated_gpu = false;                 // a unified-memory host priced on its integrated GPU, not its cores
  std::string kernel_backend;                  // cuda (NVIDIA GPUs), hip (AMD), or the host's llamacpp_backend (metal...)
  double memory_bytes = 0;                     // per device
  double mem_bandwidth_bytes_per_s = 0;        // peak
  std::map<std::string, double> peak_flops;    // dense FLOP/s by dtype: bf16, fp16, fp8, int8, fp4
  std::string fp4_format;                      // nvfp4 / mxfp4 when the hardware has FP4 tensor cores
  // Links: intra-node (NVLink / PCIe) and inter-node (InfiniBand / RoCE), per GPU and per direction. The inter-node
  // figure is this GPU's share of its node's NICs: nics_per_node x nic bandwidth / gpus_per_node.
  double intra_bandwidth_bytes_per_s = 0, intra_latency_s = 0;
  double inter_bandwidth_bytes_per_s = 0, inter_latency_s = 0;
  int gpus_per_node = 8;
  int nics_per_node = 0;                       // ports of inter_link per node (data/network.yaml or --nics-per-node)
  double nic_bandwidth_bytes_per_s = 0;        // one port, per direction
  std::string intra_link, inter_link;
  std::string intra_label, inter_label;        // short names for plan rows (links.yaml short_name)
  // All of a node's NIC ports together, per direction: what a ring collective spanning nodes crosses each boundary with.
  double node_nic_bandwidth_bytes_per_s() const { return nics_per_node * nic_bandwidth_bytes_per_s; }
  Efficiency eff;
  // A measured profile of this host (moeplan calibrate): when set, ops are priced from its curves
  // (simulator/profile.hpp) instead of peaks × eff, and in-process collectives cost what it measured.
  std::shared_ptr<const HostProfile> profile;
  // Measured kernel times of this GPU under one serving engine (simulator/gpu_profile.hpp): ops whose shape it
  // holds are priced from its curves, the rest by the roofline.
  std::shared_ptr<const GpuProfile> gpu_profile;

  // FLOP/s peak for a compute dtype, and the dtype actually used (bf16 when the hardware lacks it).
  double peak_for(const std::string& dtype, std::string* used = nullptr) const;
};

// From the database: a GPU with its intra-node link and the named inter-node link (default infiniband-ndr), with
// `nics_per_node` ports of it per node (0: the default for the GPU's form factor in data/network.yaml).
Hardware gpu_hardware(const gpu_db::Database& db, const gpu_db::GpuSpec& gpu, const std::string& inter_link = "",
                      int nics_per_node = 0);
// One header line on where `gpus` GPUs sit and the links between them: "network: 16 nodes of 4 GPUs; pcie5 (63 GB/s)
// within a node; 2 x infiniband-ndr (50 GB/s) per node = 25 GB/s per GPU between nodes (...)". `nics_given`: the
// NIC count came from --nics-per-node rather than data/network.yaml.
std::string network_assumption(const Hardware& hw, int gpus, bool nics_given);
// A CPU / unified-memory host. Without a compute peak in hosts.yaml, `fallback_flops` is used (0: throw).
// `on_gpu`: price a unified-memory host on its integrated GPU (host.gpu_peak_flops_dense, GPU op-class
// efficiencies), as llama.cpp runs it; otherwise on its CPU cores. The memory efficiency is
// host.llamacpp_decode_bandwidth_share when set (docs/simulator.md "Hosts and offloading").
Hardware host_hardware(const gpu_db::HostSpec& host, double fallback_flops = 0, bool on_gpu = false);
// The host a profile describes: its RAM, measured triad bandwidth and large-M GEMM rates, and its curves.
Hardware profile_hardware(std::shared_ptr<const HostProfile> profile);
// What the command line says about a host's rates (0: not given).
struct HostFlags {
  double bandwidth_gbps = 0;  // --mem-bandwidth-gbps
  double tflops = 0;          // --host-tflops
  int cores = 0;              // --host-cores
};
// A host from the database (or one made from --ram-gb) priced as llama.cpp runs it: a unified-memory host on its
// integrated GPU, a CPU host (or an offload host, `cpu_only`) on cores x FP32 FLOP/cycle x clock (its own figures,
// else hosts.yaml's default_cpu_host's), memory at llama.cpp's decode bandwidth share (the chip's row, else its class
// median). `notes` receives one line per figure saying where it came from. simulate and validate --published use it.
Hardware llamacpp_host(const gpu_db::Database& db, const gpu_db::HostSpec& host, const HostFlags& flags, bool cpu_only,
                       std::vector<std::string>* notes = nullptr);
// Host efficiencies: memory 0.75 of peak (STREAM on DDR platforms reaches 70-90 %; docs/simulator.md). Hosts from
// hosts.yaml replace `memory` with llama.cpp's measured decode share.
Efficiency host_efficiency();
// A unified-memory host's integrated GPU: the GPU op-class terms, the host's fixed costs (no CUDA graphs in
// llama.cpp's Metal/Vulkan paths; assumption) and no collectives.
Efficiency unified_gpu_efficiency();

}  // namespace moeplan::simulator
