// reports/validate_report: `moeplan calibrate` and `moeplan validate --device cpu` as Reports.
#pragma once
#include <string>
#include <vector>

#include "calibrate/validate.hpp"
#include "calibrate/validate_device.hpp"
#include "reports/render.hpp"
#include "simulator/gpu_profile_write.hpp"
#include "simulator/profile.hpp"

namespace moeplan::reports {

// `moeplan calibrate`: the measured profile and where it was written; `seconds`: how long measuring took.
Report calibrate_report(const simulator::HostProfile& profile, const std::string& written_to, double seconds);
// `moeplan validate --device cpu`: held-out errors, rows, op by op, and the error bars the profile carries.
Report cpu_validation_report(const calibrate::CpuValidation& validation, const std::string& profile_file,
                             bool profile_written);
// `moeplan calibrate --device cuda`: the GPU op profile measured and where it was written.
Report gpu_calibrate_report(const simulator::GpuProfileData& profile, const std::string& written_to, double seconds);
// `moeplan validate --device cuda`: per oracle fixture, the device's largest logit difference from the CPU backend.
Report device_validation_report(const std::vector<calibrate::DeviceCheck>& checks, const std::string& device);

}  // namespace moeplan::reports
