// Where data lives and what precision the network buffers use.
#pragma once

#include <cstddef>
#include <cstdint>

namespace drdc {

enum class Device : int { kCPU = 0, kCUDA = 1 };

// Precision of the network buffers (unet_in, eps). The DDIM state, the noise
// and the heat accumulator are always float32.
enum class DType : int { kFloat32 = 0, kFloat16 = 1 };

inline std::size_t dtype_size(DType dtype) noexcept { return dtype == DType::kFloat16 ? 2 : 4; }
inline const char* dtype_name(DType dtype) noexcept {
  return dtype == DType::kFloat16 ? "float16" : "float32";
}
inline const char* device_name(Device device) noexcept {
  return device == Device::kCUDA ? "cuda" : "cpu";
}

// Parse "cpu"/"cuda" and "float32"/"float16"; throw Error(kInvalidArgument) otherwise.
Device parse_device(const char* name);
DType parse_dtype(const char* name);

// What this build of the library contains.
bool built_with_cuda() noexcept;
bool built_with_tensorrt() noexcept;
const char* cuda_architectures() noexcept;  // e.g. "80;90", "" without CUDA
const char* version() noexcept;

// Threads used by the CPU kernels (default: std::thread::hardware_concurrency()).
void set_num_threads(int n);
int num_threads() noexcept;

}  // namespace drdc
