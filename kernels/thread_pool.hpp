// kernels/thread_pool: a small persistent pool the fast CPU kernels split their work over. The calling thread
// takes part, so ThreadPool(1) starts no thread and runs everything inline. Indices are handed out dynamically
// (one atomic counter), so uneven items (experts with different token counts) balance themselves.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace moeplan::kernels {

class ThreadPool {
 public:
  // threads: how many threads run tasks, the caller included; 0 means std::thread::hardware_concurrency().
  explicit ThreadPool(int threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Threads that run tasks, counting the caller.
  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(i) once for every i in [begin, end), spread over the pool, and returns when all calls have returned.
  // The first exception thrown by fn is rethrown here (the other indices still run). A call from inside a task
  // (nested), or while another thread is using the pool, runs serially on the calling thread, so it never blocks.
  template <class Fn>
  void parallel_for(std::int64_t begin, std::int64_t end, Fn&& fn) {
    using F = std::remove_reference_t<Fn>;
    run(begin, end, [](void* f, std::int64_t i) { (*static_cast<F*>(f))(i); },
        const_cast<void*>(static_cast<const void*>(&fn)));
  }

 private:
  using Call = void (*)(void*, std::int64_t);
  void run(std::int64_t begin, std::int64_t end, Call call, void* fn);
  void worker_loop();
  void stop_workers();  // wakes every worker with stop_ set and joins it
  void work_on_current_job();

  std::vector<std::thread> workers_;
  std::mutex submit_mutex_;                // one job at a time; a second submitter runs serially instead
  std::mutex mutex_;                       // guards job_open_, active_, stop_, error_ and the job fields
  std::condition_variable wake_, done_;
  std::atomic<std::uint64_t> generation_{0};  // bumped (under mutex_) when a job is published
  bool job_open_ = false;                  // workers may still join the current job
  int active_ = 0;                         // workers inside the current job
  bool stop_ = false;
  std::exception_ptr error_;
  // The current job.
  Call call_ = nullptr;
  void* fn_ = nullptr;
  std::int64_t end_ = 0;
  alignas(64) std::atomic<std::int64_t> next_{0};  // next index to hand out
};

}  // namespace moeplan::kernels
