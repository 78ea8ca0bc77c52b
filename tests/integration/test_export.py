"""Export of the tiny trained model, then every engine path against the PyTorch reference.

Stated tolerance for full-pipeline outputs (anomaly maps, raw maps, scores):
|engine − torch| ≤ 1e-4 + 1e-4 · max|torch| elementwise. Both run float32 on the
CPU; the only differences are ONNX Runtime's kernel fusions / summation order
and the numpy (or C++) transcription of the loop ops, measured at ~1e-6.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner

from drdc_trt.backends import as_torch_runner, make_runner
from drdc_trt.backends.torch_backend import TorchRunner
from drdc_trt.loading import load_checkpoint
from drdc_trt.cli import main
from drdc_trt.export.bundle import MANIFEST, BundleError, load_bundle
from drdc_trt.export.numerics import NumericsError, sample_images
from drdc_trt.methods.drdc.numerics import compare_networks
from drdc_trt.export.onnx_export import export_base, export_unet, tensorrt_problems
from drdc_trt.float_bounds import decisions_agree
from drdc_trt.methods.drdc.pipeline import Detector
from drdc_trt.methods.drdc.runtime import BundleDetector

FIELDS = ("anomaly_map", "pred_score", "base_map", "diff_map", "base_score")
ATOL = RTOL = 1e-4


def _assert_agree(ref: dict, got: dict, where: str, threshold: float) -> None:
    for f in FIELDS:
        r = np.asarray(ref[f], dtype=np.float64)
        g = np.asarray(got[f], dtype=np.float64)
        assert r.shape == g.shape, f"{where}: {f} shape {g.shape} vs {r.shape}"
        err = float(np.max(np.abs(r - g)))
        assert err <= ATOL + RTOL * float(np.max(np.abs(r))), f"{where}: {f} max abs error {err:.3g}"
    # a label may differ only for a score within the score tolerance of the threshold
    tol = ATOL + RTOL * float(np.max(np.abs(np.asarray(ref["pred_score"], dtype=np.float64))))
    assert decisions_agree(got["pred_label"], ref["pred_label"], ref["pred_score"], threshold, tol), where


def _fields(res) -> dict:
    return {f: (getattr(res, f).numpy() if hasattr(getattr(res, f), "numpy") else getattr(res, f))
            for f in (*FIELDS, "pred_label")}


@pytest.fixture(scope="module")
def exported(tiny_checkpoint, tmp_path_factory):
    """`drdc export --tensorrt` of the tiny checkpoint: without TensorRT the ONNX bundle is
    written and the command fails with the reason; with it, plans are built too."""
    out = tmp_path_factory.mktemp("export") / "bundle"
    r = CliRunner().invoke(main, ["export", "--model", str(tiny_checkpoint), "--out", str(out), "--tensorrt",
                                  "--max-batch", "3", "--check-batches", "1,3"])
    return out, r


@pytest.fixture(scope="module")
def bundle(exported):
    return load_bundle(exported[0])


@pytest.fixture(scope="module")
def model(tiny_checkpoint):
    return load_checkpoint(tiny_checkpoint)


@pytest.fixture(scope="module")
def images():
    return sample_images(32, 3, seed=5)


@pytest.fixture(scope="module")
def torch_reference(model, images):
    det = Detector(model.cfg, TorchRunner(model), model.stats, seed=0)
    return {b: _fields(det.predict(images[:b], batch_size=b)) for b in (1, 3)}


def test_cli_export_without_tensorrt_writes_the_onnx_bundle_and_says_so(exported):
    out, r = exported
    try:
        import tensorrt  # noqa: F401
        from drdc_trt.backends.cuda_util import device_count

        have_trt = device_count() > 0
    except ImportError:
        have_trt = False
    if have_trt:
        assert r.exit_code == 0, r.output
        return
    assert r.exit_code == 2
    assert f"error: wrote the ONNX bundle {out} without TensorRT plans: " in r.output
    assert load_bundle(out).manifest["tensorrt"] is None


def test_manifest_records_contract_versions_and_numerics(bundle, model):
    m = bundle.manifest
    assert m["schema_version"] == 1 and bundle.model_config() == model.cfg
    assert [(s.name, s.shape, s.dtype) for s in bundle.inputs("base")] == [("image", ("batch", 3, 32, 32), "float32")]
    assert [(s.name, s.shape) for s in bundle.outputs("base")] == [("base_map", ("batch", 2, 2))]
    assert [(s.name, s.shape) for s in bundle.inputs("unet")] == [("x", ("batch", 6, 32, 32)), ("timesteps", ("batch",))]
    assert [(s.name, s.shape) for s in bundle.outputs("unet")] == [("eps", ("batch", 3, 32, 32))]
    assert m["rows_per_image"] == 4 and m["timesteps"] == [250, 166, 83] and m["max_batch"] == 3
    assert m["normalization"] == list(model.stats.as_tuple())
    assert m["fusion"]["score_window"] == model.cfg.score_window
    assert {"torch", "onnx", "onnxruntime", "tensorrt"} <= set(m["versions"])
    num = m["numerics"]
    assert num["ok"] and [(c["network"], c["batch"]) for c in num["comparisons"]] == [
        ("base", 1), ("unet", 4), ("base", 3), ("unet", 12)]
    assert all(c["max_abs"] <= c["limit"] for c in num["comparisons"])
    for net in ("base", "unet"):
        proto = onnx.load(str(bundle.onnx_path(net)))
        onnx.checker.check_model(proto, full_check=True)
        assert tensorrt_problems(proto) == [] and m["networks"][net]["opset"] >= 17


def test_bundle_noise_is_the_detectors_noise(bundle, model):
    det = Detector(model.cfg, None, model.stats, seed=0)
    noise = bundle.load_noise()
    np.testing.assert_array_equal(noise["fill"], det.noise.fill.numpy())
    np.testing.assert_array_equal(noise["start"], det.noise.start.numpy())
    np.testing.assert_array_equal(noise["steps"], det.noise.steps.numpy())


@pytest.mark.parametrize("batch", [1, 3])
def test_onnxruntime_backend_agrees_with_torch(bundle, model, images, torch_reference, batch):
    runner = as_torch_runner(make_runner("onnxruntime", bundle=bundle))
    det = Detector(model.cfg, runner, model.stats, seed=0)
    _assert_agree(torch_reference[batch], _fields(det.predict(images[:batch], batch_size=batch)),
                  f"onnxruntime batch {batch}", model.stats.image_threshold)


@pytest.mark.parametrize("kernels", ["numpy", "csrc"])
@pytest.mark.parametrize("batch", [1, 3])
def test_torch_free_runtime_agrees_with_torch(bundle, model, images, torch_reference, batch, kernels):
    # kernels="csrc" raises when _C lacks its CPU kernels: a broken build fails here, never skips
    det = BundleDetector(bundle, backend="onnxruntime", kernels=kernels)
    _assert_agree(torch_reference[batch], _fields(det.predict(images[:batch].numpy(), batch_size=batch)),
                  f"runtime ({det.loop}) batch {batch}", model.stats.image_threshold)


def test_runtime_runs_where_torch_cannot_be_imported(exported, model, images, torch_reference, tmp_path):
    np.save(tmp_path / "images.npy", images.numpy())
    code = textwrap.dedent(f"""
        import runpy, sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked in this test")
        sys.meta_path.insert(0, Block())
        try:
            import torch
        except ImportError:
            pass
        else:
            raise SystemExit("the torch blocker did not work")
        sys.argv = ["drdc_trt.runtime", {str(exported[0])!r}, {str(tmp_path / 'images.npy')!r},
                    "--out", {str(tmp_path / 'res.npz')!r}, "--batch-size", "3", "--backend", "onnxruntime"]
        try:
            runpy.run_module("drdc_trt.runtime", run_name="__main__")
        except SystemExit as e:
            if e.code:
                raise
        leaked = [m for m in sys.modules if m == "torch" or m.startswith("torch.")]
        assert not leaked, leaked
    """)
    # cwd outside the checkout: `python -c` puts the cwd first on sys.path, and the
    # source folder is not the installed package (no export/, no _C).
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy(),
                       timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1])["images"] == 3
    with np.load(tmp_path / "res.npz", allow_pickle=False) as z:
        _assert_agree(torch_reference[3], dict(z), "torch-free subprocess", model.stats.image_threshold)


def test_runtime_refuses_wrong_images_and_a_tampered_bundle(exported, tmp_path):
    det = BundleDetector(exported[0])
    with pytest.raises(ValueError, match=r"input 'image' of the base network: expected shape batch×3×32×32 float32, "
                                         r"got \(2, 1, 32, 32\) \(3 channels expected, got 1\)"):
        det.predict(np.zeros((2, 1, 32, 32), np.float32))
    with pytest.raises(ValueError, match=r"expected shape batch×3×32×32 float32, got \(1, 3, 64, 64\)"):
        det.predict(np.zeros((1, 3, 64, 64), np.float32))
    copy = shutil.copytree(exported[0], tmp_path / "copy")
    data = bytearray((copy / "unet.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "unet.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"file 'unet\.onnx' has SHA-256 .* changed after export"):
        BundleDetector(copy)


def test_cli_detect_bundle_matches_model(exported, tiny_checkpoint, synthetic_root, tmp_path):
    imgs = sorted((synthetic_root / "brushed" / "test").rglob("*.png"))[:3]
    runs = {}
    for name, args in {"model": ["--model", str(tiny_checkpoint)],
                       "bundle": ["--bundle", str(exported[0]), "--backend", "onnxruntime"]}.items():
        r = CliRunner().invoke(main, ["detect", *args, *map(str, imgs), "--out", str(tmp_path / name)])
        assert r.exit_code == 0, r.output
        runs[name] = json.loads((tmp_path / name / "results.json").read_text())["results"]
    th = json.loads((tmp_path / "model" / "results.json").read_text())["image_threshold"]
    for a, b in zip(runs["model"], runs["bundle"]):
        tol = ATOL + RTOL * abs(a["pred_score"])
        assert a["image"] == b["image"] and abs(a["pred_score"] - b["pred_score"]) <= tol
        assert decisions_agree([b["pred_label"]], [a["pred_label"]], [a["pred_score"]], th, tol)
        ma = np.load(tmp_path / "model" / a["anomaly_map"])
        mb = np.load(tmp_path / "bundle" / b["anomaly_map"])
        assert np.max(np.abs(ma - mb)) <= ATOL + RTOL * np.max(np.abs(ma))
    r = CliRunner().invoke(main, ["detect", "--bundle", str(exported[0]), "--backend", "torch", str(imgs[0])])
    assert r.exit_code == 2 and "--backend torch runs a checkpoint (--model CKPT)" in r.output


def test_perturbed_unet_depends_on_the_timestep(tiny_checkpoint, perturb_unet):
    """What the TensorRT comparisons run on: a network whose ε̂ changes with t by far more
    than their tolerance, so a plan that ignored the timestep input would fail them."""
    from drdc_trt.export.numerics import sample_images

    model = perturb_unet(load_checkpoint(tiny_checkpoint)).eval()
    s = model.cfg.image_size
    x = torch.cat([sample_images(s, 2, seed=1), sample_images(s, 2, seed=2)], dim=1)  # 2×6×S×S
    with torch.no_grad():
        e50, e400 = (model.unet(x, torch.full((2,), float(t))) for t in (50, 400))
    ref = float(e50.abs().max())
    assert ref > 0.1 and float((e50 - e400).abs().max()) > 1e-2 + 5e-2 * ref  # > the fp16 plan tolerance


def test_numerics_on_realistic_inputs_and_a_detected_mismatch(tiny_checkpoint, tmp_path, perturb_unet):
    model = perturb_unet(load_checkpoint(tiny_checkpoint))
    export_base(model, tmp_path / "base.onnx")
    export_unet(model, tmp_path / "unet.onnx")
    report = compare_networks(model, tmp_path / "base.onnx", tmp_path / "unet.onnx", batch_sizes=(1, 3))
    assert report.ok and [(c.network, c.batch) for c in report.comparisons] == [
        ("base", 1), ("unet", 4), ("base", 3), ("unet", 12)]
    for c in report.comparisons:
        assert c.ref_max > 0.1 and c.max_abs < 1e-4, c  # real activations, float32-level agreement
    perturb_unet(model, scale=0.01, seed=4)  # the PyTorch model drifts away from the exported graph
    with pytest.raises(NumericsError, match=r"unet batch 4: max abs .* > "):
        compare_networks(model, tmp_path / "base.onnx", tmp_path / "unet.onnx", batch_sizes=(1,))


@pytest.mark.slow
def test_dynamo_exporter_unet(tiny_checkpoint, tmp_path, perturb_unet):
    model = perturb_unet(load_checkpoint(tiny_checkpoint))
    info = export_unet(model, tmp_path / "unet.onnx", exporter="dynamo")
    assert info.opset >= 18
    export_base(model, tmp_path / "base.onnx")
    report = compare_networks(model, tmp_path / "base.onnx", tmp_path / "unet.onnx", batch_sizes=(1, 2))
    assert report.ok


def test_manifest_is_plain_json(exported):
    text = (exported[0] / MANIFEST).read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c} in the manifest"))


def test_export_of_a_freshly_initialised_model_passes_the_checks(tmp_path):
    """A fresh U-Net has identical all-zero output convolutions, which the exporter
    shares through Identity nodes; they are still constant weights."""
    from drdc_trt.config import preset
    from drdc_trt.export.onnx_export import export_unet, tensorrt_problems
    from drdc_trt.methods.drdc.model import DRDCModel

    import onnx

    path = tmp_path / "unet.onnx"
    export_unet(DRDCModel(preset("tiny")), path)
    assert tensorrt_problems(onnx.load(str(path))) == []
