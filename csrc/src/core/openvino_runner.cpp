// OpenVINO network and runner (compiled only when CMake finds OpenVINO, e.g.
// the CMake config the `openvino` Python wheel carries). Written against the
// OpenVINO 2024+ C++ API: ov::Core::read_model (the ONNX frontend),
// compile_model with ov::hint::inference_precision, ov::InferRequest with
// ov::Tensor views of host memory bound by name (set_tensor), infer().
#include "drdc/openvino.h"

#include <openvino/openvino.hpp>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "drdc/status.h"

namespace drdc {

bool built_with_openvino() noexcept { return true; }

namespace openvino {
namespace {

ov::Core& core() {
  static ov::Core instance;  // loads the device plugins on first use
  return instance;
}

std::string trimmed(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  return s;
}

// Runs fn(); an OpenVINO (or any non-drdc) exception becomes Error(status, "OpenVINO: <what>: <message>").
template <class Fn>
auto guarded(Status status, const std::string& what, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {  // ov::Exception is a std::runtime_error
    throw Error(status, "OpenVINO: " + what + ": " + trimmed(e.what()));
  }
}

std::string upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

std::string list_text(const std::vector<std::string>& v) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + v[i];
  return out + "]";
}

std::string shape_text(const std::vector<int64_t>& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) out += (i ? "x" : "") + (s[i] < 0 ? std::string("batch") : std::to_string(s[i]));
  return out;
}

// The physical devices a device string names: GPU.1 → [GPU.1]; AUTO:GPU,CPU → [GPU, CPU]; AUTO → [].
std::vector<std::string> physical(const std::string& device) {
  const size_t colon = device.find(':');
  const std::string head = device.substr(0, colon);
  if (head != "AUTO" && head != "MULTI" && head != "HETERO") return {device};
  std::vector<std::string> out;
  if (colon == std::string::npos) return out;
  std::string rest = device.substr(colon + 1), item;
  for (size_t i = 0; i <= rest.size(); ++i) {
    if (i == rest.size() || rest[i] == ',') {
      if (!item.empty()) out.push_back(item);
      item.clear();
    } else if (!std::isspace(static_cast<unsigned char>(rest[i]))) {
      item += rest[i];
    }
  }
  return out;
}

void check_device(const std::string& device, const std::string& precision) {
  const std::vector<std::string> have = available_devices();
  for (const std::string& d : physical(device)) {
    const bool found = std::any_of(have.begin(), have.end(), [&](const std::string& h) {
      return h == d || h.substr(0, h.find('.')) == d;  // "GPU" matches "GPU.0"
    });
    if (!found)
      throw Error(Status::kInvalidArgument, "OpenVINO device '" + device + "': " + d +
                                                " is not available on this machine (OpenVINO sees " + list_text(have) +
                                                "); GPU needs the Intel GPU driver (OpenCL), NPU the Intel NPU driver");
  }
  if (precision == "bf16") {
    std::vector<std::string> devs = physical(device);
    if (devs.empty()) devs = {"CPU"};
    for (const std::string& d : devs) {
      const auto caps = guarded(Status::kRunnerError, "capabilities of " + d,
                                [&] { return core().get_property(d, ov::device::capabilities); });
      if (std::find(caps.begin(), caps.end(), "BF16") == caps.end())
        throw Error(Status::kInvalidArgument, "OpenVINO precision bf16: device " + d + " does not support it "
                                              "(its capabilities: " + list_text(caps) + ")");
    }
  }
}

void check_port(const std::string& path, const TensorSpec& spec, const ov::Output<ov::Node>& port) {
  const ov::PartialShape ps = port.get_partial_shape();
  bool ok = ps.rank().is_static() && ps.rank().get_length() == static_cast<int64_t>(spec.shape.size());
  for (size_t i = 0; ok && i < spec.shape.size(); ++i)
    ok = spec.shape[i] < 0 || (ps[i].is_static() && ps[i].get_length() == spec.shape[i]);
  if (!ok)
    throw Error(Status::kInvalidArgument, path + ": tensor '" + spec.name + "' has shape " + ps.to_string() +
                                              " in the graph, manifest.json says " + shape_text(spec.shape));
  if (spec.dtype != "float32" || port.get_element_type() != ov::element::f32)
    throw Error(Status::kInvalidArgument, path + ": tensor '" + spec.name + "' is " +
                                              port.get_element_type().get_type_name() + " in the graph (manifest.json: " +
                                              spec.dtype + "); the OpenVINO runner takes float32 tensors");
}

}  // namespace

std::vector<std::string> available_devices() {
  return guarded(Status::kRunnerError, "listing devices", [] { return core().get_available_devices(); });
}

std::string version() { return ov::get_openvino_version().buildNumber; }

struct Network::Impl {
  std::string path, device, precision;
  std::vector<TensorSpec> inputs;
  TensorSpec output;
  ov::CompiledModel compiled, throughput;
  ov::InferRequest request;
  std::vector<ov::InferRequest> streams;  // one per stream of `throughput` (empty: latency only)
};

Network::Network(const std::string& onnx_path, const std::vector<TensorSpec>& inputs, const TensorSpec& output,
                 const Options& options)
    : impl_(new Impl) {
  Impl& m = *impl_;
  m.path = onnx_path, m.inputs = inputs, m.output = output;
  m.device = upper(options.device.empty() ? std::string("CPU") : options.device);
  m.precision = options.precision.empty() ? std::string("f32") : options.precision;
  require(m.precision == "f32" || m.precision == "bf16",
          "OpenVINO precision '" + m.precision + "': choose f32 or bf16 (an int8 network is an int8 IR "
          "compiled with f32: drdc export --int8)");
  require(options.threads >= 0, "OpenVINO threads must be >= 0, got " + std::to_string(options.threads));
  require(!inputs.empty(), onnx_path + ": no input specs given");
  if (!std::ifstream(onnx_path, std::ios::binary)) throw Error(Status::kIoError, "cannot open ONNX file " + onnx_path);
  check_device(m.device, m.precision);

  const std::shared_ptr<ov::Model> model =
      guarded(Status::kIoError, "reading " + onnx_path, [&] { return core().read_model(onnx_path); });
  std::vector<std::string> got_in, got_out, want_in;
  for (const auto& p : model->inputs()) got_in.push_back(p.get_any_name());
  for (const auto& p : model->outputs()) got_out.push_back(p.get_any_name());
  for (const auto& s : inputs) want_in.push_back(s.name);
  if (got_in != want_in || std::find(got_out.begin(), got_out.end(), output.name) == got_out.end())
    throw Error(Status::kInvalidArgument, onnx_path + ": graph has inputs " + list_text(got_in) + " and outputs " +
                                              list_text(got_out) + "; manifest.json says inputs " + list_text(want_in) +
                                              " and output " + output.name);
  for (size_t i = 0; i < inputs.size(); ++i) check_port(onnx_path, inputs[i], model->input(i));
  check_port(onnx_path, output, model->output(output.name));

  ov::AnyMap config{{ov::hint::inference_precision.name(),
                     m.precision == "bf16" ? ov::element::bf16 : ov::element::f32},
                    {ov::hint::performance_mode.name(), ov::hint::PerformanceMode::LATENCY}};
  if (options.threads > 0 && physical(m.device).size() == 1 && physical(m.device)[0] == m.device)
    config.emplace(ov::inference_num_threads.name(), options.threads);
  m.compiled = guarded(Status::kRunnerError, "compiling " + onnx_path + " for " + m.device,
                       [&] { return core().compile_model(model, m.device, config); });
  m.request = guarded(Status::kRunnerError, "creating an infer request", [&] { return m.compiled.create_infer_request(); });
  if (options.streams != 0 && options.streams != 1 && m.device == "CPU") {
    ov::AnyMap tp = config;
    tp[ov::hint::performance_mode.name()] = ov::hint::PerformanceMode::THROUGHPUT;
    if (options.streams > 1) tp.emplace(ov::num_streams.name(), ov::streams::Num(options.streams));
    guarded(Status::kRunnerError, "compiling " + onnx_path + " for CPU streams", [&] {
      m.throughput = core().compile_model(model, m.device, tp);
      const int n = m.throughput.get_property(ov::num_streams).num;
      for (int i = 0; n > 1 && i < n; ++i) m.streams.push_back(m.throughput.create_infer_request());
      return 0;
    });
  }
}

Network::~Network() = default;

std::vector<int64_t> Network::infer(const std::vector<const float*>& inputs,
                                    const std::vector<std::vector<int64_t>>& shapes, float* output,
                                    std::size_t capacity) {
  Impl& m = *impl_;
  require(inputs.size() == m.inputs.size() && shapes.size() == m.inputs.size(),
          m.path + ": takes " + std::to_string(m.inputs.size()) + " inputs, got " + std::to_string(inputs.size()));
  require(output != nullptr, m.path + ": null output buffer");
  for (size_t i = 0; i < inputs.size(); ++i) {
    const TensorSpec& spec = m.inputs[i];
    const auto& shape = shapes[i];
    bool ok = inputs[i] != nullptr && shape.size() == spec.shape.size();
    for (size_t d = 0; ok && d < shape.size(); ++d) ok = shape[d] >= 1 && (spec.shape[d] < 0 || shape[d] == spec.shape[d]);
    if (ok && i > 0) ok = shape[0] == shapes[0][0];
    if (!ok) {
      std::vector<int64_t> got(shape.begin(), shape.end());
      throw Error(Status::kInvalidArgument, m.path + ": input '" + spec.name + "' expects " + shape_text(spec.shape) +
                                                " float32 (one batch for all inputs), got " +
                                                (inputs[i] ? shape_text(got) : std::string("a null pointer")));
    }
  }
  const int64_t rows = shapes[0][0];
  if (m.streams.size() > 1 && rows >= 2) return infer_streams(inputs, shapes, output, capacity);
  return guarded(Status::kRunnerError, "running " + m.path, [&] {
    for (size_t i = 0; i < inputs.size(); ++i) {
      // A view of the caller's memory (no copy); OpenVINO only reads inputs.
      ov::Tensor t(ov::element::f32, ov::Shape(shapes[i].begin(), shapes[i].end()), const_cast<float*>(inputs[i]));
      m.request.set_tensor(m.inputs[i].name, t);
    }
    m.request.infer();
    const ov::Tensor out = m.request.get_tensor(m.output.name);
    const ov::Shape s = out.get_shape();
    std::vector<int64_t> shape(s.begin(), s.end());
    if (out.get_element_type() != ov::element::f32 || out.get_size() > capacity)
      throw Error(Status::kRunnerError, m.path + ": output '" + m.output.name + "' of shape " + shape_text(shape) +
                                            " does not fit the " + std::to_string(capacity) + " floats given");
    std::memcpy(output, out.data<const float>(), out.get_byte_size());
    return shape;
  });
}

// Rows split into near-equal contiguous chunks, one per stream, run at once; each chunk's output is
// copied to its rows of `output`. Every row goes through the same compiled kernels as in one call.
std::vector<int64_t> Network::infer_streams(const std::vector<const float*>& inputs,
                                            const std::vector<std::vector<int64_t>>& shapes, float* output,
                                            std::size_t capacity) {
  Impl& m = *impl_;
  const int64_t n = shapes[0][0];
  const int64_t k = std::min<int64_t>(static_cast<int64_t>(m.streams.size()), n);
  return guarded(Status::kRunnerError, "running " + m.path + " on " + std::to_string(k) + " streams", [&] {
    std::vector<int64_t> lo(k + 1);
    for (int64_t j = 0; j <= k; ++j) lo[j] = (j * n + k / 2) / k;
    for (int64_t j = 0; j < k; ++j) {
      for (size_t i = 0; i < inputs.size(); ++i) {
        std::vector<size_t> dims(shapes[i].begin(), shapes[i].end());
        size_t row = 1;
        for (size_t d = 1; d < dims.size(); ++d) row *= dims[d];
        dims[0] = static_cast<size_t>(lo[j + 1] - lo[j]);
        ov::Tensor t(ov::element::f32, ov::Shape(dims), const_cast<float*>(inputs[i]) + lo[j] * row);
        m.streams[j].set_tensor(m.inputs[i].name, t);
      }
      m.streams[j].start_async();
    }
    std::vector<int64_t> shape;
    size_t written = 0;
    for (int64_t j = 0; j < k; ++j) {
      m.streams[j].wait();
      const ov::Tensor out = m.streams[j].get_tensor(m.output.name);
      const ov::Shape s = out.get_shape();
      if (out.get_element_type() != ov::element::f32 || written + out.get_size() > capacity)
        throw Error(Status::kRunnerError, m.path + ": output '" + m.output.name + "' does not fit the " +
                                              std::to_string(capacity) + " floats given");
      std::memcpy(output + written, out.data<const float>(), out.get_byte_size());
      written += out.get_size();
      if (shape.empty()) shape.assign(s.begin(), s.end()), shape[0] = 0;
      shape[0] += static_cast<int64_t>(s[0]);
    }
    return shape;
  });
}

int Network::streams() const noexcept { return impl_->streams.size() > 1 ? static_cast<int>(impl_->streams.size()) : 1; }

const std::string& Network::path() const noexcept { return impl_->path; }
const std::string& Network::device() const noexcept { return impl_->device; }
const std::string& Network::precision() const noexcept { return impl_->precision; }
const std::vector<TensorSpec>& Network::inputs() const noexcept { return impl_->inputs; }
const TensorSpec& Network::output() const noexcept { return impl_->output; }

OpenVINORunner::OpenVINORunner(std::shared_ptr<Network> unet) : unet_(std::move(unet)) {
  require(unet_ != nullptr, "OpenVINO runner: network is null");
  const auto& in = unet_->inputs();
  const auto& out = unet_->output();
  require(in.size() == 2 && in[0].shape.size() == 4 && in[0].shape[1] == 6 && in[1].shape.size() == 1 &&
              out.shape.size() == 4 && out.shape[1] == 3,
          "OpenVINO runner: " + unet_->path() + " must take x N×6×H×W and timesteps N and give eps N×3×H×W");
}

OpenVINORunner::~OpenVINORunner() = default;

void OpenVINORunner::run(const void* input, const float* timesteps, void* output, int n, int h, int w, void*) {
  require(input && timesteps && output, "OpenVINO runner: null input, timesteps or output");
  require(n >= 1 && h >= 1 && w >= 1, "OpenVINO runner: empty batch or image");
  const std::vector<int64_t> want{n, 3, h, w};
  const auto got = unet_->infer({static_cast<const float*>(input), timesteps}, {{n, 6, h, w}, {n}},
                                static_cast<float*>(output), static_cast<std::size_t>(n) * 3 * h * w);
  if (got != want)
    throw Error(Status::kRunnerError, "OpenVINO runner: " + unet_->path() + " gave eps of shape " + shape_text(got) +
                                          ", expected " + shape_text(want));
}

}  // namespace openvino
}  // namespace drdc
