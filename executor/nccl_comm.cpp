// executor/nccl_comm: the NCCL communicator (see nccl_comm.hpp). Every CUDA call is checked by MOEPLAN_CUDA_CHECK
// (kernels/cuda/check.cuh) and every NCCL call by MOEPLAN_NCCL_CHECK below; both throw with file, line and message.
#include <cuda_runtime.h>
#include <nccl.h>

#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>

#include "common/error.hpp"
#include "executor/expert_dispatch.hpp"
#include "executor/nccl_comm.hpp"
#include "kernels/cuda/check.cuh"

#define MOEPLAN_NCCL_CHECK(call)                                                                             \
  do {                                                                                                       \
    const ncclResult_t moeplan_nccl_ = (call);                                                               \
    if (moeplan_nccl_ != ncclSuccess)                                                                        \
      throw std::runtime_error(std::string(__FILE__) + ":" + std::to_string(__LINE__) + ": " + #call + ": " + \
                               ncclGetErrorString(moeplan_nccl_));                                           \
  } while (0)

namespace moeplan::executor {

static_assert(NCCL_UNIQUE_ID_BYTES == kUniqueIdBytes, "launch.hpp's unique id size must be NCCL's");

namespace {

// Device memory that grows to the largest size asked of it (staging for all_to_all).
class DeviceBytes {
 public:
  DeviceBytes() = default;
  DeviceBytes(const DeviceBytes&) = delete;
  DeviceBytes& operator=(const DeviceBytes&) = delete;
  ~DeviceBytes() {
    if (p_) cudaFree(p_);  // a destructor does not throw; a failing free leaks at worst
  }
  void* at_least(std::size_t bytes) {
    if (bytes > bytes_) {
      if (p_) MOEPLAN_CUDA_CHECK(cudaFree(p_));
      p_ = nullptr;
      bytes_ = 0;
      MOEPLAN_CUDA_CHECK(cudaMalloc(&p_, bytes));
      bytes_ = bytes;
    }
    return p_;
  }

 private:
  void* p_ = nullptr;
  std::size_t bytes_ = 0;
};

class NcclCommunicator final : public Communicator {
 public:
  // Takes ownership of `comm`, whose ranks drive one GPU each; this one drives `device`.
  NcclCommunicator(ncclComm_t comm, int device) : comm_(comm), device_(device) {
    MOEPLAN_CUDA_CHECK(cudaSetDevice(device_));
    MOEPLAN_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    MOEPLAN_NCCL_CHECK(ncclCommUserRank(comm_, &rank_));
    MOEPLAN_NCCL_CHECK(ncclCommCount(comm_, &size_));
  }
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;
  ~NcclCommunicator() override {
    subs_.clear();  // sub-groups first: they were split from this one
    cudaSetDevice(device_);
    cudaStreamDestroy(stream_);
    if (!aborted_) ncclCommDestroy(comm_);  // ncclCommAbort freed it
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void all_reduce_sum(float* data, std::int64_t n) override {
    enqueue([&] { MOEPLAN_NCCL_CHECK(ncclAllReduce(data, data, count(n), ncclFloat, ncclSum, comm_, stream_)); });
    wait();
  }
  void all_gather(const float* in, std::int64_t n, float* out) override {
    enqueue([&] { MOEPLAN_NCCL_CHECK(ncclAllGather(in, out, count(n), ncclFloat, comm_, stream_)); });
    wait();
  }
  std::vector<std::vector<float>> all_to_all(const std::vector<std::vector<float>>& send) override {
    if (static_cast<int>(send.size()) != size_) throw std::logic_error("all_to_all: one buffer per rank");
    std::vector<std::int64_t> send_counts;
    for (const auto& s : send) send_counts.push_back(static_cast<std::int64_t>(s.size()));
    const std::vector<std::int64_t> recv_counts = exchange_counts(send_counts);
    const std::vector<std::int64_t> send_off = exclusive_offsets(send_counts), recv_off = exclusive_offsets(recv_counts);
    // Stage every peer's floats in one device buffer at its offset, send and receive per peer in one NCCL group.
    float* out_dev = static_cast<float*>(send_buf_.at_least(bytes(send_off.back())));
    float* in_dev = static_cast<float*>(recv_buf_.at_least(bytes(recv_off.back())));
    std::vector<std::vector<float>> recv(static_cast<std::size_t>(size_));
    enqueue([&] {
      for (int p = 0; p < size_; ++p)
        if (send_counts[p] > 0)
          MOEPLAN_CUDA_CHECK(cudaMemcpyAsync(out_dev + send_off[p], send[p].data(), bytes(send_counts[p]),
                                             cudaMemcpyHostToDevice, stream_));
      MOEPLAN_NCCL_CHECK(ncclGroupStart());
      for (int p = 0; p < size_; ++p) {
        if (send_counts[p] > 0)
          MOEPLAN_NCCL_CHECK(ncclSend(out_dev + send_off[p], count(send_counts[p]), ncclFloat, p, comm_, stream_));
        if (recv_counts[p] > 0)
          MOEPLAN_NCCL_CHECK(ncclRecv(in_dev + recv_off[p], count(recv_counts[p]), ncclFloat, p, comm_, stream_));
      }
      MOEPLAN_NCCL_CHECK(ncclGroupEnd());
      for (int p = 0; p < size_; ++p) {
        recv[p].resize(static_cast<std::size_t>(recv_counts[p]));
        if (recv_counts[p] > 0)
          MOEPLAN_CUDA_CHECK(cudaMemcpyAsync(recv[p].data(), in_dev + recv_off[p], bytes(recv_counts[p]),
                                             cudaMemcpyDeviceToHost, stream_));
      }
    });
    wait();
    return recv;
  }
  void barrier() override {
    enqueue([&] {
      float* one = static_cast<float*>(barrier_buf_.at_least(sizeof(float)));
      MOEPLAN_NCCL_CHECK(ncclAllReduce(one, one, 1, ncclFloat, ncclSum, comm_, stream_));
    });
    wait();
  }
  void send(int to, const float* data, std::int64_t n) override {
    check_peer(to, "send");
    enqueue([&] { MOEPLAN_NCCL_CHECK(ncclSend(data, count(n), ncclFloat, to, comm_, stream_)); });
    wait();
  }
  void recv(int from, float* data, std::int64_t n) override {
    check_peer(from, "recv");
    enqueue([&] { MOEPLAN_NCCL_CHECK(ncclRecv(data, count(n), ncclFloat, from, comm_, stream_)); });
    wait();
  }
  Communicator& sub_group(int first, int count_ranks) override {
    if (first < 0 || count_ranks < 1 || first + count_ranks > size_ || rank_ < first || rank_ >= first + count_ranks)
      throw std::logic_error("sub_group: ranks [first, first + count) must lie in the group and include this rank");
    const std::pair<int, int> key{first, count_ranks};
    {
      const std::lock_guard<std::mutex> lock(enqueue_mutex_);
      if (const auto it = subs_.find(key); it != subs_.end()) return *it->second;
      if (aborted_) throw CommAborted("NCCL communicator aborted: another rank failed");
    }
    // The split waits for every rank of the group, so it runs without the lock that abort takes.
    activate();
    ncclComm_t split = nullptr;
    // color: the sub-group's first rank; key: the rank inside it.
    MOEPLAN_NCCL_CHECK(ncclCommSplit(comm_, first, rank_ - first, &split, nullptr));
    auto sub = std::make_unique<NcclCommunicator>(split, device_);
    const std::lock_guard<std::mutex> lock(enqueue_mutex_);
    if (aborted_) sub->abort();  // aborted while it was being made
    return *(subs_[key] = std::move(sub));
  }
  // ncclCommAbort stops this rank's kernels that wait for peers (and the sub-groups'), so the stream waits return;
  // the lock keeps it from freeing the communicator while another thread enqueues on it.
  void abort() override {
    const std::lock_guard<std::mutex> lock(enqueue_mutex_);
    if (aborted_) return;
    aborted_ = true;
    for (auto& [key, sub] : subs_) sub->abort();
    ncclCommAbort(comm_);
  }

 private:
  static std::size_t count(std::int64_t n) { return static_cast<std::size_t>(n); }
  static std::size_t bytes(std::int64_t n) { return static_cast<std::size_t>(n) * sizeof(float); }
  void activate() const { MOEPLAN_CUDA_CHECK(cudaSetDevice(device_)); }
  // Puts NCCL work on the stream, unless the communicator was aborted (then CommAborted).
  template <class Calls>
  void enqueue(Calls calls) {
    const std::lock_guard<std::mutex> lock(enqueue_mutex_);
    if (aborted_) throw CommAborted("NCCL communicator aborted: another rank failed");
    activate();
    calls();
  }
  // After an abort the stream's NCCL kernels have stopped: the rank leaves with CommAborted, not NCCL's error.
  void wait() const {
    const cudaError_t e = cudaStreamSynchronize(stream_);
    if (aborted_) throw CommAborted("NCCL communicator aborted: another rank failed");
    MOEPLAN_CUDA_CHECK(e);
  }
  void check_peer(int peer, const char* what) const {
    if (peer < 0 || peer >= size_ || peer == rank_)
      throw std::logic_error(std::string(what) + ": peer " + std::to_string(peer) + " is not another rank of the group");
  }
  // recv_counts[p] <- peer p's send_counts[rank()]: one int64 to and from every peer.
  std::vector<std::int64_t> exchange_counts(const std::vector<std::int64_t>& send_counts) {
    const std::size_t n = static_cast<std::size_t>(size_);
    std::vector<std::int64_t> recv_counts(n);
    enqueue([&] {
      auto* dev = static_cast<std::int64_t*>(counts_buf_.at_least(2 * n * sizeof(std::int64_t)));
      MOEPLAN_CUDA_CHECK(
          cudaMemcpyAsync(dev, send_counts.data(), n * sizeof(std::int64_t), cudaMemcpyHostToDevice, stream_));
      MOEPLAN_NCCL_CHECK(ncclGroupStart());
      for (int p = 0; p < size_; ++p) {
        MOEPLAN_NCCL_CHECK(ncclSend(dev + p, 1, ncclInt64, p, comm_, stream_));
        MOEPLAN_NCCL_CHECK(ncclRecv(dev + n + p, 1, ncclInt64, p, comm_, stream_));
      }
      MOEPLAN_NCCL_CHECK(ncclGroupEnd());
      MOEPLAN_CUDA_CHECK(
          cudaMemcpyAsync(recv_counts.data(), dev + n, n * sizeof(std::int64_t), cudaMemcpyDeviceToHost, stream_));
    });
    wait();
    return recv_counts;
  }

  ncclComm_t comm_ = nullptr;
  int device_ = 0, rank_ = 0, size_ = 1;
  cudaStream_t stream_ = nullptr;
  DeviceBytes send_buf_, recv_buf_, counts_buf_, barrier_buf_;
  std::map<std::pair<int, int>, std::unique_ptr<NcclCommunicator>> subs_;
  std::mutex enqueue_mutex_;  // held while NCCL work is put on the stream, and by abort
  std::atomic<bool> aborted_{false};
};

int visible_devices() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
  return n;
}

}  // namespace

bool nccl_available() { return true; }

std::vector<std::unique_ptr<Communicator>> make_nccl_group(int devices) {
  const int visible = visible_devices();
  if (devices < 1 || devices > visible)
    throw InputError("NCCL group of " + std::to_string(devices) + " GPUs: " + std::to_string(visible) + " are visible");
  std::vector<ncclComm_t> comms(static_cast<std::size_t>(devices));
  std::vector<int> list(static_cast<std::size_t>(devices));
  for (int d = 0; d < devices; ++d) list[static_cast<std::size_t>(d)] = d;
  MOEPLAN_NCCL_CHECK(ncclCommInitAll(comms.data(), devices, list.data()));
  std::vector<std::unique_ptr<Communicator>> out;
  for (int d = 0; d < devices; ++d) out.push_back(std::make_unique<NcclCommunicator>(comms[static_cast<std::size_t>(d)], d));
  return out;
}

std::unique_ptr<Communicator> make_nccl_communicator(const ProcessRank& rank, const UniqueIdSource& source,
                                                     std::chrono::milliseconds timeout) {
  const int visible = visible_devices();
  if (rank.local_rank >= visible)
    throw InputError("local rank " + std::to_string(rank.local_rank) + " has no GPU: " + std::to_string(visible) + " are visible");
  UniqueIdBytes bytes{};
  ncclUniqueId id;
  if (source.id) {
    bytes = *source.id;
  } else if (rank.world_size > 1 && source.file.empty()) {
    throw InputError("NCCL ranks of " + std::to_string(rank.world_size) +
                     " processes need MOEPLAN_NCCL_ID_FILE (a path every rank sees) or MOEPLAN_NCCL_ID");
  } else if (rank.rank == 0) {
    MOEPLAN_NCCL_CHECK(ncclGetUniqueId(&id));
    std::memcpy(bytes.data(), id.internal, kUniqueIdBytes);
    if (rank.world_size > 1) write_unique_id_file(source.file, bytes);
  } else {
    bytes = read_unique_id_file(source.file, timeout);
  }
  std::memcpy(id.internal, bytes.data(), kUniqueIdBytes);
  MOEPLAN_CUDA_CHECK(cudaSetDevice(rank.local_rank));
  ncclComm_t comm = nullptr;
  MOEPLAN_NCCL_CHECK(ncclCommInitRank(&comm, rank.world_size, id, rank.rank));
  return std::make_unique<NcclCommunicator>(comm, rank.local_rank);
}

}  // namespace moeplan::executor
