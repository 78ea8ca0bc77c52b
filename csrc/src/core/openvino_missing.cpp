// Built when CMake found no OpenVINO: the OpenVINO classes exist (so a host
// compiles and links either way) and every entry point throws kNotCompiled.
#include "drdc/openvino.h"

#include <exception>

#include "drdc/status.h"

namespace drdc {

bool built_with_openvino() noexcept { return false; }

namespace openvino {
namespace {
[[noreturn]] void no_openvino() {
  throw Error(Status::kNotCompiled,
              "drdc was built without OpenVINO (configure with -DDRDC_WITH_OPENVINO=ON and the openvino Python "
              "package installed, or -DOpenVINO_DIR=<folder of OpenVINOConfig.cmake>)");
}
}  // namespace

std::vector<std::string> available_devices() { no_openvino(); }
std::string version() { no_openvino(); }

struct Network::Impl {};
Network::Network(const std::string&, const std::vector<TensorSpec>&, const TensorSpec&, const Options&) {
  no_openvino();
}
Network::~Network() = default;
std::vector<int64_t> Network::infer(const std::vector<const float*>&, const std::vector<std::vector<int64_t>>&,
                                    float*, std::size_t) {
  no_openvino();
}
std::vector<int64_t> Network::infer_streams(const std::vector<const float*>&, const std::vector<std::vector<int64_t>>&,
                                            float*, std::size_t) {
  no_openvino();
}
int Network::streams() const noexcept { std::terminate(); }
const std::string& Network::path() const noexcept { std::terminate(); }
const std::string& Network::device() const noexcept { std::terminate(); }
const std::string& Network::precision() const noexcept { std::terminate(); }
const std::vector<TensorSpec>& Network::inputs() const noexcept { std::terminate(); }
const TensorSpec& Network::output() const noexcept { std::terminate(); }

OpenVINORunner::OpenVINORunner(std::shared_ptr<Network>) { no_openvino(); }
OpenVINORunner::~OpenVINORunner() = default;
void OpenVINORunner::run(const void*, const float*, void*, int, int, int, void*) { no_openvino(); }

}  // namespace openvino
}  // namespace drdc
