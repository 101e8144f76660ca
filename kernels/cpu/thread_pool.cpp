// The persistent thread pool behind the fast CPU kernels (kernels/thread_pool.hpp). Workers spin briefly after a
// job (back-to-back kernels in a decode step arrive microseconds apart), then sleep on a condition variable.
#include "kernels/thread_pool.hpp"

#include <algorithm>

namespace moeplan::kernels {

namespace {

// The pool whose task the current thread is running, if any: a parallel_for from inside a task runs serially.
thread_local const ThreadPool* tls_running_pool = nullptr;

constexpr int kSpinIterations = 2000;  // ~ tens of microseconds of polling before a worker goes to sleep

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  std::this_thread::yield();
#endif
}

}  // namespace

ThreadPool::ThreadPool(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  try {
    workers_.reserve(static_cast<std::size_t>(threads - 1));
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { worker_loop(); });
  } catch (const std::exception& e) {
    // No destructor runs for a half-built object: stop and join the workers already started, or they would wait
    // for a job for ever and their std::thread objects would terminate the program when destroyed.
    stop_workers();
    throw std::runtime_error("cannot start " + std::to_string(threads) + " threads (" + e.what() +
                             "); ask for fewer threads");
  }
}

ThreadPool::~ThreadPool() { stop_workers(); }

void ThreadPool::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::work_on_current_job() {
  const ThreadPool* outer = tls_running_pool;
  tls_running_pool = this;
  for (;;) {
    const std::int64_t i = next_.fetch_add(1, std::memory_order_relaxed);
    if (i >= end_) break;
    try {
      call_(fn_, i);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
    }
  }
  tls_running_pool = outer;
}

void ThreadPool::worker_loop() {
  std::uint64_t seen = 0;
  for (;;) {
    for (int spin = 0; spin < kSpinIterations && generation_.load(std::memory_order_acquire) == seen; ++spin)
      cpu_relax();
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stop_ || generation_.load(std::memory_order_relaxed) != seen; });
      if (stop_) return;
      seen = generation_.load(std::memory_order_relaxed);
      if (!job_open_) continue;  // woke after the caller closed the job: nothing left to do
      ++active_;
    }
    work_on_current_job();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (--active_ == 0 && !job_open_) done_.notify_all();
    }
  }
}

void ThreadPool::run(std::int64_t begin, std::int64_t end, Call call, void* fn) {
  if (begin >= end) return;
  std::unique_lock<std::mutex> submit(submit_mutex_, std::defer_lock);
  const bool serial = workers_.empty() || end - begin == 1 || tls_running_pool != nullptr || !submit.try_lock();
  if (serial) {
    std::exception_ptr first;
    for (std::int64_t i = begin; i < end; ++i) {
      try {
        call(fn, i);
      } catch (...) {
        if (!first) first = std::current_exception();
      }
    }
    if (first) std::rethrow_exception(first);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    call_ = call;
    fn_ = fn;
    end_ = end;
    next_.store(begin, std::memory_order_relaxed);
    error_ = nullptr;
    job_open_ = true;
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  work_on_current_job();
  std::exception_ptr error;
  {
    // Close the job (no late worker joins it) and wait for the workers inside it to leave.
    std::unique_lock<std::mutex> lock(mutex_);
    job_open_ = false;
    done_.wait(lock, [&] { return active_ == 0; });
    error = std::exchange(error_, nullptr);
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace moeplan::kernels
