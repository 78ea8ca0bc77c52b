// Argument validation and device dispatch of DRDC's fused kernels (prepare, step, fuse).
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
