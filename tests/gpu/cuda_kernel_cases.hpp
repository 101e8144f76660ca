// The GPU kernel cases (cuda_kernel_cases.cu, built when MOEPLAN_HAVE_CUDA): runs each, prints one line per case,
// returns the number that failed.
#pragma once

namespace moeplan::test {

int run_cuda_kernel_cases(int sm_count, int cc_major, int cc_minor);

}  // namespace moeplan::test
