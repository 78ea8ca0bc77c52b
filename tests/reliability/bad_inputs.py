"""Bad inputs, one table: each is refused with a clear error, never a crash or a silent wrong answer.

The table's rows live in the ``test_bad_*.py`` modules beside this one, one module per kind of
input (images, datasets, checkpoints, bundles, fused-op operands, command lines); this module
holds what they share: the row type and its ``case`` decorator, the environment a row builds
on, the builders more than one module uses, and the table's test. (Tests are not a package and
run under ``--import-mode=importlib``: conftest.py puts this folder on ``sys.path`` so the test
modules can import this one.)

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
a 16-bit image scaled by 1/65535 rather than clipped at 255): ``READ_EXACTLY`` in
test_bad_images.py. The image-array contract: float images in [-1, 1] (8-bit pixels v:
v / 127.5 − 1), finite; 0..255 arrays and integer dtypes are refused. A 0..1 array cannot
be told from a bright [-1, 1] image and is not refused.

test_bad_input_table.py checks the table as a whole (every module's rows together).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from drdc_trt.config import preset
from drdc_trt.export.bundle import NOISE_FILES, BundleWriter


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


def registrar(cases: list[Case]):
    """A module's ``case`` decorator: ``case = registrar(CASES)``, then ``@case(name, error, *needles)``
    on a function adds it to ``CASES`` as a row."""

    def case(name: str, error: type[BaseException], *needles: str):
        def register(act):
            cases.append(Case(name, act, error, needles))
            return act
        return register
    return case


# --------------------------------------------------------------------------- builders
S, R, T = 32, 4, 3  # the tiny preset: image size, rows per image (2 specs × 2 sets), DDIM steps


def _rgb(path: Path, size: int = 40, fmt: str | None = None) -> Path:
    arr = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path, format=fmt)
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


class _MakesFolder:
    """Unpickling this calls os.mkdir(path): proof that a loader unpickled."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


# --------------------------------------------------------------------------- the table's test
def refusal_test(cases: list[Case]):
    """The table's test over one module's rows: ``test_bad_input_is_refused_clearly = refusal_test(CASES)``
    at the end of the module, after its last row."""

    @pytest.mark.parametrize("bad", cases, ids=[c.name for c in cases])
    def test_bad_input_is_refused_clearly(bad: Case, request, tmp_path):
        env = Env(request, tmp_path)
        with pytest.raises(bad.error) as caught:
            bad.act(env)
        message = str(caught.value)
        missing = [n for n in bad.needles if n not in message]
        assert not missing, f"message lacks {missing}: {message}"
        if bad.error is CliFailed:
            assert caught.value.code == 2, message  # a refusal, not a crash's traceback exit

    return test_bad_input_is_refused_clearly
