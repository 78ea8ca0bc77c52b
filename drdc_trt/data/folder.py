"""MVTec-AD folder layout, one or many categories (one model for all of them).

    <root>/<category>/train/good/*.png
    <root>/<category>/test/<defect or good>/*.png
    <root>/<category>/ground_truth/<defect>/<stem>_mask.png

Grayscale images become 3 channels; any size is resized to S×S. Images come
out in [-1, 1] (B×3×S×S), masks in {0, 1} (B×1×S×S).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class DatasetError(ValueError):
    """Bad dataset input; the message names the file or folder at fault."""


@dataclass(frozen=True)
class Sample:
    path: Path
    category: str
    defect: str            # "good" or the defect type
    mask_path: Path | None  # None for good images

    @property
    def label(self) -> int:
        return 0 if self.defect == "good" else 1


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def find_categories(root: Path) -> list[str]:
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder does not exist")
    cats = sorted(p.name for p in root.iterdir() if (p / "train").is_dir() or (p / "test").is_dir())
    if not cats:
        raise DatasetError(f"{root}: no category folder with train/ or test/ inside (MVTec-AD layout expected)")
    return cats


def scan(root: str | Path, split: str, categories: Sequence[str] | None = None) -> list[Sample]:
    """List the samples of a split ("train" or "test"), checking the layout."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root)
    cats = list(categories) if categories else find_categories(root)
    samples: list[Sample] = []
    for cat in cats:
        base = root / cat / split
        if not base.is_dir():
            raise DatasetError(f"{base}: missing folder")
        if split == "train":
            good = base / "good"
            if not good.is_dir():
                raise DatasetError(f"{good}: missing folder")
            files = _images_in(good)
            if not files:
                raise DatasetError(f"{good}: no images (expected {', '.join(IMAGE_SUFFIXES)})")
            samples += [Sample(p, cat, "good", None) for p in files]
            continue
        defects = sorted(p.name for p in base.iterdir() if p.is_dir())
        if not defects:
            raise DatasetError(f"{base}: no defect-type folders")
        for defect in defects:
            for p in _images_in(base / defect):
                mask = None
                if defect != "good":
                    mask = root / cat / "ground_truth" / defect / f"{p.stem}_mask.png"
                    if not mask.is_file():
                        raise DatasetError(f"{p}: ground-truth mask {mask} is missing")
                samples.append(Sample(p, cat, defect, mask))
        if not samples or all(s.category != cat for s in samples):
            raise DatasetError(f"{base}: no test images")
    return samples


def _open(path: Path, mode: str) -> Image.Image:
    try:
        with Image.open(path) as im:
            im.load()  # full decode: a truncated file fails here, not later
            return im.convert(mode)
    except (OSError, UnidentifiedImageError, SyntaxError) as e:
        raise DatasetError(f"{path}: unreadable image ({e})") from None


def load_image(path: str | Path, size: int) -> torch.Tensor:
    """3×S×S float in [-1, 1]."""
    im = _open(Path(path), "RGB")
    if im.size != (size, size):
        im = im.resize((size, size), Image.BILINEAR)
    arr = np.asarray(im, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def load_mask(path: str | Path, image_path: str | Path, size: int) -> torch.Tensor:
    """1×S×S in {0, 1}; the mask must have the size of its image."""
    mask = _open(Path(path), "L")
    with Image.open(image_path) as im:
        if im.size != mask.size:
            raise DatasetError(f"{path}: mask size {mask.size} differs from image {image_path} size {im.size}")
    if mask.size != (size, size):
        mask = mask.resize((size, size), Image.NEAREST)
    return torch.from_numpy((np.asarray(mask) > 127).astype(np.float32)).unsqueeze(0)


@dataclass
class Loaded:
    """A split held in memory (the datasets of this method are small)."""

    images: torch.Tensor   # B×3×S×S in [-1, 1]
    masks: torch.Tensor    # B×1×S×S in {0, 1}
    labels: torch.Tensor   # B, 0 = good, 1 = defective
    samples: list[Sample]

    def __len__(self) -> int:
        return len(self.samples)

    def subset(self, idx: Iterable[int]) -> "Loaded":
        idx = list(idx)
        return Loaded(self.images[idx], self.masks[idx], self.labels[idx], [self.samples[i] for i in idx])


def load_split(root: str | Path, split: str, size: int, categories: Sequence[str] | None = None,
               progress: bool = False) -> Loaded:
    samples = scan(root, split, categories)
    it = samples
    if progress:
        from tqdm import tqdm

        it = tqdm(samples, desc=f"loading {split}", unit="img", leave=False)
    images, masks = [], []
    for s in it:
        images.append(load_image(s.path, size))
        masks.append(load_mask(s.mask_path, s.path, size) if s.mask_path else torch.zeros(1, size, size))
    labels = torch.tensor([s.label for s in samples])
    return Loaded(torch.stack(images), torch.stack(masks), labels, samples)
