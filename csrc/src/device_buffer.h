// The refiner's buffers are public drdc::Buffer objects; these helpers
// enqueue (CUDA) or perform (CPU) fills and copies on them.
#pragma once

#include <cstddef>

#include "drdc/buffer.h"

namespace drdc {
namespace detail {

void zero_async(Device device, void* ptr, std::size_t bytes, void* stream);
void copy_async(Device device, void* dst, const void* src, std::size_t bytes, void* stream);

}  // namespace detail
}  // namespace drdc
