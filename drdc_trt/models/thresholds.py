"""Decision thresholds measured on held-out normal images, stored as a checkpoint's stats.json
(the methods whose calibration is thresholds only: DiffusionAD, GLAD; DRDC's FusionStats adds
its map normalisation)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields


@dataclass
class Thresholds:
    """``image_threshold`` the largest image score of the held-out normal images,
    ``pixel_threshold`` the 99.9th percentile of their map pixels (DRDC's meaning); float fields
    are numbers or +inf (null in JSON), int fields non-negative."""

    image_threshold: float = math.inf
    pixel_threshold: float = math.inf
    num_images: int = 0
    detector_seed: int = 0  # the detector seed (its noise) they were measured with

    def to_json(self) -> str:
        plain = {f.name: getattr(self, f.name) for f in fields(self)}
        return json.dumps({k: (None if isinstance(v, float) and math.isinf(v) else v) for k, v in plain.items()},
                          indent=2)

    @classmethod
    def from_dict(cls, d, where: str = "stats"):
        if not isinstance(d, dict):
            raise ValueError(f"{where}: expected an object, got {type(d).__name__}")
        names = [f.name for f in fields(cls)]
        unknown, missing = set(d) - set(names), [n for n in names if n not in d]
        if unknown or missing:
            raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}, missing {missing}")
        for f in fields(cls):
            v = d[f.name]
            if f.type in ("float", float):
                if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v)):
                    raise ValueError(f"{where}: {f.name} must be a number or null (+inf), got {v!r}")
            elif isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{where}: {f.name} must be a non-negative integer, got {v!r}")
        return cls(**{k: (math.inf if v is None else v) for k, v in d.items()})


def pixel_threshold(maps) -> float:
    """The 99.9th percentile of the pixels of normal images' final maps (every method's pixel
    threshold; at most ~1M pixels, sampled evenly, go into the quantile)."""
    import torch  # here: the stats classes above are read by the torch-free runtime

    flat = maps.flatten()
    return float(torch.quantile(flat[:: max(1, flat.numel() // 1_000_000)].float(), 0.999))
