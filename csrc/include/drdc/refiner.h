// The C++ DDIM inpainting driver (DESIGN §1.3, §2): owns the schedule, the
// timesteps, the label maps and every loop buffer, calls a Runner once per
// step and the fused kernels in between. It computes what
// drdc_trt.diffusion.inpaint.inpaint_heat computes.
//
// On CUDA, when the runner is capturable, the config allows it and the stream
// is not the legacy default stream, the loop is captured into a CUDA graph and
// replayed: the first run() with a given set of pointers and stream runs
// eagerly (it warms the runner up: lazy allocations, autotuning), the second
// captures and launches the graph, later ones only replay it. A capture that
// fails disables graphs for this refiner (graph_error() says why) and the loop
// runs eagerly.
//
// CUDA: the buffers live on the device current at construction, and run()
// makes that device current. Runs on different streams are ordered by an
// event (the loop buffers are shared). Every pointer the runner receives
// (input, timesteps, output) is 256-byte aligned.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "drdc/kernels.h"
#include "drdc/rng.h"
#include "drdc/runner.h"
#include "drdc/schedule.h"
#include "drdc/types.h"

namespace drdc {

struct RefinerConfig {
  Device device = Device::kCPU;
  int batch = 1;   // B images per run
  int height = 0;  // H = W = image size for generated labels
  int width = 0;
  int num_sets = 2;  // K
  int t0 = 250;
  int num_steps = 10;
  std::vector<int> pool_factors{1, 2};  // 1..4 factors, each dividing H and W
  bool clip_x0 = true;
  bool cuda_graph = true;
};

// Noise buffers of one run, on the refiner's device: fill and start are
// N×3×H×W, steps is num_steps×N×3×H×W. All null: the refiner draws them
// with its counter-based generator (see set_noise_seed).
struct LoopNoise {
  const float* fill = nullptr;
  const float* start = nullptr;
  const float* steps = nullptr;
};

class Refiner {
 public:
  // labels: J×H×W host array with values in [0, num_sets); J = labels.J.
  Refiner(const RefinerConfig& config, const Schedule& schedule, const LabelMaps& labels,
          std::shared_ptr<Runner> runner);
  ~Refiner();
  Refiner(const Refiner&) = delete;
  Refiner& operator=(const Refiner&) = delete;

  // x: B×3×H×W float32 in [-1, 1]; heat (out): B×H×W float32 sum of the
  // per-step heatmap terms; xt_out (optional): N×3×H×W final reconstruction
  // of every row. All on the refiner's device; CUDA work is enqueued on
  // `stream`, CPU work is done on return. Returns count() (terms per pixel).
  int run(const float* x, float* heat, float* xt_out = nullptr, const LoopNoise& noise = {},
          void* stream = nullptr);

  // Seed of the generated noise; each run without noise draws a fresh slice.
  void set_noise_seed(uint64_t seed) noexcept;

  const RefinerConfig& config() const noexcept { return config_; }
  int rows() const noexcept;  // N = B·J·K
  int specs() const noexcept { return labels_.J; }
  int count() const noexcept;  // num_steps · J · len(pool_factors)
  DType net_dtype() const noexcept;
  const std::vector<int>& timesteps() const noexcept { return timesteps_; }
  const LabelMaps& labels() const noexcept { return labels_; }
  const Schedule& schedule() const noexcept { return schedule_; }

  // CUDA graph bookkeeping (all zero on CPU).
  int graph_captures() const noexcept { return graph_captures_; }
  int graph_replays() const noexcept { return graph_replays_; }
  const std::string& graph_error() const noexcept { return graph_error_; }

 private:
  struct Buffers;
  struct GraphState;
  struct StreamOrder;
  int launch(const float* x, float* heat, float* xt_out, const LoopNoise& noise, void* stream);
  void enqueue_loop(const float* x, float* heat, float* xt_out, const LoopNoise& noise, void* stream);
  LoopNoise draw_noise(void* stream);

  RefinerConfig config_;
  Schedule schedule_;
  LabelMaps labels_;
  std::shared_ptr<Runner> runner_;
  std::vector<int> timesteps_;
  std::unique_ptr<Buffers> buffers_;
  std::unique_ptr<GraphState> graph_;
  std::unique_ptr<StreamOrder> order_;
  std::size_t ts_stride_ = 0;  // floats per timestep row (N rounded up to 64)
  uint64_t noise_seed_ = 0;
  uint64_t noise_counter_ = 0;
  int graph_captures_ = 0;
  int graph_replays_ = 0;
  std::string graph_error_;
};

}  // namespace drdc
