"""DRDC's numerics check: its base model and U-Net on ONNX Runtime against PyTorch, on the U-Net
inputs its own loop produces (recorded from a Detector pass), with the stated tolerance."""

from __future__ import annotations

from typing import Sequence

import torch

from drdc_trt.backends.onnxruntime_backend import OrtNetwork

from drdc_trt.export.onnx_export import BASE_INPUT, BASE_OUTPUT, UNET_INPUTS, UNET_OUTPUT

from drdc_trt.export.numerics import NumericsReport, Tolerance, compare_arrays, sample_images


class _Recorder:
    """A runner that calls the PyTorch model and keeps every U-Net call."""

    name = "recorder"

    def __init__(self, model):
        self.model, self.calls = model, []

    def base(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.base(images).float()

    def unet(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = self.model.unet(x, t).float()
        self.calls.append((x.clone(), t.clone(), out.clone()))
        return out


def record_unet_inputs(model, images: torch.Tensor, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(x, t, ε̂) of every U-Net call of the reference loop on ``images`` (PyTorch eager, CPU)."""
    from drdc_trt.methods.drdc.pipeline import Detector

    rec = _Recorder(model)
    Detector(model.cfg, rec, model.stats, "cpu", seed=seed).heat(images.float())
    return rec.calls


def compare_networks(model, base_onnx, unet_onnx, batch_sizes: Sequence[int] = (1, 3),
                     images: torch.Tensor | None = None, tolerance: Tolerance = Tolerance(), seed: int = 0,
                     providers: Sequence[str] | None = ("CPUExecutionProvider",), check: bool = True,
                     max_steps: int = 4) -> NumericsReport:
    """Compare both ONNX graphs with the PyTorch model (moved to the CPU); raise
    NumericsError when ``check`` and any comparison exceeds the tolerance. Batch sizes
    count images (the U-Net sees batch × rows-per-image rows). The U-Net is compared at
    up to ``max_steps`` loop steps, evenly spaced, first and last included."""
    model = model.float().eval().cpu()
    s = model.cfg.image_size
    need = max(batch_sizes)
    if images is None:
        images = sample_images(s, need, seed)
    if images.shape[0] < need or tuple(images.shape[1:]) != (3, s, s):
        raise ValueError(f"images: need at least {need}×3×{s}×{s}, got {tuple(images.shape)}")
    base = OrtNetwork(base_onnx, [BASE_INPUT], BASE_OUTPUT, providers)
    unet = OrtNetwork(unet_onnx, list(UNET_INPUTS), UNET_OUTPUT, providers)
    report = NumericsReport(tolerance, list(unet.providers))
    for b in batch_sizes:
        x = images[:b].float().contiguous()
        with torch.no_grad():
            ref = model.base(x).float().numpy()
        report.comparisons.append(compare_arrays("base", b, ref, base.run(x.numpy()), tolerance))
        worst = None
        calls = record_unet_inputs(model, x, seed)
        picks = sorted({round(i * (len(calls) - 1) / max(1, max_steps - 1)) for i in range(max_steps)})
        for xin, t, eps in (calls[i] for i in picks):
            c = compare_arrays("unet", xin.shape[0], eps.numpy(), unet.run(xin.numpy(), t.numpy()), tolerance)
            if worst is None or c.max_abs - c.limit > worst.max_abs - worst.limit:
                worst = c
        report.comparisons.append(worst)
    if check:
        report.raise_if_failed()
    return report
