// Argument validation and device dispatch of the fused kernels.
#include "drdc/kernels.h"

#include <cmath>
#include <limits>
#include <string>

#include "backends.h"
#include "device_buffer.h"
#include "drdc/buffer.h"
#include "drdc/status.h"

namespace drdc {
namespace {

std::string dims_text(int B, int J, int K, int H, int W) {
  return "B=" + std::to_string(B) + " J=" + std::to_string(J) + " K=" + std::to_string(K) +
         " H=" + std::to_string(H) + " W=" + std::to_string(W);
}

// Element count of the largest buffer must fit the int64 index arithmetic.
void require_dims(int B, int J, int K, int H, int W) {
  require(B >= 1 && J >= 1 && K >= 1 && H >= 1 && W >= 1,
          "every dimension must be >= 1, got " + dims_text(B, J, K, H, W));
  const double elems = 6.0 * B * J * K * static_cast<double>(H) * W;
  require(elems < static_cast<double>(std::numeric_limits<int64_t>::max() / 2),
          "buffers too large: " + dims_text(B, J, K, H, W));
}

void require_ptr(const void* p, const char* name) {
  require(p != nullptr, std::string(name) + " is a null pointer");
}

void require_dtype(DType d) {
  require(d == DType::kFloat32 || d == DType::kFloat16, "net dtype must be float32 or float16");
}

// Labels are J×H×W sets in [0, K). On the CPU they are read here, once per call (the
// cost is one pass over J·H·W ints, small beside the kernel); CUDA labels live in device
// memory and are checked where they are made (the refiner, the Python ops).
void require_labels_in_range(const int32_t* labels, int J, int K, int H, int W) {
  const int64_t n = static_cast<int64_t>(J) * H * W;
  for (int64_t i = 0; i < n; ++i) {
    const int32_t v = labels[i];
    if (v < 0 || v >= K) {
      const int64_t hw = static_cast<int64_t>(H) * W;
      throw Error(Status::kInvalidArgument,
                  "labels: value " + std::to_string(v) + " at [" + std::to_string(i / hw) + ", " +
                      std::to_string(i % hw / W) + ", " + std::to_string(i % W) + "] outside [0, K=" +
                      std::to_string(K) + ")");
    }
  }
}

[[noreturn]] void bad_device() { throw Error(Status::kInvalidArgument, "device must be cpu or cuda"); }

}  // namespace

void validate(const PrepareArgs& a) {
  require_ptr(a.x, "x");
  require_ptr(a.labels, "labels");
  require_ptr(a.fill_noise, "fill_noise");
  require_ptr(a.eps0, "eps0");
  require_ptr(a.xt, "xt");
  require_ptr(a.unet_in, "unet_in");
  require_dims(a.B, a.J, a.K, a.H, a.W);
  require_dtype(a.net_dtype);
}

void validate(const StepArgs& a) {
  require_ptr(a.x, "x");
  require_ptr(a.labels, "labels");
  require_ptr(a.xt_in, "xt_in");
  require_ptr(a.eps, "eps");
  require_ptr(a.noise, "noise");
  require_ptr(a.xt_out, "xt_out");
  require_ptr(a.unet_in, "unet_in");
  require_ptr(a.heat, "heat");
  require(a.xt_out != a.xt_in, "xt_out must not alias xt_in (the step reads neighbours of xt_in)");
  require_dims(a.B, a.J, a.K, a.H, a.W);
  require_dtype(a.net_dtype);
  require(a.num_pool_factors >= 1 && a.num_pool_factors <= kMaxPoolFactors,
          "pool_factors: 1 to " + std::to_string(kMaxPoolFactors) + " factors, got " +
              std::to_string(a.num_pool_factors));
  for (int i = 0; i < a.num_pool_factors; ++i) {
    const int f = a.pool_factors[i];
    require(f >= 1 && a.H % f == 0 && a.W % f == 0,
            "pool factor " + std::to_string(f) + " must be >= 1 and divide H=" + std::to_string(a.H) +
                " and W=" + std::to_string(a.W));
  }
}

void validate(const FuseArgs& a) {
  require_ptr(a.heat, "heat");
  require_ptr(a.base, "base");
  require_ptr(a.final_map, "final");
  require_ptr(a.diff_map, "diff_map");
  require_ptr(a.base_up, "base_up");
  require_ptr(a.score, "score");
  require(a.B >= 1 && a.H >= 1 && a.W >= 1 && a.h >= 1 && a.w >= 1,
          "every dimension must be >= 1, got B=" + std::to_string(a.B) + " H=" + std::to_string(a.H) +
              " W=" + std::to_string(a.W) + " h=" + std::to_string(a.h) + " w=" + std::to_string(a.w));
  require(std::isfinite(a.inv_count) && a.inv_count > 0.f, "inv_count must be positive and finite");
  require(a.mean_filter >= 1 && a.mean_filter % 2 == 1,
          "mean_filter must be a positive odd number, got " + std::to_string(a.mean_filter));
  require(a.score_window >= 1 && a.score_window <= a.H && a.score_window <= a.W,
          "score_window " + std::to_string(a.score_window) + " must lie in [1, min(H, W)]");
}

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

void norm_guided(Device device, const NormGuidedArgs& args, void* stream) {
  validate(args);
  if (device == Device::kCPU) return detail::norm_guided_cpu(args);
  if (device == Device::kCUDA) {
    const ScopedDevice on(detail::gpu_of(args.x_a, "x_a"));
    return detail::norm_guided_cuda(args, stream);
  }
  bad_device();
}

void prepare(Device device, const PrepareArgs& args, void* stream) {
  validate(args);
  if (device == Device::kCPU) {
    require_labels_in_range(args.labels, args.J, args.K, args.H, args.W);
    return detail::prepare_cpu(args);
  }
  if (device == Device::kCUDA) {
    const ScopedDevice on(detail::gpu_of(args.x, "x"));  // launch on the GPU that holds the data
    return detail::prepare_cuda(args, stream);
  }
  bad_device();
}

void step(Device device, const StepArgs& args, void* stream) {
  validate(args);
  if (device == Device::kCPU) {
    require_labels_in_range(args.labels, args.J, args.K, args.H, args.W);
    return detail::step_cpu(args);
  }
  if (device == Device::kCUDA) {
    const ScopedDevice on(detail::gpu_of(args.x, "x"));
    return detail::step_cuda(args, stream);
  }
  bad_device();
}

void fuse(Device device, const FuseArgs& args, void* stream) {
  validate(args);
  if (device == Device::kCPU) return detail::fuse_cpu(args);
  if (device == Device::kCUDA) {
    require(args.W <= detail::kFuseMaxWidthCuda, "fuse on CUDA: width W=" + std::to_string(args.W) +
                                                     " exceeds the score kernel's shared-memory limit of " +
                                                     std::to_string(detail::kFuseMaxWidthCuda));
    const ScopedDevice on(detail::gpu_of(args.heat, "heat"));
    return detail::fuse_cuda(args, stream);
  }
  bad_device();
}

}  // namespace drdc
