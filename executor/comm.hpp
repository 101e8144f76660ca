// executor/comm: the communicator the forward pass uses between ranks (all-reduce, all-gather, all-to-all, barrier), and its
// in-process implementation where every rank is a thread of this process. Sums run in rank order, so every rank
// gets bit-identical results and runs are reproducible. (An NCCL implementation plugs in behind the same interface.)
#pragma once
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <vector>

namespace moeplan::executor {

// Thrown by a communicator's calls once its group was aborted (Communicator::abort).
class CommAborted : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // data[0..n) <- Σ over ranks of data[0..n), in rank order.
  virtual void all_reduce_sum(float* data, std::int64_t n) = 0;
  // out[r*n .. (r+1)*n) <- rank r's in[0..n); out: [size * n].
  virtual void all_gather(const float* in, std::int64_t n, float* out) = 0;
  // recv[r] <- rank r's send[rank()]; send: [size] buffers of any lengths (expert-parallel dispatch and combine).
  virtual std::vector<std::vector<float>> all_to_all(const std::vector<std::vector<float>>& send) = 0;
  virtual void barrier() = 0;
  // Point to point (pipeline stages): send copies data[0..n) into rank `to`'s mailbox and returns; recv waits for
  // the oldest message from rank `from` and copies it into data, which must hold exactly n floats (a message of
  // another length is a logic error). Messages between two ranks arrive in the order they were sent.
  virtual void send(int to, const float* data, std::int64_t n) = 0;
  virtual void recv(int from, float* data, std::int64_t n) = 0;
  // The communicator of this group's ranks [first, first + count), which must include this rank (its rank there is
  // rank() - first): the tensor-parallel group of one attention replica. Every rank of the sub-group calls it
  // before using it, in any order; the sub-group lives as long as this communicator (ncclCommSplit under NCCL).
  virtual Communicator& sub_group(int first, int count) = 0;
  // Releases every rank of the group (and its sub-groups) from the call it waits in, and makes every later call
  // throw CommAborted: a rank that fails while the others wait in a collective calls it, so they leave instead of
  // waiting for ever. Safe to call from any thread, more than once. Under NCCL it is ncclCommAbort of this rank's
  // communicators; the other processes of a one-rank-per-process group are not reached (their launcher stops them).
  virtual void abort() = 0;
};

// `ranks` communicators sharing one rendezvous; hand communicator r to the thread of rank r.
std::vector<std::unique_ptr<Communicator>> make_in_process_group(int ranks);

// The communicator of the pipeline stage that `world`'s rank belongs to, stages being consecutive blocks of
// `stage_ranks` ranks: nullptr for a stage of one rank, `world` itself when it is one stage, else its sub-group.
Communicator* stage_group(Communicator& world, int stage_ranks);

}  // namespace moeplan::executor
