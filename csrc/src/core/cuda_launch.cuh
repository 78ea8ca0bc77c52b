// Launch helpers of the CUDA kernels of every family (.cu files only): the block
// size, grid-stride indices, the grid size for a number of work items, and the
// stream handle behind the core's void* streams.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace drdc {
namespace detail {

constexpr int kThreads = 256;

__device__ __forceinline__ int64_t thread_index() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t thread_stride() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

inline unsigned blocks_for(int64_t total) {
  const int64_t b = (total + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b < (1 << 30) ? b : (1 << 30));  // grid-stride loops cover the rest
}

inline cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

}  // namespace detail
}  // namespace drdc
