#include "core/cuda_api.h"

#include "core/cuda_check.h"

namespace drdc {
namespace cuda {

using detail::check_cuda;

namespace {
cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }
}  // namespace

void* malloc(std::size_t bytes) {
  void* p = nullptr;
  if (bytes == 0) return nullptr;
  check_cuda(cudaMalloc(&p, bytes), "cudaMalloc");
  return p;
}

void free(void* ptr) noexcept {
  if (ptr) (void)cudaFree(ptr);  // destructor path: nothing useful to do with an error
}

void memset_async(void* ptr, int value, std::size_t bytes, void* stream) {
  if (bytes) check_cuda(cudaMemsetAsync(ptr, value, bytes, as_stream(stream)), "cudaMemsetAsync");
}

void memcpy_async(void* dst, const void* src, std::size_t bytes, void* stream) {
  if (bytes) check_cuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, as_stream(stream)), "cudaMemcpyAsync");
}

void memcpy(void* dst, const void* src, std::size_t bytes) {
  if (bytes) check_cuda(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault), "cudaMemcpy");
}

void synchronize(void* stream) { check_cuda(cudaStreamSynchronize(as_stream(stream)), "cudaStreamSynchronize"); }

void* stream_create() {
  cudaStream_t s = nullptr;
  check_cuda(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
  return s;
}

void stream_destroy(void* stream) noexcept {
  if (stream) (void)cudaStreamDestroy(as_stream(stream));
}

int device_count() noexcept {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // clear: "no driver" must not poison later calls
    return 0;
  }
  return n;
}

std::string status() {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    return std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err);
  }
  return n > 0 ? std::string() : std::string("no CUDA device");
}

int current_device() {
  int d = 0;
  check_cuda(cudaGetDevice(&d), "cudaGetDevice");
  return d;
}

void set_device(int device) { check_cuda(cudaSetDevice(device), "cudaSetDevice"); }

int pointer_device(const void* ptr) noexcept {
  if (!ptr) return -1;
  cudaPointerAttributes attr{};
  if (cudaPointerGetAttributes(&attr, ptr) != cudaSuccess) {
    (void)cudaGetLastError();
    return -1;
  }
  return (attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged) ? attr.device : -1;
}

void* event_create() {
  cudaEvent_t e = nullptr;
  check_cuda(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreateWithFlags");
  return e;
}

void event_destroy(void* event) noexcept {
  if (event) (void)cudaEventDestroy(static_cast<cudaEvent_t>(event));
}

void event_record(void* event, void* stream) {
  check_cuda(cudaEventRecord(static_cast<cudaEvent_t>(event), as_stream(stream)), "cudaEventRecord");
}

void stream_wait_event(void* stream, void* event) {
  check_cuda(cudaStreamWaitEvent(as_stream(stream), static_cast<cudaEvent_t>(event), 0), "cudaStreamWaitEvent");
}

std::string device_name(int device) {
  cudaDeviceProp prop{};
  check_cuda(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
  return prop.name;
}

Graph::~Graph() { reset(); }

void Graph::reset() noexcept {
  if (exec_) (void)cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec_));
  if (graph_) (void)cudaGraphDestroy(static_cast<cudaGraph_t>(graph_));
  exec_ = graph_ = nullptr;
}

void Graph::begin_capture(void* stream) {
  reset();
  // Thread-local mode: only this thread's unsafe calls (e.g. cudaMalloc)
  // invalidate the capture, other host threads are unaffected.
  check_cuda(cudaStreamBeginCapture(as_stream(stream), cudaStreamCaptureModeThreadLocal),
             "cudaStreamBeginCapture");
}

void Graph::end_capture(void* stream, bool ok) {
  cudaGraph_t g = nullptr;
  const cudaError_t err = cudaStreamEndCapture(as_stream(stream), &g);
  if (!ok || err != cudaSuccess) {
    if (g) (void)cudaGraphDestroy(g);
    (void)cudaGetLastError();
    if (ok) detail::throw_cuda(err, "cudaStreamEndCapture");
    return;
  }
  graph_ = g;
  cudaGraphExec_t exec = nullptr;
  const cudaError_t ierr = cudaGraphInstantiate(&exec, g, 0ULL);
  if (ierr != cudaSuccess) {
    reset();
    detail::throw_cuda(ierr, "cudaGraphInstantiate");
  }
  exec_ = exec;
}

void Graph::launch(void* stream) {
  check_cuda(cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec_), as_stream(stream)), "cudaGraphLaunch");
}

}  // namespace cuda
}  // namespace drdc
