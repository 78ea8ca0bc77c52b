// Argument validation and device dispatch of DiffusionAD's norm-guided combination.
#include "drdc/kernels.h"

#include <cmath>
#include <string>

#include "core/backends.h"
#include "core/device_buffer.h"
#include "core/kernel_checks.h"
#include "drdc/buffer.h"
#include "drdc/status.h"

namespace drdc {
using detail::bad_device;
using detail::require_ptr;

void validate(const NormGuidedArgs& a) {
  require_ptr(a.x_a, "x_a");
  require_ptr(a.e_a, "e_a");
  require_ptr(a.x_b, "x_b");
  require_ptr(a.e_b, "e_b");
  require_ptr(a.x0_g, "x0_g");
  require(a.count >= 1, "count must be >= 1, got " + std::to_string(a.count));
  require(std::isfinite(a.ab_a) && a.ab_a > 0.f && a.ab_a <= 1.f,
          "ab_a (alpha-bar at t_a) must lie in (0, 1], got " + std::to_string(a.ab_a));
  require(std::isfinite(a.ab_b) && a.ab_b > 0.f && a.ab_b <= 1.f,
          "ab_b (alpha-bar at t_b) must lie in (0, 1], got " + std::to_string(a.ab_b));
  require(std::isfinite(a.w), "w must be finite, got " + std::to_string(a.w));
}

void norm_guided(Device device, const NormGuidedArgs& args, void* stream) {
  validate(args);
  if (device == Device::kCPU) return detail::norm_guided_cpu(args);
  if (device == Device::kCUDA) {
    const ScopedDevice on(detail::gpu_of(args.x_a, "x_a"));
    return detail::norm_guided_cuda(args, stream);
  }
  bad_device();
}

}  // namespace drdc
