"""Torch-tensor view of a numpy runner (ONNX Runtime, TensorRT) for the PyTorch Detector.

Tensors are copied to host numpy arrays at the boundary and the results come
back as float32 tensors on the caller's device. A runner with device entry
points (``base_device`` / ``unet_device``, the TensorRT runner) gets CUDA tensors
by pointer instead, on the current torch stream, with no host round trip.
"""

from __future__ import annotations

import numpy as np
import torch


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
            images = images.float().contiguous()
            out = torch.empty(self.inner.base_output_shape(images.shape[0]), dtype=torch.float32, device=images.device)
            self.inner.base_device(images.data_ptr(), out.data_ptr(), images.shape[0],
                                   torch.cuda.current_stream(images.device).cuda_stream)
            return out
        return torch.from_numpy(self.inner.base(_host(images, np.float32))).to(images.device)

    @torch.no_grad()
    def unet(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self._on_device(x, t):
            dev_dtype = np.dtype(getattr(self.inner, "unet_device_dtype", self.unet_dtype))
            torch_dtype = torch.float16 if dev_dtype == np.float16 else torch.float32
            x = x.to(torch_dtype).contiguous()
            t = t.float().contiguous()
            out = torch.empty(x.shape[0], 3, *x.shape[2:], dtype=torch_dtype, device=x.device)
            self.inner.unet_device(x.data_ptr(), t.data_ptr(), out.data_ptr(), x.shape[0],
                                   torch.cuda.current_stream(x.device).cuda_stream)
            return out.float()
        out = self.inner.unet(_host(x, self.unet_dtype), _host(t, np.float32))
        return torch.from_numpy(out).to(x.device).float()
