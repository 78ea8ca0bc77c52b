// The DDIM inpainting driver; mirrors drdc_trt/diffusion/inpaint.py
// inpaint_heat step for step (same coefficients, same buffers, same order).
#include "drdc/refiner.h"

#include <algorithm>
#include <string>
#include <utility>

#include "core/backends.h"
#include "core/cuda_api.h"
#include "core/device_buffer.h"
#include "drdc/status.h"

namespace drdc {


// Every pointer handed to the runner must be 256-byte aligned (TensorRT's
// rule for tensor addresses): the buffers are (core/device_buffer.cpp), and the
// timestep rows are padded to a multiple of 64 floats.
constexpr std::size_t kRunnerAlign = 256;
constexpr std::size_t kTimestepStride = kRunnerAlign / sizeof(float);

struct Refiner::Buffers {
  Buffer labels;     // J×H×W int32
  Buffer timesteps;  // num_steps rows of ts_stride floats, row i = t_i for the first N
  Buffer xt[2];      // ping-pong DDIM state, N×3×H×W
  Buffer unet_in;    // N×6×H×W net dtype
  Buffer eps;        // N×3×H×W net dtype
  Buffer fill, start, steps;  // generated noise, allocated on first use
};

// What a captured graph baked in: every pointer of the loop and the stream.
struct GraphKey {
  const void* ptr[6] = {};
  void* stream = nullptr;
  bool operator==(const GraphKey& o) const {
    return std::equal(ptr, ptr + 6, o.ptr) && stream == o.stream;
  }
};

struct Refiner::GraphState {
  cuda::Graph graph;
  GraphKey key;       // of the instantiated graph
  GraphKey warm_key;  // of the last eager (warm-up) run
  bool warm = false;
  bool disabled = false;
};

// Orders runs on different streams: the loop buffers of one run must not be
// overwritten by the next before the first is done with them.
struct Refiner::StreamOrder {
  int device = -1;       // the CUDA device holding the buffers
  void* done = nullptr;  // recorded on the stream of the last run
  void* last_stream = nullptr;
  bool used = false;
  ~StreamOrder() { cuda::event_destroy(done); }
};

namespace {

void validate_config(const RefinerConfig& c, const LabelMaps& labels, const Schedule& schedule,
                     const Runner* runner) {
  require(runner != nullptr, "refiner: runner is null");
  require(c.device == Device::kCPU || c.device == Device::kCUDA, "refiner: device must be cpu or cuda");
  require(runner->device() == c.device, std::string("refiner: runner runs on ") +
                                            device_name(runner->device()) + ", refiner on " +
                                            device_name(c.device));
  require(c.batch >= 1, "refiner: batch must be >= 1");
  require(c.num_sets >= 1, "refiner: num_sets must be >= 1");
  require(labels.J >= 1 && labels.H == c.height && labels.W == c.width,
          "refiner: labels are " + std::to_string(labels.J) + "x" + std::to_string(labels.H) + "x" +
              std::to_string(labels.W) + ", expected Jx" + std::to_string(c.height) + "x" +
              std::to_string(c.width));
  require(labels.data.size() == static_cast<size_t>(labels.J) * labels.H * labels.W,
          "refiner: labels data size does not match J*H*W");
  for (int32_t v : labels.data)
    require(v >= 0 && v < c.num_sets, "refiner: label value " + std::to_string(v) + " outside [0, num_sets)");
  require(!c.pool_factors.empty() && c.pool_factors.size() <= static_cast<size_t>(kMaxPoolFactors),
          "refiner: 1 to 4 pool factors");
  for (int f : c.pool_factors)
    require(f >= 1 && c.height % f == 0 && c.width % f == 0,
            "refiner: pool factor " + std::to_string(f) + " must divide H and W");
  require(c.t0 >= 1 && c.t0 < schedule.num_train_timesteps(),
          "refiner: t0=" + std::to_string(c.t0) + " must lie in [1, " +
              std::to_string(schedule.num_train_timesteps()) + ")");
}

}  // namespace

Refiner::Refiner(const RefinerConfig& config, const Schedule& schedule, const LabelMaps& labels,
                 std::shared_ptr<Runner> runner)
    : config_(config), schedule_(schedule), labels_(labels), runner_(std::move(runner)),
      buffers_(new Buffers), graph_(new GraphState), order_(new StreamOrder) {
  validate_config(config_, labels_, schedule_, runner_.get());
  timesteps_ = ddim_timesteps(config_.t0, config_.num_steps);
  const Device dev = config_.device;
  const size_t N = static_cast<size_t>(rows());
  const size_t HW = static_cast<size_t>(config_.height) * config_.width;
  const size_t net = dtype_size(runner_->dtype());
  if (dev == Device::kCUDA) {
    order_->device = cuda::current_device();  // the buffers below land there
    order_->done = cuda::event_create();
  }
  Buffers& b = *buffers_;
  b.labels = Buffer(dev, labels_.data.size() * sizeof(int32_t));
  b.labels.upload(labels_.data.data(), b.labels.bytes());
  ts_stride_ = (N + kTimestepStride - 1) / kTimestepStride * kTimestepStride;
  std::vector<float> ts(ts_stride_ * timesteps_.size(), 0.f);
  for (size_t i = 0; i < timesteps_.size(); ++i)
    std::fill(ts.begin() + static_cast<std::ptrdiff_t>(i * ts_stride_),
              ts.begin() + static_cast<std::ptrdiff_t>(i * ts_stride_ + N), static_cast<float>(timesteps_[i]));
  b.timesteps = Buffer(dev, ts.size() * sizeof(float));
  b.timesteps.upload(ts.data(), b.timesteps.bytes());
  for (auto& x : b.xt) x = Buffer(dev, N * 3 * HW * sizeof(float));
  b.unet_in = Buffer(dev, N * 6 * HW * net);
  b.eps = Buffer(dev, N * 3 * HW * net);
}

Refiner::~Refiner() = default;

int Refiner::rows() const noexcept { return config_.batch * labels_.J * config_.num_sets; }

int Refiner::count() const noexcept {
  return config_.num_steps * labels_.J * static_cast<int>(config_.pool_factors.size());
}

DType Refiner::net_dtype() const noexcept { return runner_->dtype(); }

void Refiner::set_noise_seed(uint64_t seed) noexcept {
  noise_seed_ = seed;
  noise_counter_ = 0;
}

LoopNoise Refiner::draw_noise(void* stream) {
  Buffers& b = *buffers_;
  const size_t plane = static_cast<size_t>(rows()) * 3 * config_.height * config_.width;
  if (!b.fill.data()) {
    b.fill = Buffer(config_.device, plane * sizeof(float));
    b.start = Buffer(config_.device, plane * sizeof(float));
    b.steps = Buffer(config_.device, plane * config_.num_steps * sizeof(float));
  }
  // Three independent Philox streams per run: fill, start, all steps.
  gaussian(config_.device, static_cast<float*>(b.fill.data()), plane, noise_seed_, noise_counter_, stream);
  gaussian(config_.device, static_cast<float*>(b.start.data()), plane, noise_seed_, noise_counter_ + 1, stream);
  gaussian(config_.device, static_cast<float*>(b.steps.data()), plane * config_.num_steps, noise_seed_,
           noise_counter_ + 2, stream);
  noise_counter_ += 3;
  return {static_cast<const float*>(b.fill.data()), static_cast<const float*>(b.start.data()),
          static_cast<const float*>(b.steps.data())};
}

namespace {

// On CUDA, run() has checked that every pointer lies on the refiner's GPU and made it
// current: the kernels are enqueued without the per-call device lookup of prepare()/step(),
// which would otherwise run inside a graph capture.
void enqueue_prepare(Device dev, const PrepareArgs& a, void* stream) {
  if (dev != Device::kCUDA) return prepare(dev, a, stream);
  validate(a);
  detail::prepare_cuda(a, stream);
}

void enqueue_step(Device dev, const StepArgs& a, void* stream) {
  if (dev != Device::kCUDA) return step(dev, a, stream);
  validate(a);
  detail::step_cuda(a, stream);
}

// CUDA's legacy and per-thread default streams (cudaStreamLegacy = 1,
// cudaStreamPerThread = 2): neither can be captured into a graph.
bool default_stream(const void* stream) {
  return stream == nullptr || stream == reinterpret_cast<void*>(1) || stream == reinterpret_cast<void*>(2);
}

}  // namespace

void Refiner::enqueue_loop(const float* x, float* heat, float* xt_out, const LoopNoise& noise, void* stream) {
  const Device dev = config_.device;
  Buffers& b = *buffers_;
  const int B = config_.batch, J = labels_.J, K = config_.num_sets, H = config_.height, W = config_.width;
  const int N = rows();
  const size_t plane = static_cast<size_t>(N) * 3 * H * W;
  const DType dtype = runner_->dtype();
  const auto* labels = static_cast<const int32_t*>(b.labels.data());
  float* xt[2] = {static_cast<float*>(b.xt[0].data()), static_cast<float*>(b.xt[1].data())};

  PrepareArgs pa;
  pa.x = x;
  pa.labels = labels;
  pa.fill_noise = noise.fill;
  pa.eps0 = noise.start;
  pa.xt = xt[0];
  pa.unet_in = b.unet_in.data();
  pa.B = B, pa.J = J, pa.K = K, pa.H = H, pa.W = W;
  pa.sqrt_ab = static_cast<float>(schedule_.sqrt_alpha_bar(timesteps_[0]));
  pa.sqrt_1mab = static_cast<float>(schedule_.sqrt_one_minus_alpha_bar(timesteps_[0]));
  pa.net_dtype = dtype;
  enqueue_prepare(dev, pa, stream);
  detail::zero_async(dev, heat, static_cast<size_t>(B) * H * W * sizeof(float), stream);

  StepArgs sa;
  sa.x = x;
  sa.labels = labels;
  sa.eps = b.eps.data();
  sa.unet_in = b.unet_in.data();
  sa.heat = heat;
  sa.B = B, sa.J = J, sa.K = K, sa.H = H, sa.W = W;
  sa.num_pool_factors = static_cast<int>(config_.pool_factors.size());
  for (int i = 0; i < sa.num_pool_factors; ++i) sa.pool_factors[i] = config_.pool_factors[static_cast<size_t>(i)];
  sa.clip_x0 = config_.clip_x0;
  sa.net_dtype = dtype;
  const auto* ts = static_cast<const float*>(b.timesteps.data());
  int cur = 0;
  for (size_t i = 0; i < timesteps_.size(); ++i) {
    const int t = timesteps_[i];
    const int t_next = i + 1 < timesteps_.size() ? timesteps_[i + 1] : -1;
    runner_->run(b.unet_in.data(), ts + i * ts_stride_, b.eps.data(), N, H, W, stream);
    sa.xt_in = xt[cur];
    sa.xt_out = xt[1 - cur];
    sa.noise = noise.steps + i * plane;
    sa.sqrt_ab = static_cast<float>(schedule_.sqrt_alpha_bar(t));
    sa.sqrt_1mab = static_cast<float>(schedule_.sqrt_one_minus_alpha_bar(t));
    sa.sqrt_ab_next = static_cast<float>(schedule_.sqrt_alpha_bar(t_next));
    sa.sqrt_1mab_next = static_cast<float>(schedule_.sqrt_one_minus_alpha_bar(t_next));
    enqueue_step(dev, sa, stream);
    cur = 1 - cur;
  }
  if (xt_out) detail::copy_async(dev, xt_out, xt[cur], plane * sizeof(float), stream);
}

int Refiner::run(const float* x, float* heat, float* xt_out, const LoopNoise& noise, void* stream) {
  require(x != nullptr, "refiner.run: x is a null pointer");
  require(heat != nullptr, "refiner.run: heat is a null pointer");
  const bool given = noise.fill || noise.start || noise.steps;
  require(!given || (noise.fill && noise.start && noise.steps),
          "refiner.run: pass all of the noise buffers (fill, start, steps) or none");
  if (config_.device != Device::kCUDA) return launch(x, heat, xt_out, given ? noise : draw_noise(stream), stream);

  StreamOrder& o = *order_;
  // Every buffer on the refiner's GPU, checked here, outside any capture: the loop's kernels are
  // enqueued without a per-call pointer lookup (enqueue_loop), and host memory would fault there.
  const auto on_device = [&](const void* p, const char* name) {
    const int d = cuda::pointer_device(p);
    require(d == o.device, std::string("refiner.run: ") + name + (d < 0 ? " is not in GPU memory" :
            " is on CUDA device " + std::to_string(d)) + "; the refiner's buffers are on device " +
            std::to_string(o.device));
  };
  on_device(x, "x");
  on_device(heat, "heat");
  if (xt_out) on_device(xt_out, "xt_out");
  if (given) {
    on_device(noise.fill, "noise.fill");
    on_device(noise.start, "noise.start");
    on_device(noise.steps, "noise.steps");
  }
  const ScopedDevice on(o.device);
  // Outside any capture: a run on another stream first waits for the last one.
  if (o.used && o.last_stream != stream) cuda::stream_wait_event(stream, o.done);
  const int n = launch(x, heat, xt_out, given ? noise : draw_noise(stream), stream);
  cuda::event_record(o.done, stream);
  o.used = true;
  o.last_stream = stream;
  return n;
}

int Refiner::launch(const float* x, float* heat, float* xt_out, const LoopNoise& nz, void* stream) {
  GraphState& g = *graph_;
  const bool graphable = config_.device == Device::kCUDA && config_.cuda_graph && runner_->capturable() &&
                         !default_stream(stream) && !g.disabled;
  if (!graphable) {
    enqueue_loop(x, heat, xt_out, nz, stream);
    return count();
  }
  GraphKey key;
  const void* ptrs[6] = {x, heat, xt_out, nz.fill, nz.start, nz.steps};
  std::copy(ptrs, ptrs + 6, key.ptr);
  key.stream = stream;
  if (g.graph.ready() && g.key == key) {
    g.graph.launch(stream);
    ++graph_replays_;
    return count();
  }
  if (!(g.warm && g.warm_key == key)) {
    // First run with these pointers: eager, so the runner does its lazy
    // set-up (allocations, shape binding) outside any capture.
    enqueue_loop(x, heat, xt_out, nz, stream);
    g.warm_key = key;
    g.warm = true;
    return count();
  }
  auto give_up = [&](const std::string& why) {
    g.disabled = true;
    graph_error_ = why;
    enqueue_loop(x, heat, xt_out, nz, stream);
    return count();
  };
  try {
    g.graph.begin_capture(stream);
  } catch (const std::exception& e) {
    return give_up(e.what());
  }
  try {
    enqueue_loop(x, heat, xt_out, nz, stream);
  } catch (const std::exception& e) {
    g.graph.end_capture(stream, /*ok=*/false);
    return give_up(std::string("capture failed: ") + e.what());
  } catch (...) {
    g.graph.end_capture(stream, /*ok=*/false);
    return give_up("capture failed: unknown exception");
  }
  try {
    g.graph.end_capture(stream, /*ok=*/true);
  } catch (const std::exception& e) {
    return give_up(e.what());
  }
  g.key = key;
  ++graph_captures_;
  g.graph.launch(stream);
  return count();
}

}  // namespace drdc
