"""DiffusionAD export and the torch-free runtime: `drdc export` of a DiffusionAD checkpoint, the
manifest's fields, ONNX Runtime vs PyTorch on perturbed weights, the runtime (ONNX Runtime and
OpenVINO; numpy and compiled combination) against the PyTorch DiffusionADDetector, the command
lines, and manifests missing a field refused by name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from drdc_trt.checkpoint import save_checkpoint
from drdc_trt.cli import main
from drdc_trt.config import preset
from drdc_trt.export.bundle import BundleError, load_bundle
from drdc_trt.methods.diffusionad.export import compare_diffusionad, plan_profiles
from drdc_trt.export.numerics import NumericsError, sample_images
from drdc_trt.export.onnx_export import check_onnx, tensorrt_problems
from drdc_trt.float_bounds import decisions_agree
from drdc_trt.methods.diffusionad.detector import DiffusionADDetector
from drdc_trt.methods.diffusionad.model import DiffusionADModel
from drdc_trt.methods.diffusionad.model import DiffusionADStats
from drdc_trt.methods.drdc.runtime import BundleDetector
from drdc_trt.methods.diffusionad.runtime import DiffusionADBundleDetector
from drdc_trt.runtime import load_detector

# float32 engines that differ from PyTorch in summation order only (measured: ~1e-6 on x0_g,
# ~1e-7 on the map); far below the map's spread between images
ATOL = 1e-4
SEED = 2


def perturbed_model(seed: int = 0) -> DiffusionADModel:
    """The tiny preset with every weight perturbed (zero-initialised U-Net output layers would
    otherwise predict ε = 0) and its BatchNorm statistics moved off (0, 1)."""
    torch.manual_seed(seed)
    model = DiffusionADModel(preset("tiny", "diffusionad"))
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
        for m in model.seg.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)
    return model.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(model, checkpoint, bundle, images, PyTorch result): a checkpoint exported by `drdc export`."""
    root = tmp_path_factory.mktemp("dad_export")
    model = perturbed_model()
    images = sample_images(model.cfg.image_size, 5, seed=1)
    ref = DiffusionADDetector(model, "cpu", SEED).predict(images)
    scores = np.sort(ref.pred_score.numpy())
    gap = int(np.argmax(np.diff(scores)))  # thresholds in the widest gap: some images each side
    maps = np.sort(ref.anomaly_map.numpy().ravel())
    mgap = int(np.argmax(np.diff(maps[len(maps) // 4: 3 * len(maps) // 4]))) + len(maps) // 4
    model.stats = DiffusionADStats(float(scores[gap:gap + 2].mean()), float(maps[mgap:mgap + 2].mean()), 5, SEED)
    ref = DiffusionADDetector(model, "cpu", SEED).predict(images)
    ckpt = root / "ckpt"
    save_checkpoint(model, ckpt)
    bundle = root / "bundle"
    res = CliRunner().invoke(main, ["export", "--model", str(ckpt), "--out", str(bundle), "--seed", str(SEED)])
    assert res.exit_code == 0, res.output
    return model, ckpt, bundle, images, ref


def test_manifest_names_the_method_and_its_settings(exported):
    model, ckpt, path, _, _ = exported
    b = load_bundle(path)
    m, cfg = b.manifest, model.cfg
    assert b.method == "diffusionad" and m["method"] == "diffusionad"
    a = m["diffusionad"]
    assert (a["t_a"], a["t_b"], a["w"], a["top_k"]) == (200, 400, 1.0, cfg.top_k)
    ab = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))  # the linear schedule, independently
    assert a["alpha_bar_a"] == pytest.approx(ab[200], rel=1e-6) and a["alpha_bar_b"] == pytest.approx(ab[400], rel=1e-6)
    assert m["thresholds"] == {"image_threshold": model.stats.image_threshold,
                               "pixel_threshold": model.stats.pixel_threshold, "num_images": 5, "detector_seed": SEED}
    assert m["noise_seed"] == SEED and m["rows_per_image"] == 2
    det = DiffusionADDetector(model, "cpu", SEED)
    for key, want in (("a", det.noise_a), ("b", det.noise_b)):
        got = np.load(b.file(m["noise"][key]["file"]), allow_pickle=False)
        assert np.array_equal(got, want.numpy())
    s = cfg.image_size
    assert [tuple(t.shape) for t in b.inputs("unet")] == [("batch", 3, s, s), ("batch",)]
    assert [tuple(t.shape) for t in b.inputs("seg")] == [("batch", 6, s, s)]
    assert [tuple(t.shape) for t in b.outputs("seg")] == [("batch", 1, s, s)]
    assert m["numerics"]["ok"] and {c["network"] for c in m["numerics"]["comparisons"]} == {"unet", "seg"}
    assert m["source"]["checkpoint"] == str(Path(ckpt).absolute())
    import onnx

    for net in ("unet", "seg"):
        assert tensorrt_problems(onnx.load(str(b.onnx_path(net)))) == []
        check_onnx(b.onnx_path(net), b.network(net)["inputs"], b.network(net)["outputs"])


def test_onnx_matches_pytorch_with_perturbed_weights(exported):
    model, _, path, images, _ = exported
    b = load_bundle(path)
    rep = compare_diffusionad(model, b.onnx_path("unet"), b.onnx_path("seg"), (1, 3), images, seed=SEED)
    assert rep.ok and len(rep.comparisons) == 4
    for c in rep.comparisons:
        assert c.ref_max > 0.05 and c.max_abs < 1e-4, c  # real activations, float32 agreement
    # the check can fail: the graphs of another model's weights are refused
    with pytest.raises(NumericsError, match="unet batch"):
        compare_diffusionad(perturbed_model(seed=7), b.onnx_path("unet"), b.onnx_path("seg"), (1,), images,
                            seed=SEED)


@pytest.mark.parametrize("backend,kernels", [("onnxruntime", "numpy"), ("onnxruntime", "csrc"),
                                             ("openvino", "auto")])
def test_runtime_matches_the_pytorch_detector(exported, backend, kernels):
    _, _, path, images, ref = exported
    det = load_detector(path, backend=backend, kernels=kernels)
    assert isinstance(det, DiffusionADBundleDetector)
    assert det.kernels.name == ("numpy" if kernels == "numpy" else "csrc")
    got = det.predict(images.numpy(), batch_size=2)  # batches of 2, 2, 1: results do not depend on the batch
    np.testing.assert_allclose(got.reconstruction, ref.reconstruction.numpy(), atol=ATOL, rtol=0)
    np.testing.assert_allclose(got.anomaly_map, ref.anomaly_map.numpy(), atol=ATOL, rtol=0)
    np.testing.assert_allclose(got.pred_score, ref.pred_score.numpy(), atol=ATOL, rtol=0)
    th = det.bundle.manifest["thresholds"]
    assert decisions_agree(got.pred_label, ref.pred_label, ref.pred_score, th["image_threshold"], ATOL)
    assert 0 < got.pred_label.sum() < len(images)
    assert decisions_agree(got.pred_mask, ref.pred_mask, ref.anomaly_map, th["pixel_threshold"], ATOL)
    assert got.pred_mask.any()


def test_runtime_score_is_the_top_k_mean(exported):
    _, _, path, images, _ = exported
    det = DiffusionADBundleDetector(path)
    det.top_k = 7
    r = det.predict(images.numpy()[:2])
    for i in range(2):
        want = np.mean(sorted(r.anomaly_map[i].ravel().tolist())[-7:])
        assert r.pred_score[i] == pytest.approx(want, rel=1e-6)


def test_runtime_command_line(exported, tmp_path):
    _, _, path, images, ref = exported
    np.save(tmp_path / "x.npy", images.numpy())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # run outside the checkout: `python -m` puts the working directory first on sys.path, and the
    # source folder there is not the installed package (no compiled _C, no drdc_trt.export)
    p = subprocess.run([sys.executable, "-m", "drdc_trt.runtime", str(path), str(tmp_path / "x.npy"), "--out",
                        str(tmp_path / "r.npz"), "--backend", "onnxruntime"], capture_output=True, text=True, env=env, timeout=300,
                       cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout.strip().splitlines()[-1])["images"] == len(images)
    with np.load(tmp_path / "r.npz", allow_pickle=False) as r:
        assert set(r.files) == {"pred_score", "pred_label", "anomaly_map", "pred_mask", "reconstruction"}
        np.testing.assert_allclose(r["anomaly_map"], ref.anomaly_map.numpy(), atol=ATOL, rtol=0)


def test_detect_with_the_bundle_matches_the_checkpoint(exported, tmp_path):
    from drdc_trt.viz import png_bytes

    _, ckpt, path, images, _ = exported
    folder = tmp_path / "images"
    folder.mkdir()
    for i, img in enumerate(images):
        (folder / f"{i}.png").write_bytes(png_bytes(((img.permute(1, 2, 0) + 1) * 127.5).round().byte().numpy()))
    runner = CliRunner()
    for args, out in ((["--bundle", str(path), "--backend", "onnxruntime"], "b"), (["--model", str(ckpt)], "m")):
        res = runner.invoke(main, ["detect", *args, "--seed", str(SEED), "--method", "diffusionad", "--out",
                                   str(tmp_path / out), str(folder)])
        assert res.exit_code == 0, res.output
    b = json.loads((tmp_path / "b" / "results.json").read_text())
    m = json.loads((tmp_path / "m" / "results.json").read_text())
    assert b["image_threshold"] == m["image_threshold"]
    for rb, rm in zip(b["results"], m["results"]):
        assert rb["pred_score"] == pytest.approx(rm["pred_score"], abs=ATOL)
    res = runner.invoke(main, ["detect", "--bundle", str(path), "--method", "drdc", "--out", str(tmp_path / "x"),
                               str(folder)])
    assert res.exit_code != 0 and "holds a diffusionad bundle" in res.output
    res = runner.invoke(main, ["detect", "--bundle", str(path), "--seed", "0", "--out", str(tmp_path / "x"),
                               str(folder)])
    assert res.exit_code != 0 and f"seed {SEED}" in res.output


def _without(manifest: dict, dotted: str) -> dict:
    m = json.loads(json.dumps(manifest))
    *head, last = dotted.split(".")
    d = m
    for k in head:
        d = d[k]
    del d[last]
    return m


@pytest.mark.parametrize("field", ["diffusionad", "diffusionad.t_a", "diffusionad.t_b", "diffusionad.w",
                                   "diffusionad.alpha_bar_a", "diffusionad.alpha_bar_b", "diffusionad.top_k",
                                   "thresholds", "thresholds.image_threshold", "thresholds.pixel_threshold",
                                   "noise.a", "noise.b", "noise_seed", "networks.seg", "networks.unet.onnx",
                                   "networks.seg.inputs", "rows_per_image", "max_batch"])
def test_manifest_missing_a_field_is_refused_by_name(exported, tmp_path, field):
    import shutil

    _, _, path, _, _ = exported
    bad = tmp_path / "bundle"
    shutil.copytree(path, bad)
    manifest = json.loads((bad / "manifest.json").read_text())
    (bad / "manifest.json").write_text(json.dumps(_without(manifest, field)))
    last = field.split(".")[-1]
    with pytest.raises(BundleError, match=rf"manifest\.json.*{last}"):
        load_bundle(bad)


@pytest.mark.parametrize("change,match", [
    (lambda m: m["diffusionad"].update(t_a=500), r"diffusionad\.t_a must be below t_b"),
    (lambda m: m["diffusionad"].update(alpha_bar_a=1.5), r"diffusionad\.alpha_bar_a must be a number in \(0, 1\]"),
    (lambda m: m["diffusionad"].update(top_k=0), r"diffusionad\.top_k must be a positive int"),
    (lambda m: m["thresholds"].update(image_threshold="high"), r"thresholds\.image_threshold must be a number"),
    (lambda m: m.update(method="patchcore"), r"method 'patchcore' is not one of"),
])
def test_manifest_with_a_bad_value_is_refused_by_name(exported, tmp_path, change, match):
    import shutil

    _, _, path, _, _ = exported
    bad = tmp_path / "bundle"
    shutil.copytree(path, bad)
    manifest = json.loads((bad / "manifest.json").read_text())
    change(manifest)
    (bad / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=match):
        load_bundle(bad)


def test_each_detector_refuses_the_other_method(exported):
    _, _, path, _, _ = exported
    with pytest.raises(ValueError, match="BundleDetector runs DRDC bundles"):
        BundleDetector(path)


def test_tensorrt_profiles_cover_two_rows_per_image():
    p = plan_profiles(32, 8)
    assert p["unet"]["x"] == ((2, 3, 32, 32), (16, 3, 32, 32), (16, 3, 32, 32))
    assert p["unet"]["timesteps"] == ((2,), (16,), (16,))
    assert p["seg"]["x"] == ((1, 6, 32, 32), (8, 6, 32, 32), (8, 6, 32, 32))


def _tensorrt_blocker() -> str | None:
    from drdc_trt.export.results import tensorrt_blocker as _tensorrt_blocker

    e = _tensorrt_blocker()
    return None if e is None else str(e).splitlines()[0]


@pytest.mark.gpu
@pytest.mark.tensorrt
@pytest.mark.skipif(_tensorrt_blocker() is not None, reason=f"TensorRT plans need TensorRT 10 and an NVIDIA GPU: "
                                                             f"{_tensorrt_blocker()}")
def test_tensorrt_bundle_runs_like_pytorch(exported, tmp_path):
    from drdc_trt.export import export_bundle

    model, _, _, images, ref = exported
    res = export_bundle(model, tmp_path / "trt", tensorrt=True, seed=SEED, check_batches=())
    assert set(res.tensorrt["plans"]) == {"unet", "seg"}
    got = load_detector(res.path, backend="tensorrt").predict(images.numpy())
    np.testing.assert_allclose(got.anomaly_map, ref.anomaly_map.numpy(), atol=1e-3, rtol=0)  # TF32 kernels


def test_bench_rows_and_speedups(tmp_path):
    """drdc-bench --method diffusionad: the three rows at each batch, each speed-up the eager p50 over its own."""
    from drdc_trt import _C
    from drdc_trt.bench import main as bench

    before = torch.get_num_threads(), _C.num_threads()
    rc = bench(["--method", "diffusionad", "--config", "tiny", "--batch", "1,2", "--max-seconds", "0", "--min-iters",
                "2", "--threads", "1", "--out", str(tmp_path), "--date", "2026-01-01"])
    assert rc == 0
    assert (torch.get_num_threads(), _C.num_threads()) == before  # --threads holds for the run only
    rep = json.loads((tmp_path / "drdc_bench_cpu_diffusionad_32px_2026-01-01.json").read_text())
    rows = rep["rows"]
    assert [(r["engine"], r["batch"]) for r in rows] == [
        (e, b) for e in ("torch eager", "onnxruntime (numpy combination)", "onnxruntime (torch-free runtime)")
        for b in (1, 2)]
    for r in rows:
        base = next(x for x in rows if x["baseline"] and x["batch"] == r["batch"])
        assert r["status"] == "ok" and r["latency_ms"]["iterations"] == 2
        assert r["speedup_vs_baseline"] == pytest.approx(base["latency_ms"]["p50_ms"] / r["latency_ms"]["p50_ms"])
    md = (tmp_path / "drdc_bench_cpu_diffusionad_32px_2026-01-01.md").read_text()
    assert "| DiffusionAD | onnxruntime (torch-free runtime) | 2 |" in md
