// kernels/gpu_runtime: the host-callable CUDA runtime calls a backend needs besides the kernels of gpu_ops.hpp:
// device selection and memory, one stream, timing events, stream-ordered copies and CUDA graph capture. Plain
// C++ with no CUDA include, so executor/backend_cuda.cpp can be plain C++; implemented in kernels/cuda/runtime.cu
// (built when MOEPLAN_HAVE_CUDA). Every call is checked and throws std::runtime_error naming the failed call.
// Handles are opaque pointers (cudaStream_t, cudaEvent_t, cudaGraphExec_t).
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/gpu_ops.hpp"

namespace moeplan::kernels::cuda {

int device_count();                  // visible CUDA devices (0 when there is no driver or device)
void set_device(int index);          // the calling thread's current device
// Free and total memory of the current device, bytes.
void memory_info(std::size_t* free_bytes, std::size_t* total_bytes);

// Zero-filled device memory of `bytes` (nullptr for 0); free with device_free.
void* device_alloc(std::size_t bytes);
void device_free(void* p) noexcept;
// Device memory of `bytes` (nullptr for 0) zero-filled by an operation enqueued on `s`, with no host wait: while `s`
// is capturing, the fill is part of the graph (every replay zeroes it again).
void* device_alloc_on(std::size_t bytes, Stream s);

Stream stream_create();               // a non-blocking stream
void stream_destroy(Stream s) noexcept;
void stream_synchronize(Stream s);

// Stream-ordered copies. to_host waits for the stream; device copies may overlap (memmove semantics: an
// overlapping range goes through a stream-ordered temporary).
void copy_to_device(void* dst, const void* host_src, std::size_t bytes, Stream s);
void copy_to_host(void* host_dst, const void* src, std::size_t bytes, Stream s);
void copy_on_device(void* dst, const void* src, std::size_t bytes, Stream s);

using Event = void*;  // a cudaEvent_t
Event event_create();
void event_destroy(Event e) noexcept;
void event_record(Event e, Stream s);
// Milliseconds between two recorded events; waits for `stop`.
float event_elapsed_ms(Event start, Event stop);

// CUDA graphs: capture the work enqueued on `s` between begin and end (no synchronising call in between), then
// replay it with graph_launch. end returns the instantiated graph.
using Graph = void*;  // a cudaGraphExec_t
void graph_begin_capture(Stream s);
Graph graph_end_capture(Stream s);
void graph_launch(Graph g, Stream s);
void graph_destroy(Graph g) noexcept;

}  // namespace moeplan::kernels::cuda
