"""Procedural, seeded textured-surface dataset in MVTec layout (demo and tests).

Two categories of regular surface ("brushed" metal streaks, "woven" periodic
fabric, as industrial surfaces usually are) with three
defect types: scratches (thin straight lines), spots (blobs) and cracks (thin
random walks), each with its pixel mask.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CATEGORIES = ("brushed", "woven")
DEFECTS = ("scratch", "spot", "crack")


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    grid = rng.standard_normal((cells, cells)).astype(np.float32)
    im = Image.fromarray(grid, mode="F").resize((size, size), Image.BICUBIC)
    return np.asarray(im)


def surface(rng: np.random.Generator, category: str, size: int) -> np.ndarray:
    """H×W×3 float in [0, 1]."""
    if category == "brushed":
        streaks = np.repeat(rng.standard_normal((1, size)).astype(np.float32), size, 0)
        streaks = np.asarray(Image.fromarray(streaks, mode="F").resize((size, size), Image.BILINEAR))
        gray = 0.55 + 0.05 * streaks + 0.04 * _smooth_noise(rng, size, 4)
        tint = np.array([0.95, 0.97, 1.0], dtype=np.float32)
    elif category == "woven":
        period = size / 16.0 * rng.uniform(0.95, 1.05)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) * (2 * np.pi / period)
        px, py = rng.uniform(0, 2 * np.pi, 2)
        weave = np.sin(xx + px) * np.sin(yy + py)
        gray = 0.45 + 0.08 * weave + 0.03 * _smooth_noise(rng, size, 4)
        tint = np.array([1.0, 0.93, 0.85], dtype=np.float32)
    else:
        raise ValueError(f"unknown synthetic category {category!r}; choose from {CATEGORIES}")
    gray = gray + 0.015 * rng.standard_normal((size, size)).astype(np.float32)
    return np.clip(gray[..., None] * tint, 0.0, 1.0)


def defect_mask(rng: np.random.Generator, kind: str, size: int) -> np.ndarray:
    """H×W bool mask of one defect, kept away from nothing: defects may touch the border."""
    m = Image.new("L", (size, size), 0)
    d = ImageDraw.Draw(m)
    s = size / 128.0
    if kind == "scratch":
        x0, y0 = rng.uniform(0.15, 0.85, 2) * size
        ang = rng.uniform(0, math.pi)
        length = rng.uniform(0.25, 0.5) * size
        dx, dy = math.cos(ang) * length / 2, math.sin(ang) * length / 2
        d.line([(x0 - dx, y0 - dy), (x0 + dx, y0 + dy)], fill=255, width=max(1, int(round(rng.uniform(1.5, 3) * s))))
    elif kind == "spot":
        cx, cy = rng.uniform(0.15, 0.85, 2) * size
        rx, ry = rng.uniform(4, 9, 2) * s
        d.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=255)
    elif kind == "crack":
        x, y = rng.uniform(0.2, 0.8, 2) * size
        ang = rng.uniform(0, 2 * math.pi)
        pts = [(x, y)]
        for _ in range(int(rng.integers(8, 14))):
            ang += rng.normal(0, 0.5)
            x, y = x + math.cos(ang) * 4 * s, y + math.sin(ang) * 4 * s
            pts.append((x, y))
        d.line(pts, fill=255, width=max(1, int(round(2 * s))))
    else:
        raise ValueError(f"unknown defect kind {kind!r}; choose from {DEFECTS}")
    return np.asarray(m) > 127


def apply_defect(rng: np.random.Generator, img: np.ndarray, mask: np.ndarray, kind: str) -> np.ndarray:
    out = img.copy()
    if kind == "spot":
        shift = rng.choice([-1.0, 1.0]) * rng.uniform(0.2, 0.3)
        colour = np.array([1.0, 0.8, 0.6], dtype=np.float32) * shift
    else:
        colour = np.full(3, -rng.uniform(0.25, 0.4) if kind == "crack" else rng.choice([-1, 1]) * 0.3,
                         dtype=np.float32)
    out[mask] = np.clip(out[mask] + colour, 0.0, 1.0)
    return out


def _save(arr: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.clip(arr, 0, 1) * 255).round().astype(np.uint8)).save(path)


def make_synthetic_dataset(root: str | Path, size: int = 128, train_per_category: int = 60,
                           test_good_per_category: int = 15, test_defect_per_type: int = 8,
                           categories=CATEGORIES, seed: int = 0) -> Path:
    """Write the dataset under ``root`` (MVTec layout) and return ``root``. Deterministic in ``seed``."""
    root = Path(root)
    for ci, cat in enumerate(categories):
        rng = np.random.default_rng([seed, ci])
        for i in range(train_per_category):
            _save(surface(rng, cat, size), root / cat / "train" / "good" / f"{i:03d}.png")
        for i in range(test_good_per_category):
            _save(surface(rng, cat, size), root / cat / "test" / "good" / f"{i:03d}.png")
        for kind in DEFECTS:
            for i in range(test_defect_per_type):
                mask = defect_mask(rng, kind, size)
                img = apply_defect(rng, surface(rng, cat, size), mask, kind)
                _save(img, root / cat / "test" / kind / f"{i:03d}.png")
                Image.fromarray(mask.astype(np.uint8) * 255).save(
                    _mkparent(root / cat / "ground_truth" / kind / f"{i:03d}_mask.png"))
    return root


def _mkparent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
