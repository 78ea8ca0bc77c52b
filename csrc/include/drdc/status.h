// Error reporting of the drdc core: every failure is a drdc::Error carrying a
// Status code; nothing in the library aborts the host process. Hosts that do
// not use exceptions wrap calls in drdc::call(), which returns the Status.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>

namespace drdc {

enum class Status : int {
  kOk = 0,
  kInvalidArgument = 1,  // null pointer, bad shape, bad option
  kNotCompiled = 2,      // asked for CUDA or TensorRT in a build without it
  kCudaError = 3,        // a CUDA runtime call failed (no device, no driver, launch error)
  kRunnerError = 4,      // the network runner failed
  kTensorRtError = 5,    // TensorRT refused a plan, a shape or an enqueue
  kIoError = 6,          // a file could not be read
  kInternal = 7,
};

const char* status_name(Status status) noexcept;

class Error : public std::runtime_error {
 public:
  Error(Status status, const std::string& message)
      : std::runtime_error(std::string(status_name(status)) + ": " + message), status_(status) {}
  Status status() const noexcept { return status_; }

 private:
  Status status_;
};

// Runs fn() and turns any exception into a Status (message optional), for
// hosts that build without exceptions at their own boundary.
template <class Fn>
Status call(Fn&& fn, std::string* message = nullptr) noexcept {
  try {
    std::forward<Fn>(fn)();
    return Status::kOk;
  } catch (const Error& e) {
    if (message) *message = e.what();
    return e.status();
  } catch (const std::exception& e) {
    if (message) *message = e.what();
    return Status::kInternal;
  } catch (...) {
    if (message) *message = "unknown exception";
    return Status::kInternal;
  }
}

// Throws Error(kInvalidArgument, message) unless cond holds.
inline void require(bool cond, const std::string& message) {
  if (!cond) throw Error(Status::kInvalidArgument, message);
}

}  // namespace drdc
