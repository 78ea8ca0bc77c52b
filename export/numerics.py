"""ONNX Runtime vs PyTorch on realistic inputs, at several batch sizes.

Inputs are what the networks see in use: the base model gets textured surface
images (the procedural generator of ``drdc_trt.data.synthetic``, every second
one with a defect) unless the caller passes images; the U-Net gets the very
inputs (x_t ‖ c, t) of the reference DDIM inpainting loop run on those images
with the Detector's masks and noise, at up to four evenly spaced steps (first
and last included; all of them for the short loops of the small presets).

Error measures, per network and batch size (worst over the loop's steps for
the U-Net): ``max_abs`` = max |ort − torch|, ``max_rel`` = max_abs / max |torch|.
A comparison passes when ``max_abs <= atol + rtol · max|torch|``; the default
tolerance (atol 1e-4, rtol 1e-3) is what float32 kernels that differ only in
summation order and fusion stay well inside (measured: ~1e-6 relative).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np
import torch

from drdc_trt.backends.onnxruntime_backend import OrtNetwork

from .onnx_export import BASE_INPUT, BASE_OUTPUT, UNET_INPUTS, UNET_OUTPUT


class NumericsError(AssertionError):
    """ONNX Runtime and PyTorch disagree beyond the stated tolerance."""


@dataclass(frozen=True)
class Tolerance:
    atol: float = 1e-4
    rtol: float = 1e-3  # times the largest |reference| value

    def limit(self, ref_max: float) -> float:
        return self.atol + self.rtol * ref_max


@dataclass
class Comparison:
    network: str
    batch: int
    max_abs: float
    max_rel: float
    ref_max: float
    limit: float

    @property
    def ok(self) -> bool:
        return bool(np.isfinite(self.max_abs)) and self.max_abs <= self.limit


@dataclass
class NumericsReport:
    tolerance: Tolerance
    providers: list[str]
    comparisons: list[Comparison] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.comparisons)

    def to_dict(self) -> dict:
        return {"tolerance": asdict(self.tolerance), "providers": self.providers, "ok": self.ok,
                "comparisons": [{**asdict(c), "ok": c.ok} for c in self.comparisons]}

    def text(self) -> str:
        lines = [f"{c.network:5s} batch {c.batch:3d}: max abs {c.max_abs:.3g}, max rel {c.max_rel:.3g} "
                 f"(limit {c.limit:.3g}) {'ok' if c.ok else 'FAIL'}" for c in self.comparisons]
        return "\n".join(lines)

    def raise_if_failed(self) -> None:
        bad = [c for c in self.comparisons if not c.ok]
        if bad:
            raise NumericsError("ONNX Runtime disagrees with PyTorch beyond atol + rtol·max|ref| "
                                f"(atol {self.tolerance.atol}, rtol {self.tolerance.rtol}):\n" +
                                "\n".join(f"  {c.network} batch {c.batch}: max abs {c.max_abs:.3g} > {c.limit:.3g}"
                                          for c in bad))


def sample_images(size: int, count: int, seed: int = 0) -> torch.Tensor:
    """count×3×S×S textured surfaces in [-1, 1]; odd indices carry a defect."""
    from drdc_trt.data.synthetic import CATEGORIES, DEFECTS, apply_defect, defect_mask, surface

    rng = np.random.default_rng([seed, 7])
    out = []
    for i in range(count):
        img = surface(rng, CATEGORIES[i % len(CATEGORIES)], size)
        if i % 2:
            kind = DEFECTS[(i // 2) % len(DEFECTS)]
            img = apply_defect(rng, img, defect_mask(rng, kind, size), kind)
        out.append(torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))) * 2 - 1)
    return torch.stack(out).float()


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


def _compare(network: str, batch: int, ref: np.ndarray, got: np.ndarray, tol: Tolerance) -> Comparison:
    if ref.shape != got.shape:
        raise NumericsError(f"{network} batch {batch}: ONNX Runtime output shape {got.shape}, PyTorch {ref.shape}")
    err = float(np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64))))
    ref_max = float(np.max(np.abs(ref)))
    return Comparison(network, batch, err, err / ref_max if ref_max > 0 else err, ref_max, tol.limit(ref_max))


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
        report.comparisons.append(_compare("base", b, ref, base.run(x.numpy()), tolerance))
        worst = None
        calls = record_unet_inputs(model, x, seed)
        picks = sorted({round(i * (len(calls) - 1) / max(1, max_steps - 1)) for i in range(max_steps)})
        for xin, t, eps in (calls[i] for i in picks):
            c = _compare("unet", xin.shape[0], eps.numpy(), unet.run(xin.numpy(), t.numpy()), tolerance)
            if worst is None or c.max_abs - c.limit > worst.max_abs - worst.limit:
                worst = c
        report.comparisons.append(worst)
    if check:
        report.raise_if_failed()
    return report
