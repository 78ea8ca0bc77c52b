"""drdc export --triton-repo: the repository loads in a stock tritonserver (the one the PyTriton
wheel bundles) and answers as drdc serve does; a bad request fails alone, not its batch."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from click.testing import CliRunner

pytestmark = pytest.mark.serving


@pytest.fixture(scope="module")
def repo(tiny_checkpoint, tmp_path_factory):
    from drdc_trt.cli import main

    tmp = tmp_path_factory.mktemp("triton_repo")
    res = CliRunner().invoke(main, ["export", "--model", str(tiny_checkpoint), "--out", str(tmp / "bundle"),
                                    "--check-batches", "", "--triton-repo", str(tmp / "repo"),
                                    "--triton-instances", "2"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return tmp / "bundle", tmp / "repo"


def test_config_declares_batching_instances_and_io(repo):
    _, path = repo
    cfg = (path / "drdc" / "config.pbtxt").read_text()
    for line in ('backend: "python"', "max_batch_size: 8", "dynamic_batching { max_queue_delay_microseconds: 2000 }",
                 "instance_group [ { count: 2 kind: KIND_CPU } ]", '{ name: "images" data_type: TYPE_UINT8',
                 '{ name: "anomaly_map" data_type: TYPE_FP16 dims: [ 32, 32 ] }'):
        assert line in cfg, (line, cfg)
    assert '{ name: "image_bytes" data_type: TYPE_STRING dims: [ 1 ] }' in (path / "drdc_encoded" / "config.pbtxt").read_text()
    manifest = json.loads((path / "drdc" / "1" / "bundle" / "manifest.json").read_text())
    assert manifest["config"]["image_size"] == 32


def test_stock_tritonserver_loads_and_answers(repo, tmp_path):
    """Results equal the bundle's own prediction (drdc detect's predictor) on the same pixels; in one
    dynamic batch with a bad request the good requests get their results."""
    from tritonclient.utils import InferenceServerException

    from drdc_trt.serving.client import DetectorClient
    from drdc_trt.serving.model import ServingModel
    from drdc_trt.serving.process import bundled_tritonserver

    bundle, path = repo
    frames = np.random.default_rng(1).integers(0, 256, (3, 40, 36, 3), dtype=np.uint8)
    want = ServingModel.load(bundle=bundle, backend="onnxruntime").infer([{"images": frames}])[0]
    with bundled_tritonserver(path, tmp_path, tmp_path / "tritonserver.log") as srv:
        for url in (srv.http_url, srv.grpc_url):
            with DetectorClient(url) as c:
                got = c.detect_pixels(frames, anomaly_map=True)
            np.testing.assert_allclose(got["pred_score"], want["pred_score"], rtol=1e-6, atol=1e-6)
            np.testing.assert_array_equal(got["pred_label"], want["pred_label"])
            np.testing.assert_array_equal(got["anomaly_map"], want["anomaly_map"])
            np.testing.assert_array_equal(got["pred_mask"], want["pred_mask"])

        results, errors = {}, {}

        def send(name, files):
            try:
                with DetectorClient(srv.http_url) as c:
                    results[name] = c.detect_encoded(files)
            except InferenceServerException as e:
                errors[name] = str(e)

        import io

        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(frames[0]).save(buf, format="PNG")
        jobs = {"good1": [buf.getvalue()], "bad": [b"not an image"], "good2": [buf.getvalue()] * 2}
        threads = [threading.Thread(target=send, args=item) for item in jobs.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert set(results) == {"good1", "good2"} and set(errors) == {"bad"}, (results.keys(), errors)
        assert "unreadable image" in errors["bad"] and "Traceback" not in errors["bad"]
        np.testing.assert_allclose(results["good2"]["pred_score"], [want["pred_score"][0]] * 2, rtol=1e-5, atol=1e-5)
        assert srv.health("live") and srv.health("ready")
