// A runner that needs no network: it returns the true noise of its input,
// ε = (x_t − √ᾱ_t·x)/√(1−ᾱ_t), for the clean image x it was given. With it the
// DDIM loop must recover x exactly (up to float rounding), which makes it the
// known-answer oracle of the refiner tests and of the example host.
#pragma once

#include <memory>

#include "drdc/runner.h"
#include "drdc/schedule.h"

namespace drdc {

class AnalyticRunner : public Runner {
 public:
  // x: batch×3×height×width float32 on `device`, kept by pointer (must outlive
  // the runner); row n of the network batch belongs to image n / rows_per_image.
  AnalyticRunner(Device device, DType dtype, const float* x, int batch, int rows_per_image,
                 int height, int width, const Schedule& schedule);
  ~AnalyticRunner() override;

  Device device() const override { return device_; }
  DType dtype() const override { return dtype_; }
  bool capturable() const override { return device_ == Device::kCUDA; }
  void run(const void* input, const float* timesteps, void* output, int n, int h, int w,
           void* stream) override;

 private:
  struct Tables;
  Device device_;
  DType dtype_;
  const float* x_;
  int batch_, rows_per_image_, height_, width_;
  std::unique_ptr<Tables> tables_;  // √ᾱ_t and √(1−ᾱ_t) per t, on `device`
};

}  // namespace drdc
