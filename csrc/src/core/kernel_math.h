// Per-element math shared by the kernels of every family (the rounding primitives,
// clamp, x̂0 prediction, the √ᾱ·a + √(1−ᾱ)·b blend), used by the CPU (.cpp) and CUDA
// (.cu) implementations so that both compute one definition. The element math of
// one method lives beside its kernels: drdc/drdc_math.h (prepare/step/fuse),
// diffusionad/norm_guided_math.h, glad/glad_math.h.
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

}  // namespace detail
}  // namespace drdc
