"""drdc serve through a real Triton server: the results equal drdc detect's on the same bundle and
images; bad requests get a clear error of their own and the server keeps answering."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from drdc_trt.float_bounds import decisions_agree

pytestmark = pytest.mark.serving

@pytest.fixture(scope="module")
def detected(serve_bundle, image_files, tmp_path_factory):
    """drdc detect on the same bundle and files: (printed lines, results, maps float32)."""
    from drdc_trt.cli import main

    out = tmp_path_factory.mktemp("detect_out")
    res = CliRunner().invoke(main, ["detect", "--bundle", str(serve_bundle), "--backend", "onnxruntime",
                                    "--out", str(out), *map(str, image_files)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    records = json.loads((out / "results.json").read_text())["results"]
    maps = np.stack([np.load(out / r["anomaly_map"], allow_pickle=False) for r in records])
    lines = [ln for ln in res.output.splitlines() if ": pred_score " in ln]
    return lines, records, maps


@pytest.mark.parametrize("url_attr", ["http_url", "grpc_url"])
def test_encoded_files_equal_drdc_detect(server, image_files, detected, url_attr, assert_map_close):
    """All files in one request (the batch drdc detect runs): scores and labels equal, maps equal
    up to the float16 rounding of the response."""
    from drdc_trt.serving.client import DetectorClient

    _, records, maps = detected
    with DetectorClient(getattr(server, url_attr)) as c:
        got = c.detect_encoded([f.read_bytes() for f in image_files], anomaly_map=True)
    np.testing.assert_allclose(got["pred_score"], [r["pred_score"] for r in records], rtol=1e-6, atol=1e-6)
    assert got["pred_label"].tolist() == [bool(r["pred_label"]) for r in records]
    assert_map_close(got["anomaly_map"], maps)
    assert got["pred_mask"].dtype == bool and got["pred_mask"].shape == maps.shape


def test_pixels_equal_drdc_detect(server, image_files, detected, assert_map_close, serve_bundle):
    """uint8 pixels (one request per image, sizes differ) are resized as drdc detect resizes the
    files they came from."""
    from drdc_trt.serving.client import DetectorClient

    _, records, maps = detected
    threshold = json.loads((serve_bundle / "manifest.json").read_text())["fusion_stats"]["image_threshold"]  # DRDC
    rgb = [i for i, f in enumerate(image_files) if Image.open(f).mode == "RGB"]
    assert len(rgb) >= 3
    with DetectorClient(server.http_url) as c:
        for i in rgb:
            got = c.detect_pixels(np.asarray(Image.open(image_files[i])), anomaly_map=True)
            # another batch size than drdc detect's: ONNX Runtime may sum in another order
            np.testing.assert_allclose(got["pred_score"], [records[i]["pred_score"]], rtol=1e-4, atol=1e-4)
            # the label may differ only for a score within that tolerance of the threshold
            assert decisions_agree([bool(got["pred_label"][0])], [bool(records[i]["pred_label"])],
                                   [records[i]["pred_score"]], threshold, 1e-4 + 1e-4 * abs(records[i]["pred_score"]))
            assert_map_close(got["anomaly_map"][0], maps[i], atol=1e-4)


def test_drdc_client_prints_what_drdc_detect_prints(server, image_files, detected, tmp_path, assert_map_close):
    from drdc_trt.cli import main

    lines, records, maps = detected
    res = CliRunner().invoke(main, ["client", server.http_url, *map(str, image_files), "--out", str(tmp_path)],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert [ln for ln in res.output.splitlines() if ": pred_score " in ln] == lines
    written = json.loads((tmp_path / "results.json").read_text())["results"]
    assert [r["pred_label"] for r in written] == [r["pred_label"] for r in records]
    served = np.stack([np.load(tmp_path / r["anomaly_map"], allow_pickle=False) for r in written])
    assert_map_close(served, maps)


def _png(arr: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, **kw).save(buf, format="PNG")
    return buf.getvalue()


def _raw_request(client, array: np.ndarray, model="drdc", name="images"):
    import tritonclient.http as http

    inp = http.InferInput(name, list(array.shape), http.np_to_triton_dtype(array.dtype))
    inp.set_data_from_numpy(array)
    return client.infer(model, [inp])


GOOD = np.random.default_rng(3).integers(0, 256, (1, 24, 20, 3), dtype=np.uint8)
RGBA = np.dstack([GOOD[0], np.full((24, 20), 128, np.uint8)])

BAD_PIXELS = {
    "wrong dtype": (GOOD.astype(np.float32), "expects 'UINT8'"),
    "16-bit pixels": (GOOD.astype(np.uint16), "expects 'UINT8'"),
    "wrong rank": (GOOD[0, :2], "unexpected shape for input 'images'"),
    "4 channels": (RGBA[None], "expected H×W×3"),
    # refused by PyTriton's transfer to the model process, before the model's own check
    "zero-size image": (np.zeros((1, 0, 0, 3), np.uint8), "zeros in shape"),
    "image under 8 px": (GOOD[:, :5, :5], "smaller than 8 px"),
    "oversized batch": (np.repeat(GOOD, 9, axis=0), "batch-size must be <= 8"),
}
BAD_ENCODED = {
    "corrupt bytes": (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "request 0 image 1: unreadable image"),
    "truncated PNG": (_png(GOOD[0])[:-40], "unreadable image"),
    "empty": (b"", "empty image"),
    "transparent 4-channel PNG": (_png(RGBA, mode="RGBA"), "transparent pixels"),
    "not an image": (b"hello world, not an image file", "unreadable image"),
}


@pytest.mark.parametrize("case", sorted(BAD_PIXELS))
def test_bad_pixel_request_refused_server_stays_up(server, case):
    import tritonclient.http as http
    from tritonclient.utils import InferenceServerException

    array, message = BAD_PIXELS[case]
    c = http.InferenceServerClient(server.http_url.removeprefix("http://"))
    with pytest.raises(InferenceServerException) as e:
        _raw_request(c, array)
    assert message in str(e.value), str(e.value)
    ok = _raw_request(c, GOOD)  # the next good request succeeds
    assert ok.as_numpy("pred_score").shape == (1, 1) and np.isfinite(ok.as_numpy("pred_score")).all()
    assert server.health("live") and server.health("ready")


@pytest.mark.parametrize("case", sorted(BAD_ENCODED))
def test_bad_encoded_request_refused_server_stays_up(server, case):
    from tritonclient.utils import InferenceServerException

    from drdc_trt.serving.client import DetectorClient

    data, message = BAD_ENCODED[case]
    with DetectorClient(server.http_url) as c:
        with pytest.raises(InferenceServerException) as e:
            c.detect_encoded([_png(GOOD[0]), data])
        assert message in str(e.value) and "request 0 image 1" in str(e.value), str(e.value)
        ok = c.detect_encoded([_png(GOOD[0])])
    assert ok["pred_score"].shape == (1,) and np.isfinite(ok["pred_score"]).all()
    assert server.health("live") and server.health("ready")


def test_torch_backend_serves_a_checkpoint_as_drdc_detect_model(tiny_checkpoint, image_files, tmp_path,
                                                                assert_map_close):
    """--backend torch takes --model CKPT (no bundle): results equal drdc detect --model CKPT."""
    from drdc_trt.cli import main
    from drdc_trt.serving.client import DetectorClient
    from drdc_trt.serving.process import ServerProcess

    res = CliRunner().invoke(main, ["detect", "--model", str(tiny_checkpoint), "--out", str(tmp_path / "d"),
                                    *map(str, image_files)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    records = json.loads((tmp_path / "d" / "results.json").read_text())["results"]
    maps = np.stack([np.load(tmp_path / "d" / r["anomaly_map"], allow_pickle=False) for r in records])
    with ServerProcess(["--model", tiny_checkpoint, "--backend", "torch"], tmp_path / "serve.log") as srv:
        with DetectorClient(srv.http_url) as c:
            got = c.detect_encoded([f.read_bytes() for f in image_files], anomaly_map=True)
    np.testing.assert_allclose(got["pred_score"], [r["pred_score"] for r in records], rtol=1e-6, atol=1e-6)
    assert got["pred_label"].tolist() == [bool(r["pred_label"]) for r in records]
    assert_map_close(got["anomaly_map"], maps)
