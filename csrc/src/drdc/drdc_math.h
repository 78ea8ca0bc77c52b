// Per-element math of DRDC's fused kernels (prepare / step / fuse, drdc/kernels_*.cpp|cu):
// the heat's channel norm and block means, the bilinear taps of the fusion, the row index
// and the float max of the score; shared by the CPU and CUDA implementations. The rounding
// rules are core/kernel_math.h's.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "core/kernel_math.h"

namespace drdc {
namespace detail {

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
