// Philox4x32-10 and the Box–Muller map of the counter-based Gaussian
// generator, shared by the CPU and CUDA implementations.
//
// Element i of stream `offset` under `seed`: counter = (i/2 low, i/2 high,
// offset low, offset high), key = (seed low, seed high); the four output
// words make two 53-bit uniforms u1 ∈ (0, 1], u2 ∈ [0, 1); the pair is
// r·cos θ, r·sin θ with r = √(−2 ln u1), θ = 2π·u2 (double), element i
// takes the cosine branch when even, the sine branch when odd.
#pragma once

#include <cstdint>

#include "core/kernel_math.h"  // DRDC_HD

namespace drdc {
namespace detail {

DRDC_HD void philox_round(uint32_t c[4], const uint32_t k[2]) {
  const uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c[0];
  const uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * c[2];
  const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
  const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
  const uint32_t c1 = c[1], c3 = c[3];
  c[0] = hi1 ^ c1 ^ k[0];
  c[1] = lo1;
  c[2] = hi0 ^ c3 ^ k[1];
  c[3] = lo0;
}

DRDC_HD void philox4x32_10(const uint32_t counter[4], const uint32_t key[2], uint32_t out[4]) {
  uint32_t c[4] = {counter[0], counter[1], counter[2], counter[3]};
  uint32_t k[2] = {key[0], key[1]};
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      k[0] += 0x9E3779B9u;
      k[1] += 0xBB67AE85u;
    }
    philox_round(c, k);
  }
  for (int i = 0; i < 4; ++i) out[i] = c[i];
}

DRDC_HD double gaussian_at(uint64_t seed, uint64_t offset, uint64_t index) {
  const uint64_t pair = index >> 1;
  const uint32_t counter[4] = {static_cast<uint32_t>(pair), static_cast<uint32_t>(pair >> 32),
                               static_cast<uint32_t>(offset), static_cast<uint32_t>(offset >> 32)};
  const uint32_t key[2] = {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)};
  uint32_t r[4];
  philox4x32_10(counter, key, r);
  const double k53 = 1.0 / 9007199254740992.0;  // 2^-53
  const uint64_t a = (static_cast<uint64_t>(r[1]) << 32 | r[0]) >> 11;
  const uint64_t b = (static_cast<uint64_t>(r[3]) << 32 | r[2]) >> 11;
  const double u1 = static_cast<double>(a + 1) * k53;  // (0, 1]: log never sees 0
  const double u2 = static_cast<double>(b) * k53;
  const double radius = sqrt(-2.0 * log(u1));
  const double theta = 6.283185307179586476925286766559 * u2;
  return (index & 1) ? radius * sin(theta) : radius * cos(theta);
}

}  // namespace detail
}  // namespace drdc
