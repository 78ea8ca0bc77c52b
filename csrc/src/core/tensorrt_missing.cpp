// Built when CMake found no TensorRT: the TensorRT classes exist (so a host
// compiles and links either way) and every constructor throws kNotCompiled.
#include "drdc/status.h"
#include "drdc/tensorrt.h"

namespace drdc {
namespace trt {
namespace {
[[noreturn]] void no_trt() {
  throw Error(Status::kNotCompiled,
              "drdc was built without TensorRT (NvInfer.h / libnvinfer not found at configure time)");
}
}  // namespace

struct Engine::Impl {};
Engine::Engine(const std::string&) { no_trt(); }
Engine::Engine(const void*, std::size_t) { no_trt(); }
Engine::~Engine() = default;
const std::vector<TensorInfo>& Engine::tensors() const { no_trt(); }
const TensorInfo& Engine::tensor(const std::string&) const { no_trt(); }
std::vector<std::vector<int64_t>> Engine::profile(const std::string&) const { no_trt(); }
void Engine::set_input_shape(const std::string&, const std::vector<int64_t>&) { no_trt(); }
void Engine::set_address(const std::string&, void*) { no_trt(); }
std::vector<int64_t> Engine::resolved_shape(const std::string&) const { no_trt(); }
void Engine::enqueue(void*) { no_trt(); }
std::string Engine::trt_version() const { no_trt(); }

TensorRtRunner::TensorRtRunner(std::shared_ptr<Engine>, Names) { no_trt(); }
TensorRtRunner::~TensorRtRunner() = default;
void TensorRtRunner::run(const void*, const float*, void*, int, int, int, void*) { no_trt(); }

}  // namespace trt
}  // namespace drdc
