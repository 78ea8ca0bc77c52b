// drdc_trt._C, GLAD family: the per-row step, glad_predict and glad_update
// (definitions: drdc_trt.ops.reference_glad_predict / reference_glad_update).
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "bindings.h"
#include "drdc/kernels.h"

namespace py = pybind11;
using namespace pybind11::literals;

namespace drdc_py {

void bind_glad(py::module_& m) {
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
         double ab_next, double tau, int64_t min_step, bool last, bool fallback_stops) {
        drdc::GladUpdateArgs a;
        a.x0_gen = ptr<const float>(x0_gen), a.x0_in = ptr<const float>(x0_in), a.eps = ptr<const float>(eps);
        a.w = ptr<const float>(w), a.score = ptr<const float>(score);
        a.x_t = ptr<float>(x_t), a.recon = ptr<float>(recon);
        a.done = ptr<uint8_t>(done), a.triggered = ptr<uint8_t>(triggered);
        a.steps = ptr<int64_t>(steps), a.trigger_step = ptr<int64_t>(trigger_step);
        a.trigger_kind = ptr<int64_t>(trigger_kind), a.max_score = ptr<float>(max_score);
        a.B = B, a.C = C, a.H = H, a.W = W, a.k = k, a.t = t, a.min_step = min_step;
        a.ab_next = ab_next, a.tau = static_cast<float>(tau), a.last = last;  // τ compared in float, as torch
        a.fallback_stops = fallback_stops;
        const drdc::Device d = device_of(device);
        py::gil_scoped_release nogil;
        drdc::glad_update(d, a, stream_of(stream));
      },
      py::kw_only(), "device"_a, "stream"_a = 0, "x0_gen"_a, "x0_in"_a, "eps"_a, "w"_a, "score"_a, "x_t"_a,
      "recon"_a, "done"_a, "triggered"_a, "steps"_a, "trigger_step"_a, "trigger_kind"_a, "max_score"_a, "B"_a,
      "C"_a, "H"_a, "W"_a, "k"_a, "t"_a, "ab_next"_a, "tau"_a, "min_step"_a, "last"_a,
      "fallback_stops"_a = false,
      "GLAD's per-row rule of one step, in place on the row state (see drdc_trt.ops.reference_glad_update).");
}

}  // namespace drdc_py
