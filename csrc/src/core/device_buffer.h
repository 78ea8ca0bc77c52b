// The refiner's buffers are public drdc::Buffer objects; these helpers
// enqueue (CUDA) or perform (CPU) fills and copies on them.
#pragma once

#include <cstddef>

#include "drdc/buffer.h"

namespace drdc {
namespace detail {

void zero_async(Device device, void* ptr, std::size_t bytes, void* stream);
void copy_async(Device device, void* dst, const void* src, std::size_t bytes, void* stream);

// The GPU holding `ptr`, for a CUDA call (`name` for the error): host memory
// there would fault inside the kernel and leave the CUDA context unusable for
// the rest of the process. Without CUDA or a device: -1, and the launch says why.
int gpu_of(const void* ptr, const char* name);

}  // namespace detail
}  // namespace drdc
