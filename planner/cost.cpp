#include "planner/cost.hpp"

#include "common/error.hpp"

namespace moeplan::planner {

double usd_per_hour(double usd_per_gpu_hour, int gpus) {
  if (!(usd_per_gpu_hour > 0)) throw InputError("--gpu-price must be a positive USD per GPU-hour");
  if (gpus < 1) throw InputError("GPU count must be at least 1");
  return usd_per_gpu_hour * gpus;
}

double usd_per_month(double usd_per_gpu_hour, int gpus) { return usd_per_hour(usd_per_gpu_hour, gpus) * kHoursPerMonth; }

}  // namespace moeplan::planner
