// executor/backend_cuda_none: make_cuda_backend in a build without CUDA (MOEPLAN_HAVE_CUDA 0).
#include "common/error.hpp"
#include "executor/backend_cuda.hpp"

namespace moeplan::executor {

std::unique_ptr<Backend> make_cuda_backend(int) {
  throw InputError("--device cuda: this build has no CUDA (configure with -DMOEPLAN_CUDA=ON where the CUDA toolkit is "
                   "installed); use --device cpu");
}

}  // namespace moeplan::executor
