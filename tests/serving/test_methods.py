"""DiffusionAD and GLAD bundles served: ``drdc serve --bundle B`` and the ``drdc export
--triton-repo`` repository in the bundled tritonserver answer what ``drdc detect --bundle B`` writes
on the same files (scores, labels, maps up to float16; GLAD's ``steps`` too). One ``drdc serve``
and one tritonserver per method."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

pytestmark = pytest.mark.serving

METHODS = ("diffusionad", "glad")


def _widest_gap(values) -> float:
    """The middle of the widest gap between sorted values: a threshold far from all of them."""
    v = np.sort(np.asarray(values, dtype=np.float64).ravel())
    i = int(np.argmax(np.diff(v)))
    return float(v[i:i + 2].mean())


def _checkpoint(method, dad_checkpoint, perturb_unet, images, out):
    """A checkpoint of ``method`` whose thresholds split the images (labels of both kinds); for GLAD
    τ between the images' largest trigger scores, so some images trigger and run all the U-Net steps
    while the others fall back earlier (glad.fallback = "stop": with the authors' rule every image
    runs all steps, and a per-image ``steps`` answer would not show a mix-up)."""
    from drdc_trt.loading import load_checkpoint
    from drdc_trt.checkpoint import save_checkpoint

    if method == "diffusionad":
        from drdc_trt.methods.diffusionad.detector import DiffusionADDetector

        model = load_checkpoint(dad_checkpoint)
        detector = lambda: DiffusionADDetector(model, "cpu", seed=model.stats.detector_seed)  # noqa: E731
    else:
        from drdc_trt.config import preset
        from drdc_trt.methods.glad.detector import GLADDetector
        from drdc_trt.methods.glad.model import GLADModel, GLADStats

        torch.manual_seed(0)
        cfg = preset("tiny", "glad").replace(**{"glad.fallback": "stop"})
        model = perturb_unet(GLADModel(cfg), scale=0.05, seed=1).eval()
        model.stats = GLADStats(detector_seed=0)
        with torch.no_grad():
            maxima = GLADDetector(model, "cpu", 0, tau=math.inf).predict(images).max_score
        model.stats.tau = _widest_gap(maxima)
        detector = lambda: GLADDetector(model, "cpu", 0)  # noqa: E731
    with torch.no_grad():
        ref = detector().predict(images)
    model.stats.image_threshold = _widest_gap(ref.pred_score)
    model.stats.pixel_threshold = float(np.median(ref.anomaly_map.numpy()))
    save_checkpoint(model.eval(), out)
    return out


@pytest.fixture(scope="module", params=METHODS)
def case(request, dad_checkpoint, perturb_unet, image_files, tmp_path_factory):
    """(method, bundle, repository, drdc detect's results.json records, its maps float32)."""
    from drdc_trt.cli import main
    from drdc_trt.data import load_image

    method = request.param
    tmp = tmp_path_factory.mktemp(f"serve_{method}")
    from drdc_trt.config import preset

    images = torch.stack([load_image(f, preset("tiny", method).image_size) for f in image_files])
    ckpt = _checkpoint(method, dad_checkpoint, perturb_unet, images, tmp / "ckpt")
    bundle, repo = tmp / "bundle", tmp / "repo"
    res = CliRunner().invoke(main, ["export", "--model", str(ckpt), "--out", str(bundle), "--check-batches", "",
                                    "--triton-repo", str(repo)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, ["detect", "--bundle", str(bundle), "--backend", "onnxruntime", "--out", str(tmp / "detect"),
                                    *map(str, image_files)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    records = json.loads((tmp / "detect" / "results.json").read_text())["results"]
    maps = np.stack([np.load(tmp / "detect" / r["anomaly_map"], allow_pickle=False) for r in records])
    assert len({r["pred_label"] for r in records}) == 2, records  # both labels: a flipped label shows
    if method == "glad":
        assert len({r["steps"] for r in records}) == 2, records  # triggered and fell-back images
    else:
        assert all("steps" not in r for r in records)
    return method, bundle, repo, records, maps


@pytest.fixture(scope="module")
def method_server(case, tmp_path_factory):
    from drdc_trt.serving.process import ServerProcess

    method, bundle = case[:2]
    log = tmp_path_factory.mktemp(f"serve_{method}_log") / "serve.log"
    with ServerProcess(["--bundle", bundle, "--backend", "onnxruntime", "--max-batch", "8"], log) as srv:
        yield srv


def _assert_equal_to_detect(got, records, maps, method, assert_map_close):
    np.testing.assert_allclose(got["pred_score"], [r["pred_score"] for r in records], rtol=1e-6, atol=1e-6)
    assert got["pred_label"].tolist() == [bool(r["pred_label"]) for r in records]
    assert_map_close(got["anomaly_map"], maps)
    assert got["pred_mask"].dtype == bool and got["pred_mask"].shape == maps.shape
    if method == "glad":
        assert got["steps"].dtype == np.int32 and got["steps"].tolist() == [r["steps"] for r in records]
    else:
        assert "steps" not in got


@pytest.mark.parametrize("url_attr", ["http_url", "grpc_url"])
def test_drdc_serve_equals_drdc_detect(case, method_server, image_files, url_attr, assert_map_close):
    """All files in one request, the batch drdc detect runs."""
    from drdc_trt.serving.client import DetectorClient

    method, _, _, records, maps = case
    with DetectorClient(getattr(method_server, url_attr)) as c:
        got = c.detect_encoded([f.read_bytes() for f in image_files], anomaly_map=True)
    _assert_equal_to_detect(got, records, maps, method, assert_map_close)


def test_drdc_client_writes_what_drdc_detect_writes(case, method_server, image_files, tmp_path):
    from drdc_trt.cli import main

    method, _, _, records, _ = case
    res = CliRunner().invoke(main, ["client", method_server.http_url, *map(str, image_files), "--out", str(tmp_path)],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    written = json.loads((tmp_path / "results.json").read_text())["results"]
    keys = ["image", "pred_label"] + (["steps"] if method == "glad" else [])
    assert [{k: r[k] for k in keys if k in r} for r in written] == [{k: r[k] for k in keys} for r in records]


def test_triton_repository_answers_as_drdc_detect(case, image_files, tmp_path, assert_map_close):
    """The repository of the bundle in the bundled tritonserver, HTTP and gRPC; a GLAD repository
    declares and answers ``steps``, a DiffusionAD one does not."""
    from drdc_trt.serving.client import DetectorClient
    from drdc_trt.serving.process import bundled_tritonserver

    method, _, repo, records, maps = case
    for model in ("drdc", "drdc_encoded"):
        cfg = (repo / model / "config.pbtxt").read_text()
        assert ('{ name: "steps" data_type: TYPE_INT32 dims: [ 1 ] }' in cfg) == (method == "glad"), cfg
    assert json.loads((repo / "drdc" / "1" / "bundle" / "manifest.json").read_text())["method"] == method
    with bundled_tritonserver(repo, tmp_path, tmp_path / "tritonserver.log") as srv:
        for url in (srv.http_url, srv.grpc_url):
            with DetectorClient(url) as c:
                got = c.detect_encoded([f.read_bytes() for f in image_files], anomaly_map=True)
            _assert_equal_to_detect(got, records, maps, method, assert_map_close)
