// CUDA side of the analytic runner: ε = (x_t − √ᾱ_t·x)/√(1−ᾱ_t) per row.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "core/backends.h"
#include "core/cuda_check.h"
#include "core/kernel_math.h"

namespace drdc {
namespace detail {
namespace {

__device__ __forceinline__ float load(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ float load(const __half* p, int64_t i) { return __half2float(p[i]); }
__device__ __forceinline__ void store(float* p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void store(__half* p, int64_t i, float v) { p[i] = __float2half_rn(v); }

template <class Net>
__global__ void analytic_eps_kernel(AnalyticEpsArgs a, int64_t HW, int64_t total) {
  const Net* in = static_cast<const Net*>(a.input);
  Net* out = static_cast<Net*>(a.output);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total; idx += stride) {
    const int64_t n = idx / (3 * HW), cp = idx % (3 * HW);
    int t = static_cast<int>(a.timesteps[n]);
    t = t < 0 ? 0 : (t >= a.num_timesteps ? a.num_timesteps - 1 : t);
    const float xv = a.x[(n / a.rows_per_image) * 3 * HW + cp];
    const float xt = load(in, n * 6 * HW + cp);
    store(out, idx, div(sub(xt, mul(a.sqrt_ab[t], xv)), a.sqrt_1mab[t]));
  }
}

}  // namespace

void analytic_eps_cuda(const AnalyticEpsArgs& a, void* stream) {
  const int64_t HW = static_cast<int64_t>(a.h) * a.w;
  const int64_t total = static_cast<int64_t>(a.n) * 3 * HW;
  const int64_t want = (total + 255) / 256;
  const unsigned blocks = static_cast<unsigned>(want < (1 << 30) ? want : (1 << 30));
  if (a.dtype == DType::kFloat16)
    analytic_eps_kernel<__half><<<blocks, 256, 0, static_cast<cudaStream_t>(stream)>>>(a, HW, total);
  else
    analytic_eps_kernel<float><<<blocks, 256, 0, static_cast<cudaStream_t>(stream)>>>(a, HW, total);
  check_launch("analytic eps kernel");
}

}  // namespace detail
}  // namespace drdc
