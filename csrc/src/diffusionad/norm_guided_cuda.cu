// CUDA implementation of DiffusionAD's norm-guided combination (definition:
// drdc_trt/ops.py reference_norm_guided): one thread per element.
#include <cuda_runtime.h>

#include "core/backends.h"
#include "core/cuda_check.h"
#include "core/cuda_launch.cuh"
#include "diffusionad/norm_guided_math.h"

namespace drdc {
namespace detail {
namespace {

__global__ void norm_guided_kernel(NormGuidedArgs a, NormGuidedCoef k) {
  for (int64_t i = thread_index(); i < a.count; i += thread_stride()) {
    float x0b;
    a.x0_g[i] = norm_guided_x0(a.x_a[i], a.e_a[i], a.x_b[i], a.e_b[i], k, a.clamp, &x0b);
    if (a.x0_b) a.x0_b[i] = x0b;
  }
}

}  // namespace

void norm_guided_cuda(const NormGuidedArgs& a, void* stream) {
  // coefficients on the host, in float, as the CPU kernel forms them
  const NormGuidedCoef k = norm_guided_coef(a.ab_a, a.ab_b, a.w);
  norm_guided_kernel<<<blocks_for(a.count), kThreads, 0, as_stream(stream)>>>(a, k);
  check_launch("norm_guided kernel");
}

}  // namespace detail
}  // namespace drdc
