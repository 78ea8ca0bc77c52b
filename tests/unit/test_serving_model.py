"""drdc_trt.serving without Triton (default run): request images are read exactly as drdc detect
reads files, a group of requests is one prediction split back per request, bad requests are
refused naming the request and image."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from drdc_trt.data import load_image
from drdc_trt.serving import INPUT_ENCODED, INPUT_RAW
from drdc_trt.serving.model import RequestError, ServingModel, read_encoded, read_pixels

S = 16


def _png(arr, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, **kw).save(buf, format="PNG")
    return buf.getvalue()


def _pixels(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("shape", [(40, 50), (16, 16), (9, 33)])
def test_pixels_read_as_drdc_detect_reads_their_file(tmp_path, shape):
    arr = _pixels(*shape)
    Image.fromarray(arr).save(tmp_path / "x.png")
    want = load_image(tmp_path / "x.png", S).numpy()
    np.testing.assert_array_equal(read_pixels(arr, S, "r"), want)


def test_pixels_at_model_size_are_v_over_127_5_minus_1():
    arr = _pixels(S, S, 1)
    np.testing.assert_array_equal(read_pixels(arr, S, "r"), arr.transpose(2, 0, 1).astype(np.float32) / 127.5 - 1)


@pytest.mark.parametrize("kind", ["rgb", "grey", "grey16", "jpeg"])
def test_encoded_read_as_drdc_detect_reads_the_file(tmp_path, kind):
    rng = np.random.default_rng(2)
    f = tmp_path / ("x.jpg" if kind == "jpeg" else "x.png")
    if kind == "grey":
        Image.fromarray(rng.integers(0, 256, (30, 20), dtype=np.uint8)).save(f)
    elif kind == "grey16":
        Image.fromarray(rng.integers(0, 65536, (30, 20), dtype=np.uint16)).save(f)
    else:
        Image.fromarray(_pixels(30, 20, 3)).save(f)
    np.testing.assert_array_equal(read_encoded(f.read_bytes(), S, "r"), load_image(f, S).numpy())


class _Recorder:
    """predict(x): score = mean of each image, map = its first channel; counts the calls."""

    def __init__(self):
        self.batches = []

    def __call__(self, x: torch.Tensor, batch_size=8):
        from drdc_trt.methods.drdc.pipeline import InferenceBatch

        self.batches.append(x.shape[0])
        score = x.mean(dim=(1, 2, 3))
        amap = x[:, 0] * 3.0
        z = torch.zeros_like(score)
        return InferenceBatch(score, score > 0, amap, amap > 0, amap, amap, z)


def test_group_of_requests_is_one_prediction_split_back():
    rec = _Recorder()
    model = ServingModel(rec, S, 0.0, max_batch=4)
    reqs = [{INPUT_RAW: np.stack([_pixels(20, 24, 0), _pixels(20, 24, 10)])},
            {INPUT_ENCODED: np.array([[_png(_pixels(33, 17, 5))]], dtype=object)},
            {INPUT_RAW: np.stack([_pixels(S, S, k) for k in (6, 7, 8)])}]
    out = model.infer(reqs)
    assert rec.batches == [6]
    assert [o["pred_score"].shape[0] for o in out] == [2, 1, 3]
    for req, o in zip(reqs, out):
        x = (np.stack([read_pixels(a, S, "") for a in req[INPUT_RAW]]) if INPUT_RAW in req
             else read_encoded(req[INPUT_ENCODED][0, 0], S, "")[None])
        np.testing.assert_allclose(o["pred_score"], x.mean(axis=(1, 2, 3)), rtol=1e-6)
        assert o["anomaly_map"].dtype == np.float16
        np.testing.assert_array_equal(o["anomaly_map"], (x[:, 0] * 3.0).astype(np.float16))
        np.testing.assert_array_equal(o["pred_label"], x.mean(axis=(1, 2, 3)) > 0)


RGBA = np.dstack([_pixels(20, 20), np.full((20, 20), 100, np.uint8)])
BAD = {
    "both inputs": ({INPUT_RAW: _pixels(20, 20)[None], INPUT_ENCODED: np.array([[b"x"]], object)}, "exactly one"),
    "no input": ({}, "exactly one"),
    "no images": ({INPUT_RAW: np.zeros((0, 20, 20, 3), np.uint8)}, "no images"),
    "too many images": ({INPUT_RAW: np.zeros((5, 20, 20, 3), np.uint8)}, "more than max batch 4"),
    "wrong rank": ({INPUT_RAW: _pixels(20, 20)}, "expected B×H×W×3"),
    "16-bit pixels": ({INPUT_RAW: _pixels(20, 20)[None].astype(np.uint16)}, "image 0: dtype uint16"),
    "4 channels": ({INPUT_RAW: RGBA[None]}, "image 0: shape (20, 20, 4), expected H×W×3"),
    "zero-size image": ({INPUT_RAW: np.zeros((1, 0, 0, 3), np.uint8)}, "0×0 px, smaller than 8 px"),
    "corrupt bytes": ({INPUT_ENCODED: np.array([[_png(_pixels(20, 20))], [b"\x89PNG garbage"]], object)},
                      "request 3 image 1: unreadable image (cannot identify image file request 3 image 1)"),
    "empty bytes": ({INPUT_ENCODED: np.array([[b""]], object)}, "image 0: empty image"),
    "transparent": ({INPUT_ENCODED: np.array([[_png(RGBA, mode="RGBA")]], object)}, "transparent pixels"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_request_names_request_and_image(case):
    request, message = BAD[case]
    model = ServingModel(_Recorder(), S, 0.0, max_batch=4)
    with pytest.raises(RequestError) as e:
        model.decode(request, 3)
    assert str(e.value).startswith("request 3") and message in str(e.value), str(e.value)


def test_serve_without_pytriton_says_what_to_install(monkeypatch):
    from click.testing import CliRunner

    from drdc_trt.cli import main
    from drdc_trt.serving.server import ServingUnavailable, require_pytriton

    monkeypatch.setitem(sys.modules, "pytriton", None)  # import fails as if not installed
    with pytest.raises(ServingUnavailable, match=r"pip install 'drdc_trt\[serve\]'"):
        require_pytriton()
    res = CliRunner().invoke(main, ["serve", "--bundle", "nowhere"])
    assert res.exit_code != 0 and "drdc_trt[serve]" in res.output


def test_python_library_path(monkeypatch):
    import sysconfig

    from drdc_trt.serving import server

    cfg = {"Py_ENABLE_SHARED": 1, "LIBDIR": "/opt/py/lib"}
    monkeypatch.setattr(sysconfig, "get_config_var", cfg.get)
    monkeypatch.setenv("LD_LIBRARY_PATH", "/a:/b")
    server.python_library_path()
    assert server.os.environ["LD_LIBRARY_PATH"] == "/opt/py/lib:/a:/b"
    server.python_library_path()  # once only
    assert server.os.environ["LD_LIBRARY_PATH"] == "/opt/py/lib:/a:/b"
    cfg["Py_ENABLE_SHARED"] = 0
    with pytest.raises(server.ServingUnavailable, match="shared libpython"):
        server.python_library_path()


@pytest.mark.parametrize("url,want", [("http://h:9000", ("http", "h:9000")), ("grpc://10.0.0.2", ("grpc", "10.0.0.2:8001")),
                                      ("h", ("http", "h:8000")), ("grpc://[::1]:5", ("grpc", "[::1]:5"))])
def test_parse_url(url, want):
    from drdc_trt.serving.client import parse_url

    assert parse_url(url) == want


@pytest.mark.parametrize("url", ["ftp://h", "http://h:8000/v2/models", "http://"])
def test_parse_url_refuses(url):
    from drdc_trt.serving.client import parse_url

    with pytest.raises(ValueError, match="URL"):
        parse_url(url)


def test_serve_tensorrt_refused_with_the_reason_where_unavailable(tmp_path):
    from click.testing import CliRunner

    from drdc_trt.backends import available_backends
    from drdc_trt.cli import main

    if "tensorrt" in available_backends():
        pytest.skip("TensorRT is available here")
    res = CliRunner().invoke(main, ["serve", "--bundle", str(tmp_path), "--backend", "tensorrt"])
    assert res.exit_code == 2 and "TensorRT (or a CUDA GPU) is not available here" in res.output, res.output
