#include "drdc/schedule.h"

#include <cmath>
#include <string>
#include <utility>

#include "drdc/status.h"

namespace drdc {

Schedule Schedule::linear(int num_train_timesteps, double beta_start, double beta_end) {
  require(num_train_timesteps >= 1, "num_train_timesteps must be >= 1");
  // numpy.linspace: β_i = i·step + start with step = (end − start)/(T − 1), and
  // the last value set to end exactly; then a sequential cumulative product.
  const int T = num_train_timesteps;
  std::vector<double> ab(static_cast<size_t>(T));
  const double step = T > 1 ? (beta_end - beta_start) / static_cast<double>(T - 1) : 0.0;
  double acc = 1.0;
  for (int i = 0; i < T; ++i) {
    double beta = static_cast<double>(i) * step;
    beta += beta_start;
    if (T > 1 && i == T - 1) beta = beta_end;
    if (T == 1) beta = beta_start;
    acc *= (1.0 - beta);
    ab[static_cast<size_t>(i)] = acc;
  }
  return Schedule(std::move(ab));
}

Schedule::Schedule(std::vector<double> alphas_cumprod) : alphas_cumprod_(std::move(alphas_cumprod)) {
  require(!alphas_cumprod_.empty(), "schedule: alphas_cumprod is empty");
  for (double a : alphas_cumprod_)
    require(a > 0.0 && a <= 1.0, "schedule: every alpha_bar must lie in (0, 1]");
}

double Schedule::alpha_bar(int t) const {
  if (t < 0) return 1.0;
  require(t < num_train_timesteps(),
          "timestep " + std::to_string(t) + " outside [0, " + std::to_string(num_train_timesteps()) + ")");
  return alphas_cumprod_[static_cast<size_t>(t)];
}

double Schedule::sqrt_alpha_bar(int t) const { return std::sqrt(alpha_bar(t)); }
double Schedule::sqrt_one_minus_alpha_bar(int t) const { return std::sqrt(1.0 - alpha_bar(t)); }

std::vector<int> ddim_timesteps(int t0, int num_steps) {
  require(num_steps >= 1 && num_steps <= t0,
          "num_steps=" + std::to_string(num_steps) + " must lie in [1, t0=" + std::to_string(t0) + "]");
  std::vector<int> ts(static_cast<size_t>(num_steps));
  for (int i = 0; i < num_steps; ++i)
    ts[static_cast<size_t>(i)] =
        static_cast<int>((static_cast<int64_t>(t0) * (num_steps - i)) / num_steps);
  return ts;
}

}  // namespace drdc
