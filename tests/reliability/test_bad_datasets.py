"""Bad dataset folders and masks are refused clearly.

Rows of the bad-input table (bad_inputs.py: the contract, the row type, the table's test):
masks fed to ``load_mask``, MVTec-layout folders fed to ``scan`` and ``load_split``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from bad_inputs import S, Case, _rgb, refusal_test, registrar
from drdc_trt.data import DatasetError, load_mask, load_split, scan

CASES: list[Case] = []
case = registrar(CASES)


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


# --------------------------------------------------------------------------- the table
test_bad_input_is_refused_clearly = refusal_test(CASES)
