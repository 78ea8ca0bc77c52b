"""End to end: tiny training (resumable), detect, eval, and the CLI from a subprocess."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from drdc_trt.checkpoint import load_checkpoint
from drdc_trt.config import preset
from drdc_trt.evaluate import evaluate
from drdc_trt.pipeline import Detector
from drdc_trt.train import TrainState, train


def test_detector_results_do_not_depend_on_batching(tiny_checkpoint):
    model = load_checkpoint(tiny_checkpoint)
    det = Detector.from_model(model)
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    one = det.predict(x, batch_size=1)
    three = det.predict(x, batch_size=3)
    assert torch.allclose(one.anomaly_map, three.anomaly_map, atol=1e-5)
    assert torch.allclose(one.pred_score, three.pred_score, atol=1e-5)
    assert one.anomaly_map.shape == (3, 32, 32) and one.pred_mask.dtype == torch.bool


def test_detector_rejects_wrong_shape(tiny_checkpoint):
    det = Detector.from_model(load_checkpoint(tiny_checkpoint))
    with pytest.raises(ValueError, match=r"expected B×3×32×32"):
        det.predict(torch.zeros(1, 1, 32, 32))


def test_calibration_normalises_normal_maps(tiny_checkpoint):
    st = load_checkpoint(tiny_checkpoint).stats
    assert st.num_images >= 1 and st.diff_std > 0 and st.base_std > 0
    assert st.image_threshold < float("inf")


def test_evaluate_tiny(tiny_checkpoint, synthetic_root):
    res = evaluate(Detector.from_model(load_checkpoint(tiny_checkpoint)), synthetic_root, progress=False)
    methods = {r["method"] for r in res.rows}
    assert methods == {"base (UniAD)", "DRDC"}
    cats = {r["category"] for r in res.rows}
    assert cats == {"brushed", "woven", "mean"}
    for r in res.rows:
        for k in ("image_AUROC", "pixel_AUROC", "AUPRO", "F1Max"):
            assert 0.0 <= r[k] <= 1.0


def test_training_resumes_to_the_same_weights(synthetic_root, tmp_path, monkeypatch):
    cfg = preset("tiny")
    train(synthetic_root, tmp_path / "full", cfg, progress=False, log=lambda *_: None)

    calls = {"n": 0}
    original = TrainState.save

    def crash_after_first_unet_snapshot(self, model, opts):
        original(self, model, opts)
        if self.info["unet_iter"] >= 2:
            calls["n"] += 1
            raise KeyboardInterrupt

    monkeypatch.setattr(TrainState, "save", crash_after_first_unet_snapshot)
    with pytest.raises(KeyboardInterrupt):
        train(synthetic_root, tmp_path / "resumed", cfg, progress=False, log=lambda *_: None)
    assert json.loads((tmp_path / "resumed" / "train_state" / "state.json").read_text())["unet_iter"] == 2
    monkeypatch.setattr(TrainState, "save", original)
    logs = []
    train(synthetic_root, tmp_path / "resumed", cfg, progress=False, log=logs.append)
    assert any("resuming" in line for line in logs)
    a = load_file(str(tmp_path / "full" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k


def test_resume_refuses_another_config(synthetic_root, tmp_path):
    train(synthetic_root, tmp_path, preset("tiny"), progress=False, log=lambda *_: None)
    with pytest.raises(ValueError, match="another config"):
        train(synthetic_root, tmp_path, preset("tiny").replace(**{"train.unet_lr": 5e-4}), progress=False,
              log=lambda *_: None)
    with pytest.raises(ValueError, match="already 4 long, more than train.unet_iters=3"):
        train(synthetic_root, tmp_path, preset("tiny").replace(**{"train.unet_iters": 3}), progress=False,
              log=lambda *_: None)


def test_extended_run_equals_one_trained_that_long(synthetic_root, tmp_path):
    quiet = {"progress": False, "log": lambda *_: None}
    cfg = preset("tiny")  # 2 base epochs, 4 U-Net iterations
    train(synthetic_root, tmp_path / "long", cfg, **quiet)
    train(synthetic_root, tmp_path / "ext", cfg.replace(**{"train.base_epochs": 1, "train.unet_iters": 2}), **quiet)
    short = load_file(str(tmp_path / "ext" / "model.safetensors"))
    logs = []
    train(synthetic_root, tmp_path / "ext", cfg, progress=False, log=logs.append)
    assert any("base epoch 1/2, U-Net iteration 2/4" in line for line in logs)
    a = load_file(str(tmp_path / "long" / "model.safetensors"))
    b = load_file(str(tmp_path / "ext" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    assert any(not torch.equal(short[k], b[k]) for k in a if k.startswith("unet."))


def _drdc(*args, cwd):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "drdc_trt.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_cli_train_detect_eval(tmp_path, synthetic_root):
    r = _drdc("train", "--data", str(synthetic_root), "--out", "ckpt", "--preset", "tiny", "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "ckpt" / "model.safetensors").is_file()

    imgs = synthetic_root / "brushed" / "test" / "scratch"
    r = _drdc("detect", "--model", "ckpt", str(imgs), "--out", "det", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "det" / "results.json").read_text())["results"]
    assert len(res) == 2
    assert set(res[0]) >= {"pred_score", "pred_label", "anomaly_map", "pred_mask"}
    import numpy as np

    amap = np.load(tmp_path / "det" / res[0]["anomaly_map"], allow_pickle=False)
    assert amap.shape == (32, 32)
    assert (tmp_path / "det" / "results.csv").read_text().startswith("image,pred_score,pred_label")

    r = _drdc("eval", "--model", "ckpt", "--data", str(synthetic_root), "--out", "ev", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "| mean | DRDC |" in r.stdout
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert {row["method"] for row in m["rows"]} == {"base (UniAD)", "DRDC"}
    assert "<img src='data:image/png;base64," in (tmp_path / "ev" / "report.html").read_text()


def test_cli_errors_are_clear(tmp_path):
    r = _drdc("eval", "--model", "nope", "--data", "nowhere", cwd=tmp_path)
    assert r.returncode == 2 and "nope: checkpoint folder does not exist" in r.stderr
    r = _drdc("train", "--data", "nowhere", "--out", "o", "--preset", "tiny", cwd=tmp_path)
    assert r.returncode == 2 and "nowhere: dataset folder does not exist" in r.stderr
    r = _drdc("train", "--data", "x", "--out", "o", "--set", "fusion.lam=2", cwd=tmp_path)
    assert r.returncode == 2 and "fusion.lam" in r.stderr
    r = _drdc("--help", cwd=tmp_path)
    assert r.returncode == 0 and "demo" in r.stdout


def test_csrc_loop_agrees_with_torch_loop(tiny_checkpoint):
    from drdc_trt import _C  # noqa: F401  (required: missing is a failure)
    model = load_checkpoint(tiny_checkpoint)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    ref = Detector.from_model(model, loop="torch").predict(x)
    got = Detector.from_model(model, loop="csrc").predict(x)
    assert torch.allclose(got.anomaly_map, ref.anomaly_map, atol=1e-4)
    assert torch.allclose(got.pred_score, ref.pred_score, atol=1e-4)
    assert torch.equal(got.pred_label, ref.pred_label)
