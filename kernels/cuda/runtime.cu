// The host-callable runtime calls of kernels/gpu_runtime.hpp: device memory, streams, events, copies and graphs,
// each checked by MOEPLAN_CUDA_CHECK (check.cuh).
#include <cuda_runtime.h>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/device.cuh"
#include "kernels/gpu_runtime.hpp"

namespace moeplan::kernels::cuda {

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver / no device" error
    return 0;
  }
  return n;
}

void set_device(int index) { MOEPLAN_CUDA_CHECK(cudaSetDevice(index)); }

void memory_info(std::size_t* free_bytes, std::size_t* total_bytes) {
  MOEPLAN_CUDA_CHECK(cudaMemGetInfo(free_bytes, total_bytes));
}

void* device_alloc(std::size_t bytes) {
  if (bytes == 0) return nullptr;
  void* p = nullptr;
  MOEPLAN_CUDA_CHECK(cudaMalloc(&p, bytes));
  // Zeroed before any stream reads it: the memset runs on the legacy default stream, which the backend's
  // non-blocking stream does not wait for, so the host waits here (allocations are rare: weights, growing scratch).
  cudaError_t err = cudaMemset(p, 0, bytes);
  if (err == cudaSuccess) err = cudaStreamSynchronize(nullptr);
  if (err != cudaSuccess) {
    cudaFree(p);
    MOEPLAN_CUDA_CHECK(err);
  }
  return p;
}

void* device_alloc_on(std::size_t bytes, Stream s) {
  if (bytes == 0) return nullptr;
  void* p = nullptr;
  MOEPLAN_CUDA_CHECK(cudaMalloc(&p, bytes));
  const cudaError_t err = cudaMemsetAsync(p, 0, bytes, as_stream(s));
  if (err != cudaSuccess) {
    cudaFree(p);
    MOEPLAN_CUDA_CHECK(err);
  }
  return p;
}

void device_free(void* p) noexcept {
  if (p) cudaFree(p);
}

Stream stream_create() {
  cudaStream_t s = nullptr;
  MOEPLAN_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  return s;
}
void stream_destroy(Stream s) noexcept {
  if (s) cudaStreamDestroy(as_stream(s));
}
void stream_synchronize(Stream s) { MOEPLAN_CUDA_CHECK(cudaStreamSynchronize(as_stream(s))); }

void copy_to_device(void* dst, const void* host_src, std::size_t bytes, Stream s) {
  if (bytes == 0) return;
  MOEPLAN_CUDA_CHECK(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, as_stream(s)));
  // The host buffer may be freed when this returns (the interface's contract): wait for the copy.
  MOEPLAN_CUDA_CHECK(cudaStreamSynchronize(as_stream(s)));
}

void copy_to_host(void* host_dst, const void* src, std::size_t bytes, Stream s) {
  if (bytes == 0) return;
  MOEPLAN_CUDA_CHECK(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, as_stream(s)));
  MOEPLAN_CUDA_CHECK(cudaStreamSynchronize(as_stream(s)));
}

void copy_on_device(void* dst, const void* src, std::size_t bytes, Stream s) {
  if (bytes == 0 || dst == src) return;
  const auto* d = static_cast<const unsigned char*>(dst);
  const auto* c = static_cast<const unsigned char*>(src);
  const bool overlap = d < c + bytes && c < d + bytes;
  if (!overlap) {
    MOEPLAN_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, as_stream(s)));
    return;
  }
  // cudaMemcpy's ranges must not overlap: go through a stream-ordered temporary.
  void* tmp = nullptr;
  MOEPLAN_CUDA_CHECK(cudaMallocAsync(&tmp, bytes, as_stream(s)));
  MOEPLAN_CUDA_CHECK(cudaMemcpyAsync(tmp, src, bytes, cudaMemcpyDeviceToDevice, as_stream(s)));
  MOEPLAN_CUDA_CHECK(cudaMemcpyAsync(dst, tmp, bytes, cudaMemcpyDeviceToDevice, as_stream(s)));
  MOEPLAN_CUDA_CHECK(cudaFreeAsync(tmp, as_stream(s)));
}

Event event_create() {
  cudaEvent_t e = nullptr;
  MOEPLAN_CUDA_CHECK(cudaEventCreate(&e));
  return e;
}
void event_destroy(Event e) noexcept {
  if (e) cudaEventDestroy(static_cast<cudaEvent_t>(e));
}
void event_record(Event e, Stream s) { MOEPLAN_CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(e), as_stream(s))); }
float event_elapsed_ms(Event start, Event stop) {
  MOEPLAN_CUDA_CHECK(cudaEventSynchronize(static_cast<cudaEvent_t>(stop)));
  float ms = 0;
  MOEPLAN_CUDA_CHECK(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start), static_cast<cudaEvent_t>(stop)));
  return ms;
}

void graph_begin_capture(Stream s) {
  // Relaxed: a captured step may allocate (cudaMalloc), which the stricter modes refuse while a stream captures.
  MOEPLAN_CUDA_CHECK(cudaStreamBeginCapture(as_stream(s), cudaStreamCaptureModeRelaxed));
}
Graph graph_end_capture(Stream s) {
  cudaGraph_t graph = nullptr;
  MOEPLAN_CUDA_CHECK(cudaStreamEndCapture(as_stream(s), &graph));
  cudaGraphExec_t exec = nullptr;
  const cudaError_t err = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  MOEPLAN_CUDA_CHECK(err);
  return exec;
}
void graph_launch(Graph g, Stream s) { MOEPLAN_CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(g), as_stream(s))); }
void graph_destroy(Graph g) noexcept {
  if (g) cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(g));
}

}  // namespace moeplan::kernels::cuda
