// drdc_trt._C, DRDC family: the fused kernels of the DDIM inpainting loop (prepare,
// step, fuse; definitions: drdc_trt.ops reference_prepare / _step / _fuse), the grid
// label maps, the analytic runner and the C++ Refiner.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "bindings.h"
#include "drdc/drdc.h"

namespace py = pybind11;
using namespace pybind11::literals;

namespace drdc_py {
namespace {

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

void bind_drdc(py::module_& m) {
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

  // ------------------------------------------------------------------ grid labels
  m.def(
      "grid_labels",
      [](int size, const std::vector<int>& grid_sizes, int num_sets, uint64_t seed) {
        return labels_array(drdc::grid_labels(size, grid_sizes, num_sets, seed));
      },
      "size"_a, "grid_sizes"_a, "num_sets"_a, "seed"_a = 0,
      "J×S×S int32 label maps, identical to drdc_trt.diffusion.masks.grid_labels.");
  m.def("cell_sets", &drdc::cell_sets, "num_cells"_a, "num_sets"_a, "seed"_a);
  m.def("spec_seed", &drdc::spec_seed, "seed"_a, "spec_index"_a);
  // ------------------------------------------------------------------ analytic runner, refiner
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

}  // namespace drdc_py
