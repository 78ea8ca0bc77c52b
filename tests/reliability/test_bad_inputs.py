"""Bad inputs, one table: each is refused with a clear error, never a crash or a silent wrong answer.

Every row builds one bad input in a temporary folder (the shared fixtures are copied
first), feeds it to the entry point that meets it in use (the data loaders, the
checkpoint and bundle loaders, the image-array APIs, the fused ops, the ``drdc`` and
``python -m drdc_trt.runtime`` command lines) and expects

* the library's own exception type (``DatasetError``, ``CheckpointError``,
  ``BundleError``, or ``ValueError``/``TypeError`` at the array and op boundaries),
  never a bare ``KeyError``/``struct.error``/``UnpicklingError``/PIL error leaking out;
* a message that names the culprit: every listed substring (file, field or shape)
  must appear in it;
* for a command line: exit status 2 and the culprit named on stderr.

A few odd inputs are valid and read exactly (a palette image, an opaque RGBA image,
a 16-bit image scaled by 1/65535 rather than clipped at 255): ``READ_EXACTLY``.
The image-array contract: float images in [-1, 1] (8-bit pixels v: v / 127.5 − 1),
finite; 0..255 arrays and integer dtypes are refused. A 0..1 array cannot be told
from a bright [-1, 1] image and is not refused.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
import shutil
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image

from drdc_trt import _C
from drdc_trt.methods.drdc import ops
from drdc_trt.checkpoint import CheckpointError
from drdc_trt.loading import load_checkpoint
from drdc_trt.config import preset
from drdc_trt.data import DatasetError, load_image, load_mask, load_split, scan
from drdc_trt.methods.drdc.masks import grid_labels
from drdc_trt.export.bundle import MANIFEST, NOISE_FILES, BundleError, BundleWriter, load_bundle


class CliFailed(Exception):
    """A command line that exited non-zero: ``code`` and what it wrote to stderr."""

    def __init__(self, code, stderr: str):
        super().__init__(f"exit {code}: {stderr}")
        self.code = code


# --------------------------------------------------------------------------- environment
class Env:
    """What a case may build on, each piece made on first use inside the case's tmp folder."""

    def __init__(self, request, tmp: Path):
        self.request, self.tmp = request, tmp

    def path(self, name: str) -> Path:
        return self.tmp / name

    def data(self) -> Path:
        """One category of the session's synthetic MVTec-layout set, copied."""
        src = self.request.getfixturevalue("synthetic_root")
        root = self.tmp / "data"
        shutil.copytree(src / "brushed", root / "brushed")
        return root

    def checkpoint(self) -> Path:
        """The session's trained tiny checkpoint, copied."""
        out = self.tmp / "ckpt"
        shutil.copytree(self.request.getfixturevalue("tiny_checkpoint"), out,
                        ignore=shutil.ignore_patterns("train_state"))
        return out

    def bundle(self) -> Path:
        return _hand_bundle(self.tmp / "bundle")


@dataclass(frozen=True)
class Case:
    name: str
    act: Callable[[Env], object]
    error: type[BaseException]
    needles: tuple[str, ...]  # each must appear in the message


CASES: list[Case] = []


def case(name: str, error: type[BaseException], *needles: str):
    def register(act):
        CASES.append(Case(name, act, error, needles))
        return act
    return register


# --------------------------------------------------------------------------- builders
S, R, T = 32, 4, 3  # the tiny preset: image size, rows per image (2 specs × 2 sets), DDIM steps


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A valid PNG signature and IHDR claiming width×height, with a few bytes of pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
                     + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _png_chunk(b"IEND", b""))
    return path


def _rgb(path: Path, size: int = 40, fmt: str | None = None) -> Path:
    arr = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path, format=fmt)
    return path


def _truncated(path: Path, fmt: str) -> Path:
    _rgb(path, 64, fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _hand_manifest() -> dict:
    cfg = preset("tiny")
    return {
        "config": cfg.to_dict(),
        "networks": {
            "base": {"onnx": "base.onnx",
                     "inputs": [{"name": "image", "shape": ["batch", 3, S, S], "dtype": "float32"}],
                     "outputs": [{"name": "base_map", "shape": ["batch", 2, 2], "dtype": "float32"}]},
            "unet": {"onnx": "unet.onnx",
                     "inputs": [{"name": "x", "shape": ["batch", 6, S, S], "dtype": "float32"},
                                {"name": "timesteps", "shape": ["batch"], "dtype": "float32"}],
                     "outputs": [{"name": "eps", "shape": ["batch", 3, S, S], "dtype": "float32"}]},
        },
        "noise": {"fill": {"file": NOISE_FILES["fill"], "shape": [R, 3, S, S], "dtype": "float32"},
                  "start": {"file": NOISE_FILES["start"], "shape": [R, 3, S, S], "dtype": "float32"},
                  "steps": {"file": NOISE_FILES["steps"], "shape": [T, R, 3, S, S], "dtype": "float32"}},
        "rows_per_image": R, "normalization": [0.5, 0.25, 3.0, 1.5],
        "fusion_stats": {"image_threshold": 2.0, "pixel_threshold": None},
        "fusion": {"pool_factors": [1, 2], "mean_filter": 3, "lam": 0.9, "score_window": 2},
        "max_batch": 4, "label_seed": 0, "timesteps": [250, 166, 83], "versions": {"numpy": np.__version__},
    }


def _hand_bundle(out: Path) -> Path:
    """A bundle built by hand (placeholder network files): loads and verifies like an exported one."""
    rng = np.random.default_rng(0)
    with BundleWriter(out) as w:
        w.write_bytes("base.onnx", b"abc")
        w.write_bytes("unet.onnx", bytes(range(256)) * 4)
        w.save_array(NOISE_FILES["fill"], rng.standard_normal((R, 3, S, S)).astype(np.float32))
        w.save_array(NOISE_FILES["start"], rng.standard_normal((R, 3, S, S)).astype(np.float32))
        w.save_array(NOISE_FILES["steps"], rng.standard_normal((T, R, 3, S, S)).astype(np.float32))
        return w.commit(_hand_manifest())


def _edit_manifest(bundle: Path, edit: Callable[[dict], None]) -> Path:
    m = json.loads((bundle / MANIFEST).read_text())
    edit(m)
    (bundle / MANIFEST).write_text(json.dumps(m))
    return bundle


def _rehash(bundle: Path, name: str) -> None:
    """Record file ``name``'s current SHA-256 and size in the manifest, as if it had been exported so."""
    data = (bundle / name).read_bytes()
    _edit_manifest(bundle, lambda m: m["files"].__setitem__(
        name, {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}))


def _edit_json(path: Path, edit: Callable[[dict], None]) -> Path:
    d = json.loads(path.read_text())
    edit(d)
    path.write_text(json.dumps(d))
    return path.parent


class _MakesFolder:
    """Unpickling this calls os.mkdir(path): proof that a loader unpickled."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


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


def _loop_problem(b=1, size=8, k=2):
    labels = grid_labels(size, (4,), k, seed=0)
    n = b * labels.shape[0] * k
    g = torch.Generator().manual_seed(0)
    return dict(x=torch.rand(b, 3, size, size, generator=g) * 2 - 1, labels=labels, k=k,
                fill=torch.randn(n, 3, size, size, generator=g), eps0=torch.randn(n, 3, size, size, generator=g),
                xt=torch.randn(n, 3, size, size, generator=g), eps=torch.randn(n, 3, size, size, generator=g),
                noise=torch.randn(n, 3, size, size, generator=g), unet_in=torch.zeros(n, 6, size, size),
                heat=torch.zeros(b, size, size))


def _step(p: dict, **over):
    a = {**p, **over}
    return ops.step(a["x"], a["labels"], a["k"], a["xt"], a["eps"], a["noise"], a["unet_in"], a["heat"],
                    0.8, 0.6, 0.9, 0.43, [1, 2], impl="csrc")


def _prepare(p: dict, **over):
    a = {**p, **over}
    return ops.prepare(a["x"], a["labels"], a["k"], a["fill"], a["eps0"], 0.8, 0.6, impl="csrc")


def _with_label(labels: torch.Tensor, value: int) -> torch.Tensor:
    out = labels.clone()
    out[-1, 6, 3] = value
    return out


def _cli(*args: str) -> None:
    """``drdc ARGS`` in-process; raises CliFailed(code, stderr) on a non-zero exit."""
    from drdc_trt.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main(list(args), prog_name="drdc", standalone_mode=True)
            code = 0
        except SystemExit as e:
            code = e.code
    if code:
        raise CliFailed(code, err.getvalue())


def _runtime_cli(*args: str) -> None:
    """``python -m drdc_trt.runtime ARGS`` in-process; raises CliFailed(code, stderr) on a non-zero exit."""
    from drdc_trt.runtime.__main__ import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(list(args))
        except SystemExit as e:
            code = e.code
    if code:
        raise CliFailed(code, err.getvalue())


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


# --------------------------------------------------------------------------- masks
def _mask_pair(env, mask: np.ndarray, size: int = 20) -> tuple[Path, Path]:
    img = _rgb(env.path("img.png"), size)
    Image.fromarray(mask).save(env.path("img_mask.png"))
    return env.path("img_mask.png"), img


@case("mask-wrong-size", DatasetError, "img_mask.png", "(24, 24)", "(20, 20)")
def _(env):
    load_mask(*_mask_pair(env, np.zeros((24, 24), np.uint8)), S)


@case("mask-zero-one-values", DatasetError, "img_mask.png", "not binary", "largest value is 1")
def _(env):
    m = np.zeros((20, 20), np.uint8)
    m[5:9, 5:9] = 1  # thresholded at 127, this defect silently vanished
    load_mask(*_mask_pair(env, m), S)


@case("mask-dim-values", DatasetError, "img_mask.png", "not binary", "largest value is 100")
def _(env):
    load_mask(*_mask_pair(env, np.full((20, 20), 100, np.uint8)), S)


@case("mask-corrupt", DatasetError, "img_mask.png", "unreadable image")
def _(env):
    mask, img = _mask_pair(env, np.zeros((20, 20), np.uint8))
    mask.write_bytes(mask.read_bytes()[:30])
    load_mask(mask, img, S)


@case("mask-missing", DatasetError, "000_mask.png", "is missing")
def _(env):
    root = env.data()
    mask = next((root / "brushed" / "ground_truth").glob("*/000_mask.png"))
    mask.unlink()
    scan(root, "test")


# --------------------------------------------------------------------------- data folders
@case("data-missing-root", DatasetError, "nowhere", "does not exist")
def _(env):
    scan(env.path("nowhere"), "train")


@case("data-empty-root", DatasetError, "empty_root", "no category folder")
def _(env):
    env.path("empty_root").mkdir()
    load_split(env.path("empty_root"), "train", S)


@case("data-empty-train-good", DatasetError, "good", "no images")
def _(env):
    root = env.data()
    for p in (root / "brushed" / "train" / "good").iterdir():
        p.unlink()
    scan(root, "train")


@case("data-unknown-defect-folder", DatasetError, "dent", "ground_truth/dent")
def _(env):
    root = env.data()
    (root / "brushed" / "test" / "dent").mkdir()
    _rgb(root / "brushed" / "test" / "dent" / "000.png", 64)
    scan(root, "test")


@case("data-missing-test-folder", DatasetError, "test", "missing folder")
def _(env):
    root = env.data()
    shutil.rmtree(root / "brushed" / "test")
    scan(root, "test", ["brushed"])


@case("data-unknown-category", DatasetError, "ghost", "missing folder")
def _(env):
    scan(env.data(), "train", ["ghost"])


@case("data-corrupt-image-in-split", DatasetError, "003.png", "unreadable image")
def _(env):
    root = env.data()
    (root / "brushed" / "train" / "good" / "003.png").write_bytes(b"not an image")
    load_split(root, "train", S)


# --------------------------------------------------------------------------- checkpoints
@case("checkpoint-missing-folder", CheckpointError, "no_ckpt", "does not exist")
def _(env):
    load_checkpoint(env.path("no_ckpt"))


@case("checkpoint-corrupt-weights", CheckpointError, "model.safetensors", "unreadable")
def _(env):
    ck = env.checkpoint()
    data = bytearray((ck / "model.safetensors").read_bytes())
    data[8:40] = b"\xff" * 32  # the JSON header
    (ck / "model.safetensors").write_bytes(bytes(data))
    load_checkpoint(ck)


@case("checkpoint-truncated-weights", CheckpointError, "model.safetensors", "unreadable")
def _(env):
    ck = env.checkpoint()
    data = (ck / "model.safetensors").read_bytes()
    (ck / "model.safetensors").write_bytes(data[: len(data) // 2])
    load_checkpoint(ck)


@case("checkpoint-header-length-lies", CheckpointError, "model.safetensors", "unreadable")
def _(env):
    ck = env.checkpoint()
    data = (ck / "model.safetensors").read_bytes()
    (ck / "model.safetensors").write_bytes(struct.pack("<Q", 1 << 40) + data[8:])
    load_checkpoint(ck)


@case("checkpoint-truncated-pixel-stats", CheckpointError, "pixel_stats.safetensors")
def _(env):
    ck = env.checkpoint()
    data = (ck / "pixel_stats.safetensors").read_bytes()
    (ck / "pixel_stats.safetensors").write_bytes(data[:-7])
    load_checkpoint(ck)


@case("checkpoint-config-missing-field", CheckpointError, "config.json", "fusion.lam")
def _(env):
    ck = env.checkpoint()
    load_checkpoint(_edit_json(ck / "config.json", lambda c: c["fusion"].pop("lam")))


@case("checkpoint-config-lam-out-of-range", CheckpointError, "config.json", "fusion.lam")
def _(env):
    ck = env.checkpoint()
    load_checkpoint(_edit_json(ck / "config.json", lambda c: c["fusion"].__setitem__("lam", 1.5)))


@case("checkpoint-config-wrong-type", CheckpointError, "config.json", "config.image_size", "'32'")
def _(env):
    ck = env.checkpoint()
    load_checkpoint(_edit_json(ck / "config.json", lambda c: c.__setitem__("image_size", "32")))


@case("checkpoint-stats-missing-field", CheckpointError, "stats.json", "diff_std")
def _(env):
    ck = env.checkpoint()
    load_checkpoint(_edit_json(ck / "stats.json", lambda s: s.pop("diff_std")))


@case("checkpoint-stats-zero-std", CheckpointError, "stats.json", "base_std")
def _(env):
    ck = env.checkpoint()
    load_checkpoint(_edit_json(ck / "stats.json", lambda s: s.__setitem__("base_std", 0.0)))


# --------------------------------------------------------------------------- bundles
@case("bundle-pickled-npy-matching-hash", BundleError, "noise_fill.npy", "allow_pickle")
def _(env):
    b = env.bundle()
    marker = env.path("unpickled")
    with open(b / NOISE_FILES["fill"], "wb") as fh:
        np.save(fh, np.array([_MakesFolder(str(marker))], dtype=object), allow_pickle=True)
    _rehash(b, NOISE_FILES["fill"])
    try:
        load_bundle(b).load_noise()  # the hash check passes: only allow_pickle=False stands in the way
    finally:
        assert not marker.exists(), "the loader unpickled the file"


@case("bundle-truncated-npy-matching-hash", BundleError, "noise_steps.npy", "unreadable .npy")
def _(env):
    b = env.bundle()
    p = b / NOISE_FILES["steps"]
    p.write_bytes(p.read_bytes()[:100])
    _rehash(b, NOISE_FILES["steps"])
    load_bundle(b).load_noise()


@case("bundle-corrupted-byte", BundleError, "unet.onnx", "SHA-256")
def _(env):
    b = env.bundle()
    data = bytearray((b / "unet.onnx").read_bytes())
    data[500] ^= 0x10
    (b / "unet.onnx").write_bytes(bytes(data))
    load_bundle(b)


@case("bundle-truncated-file", BundleError, "unet.onnx", "bytes")
def _(env):
    b = env.bundle()
    (b / "unet.onnx").write_bytes((b / "unet.onnx").read_bytes()[:77])
    load_bundle(b)


@case("bundle-manifest-not-json", BundleError, "manifest.json", "not valid JSON")
def _(env):
    b = env.bundle()
    (b / MANIFEST).write_text((b / MANIFEST).read_text()[:-40])
    load_bundle(b)


@case("bundle-manifest-missing-field", BundleError, "manifest.json", "fusion_stats")
def _(env):
    load_bundle(_edit_manifest(env.bundle(), lambda m: m.pop("fusion_stats")))


@case("bundle-manifest-missing-fusion-field", BundleError, "manifest.json", "fusion.lam")
def _(env):
    load_bundle(_edit_manifest(env.bundle(), lambda m: m["fusion"].pop("lam")))


@case("bundle-manifest-missing-threshold", BundleError, "manifest.json", "fusion_stats.image_threshold")
def _(env):
    # read as +inf before: every image "normal", silently
    load_bundle(_edit_manifest(env.bundle(), lambda m: m["fusion_stats"].pop("image_threshold")))


@case("bundle-manifest-zero-std", BundleError, "manifest.json", "normalization", "sd_diff=0")
def _(env):
    load_bundle(_edit_manifest(env.bundle(), lambda m: m.__setitem__("normalization", [0.5, 0, 3.0, 1.5])))


@case("bundle-manifest-noise-without-shape", BundleError, "manifest.json", "noise.start", "shape")
def _(env):
    load_bundle(_edit_manifest(env.bundle(), lambda m: m["noise"]["start"].pop("shape")))


@case("bundle-manifest-negative-max-batch", BundleError, "manifest.json", "max_batch", "-1")
def _(env):
    load_bundle(_edit_manifest(env.bundle(), lambda m: m.__setitem__("max_batch", -1)))


@case("bundle-wrong-format", BundleError, "manifest.json", "format")
def _(env):
    load_bundle(_edit_manifest(env.bundle(), lambda m: m.__setitem__("format", "onnx.bundle")))


@case("bundle-wrong-version-string", BundleError, "manifest.json", "schema_version '1'")
def _(env):
    load_bundle(_edit_manifest(env.bundle(), lambda m: m.__setitem__("schema_version", "1")))


@case("bundle-config-invalid-value", BundleError, "manifest.json", "config", "fusion.lam")
def _(env):
    load_bundle(_edit_manifest(env.bundle(), lambda m: m["config"]["fusion"].__setitem__("lam", 3)))


@case("bundle-config-wrong-type", BundleError, "manifest.json", "config.diffusion.num_steps", "'3'")
def _(env):
    load_bundle(_edit_manifest(env.bundle(), lambda m: m["config"]["diffusion"].__setitem__("num_steps", "3")))


@case("bundle-config-missing-field", BundleError, "manifest.json", "config lacks", "diffusion.t0")
def _(env):
    load_bundle(_edit_manifest(env.bundle(), lambda m: m["config"]["diffusion"].pop("t0")))


@case("bundle-config-not-an-object", BundleError, "manifest.json", "config", "expected an object")
def _(env):
    load_bundle(_edit_manifest(env.bundle(), lambda m: m.__setitem__("config", [1, 2])))


# --------------------------------------------------------------------------- fused ops (drdc_trt.ops, _C)
# (tests/unit/test_csrc_errors.py covers dtypes, contiguity, devices, pool factors, null pointers,
# aliasing and the refiner's own checks; these are the arguments it does not)
@case("op-step-label-above-range", ValueError, "labels", "value 2", "K=2")
def _(env):
    p = _loop_problem()
    _step(p, labels=_with_label(p["labels"], 2))


@case("op-prepare-label-negative", ValueError, "labels", "value -1", "[0, 6, 3]")
def _(env):
    p = _loop_problem()
    _prepare(p, labels=_with_label(p["labels"], -1))


@case("op-direct-C-label-out-of-range", ValueError, "labels", "value 9")
def _(env):
    p = _loop_problem()
    lab = _with_label(p["labels"], 9)
    xt, unet_in = torch.empty_like(p["xt"]), torch.empty_like(p["unet_in"])
    _C.prepare(device="cpu", x=p["x"].data_ptr(), labels=lab.data_ptr(), fill_noise=p["fill"].data_ptr(),
               eps0=p["eps0"].data_ptr(), xt=xt.data_ptr(), unet_in=unet_in.data_ptr(),
               B=1, J=1, K=2, H=8, W=8, sqrt_ab=0.8, sqrt_1mab=0.6)


@case("op-prepare-zero-sets", ValueError, "num_sets", "0")
def _(env):
    _prepare(_loop_problem(), k=0)


@case("op-step-negative-sets", ValueError, "num_sets", "-2")
def _(env):
    _step(_loop_problem(), k=-2)


@case("op-fuse-zero-count", ValueError, "count", "0")
def _(env):
    ops.fuse(torch.zeros(1, 8, 8), 0, torch.rand(1, 2, 2), 3, (0, 1, 0, 1), 0.9, 2, impl="csrc")


@case("op-fuse-negative-count", ValueError, "count", "-4")
def _(env):
    ops.fuse(torch.zeros(1, 8, 8), -4, torch.rand(1, 2, 2), 3, (0, 1, 0, 1), 0.9, 2, impl="csrc")


@case("op-direct-C-fuse-zero-batch", ValueError, "B=0")
def _(env):
    t = torch.zeros(1, 8, 8)
    _C.fuse(device="cpu", heat=t.data_ptr(), base=t.data_ptr(), final=t.data_ptr(), diff_map=t.data_ptr(),
            base_up=t.data_ptr(), score=t.data_ptr(), B=0, H=8, W=8, h=2, w=2, inv_count=0.25, mean_filter=3,
            mu_d=0.0, sd_d=1.0, mu_b=0.0, sd_b=1.0, lam=0.9, score_window=2)


@case("op-step-heat-batch-mismatch", ValueError, "heat", "(2, 8, 8)", "(1, 8, 8)")
def _(env):
    _step(_loop_problem(), heat=torch.zeros(2, 8, 8))


@case("op-fuse-base-batch-mismatch", ValueError, "base", "(3, 2, 2)", "(1, 2, 2)")
def _(env):
    ops.fuse(torch.zeros(1, 8, 8), 4, torch.rand(3, 2, 2), 3, (0, 1, 0, 1), 0.9, 2, impl="csrc")


@case("op-prepare-labels-size-mismatch", ValueError, "labels", "(2, 4, 4)", "(2, 8, 8)")
def _(env):
    _prepare(_loop_problem(), labels=grid_labels(4, (2,), 2, seed=0).repeat(2, 1, 1))


@case("op-refiner-zero-batch", ValueError, "batch must be >= 1")
def _(env):
    _C.Refiner(_C.PythonRunner(lambda *a: None, device="cpu"), device="cpu", batch=0, height=8, width=8,
               num_sets=2, t0=50, num_steps=2, pool_factors=[1], labels=grid_labels(8, (4,), 2, seed=0).numpy())


@case("op-refiner-zero-steps", ValueError, "num_steps=0")
def _(env):
    _C.Refiner(_C.PythonRunner(lambda *a: None, device="cpu"), device="cpu", batch=1, height=8, width=8,
               num_sets=2, t0=50, num_steps=0, pool_factors=[1], labels=grid_labels(8, (4,), 2, seed=0).numpy())


@case("op-grid-labels-cell-does-not-divide", ValueError, "cell size 3", "image size 8")
def _(env):
    _C.grid_labels(8, [3], 2)


# --------------------------------------------------------------------------- drdc command line
@case("cli-train-negative-iterations", CliFailed, "--set", "train.unet_iters=-5")
def _(env):
    _cli("train", "--data", str(env.data()), "--out", str(env.path("o")), "--preset", "tiny",
         "--set", "train.unet_iters=-5")


@case("cli-train-lambda-above-one", CliFailed, "--set", "fusion.lam")
def _(env):
    _cli("train", "--data", str(env.data()), "--out", str(env.path("o")), "--preset", "tiny",
         "--set", "fusion.lam=1.5")


@case("cli-train-lambda-negative", CliFailed, "--set", "fusion.lam")
def _(env):
    _cli("train", "--data", str(env.data()), "--out", str(env.path("o")), "--preset", "tiny",
         "--set", "fusion.lam=-0.1")


@case("cli-train-batch-zero", CliFailed, "--set", "train.batch_size=0")
def _(env):
    _cli("train", "--data", str(env.data()), "--out", str(env.path("o")), "--preset", "tiny",
         "--set", "train.batch_size=0")


@case("cli-train-pool-factor-zero", CliFailed, "--set", "fusion.pool_factors=[0]")
def _(env):
    _cli("train", "--data", str(env.data()), "--out", str(env.path("o")), "--preset", "tiny",
         "--set", "fusion.pool_factors=[0]")


@case("cli-train-grid-size-zero", CliFailed, "--set", "diffusion.grid_sizes=[4, 0]")
def _(env):
    _cli("train", "--data", str(env.data()), "--out", str(env.path("o")), "--preset", "tiny",
         "--set", "diffusion.grid_sizes=[4,0]")


@case("cli-train-image-size-not-a-number", CliFailed, "--set", "image_size", "'big'")
def _(env):
    _cli("train", "--data", str(env.data()), "--out", str(env.path("o")), "--preset", "tiny",
         "--set", "image_size=big")


@case("cli-train-unknown-preset", CliFailed, "--preset", "'huge'")
def _(env):
    _cli("train", "--data", str(env.data()), "--out", str(env.path("o")), "--preset", "huge")


@case("cli-train-missing-data", CliFailed, "no_data", "does not exist")
def _(env):
    _cli("train", "--data", str(env.path("no_data")), "--out", str(env.path("o")), "--preset", "tiny", "--quiet")


@case("cli-detect-unknown-backend", CliFailed, "--backend", "'tflite'")
def _(env):
    _cli("detect", "--model", str(env.path("m")), "--backend", "tflite", str(_rgb(env.path("a.png"))))


@case("cli-detect-batch-zero", CliFailed, "--batch-size", "0")
def _(env):
    _cli("detect", "--model", str(env.path("m")), "--batch-size", "0", str(_rgb(env.path("a.png"))))


@case("cli-detect-negative-seed", CliFailed, "--seed", "-3")
def _(env):
    _cli("detect", "--model", str(env.path("m")), "--seed", "-3", str(_rgb(env.path("a.png"))))


@case("cli-detect-missing-image", CliFailed, "gone.png", "no such file")
def _(env):
    _cli("detect", "--model", str(env.path("m")), str(env.path("gone.png")))


@case("cli-detect-corrupt-image", CliFailed, "broken.png", "unreadable image")
def _(env):
    env.path("imgs").mkdir()
    _rgb(env.path("imgs") / "fine.png")
    (env.path("imgs") / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnothing more")
    _cli("detect", "--model", str(env.checkpoint()), "--out", str(env.path("out")), str(env.path("imgs")))


@case("cli-detect-out-is-a-file", CliFailed, "--out", "results.txt", "is a file, not a folder")
def _(env):
    env.path("results.txt").write_text("kept")
    try:
        _cli("detect", "--model", str(env.checkpoint()), "--out", str(env.path("results.txt")),
             str(_rgb(env.path("a.png"))))
    finally:
        assert env.path("results.txt").read_text() == "kept"  # nothing written over it


@case("cli-export-max-batch-zero", CliFailed, "--max-batch", "0")
def _(env):
    _cli("export", "--model", str(env.path("m")), "--out", str(env.path("b")), "--max-batch", "0")


@case("cli-export-opset-out-of-range", CliFailed, "--opset", "9")
def _(env):
    _cli("export", "--model", str(env.path("m")), "--out", str(env.path("b")), "--opset", "9")


@case("cli-export-check-batch-zero", CliFailed, "--check-batches", "'1,0'")
def _(env):
    _cli("export", "--model", str(env.path("m")), "--out", str(env.path("b")), "--check-batches", "1,0")


@case("cli-export-missing-checkpoint", CliFailed, "no_ckpt", "model.safetensors")
def _(env):
    _cli("export", "--model", str(env.path("no_ckpt")), "--out", str(env.path("b")))


@case("cli-calibrate-lambda-out-of-range", CliFailed, "fusion.lam")
def _(env):
    _cli("calibrate", "--model", str(env.checkpoint()), "--data", str(env.data()), "--out", str(env.path("c")),
         "--set", "fusion.lam=2", "--set", "fusion.select=fixed", "--quiet")


@case("cli-calibrate-training-setting", CliFailed, "train.unet_iters", "not inference settings")
def _(env):
    _cli("calibrate", "--model", str(env.checkpoint()), "--data", str(env.data()), "--out", str(env.path("c")),
         "--set", "train.unet_iters=9", "--quiet")


@case("cli-ablate-lambda-out-of-range", CliFailed, "--lams", "[0, 1]")
def _(env):
    _cli("ablate", "--model", str(env.path("m")), "--data", str(env.path("d")), "--work", str(env.path("w")),
         "--lams", "0,1.2")


@case("cli-synth-size-zero", CliFailed, "--size", "0")
def _(env):
    _cli("synth", "--out", str(env.path("s")), "--size", "0")


@case("runtime-cli-pickled-images", CliFailed, "images.npy", "allow_pickle")
def _(env):
    marker = env.path("unpickled")
    with open(env.path("images.npy"), "wb") as fh:
        np.save(fh, np.array([_MakesFolder(str(marker))], dtype=object), allow_pickle=True)
    try:
        _runtime_cli(str(env.bundle()), str(env.path("images.npy")), "--out", str(env.path("r.npz")))
    finally:
        assert not marker.exists(), "the runtime unpickled the images file"


@case("runtime-cli-batch-zero", CliFailed, "--batch-size", "0")
def _(env):
    np.save(env.path("images.npy"), np.zeros((1, 3, S, S), np.float32))
    _runtime_cli(str(env.bundle()), str(env.path("images.npy")), "--out", str(env.path("r.npz")),
                 "--batch-size", "0")


@case("runtime-cli-missing-bundle", CliFailed, "no_bundle", "no such folder")
def _(env):
    np.save(env.path("images.npy"), np.zeros((1, 3, S, S), np.float32))
    _runtime_cli(str(env.path("no_bundle")), str(env.path("images.npy")), "--out", str(env.path("r.npz")))


# --------------------------------------------------------------------------- the table
@pytest.mark.parametrize("bad", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_refused_clearly(bad: Case, request, tmp_path):
    env = Env(request, tmp_path)
    with pytest.raises(bad.error) as caught:
        bad.act(env)
    message = str(caught.value)
    missing = [n for n in bad.needles if n not in message]
    assert not missing, f"message lacks {missing}: {message}"
    if bad.error is CliFailed:
        assert caught.value.code == 2, message  # a refusal, not a crash's traceback exit


def test_case_table():
    """The table: enough cases, unique names, every family the reliability suite names."""
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))
    assert len(CASES) >= 40
    families = {n.split("-")[0] for n in names}
    assert families == {"image", "array", "bundle", "mask", "data", "checkpoint", "op", "cli", "runtime"}


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
