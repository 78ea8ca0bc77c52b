// drdc_trt._C, core family: the error translation (drdc::Error kInvalidArgument →
// ValueError, every other drdc::Error → RuntimeError), build info, CUDA devices, CPU
// threads, the counter-based Gaussian generator, the β schedule, and the runners every
// method shares (the Runner base, PythonRunner, TensorRT).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "bindings.h"
#include "drdc/drdc.h"
#include "python_runner.h"

namespace py = pybind11;
using namespace pybind11::literals;

namespace drdc_py {

void bind_core(py::module_& m) {
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const drdc::Error& e) {
      if (e.status() == drdc::Status::kInvalidArgument)
        PyErr_SetString(PyExc_ValueError, e.what());
      else
        PyErr_SetString(PyExc_RuntimeError, e.what());
    }
  });

  py::dict info;
  info["cuda"] = drdc::built_with_cuda();
  info["tensorrt"] = drdc::built_with_tensorrt();
  info["cuda_architectures"] = std::string(drdc::cuda_architectures());
  info["version"] = std::string(drdc::version());
  m.attr("build_info") = info;

  m.def("cuda_device_count", &drdc::cuda_device_count,
        "Usable CUDA devices seen by the core (0 without CUDA build, driver or GPU).");
  m.def("cuda_status", &drdc::cuda_status,
        "Why cuda_device_count() is 0 ('' when a device is usable): the CUDA runtime's error, e.g. a driver "
        "too old for the runtime, or 'no CUDA device'.");
  m.def("set_num_threads", &drdc::set_num_threads, "n"_a, "Threads of the CPU kernels.");
  m.def("num_threads", &drdc::num_threads);

  // ------------------------------------------------------------------ randomness, schedule
  m.def(
      "philox4x32",
      [](std::vector<uint32_t> counter, std::vector<uint32_t> key) {
        drdc::require(counter.size() == 4 && key.size() == 2, "philox4x32: counter of 4 words, key of 2");
        uint32_t out[4];
        drdc::philox4x32(counter.data(), key.data(), out);
        return std::vector<uint32_t>(out, out + 4);
      },
      "counter"_a, "key"_a);
  m.def(
      "gaussian",
      [](std::size_t count, uint64_t seed, uint64_t offset) {
        py::array_t<float> out(static_cast<py::ssize_t>(count));
        float* dst = out.mutable_data();
        {
          py::gil_scoped_release nogil;
          drdc::gaussian(drdc::Device::kCPU, dst, count, seed, offset);
        }
        return out;
      },
      "count"_a, "seed"_a, "offset"_a = 0, "Counter-based N(0, 1) floats (Philox4x32-10 + Box-Muller), on the CPU.");
  m.def(
      "gaussian_into",
      [](const std::string& device, std::uintptr_t out, std::size_t count, uint64_t seed, uint64_t offset,
         std::uintptr_t stream) {
        const drdc::Device d = device_of(device);
        py::gil_scoped_release nogil;
        drdc::gaussian(d, ptr<float>(out), count, seed, offset, stream_of(stream));
      },
      py::kw_only(), "device"_a, "out"_a, "count"_a, "seed"_a, "offset"_a = 0, "stream"_a = 0);
  m.def(
      "linear_alphas_cumprod",
      [](int T, double beta_start, double beta_end) {
        const auto s = drdc::Schedule::linear(T, beta_start, beta_end);
        return py::array_t<double>(static_cast<py::ssize_t>(s.alphas_cumprod().size()), s.alphas_cumprod().data());
      },
      "num_train_timesteps"_a = 1000, "beta_start"_a = 1e-4, "beta_end"_a = 0.02);
  m.def("ddim_timesteps", &drdc::ddim_timesteps, "t0"_a, "num_steps"_a);

  // ------------------------------------------------------------------ runners
  py::class_<DeviceArray>(m, "DeviceArray", "A view of device memory handed to a CUDA Python runner callback.")
      .def_readonly("ptr", &DeviceArray::ptr)
      .def_property_readonly("shape", [](const DeviceArray& a) { return py::tuple(py::cast(a.shape)); })
      .def_readonly("dtype", &DeviceArray::dtype)
      .def_property_readonly("__cuda_array_interface__", &DeviceArray::cuda_array_interface)
      .def("__repr__", [](const DeviceArray& a) {
        return "DeviceArray(ptr=" + std::to_string(a.ptr) + ", dtype=" + a.dtype + ")";
      });

  py::class_<drdc::Runner, std::shared_ptr<drdc::Runner>>(m, "Runner", "Network runner protocol (abstract).")
      .def_property_readonly("device", [](const drdc::Runner& r) { return drdc::device_name(r.device()); })
      .def_property_readonly("net_dtype", [](const drdc::Runner& r) { return drdc::dtype_name(r.dtype()); })
      .def_property_readonly("capturable", &drdc::Runner::capturable);

  py::class_<PythonRunner, drdc::Runner, std::shared_ptr<PythonRunner>>(
      m, "PythonRunner",
      "Runner calling fn(input, timesteps, output, stream): numpy views on CPU, DeviceArray on CUDA.")
      .def(py::init([](py::function fn, const std::string& device, const std::string& net_dtype, bool capturable) {
             return std::make_shared<PythonRunner>(std::move(fn), device_of(device), dtype_of(net_dtype), capturable);
           }),
           "fn"_a, "device"_a = "cpu", "net_dtype"_a = "float32", "capturable"_a = false);

  py::class_<drdc::trt::Engine, std::shared_ptr<drdc::trt::Engine>>(
      m, "TensorRTEngine", "A TensorRT 10 plan (RuntimeError in a build without TensorRT).")
      .def(py::init<const std::string&>(), "plan_path"_a)
      .def_property_readonly("tensors", [](const drdc::trt::Engine& e) {
        py::list out;
        for (const auto& t : e.tensors())
          out.append(py::dict("name"_a = t.name, "is_input"_a = t.is_input, "dtype"_a = t.dtype, "shape"_a = t.shape));
        return out;
      });
  py::class_<drdc::trt::TensorRtRunner, drdc::Runner, std::shared_ptr<drdc::trt::TensorRtRunner>>(
      m, "TensorRTRunner", "The U-Net plan as a runner (CUDA, capturable).")
      .def(py::init([](std::shared_ptr<drdc::trt::Engine> engine, const std::string& input,
                       const std::string& timesteps, const std::string& output) {
             return std::make_shared<drdc::trt::TensorRtRunner>(std::move(engine),
                                                                drdc::trt::TensorRtRunner::Names{input, timesteps, output});
           }),
           "engine"_a, "input"_a = "", "timesteps"_a = "", "output"_a = "");
}

}  // namespace drdc_py
