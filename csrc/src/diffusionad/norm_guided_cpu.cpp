// CPU implementation of DiffusionAD's norm-guided combination (definition:
// drdc_trt/ops.py reference_norm_guided); element-wise, so results do not depend
// on the thread count.
#include "core/backends.h"
#include "core/parallel.h"
#include "diffusionad/norm_guided_math.h"

namespace drdc {
namespace detail {

void norm_guided_cpu(const NormGuidedArgs& a) {
  const NormGuidedCoef k = norm_guided_coef(a.ab_a, a.ab_b, a.w);
  const bool clip = a.clamp;
  parallel_for(a.count, 4096, [&](int64_t lo, int64_t hi) {
    float x0b;
    for (int64_t i = lo; i < hi; ++i) {
      a.x0_g[i] = norm_guided_x0(a.x_a[i], a.e_a[i], a.x_b[i], a.e_b[i], k, clip, &x0b);
      if (a.x0_b) a.x0_b[i] = x0b;
    }
  });
}

}  // namespace detail
}  // namespace drdc
