"""PatchCore-style patch-kNN baseline on the same frozen backbone as the base model.

Memory bank: backbone patch features of normal training images, subsampled to a
fixed size (random, or PatchCore's greedy coreset on a random projection).
Anomaly map: distance of every test patch to its nearest bank patch, bilinearly
up-sampled to S×S. Image score: max of the average-pooled map, as for the other
methods (``ops.image_score``).

Patch features: the chosen backbone stages (by stride; default 8 and 16, as
PatchCore's "mid-level" layers) are each averaged over a ``local``×``local``
neighbourhood (PatchCore's locally aware features), brought to the S/``stride``
grid (average pooling for finer stages, bilinear for coarser ones), L2-normalised
per stage over channels, concatenated and divided by √(number of stages), so
every patch vector has unit norm and distances lie in [0, 2].

Torch only; every random choice comes from ``KNNConfig.seed``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

STAGE_STRIDES = (2, 4, 8, 16)
SAMPLINGS = ("greedy", "random", "all")


@dataclass
class KNNConfig:
    stride: int = 8                      # patch grid: S/stride per side (8 or 16)
    layers: tuple[int, ...] = (8, 16)    # strides of the backbone stages used
    local: int = 3                       # neighbourhood average (1 = off)
    bank_size: int = 16384               # patches kept (ignored with sampling="all")
    sampling: str = "greedy"             # greedy coreset, random subset, or all patches
    proj_dim: int = 128                  # random projection used by the greedy coreset
    seed: int = 0

    def validate(self) -> "KNNConfig":
        if self.stride not in STAGE_STRIDES:
            raise ValueError(f"knn.stride={self.stride}: choose one of {STAGE_STRIDES}")
        if not self.layers or any(s not in STAGE_STRIDES for s in self.layers):
            raise ValueError(f"knn.layers={self.layers}: strides from {STAGE_STRIDES}")
        if self.local < 1 or self.local % 2 == 0:
            raise ValueError("knn.local must be a positive odd number")
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"knn.sampling={self.sampling!r}: choose one of {SAMPLINGS}")
        if self.sampling != "all" and self.bank_size < 1:
            raise ValueError("knn.bank_size must be >= 1")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------- building blocks
def nearest_distance(query: torch.Tensor, bank: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Euclidean distance of each query row (Q×D) to its nearest bank row (M×D) → Q.

    The neighbour is found with one matrix product per chunk; its distance is then
    recomputed directly as ‖q − b‖, so an exact copy of a bank row scores exactly 0.
    """
    if query.dim() != 2 or bank.dim() != 2 or query.shape[1] != bank.shape[1]:
        raise ValueError(f"query Q×D and bank M×D expected, got {tuple(query.shape)} and {tuple(bank.shape)}")
    if bank.shape[0] == 0:
        raise ValueError("empty memory bank")
    bank_sq = bank.pow(2).sum(1)
    out = []
    for i in range(0, query.shape[0], chunk):
        q = query[i:i + chunk]
        d2 = bank_sq.unsqueeze(0) - 2.0 * (q @ bank.T)   # ‖q‖² is the same for every bank row
        idx = d2.argmin(1)
        out.append((q - bank[idx]).norm(dim=1))
    return torch.cat(out)


def greedy_coreset(feats: torch.Tensor, size: int, proj_dim: int = 128, seed: int = 0) -> torch.Tensor:
    """Indices of ``size`` rows chosen by greedy k-center (PatchCore's coreset),
    distances measured on a seeded Gaussian random projection to ``proj_dim``."""
    n = feats.shape[0]
    if size >= n:
        return torch.arange(n, device=feats.device)
    gen = torch.Generator().manual_seed(seed)
    x = feats
    if proj_dim and proj_dim < feats.shape[1]:
        proj = torch.randn(feats.shape[1], proj_dim, generator=gen) / math.sqrt(proj_dim)
        x = feats @ proj.to(feats.device, feats.dtype)
    start = int(torch.randint(0, n, (1,), generator=gen))
    chosen = torch.empty(size, dtype=torch.long, device=feats.device)
    chosen[0] = start
    sq = x.pow(2).sum(1)

    def dist2(j):  # ‖x − x_j‖² through one matrix-vector product
        return (sq - 2.0 * (x @ x[j]) + sq[j]).clamp_min(0.0)

    mind = dist2(start)
    for k in range(1, size):
        j = int(mind.argmax())
        chosen[k] = j
        mind = torch.minimum(mind, dist2(j))
    return chosen


def random_subset(n: int, size: int, seed: int = 0) -> torch.Tensor:
    if size >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:size].sort().values


# ----------------------------------------------------------------- the detector
class PatchKNN:
    """Patch-kNN anomaly detector over a frozen ``Backbone`` (``models.backbone``)."""

    def __init__(self, backbone, image_size: int, score_window: int, cfg: KNNConfig | None = None,
                 device: str | torch.device = "cpu"):
        self.cfg = (cfg or KNNConfig()).validate()
        if image_size % self.cfg.stride:
            raise ValueError(f"image size {image_size} is not a multiple of knn.stride {self.cfg.stride}")
        self.backbone = backbone.to(device).eval()
        self.image_size, self.score_window = image_size, score_window
        self.device = torch.device(device)
        self.bank: torch.Tensor | None = None
        self.num_patches_seen = 0
        self.map_mean, self.map_std = 0.0, 1.0   # of the maps of normal calibration images

    @classmethod
    def from_model(cls, model, cfg: KNNConfig | None = None, device="cpu") -> "PatchKNN":
        return cls(model.base.backbone, model.cfg.image_size, model.cfg.score_window, cfg, device)

    @property
    def grid(self) -> int:
        return self.image_size // self.cfg.stride

    @torch.no_grad()
    def patch_features(self, images: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
        """B×3×S×S in [-1, 1] → B×h×w×D unit-norm patch vectors (h = w = S/stride)."""
        c = self.cfg
        g = self.grid
        out = []
        for i in range(0, images.shape[0], batch_size):
            x = images[i:i + batch_size].to(self.device, torch.float32)
            stages = self.backbone.stages(x)
            parts = []
            for stride, f in zip(STAGE_STRIDES, stages):
                if stride not in c.layers:
                    continue
                f = f.float()
                if c.local > 1:
                    f = F.avg_pool2d(f, c.local, stride=1, padding=c.local // 2, count_include_pad=False)
                if f.shape[-1] > g:
                    f = F.adaptive_avg_pool2d(f, g)
                elif f.shape[-1] < g:
                    f = F.interpolate(f, size=(g, g), mode="bilinear", align_corners=False)
                parts.append(F.normalize(f, dim=1))
            feats = torch.cat(parts, 1) / math.sqrt(len(parts))
            out.append(feats.permute(0, 2, 3, 1).contiguous())
        return torch.cat(out)

    @torch.no_grad()
    def fit(self, images: torch.Tensor, calib: torch.Tensor | None = None, batch_size: int = 32) -> "PatchKNN":
        """Build the memory bank from normal ``images``; measure the map statistics on ``calib``."""
        feats = self.patch_features(images, batch_size)
        flat = feats.reshape(-1, feats.shape[-1])
        self.num_patches_seen = flat.shape[0]
        c = self.cfg
        if c.sampling == "all":
            idx = torch.arange(flat.shape[0], device=flat.device)
        elif c.sampling == "random":
            idx = random_subset(flat.shape[0], c.bank_size, c.seed).to(flat.device)
        else:
            idx = greedy_coreset(flat, c.bank_size, c.proj_dim, c.seed)
        self.bank = flat[idx].contiguous()
        if calib is not None and len(calib):
            maps = self.predict(calib, batch_size)[1]
            self.map_mean = float(maps.double().mean())
            self.map_std = max(float(maps.double().std()), 1e-8)
        return self

    @torch.no_grad()
    def patch_distances(self, images: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
        """B×h×w nearest-neighbour distances at the patch grid."""
        if self.bank is None:
            raise RuntimeError("PatchKNN: call fit() before scoring")
        feats = self.patch_features(images, batch_size)
        b, h, w, d = feats.shape
        return nearest_distance(feats.reshape(-1, d), self.bank).reshape(b, h, w)

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
        """(image scores B, anomaly maps B×S×S) on the CPU."""
        from drdc_trt import ops

        s = self.image_size
        dist = self.patch_distances(images, batch_size)
        maps = F.interpolate(dist.unsqueeze(1), size=(s, s), mode="bilinear", align_corners=False)[:, 0]
        return ops.image_score(maps, self.score_window).cpu(), maps.cpu()
