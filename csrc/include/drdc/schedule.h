// Linear β schedule and DDIM timesteps, computed exactly as
// drdc_trt/diffusion/schedule.py (float64, integer floor arithmetic).
#pragma once

#include <vector>

namespace drdc {

class Schedule {
 public:
  // ᾱ_t = Π_{s≤t}(1 − β_s), β = linspace(beta_start, beta_end, T) in float64.
  static Schedule linear(int num_train_timesteps = 1000, double beta_start = 1e-4,
                         double beta_end = 0.02);
  // Any precomputed ᾱ table (e.g. handed over from Python).
  explicit Schedule(std::vector<double> alphas_cumprod);

  int num_train_timesteps() const noexcept { return static_cast<int>(alphas_cumprod_.size()); }
  const std::vector<double>& alphas_cumprod() const noexcept { return alphas_cumprod_; }
  // ᾱ_t; t < 0 is the clean end of the chain (ᾱ = 1).
  double alpha_bar(int t) const;
  double sqrt_alpha_bar(int t) const;            // √ᾱ_t
  double sqrt_one_minus_alpha_bar(int t) const;  // √(1 − ᾱ_t)

 private:
  std::vector<double> alphas_cumprod_;
};

// t_i = ⌊t0·(num_steps − i)/num_steps⌋, i = 0..num_steps−1; requires 1 ≤ num_steps ≤ t0.
std::vector<int> ddim_timesteps(int t0, int num_steps);

}  // namespace drdc
