// reports/gpus_report: `moeplan gpus` as a Report: the GPU database, the hosts (--hosts), this machine's GPUs
// (--local).
#pragma once
#include <vector>

#include "gpu_db/gpu_db.hpp"
#include "kernels/device_query.hpp"
#include "reports/render.hpp"

namespace moeplan::reports {

Report gpus_report(const gpu_db::Database& db, const std::vector<const gpu_db::GpuSpec*>& gpus);
Report hosts_report(const std::vector<gpu_db::HostSpec>& hosts);
Report local_gpus_report(const kernels::DeviceQuery& devices);

}  // namespace moeplan::reports
