// drdc_trt._C, DiffusionAD family: the norm-guided one-step combination
// (definition: drdc_trt.ops.reference_norm_guided).
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "bindings.h"
#include "drdc/kernels.h"

namespace py = pybind11;
using namespace pybind11::literals;

namespace drdc_py {

void bind_diffusionad(py::module_& m) {
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
}

}  // namespace drdc_py
