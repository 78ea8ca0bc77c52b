// The three fused kernels of the DDIM inpainting loop (DESIGN §2), and those of
// the other methods (DiffusionAD's norm_guided, GLAD's glad_predict/glad_update),
// each with a CPU and a CUDA implementation. Their definition is the PyTorch reference in
// drdc_trt/ops.py (reference_prepare / reference_step / reference_fuse).
//
// Layout (all buffers dense, NCHW, on the device the call names):
//   x        B×3×H×W  float32  input image in [-1, 1]
//   labels   J×H×W    int32    set (0..K-1) of the grid cell of each pixel, per spec j
//   rows     N = B·J·K, row n = (b·J + j)·K + k; row (j, k) treats set k as unknown
//   xt       N×3×H×W  float32  DDIM state x_t
//   unet_in  N×6×H×W  net      concat(x_t, c)
//   eps      N×3×H×W  net      network output ε̂
//   heat     B×H×W    float32  running sum of the heatmap terms
// "net" is float32 or float16 (DType). A label outside [0, K) is refused on the
// CPU (kInvalidArgument); on CUDA, whose labels validation does not read, it makes
// the pixel known in every row (as the reference's labels != k does) and adds no heat.
//
// Outputs must not overlap inputs (unet_in and heat are read-modify-write).
// Every entry point validates its arguments (Error kInvalidArgument), then runs
// on the CPU (synchronously) or enqueues on the CUDA stream `stream`
// (a cudaStream_t; nullptr = legacy default stream). A CUDA call in a build
// without CUDA throws Error kNotCompiled.
#pragma once

#include <cstdint>

#include "drdc/types.h"

namespace drdc {

constexpr int kMaxPoolFactors = 4;

struct PrepareArgs {
  const float* x = nullptr;
  const int32_t* labels = nullptr;
  const float* fill_noise = nullptr;  // N×3×H×W, fills the unknown cells of c
  const float* eps0 = nullptr;        // N×3×H×W, ε of x_{t0}
  float* xt = nullptr;                // out: N×3×H×W
  void* unet_in = nullptr;            // out: N×6×H×W (net dtype)
  int B = 0, J = 0, K = 0, H = 0, W = 0;
  float sqrt_ab = 0.f, sqrt_1mab = 0.f;  // √ᾱ_{t0}, √(1−ᾱ_{t0})
  DType net_dtype = DType::kFloat32;
};

struct StepArgs {
  const float* x = nullptr;
  const int32_t* labels = nullptr;
  const float* xt_in = nullptr;   // N×3×H×W, x_t
  const void* eps = nullptr;      // N×3×H×W (net dtype), ε̂ at t
  const float* noise = nullptr;   // N×3×H×W, ε' of the known-region re-noising
  float* xt_out = nullptr;        // out: N×3×H×W, x_t' (must not alias xt_in)
  void* unet_in = nullptr;        // in/out: channels 0..2 := x_t'
  float* heat = nullptr;          // in/out: B×H×W, += heatmap term
  int B = 0, J = 0, K = 0, H = 0, W = 0;
  float sqrt_ab = 0.f, sqrt_1mab = 0.f;            // at t
  float sqrt_ab_next = 0.f, sqrt_1mab_next = 0.f;  // at t' (1, 0 for the clean end)
  int pool_factors[kMaxPoolFactors] = {1, 0, 0, 0};
  int num_pool_factors = 1;
  bool clip_x0 = true;
  DType net_dtype = DType::kFloat32;
};

struct FuseArgs {
  const float* heat = nullptr;  // B×H×W
  const float* base = nullptr;  // B×h×w, base-model map
  float* final_map = nullptr;   // out: B×H×W
  float* diff_map = nullptr;    // out: B×H×W, mean-filtered heat/count
  float* base_up = nullptr;     // out: B×H×W, bilinear up-sampled base
  float* score = nullptr;       // out: B
  int B = 0, H = 0, W = 0, h = 0, w = 0;
  float inv_count = 1.f;
  int mean_filter = 1;          // odd size; zero padding excluded from the divisor
  float mu_d = 0.f, sd_d = 1.f, mu_b = 0.f, sd_b = 1.f;
  double lam = 0.9;             // double: 1−λ is formed in double, as the Python reference does
  int score_window = 1;         // avg-pool window of the image score, stride 1
};

// prepare: c = M·x + (1−M)·fill, x_{t0} = √ᾱ·c + √(1−ᾱ)·ε0; writes xt and unet_in.
void prepare(Device device, const PrepareArgs& args, void* stream = nullptr);

// step: x̂0 = clip((x_t − √(1−ᾱ_t)·ε̂)/√ᾱ_t), unknown = √ᾱ_t'·x̂0 + √(1−ᾱ_t')·ε̂,
// known = √ᾱ_t'·x + √(1−ᾱ_t')·ε', x_t' = M·known + (1−M)·unknown, and
// heat[b,p] += Σ_j Σ_f ‖avgpool_f(x − x̂0)‖₂(p) on the row (j, labels[j,p]).
void step(Device device, const StepArgs& args, void* stream = nullptr);

// fuse: diffusion map = mean_filter(heat·inv_count), base_up = bilinear(base),
// final = λ·(hd−μ_d)/σ_d + (1−λ)·(hb−μ_b)/σ_b, score = max of avgpool_window(final).
void fuse(Device device, const FuseArgs& args, void* stream = nullptr);

// DiffusionAD's norm-guided one-step combination (definition:
// drdc_trt.ops.reference_norm_guided), element-wise over `count` floats, with
// ᾱ_a = ab_a, ᾱ_b = ab_b:
//   x0_b = clamp((x_b − √(1−ᾱ_b)·e_b)/√ᾱ_b)
//   ê    = e_a − (w·√(1−ᾱ_a))·((√ᾱ_a·x0_b + √(1−ᾱ_a)·e_a) − x_a)
//   x0_g = clamp((x_a − √(1−ᾱ_a)·ê)/√ᾱ_a)
// (clamps to [-1, 1] unless clamp is false). x0_b is written when not null.
// Outputs may alias inputs (each element is read before it is written).
struct NormGuidedArgs {
  const float* x_a = nullptr;  // x noised to t_a
  const float* e_a = nullptr;  // U(x_a, t_a)
  const float* x_b = nullptr;  // x noised to t_b
  const float* e_b = nullptr;  // U(x_b, t_b)
  float* x0_g = nullptr;       // out
  float* x0_b = nullptr;       // out, optional
  int64_t count = 0;
  float ab_a = 0.f, ab_b = 0.f;  // ᾱ at t_a, t_b, in (0, 1]
  float w = 1.f;
  bool clamp = true;
};

void norm_guided(Device device, const NormGuidedArgs& args, void* stream = nullptr);

// GLAD's per-row step (definition: drdc_trt.ops.reference_glad_predict /
// reference_glad_update; one step = predict → [feature network: A, score, w] → update).
//
// glad_predict, element-wise over `count` floats with sa = √ᾱ, sma = √(1−ᾱ):
//   x0_gen = clamp((x_t − sma·ε̂)/sa)
//   x0_in  = clamp(((sa·x + sma·noise) − sma·ε̂)/sa)
// (clamps to [-1, 1] unless clip is false). Outputs may alias inputs. The caller
// forms sa and sma (drdc_trt.ops forms them with torch, as the reference does: torch's
// float32 √ is not correctly rounded for every ᾱ on every CPU).
struct GladPredictArgs {
  const float* x_t = nullptr;    // the rows' current sample
  const float* x = nullptr;      // the input images
  const float* noise = nullptr;  // the loop's noise ε
  const float* eps = nullptr;    // U(x_t, t)
  float* x0_gen = nullptr;       // out
  float* x0_in = nullptr;        // out
  int64_t count = 0;
  float sqrt_ab = 0.f;           // √ᾱ_t in (0, 1]
  float sqrt_1mab = 0.f;         // √(1−ᾱ_t) in [0, 1]
  bool clip = true;
};

// glad_update, per row b of B (P = C·H·W elements, w broadcast over C), on the
// row state in place; rows that are done are not written at all:
//   active = !done, checking = active && !triggered && trigger_kind != 2
//   trig = checking && score > tau (NaN: false), fall = checking && !trig && t < min_step
//   stop = fall && fallback_stops
//   x0 = trig ? w·x0_gen + (1−w)·x0_in : (fall ? x0_in : x0_gen)
//   x_next = ab_next >= 1 ? x0 : √ab_next·x0 + √(1−ab_next)·ε̂
//   finish = stop || (active && last), moving = active && !stop
//   x_t ← moving ? x_next : x_t;  recon ← stop ? x0_in : (moving && finish ? x0 : recon)
//   steps += active; trigger_step ← k and trigger_kind ← 1 (trig) / 2 (fall) where either;
//   max_score ← max(max_score, score) where checking (NaN propagates, as torch.maximum);
//   triggered |= trig; done |= finish.
// fallback_stops = false is the authors' scheduler: a fallen-back row sets x̂0 = x0_in at that
// step and goes on with plain DDIM to t = 0, like a triggered row; true ends it there.
// The DDIM coefficients are formed in double (std::pow(ab_next, 0.5), as Python's
// ab_next ** 0.5) and rounded to float, as torch takes a Python-float factor.
struct GladUpdateArgs {
  const float* x0_gen = nullptr;  // B×C×H×W
  const float* x0_in = nullptr;   // B×C×H×W
  const float* eps = nullptr;     // B×C×H×W
  const float* w = nullptr;       // B×1×H×W, the SAFF weight (up-sampled)
  const float* score = nullptr;   // B, trigger score
  float* x_t = nullptr;           // in/out B×C×H×W
  float* recon = nullptr;         // in/out B×C×H×W
  uint8_t* done = nullptr;        // in/out B (0/1)
  uint8_t* triggered = nullptr;   // in/out B (0/1)
  int64_t* steps = nullptr;       // in/out B
  int64_t* trigger_step = nullptr;  // in/out B
  int64_t* trigger_kind = nullptr;  // in/out B: 0 none, 1 triggered, 2 fallback
  float* max_score = nullptr;     // in/out B
  int B = 0, C = 0, H = 0, W = 0;
  int64_t k = 0, t = 0, min_step = 0;  // step index, its timestep, the fallback bound
  double ab_next = 1.0;           // ᾱ of the next timestep in (0, 1]; 1 past the last step
  float tau = 0.f;                // trigger threshold (not NaN; +inf: never triggers)
  bool last = false;              // no timestep follows (every active row finishes)
  bool fallback_stops = false;    // a fallen-back row is done at once (else it continues to t = 0)
};

void glad_predict(Device device, const GladPredictArgs& args, void* stream = nullptr);
void glad_update(Device device, const GladUpdateArgs& args, void* stream = nullptr);

// Argument checks shared by both devices (throw Error kInvalidArgument).
void validate(const PrepareArgs& args);
void validate(const StepArgs& args);
void validate(const FuseArgs& args);
void validate(const NormGuidedArgs& args);
void validate(const GladPredictArgs& args);
void validate(const GladUpdateArgs& args);

}  // namespace drdc
