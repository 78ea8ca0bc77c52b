#include "drdc/types.h"

#include <cstring>
#include <string>

#include "drdc/status.h"

#ifndef DRDC_VERSION_STRING
#define DRDC_VERSION_STRING "0.0.0"
#endif
#ifndef DRDC_CUDA_ARCHS
#define DRDC_CUDA_ARCHS ""
#endif

namespace drdc {

const char* status_name(Status status) noexcept {
  switch (status) {
    case Status::kOk: return "ok";
    case Status::kInvalidArgument: return "invalid argument";
    case Status::kNotCompiled: return "not compiled";
    case Status::kCudaError: return "CUDA error";
    case Status::kRunnerError: return "runner error";
    case Status::kTensorRtError: return "TensorRT error";
    case Status::kIoError: return "I/O error";
    case Status::kInternal: return "internal error";
  }
  return "unknown status";
}

Device parse_device(const char* name) {
  require(name != nullptr, "device name is null");
  if (std::strcmp(name, "cpu") == 0) return Device::kCPU;
  if (std::strcmp(name, "cuda") == 0) return Device::kCUDA;
  throw Error(Status::kInvalidArgument, std::string("device '") + name + "': use 'cpu' or 'cuda'");
}

DType parse_dtype(const char* name) {
  require(name != nullptr, "dtype name is null");
  if (std::strcmp(name, "float32") == 0) return DType::kFloat32;
  if (std::strcmp(name, "float16") == 0) return DType::kFloat16;
  throw Error(Status::kInvalidArgument, std::string("net dtype '") + name + "': use 'float32' or 'float16'");
}

bool built_with_cuda() noexcept {
#if DRDC_WITH_CUDA
  return true;
#else
  return false;
#endif
}

bool built_with_tensorrt() noexcept {
#if DRDC_WITH_TENSORRT
  return true;
#else
  return false;
#endif
}

const char* cuda_architectures() noexcept {
  // CMake lists use ';', which cannot pass through a compile definition.
  static const std::string archs = [] {
    std::string s = DRDC_CUDA_ARCHS;
    for (char& c : s)
      if (c == ',') c = ';';
    return s;
  }();
  return archs.c_str();
}
const char* version() noexcept { return DRDC_VERSION_STRING; }

}  // namespace drdc
