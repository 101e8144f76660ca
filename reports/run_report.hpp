// reports/run_report: `moeplan run` as a Report: measured throughput and per-op times of an executor run.
#pragma once
#include "executor/run.hpp"
#include "reports/render.hpp"

namespace moeplan::reports {

Report run_report(const executor::RunResult& result);

}  // namespace moeplan::reports
