// planner/cost: cost conventions shared by every command that prices GPU time (DESIGN.md "Cost model").
#pragma once

namespace moeplan::planner {

// A month of continuous operation: 730 hours (8,760 h per year / 12), the cloud billing convention.
inline constexpr double kHoursPerMonth = 730.0;

// USD per hour of `gpus` GPUs at `usd_per_gpu_hour` each.
double usd_per_hour(double usd_per_gpu_hour, int gpus);
// USD per month (730 h) of the same.
double usd_per_month(double usd_per_gpu_hour, int gpus);

}  // namespace moeplan::planner
