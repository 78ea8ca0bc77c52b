// TensorRT 10 engine and runner (compiled only when CMake finds NvInfer.h and
// libnvinfer). Written against the TensorRT 10 C++ API: IRuntime,
// deserializeCudaEngine, createExecutionContext, named I/O tensors
// (getNbIOTensors / getIOTensorName / getTensorIOMode / getTensorDataType),
// setInputShape, setTensorAddress, enqueueV3; objects released with delete.
#include "drdc/tensorrt.h"

#include <NvInfer.h>
#include <NvInferVersion.h>
#include <cuda_runtime_api.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "drdc/status.h"

#if NV_TENSORRT_MAJOR < 10
#error "drdc's TensorRT runner needs TensorRT 10 or newer (named-tensor API)"
#endif

namespace drdc {
namespace trt {
namespace {

class Logger : public nvinfer1::ILogger {
 public:
  void log(Severity severity, nvinfer1::AsciiChar const* msg) noexcept override {
    if (severity <= Severity::kWARNING) std::fprintf(stderr, "[drdc/TensorRT] %s\n", msg);
  }
};

Logger& logger() {
  static Logger instance;
  return instance;
}

std::string dtype_name(nvinfer1::DataType t) {
  switch (t) {
    case nvinfer1::DataType::kFLOAT: return "float32";
    case nvinfer1::DataType::kHALF: return "float16";
    case nvinfer1::DataType::kINT32: return "int32";
    case nvinfer1::DataType::kINT64: return "int64";
    case nvinfer1::DataType::kINT8: return "int8";
    case nvinfer1::DataType::kBOOL: return "bool";
    default: return "other";
  }
}

std::vector<int64_t> to_vector(const nvinfer1::Dims& d) {
  std::vector<int64_t> v;
  for (int i = 0; i < d.nbDims; ++i) v.push_back(static_cast<int64_t>(d.d[i]));
  return v;
}

std::string shape_text(const std::vector<int64_t>& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + ")";
}

[[noreturn]] void trt_error(const std::string& what) { throw Error(Status::kTensorRtError, what); }

}  // namespace

struct Engine::Impl {
  std::unique_ptr<nvinfer1::IRuntime> runtime;
  std::unique_ptr<nvinfer1::ICudaEngine> engine;
  std::unique_ptr<nvinfer1::IExecutionContext> context;
  std::vector<TensorInfo> tensors;

  void load(const void* plan, std::size_t size) {
    runtime.reset(nvinfer1::createInferRuntime(logger()));
    if (!runtime) trt_error("createInferRuntime failed");
    engine.reset(runtime->deserializeCudaEngine(plan, size));
    if (!engine)
      trt_error("deserializeCudaEngine failed: the plan was built for another GPU or TensorRT version, "
                "or is corrupt; rebuild it from the ONNX file");
    context.reset(engine->createExecutionContext());
    if (!context) trt_error("createExecutionContext failed (out of device memory?)");
    for (int32_t i = 0; i < engine->getNbIOTensors(); ++i) {
      TensorInfo info;
      info.name = engine->getIOTensorName(i);
      info.is_input = engine->getTensorIOMode(info.name.c_str()) == nvinfer1::TensorIOMode::kINPUT;
      info.dtype = dtype_name(engine->getTensorDataType(info.name.c_str()));
      info.shape = to_vector(engine->getTensorShape(info.name.c_str()));
      tensors.push_back(info);
    }
  }
};

Engine::Engine(const std::string& plan_path) : impl_(new Impl) {
  std::ifstream f(plan_path, std::ios::binary);
  if (!f) throw Error(Status::kIoError, "cannot open TensorRT plan " + plan_path);
  const std::vector<char> blob((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (blob.empty()) throw Error(Status::kIoError, "empty TensorRT plan " + plan_path);
  impl_->load(blob.data(), blob.size());
}

Engine::Engine(const void* plan, std::size_t size) : impl_(new Impl) {
  require(plan != nullptr && size > 0, "TensorRT plan: null or empty buffer");
  impl_->load(plan, size);
}

Engine::~Engine() = default;

const std::vector<TensorInfo>& Engine::tensors() const { return impl_->tensors; }

const TensorInfo& Engine::tensor(const std::string& name) const {
  for (const auto& t : impl_->tensors)
    if (t.name == name) return t;
  throw Error(Status::kInvalidArgument, "engine has no I/O tensor named '" + name + "'");
}

std::vector<std::vector<int64_t>> Engine::profile(const std::string& input_name) const {
  const auto& e = *impl_->engine;
  return {to_vector(e.getProfileShape(input_name.c_str(), 0, nvinfer1::OptProfileSelector::kMIN)),
          to_vector(e.getProfileShape(input_name.c_str(), 0, nvinfer1::OptProfileSelector::kOPT)),
          to_vector(e.getProfileShape(input_name.c_str(), 0, nvinfer1::OptProfileSelector::kMAX))};
}

void Engine::set_input_shape(const std::string& name, const std::vector<int64_t>& shape) {
  require(tensor(name).is_input, "'" + name + "' is not an input");
  nvinfer1::Dims d{};
  require(shape.size() <= static_cast<size_t>(nvinfer1::Dims::MAX_DIMS), "too many dimensions");
  d.nbDims = static_cast<int32_t>(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) d.d[i] = shape[i];
  if (!impl_->context->setInputShape(name.c_str(), d))
    trt_error("setInputShape('" + name + "', " + shape_text(shape) +
              ") refused: outside the engine's optimisation profile");
}

void Engine::set_address(const std::string& name, void* device_ptr) {
  (void)tensor(name);
  if (!impl_->context->setTensorAddress(name.c_str(), device_ptr))
    trt_error("setTensorAddress('" + name + "') refused (null or misaligned pointer)");
}

std::vector<int64_t> Engine::resolved_shape(const std::string& name) const {
  return to_vector(impl_->context->getTensorShape(name.c_str()));
}

void Engine::enqueue(void* stream) {
  if (!impl_->context->enqueueV3(static_cast<cudaStream_t>(stream)))
    trt_error("enqueueV3 failed (unset input shape or tensor address, or a CUDA error)");
}

std::string Engine::trt_version() const {
  return std::to_string(NV_TENSORRT_MAJOR) + "." + std::to_string(NV_TENSORRT_MINOR) + "." +
         std::to_string(NV_TENSORRT_PATCH);
}

TensorRtRunner::TensorRtRunner(std::shared_ptr<Engine> engine, Names names)
    : engine_(std::move(engine)), names_(std::move(names)) {
  require(engine_ != nullptr, "TensorRT runner: engine is null");
  // Find the names by role where not given: the 4-D input (x_t‖c), the 1-D
  // input (timesteps) and the output (ε̂).
  for (const auto& t : engine_->tensors()) {
    if (t.is_input && t.shape.size() == 4 && names_.input.empty()) names_.input = t.name;
    if (t.is_input && t.shape.size() == 1 && names_.timesteps.empty()) names_.timesteps = t.name;
    if (!t.is_input && names_.output.empty()) names_.output = t.name;
  }
  require(!names_.input.empty() && !names_.timesteps.empty() && !names_.output.empty(),
          "TensorRT runner: the engine needs a 4-D input, a 1-D timestep input and an output");
  const TensorInfo& in = engine_->tensor(names_.input);
  const TensorInfo& ts = engine_->tensor(names_.timesteps);
  const TensorInfo& out = engine_->tensor(names_.output);
  require(in.dtype == "float32" || in.dtype == "float16",
          "TensorRT runner: input '" + in.name + "' is " + in.dtype + ", expected float32 or float16");
  require(out.dtype == in.dtype, "TensorRT runner: output dtype " + out.dtype + " differs from input " + in.dtype);
  require(ts.dtype == "float32", "TensorRT runner: timestep input '" + ts.name + "' is " + ts.dtype +
                                     ", expected float32 (export the U-Net with float timesteps)");
  dtype_ = in.dtype == "float16" ? DType::kFloat16 : DType::kFloat32;
}

TensorRtRunner::~TensorRtRunner() = default;

void TensorRtRunner::run(const void* input, const float* timesteps, void* output, int n, int h, int w,
                         void* stream) {
  require(input && timesteps && output, "TensorRT runner: null input, timesteps or output");
  // TensorRT refuses tensor addresses that are not 256-byte aligned; say which.
  const std::pair<const char*, const void*> ptrs[] = {{"input", input}, {"timesteps", timesteps}, {"output", output}};
  for (const auto& p : ptrs)
    require(reinterpret_cast<std::uintptr_t>(p.second) % 256 == 0,
            std::string("TensorRT runner: ") + p.first + " pointer is not 256-byte aligned");
  if (n != last_n_ || h != last_h_ || w != last_w_) {
    engine_->set_input_shape(names_.input, {n, 6, h, w});
    engine_->set_input_shape(names_.timesteps, {n});
    const auto out_shape = engine_->resolved_shape(names_.output);
    const std::vector<int64_t> want{n, 3, h, w};
    if (out_shape != want)
      throw Error(Status::kTensorRtError, "TensorRT runner: output shape " + shape_text(out_shape) +
                                              ", expected " + shape_text(want));
    last_n_ = n, last_h_ = h, last_w_ = w;
  }
  engine_->set_address(names_.input, const_cast<void*>(input));
  engine_->set_address(names_.timesteps, const_cast<float*>(timesteps));
  engine_->set_address(names_.output, output);
  engine_->enqueue(stream);
}

}  // namespace trt
}  // namespace drdc
