// reports/memory_report: `moeplan memory` as a Report: the memory breakdown per GPU (or host) of one configuration.
#pragma once
#include "reports/render.hpp"
#include "simulator/memory.hpp"

namespace moeplan::reports {

Report memory_report(const simulator::MemoryRequest& request, const simulator::MemoryBreakdown& result);

}  // namespace moeplan::reports
