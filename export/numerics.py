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

import numpy as np
import torch




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


def compare_arrays(network: str, batch: int, ref: np.ndarray, got: np.ndarray, tol: Tolerance) -> Comparison:
    if ref.shape != got.shape:
        raise NumericsError(f"{network} batch {batch}: ONNX Runtime output shape {got.shape}, PyTorch {ref.shape}")
    err = float(np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64))))
    ref_max = float(np.max(np.abs(ref)))
    return Comparison(network, batch, err, err / ref_max if ref_max > 0 else err, ref_max, tol.limit(ref_max))


