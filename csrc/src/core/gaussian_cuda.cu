// CUDA side of the counter-based Gaussian generator (see philox.h).
#include <cuda_runtime.h>

#include "core/backends.h"
#include "core/cuda_check.h"
#include "core/philox.h"

namespace drdc {
namespace detail {
namespace {

__global__ void gaussian_kernel(float* out, uint64_t count, uint64_t seed, uint64_t offset) {
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  for (uint64_t i = static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += stride)
    out[i] = static_cast<float>(gaussian_at(seed, offset, i));
}

}  // namespace

void gaussian_cuda(float* out, std::size_t count, uint64_t seed, uint64_t offset, void* stream) {
  constexpr unsigned kThreads = 256;
  const uint64_t want = (count + kThreads - 1) / kThreads;
  const unsigned blocks = static_cast<unsigned>(want < 65536 ? want : 65536);
  gaussian_kernel<<<blocks, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(out, count, seed, offset);
  check_launch("gaussian kernel");
}

}  // namespace detail
}  // namespace drdc
