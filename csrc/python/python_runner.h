// A drdc::Runner that calls back into Python, so the C++ loop can drive a
// PyTorch or ONNX Runtime network:
//   CPU:  fn(input, timesteps, output, stream=0) with numpy arrays that view
//         the refiner's buffers (no copy; valid only during the call);
//   CUDA: fn(input, timesteps, output, stream) with DeviceArray objects (raw
//         pointer, shape, dtype, __cuda_array_interface__) and the stream.
// fn writes ε̂ into output. The GIL is taken for the call only.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "drdc/runner.h"

namespace drdc_py {

namespace py = pybind11;

// A view of device memory for Python consumers (torch.as_tensor, CuPy).
struct DeviceArray {
  std::uintptr_t ptr = 0;
  std::vector<int64_t> shape;
  std::string dtype;  // "float32" / "float16"
  bool readonly = false;
  py::dict cuda_array_interface() const;
};

class PythonRunner : public drdc::Runner {
 public:
  PythonRunner(py::function fn, drdc::Device device, drdc::DType dtype, bool capturable);
  drdc::Device device() const override { return device_; }
  drdc::DType dtype() const override { return dtype_; }
  bool capturable() const override { return capturable_; }
  void run(const void* input, const float* timesteps, void* output, int n, int h, int w, void* stream) override;

 private:
  py::function fn_;
  drdc::Device device_;
  drdc::DType dtype_;
  bool capturable_;
};

}  // namespace drdc_py
