// The few CUDA runtime calls the refiner and the runners need, behind plain
// C++ types so that no public or internal .cpp outside the CUDA build needs
// cuda_runtime.h. Every call is checked: a failure throws Error kCudaError
// (kNotCompiled in a build without CUDA, see cuda_missing.cpp).
#pragma once

#include <cstddef>
#include <string>

namespace drdc {
namespace cuda {

void* malloc(std::size_t bytes);
void free(void* ptr) noexcept;
void memset_async(void* ptr, int value, std::size_t bytes, void* stream);
// Any direction (cudaMemcpyDefault: unified addressing).
void memcpy_async(void* dst, const void* src, std::size_t bytes, void* stream);
void memcpy(void* dst, const void* src, std::size_t bytes);
void synchronize(void* stream);
void* stream_create();  // non-blocking
void stream_destroy(void* stream) noexcept;
int device_count() noexcept;  // 0 without device or driver
// Why device_count() is 0: "" when a device is usable, else the runtime's
// error (a driver older than the runtime reads differently from "no device").
std::string status();
std::string device_name(int device);
int current_device();
void set_device(int device);
// Device owning a device (or managed) pointer; -1 for host or unknown memory.
int pointer_device(const void* ptr) noexcept;
// Events order work across streams (no timing).
void* event_create();
void event_destroy(void* event) noexcept;
void event_record(void* event, void* stream);
void stream_wait_event(void* stream, void* event);

// One captured stream segment, instantiated and launchable.
class Graph {
 public:
  Graph() = default;
  ~Graph();
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  void begin_capture(void* stream);
  // Ends the capture started on `stream` and instantiates it. When `ok` is
  // false (the enqueue in between threw) the capture is ended and dropped.
  void end_capture(void* stream, bool ok = true);
  void launch(void* stream);
  bool ready() const noexcept { return exec_ != nullptr; }
  void reset() noexcept;

 private:
  void* graph_ = nullptr;  // cudaGraph_t
  void* exec_ = nullptr;   // cudaGraphExec_t
};

}  // namespace cuda
}  // namespace drdc
