// TensorRT 10 engines (named I/O tensors, setInputShape / setTensorAddress /
// enqueueV3) and a Runner on top of one. No TensorRT type appears here, so a
// host includes this header with or without TensorRT; in a build without
// TensorRT (drdc::built_with_tensorrt() == false) every constructor throws
// Error kNotCompiled.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "drdc/runner.h"
#include "drdc/types.h"

namespace drdc {
namespace trt {

struct TensorInfo {
  std::string name;
  bool is_input = false;
  std::string dtype;           // "float32", "float16", "int32", "int64", "int8", "bool", "other"
  std::vector<int64_t> shape;  // engine shape, -1 for a dynamic dimension
};

// One deserialized plan and one execution context (optimisation profile 0).
class Engine {
 public:
  explicit Engine(const std::string& plan_path);
  Engine(const void* plan, std::size_t size);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  const std::vector<TensorInfo>& tensors() const;
  const TensorInfo& tensor(const std::string& name) const;  // throws when unknown
  // Profile 0 limits of an input: {min, opt, max} shapes.
  std::vector<std::vector<int64_t>> profile(const std::string& input_name) const;

  void set_input_shape(const std::string& name, const std::vector<int64_t>& shape);
  void set_address(const std::string& name, void* device_ptr);
  std::vector<int64_t> resolved_shape(const std::string& name) const;  // after set_input_shape
  void enqueue(void* stream);
  std::string trt_version() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The U-Net as a Runner: inputs (x_t‖c) N×6×H×W and timesteps N float32,
// output ε̂ N×3×H×W. Tensor names are found by shape when left empty: the 4-D
// input, the 1-D input and the single output.
class TensorRtRunner : public Runner {
 public:
  struct Names {
    std::string input, timesteps, output;
  };
  explicit TensorRtRunner(std::shared_ptr<Engine> engine, Names names = {});
  ~TensorRtRunner() override;

  Device device() const override { return Device::kCUDA; }
  DType dtype() const override { return dtype_; }
  // enqueueV3 only enqueues once shapes are set; the refiner's first eager
  // run sets them, so the captured runs replay pure device work.
  bool capturable() const override { return true; }
  void run(const void* input, const float* timesteps, void* output, int n, int h, int w,
           void* stream) override;

  const Names& names() const noexcept { return names_; }

 private:
  std::shared_ptr<Engine> engine_;
  Names names_;
  DType dtype_ = DType::kFloat32;
  int64_t last_n_ = -1, last_h_ = -1, last_w_ = -1;
};

}  // namespace trt
}  // namespace drdc
