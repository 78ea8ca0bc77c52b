"""Bad images, as files and as arrays, are refused clearly; odd but valid images are read exactly.

Rows of the bad-input table (bad_inputs.py: the contract, the row type, the table's test):
image files fed to ``load_image``, image arrays fed to ``Detector.predict_batch`` and to a
bundle's ``check_images``. Then the odd but valid images (``READ_EXACTLY``) and EXIF
orientation, for images and their masks.
"""

from __future__ import annotations

import functools
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bad_inputs import S, Case, _rgb, refusal_test, registrar
from drdc_trt.config import preset
from drdc_trt.data import DatasetError, load_image, load_mask
from drdc_trt.export.bundle import load_bundle

CASES: list[Case] = []
case = registrar(CASES)


# --------------------------------------------------------------------------- builders
def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A valid PNG signature and IHDR claiming width×height, with a few bytes of pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
                     + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _png_chunk(b"IEND", b""))
    return path


def _truncated(path: Path, fmt: str) -> Path:
    _rgb(path, 64, fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@functools.lru_cache(maxsize=None)
def _detector():
    from drdc_trt.methods.drdc.model import DRDCModel
    from drdc_trt.methods.drdc.pipeline import Detector

    return Detector.from_model(DRDCModel(preset("tiny")).eval())


def _images(fill=0.0, shape=(1, 3, S, S), dtype=torch.float32) -> torch.Tensor:
    x = torch.zeros(shape, dtype=torch.float32).uniform_(-1, 1, generator=torch.Generator().manual_seed(0))
    if fill is not None and fill != 0.0:
        x[0, 1, 5, 7] = fill
    return x.to(dtype)


# --------------------------------------------------------------------------- images (files)
@case("image-corrupt-bytes", DatasetError, "corrupt.png", "unreadable image")
def _(env):
    p = env.path("corrupt.png")
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 2)
    load_image(p, S)


@case("image-truncated-png", DatasetError, "cut.png", "truncated")
def _(env):
    load_image(_truncated(env.path("cut.png"), "PNG"), S)


@case("image-truncated-jpeg", DatasetError, "cut.jpg", "truncated")
def _(env):
    load_image(_truncated(env.path("cut.jpg"), "JPEG"), S)


@case("image-empty-file", DatasetError, "empty.png", "unreadable image")
def _(env):
    env.path("empty.png").write_bytes(b"")
    load_image(env.path("empty.png"), S)


@case("image-missing-file", DatasetError, "absent.png")
def _(env):
    load_image(env.path("absent.png"), S)


@case("image-rgba-transparent", DatasetError, "alpha.png", "transparent")
def _(env):
    im = np.full((20, 20, 4), 200, np.uint8)
    im[3:6, 3:6, 3] = 0  # a transparent patch: the colour beneath it means nothing
    Image.fromarray(im, "RGBA").save(env.path("alpha.png"))
    load_image(env.path("alpha.png"), S)


@case("image-gray-alpha-transparent", DatasetError, "la.png", "transparent")
def _(env):
    Image.new("LA", (20, 20), (128, 10)).save(env.path("la.png"))
    load_image(env.path("la.png"), S)


@case("image-palette-transparent", DatasetError, "pal.png", "transparent")
def _(env):
    im = Image.new("P", (20, 20), 1)
    im.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    im.save(env.path("pal.png"), transparency=1)  # palette entry 1, used by every pixel, is transparent
    load_image(env.path("pal.png"), S)


@case("image-1x1", DatasetError, "dot.png", "1×1 px")
def _(env):
    Image.new("RGB", (1, 1), (9, 9, 9)).save(env.path("dot.png"))
    load_image(env.path("dot.png"), S)


@case("image-decompression-bomb", DatasetError, "bomb.png", "decompression bomb")
def _(env):
    load_image(_png_header_only(env.path("bomb.png"), 100_000, 100_000), S)  # 10^10 px claimed


@case("image-bomb-below-pil-hard-limit", DatasetError, "big.png", "decompression bomb")
def _(env):
    # between MAX_IMAGE_PIXELS and twice that PIL only warns, then decodes 100 Mpx of nothing
    assert Image.MAX_IMAGE_PIXELS < 10_000 * 10_000 < 2 * Image.MAX_IMAGE_PIXELS
    load_image(_png_header_only(env.path("big.png"), 10_000, 10_000), S)


@case("image-float-tiff-nan", DatasetError, "nan.tif", "mode F")
def _(env):
    a = np.full((20, 20), 0.5, np.float32)
    a[4, 4], a[5, 5] = np.nan, np.inf  # these became -1 after PIL's float → 8-bit conversion
    Image.fromarray(a).save(env.path("nan.tif"))
    load_image(env.path("nan.tif"), S)


@case("image-float-tiff-unit-range", DatasetError, "unit.tif", "mode F")
def _(env):
    Image.fromarray(np.full((20, 20), 0.75, np.float32)).save(env.path("unit.tif"))  # read as black before
    load_image(env.path("unit.tif"), S)


@case("image-int32-tiff", DatasetError, "i32.tif", "mode I")
def _(env):
    Image.fromarray(np.full((20, 20), 70_000, np.int32)).save(env.path("i32.tif"))
    load_image(env.path("i32.tif"), S)


# --------------------------------------------------------------------------- images (arrays)
@case("array-nan", ValueError, "images", "non-finite", "(0, 1, 5, 7)")
def _(env):
    _detector().predict_batch(_images(float("nan")))


@case("array-inf", ValueError, "images", "non-finite")
def _(env):
    _detector().predict_batch(_images(float("-inf")))


@case("array-0-255-floats", ValueError, "images", "[0, 255]", "0..255")
def _(env):
    x = torch.zeros(1, 3, S, S)
    x[0, 0, 0, 0] = 255.0
    _detector().predict_batch(x)


@case("array-slightly-out-of-range", ValueError, "images", "expected [-1, 1]")
def _(env):
    _detector().predict_batch(_images(1.05))


@case("array-uint8", TypeError, "images", "torch.uint8")
def _(env):
    _detector().predict_batch(torch.full((1, 3, S, S), 128, dtype=torch.uint8))


@case("array-wrong-channels", ValueError, "images", "(1, 1, 32, 32)")
def _(env):
    _detector().predict_batch(torch.zeros(1, 1, S, S))


@case("array-empty-batch", ValueError, "images", "(0, 3, 32, 32)")
def _(env):
    _detector().predict_batch(torch.zeros(0, 3, S, S))


@case("bundle-array-nan", ValueError, "images", "non-finite")
def _(env):
    x = np.zeros((2, 3, S, S), np.float32)
    x[1, 2, 3, 4] = np.nan
    load_bundle(env.bundle()).check_images(x)


@case("bundle-array-0-255-floats", ValueError, "images", "0..255")
def _(env):
    load_bundle(env.bundle()).check_images(np.full((1, 3, S, S), 200.0, np.float32))


@case("bundle-array-float64", ValueError, "input 'image'", "float32", "float64")
def _(env):
    load_bundle(env.bundle()).check_images(np.zeros((1, 3, S, S), np.float64))


# --------------------------------------------------------------------------- the table
test_bad_input_is_refused_clearly = refusal_test(CASES)


# --------------------------------------------------------------------------- odd but valid
def _palette(path: Path) -> Path:
    im = Image.new("P", (16, 16), 1)
    im.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    im.save(path)
    return path


def _opaque_rgba(path: Path) -> Path:
    Image.new("RGBA", (16, 16), (200, 100, 50, 255)).save(path)
    return path


def _gray16(path: Path) -> Path:
    Image.fromarray(np.full((16, 16), 40_000, np.uint16)).save(path)  # a 16-bit PNG
    return path


READ_EXACTLY = [
    # (name, writer, expected value of every pixel per channel, in [-1, 1])
    ("palette", _palette, (200 / 127.5 - 1, 100 / 127.5 - 1, 50 / 127.5 - 1)),
    ("opaque-rgba", _opaque_rgba, (200 / 127.5 - 1, 100 / 127.5 - 1, 50 / 127.5 - 1)),
    # 40000 / 65535 of full scale; clipped at 255 it read as 1.0
    ("gray-16-bit", _gray16, (2 * 40_000 / 65_535 - 1,) * 3),
]


@pytest.mark.parametrize("name, writer, rgb", READ_EXACTLY, ids=[r[0] for r in READ_EXACTLY])
def test_odd_but_valid_images_are_read_exactly(name, writer, rgb, tmp_path):
    x = load_image(writer(tmp_path / f"{name}.png"), S)
    assert x.shape == (3, S, S) and x.dtype == torch.float32
    want = torch.tensor(rgb, dtype=torch.float32).view(3, 1, 1).expand(3, S, S)
    torch.testing.assert_close(x, want, atol=1e-6, rtol=0)


# --------------------------------------------------------------------------- EXIF orientation
def _asymmetric(w: int = 24, h: int = 16) -> Image.Image:
    """Left third red, the rest blue, a green top row: every turn and flip of it differs."""
    a = np.zeros((h, w, 3), np.uint8)
    a[:, : w // 3] = (220, 30, 30)
    a[:, w // 3:] = (30, 30, 220)
    a[0] = (30, 220, 30)
    return Image.fromarray(a)


@pytest.mark.parametrize("orientation,turn", [(3, Image.Transpose.ROTATE_180), (6, Image.Transpose.ROTATE_270),
                                              (8, Image.Transpose.ROTATE_90)])
def test_exif_orientation_is_applied_to_images_and_masks(orientation, turn, tmp_path):
    """A camera's orientation tag: the image and its mask are read as shown, i.e. exactly as the
    physically turned picture (PNG: lossless); a JPEG within its compression noise."""
    im = _asymmetric()
    exif = Image.Exif()
    exif[274] = orientation
    im.save(tmp_path / "tagged.png", exif=exif)
    im.transpose(turn).save(tmp_path / "turned.png")
    got, want = load_image(tmp_path / "tagged.png", S), load_image(tmp_path / "turned.png", S)
    assert torch.equal(got, want)
    assert not torch.equal(got, load_image(_asymmetric().save(tmp_path / "plain.png") or tmp_path / "plain.png", S))
    # the mask follows its tag too, and its size is compared with the image as shown
    m = np.zeros((16, 24), np.uint8)
    m[:4, :6] = 255
    Image.fromarray(m).save(tmp_path / "mask_tagged.png", exif=exif)
    Image.fromarray(m).transpose(turn).save(tmp_path / "mask_turned.png")
    assert torch.equal(load_mask(tmp_path / "mask_tagged.png", tmp_path / "tagged.png", S),
                       load_mask(tmp_path / "mask_turned.png", tmp_path / "turned.png", S))
    if orientation != 3:  # a quarter turn: an untagged mask of the stored size no longer fits the image
        with pytest.raises(DatasetError, match="differs from image"):
            load_mask(tmp_path / "mask_turned.png", tmp_path / "plain.png", S)
        with pytest.raises(DatasetError, match=r"size \(16, 24\)"):
            Image.fromarray(m).save(tmp_path / "mask_untagged.png")
            load_mask(tmp_path / "mask_untagged.png", tmp_path / "tagged.png", S)
    # JPEG, the format cameras write
    im.save(tmp_path / "tagged.jpg", exif=exif, quality=95)
    im.transpose(turn).save(tmp_path / "turned.jpg", quality=95)
    diff = (load_image(tmp_path / "tagged.jpg", S) - load_image(tmp_path / "turned.jpg", S)).abs().mean()
    assert float(diff) < 0.03
