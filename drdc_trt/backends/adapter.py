"""Torch-tensor view of a numpy runner (ONNX Runtime, TensorRT) for the PyTorch Detector.

Tensors are copied to host numpy arrays at the boundary and the results come
back as float32 tensors on the caller's device. A runner with device entry
points (``base_device`` / ``unet_device``, the TensorRT runner) gets CUDA tensors
by pointer instead, with no host round trip: on the current torch stream, or on
a side stream ordered after and before it when that is the legacy default
stream (TensorRT adds a sync per call there). Every pointer handed over is
256-byte aligned, as TensorRT requires of tensor addresses; a tensor that is
not (a view at an odd offset, e.g. a slice of a timestep table) is copied.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

ALIGN = 256  # bytes: TensorRT's rule for tensor addresses
_DEFAULT_STREAMS = (0, 1, 2)  # legacy, cudaStreamLegacy, cudaStreamPerThread handles
_side_streams: dict = {}


def aligned(t: torch.Tensor, align: int = ALIGN) -> torch.Tensor:
    """``t`` as a contiguous tensor whose data starts on an ``align``-byte boundary:
    ``t`` itself when it already does, else a copy placed at an aligned offset."""
    t = t.contiguous()
    if t.data_ptr() % align == 0:
        return t
    item = t.element_size()
    buf = torch.empty(t.numel() + align // item, dtype=t.dtype, device=t.device)
    off = (-buf.data_ptr() % align) // item
    out = buf[off:off + t.numel()].view(t.shape)
    out.copy_(t)
    return out


@contextlib.contextmanager
def enqueue_stream(device: torch.device):
    """The CUDA stream (int handle) to enqueue device work on: the current one, or a side
    stream ordered after and before it when the current one is a default stream."""
    cur = torch.cuda.current_stream(device)
    if cur.cuda_stream not in _DEFAULT_STREAMS:
        yield cur.cuda_stream
        return
    key = cur.device_index
    side = _side_streams.get(key)
    if side is None:
        side = _side_streams[key] = torch.cuda.Stream(device=key)
    side.wait_stream(cur)  # inputs were written on the caller's stream
    try:
        yield side.cuda_stream
    finally:
        cur.wait_stream(side)  # outputs are read (and inputs freed) there


def _host(t: torch.Tensor, dtype: np.dtype) -> np.ndarray:
    return np.ascontiguousarray(t.detach().to("cpu").numpy().astype(dtype, copy=False))


class TorchTensorRunner:
    io = "torch"

    def __init__(self, runner, device: str | torch.device = "cpu"):
        self.inner = runner
        self.name = runner.name
        self.device = torch.device(device)
        self.unet_dtype = np.dtype(getattr(runner, "unet_dtype", "float32"))

    def _on_device(self, *tensors: torch.Tensor) -> bool:
        return all(t.is_cuda for t in tensors) and hasattr(self.inner, "unet_device")

    @torch.no_grad()
    def base(self, images: torch.Tensor) -> torch.Tensor:
        if self._on_device(images):
            images = aligned(images.float())
            out = torch.empty(self.inner.base_output_shape(images.shape[0]), dtype=torch.float32, device=images.device)
            with enqueue_stream(images.device) as stream:
                self.inner.base_device(images.data_ptr(), out.data_ptr(), images.shape[0], stream)
            return out
        return torch.from_numpy(self.inner.base(_host(images, np.float32))).to(images.device)

    @torch.no_grad()
    def unet(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self._on_device(x, t):
            dev_dtype = np.dtype(getattr(self.inner, "unet_device_dtype", self.unet_dtype))
            torch_dtype = torch.float16 if dev_dtype == np.float16 else torch.float32
            x = aligned(x.to(torch_dtype))
            t = aligned(t.float())
            out = torch.empty(x.shape[0], 3, *x.shape[2:], dtype=torch_dtype, device=x.device)
            with enqueue_stream(x.device) as stream:
                self.inner.unet_device(x.data_ptr(), t.data_ptr(), out.data_ptr(), x.shape[0], stream)
            return out.float()
        out = self.inner.unet(_host(x, self.unet_dtype), _host(t, np.float32))
        return torch.from_numpy(out).to(x.device).float()
