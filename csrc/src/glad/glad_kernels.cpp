// Argument validation and device dispatch of GLAD's per-row step (glad_predict, glad_update).
#include "drdc/kernels.h"

#include <cmath>
#include <limits>
#include <string>

#include "core/backends.h"
#include "core/device_buffer.h"
#include "core/kernel_checks.h"
#include "drdc/buffer.h"
#include "drdc/status.h"

namespace drdc {
using detail::bad_device;
using detail::require_ptr;

void validate(const GladPredictArgs& a) {
  require_ptr(a.x_t, "x_t");
  require_ptr(a.x, "x");
  require_ptr(a.noise, "noise");
  require_ptr(a.eps, "eps");
  require_ptr(a.x0_gen, "x0_gen");
  require_ptr(a.x0_in, "x0_in");
  require(a.count >= 1, "count must be >= 1, got " + std::to_string(a.count));
  require(std::isfinite(a.sqrt_ab) && a.sqrt_ab > 0.f && a.sqrt_ab <= 1.f,
          "sqrt_ab (sqrt of alpha-bar at t) must lie in (0, 1], got " + std::to_string(a.sqrt_ab));
  require(std::isfinite(a.sqrt_1mab) && a.sqrt_1mab >= 0.f && a.sqrt_1mab <= 1.f,
          "sqrt_1mab (sqrt of 1 - alpha-bar at t) must lie in [0, 1], got " + std::to_string(a.sqrt_1mab));
}

void validate(const GladUpdateArgs& a) {
  require_ptr(a.x0_gen, "x0_gen");
  require_ptr(a.x0_in, "x0_in");
  require_ptr(a.eps, "eps");
  require_ptr(a.w, "w");
  require_ptr(a.score, "score");
  require_ptr(a.x_t, "x_t");
  require_ptr(a.recon, "recon");
  require_ptr(a.done, "done");
  require_ptr(a.triggered, "triggered");
  require_ptr(a.steps, "steps");
  require_ptr(a.trigger_step, "trigger_step");
  require_ptr(a.trigger_kind, "trigger_kind");
  require_ptr(a.max_score, "max_score");
  require(a.B >= 1 && a.C >= 1 && a.H >= 1 && a.W >= 1,
          "every dimension must be >= 1, got B=" + std::to_string(a.B) + " C=" + std::to_string(a.C) +
              " H=" + std::to_string(a.H) + " W=" + std::to_string(a.W));
  const double elems = static_cast<double>(a.B) * a.C * a.H * a.W;
  require(elems < static_cast<double>(std::numeric_limits<int64_t>::max() / 2),
          "buffers too large: B=" + std::to_string(a.B) + " C=" + std::to_string(a.C) + " H=" +
              std::to_string(a.H) + " W=" + std::to_string(a.W));
  require(std::isfinite(a.ab_next) && a.ab_next > 0.0 && a.ab_next <= 1.0,
          "ab_next (alpha-bar of the next timestep, 1 past the last) must lie in (0, 1], got " +
              std::to_string(a.ab_next));
  require(!std::isnan(a.tau), "tau must not be NaN (+inf: no row triggers)");
  require(a.k >= 0, "k (step index) must be >= 0, got " + std::to_string(a.k));
  require(a.t >= 0, "t (timestep) must be >= 0, got " + std::to_string(a.t));
  require(a.min_step >= 0, "min_step must be >= 0, got " + std::to_string(a.min_step));
}

void glad_predict(Device device, const GladPredictArgs& args, void* stream) {
  validate(args);
  if (device == Device::kCPU) return detail::glad_predict_cpu(args);
  if (device == Device::kCUDA) {
    const ScopedDevice on(detail::gpu_of(args.x_t, "x_t"));
    return detail::glad_predict_cuda(args, stream);
  }
  bad_device();
}

void glad_update(Device device, const GladUpdateArgs& args, void* stream) {
  validate(args);
  if (device == Device::kCPU) return detail::glad_update_cpu(args);
  if (device == Device::kCUDA) {
    const ScopedDevice on(detail::gpu_of(args.x_t, "x_t"));
    return detail::glad_update_cuda(args, stream);
  }
  bad_device();
}

}  // namespace drdc
