#include "python_runner.h"

#include <pybind11/numpy.h>

#include "drdc/types.h"

namespace drdc_py {

py::dict DeviceArray::cuda_array_interface() const {
  py::dict d;
  py::tuple s(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) s[i] = py::int_(shape[i]);
  d["shape"] = s;
  d["typestr"] = dtype == "float16" ? "<f2" : "<f4";
  d["data"] = py::make_tuple(py::int_(ptr), py::bool_(readonly));
  d["strides"] = py::none();  // C-contiguous
  d["version"] = 3;           // no "stream" key: the callback runs on the producer's stream
  return d;
}

PythonRunner::PythonRunner(py::function fn, drdc::Device device, drdc::DType dtype, bool capturable)
    : fn_(std::move(fn)), device_(device), dtype_(dtype), capturable_(capturable) {}

namespace {

// A numpy array over memory the refiner owns; the no-op capsule is the base
// object, so numpy neither copies nor frees.
py::array view(const void* ptr, const py::dtype& dtype, std::vector<py::ssize_t> shape) {
  py::capsule owner(ptr, [](void*) {});
  return py::array(dtype, std::move(shape), {}, ptr, owner);
}

}  // namespace

void PythonRunner::run(const void* input, const float* timesteps, void* output, int n, int h, int w,
                       void* stream) {
  py::gil_scoped_acquire gil;
  const char* name = drdc::dtype_name(dtype_);
  if (device_ == drdc::Device::kCPU) {
    const py::dtype net(name);
    fn_(view(input, net, {n, 6, h, w}), view(timesteps, py::dtype("float32"), {n}), view(output, net, {n, 3, h, w}),
        0);
    return;
  }
  // Marked writable: torch.as_tensor refuses read-only CUDA arrays. The
  // callback must not write to input or timesteps.
  DeviceArray in{reinterpret_cast<std::uintptr_t>(input), {n, 6, h, w}, name, false};
  DeviceArray ts{reinterpret_cast<std::uintptr_t>(timesteps), {n}, "float32", false};
  DeviceArray out{reinterpret_cast<std::uintptr_t>(output), {n, 3, h, w}, name, false};
  fn_(in, ts, out, reinterpret_cast<std::uintptr_t>(stream));
}

}  // namespace drdc_py
