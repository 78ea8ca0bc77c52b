// OpenVINO networks (an ONNX file compiled for a CPU, GPU or NPU device) and
// a Runner on top of the U-Net. No OpenVINO type appears here, so a host
// includes this header with or without OpenVINO; in a build without it
// (drdc::built_with_openvino() == false) every constructor throws Error
// kNotCompiled. Every OpenVINO failure (ov::Exception) is turned into a
// drdc::Error at this boundary.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "drdc/runner.h"
#include "drdc/types.h"

namespace drdc {

// True when the OpenVINO runner is compiled in (CMake found OpenVINO).
bool built_with_openvino() noexcept;

namespace openvino {

// One network input or output as a bundle's manifest states it: shape -1 marks
// the dynamic batch dimension ("batch" in manifest.json).
struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  std::string dtype = "float32";
};

struct Options {
  std::string device = "CPU";    // CPU, GPU, GPU.1, NPU, AUTO, AUTO:GPU,CPU (case-insensitive)
  std::string precision = "f32";  // inference precision hint: f32 or bf16 (OpenVINO's CPU default is bf16
                                  // on CPUs that have it, so it is always set)
  int threads = 0;                // CPU inference threads, 0 = OpenVINO's default
  int streams = -1;               // CPU: calls of two rows or more run split over OpenVINO streams (the
                                  // THROUGHPUT hint); -1 OpenVINO's count, 0 or 1 the latency request only
};

// Devices this machine's OpenVINO sees ("CPU", "GPU.0", ...).
std::vector<std::string> available_devices();
// The OpenVINO runtime version, e.g. "2026.4.1-22982-...".
std::string version();

// One ONNX graph compiled by OpenVINO with float32 inputs and output bound by
// name. The constructor checks the graph's input names (in order), output
// name, ranks and static dimensions against the specs and refuses a mismatch
// naming the file and tensor; an absent device or a precision it lacks is
// refused naming the device.
class Network {
 public:
  Network(const std::string& onnx_path, const std::vector<TensorSpec>& inputs, const TensorSpec& output,
          const Options& options = {});
  ~Network();
  Network(const Network&) = delete;
  Network& operator=(const Network&) = delete;

  // Host float32 inputs of the given shapes (checked against the specs) → the
  // output, copied to `output` (at most `capacity` floats). Returns the output shape.
  std::vector<int64_t> infer(const std::vector<const float*>& inputs, const std::vector<std::vector<int64_t>>& shapes,
                             float* output, std::size_t capacity);

  const std::string& path() const noexcept;
  const std::string& device() const noexcept;     // as resolved (upper case)
  const std::string& precision() const noexcept;  // f32 or bf16
  int streams() const noexcept;                   // 1: every call on the latency request
  const std::vector<TensorSpec>& inputs() const noexcept;
  const TensorSpec& output() const noexcept;

 private:
  std::vector<int64_t> infer_streams(const std::vector<const float*>& inputs,
                                     const std::vector<std::vector<int64_t>>& shapes, float* output,
                                     std::size_t capacity);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The U-Net as a Runner (host memory, float32): inputs (x_t‖c) N×6×H×W and
// timesteps N, output ε̂ N×3×H×W. The network must have exactly these two
// inputs (a 4-D one with 6 channels, then a 1-D one) and a 4-D output with 3 channels.
class OpenVINORunner : public Runner {
 public:
  explicit OpenVINORunner(std::shared_ptr<Network> unet);
  ~OpenVINORunner() override;

  Device device() const override { return Device::kCPU; }
  DType dtype() const override { return DType::kFloat32; }
  void run(const void* input, const float* timesteps, void* output, int n, int h, int w, void* stream) override;

  const Network& network() const noexcept { return *unet_; }

 private:
  std::shared_ptr<Network> unet_;
};

}  // namespace openvino
}  // namespace drdc
