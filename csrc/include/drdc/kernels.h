// The three fused kernels of the DDIM inpainting loop (DESIGN §2), each with a
// CPU and a CUDA implementation. Their definition is the PyTorch reference in
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

// Argument checks shared by both devices (throw Error kInvalidArgument).
void validate(const PrepareArgs& args);
void validate(const StepArgs& args);
void validate(const FuseArgs& args);
void validate(const NormGuidedArgs& args);

}  // namespace drdc
