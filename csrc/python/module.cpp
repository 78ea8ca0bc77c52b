// drdc_trt._C: the pybind11 face of the drdc core.
//
// The kernel entry points take raw pointers (ints) and shapes, exactly as
// drdc_trt/ops.py passes them after checking dtype, device, contiguity and
// shape on the torch side. Errors: drdc::Error kInvalidArgument → ValueError,
// every other drdc::Error → RuntimeError (e.g. a CUDA call in a build without
// CUDA). Importing needs no GPU and no CUDA driver (cudart is linked
// statically and only touched by a CUDA call).
//
// One bindings file per family (bindings.h): bind_core.cpp, bind_drdc.cpp,
// bind_diffusionad.cpp, bind_glad.cpp.
#include <pybind11/pybind11.h>

#include "bindings.h"

PYBIND11_MODULE(_C, m) {
  m.doc() = "drdc_trt compiled core: fused DDIM inpainting kernels (CPU/CUDA), the C++ refiner, runners";
  drdc_py::bind_core(m);  // first: registers the Runner base class of the others' runners
  drdc_py::bind_drdc(m);
  drdc_py::bind_diffusionad(m);
  drdc_py::bind_glad(m);
}
