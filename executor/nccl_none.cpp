// executor/nccl_none: the NCCL communicator functions in a build without NCCL (see nccl_comm.hpp).
#include "common/error.hpp"
#include "executor/nccl_comm.hpp"

namespace moeplan::executor {

namespace {
[[noreturn]] void no_nccl() {
  throw InputError("this moeplan was built without NCCL (configure with the CUDA toolkit and its NCCL to run ranks on GPUs)");
}
}  // namespace

bool nccl_available() { return false; }
std::vector<std::unique_ptr<Communicator>> make_nccl_group(int) { no_nccl(); }
std::unique_ptr<Communicator> make_nccl_communicator(const ProcessRank&, const UniqueIdSource&, std::chrono::milliseconds) {
  no_nccl();
}

}  // namespace moeplan::executor
