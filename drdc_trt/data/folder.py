"""MVTec-AD folder layout, one or many categories (one model for all of them).

    <root>/<category>/train/good/*.png
    <root>/<category>/test/<defect or good>/*.png
    <root>/<category>/ground_truth/<defect>/<stem>_mask.png

Grayscale images become 3 channels; any size of at least MIN_IMAGE_SIDE px is
resized to S×S. Images come out in [-1, 1] (B×3×S×S), masks in {0, 1} (B×1×S×S).

What is read: 8-bit images (grayscale, RGB, palette) and 16-bit grayscale
(scaled by 1/65535, not clipped at 255); an alpha channel only when fully opaque.
An EXIF orientation tag (cameras write one instead of rotating the pixels) is
applied, to images and masks alike, so a part is scored as it is shown.
Refused with a DatasetError naming the file: unreadable, truncated or empty
files, decompression bombs (more than PIL's ``Image.MAX_IMAGE_PIXELS``), float
and 32-bit integer images (their value range is unknown), transparency, images
smaller than MIN_IMAGE_SIDE, masks whose size differs from their image's and
masks with no value above the threshold of 127 but some above 0 (a 0/1 mask).
"""

from __future__ import annotations

import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
# A smaller image (1×1, a thumbnail) holds too little to be up-sampled into a model input.
MIN_IMAGE_SIDE = 8
_MODES_16BIT = ("I;16", "I;16L", "I;16B", "I;16N")


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
            truth = root / cat / "ground_truth" / defect
            if defect != "good" and not truth.is_dir():
                raise DatasetError(f"{base / defect}: defect folder without a ground_truth/{defect} folder of masks "
                                   f"(expected {truth}); name normal images' folder 'good'")
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


# EXIF orientations 5-8 turn the picture a quarter: width and height swap
_QUARTER_TURNS = {5, 6, 7, 8}


def upright(im: Image.Image) -> Image.Image:
    """The picture as shown: its EXIF orientation (tag 274) applied to the pixels; without one, itself."""
    if im.getexif().get(274, 1) in (1, None):
        return im
    return ImageOps.exif_transpose(im)


def shown_size(im: Image.Image) -> tuple[int, int]:
    """(width, height) once the EXIF orientation is applied, without decoding the pixels."""
    w, h = im.size
    return (h, w) if im.getexif().get(274, 1) in _QUARTER_TURNS else (w, h)


def _decoded(path: Path) -> Image.Image:
    """The fully decoded image as stored (its own mode), or a DatasetError naming the file."""
    try:
        with warnings.catch_warnings():
            # PIL only warns between MAX_IMAGE_PIXELS and twice that; refuse those too
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()  # full decode: a truncated file fails here, not later
                fmt = im.format
                im = upright(im)
                im = im.copy() if im.mode != "P" else im.convert("RGBA" if "transparency" in im.info else "RGB")
                im.format = fmt  # a 16-bit PNG may open as mode "I" (older PIL)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DatasetError(f"{path}: image too large, refused as a possible decompression bomb ({e})") from None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, EOFError, struct.error) as e:
        raise DatasetError(f"{path}: unreadable image ({e})") from None
    if min(im.size) < MIN_IMAGE_SIDE:
        raise DatasetError(f"{path}: image is {im.size[0]}×{im.size[1]} px, smaller than {MIN_IMAGE_SIDE} px a side")
    return im


def _check_opaque(path: Path, im: Image.Image) -> None:
    if "A" in im.getbands():
        lo, _ = im.getchannel("A").getextrema()
        if lo < 255:
            raise DatasetError(f"{path}: image has transparent pixels (mode {im.mode}, alpha down to {lo}); "
                               "the colour under them is undefined: flatten it onto a background first")


def load_image(path: str | Path, size: int) -> torch.Tensor:
    """3×S×S float in [-1, 1] (see the module docstring for what is read)."""
    return torch.from_numpy(image_array(Path(path), size)).permute(2, 0, 1).contiguous()


def image_array(source, size: int) -> np.ndarray:
    """load_image without torch, S×S×3 float32 in [-1, 1] (the server reads request images with it).
    ``source``: a path, a binary file object or a decoded PIL image; errors name ``str(source)``."""
    path = source
    im = upright(source) if isinstance(source, Image.Image) else _decoded(source)
    _check_opaque(path, im)
    if im.mode in _MODES_16BIT or (im.mode == "I" and im.format == "PNG"):  # 16-bit grayscale
        gray = np.asarray(im, dtype=np.float32) / 65535.0
        if gray.shape != (size, size):
            gray = np.asarray(Image.fromarray(gray).resize((size, size), Image.BILINEAR))
        arr = np.repeat(gray[:, :, None] * 2.0 - 1.0, 3, axis=2)
    elif im.mode in ("I", "F") or im.mode.startswith("I;"):
        raise DatasetError(f"{path}: mode {im.mode} image ({'float' if im.mode == 'F' else '32-bit integer'} "
                           "pixels of unknown range) is not supported; save it as 8-bit or 16-bit")
    else:
        rgb = im.convert("RGB")
        if rgb.size != (size, size):
            rgb = rgb.resize((size, size), Image.BILINEAR)
        arr = np.asarray(rgb, dtype=np.float32) / 127.5 - 1.0
    return np.ascontiguousarray(arr, dtype=np.float32)


def load_mask(path: str | Path, image_path: str | Path, size: int) -> torch.Tensor:
    """1×S×S in {0, 1}: defective where the mask is above 127 (anti-aliased edges are thresholded).
    The mask must have the size of its image; one whose non-zero values all lie at or below 127
    (a 0/1 mask) is refused, as thresholding would silently empty it."""
    mask = np.asarray(_decoded(Path(path)).convert("L"))
    with Image.open(image_path) as im:
        if shown_size(im) != mask.shape[::-1]:  # both as shown (EXIF orientation applied)
            raise DatasetError(f"{path}: mask size {mask.shape[::-1]} differs from image {image_path} size "
                               f"{shown_size(im)}")
    top = int(mask.max())
    if 0 < top <= 127:
        raise DatasetError(f"{path}: mask is not binary 0/255: its largest value is {top}, so no pixel would pass "
                           "the threshold of 127 (a 0/1 mask? store defective pixels as 255)")
    binary = Image.fromarray((mask > 127).astype(np.uint8))
    if binary.size != (size, size):
        binary = binary.resize((size, size), Image.NEAREST)
    return torch.from_numpy(np.asarray(binary, dtype=np.float32)).unsqueeze(0)


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
