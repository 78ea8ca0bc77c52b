// Per-element math of GLAD's per-row step (glad/glad_*.cpp|cu), shared by the CPU and
// CUDA implementations. The rounding rules are core/kernel_math.h's.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/kernel_math.h"

namespace drdc {
namespace detail {

// GLAD's per-row step (kernels.h, GladPredictArgs / GladUpdateArgs).
// predict: x0_gen and x0_in of one element (sa = √ᾱ, sma = √(1−ᾱ)).
DRDC_HD void glad_predict_one(float xt, float x, float noise, float eps, float sa, float sma, bool clip,
                              float* x0_gen, float* x0_in) {
  *x0_gen = predict_x0(xt, eps, sa, sma, clip);
  *x0_in = predict_x0(blend(sa, x, sma, noise), eps, sa, sma, clip);
}

// The decisions of one row at one step, from its state before the step. A row looks for its
// step until it triggers or falls back; with fallback_stops a fallen-back row is done at once
// (recon = x0_in), else it goes on to t = 0 from x̂0 = x0_in (the authors' scheduler).
struct GladRow {
  bool active, checking, trig, fall, finish, moving;
};

DRDC_HD GladRow glad_decide(uint8_t done, uint8_t triggered, int64_t kind, float score, float tau, int64_t t,
                            int64_t min_step, bool last, bool fallback_stops) {
  GladRow r;
  r.active = done == 0;
  r.checking = r.active && triggered == 0 && kind != 2;  // 2: fell back at an earlier step
  r.trig = r.checking && score > tau;  // NaN > τ is false: a NaN score never triggers
  r.fall = r.checking && !r.trig && t < min_step;
  const bool stop = r.fall && fallback_stops;
  r.finish = stop || (r.active && last);
  r.moving = r.active && !stop;
  return r;
}

// DDIM (η = 0) to the next timestep: √ᾱ'·x0 + √(1−ᾱ')·ε̂, x0 itself past the end.
// The factors are Python-float expressions in the reference (ab_next ** 0.5), which torch
// rounds to float: formed on the host in double with pow, then rounded.
struct GladNextCoef {
  float s, sm;
  bool past_end;
};

inline GladNextCoef glad_next_coef(double ab_next) {
  GladNextCoef c;
  c.past_end = ab_next >= 1.0;
  c.s = static_cast<float>(std::pow(ab_next, 0.5));
  c.sm = static_cast<float>(std::pow(1.0 - ab_next, 0.5));
  return c;
}

// One element of an active row: writes x_t and recon as the rule says (kernels.h).
DRDC_HD void glad_update_one(const GladRow& r, float g, float in, float eps, float w, const GladNextCoef& c,
                             float* xt, float* recon) {
  const float x0 = r.trig ? add(mul(w, g), mul(sub(1.f, w), in)) : (r.fall ? in : g);
  if (r.moving) *xt = c.past_end ? x0 : add(mul(c.s, x0), mul(c.sm, eps));
  if (r.fall && !r.moving)
    *recon = in;
  else if (r.moving && r.finish)
    *recon = x0;
}

// torch.maximum: NaN when either is NaN, else the larger.
DRDC_HD float max_propagate_nan(float a, float b) {
  if (a != a) return a;
  if (b != b) return b;
  return a < b ? b : a;
}

// The row's scalar state after its elements (done rows are left as they are).
DRDC_HD void glad_row_state(const GladRow& r, int64_t k, float score, uint8_t* done, uint8_t* triggered,
                            int64_t* steps, int64_t* trigger_step, int64_t* trigger_kind, float* max_score) {
  if (!r.active) return;
  *steps += 1;
  if (r.trig || r.fall) {
    *trigger_step = k;
    *trigger_kind = r.trig ? 1 : 2;
  }
  if (r.checking) *max_score = max_propagate_nan(*max_score, score);
  if (r.trig) *triggered = 1;
  if (r.finish) *done = 1;
}

}  // namespace detail
}  // namespace drdc
