// ThreadPool: every index runs exactly once, exceptions reach the caller, nested and concurrent calls do not
// deadlock, and many small jobs in a row (a decode step) complete.
#include <catch2/catch.hpp>

#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

#include "kernels/thread_pool.hpp"

using moeplan::kernels::ThreadPool;

TEST_CASE("ThreadPool runs every index exactly once") {
  for (int threads : {1, 2, 4}) {
    ThreadPool pool(threads);
    CHECK(pool.size() == threads);
    std::vector<std::atomic<int>> hits(1000);
    pool.parallel_for(0, 1000, [&](std::int64_t i) { hits[static_cast<std::size_t>(i)]++; });
    int wrong = 0;
    for (auto& h : hits) wrong += h.load() != 1;
    CHECK(wrong == 0);
    // an offset range and an empty one
    std::atomic<std::int64_t> sum{0};
    pool.parallel_for(10, 20, [&](std::int64_t i) { sum += i; });
    CHECK(sum == 145);
    pool.parallel_for(5, 5, [&](std::int64_t) { sum += 1000; });
    CHECK(sum == 145);
  }
  CHECK(ThreadPool(0).size() >= 1);  // 0 = hardware_concurrency
}

TEST_CASE("ThreadPool rethrows the first exception after all indices ran") {
  ThreadPool pool(3);
  std::atomic<int> ran{0};
  CHECK_THROWS_AS(pool.parallel_for(0, 50,
                                    [&](std::int64_t i) {
                                      ran++;
                                      if (i == 7) throw std::runtime_error("seven");
                                    }),
                  std::runtime_error);
  CHECK(ran == 50);
  // the pool still works afterwards
  std::atomic<int> again{0};
  pool.parallel_for(0, 10, [&](std::int64_t) { again++; });
  CHECK(again == 10);
}

TEST_CASE("ThreadPool: nested and concurrent parallel_for complete") {
  ThreadPool pool(3);
  std::atomic<int> inner{0};
  pool.parallel_for(0, 8, [&](std::int64_t) { pool.parallel_for(0, 8, [&](std::int64_t) { inner++; }); });
  CHECK(inner == 64);
  std::atomic<int> total{0};
  std::thread other([&] {
    for (int j = 0; j < 200; ++j) pool.parallel_for(0, 16, [&](std::int64_t) { total++; });
  });
  for (int j = 0; j < 200; ++j) pool.parallel_for(0, 16, [&](std::int64_t) { total++; });
  other.join();
  CHECK(total == 2 * 200 * 16);
}

TEST_CASE("ThreadPool: thousands of small jobs in a row") {
  ThreadPool pool(4);
  std::int64_t expected = 0;
  std::atomic<std::int64_t> sum{0};
  for (int job = 0; job < 5000; ++job) {
    const int n = 1 + job % 7;
    pool.parallel_for(0, n, [&](std::int64_t i) { sum += i + 1; });
    expected += static_cast<std::int64_t>(n) * (n + 1) / 2;
  }
  CHECK(sum == expected);
}
