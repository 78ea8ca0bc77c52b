#include "core/device_buffer.h"

#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>

#include "core/cuda_api.h"
#include "drdc/status.h"

namespace drdc {

namespace {
// 256 bytes: what cudaMalloc guarantees and TensorRT requires of every tensor
// address, so CPU and CUDA buffers (and sub-buffers at aligned offsets) agree.
constexpr std::size_t kAlign = 256;
}

Buffer::Buffer(Device device, std::size_t bytes) : device_(device), bytes_(bytes) {
  if (bytes == 0) return;
  if (device == Device::kCUDA) {
    data_ = cuda::malloc(bytes);
    return;
  }
  const std::size_t rounded = (bytes + kAlign - 1) / kAlign * kAlign;
  data_ = std::aligned_alloc(kAlign, rounded);
  if (!data_) throw Error(Status::kInternal, "out of host memory (" + std::to_string(bytes) + " bytes)");
}

Buffer::~Buffer() { release(); }

Buffer::Buffer(Buffer&& other) noexcept
    : device_(other.device_), data_(std::exchange(other.data_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}

Buffer& Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    release();
    device_ = other.device_;
    data_ = std::exchange(other.data_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

void Buffer::release() noexcept {
  if (!data_) return;
  if (device_ == Device::kCUDA)
    cuda::free(data_);
  else
    std::free(data_);
  data_ = nullptr;
}

void Buffer::upload(const void* host, std::size_t bytes) {
  require(bytes <= bytes_, "upload of " + std::to_string(bytes) + " bytes into a buffer of " + std::to_string(bytes_));
  require(host != nullptr || bytes == 0, "upload from a null pointer");
  if (bytes == 0) return;
  if (device_ == Device::kCUDA) {
    // A pageable cudaMemcpy may return before its DMA lands, and the legacy
    // stream does not order non-blocking streams: wait for the copy here.
    cuda::memcpy_async(data_, host, bytes, nullptr);
    cuda::synchronize(nullptr);
  } else {
    std::memcpy(data_, host, bytes);
  }
}

void Buffer::download(void* host, std::size_t bytes) const {
  require(bytes <= bytes_, "download of " + std::to_string(bytes) + " bytes from a buffer of " + std::to_string(bytes_));
  require(host != nullptr || bytes == 0, "download to a null pointer");
  if (bytes == 0) return;
  if (device_ == Device::kCUDA) {
    cuda::memcpy_async(host, data_, bytes, nullptr);
    cuda::synchronize(nullptr);
  } else {
    std::memcpy(host, data_, bytes);
  }
}

Stream::Stream(Device device) : device_(device) {
  if (device == Device::kCUDA) handle_ = cuda::stream_create();
}

Stream::~Stream() {
  if (handle_) cuda::stream_destroy(handle_);
}

void Stream::synchronize() const {
  if (device_ == Device::kCUDA) cuda::synchronize(handle_);
}

int cuda_device_count() noexcept { return cuda::device_count(); }

std::string cuda_status() { return cuda::status(); }

ScopedDevice::ScopedDevice(int device) {
  if (device < 0) return;
  const int current = cuda::current_device();
  if (current == device) return;
  cuda::set_device(device);
  previous_ = current;
}

ScopedDevice::~ScopedDevice() {
  if (previous_ < 0) return;
  try {
    cuda::set_device(previous_);
  } catch (...) {  // destructor: the device stays switched, nothing better to do
  }
}

int ScopedDevice::of(const void* device_ptr) noexcept { return cuda::pointer_device(device_ptr); }

namespace detail {

void zero_async(Device device, void* ptr, std::size_t bytes, void* stream) {
  if (device == Device::kCUDA)
    cuda::memset_async(ptr, 0, bytes, stream);
  else if (bytes)
    std::memset(ptr, 0, bytes);
}

int gpu_of(const void* ptr, const char* name) {
  const int device = ScopedDevice::of(ptr);
  // Only a pointer that is not device memory asks whether there is a device at all.
  require(device >= 0 || cuda::device_count() == 0,
          std::string("device=cuda but ") + name + " is not in GPU memory (a host pointer?)");
  return device;
}

void copy_async(Device device, void* dst, const void* src, std::size_t bytes, void* stream) {
  if (device == Device::kCUDA)
    cuda::memcpy_async(dst, src, bytes, stream);
  else if (bytes && dst != src)
    std::memmove(dst, src, bytes);
}

}  // namespace detail
}  // namespace drdc
