// CPU implementation of GLAD's per-row step (definition: drdc_trt/ops.py
// reference_glad_predict / reference_glad_update); every output element is
// written by one worker, so results do not depend on the thread count.
#include <vector>

#include "core/backends.h"
#include "core/parallel.h"
#include "glad/glad_math.h"

namespace drdc {
namespace detail {

void glad_predict_cpu(const GladPredictArgs& a) {
  const float sa = a.sqrt_ab, sma = a.sqrt_1mab;
  const bool clip = a.clip;
  parallel_for(a.count, 4096, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      float g, in;
      glad_predict_one(a.x_t[i], a.x[i], a.noise[i], a.eps[i], sa, sma, clip, &g, &in);
      a.x0_gen[i] = g, a.x0_in[i] = in;
    }
  });
}

// Decisions of every row first (from the state before the step), then the elements of the
// active rows in parallel over (row, channel) planes, then the rows' scalar state.
void glad_update_cpu(const GladUpdateArgs& a) {
  std::vector<GladRow> rows(static_cast<size_t>(a.B));
  for (int b = 0; b < a.B; ++b)
    rows[static_cast<size_t>(b)] =
        glad_decide(a.done[b], a.triggered[b], a.trigger_kind[b], a.score[b], a.tau, a.t, a.min_step, a.last,
                    a.fallback_stops);
  const GladNextCoef coef = glad_next_coef(a.ab_next);
  const int64_t HW = static_cast<int64_t>(a.H) * a.W;
  parallel_for(static_cast<int64_t>(a.B) * a.C, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t plane = lo; plane < hi; ++plane) {
      const int64_t b = plane / a.C;
      const GladRow& r = rows[static_cast<size_t>(b)];
      if (!r.active) continue;  // a finished row is not written at all
      const int64_t off = plane * HW;
      const float* w = a.w + b * HW;
      for (int64_t p = 0; p < HW; ++p)
        glad_update_one(r, a.x0_gen[off + p], a.x0_in[off + p], a.eps[off + p], w[p], coef, a.x_t + off + p,
                        a.recon + off + p);
    }
  });
  for (int b = 0; b < a.B; ++b)
    glad_row_state(rows[static_cast<size_t>(b)], a.k, a.score[b], a.done + b, a.triggered + b, a.steps + b,
                   a.trigger_step + b, a.trigger_kind + b, a.max_score + b);
}

}  // namespace detail
}  // namespace drdc
