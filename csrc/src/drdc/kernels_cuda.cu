// CUDA implementation of DRDC's fused kernels (definition: drdc_trt/ops.py).
//
// prepare: one thread per (row, pixel). step: one thread per (image, pixel)
// looping over the J·K rows of that image, so the heat accumulation of a
// pixel happens in one thread and needs no atomics; consecutive threads read
// consecutive pixels of every plane (coalesced). fuse: one thread per
// (image, pixel) for the maps, then one block per (image, window row) for the
// score with a shared-memory column sum and one atomic max per block.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <string>

#include "core/backends.h"
#include "core/cuda_check.h"
#include "core/cuda_launch.cuh"
#include "core/kernel_math.h"
#include "drdc/drdc_math.h"

namespace drdc {
namespace detail {
namespace {

// Network buffers: float or half.
__device__ __forceinline__ float load(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ float load(const __half* p, int64_t i) { return __half2float(p[i]); }
__device__ __forceinline__ void store(float* p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void store(__half* p, int64_t i, float v) { p[i] = __float2half_rn(v); }

template <class Net>
__global__ void prepare_kernel(PrepareArgs a, int64_t HW, int64_t total) {
  Net* unet = static_cast<Net*>(a.unet_in);
  for (int64_t idx = thread_index(); idx < total; idx += thread_stride()) {
    const int64_t n = idx / HW, p = idx % HW;
    const RowIndex r = row_index(n, a.J, a.K);
    const bool known = a.labels[r.j * HW + p] != r.k;
    for (int c = 0; c < 3; ++c) {
      const int64_t i = (n * 3 + c) * HW + p;
      const float cond = known ? a.x[(static_cast<int64_t>(r.b) * 3 + c) * HW + p] : a.fill_noise[i];
      const float xt = blend(a.sqrt_ab, cond, a.sqrt_1mab, a.eps0[i]);
      a.xt[i] = xt;
      store(unet, (n * 6 + c) * HW + p, xt);
      store(unet, (n * 6 + 3 + c) * HW + p, cond);
    }
  }
}

template <class Net>
__global__ void step_kernel(StepArgs a, int64_t HW, int64_t total) {
  const Net* eps = static_cast<const Net*>(a.eps);
  Net* unet = static_cast<Net*>(a.unet_in);
  const float an = a.sqrt_ab_next, sn = a.sqrt_1mab_next;
  for (int64_t idx = thread_index(); idx < total; idx += thread_stride()) {
    const int b = static_cast<int>(idx / HW);
    const int64_t p = idx % HW;
    const int y = static_cast<int>(p / a.W), xc = static_cast<int>(p % a.W);
    const float* xb = a.x + static_cast<int64_t>(b) * 3 * HW;
    float total_heat = 0.f;
    for (int j = 0; j < a.J; ++j) {
      const int32_t lab = a.labels[j * HW + p];
      for (int k = 0; k < a.K; ++k) {
        const int64_t n = (static_cast<int64_t>(b) * a.J + j) * a.K + k;
        const bool known = lab != k;
        float d[3];
        for (int c = 0; c < 3; ++c) {
          const int64_t i = (n * 3 + c) * HW + p;
          const float e = load(eps, i);
          const float x0 = predict_x0(a.xt_in[i], e, a.sqrt_ab, a.sqrt_1mab, a.clip_x0);
          const float xv = xb[c * HW + p];
          const float v = known ? blend(an, xv, sn, a.noise[i]) : blend(an, x0, sn, e);
          a.xt_out[i] = v;
          store(unet, (n * 6 + c) * HW + p, v);
          d[c] = sub(xv, x0);
        }
        if (known) continue;
        const float* xt_row = a.xt_in + n * 3 * HW;
        const Net* eps_row = eps + n * 3 * HW;
        // x̂0 of the block neighbours is recomputed from xt_in/eps (inputs of
        // this step, never written by it), so threads need no synchronisation.
        auto diff = [&](int c, int64_t q) {
          const int64_t i = c * HW + q;
          return sub(xb[i], predict_x0(xt_row[i], load(eps_row, i), a.sqrt_ab, a.sqrt_1mab, a.clip_x0));
        };
        float h = 0.f;
        for (int fi = 0; fi < a.num_pool_factors; ++fi) {
          const int f = a.pool_factors[fi];
          h = add(h, f == 1 ? norm3(d[0], d[1], d[2]) : pooled_norm(y, xc, a.W, f, diff));
        }
        total_heat = add(total_heat, h);
      }
    }
    float* hp = a.heat + static_cast<int64_t>(b) * HW + p;
    *hp = add(*hp, total_heat);
  }
}

__global__ void fuse_map_kernel(FuseArgs a, int64_t HW, int64_t total, float scale_y, float scale_x,
                                float lam, float olam) {
  for (int64_t idx = thread_index(); idx < total; idx += thread_stride()) {
    const int b = static_cast<int>(idx / HW);
    const int64_t p = idx % HW;
    const int y = static_cast<int>(p / a.W), x = static_cast<int>(p % a.W);
    const float* heat = a.heat + static_cast<int64_t>(b) * HW;
    const int r = a.mean_filter / 2;
    const int y0 = max(0, y - r), y1 = min(a.H, y + r + 1);
    const int x0 = max(0, x - r), x1 = min(a.W, x + r + 1);
    float s = 0.f;
    for (int yy = y0; yy < y1; ++yy)
      for (int xx = x0; xx < x1; ++xx) s = add(s, mul(heat[static_cast<int64_t>(yy) * a.W + xx], a.inv_count));
    const float d = div(s, static_cast<float>((y1 - y0) * (x1 - x0)));
    const float* base = a.base + static_cast<int64_t>(b) * a.h * a.w;
    const LinearTap ty = linear_tap(y, scale_y, a.h);
    const LinearTap tx = linear_tap(x, scale_x, a.w);
    const float* r0 = base + static_cast<int64_t>(ty.i0) * a.w;
    const float* r1 = base + static_cast<int64_t>(ty.i1) * a.w;
    const float t0 = add(mul(r0[tx.i0], tx.l0), mul(r0[tx.i1], tx.l1));
    const float t1 = add(mul(r1[tx.i0], tx.l0), mul(r1[tx.i1], tx.l1));
    const float u = add(mul(t0, ty.l0), mul(t1, ty.l1));
    const int64_t o = static_cast<int64_t>(b) * HW + p;
    a.diff_map[o] = d;
    a.base_up[o] = u;
    a.final_map[o] = add(div(mul(lam, sub(d, a.mu_d)), a.sd_d), div(mul(olam, sub(u, a.mu_b)), a.sd_b));
    if (p == 0) a.score[b] = -INFINITY;  // identity of the max taken by score_kernel
  }
}

// NaN-propagating max, as torch.amax.
__device__ __forceinline__ float max_nan(float a, float b) { return (isnan(a) || a >= b) ? a : b; }

// Float max through integer atomics (the ordering is drdc_math.h's float_max_op).
__device__ void atomic_max_float(float* addr, float v) {
  const FloatMaxOp op = float_max_op(v);
  if (op.min_unsigned)
    atomicMin(reinterpret_cast<unsigned int*>(addr), op.bits);
  else
    atomicMax(reinterpret_cast<int*>(addr), static_cast<int>(op.bits));
}

__global__ void score_kernel(const float* __restrict__ fin, float* score, int H, int W, int win) {
  extern __shared__ float col[];  // W column sums of rows y .. y+win-1
  const int y = blockIdx.x, b = blockIdx.y;
  const float* img = fin + static_cast<int64_t>(b) * H * W;
  for (int x = threadIdx.x; x < W; x += blockDim.x) {
    float s = 0.f;
    for (int dy = 0; dy < win; ++dy) s += img[static_cast<int64_t>(y + dy) * W + x];
    col[x] = s;
  }
  __syncthreads();
  const float area = static_cast<float>(win) * static_cast<float>(win);
  float best = -INFINITY;
  for (int x = threadIdx.x; x + win <= W; x += blockDim.x) {
    float s = 0.f;
    for (int dx = 0; dx < win; ++dx) s += col[x + dx];
    best = max_nan(best, s / area);
  }
  for (int off = 16; off > 0; off >>= 1) best = max_nan(best, __shfl_down_sync(0xffffffffu, best, off));
  __shared__ float warp_best[kScoreWarpSlots];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_best[warp] = best;
  __syncthreads();
  if (warp == 0) {
    const int warps = (blockDim.x + 31) / 32;
    best = lane < warps ? warp_best[lane] : -INFINITY;
    for (int off = 16; off > 0; off >>= 1) best = max_nan(best, __shfl_down_sync(0xffffffffu, best, off));
    if (lane == 0) atomic_max_float(score + b, best);
  }
}

}  // namespace

void prepare_cuda(const PrepareArgs& a, void* stream) {
  const int64_t HW = static_cast<int64_t>(a.H) * a.W;
  const int64_t total = static_cast<int64_t>(a.B) * a.J * a.K * HW;
  if (a.net_dtype == DType::kFloat16)
    prepare_kernel<__half><<<blocks_for(total), kThreads, 0, as_stream(stream)>>>(a, HW, total);
  else
    prepare_kernel<float><<<blocks_for(total), kThreads, 0, as_stream(stream)>>>(a, HW, total);
  check_launch("prepare kernel");
}

void step_cuda(const StepArgs& a, void* stream) {
  const int64_t HW = static_cast<int64_t>(a.H) * a.W;
  const int64_t total = static_cast<int64_t>(a.B) * HW;
  if (a.net_dtype == DType::kFloat16)
    step_kernel<__half><<<blocks_for(total), kThreads, 0, as_stream(stream)>>>(a, HW, total);
  else
    step_kernel<float><<<blocks_for(total), kThreads, 0, as_stream(stream)>>>(a, HW, total);
  check_launch("step kernel");
}

void fuse_cuda(const FuseArgs& a, void* stream) {
  if (a.W > kFuseMaxWidthCuda)  // also checked by fuse(); kept for direct callers
    throw Error(Status::kInvalidArgument,
                "fuse on CUDA: width " + std::to_string(a.W) + " exceeds " + std::to_string(kFuseMaxWidthCuda));
  const int64_t HW = static_cast<int64_t>(a.H) * a.W;
  const int64_t total = static_cast<int64_t>(a.B) * HW;
  const float scale_y = static_cast<float>(a.h) / static_cast<float>(a.H);
  const float scale_x = static_cast<float>(a.w) / static_cast<float>(a.W);
  fuse_map_kernel<<<blocks_for(total), kThreads, 0, as_stream(stream)>>>(
      a, HW, total, scale_y, scale_x, static_cast<float>(a.lam), static_cast<float>(1.0 - a.lam));
  check_launch("fuse map kernel");
  const dim3 grid(static_cast<unsigned>(a.H - a.score_window + 1), static_cast<unsigned>(a.B));
  score_kernel<<<grid, kThreads, static_cast<size_t>(a.W) * sizeof(float), as_stream(stream)>>>(
      a.final_map, a.score, a.H, a.W, a.score_window);
  check_launch("score kernel");
}

}  // namespace detail
}  // namespace drdc
