// CUDA implementation of GLAD's per-row step (definition: drdc_trt/ops.py
// reference_glad_predict / reference_glad_update). glad_predict: one thread per
// element. glad_update: one thread per element of the active rows, then one per
// row for the row state (after the elements, on the same stream).
#include <cuda_runtime.h>

#include "core/backends.h"
#include "core/cuda_check.h"
#include "core/cuda_launch.cuh"
#include "glad/glad_math.h"

namespace drdc {
namespace detail {
namespace {

__global__ void glad_predict_kernel(GladPredictArgs a) {
  for (int64_t i = thread_index(); i < a.count; i += thread_stride()) {
    float g, in;
    glad_predict_one(a.x_t[i], a.x[i], a.noise[i], a.eps[i], a.sqrt_ab, a.sqrt_1mab, a.clip, &g, &in);
    a.x0_gen[i] = g, a.x0_in[i] = in;
  }
}

// One thread per element; each decides its row from the row state before the step (the
// row-state kernel below runs after this one on the same stream).
__global__ void glad_elements_kernel(GladUpdateArgs a, GladNextCoef c, int64_t HW, int64_t P, int64_t total) {
  for (int64_t i = thread_index(); i < total; i += thread_stride()) {
    const int64_t b = i / P;
    const GladRow r = glad_decide(a.done[b], a.triggered[b], a.trigger_kind[b], a.score[b], a.tau, a.t, a.min_step,
                                    a.last, a.fallback_stops);
    if (!r.active) continue;
    glad_update_one(r, a.x0_gen[i], a.x0_in[i], a.eps[i], a.w[b * HW + i % HW], c, a.x_t + i, a.recon + i);
  }
}

__global__ void glad_rows_kernel(GladUpdateArgs a) {
  for (int64_t b = thread_index(); b < a.B; b += thread_stride()) {
    const GladRow r = glad_decide(a.done[b], a.triggered[b], a.trigger_kind[b], a.score[b], a.tau, a.t, a.min_step,
                                    a.last, a.fallback_stops);
    glad_row_state(r, a.k, a.score[b], a.done + b, a.triggered + b, a.steps + b, a.trigger_step + b,
                   a.trigger_kind + b, a.max_score + b);
  }
}

}  // namespace

void glad_predict_cuda(const GladPredictArgs& a, void* stream) {
  glad_predict_kernel<<<blocks_for(a.count), kThreads, 0, as_stream(stream)>>>(a);
  check_launch("glad_predict kernel");
}

void glad_update_cuda(const GladUpdateArgs& a, void* stream) {
  const GladNextCoef c = glad_next_coef(a.ab_next);
  const int64_t HW = static_cast<int64_t>(a.H) * a.W, P = HW * a.C, total = P * a.B;
  glad_elements_kernel<<<blocks_for(total), kThreads, 0, as_stream(stream)>>>(a, c, HW, P, total);
  check_launch("glad_update elements kernel");
  glad_rows_kernel<<<blocks_for(a.B), kThreads, 0, as_stream(stream)>>>(a);
  check_launch("glad_update rows kernel");
}

}  // namespace detail
}  // namespace drdc
