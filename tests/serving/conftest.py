"""Serving tests: a real Triton Inference Server (PyTriton's bundled tritonserver) on 127.0.0.1.

They need the serve extra (nvidia-pytriton, tritonclient) and a Python whose shared libpython the
Python-backend stub can load; .ci/run makes such an environment and runs them there
(`pytest -m serving tests/serving`). The default run deselects them (marker ``serving``). In an
environment without PyTriton they fail, they do not skip.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(autouse=True, scope="session")
def _serve_extra():
    try:
        import pytriton  # noqa: F401
        import tritonclient.grpc  # noqa: F401
        import tritonclient.http  # noqa: F401
    except ImportError as e:
        pytest.fail(f"the serving tests need the serve extra (pip install '.[serve]'): {e}", pytrace=False)


@pytest.fixture(scope="session")
def serve_bundle(tiny_checkpoint, perturb_unet, tmp_path_factory):
    """A DRDC bundle (ONNX Runtime) of the tiny checkpoint, U-Net perturbed so maps move."""
    from drdc_trt.loading import load_checkpoint
    from drdc_trt.export import export_bundle

    out = tmp_path_factory.mktemp("serve_bundle") / "bundle"
    export_bundle(perturb_unet(load_checkpoint(tiny_checkpoint).eval()), out, max_batch=8, check_batches=())
    return out


@pytest.fixture(scope="session")
def assert_map_close():
    """check(served float16 map, reference float32, atol=0): equal up to the float16 rounding of the
    response (round-to-nearest: half an ulp relative, or the smallest subnormal) plus atol; returns
    the largest difference."""

    def check(served: np.ndarray, reference: np.ndarray, atol: float = 0.0) -> float:
        assert served.dtype == np.float16 and served.shape == reference.shape
        err = np.abs(served.astype(np.float32) - reference)
        bound = np.abs(reference) * 2.0 ** -11 + 2.0 ** -24 + atol
        assert (err <= bound).all(), f"max abs map difference {err.max():.3g} above the float16 rounding"
        return float(err.max())

    return check


@pytest.fixture(scope="session")
def image_files(tmp_path_factory):
    """Files of the kinds drdc detect reads: RGB PNG, grey PNG, 16-bit grey PNG, JPEG, BMP; sizes
    other than the model's, so every one is resized."""
    folder = tmp_path_factory.mktemp("serve_images")
    rng = np.random.default_rng(7)

    def smooth(h, w, c):  # low-frequency content: JPEG and resizing keep some structure
        small = rng.integers(0, 256, (max(2, h // 8), max(2, w // 8), c), dtype=np.uint8)
        img = Image.fromarray(small.squeeze(-1) if c == 1 else small).resize((w, h), Image.BICUBIC)
        return np.asarray(img)

    files = []
    files.append(folder / "a_rgb.png")
    Image.fromarray(smooth(40, 50, 3)).save(files[-1])
    files.append(folder / "b_grey.png")
    Image.fromarray(smooth(64, 64, 1)).save(files[-1])
    files.append(folder / "c_grey16.png")
    Image.fromarray((smooth(48, 48, 1).astype(np.uint16) * 257 + 100).astype(np.uint16)).save(files[-1])
    files.append(folder / "d_photo.jpg")
    Image.fromarray(smooth(70, 60, 3)).save(files[-1], quality=90)
    files.append(folder / "e_rgb.bmp")
    Image.fromarray(smooth(32, 32, 3)).save(files[-1])
    return files


@pytest.fixture(scope="module")
def server(serve_bundle, tmp_path_factory):
    """drdc serve on the bundle (ONNX Runtime), stopped (SIGTERM, kill on timeout) after the module."""
    from drdc_trt.serving.process import ServerProcess

    log = tmp_path_factory.mktemp("serve_log") / "serve.log"
    with ServerProcess(["--bundle", serve_bundle, "--backend", "onnxruntime", "--max-batch", "8"], log) as srv:
        yield srv
