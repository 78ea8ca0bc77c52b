// Per-device implementations behind the public entry points, every family's
// (core, drdc, diffusionad, glad: csrc/src/<family>/). The *_cpu functions live
// in the families' *_cpu.cpp files, the *_cuda ones in their .cu files, or in
// core/cuda_missing.cpp (throwing kNotCompiled) in a build without CUDA.
// Arguments are validated by the caller.
#pragma once

#include <cstddef>
#include <cstdint>

#include "drdc/kernels.h"

namespace drdc {
namespace detail {

// core: the counter-based Gaussian generator (core/rng.cpp, core/gaussian_cuda.cu).
void gaussian_cpu(float* out, std::size_t count, uint64_t seed, uint64_t offset);
void gaussian_cuda(float* out, std::size_t count, uint64_t seed, uint64_t offset, void* stream);

// drdc: the fused DDIM inpainting kernels (drdc/kernels_cpu.cpp, drdc/kernels_cuda.cu).
void prepare_cpu(const PrepareArgs& args);
void step_cpu(const StepArgs& args);
void fuse_cpu(const FuseArgs& args);
void prepare_cuda(const PrepareArgs& args, void* stream);
void step_cuda(const StepArgs& args, void* stream);
void fuse_cuda(const FuseArgs& args, void* stream);
// fuse's CUDA score kernel keeps W column sums in dynamic shared memory beside
// its static per-warp maxima (32 floats); both share the 48 KiB a block gets
// without opting in, so the width limit counts both.
constexpr int kScoreWarpSlots = 32;
constexpr int kFuseMaxWidthCuda =
    static_cast<int>((48 * 1024 - kScoreWarpSlots * sizeof(float)) / sizeof(float));

// diffusionad: the norm-guided combination (diffusionad/norm_guided_cpu.cpp, _cuda.cu).
void norm_guided_cpu(const NormGuidedArgs& args);
void norm_guided_cuda(const NormGuidedArgs& args, void* stream);

// glad: the per-row step (glad/glad_cpu.cpp, glad/glad_cuda.cu).
void glad_predict_cpu(const GladPredictArgs& args);
void glad_update_cpu(const GladUpdateArgs& args);
void glad_predict_cuda(const GladPredictArgs& args, void* stream);
void glad_update_cuda(const GladUpdateArgs& args, void* stream);

// drdc: the analytic runner (drdc/analytic_runner.cpp, drdc/analytic_runner_cuda.cu):
// ε = (x_t − √ᾱ_t·x_row)/√(1−ᾱ_t) with √ᾱ, √(1−ᾱ) looked up per row from
// float tables indexed by the row's timestep (tables on the same device).
struct AnalyticEpsArgs {
  const void* input = nullptr;  // n×6×h×w net dtype
  const float* timesteps = nullptr;
  void* output = nullptr;       // n×3×h×w net dtype
  const float* x = nullptr;     // batch×3×h×w
  const float* sqrt_ab = nullptr;
  const float* sqrt_1mab = nullptr;
  int num_timesteps = 0;
  int n = 0, h = 0, w = 0, rows_per_image = 1;
  DType dtype = DType::kFloat32;
};
void analytic_eps_cpu(const AnalyticEpsArgs& args);
void analytic_eps_cuda(const AnalyticEpsArgs& args, void* stream);

}  // namespace detail
}  // namespace drdc
