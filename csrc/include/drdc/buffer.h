// Owned memory and streams for hosts (and the refiner's own buffers): a byte
// buffer on the CPU or the current CUDA device, and a CUDA stream. Without
// CUDA in the build, CUDA requests throw Error kNotCompiled.
#pragma once

#include <cstddef>
#include <string>

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

  // Copies between host memory and the buffer, complete on return (CUDA:
  // enqueued on the legacy stream and waited for, so work on any stream
  // issued afterwards sees the data; the caller must have synchronised any
  // stream still writing the buffer before a download).
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
// Why cuda_device_count() is 0 ("" when a device is usable): e.g. the
// runtime's "insufficient driver" error, which must not read as "no GPU".
std::string cuda_status();

// Makes a CUDA device current until destruction, then restores the previous
// one; a no-op for device < 0 (host memory, or a build without CUDA).
class ScopedDevice {
 public:
  explicit ScopedDevice(int device);
  ~ScopedDevice();
  ScopedDevice(const ScopedDevice&) = delete;
  ScopedDevice& operator=(const ScopedDevice&) = delete;
  // The CUDA device owning a device pointer; -1 for host or unknown memory.
  static int of(const void* device_ptr) noexcept;

 private:
  int previous_ = -1;
};

}  // namespace drdc
