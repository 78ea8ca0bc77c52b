// Built instead of the CUDA sources when no CUDA compiler was found: every
// CUDA entry point throws Error kNotCompiled with one clear message, so a
// CPU-only build links and a CUDA request fails cleanly at run time.
#include "core/backends.h"
#include "core/cuda_api.h"
#include "drdc/status.h"

namespace drdc {
namespace {
[[noreturn]] void no_cuda(const char* what) {
  throw Error(Status::kNotCompiled, std::string(what) +
                                        ": drdc was built without CUDA (no CUDA compiler at configure "
                                        "time); rebuild with nvcc available to use device 'cuda'");
}
}  // namespace

namespace detail {
void prepare_cuda(const PrepareArgs&, void*) { no_cuda("prepare"); }
void step_cuda(const StepArgs&, void*) { no_cuda("step"); }
void fuse_cuda(const FuseArgs&, void*) { no_cuda("fuse"); }
void norm_guided_cuda(const NormGuidedArgs&, void*) { no_cuda("norm_guided"); }
void glad_predict_cuda(const GladPredictArgs&, void*) { no_cuda("glad_predict"); }
void glad_update_cuda(const GladUpdateArgs&, void*) { no_cuda("glad_update"); }
void gaussian_cuda(float*, std::size_t, uint64_t, uint64_t, void*) { no_cuda("gaussian"); }
void analytic_eps_cuda(const AnalyticEpsArgs&, void*) { no_cuda("analytic runner"); }
}  // namespace detail

namespace cuda {
void* malloc(std::size_t) { no_cuda("cudaMalloc"); }
void free(void*) noexcept {}
void memset_async(void*, int, std::size_t, void*) { no_cuda("cudaMemsetAsync"); }
void memcpy_async(void*, const void*, std::size_t, void*) { no_cuda("cudaMemcpyAsync"); }
void memcpy(void*, const void*, std::size_t) { no_cuda("cudaMemcpy"); }
void synchronize(void*) { no_cuda("cudaStreamSynchronize"); }
void* stream_create() { no_cuda("cudaStreamCreate"); }
void stream_destroy(void*) noexcept {}
int device_count() noexcept { return 0; }
std::string device_name(int) { no_cuda("cudaGetDeviceProperties"); }
std::string status() { return "drdc was built without CUDA (no CUDA compiler at configure time)"; }
int current_device() { no_cuda("cudaGetDevice"); }
void set_device(int) { no_cuda("cudaSetDevice"); }
int pointer_device(const void*) noexcept { return -1; }
void* event_create() { no_cuda("cudaEventCreate"); }
void event_destroy(void*) noexcept {}
void event_record(void*, void*) { no_cuda("cudaEventRecord"); }
void stream_wait_event(void*, void*) { no_cuda("cudaStreamWaitEvent"); }
Graph::~Graph() = default;
void Graph::reset() noexcept {}
void Graph::begin_capture(void*) { no_cuda("cudaStreamBeginCapture"); }
void Graph::end_capture(void*, bool) { no_cuda("cudaStreamEndCapture"); }
void Graph::launch(void*) { no_cuda("cudaGraphLaunch"); }
}  // namespace cuda
}  // namespace drdc
