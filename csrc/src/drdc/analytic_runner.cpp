#include "drdc/analytic_runner.h"

#include <string>
#include <vector>

#include "core/backends.h"
#include "core/device_buffer.h"
#include "core/half.h"
#include "core/kernel_math.h"
#include "drdc/status.h"

namespace drdc {

struct AnalyticRunner::Tables {
  Buffer sqrt_ab, sqrt_1mab;
  int num_timesteps = 0;
};

AnalyticRunner::AnalyticRunner(Device device, DType dtype, const float* x, int batch, int rows_per_image,
                               int height, int width, const Schedule& schedule)
    : device_(device), dtype_(dtype), x_(x), batch_(batch), rows_per_image_(rows_per_image),
      height_(height), width_(width), tables_(new Tables) {
  require(x != nullptr, "analytic runner: x is a null pointer");
  require(batch >= 1 && rows_per_image >= 1 && height >= 1 && width >= 1,
          "analytic runner: batch, rows_per_image, height and width must be >= 1");
  const int T = schedule.num_train_timesteps();
  std::vector<float> a(static_cast<size_t>(T)), s(static_cast<size_t>(T));
  for (int t = 0; t < T; ++t) {
    a[static_cast<size_t>(t)] = static_cast<float>(schedule.sqrt_alpha_bar(t));
    s[static_cast<size_t>(t)] = static_cast<float>(schedule.sqrt_one_minus_alpha_bar(t));
  }
  tables_->num_timesteps = T;
  tables_->sqrt_ab = Buffer(device, a.size() * sizeof(float));
  tables_->sqrt_1mab = Buffer(device, s.size() * sizeof(float));
  tables_->sqrt_ab.upload(a.data(), a.size() * sizeof(float));
  tables_->sqrt_1mab.upload(s.data(), s.size() * sizeof(float));
}

AnalyticRunner::~AnalyticRunner() = default;

void AnalyticRunner::run(const void* input, const float* timesteps, void* output, int n, int h, int w,
                         void* stream) {
  require(input && timesteps && output, "analytic runner: null input, timesteps or output");
  require(h == height_ && w == width_, "analytic runner: built for " + std::to_string(height_) + "x" +
                                           std::to_string(width_) + ", called with " + std::to_string(h) +
                                           "x" + std::to_string(w));
  require(n >= 1 && n <= batch_ * rows_per_image_ && n % rows_per_image_ == 0,
          "analytic runner: n=" + std::to_string(n) + " rows do not fit batch " + std::to_string(batch_) +
              " x rows_per_image " + std::to_string(rows_per_image_));
  detail::AnalyticEpsArgs a;
  a.input = input;
  a.timesteps = timesteps;
  a.output = output;
  a.x = x_;
  a.sqrt_ab = static_cast<const float*>(tables_->sqrt_ab.data());
  a.sqrt_1mab = static_cast<const float*>(tables_->sqrt_1mab.data());
  a.num_timesteps = tables_->num_timesteps;
  a.n = n;
  a.h = h;
  a.w = w;
  a.rows_per_image = rows_per_image_;
  a.dtype = dtype_;
  if (device_ == Device::kCUDA) return detail::analytic_eps_cuda(a, stream);
  detail::analytic_eps_cpu(a);
}

namespace detail {

void analytic_eps_cpu(const AnalyticEpsArgs& a) {
  const int64_t HW = static_cast<int64_t>(a.h) * a.w;
  for (int64_t n = 0; n < a.n; ++n) {
    int t = static_cast<int>(a.timesteps[n]);
    t = t < 0 ? 0 : (t >= a.num_timesteps ? a.num_timesteps - 1 : t);
    const float* xb = a.x + (n / a.rows_per_image) * 3 * HW;
    for (int64_t cp = 0; cp < 3 * HW; ++cp) {
      float xt;
      if (a.dtype == DType::kFloat16)
        xt = half_bits_to_float(static_cast<const uint16_t*>(a.input)[n * 6 * HW + cp]);
      else
        xt = static_cast<const float*>(a.input)[n * 6 * HW + cp];
      const float e = div(sub(xt, mul(a.sqrt_ab[t], xb[cp])), a.sqrt_1mab[t]);
      if (a.dtype == DType::kFloat16)
        static_cast<uint16_t*>(a.output)[n * 3 * HW + cp] = float_to_half_bits(e);
      else
        static_cast<float*>(a.output)[n * 3 * HW + cp] = e;
    }
  }
}

}  // namespace detail
}  // namespace drdc
