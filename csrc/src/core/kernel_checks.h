// Argument checks shared by the kernel entry points of every family
// (drdc/kernels.cpp, diffusionad/norm_guided.cpp, glad/glad_kernels.cpp).
#pragma once

#include <string>

#include "drdc/status.h"

namespace drdc {
namespace detail {

inline void require_ptr(const void* p, const char* name) {
  require(p != nullptr, std::string(name) + " is a null pointer");
}

[[noreturn]] inline void bad_device() { throw Error(Status::kInvalidArgument, "device must be cpu or cuda"); }

}  // namespace detail
}  // namespace drdc
