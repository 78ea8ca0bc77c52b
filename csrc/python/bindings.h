// drdc_trt._C, split by family: module.cpp calls one bind_<family>(m) per family
// (core, drdc, diffusionad, glad), each in its bind_<family>.cpp, in that order (core
// registers the Runner base class the others derive from). The helpers below convert
// the arguments every binding takes the same way: pointers and streams as ints,
// device and dtype names as strings.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "drdc/types.h"

namespace drdc_py {

void bind_core(pybind11::module_& m);         // bind_core.cpp: build info, threads, RNG, schedule, runners
void bind_drdc(pybind11::module_& m);         // bind_drdc.cpp: prepare/step/fuse, grid labels, AnalyticRunner, Refiner
void bind_diffusionad(pybind11::module_& m);  // bind_diffusionad.cpp: norm_guided
void bind_glad(pybind11::module_& m);         // bind_glad.cpp: glad_predict, glad_update

template <class T>
T* ptr(std::uintptr_t p) {
  return reinterpret_cast<T*>(p);
}
inline void* stream_of(std::uintptr_t s) { return reinterpret_cast<void*>(s); }

inline drdc::Device device_of(const std::string& name) { return drdc::parse_device(name.c_str()); }
inline drdc::DType dtype_of(const std::string& name) { return drdc::parse_dtype(name.c_str()); }

}  // namespace drdc_py
