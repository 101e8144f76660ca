// The NCCL communicator on this machine's GPUs (one process, a thread per GPU): all-reduce, all-gather, all-to-all
// with a different length per peer (and none to some), point-to-point in a ring, a tensor-parallel sub-group and a
// barrier, each checked against the values every rank sent; then, with two GPUs or more, an abort releases ranks that
// wait in an all-reduce rank 0 never joins. A plain program: exit 77 (CTest: skipped) without a GPU.
#include <cuda_runtime.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "executor/nccl_comm.hpp"
#include "kernels/cuda/check.cuh"

using namespace moeplan;

namespace {

// Every failed expectation of one rank.
struct Failures {
  std::vector<std::string> what;
  void expect(bool ok, const std::string& name) {
    if (!ok) what.push_back(name);
  }
};

std::vector<float> on_host(const float* dev, std::size_t n) {
  std::vector<float> h(n);
  MOEPLAN_CUDA_CHECK(cudaMemcpy(h.data(), dev, n * sizeof(float), cudaMemcpyDeviceToHost));
  return h;
}

void run_rank(executor::Communicator& c, int devices, Failures& f) {
  const int r = c.rank(), n = 1000;
  MOEPLAN_CUDA_CHECK(cudaSetDevice(r));
  float *x = nullptr, *all = nullptr;
  MOEPLAN_CUDA_CHECK(cudaMalloc(&x, n * sizeof(float)));
  MOEPLAN_CUDA_CHECK(cudaMalloc(&all, static_cast<std::size_t>(devices) * n * sizeof(float)));
  std::vector<float> mine(n);
  for (int i = 0; i < n; ++i) mine[i] = static_cast<float>(r + 1) * static_cast<float>(i);
  MOEPLAN_CUDA_CHECK(cudaMemcpy(x, mine.data(), n * sizeof(float), cudaMemcpyHostToDevice));
  // all-gather: rank q's block is (q + 1) * i
  c.all_gather(x, n, all);
  const auto gathered = on_host(all, static_cast<std::size_t>(devices) * n);
  for (int q = 0; q < devices; ++q) f.expect(gathered[q * n + 7] == static_cast<float>(q + 1) * 7.0f, "all_gather");
  // all-reduce: sum over ranks of (q + 1) * i = i * devices (devices + 1) / 2 (small integers: exact in fp32)
  c.all_reduce_sum(x, n);
  const auto sum = on_host(x, n);
  f.expect(sum[10] == 10.0f * static_cast<float>(devices * (devices + 1) / 2), "all_reduce_sum");
  // all-to-all: rank r sends peer p (r + p) % 3 floats of value 100 r + p
  std::vector<std::vector<float>> send(static_cast<std::size_t>(devices));
  for (int p = 0; p < devices; ++p) send[p].assign(static_cast<std::size_t>((r + p) % 3), static_cast<float>(100 * r + p));
  const auto recv = c.all_to_all(send);
  for (int p = 0; p < devices; ++p)
    f.expect(recv[p] == std::vector<float>(static_cast<std::size_t>((p + r) % 3), static_cast<float>(100 * p + r)), "all_to_all");
  // ring: send x to the next rank, receive from the one before (even ranks send first so the ring cannot block)
  if (devices > 1) {
    const int next = (r + 1) % devices, prev = (r + devices - 1) % devices;
    MOEPLAN_CUDA_CHECK(cudaMemcpy(x, mine.data(), n * sizeof(float), cudaMemcpyHostToDevice));
    if (r % 2 == 0) {
      c.send(next, x, n);
      c.recv(prev, all, n);
    } else {
      c.recv(prev, all, n);
      c.send(next, x, n);
    }
    f.expect(on_host(all, n)[3] == static_cast<float>(prev + 1) * 3.0f, "send/recv");
  }
  // sub-group of ranks [0, devices / 2) and [devices / 2, devices) when there are two or more
  if (devices > 1) {
    const int half = devices / 2, first = r < half ? 0 : half, count = r < half ? half : devices - half;
    executor::Communicator& sub = c.sub_group(first, count);
    f.expect(sub.rank() == r - first && sub.size() == count, "sub_group rank/size");
    MOEPLAN_CUDA_CHECK(cudaMemcpy(x, mine.data(), n * sizeof(float), cudaMemcpyHostToDevice));
    sub.all_reduce_sum(x, n);
    float want = 0;
    for (int q = first; q < first + count; ++q) want += static_cast<float>(q + 1);
    f.expect(on_host(x, n)[2] == 2.0f * want, "sub_group all_reduce_sum");
  }
  c.barrier();
  MOEPLAN_CUDA_CHECK(cudaFree(x));
  MOEPLAN_CUDA_CHECK(cudaFree(all));
}

// Ranks 1 .. devices-1 wait in an all-reduce that rank 0 never joins; aborting every communicator (what run does when
// a rank fails) must release them with CommAborted. Returns the ranks that were not released so.
int check_abort(int devices) {
  auto comms = executor::make_nccl_group(devices);
  std::vector<int> released(static_cast<std::size_t>(devices), 0);
  std::vector<std::thread> threads;
  for (int r = 1; r < devices; ++r)
    threads.emplace_back([&, r] {
      float* x = nullptr;
      try {
        MOEPLAN_CUDA_CHECK(cudaSetDevice(r));
        MOEPLAN_CUDA_CHECK(cudaMalloc(&x, sizeof(float)));
        comms[static_cast<std::size_t>(r)]->all_reduce_sum(x, 1);
      } catch (const executor::CommAborted&) {
        released[static_cast<std::size_t>(r)] = 1;
      } catch (const std::exception& e) {
        std::printf("rank %d: %s (not CommAborted)\n", r, e.what());
      }
      if (x) cudaFree(x);
    });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  for (auto& c : comms) c->abort();
  for (auto& t : threads) t.join();
  int stuck = 0;
  for (int r = 1; r < devices; ++r) stuck += 1 - released[static_cast<std::size_t>(r)];
  std::printf("abort: %d of %d waiting ranks released\n", devices - 1 - stuck, devices - 1);
  return stuck;
}

}  // namespace

int main() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("no CUDA device: skipped\n");
    return 77;
  }
  try {
    auto comms = executor::make_nccl_group(devices);
    std::vector<Failures> failures(static_cast<std::size_t>(devices));
    std::vector<std::string> errors(static_cast<std::size_t>(devices));
    std::vector<std::thread> threads;
    for (int r = 0; r < devices; ++r)
      threads.emplace_back([&, r] {
        try {
          run_rank(*comms[static_cast<std::size_t>(r)], devices, failures[static_cast<std::size_t>(r)]);
        } catch (const std::exception& e) {
          errors[static_cast<std::size_t>(r)] = e.what();
        }
      });
    for (auto& t : threads) t.join();
    int failed = 0;
    for (int r = 0; r < devices; ++r) {
      for (const auto& w : failures[static_cast<std::size_t>(r)].what) std::printf("rank %d: %s differs\n", r, w.c_str()), ++failed;
      if (!errors[static_cast<std::size_t>(r)].empty()) std::printf("rank %d: %s\n", r, errors[static_cast<std::size_t>(r)].c_str()), ++failed;
    }
    if (devices > 1) failed += check_abort(devices);
    std::printf("NCCL communicator on %d GPU(s): %s\n", devices, failed ? "FAILED" : "all checks passed");
    return failed ? 1 : 0;
  } catch (const std::exception& e) {
    std::printf("%s\n", e.what());
    return 1;
  }
}
