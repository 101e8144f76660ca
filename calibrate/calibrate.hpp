// calibrate: measure this host with the executor's own kernels and write a hardware profile
// (simulator/profile.hpp) that the simulator then prices ops with:
//   memory        read (sum) and STREAM triad bandwidth over arrays far larger than the caches, all threads
//   gemm          matmul rate by rows M for every weight dtype, cycling over distinct weight matrices whose
//                 total is >= 4x the last-level cache (decode streams weights from DRAM, as in a real model)
//   expert_gemm   grouped_matmul rate by rows per expert (8 experts, each with the same rows)
//   attention     decode (one query, per sequence, cycling over caches >> LLC) by keys; causal prefill by length
//   elementwise   rmsnorm bytes per second; op overhead: a 1 x 64 x 64 matmul through the thread pool
//   collectives   in-process all-reduce between ranks: fixed time and bytes per second
// Each rank layout (1 rank with all threads, 2 ranks each with half, ...) is measured with all its ranks running
// at once, as the executor's ranks do, so they share the memory bandwidth the way a real run does.
// Every point is the median of several timed repetitions after a warm-up. Method: docs/validation.md.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "common/progress.hpp"
#include "simulator/profile.hpp"

namespace moeplan::calibrate {

struct CalibrateRequest {
  int threads = 0;                         // 0: all hardware threads
  std::vector<int> ranks = {1, 2};         // rank layouts to measure (threads are split evenly between ranks)
  std::vector<std::string> dtypes = {"bf16", "f16", "fp8", "int8", "f32"};
  bool quick = false;                      // fewer points and smaller arrays (about 20 s on 2 cores)
  // Passes over every curve; each point keeps its fastest pass. Interference from other processes comes in periods
  // longer than one point's repetitions, so repeating the whole sweep, not the point, is what gets past it.
  int passes = 1;
  std::function<void(const std::string&)> progress;  // one line per measurement group (may be empty)
  Progress* bar = nullptr;  // stepped once per measurement group, its total set here (may be null)
};

simulator::HostProfile calibrate_host(const CalibrateRequest& request);

// Today's date (UTC) as YYYY-MM-DD.
std::string today_utc();
// A /proc/meminfo field ("MemTotal", "MemAvailable") in bytes; 0 where it cannot be read.
double meminfo_bytes(const std::string& key);

}  // namespace moeplan::calibrate
