// Per-element math of DiffusionAD's norm-guided combination (diffusionad/norm_guided_*.cpp|cu),
// shared by the CPU and CUDA implementations. The rounding rules are core/kernel_math.h's.
#pragma once

#include "core/kernel_math.h"

namespace drdc {
namespace detail {

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

}  // namespace detail
}  // namespace drdc
