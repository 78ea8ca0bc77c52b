// drdc_trt._C: the pybind11 face of the drdc core.
//
// The kernel entry points take raw pointers (ints) and shapes, exactly as
// drdc_trt/ops.py passes them after checking dtype, device, contiguity and
// shape on the torch side. Errors: drdc::Error kInvalidArgument → ValueError,
// every other drdc::Error → RuntimeError (e.g. a CUDA call in a build without
// CUDA). Importing needs no GPU and no CUDA driver (cudart is linked
// statically and only touched by a CUDA call).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "drdc/drdc.h"
#include "python_runner.h"

namespace py = pybind11;
using namespace pybind11::literals;
using drdc_py::DeviceArray;
using drdc_py::PythonRunner;

namespace {

template <class T>
T* ptr(std::uintptr_t p) {
  return reinterpret_cast<T*>(p);
}
void* stream_of(std::uintptr_t s) { return reinterpret_cast<void*>(s); }

drdc::Device device_of(const std::string& name) { return drdc::parse_device(name.c_str()); }
drdc::DType dtype_of(const std::string& name) { return drdc::parse_dtype(name.c_str()); }

void set_pool_factors(drdc::StepArgs& a, const std::vector<int>& factors) {
  drdc::require(!factors.empty() && factors.size() <= static_cast<size_t>(drdc::kMaxPoolFactors),
                "pool_factors: 1 to 4 factors, got " + std::to_string(factors.size()));
  a.num_pool_factors = static_cast<int>(factors.size());
  for (size_t i = 0; i < factors.size(); ++i) a.pool_factors[i] = factors[i];
}

drdc::Schedule make_schedule(const py::object& alphas_cumprod, int T, double beta_start, double beta_end) {
  if (alphas_cumprod.is_none()) return drdc::Schedule::linear(T, beta_start, beta_end);
  auto a = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(alphas_cumprod);
  if (!a || a.ndim() != 1) throw drdc::Error(drdc::Status::kInvalidArgument, "alphas_cumprod: expected a 1-D array");
  return drdc::Schedule(std::vector<double>(a.data(), a.data() + a.size()));
}

drdc::LabelMaps make_labels(const py::object& labels, const py::object& grid_sizes, int size, int num_sets,
                            uint64_t seed) {
  if (!labels.is_none()) {
    auto a = py::array_t<int32_t, py::array::c_style>::ensure(labels);
    if (!a || a.ndim() != 3)
      throw drdc::Error(drdc::Status::kInvalidArgument, "labels: expected a J×H×W int32 array");
    drdc::LabelMaps m;
    m.J = static_cast<int>(a.shape(0)), m.H = static_cast<int>(a.shape(1)), m.W = static_cast<int>(a.shape(2));
    m.data.assign(a.data(), a.data() + a.size());
    return m;
  }
  if (grid_sizes.is_none())
    throw drdc::Error(drdc::Status::kInvalidArgument, "pass labels (J×H×W int32) or grid_sizes (+ seed)");
  return drdc::grid_labels(size, grid_sizes.cast<std::vector<int>>(), num_sets, seed);
}

py::array_t<int32_t> labels_array(const drdc::LabelMaps& m) {
  py::array_t<int32_t> out({m.J, m.H, m.W});
  std::copy(m.data.begin(), m.data.end(), out.mutable_data());
  return out;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "drdc_trt compiled core: fused DDIM inpainting kernels (CPU/CUDA), the C++ refiner, runners";

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

  // ------------------------------------------------------------------ kernels
  m.def(
      "prepare",
      [](const std::string& device, std::uintptr_t stream, std::uintptr_t x, std::uintptr_t labels,
         std::uintptr_t fill_noise, std::uintptr_t eps0, std::uintptr_t xt, std::uintptr_t unet_in, int B, int J,
         int K, int H, int W, double sqrt_ab, double sqrt_1mab, const std::string& net_dtype) {
        drdc::PrepareArgs a;
        a.x = ptr<const float>(x), a.labels = ptr<const int32_t>(labels);
        a.fill_noise = ptr<const float>(fill_noise), a.eps0 = ptr<const float>(eps0);
        a.xt = ptr<float>(xt), a.unet_in = ptr<void>(unet_in);
        a.B = B, a.J = J, a.K = K, a.H = H, a.W = W;
        a.sqrt_ab = static_cast<float>(sqrt_ab), a.sqrt_1mab = static_cast<float>(sqrt_1mab);
        a.net_dtype = dtype_of(net_dtype);
        const drdc::Device d = device_of(device);
        py::gil_scoped_release nogil;
        drdc::prepare(d, a, stream_of(stream));
      },
      py::kw_only(), "device"_a, "stream"_a = 0, "x"_a, "labels"_a, "fill_noise"_a, "eps0"_a, "xt"_a, "unet_in"_a,
      "B"_a, "J"_a, "K"_a, "H"_a, "W"_a, "sqrt_ab"_a, "sqrt_1mab"_a, "net_dtype"_a = "float32",
      "Fused prepare (see drdc_trt.ops.reference_prepare); pointers are ints.");

  m.def(
      "step",
      [](const std::string& device, std::uintptr_t stream, std::uintptr_t x, std::uintptr_t labels,
         std::uintptr_t xt_in, std::uintptr_t eps, std::uintptr_t noise, std::uintptr_t xt_out,
         std::uintptr_t unet_in, std::uintptr_t heat, int B, int J, int K, int H, int W, double sqrt_ab,
         double sqrt_1mab, double sqrt_ab_next, double sqrt_1mab_next, const std::vector<int>& pool_factors,
         bool clip_x0, const std::string& net_dtype) {
        drdc::StepArgs a;
        a.x = ptr<const float>(x), a.labels = ptr<const int32_t>(labels), a.xt_in = ptr<const float>(xt_in);
        a.eps = ptr<const void>(eps), a.noise = ptr<const float>(noise), a.xt_out = ptr<float>(xt_out);
        a.unet_in = ptr<void>(unet_in), a.heat = ptr<float>(heat);
        a.B = B, a.J = J, a.K = K, a.H = H, a.W = W;
        a.sqrt_ab = static_cast<float>(sqrt_ab), a.sqrt_1mab = static_cast<float>(sqrt_1mab);
        a.sqrt_ab_next = static_cast<float>(sqrt_ab_next), a.sqrt_1mab_next = static_cast<float>(sqrt_1mab_next);
        set_pool_factors(a, pool_factors);
        a.clip_x0 = clip_x0;
        a.net_dtype = dtype_of(net_dtype);
        const drdc::Device d = device_of(device);
        py::gil_scoped_release nogil;
        drdc::step(d, a, stream_of(stream));
      },
      py::kw_only(), "device"_a, "stream"_a = 0, "x"_a, "labels"_a, "xt_in"_a, "eps"_a, "noise"_a, "xt_out"_a,
      "unet_in"_a, "heat"_a, "B"_a, "J"_a, "K"_a, "H"_a, "W"_a, "sqrt_ab"_a, "sqrt_1mab"_a, "sqrt_ab_next"_a,
      "sqrt_1mab_next"_a, "pool_factors"_a, "clip_x0"_a = true, "net_dtype"_a = "float32",
      "Fused DDIM step (see drdc_trt.ops.reference_step); updates unet_in and heat in place.");

  m.def(
      "fuse",
      [](const std::string& device, std::uintptr_t stream, std::uintptr_t heat, std::uintptr_t base,
         std::uintptr_t final_map, std::uintptr_t diff_map, std::uintptr_t base_up, std::uintptr_t score, int B,
         int H, int W, int h, int w, double inv_count, int mean_filter, double mu_d, double sd_d, double mu_b,
         double sd_b, double lam, int score_window) {
        drdc::FuseArgs a;
        a.heat = ptr<const float>(heat), a.base = ptr<const float>(base), a.final_map = ptr<float>(final_map);
        a.diff_map = ptr<float>(diff_map), a.base_up = ptr<float>(base_up), a.score = ptr<float>(score);
        a.B = B, a.H = H, a.W = W, a.h = h, a.w = w;
        a.inv_count = static_cast<float>(inv_count), a.mean_filter = mean_filter;
        a.mu_d = static_cast<float>(mu_d), a.sd_d = static_cast<float>(sd_d);
        a.mu_b = static_cast<float>(mu_b), a.sd_b = static_cast<float>(sd_b), a.lam = lam;
        a.score_window = score_window;
        const drdc::Device d = device_of(device);
        py::gil_scoped_release nogil;
        drdc::fuse(d, a, stream_of(stream));
      },
      py::kw_only(), "device"_a, "stream"_a = 0, "heat"_a, "base"_a, "final"_a, "diff_map"_a, "base_up"_a, "score"_a,
      "B"_a, "H"_a, "W"_a, "h"_a, "w"_a, "inv_count"_a, "mean_filter"_a, "mu_d"_a, "sd_d"_a, "mu_b"_a, "sd_b"_a,
      "lam"_a, "score_window"_a, "Fused heatmap fusion and image score (see drdc_trt.ops.reference_fuse).");

  m.def(
      "norm_guided",
      [](const std::string& device, std::uintptr_t stream, std::uintptr_t x_a, std::uintptr_t e_a,
         std::uintptr_t x_b, std::uintptr_t e_b, std::uintptr_t x0_g, std::uintptr_t x0_b, int64_t count,
         double ab_a, double ab_b, double w, bool clamp) {
        drdc::NormGuidedArgs a;
        a.x_a = ptr<const float>(x_a), a.e_a = ptr<const float>(e_a);
        a.x_b = ptr<const float>(x_b), a.e_b = ptr<const float>(e_b);
        a.x0_g = ptr<float>(x0_g), a.x0_b = ptr<float>(x0_b);
        a.count = count;
        a.ab_a = static_cast<float>(ab_a), a.ab_b = static_cast<float>(ab_b), a.w = static_cast<float>(w);
        a.clamp = clamp;
        const drdc::Device d = device_of(device);
        py::gil_scoped_release nogil;
        drdc::norm_guided(d, a, stream_of(stream));
      },
      py::kw_only(), "device"_a, "stream"_a = 0, "x_a"_a, "e_a"_a, "x_b"_a, "e_b"_a, "x0_g"_a, "x0_b"_a = 0,
      "count"_a, "ab_a"_a, "ab_b"_a, "w"_a = 1.0, "clamp"_a = true,
      "DiffusionAD's norm-guided combination (see drdc_trt.ops.reference_norm_guided); x0_b optional (0).");

  m.def(
      "glad_predict",
      [](const std::string& device, std::uintptr_t stream, std::uintptr_t x_t, std::uintptr_t x,
         std::uintptr_t noise, std::uintptr_t eps, std::uintptr_t x0_gen, std::uintptr_t x0_in, int64_t count,
         double sqrt_ab, double sqrt_1mab, bool clip) {
        drdc::GladPredictArgs a;
        a.x_t = ptr<const float>(x_t), a.x = ptr<const float>(x), a.noise = ptr<const float>(noise);
        a.eps = ptr<const float>(eps), a.x0_gen = ptr<float>(x0_gen), a.x0_in = ptr<float>(x0_in);
        a.count = count, a.sqrt_ab = static_cast<float>(sqrt_ab), a.sqrt_1mab = static_cast<float>(sqrt_1mab);
        a.clip = clip;
        const drdc::Device d = device_of(device);
        py::gil_scoped_release nogil;
        drdc::glad_predict(d, a, stream_of(stream));
      },
      py::kw_only(), "device"_a, "stream"_a = 0, "x_t"_a, "x"_a, "noise"_a, "eps"_a, "x0_gen"_a, "x0_in"_a,
      "count"_a, "sqrt_ab"_a, "sqrt_1mab"_a, "clip"_a = true,
      "GLAD's x0_gen and x0_in of one step (see drdc_trt.ops.reference_glad_predict).");

  m.def(
      "glad_update",
      [](const std::string& device, std::uintptr_t stream, std::uintptr_t x0_gen, std::uintptr_t x0_in,
         std::uintptr_t eps, std::uintptr_t w, std::uintptr_t score, std::uintptr_t x_t, std::uintptr_t recon,
         std::uintptr_t done, std::uintptr_t triggered, std::uintptr_t steps, std::uintptr_t trigger_step,
         std::uintptr_t trigger_kind, std::uintptr_t max_score, int B, int C, int H, int W, int64_t k, int64_t t,
         double ab_next, double tau, int64_t min_step, bool last) {
        drdc::GladUpdateArgs a;
        a.x0_gen = ptr<const float>(x0_gen), a.x0_in = ptr<const float>(x0_in), a.eps = ptr<const float>(eps);
        a.w = ptr<const float>(w), a.score = ptr<const float>(score);
        a.x_t = ptr<float>(x_t), a.recon = ptr<float>(recon);
        a.done = ptr<uint8_t>(done), a.triggered = ptr<uint8_t>(triggered);
        a.steps = ptr<int64_t>(steps), a.trigger_step = ptr<int64_t>(trigger_step);
        a.trigger_kind = ptr<int64_t>(trigger_kind), a.max_score = ptr<float>(max_score);
        a.B = B, a.C = C, a.H = H, a.W = W, a.k = k, a.t = t, a.min_step = min_step;
        a.ab_next = ab_next, a.tau = static_cast<float>(tau), a.last = last;  // τ compared in float, as torch
        const drdc::Device d = device_of(device);
        py::gil_scoped_release nogil;
        drdc::glad_update(d, a, stream_of(stream));
      },
      py::kw_only(), "device"_a, "stream"_a = 0, "x0_gen"_a, "x0_in"_a, "eps"_a, "w"_a, "score"_a, "x_t"_a,
      "recon"_a, "done"_a, "triggered"_a, "steps"_a, "trigger_step"_a, "trigger_kind"_a, "max_score"_a, "B"_a,
      "C"_a, "H"_a, "W"_a, "k"_a, "t"_a, "ab_next"_a, "tau"_a, "min_step"_a, "last"_a,
      "GLAD's per-row rule of one step, in place on the row state (see drdc_trt.ops.reference_glad_update).");

  // ------------------------------------------------------------------ randomness, schedule
  m.def(
      "grid_labels",
      [](int size, const std::vector<int>& grid_sizes, int num_sets, uint64_t seed) {
        return labels_array(drdc::grid_labels(size, grid_sizes, num_sets, seed));
      },
      "size"_a, "grid_sizes"_a, "num_sets"_a, "seed"_a = 0,
      "J×S×S int32 label maps, identical to drdc_trt.diffusion.masks.grid_labels.");
  m.def("cell_sets", &drdc::cell_sets, "num_cells"_a, "num_sets"_a, "seed"_a);
  m.def("spec_seed", &drdc::spec_seed, "seed"_a, "spec_index"_a);
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

  py::class_<drdc::AnalyticRunner, drdc::Runner, std::shared_ptr<drdc::AnalyticRunner>>(
      m, "AnalyticRunner", "Returns the true noise of x_t for the clean image x (test oracle).")
      .def(py::init([](const std::string& device, const std::string& net_dtype, std::uintptr_t x, int batch,
                       int rows_per_image, int height, int width, const py::object& alphas_cumprod,
                       int num_train_timesteps, double beta_start, double beta_end) {
             return std::make_shared<drdc::AnalyticRunner>(
                 device_of(device), dtype_of(net_dtype), ptr<const float>(x), batch, rows_per_image, height, width,
                 make_schedule(alphas_cumprod, num_train_timesteps, beta_start, beta_end));
           }),
           py::kw_only(), "device"_a, "net_dtype"_a = "float32", "x"_a, "batch"_a, "rows_per_image"_a, "height"_a,
           "width"_a, "alphas_cumprod"_a = py::none(), "num_train_timesteps"_a = 1000, "beta_start"_a = 1e-4,
           "beta_end"_a = 0.02);

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

  // ------------------------------------------------------------------ refiner
  py::class_<drdc::Refiner>(m, "Refiner",
                            "C++ DDIM inpainting loop (drdc_trt.diffusion.inpaint_heat), driving a Runner.")
      .def(py::init([](std::shared_ptr<drdc::Runner> runner, const std::string& device, int batch, int height,
                       int width, int num_sets, int t0, int num_steps, const std::vector<int>& pool_factors,
                       bool clip_x0, bool cuda_graph, const py::object& labels, const py::object& grid_sizes,
                       uint64_t seed, const py::object& alphas_cumprod, int num_train_timesteps, double beta_start,
                       double beta_end) {
             drdc::RefinerConfig c;
             c.device = device_of(device);
             c.batch = batch, c.height = height, c.width = width, c.num_sets = num_sets;
             c.t0 = t0, c.num_steps = num_steps, c.pool_factors = pool_factors;
             c.clip_x0 = clip_x0, c.cuda_graph = cuda_graph;
             drdc::require(height == width || !labels.is_none(), "generated labels need height == width");
             return std::make_unique<drdc::Refiner>(
                 c, make_schedule(alphas_cumprod, num_train_timesteps, beta_start, beta_end),
                 make_labels(labels, grid_sizes, height, num_sets, seed), std::move(runner));
           }),
           "runner"_a, py::kw_only(), "device"_a, "batch"_a, "height"_a, "width"_a, "num_sets"_a, "t0"_a,
           "num_steps"_a, "pool_factors"_a, "clip_x0"_a = true, "cuda_graph"_a = true, "labels"_a = py::none(),
           "grid_sizes"_a = py::none(), "seed"_a = 0, "alphas_cumprod"_a = py::none(),
           "num_train_timesteps"_a = 1000, "beta_start"_a = 1e-4, "beta_end"_a = 0.02)  // the refiner owns a reference to the runner (shared_ptr)
      .def(
          "run",
          [](drdc::Refiner& r, std::uintptr_t x, std::uintptr_t heat, std::uintptr_t xt_out, std::uintptr_t fill,
             std::uintptr_t start, std::uintptr_t steps, std::uintptr_t stream) {
            drdc::LoopNoise nz{ptr<const float>(fill), ptr<const float>(start), ptr<const float>(steps)};
            py::gil_scoped_release nogil;  // the runner callback takes it back
            return r.run(ptr<const float>(x), ptr<float>(heat), ptr<float>(xt_out), nz, stream_of(stream));
          },
          py::kw_only(), "x"_a, "heat"_a, "xt_out"_a = 0, "fill"_a = 0, "start"_a = 0, "steps"_a = 0, "stream"_a = 0,
          "Run the loop: x B×3×H×W → heat B×H×W (and the final N×3×H×W state into xt_out); returns count.")
      .def("set_noise_seed", &drdc::Refiner::set_noise_seed, "seed"_a)
      .def_property_readonly("rows", &drdc::Refiner::rows)
      .def_property_readonly("specs", &drdc::Refiner::specs)
      .def_property_readonly("count", &drdc::Refiner::count)
      .def_property_readonly("net_dtype", [](const drdc::Refiner& r) { return drdc::dtype_name(r.net_dtype()); })
      .def_property_readonly("timesteps", &drdc::Refiner::timesteps)
      .def_property_readonly("labels", [](const drdc::Refiner& r) { return labels_array(r.labels()); })
      .def_property_readonly("graph_captures", &drdc::Refiner::graph_captures)
      .def_property_readonly("graph_replays", &drdc::Refiner::graph_replays)
      .def_property_readonly("graph_error", &drdc::Refiner::graph_error);
}
