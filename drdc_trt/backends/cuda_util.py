"""Device memory, streams and device properties through cuda-python (no torch).

What the TensorRT runner and the plan builder need from CUDA: the GPU's name
and compute capability, device buffers, a stream, async host↔device copies.
Works with ``cuda.bindings.runtime`` (cuda-python ≥ 12.6) and the older
``cuda.cudart`` module. Every call is checked; errors name the CUDA call.
"""

from __future__ import annotations

import numpy as np


class CudaUnavailable(RuntimeError):
    """cuda-python missing, or no usable CUDA driver / device."""


class CudaError(RuntimeError):
    pass


def runtime_api():
    try:
        from cuda.bindings import runtime as rt
    except ImportError:
        try:
            from cuda import cudart as rt  # cuda-python < 12.6
        except ImportError:
            raise CudaUnavailable("cuda-python is not installed (pip install cuda-python): the TensorRT "
                                  "backend needs it for device memory and streams") from None
    return rt


def _call(result, what: str):
    rt = runtime_api()
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        name = rt.cudaGetErrorName(err)[1]
        name = name.decode() if isinstance(name, bytes) else str(name)
        raise CudaError(f"{what} failed: {name}")
    if not rest:
        return None
    return rest[0] if len(rest) == 1 else tuple(rest)


def device_count() -> int:
    """Number of CUDA devices (0 without cuda-python, driver or GPU)."""
    try:
        rt = runtime_api()
        err, n = rt.cudaGetDeviceCount()
    except CudaUnavailable:
        return 0
    return int(n) if int(err) == 0 else 0


def device_info(device: int = 0) -> dict:
    """{"name", "compute_capability" ("9.0"), "index"} of a CUDA device."""
    if device_count() <= device:
        raise CudaUnavailable(f"no CUDA device {device} (cuda-python sees {device_count()} device(s))")
    rt = runtime_api()
    props = _call(rt.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
    return {"index": device, "name": name.rstrip("\x00"), "compute_capability": f"{props.major}.{props.minor}"}


class DeviceBuffer:
    """A cudaMalloc'ed block that can grow; freed on close / garbage collection."""

    def __init__(self, nbytes: int = 0):
        self.ptr, self.nbytes = 0, 0
        if nbytes:
            self.ensure(nbytes)

    def ensure(self, nbytes: int) -> int:
        if nbytes > self.nbytes:
            self.close()
            rt = runtime_api()
            self.ptr = int(_call(rt.cudaMalloc(int(nbytes)), f"cudaMalloc({nbytes})"))
            self.nbytes = int(nbytes)
        return self.ptr

    def close(self) -> None:
        if self.ptr:
            _call(runtime_api().cudaFree(self.ptr), "cudaFree")
            self.ptr, self.nbytes = 0, 0

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: best effort
            pass


class Stream:
    def __init__(self):
        self.handle = int(_call(runtime_api().cudaStreamCreate(), "cudaStreamCreate"))

    def synchronize(self) -> None:
        _call(runtime_api().cudaStreamSynchronize(self.handle), "cudaStreamSynchronize")

    def close(self) -> None:
        if self.handle:
            _call(runtime_api().cudaStreamDestroy(self.handle), "cudaStreamDestroy")
            self.handle = 0

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def copy_to_device(dst: int, host: np.ndarray, stream: int) -> None:
    rt = runtime_api()
    host = np.ascontiguousarray(host)
    _call(rt.cudaMemcpyAsync(dst, host.ctypes.data, host.nbytes, rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream),
          "cudaMemcpyAsync(host→device)")


def copy_to_host(host: np.ndarray, src: int, stream: int) -> None:
    rt = runtime_api()
    if not host.flags.c_contiguous:
        raise ValueError("copy_to_host: destination must be C-contiguous")
    _call(rt.cudaMemcpyAsync(host.ctypes.data, src, host.nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream),
          "cudaMemcpyAsync(device→host)")
