// The network runner protocol (DESIGN §4): run(input N×C×H×W, timesteps N) →
// output, on a given stream. The refiner never knows which engine is behind it.
#pragma once

#include "drdc/types.h"

namespace drdc {

class Runner {
 public:
  virtual ~Runner() = default;

  // Where input/timesteps/output live.
  virtual Device device() const = 0;
  // Precision of input and output (the timesteps are always float32).
  virtual DType dtype() const = 0;
  // True when run() only enqueues CUDA work on `stream` (no host sync, no
  // allocation, no host-side reads of device data), so the refiner may
  // capture the whole loop into a CUDA graph and replay it.
  virtual bool capturable() const { return false; }

  // input: n×6×h×w, timesteps: n float32, output: n×3×h×w (ε̂). The refiner
  // hands every pointer 256-byte aligned (TensorRT's rule).
  // CPU runners finish before returning; CUDA runners enqueue on `stream`.
  // Failures throw (drdc::Error with kRunnerError or any exception).
  virtual void run(const void* input, const float* timesteps, void* output, int n, int h, int w,
                   void* stream) = 0;
};

}  // namespace drdc
