// Checking CUDA runtime calls (CUDA builds only).
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "drdc/status.h"

namespace drdc {
namespace detail {

[[noreturn]] inline void throw_cuda(cudaError_t err, const char* what) {
  throw Error(Status::kCudaError,
              std::string(what) + ": " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")");
}

inline void check_cuda(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw_cuda(err, what);
}

// After a kernel launch: launch-configuration errors are reported here,
// asynchronous faults at the next synchronising call.
inline void check_launch(const char* kernel) { check_cuda(cudaGetLastError(), kernel); }

}  // namespace detail
}  // namespace drdc
