// Per-element math of the fused kernels, shared by the CPU (.cpp) and CUDA
// (.cu) implementations so that both compute one definition.
//
// Each product, sum and quotient is rounded on its own, as the PyTorch
// reference does (one op per tensor expression): on the device the explicit
// __fmul_rn/__fadd_rn/... intrinsics keep nvcc from contracting a*b+c into an
// FMA; on the host the CPU sources are compiled with -ffp-contract=off.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define DRDC_HD __host__ __device__ __forceinline__
#else
#define DRDC_HD inline
#endif

#if defined(_MSC_VER) && !defined(__CUDACC__)
#define DRDC_RESTRICT __restrict
#else
#define DRDC_RESTRICT __restrict__
#endif

namespace drdc {
namespace detail {

DRDC_HD float mul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

DRDC_HD float add(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

DRDC_HD float sub(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}

DRDC_HD float div(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}

DRDC_HD float sqrt_rn(float a) {
#if defined(__CUDA_ARCH__)
  return __fsqrt_rn(a);
#else
  return std::sqrt(a);
#endif
}

// torch.clamp(v, -1, 1): NaN stays NaN.
DRDC_HD float clamp_unit(float v) { return v < -1.f ? -1.f : (v > 1.f ? 1.f : v); }

// x̂0 = (x_t − √(1−ᾱ)·ε̂)/√ᾱ, optionally clipped to [-1, 1].
DRDC_HD float predict_x0(float xt, float eps, float sqrt_ab, float sqrt_1mab, bool clip) {
  const float x0 = div(sub(xt, mul(sqrt_1mab, eps)), sqrt_ab);
  return clip ? clamp_unit(x0) : x0;
}

// √ᾱ·a + √(1−ᾱ)·b: the forward process (known part, x_{t0}) and the DDIM
// update of the unknown part (a = x̂0, b = ε̂) share this form.
DRDC_HD float blend(float sqrt_ab, float a, float sqrt_1mab, float b) {
  return add(mul(sqrt_ab, a), mul(sqrt_1mab, b));
}

// ‖(a, b, c)‖₂ summed in channel order, as .pow(2).sum(1).sqrt() does.
DRDC_HD float norm3(float a, float b, float c) {
  return sqrt_rn(add(add(mul(a, a), mul(b, b)), mul(c, c)));
}

// ‖mean over the f×f block containing (y, x) of (x − x̂0)‖₂ over the 3
// channels: the avg_pool2d(f) + nearest up-sampling term of the heat.
// diff(c, q) returns x − x̂0 at channel c, pixel index q = row·W + col.
#if defined(__CUDACC__)
#pragma nv_exec_check_disable  // Diff is a device lambda in the CUDA kernel, a host one on the CPU
#endif
template <class Diff>
DRDC_HD float pooled_norm(int y, int x, int W, int f, const Diff& diff) {
  const int y0 = (y / f) * f, x0 = (x / f) * f;
  const float area = static_cast<float>(f * f);
  float m[3];
  for (int c = 0; c < 3; ++c) {
    float s = 0.f;  // row-major window order, as avg_pool2d sums
    for (int yy = y0; yy < y0 + f; ++yy)
      for (int xx = x0; xx < x0 + f; ++xx) s = add(s, diff(c, static_cast<int64_t>(yy) * W + xx));
    m[c] = div(s, area);
  }
  return norm3(m[0], m[1], m[2]);
}

// Bilinear source taps of output index dst (align_corners=False), as
// torch's upsample_bilinear2d: src = max(0, scale·(dst + ½) − ½) with
// scale = in/out in float, i0 = ⌊src⌋, i1 = min(i0 + 1, in − 1).
struct LinearTap {
  int i0, i1;
  float l0, l1;
};

DRDC_HD LinearTap linear_tap(int dst, float scale, int in_size) {
  float src = sub(mul(scale, add(static_cast<float>(dst), 0.5f)), 0.5f);
  if (src < 0.f) src = 0.f;
  LinearTap t;
  t.i0 = static_cast<int>(floorf(src));
  if (t.i0 > in_size - 1) t.i0 = in_size - 1;
  float lam = sub(src, static_cast<float>(t.i0));
  lam = lam < 0.f ? 0.f : (lam > 1.f ? 1.f : lam);
  t.i1 = t.i0 < in_size - 1 ? t.i0 + 1 : t.i0;
  t.l1 = lam;
  t.l0 = sub(1.f, lam);
  return t;
}

// DiffusionAD's norm-guided combination of one element (kernels.h, NormGuidedArgs),
// in the reference's order: coefficients √ᾱ, √(1−ᾱ) and w·√(1−ᾱ_a) are formed once
// per call in float (sa, sma, sb, smb, wsma), each tensor op rounded on its own.
struct NormGuidedCoef {
  float sa, sma, sb, smb, wsma;
};

DRDC_HD NormGuidedCoef norm_guided_coef(float ab_a, float ab_b, float w) {
  const float sma = sqrt_rn(sub(1.f, ab_a));
  NormGuidedCoef k;
  k.sa = sqrt_rn(ab_a), k.sma = sma, k.sb = sqrt_rn(ab_b), k.smb = sqrt_rn(sub(1.f, ab_b)), k.wsma = mul(w, sma);
  return k;
}

DRDC_HD float norm_guided_x0(float xa, float ea, float xb, float eb, const NormGuidedCoef& k, bool clip,
                             float* x0_b_out) {
  float x0b = div(sub(xb, mul(k.smb, eb)), k.sb);
  if (clip) x0b = clamp_unit(x0b);
  *x0_b_out = x0b;
  const float xa_tilde = add(mul(k.sa, x0b), mul(k.sma, ea));
  const float e_hat = sub(ea, mul(k.wsma, sub(xa_tilde, xa)));
  const float x0g = div(sub(xa, mul(k.sma, e_hat)), k.sa);
  return clip ? clamp_unit(x0g) : x0g;
}

// GLAD's per-row step (kernels.h, GladPredictArgs / GladUpdateArgs).
// predict: x0_gen and x0_in of one element (sa = √ᾱ, sma = √(1−ᾱ)).
DRDC_HD void glad_predict_one(float xt, float x, float noise, float eps, float sa, float sma, bool clip,
                              float* x0_gen, float* x0_in) {
  *x0_gen = predict_x0(xt, eps, sa, sma, clip);
  *x0_in = predict_x0(blend(sa, x, sma, noise), eps, sa, sma, clip);
}

// The decisions of one row at one step, from its state before the step.
struct GladRow {
  bool active, checking, trig, fall, finish, moving;
};

DRDC_HD GladRow glad_decide(uint8_t done, uint8_t triggered, float score, float tau, int64_t t, int64_t min_step,
                            bool last) {
  GladRow r;
  r.active = done == 0;
  r.checking = r.active && triggered == 0;
  r.trig = r.checking && score > tau;  // NaN > τ is false: a NaN score never triggers
  r.fall = r.checking && !r.trig && t < min_step;
  r.finish = r.fall || (r.active && last);
  r.moving = r.active && !r.fall;
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
  const float x0 = r.trig ? add(mul(w, g), mul(sub(1.f, w), in)) : g;
  if (r.moving) *xt = c.past_end ? x0 : add(mul(c.s, x0), mul(c.sm, eps));
  if (r.fall)
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

// Row n = (b·J + j)·K + k.
struct RowIndex {
  int b, j, k;
};

DRDC_HD RowIndex row_index(int64_t n, int J, int K) {
  RowIndex r;
  r.k = static_cast<int>(n % K);
  const int64_t bj = n / K;
  r.j = static_cast<int>(bj % J);
  r.b = static_cast<int>(bj / J);
  return r;
}

// Float max through integer atomics: non-negative floats order like their
// int bits (atomicMax on int), negative ones inversely to their unsigned bits
// (atomicMin on unsigned). −0.0 is taken as +0.0 first: its int bits are
// INT_MIN, which would lose even to −inf. A NaN becomes 0x7fffffff, which
// both orders then keep (torch.amax propagates NaN).
struct FloatMaxOp {
  bool min_unsigned;  // false: atomicMax on int bits
  uint32_t bits;
};

DRDC_HD FloatMaxOp float_max_op(float v) {
  FloatMaxOp op;
  if (v != v) {
    op.min_unsigned = false;
    op.bits = 0x7fffffffu;
    return op;
  }
  if (v == 0.f) v = 0.f;  // −0.0 → +0.0
  uint32_t bits;
  memcpy(&bits, &v, sizeof(bits));
  op.min_unsigned = v < 0.f;
  op.bits = bits;
  return op;
}

}  // namespace detail
}  // namespace drdc
