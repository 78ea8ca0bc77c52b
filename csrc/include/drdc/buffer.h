// Owned memory and streams for hosts (and the refiner's own buffers): a byte
// buffer on the CPU or the current CUDA device, and a CUDA stream. Without
// CUDA in the build, CUDA requests throw Error kNotCompiled.
#pragma once

#include <cstddef>

#include "drdc/types.h"

namespace drdc {

class Buffer {
 public:
  Buffer() = default;
  Buffer(Device device, std::size_t bytes);  // uninitialised
  ~Buffer();
  Buffer(Buffer&& other) noexcept;
  Buffer& operator=(Buffer&& other) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  void* data() const noexcept { return data_; }
  template <class T>
  T* as() const noexcept {
    return static_cast<T*>(data_);
  }
  std::size_t bytes() const noexcept { return bytes_; }
  Device device() const noexcept { return device_; }

  // Synchronous copies between host memory and the buffer.
  void upload(const void* host, std::size_t bytes);
  void download(void* host, std::size_t bytes) const;

 private:
  void release() noexcept;
  Device device_ = Device::kCPU;
  void* data_ = nullptr;
  std::size_t bytes_ = 0;
};

// A non-blocking CUDA stream (Device::kCUDA), or the CPU's null "stream".
class Stream {
 public:
  explicit Stream(Device device = Device::kCUDA);
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  void* handle() const noexcept { return handle_; }  // a cudaStream_t
  void synchronize() const;

 private:
  Device device_;
  void* handle_ = nullptr;
};

// Number of usable CUDA devices; 0 without CUDA in the build, device or driver.
int cuda_device_count() noexcept;

}  // namespace drdc
