// executor/comm: in-process communicator (see comm.hpp).
#include "executor/comm.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>

namespace moeplan::executor {

namespace {

// Set once by Communicator::abort, shared by a group and all its sub-groups.
using AbortFlag = std::shared_ptr<std::atomic<bool>>;

void check_not_aborted(const AbortFlag& aborted) {
  if (aborted->load()) throw CommAborted("communicator aborted: another rank failed");
}

// Waits on `cv` until `ready` holds, throwing CommAborted once the group is aborted. The wait wakes on every notify
// and, at the latest, every 20 ms to look at the flag (abort reaches sub-groups' waiters without knowing them).
template <class Ready>
void wait_unless_aborted(std::condition_variable& cv, std::unique_lock<std::mutex>& lock, const AbortFlag& aborted,
                         Ready ready) {
  while (!ready()) {
    check_not_aborted(aborted);
    cv.wait_for(lock, std::chrono::milliseconds(20));
  }
}

// A reusable barrier of n ranks whose waiters leave with CommAborted when the group is aborted.
class Rendezvous {
 public:
  Rendezvous(int n, AbortFlag aborted) : n_(n), aborted_(std::move(aborted)) {}
  void arrive_and_wait() {
    std::unique_lock<std::mutex> lock(m_);
    check_not_aborted(aborted_);
    const std::uint64_t generation = generation_;
    if (++arrived_ == n_) {
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
      return;
    }
    wait_unless_aborted(cv_, lock, aborted_, [&] { return generation_ != generation; });
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  int n_, arrived_ = 0;
  std::uint64_t generation_ = 0;
  AbortFlag aborted_;
};

struct Shared {
  Shared(int n, AbortFlag flag)
      : slots(static_cast<std::size_t>(n)), sends(static_cast<std::size_t>(n)), aborted(flag), sync(n, flag) {}
  std::vector<const float*> slots;  // each rank's buffer for the collective in progress
  std::vector<const std::vector<std::vector<float>>*> sends;  // each rank's all-to-all buffers
  AbortFlag aborted;
  Rendezvous sync;
  // Rendezvous of the sub-groups [first, first + count), made by the first of their ranks to ask.
  std::mutex sub_groups_mutex;
  std::map<std::pair<int, int>, std::shared_ptr<Shared>> sub_groups;
  // Point-to-point mailboxes keyed (from, to).
  std::mutex mail_mutex;
  std::condition_variable mail_arrived;
  std::map<std::pair<int, int>, std::deque<std::vector<float>>> mail;
};

class InProcess final : public Communicator {
 public:
  InProcess(std::shared_ptr<Shared> s, int rank) : s_(std::move(s)), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return static_cast<int>(s_->slots.size()); }
  void all_reduce_sum(float* data, std::int64_t n) override {
    s_->slots[static_cast<std::size_t>(rank_)] = data;
    s_->sync.arrive_and_wait();  // every rank has published
    std::vector<float> sum(static_cast<std::size_t>(n), 0.0f);
    for (const float* p : s_->slots)
      for (std::int64_t i = 0; i < n; ++i) sum[static_cast<std::size_t>(i)] += p[i];
    s_->sync.arrive_and_wait();  // every rank has read every buffer
    std::copy(sum.begin(), sum.end(), data);
  }
  void all_gather(const float* in, std::int64_t n, float* out) override {
    s_->slots[static_cast<std::size_t>(rank_)] = in;
    s_->sync.arrive_and_wait();
    for (std::size_t r = 0; r < s_->slots.size(); ++r)
      std::memcpy(out + static_cast<std::int64_t>(r) * n, s_->slots[r], static_cast<std::size_t>(n) * sizeof(float));
    s_->sync.arrive_and_wait();
  }
  std::vector<std::vector<float>> all_to_all(const std::vector<std::vector<float>>& send) override {
    if (send.size() != s_->sends.size()) throw std::logic_error("all_to_all: one buffer per rank");
    s_->sends[static_cast<std::size_t>(rank_)] = &send;
    s_->sync.arrive_and_wait();
    std::vector<std::vector<float>> recv;
    for (const auto* from : s_->sends) recv.push_back((*from)[static_cast<std::size_t>(rank_)]);
    s_->sync.arrive_and_wait();
    return recv;
  }
  void barrier() override { s_->sync.arrive_and_wait(); }
  void send(int to, const float* data, std::int64_t n) override {
    check_peer(to, "send");
    check_not_aborted(s_->aborted);
    std::vector<float> message(data, data + n);
    {
      const std::lock_guard<std::mutex> lock(s_->mail_mutex);
      s_->mail[{rank_, to}].push_back(std::move(message));
    }
    s_->mail_arrived.notify_all();
  }
  void recv(int from, float* data, std::int64_t n) override {
    check_peer(from, "recv");
    std::unique_lock<std::mutex> lock(s_->mail_mutex);
    auto& box = s_->mail[{from, rank_}];
    wait_unless_aborted(s_->mail_arrived, lock, s_->aborted, [&] { return !box.empty(); });
    std::vector<float> message = std::move(box.front());
    box.pop_front();
    lock.unlock();
    if (static_cast<std::int64_t>(message.size()) != n)
      throw std::logic_error("recv: a message of " + std::to_string(message.size()) + " floats where " +
                             std::to_string(n) + " were expected");
    std::copy(message.begin(), message.end(), data);
  }
  Communicator& sub_group(int first, int count) override {
    if (first < 0 || count < 1 || first + count > size() || rank_ < first || rank_ >= first + count)
      throw std::logic_error("sub_group: ranks [first, first + count) must lie in the group and include this rank");
    const std::pair<int, int> key{first, count};
    auto& mine = subs_[key];
    if (!mine) {
      std::shared_ptr<Shared> shared;
      {
        const std::lock_guard<std::mutex> lock(s_->sub_groups_mutex);
        auto& slot = s_->sub_groups[key];
        if (!slot) slot = std::make_shared<Shared>(count, s_->aborted);
        shared = slot;
      }
      mine = std::make_unique<InProcess>(std::move(shared), rank_ - first);
    }
    return *mine;
  }
  void abort() override {
    s_->aborted->store(true);
    s_->mail_arrived.notify_all();
  }

 private:
  std::shared_ptr<Shared> s_;
  int rank_;
  std::map<std::pair<int, int>, std::unique_ptr<InProcess>> subs_;  // this rank's sub-group communicators
  void check_peer(int peer, const char* what) const {
    if (peer < 0 || peer >= size() || peer == rank_)
      throw std::logic_error(std::string(what) + ": peer " + std::to_string(peer) + " is not another rank of the group");
  }
};

}  // namespace

Communicator* stage_group(Communicator& world, int stage_ranks) {
  if (stage_ranks == 1) return nullptr;
  if (stage_ranks == world.size()) return &world;
  return &world.sub_group(world.rank() / stage_ranks * stage_ranks, stage_ranks);
}

std::vector<std::unique_ptr<Communicator>> make_in_process_group(int ranks) {
  auto shared = std::make_shared<Shared>(ranks, std::make_shared<std::atomic<bool>>(false));
  std::vector<std::unique_ptr<Communicator>> out;
  for (int r = 0; r < ranks; ++r) out.push_back(std::make_unique<InProcess>(shared, r));
  return out;
}

}  // namespace moeplan::executor
