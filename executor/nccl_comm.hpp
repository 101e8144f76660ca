// executor/nccl_comm: the Communicator of executor/comm.hpp over NCCL, for ranks that are GPUs. Built only when the
// CUDA toolkit ships NCCL (moeplan/config.hpp: MOEPLAN_HAVE_NCCL); elsewhere these functions throw InputError saying
// so (nccl_none.cpp). Pointers given to all_reduce_sum, all_gather, send and recv are device memory on this rank's
// GPU (the memory of the CUDA backend); all_to_all takes and returns host vectors and stages them through the device
// (its per-peer lengths are exchanged first, then one grouped ncclSend/ncclRecv per peer). Each call waits for its
// NCCL operation to finish (its own stream, synchronised), so results are ready when it returns. Sums are NCCL's
// (identical on every rank, not in rank order: logits can differ from the in-process communicator in the last bits).
// sub_group is ncclCommSplit, which every rank of the parent group calls (the forward session's constructor does,
// for its tensor-parallel group). How to start processes: docs/executor.md.
#pragma once
#include <chrono>
#include <memory>
#include <vector>

#include "executor/comm.hpp"
#include "executor/launch.hpp"

namespace moeplan::executor {

// Whether this build has the NCCL communicator.
bool nccl_available();

// One process, one thread per GPU: communicators for `devices` GPUs (ranks 0 .. devices-1 on GPUs 0 .. devices-1,
// ncclCommInitAll); hand communicator r to the thread driving GPU r. Throws InputError when the build has no NCCL or
// fewer GPUs are visible.
std::vector<std::unique_ptr<Communicator>> make_nccl_group(int devices);

// One rank per process (mpirun, srun, torchrun): the communicator of `rank` (its GPU: rank.local_rank). Rank 0 makes
// the unique id and, unless source.id holds one, writes it to source.file; the others take source.id or wait up to
// `timeout` for the file. Throws InputError when the build has no NCCL, neither id nor file is given for more than
// one process, or the file does not appear.
std::unique_ptr<Communicator> make_nccl_communicator(const ProcessRank& rank, const UniqueIdSource& source,
                                                     std::chrono::milliseconds timeout = std::chrono::minutes(5));

}  // namespace moeplan::executor
