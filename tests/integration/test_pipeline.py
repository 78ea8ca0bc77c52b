"""End to end: tiny training (resumable), detect, eval, and the CLI from a subprocess."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from drdc_trt.loading import load_checkpoint
from drdc_trt.config import preset
from drdc_trt.evaluate import evaluate
from drdc_trt.float_bounds import decisions_agree
from drdc_trt.methods.drdc.pipeline import Detector
from drdc_trt.training import TrainState
from drdc_trt.train import train


def test_detector_results_do_not_depend_on_batching(tiny_checkpoint, perturb_unet):
    model = perturb_unet(load_checkpoint(tiny_checkpoint))  # a U-Net far from its zero-initialised no-op
    det = Detector.from_model(model)
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    one = det.predict(x, batch_size=1)
    three = det.predict(x, batch_size=3)
    assert float(one.diff_map.std()) > 0.1 * float(one.diff_map.abs().mean())  # a map with structure
    assert torch.allclose(one.anomaly_map, three.anomaly_map, atol=1e-5)
    assert torch.allclose(one.pred_score, three.pred_score, atol=1e-5)
    assert one.anomaly_map.shape == (3, 32, 32) and one.pred_mask.dtype == torch.bool


def test_detector_rejects_wrong_shape(tiny_checkpoint):
    det = Detector.from_model(load_checkpoint(tiny_checkpoint))
    with pytest.raises(ValueError, match=r"expected B×3×32×32"):
        det.predict(torch.zeros(1, 1, 32, 32))


def _calibration_images(root, cfg):
    """The held-out normal images training measured its statistics on (its own split)."""
    from drdc_trt.data import load_split
    from drdc_trt.training import split_calibration

    data = load_split(root, "train", cfg.image_size, progress=False)
    _, calib = split_calibration(len(data), cfg.train.calib_fraction, cfg.train.seed)
    assert calib, "the tiny run holds out calibration images"
    return data.images[calib]


def test_calibration_normalises_normal_maps(tiny_checkpoint, synthetic_root):
    """Re-running the Detector on the calibration images reproduces the statistics: the maps'
    mean and std are the stored ones, the largest image score is the image threshold (so no
    calibration image is flagged), and 0.1 % of their final-map pixels lie above the pixel threshold."""
    model = load_checkpoint(tiny_checkpoint)
    st = model.stats
    images = _calibration_images(synthetic_root, model.cfg)
    assert st.num_images == len(images)
    out = Detector.from_model(model).predict(images)
    for name, mean, std in (("diff_map", st.diff_mean, st.diff_std), ("base_map", st.base_mean, st.base_std)):
        m = getattr(out, name).double()
        assert float(m.mean()) == pytest.approx(mean, rel=1e-4, abs=1e-6), name
        assert float(m.std()) == pytest.approx(std, rel=1e-4), name
    assert float(out.pred_score.max()) == pytest.approx(st.image_threshold, rel=1e-5, abs=1e-6)
    assert not out.pred_label.any()
    final = out.anomaly_map.flatten().double()
    assert float(final.mean()) == pytest.approx(0.0, abs=1e-4)  # both terms centred: λ·0 + (1 − λ)·0
    assert float(torch.quantile(final, 0.999)) == pytest.approx(st.pixel_threshold, rel=1e-4, abs=1e-5)
    assert torch.equal(out.pred_mask, out.anomaly_map > st.pixel_threshold)


def _reference_rows(out, data, stats, window):
    """Per-category rows computed here: scikit-learn's AUROC, F1Max as the best F1 of its PR curve."""
    import numpy as np
    from sklearn.metrics import precision_recall_curve, roc_auc_score

    from drdc_trt.methods.drdc import ops

    base = (out.base_map - stats.base_mean) / stats.base_std
    methods = {"base (UniAD)": (ops.image_score(base, window), base), "DRDC": (out.pred_score, out.anomaly_map)}
    rows = {}
    for name, (scores, maps) in methods.items():
        for cat in sorted({s.category for s in data.samples}):
            idx = [i for i, s in enumerate(data.samples) if s.category == cat]
            y, sc = data.labels[idx].numpy(), scores[idx].double().numpy()
            p, r, _ = precision_recall_curve(y, sc)
            f1 = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-12), 0.0)
            rows[cat, name] = {
                "image_AUROC": roc_auc_score(y, sc),
                "pixel_AUROC": roc_auc_score(data.masks[idx, 0].flatten().numpy() > 0.5,
                                             maps[idx].double().flatten().numpy()),
                "F1Max": float(f1.max()),
            }
    return rows


def test_evaluate_tiny_agrees_with_an_independent_computation(tiny_checkpoint, synthetic_root):
    det = Detector.from_model(load_checkpoint(tiny_checkpoint))
    res = evaluate(det, synthetic_root, progress=False)
    assert {r["method"] for r in res.rows} == {"base (UniAD)", "DRDC"}
    assert {r["category"] for r in res.rows} == {"brushed", "woven", "mean"}
    ref = _reference_rows(res.out, res.data, det.stats, det.cfg.score_window)
    for r in res.rows:
        if r["category"] == "mean":
            per = [x for x in res.rows if x["method"] == r["method"] and x["category"] != "mean"]
            for k in ("image_AUROC", "pixel_AUROC", "AUPRO", "F1Max"):
                assert r[k] == pytest.approx(sum(x[k] for x in per) / len(per), abs=1e-12), (r["method"], k)
            continue
        want = ref[r["category"], r["method"]]
        for k, v in want.items():
            assert r[k] == pytest.approx(v, abs=1e-9), (r["category"], r["method"], k)
        assert 0.0 <= r["AUPRO"] <= 1.0


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
    # The sections beside the table: per defect type, and the maps the blend is made of. The blend at
    # λ = 0 is the table's base row (the same map and window score), so its rows must equal those.
    sec = m["sections"]
    assert {r["method"] for r in sec["per_defect"]} == {"base (UniAD)", "DRDC"}
    assert "good" not in {r["defect"] for r in sec["per_defect"]} and sec["per_defect"]
    lam = json.loads((tmp_path / "ckpt" / "config.json").read_text())["fusion"]["lam"]
    assert [r["method"] for r in sec["diagnostics"]] == ["base (λ=0)", "diffusion only (λ=1)", f"DRDC (λ={lam:g})",
                                                         "mean intensity alone (no model)"]
    # The blends at λ = 0 and at the model's λ are the table's base and DRDC rows (the same maps and
    # window scores, compared exactly), so only the diffusion map alone gets rows of its own (none
    # when the model's λ is 1: then it is the DRDC row).
    assert {r["method"] for r in sec["diagnostic_rows"]} == ({"diffusion only (λ=1)"} if lam != 1 else set())
    md = (tmp_path / "ev" / "metrics.md").read_text()
    assert "## Per defect type" in md and "## Border and lighting diagnostics" in md
    # --per-type: the report's example rows per defect type (2 test images per type here, 1 kept)
    r = _drdc("eval", "--model", "ckpt", "--data", str(synthetic_root), "--out", "ev1", "--per-type", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    imgs = lambda d: (tmp_path / d / "report.html").read_text().count("<img")
    assert imgs("ev1") < imgs("ev")


def test_cli_errors_are_clear(tmp_path):
    r = _drdc("eval", "--model", "nope", "--data", "nowhere", cwd=tmp_path)
    assert r.returncode == 2 and "nope: checkpoint folder does not exist" in r.stderr
    r = _drdc("train", "--data", "nowhere", "--out", "o", "--preset", "tiny", cwd=tmp_path)
    assert r.returncode == 2 and "nowhere: dataset folder does not exist" in r.stderr
    r = _drdc("train", "--data", "x", "--out", "o", "--set", "fusion.lam=2", cwd=tmp_path)
    assert r.returncode == 2 and "fusion.lam" in r.stderr
    r = _drdc("--help", cwd=tmp_path)
    assert r.returncode == 0 and "demo" in r.stdout


def test_csrc_loop_agrees_with_torch_loop(tiny_checkpoint, perturb_unet):
    from drdc_trt import _C  # noqa: F401  (required: missing is a failure)
    model = perturb_unet(load_checkpoint(tiny_checkpoint))  # real, timestep-dependent ε̂
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    ref = Detector.from_model(model, loop="torch").predict(x)
    got = Detector.from_model(model, loop="csrc").predict(x)
    assert torch.allclose(got.anomaly_map, ref.anomaly_map, atol=1e-4)
    assert torch.allclose(got.pred_score, ref.pred_score, atol=1e-4)
    assert decisions_agree(got.pred_label, ref.pred_label, ref.pred_score, model.stats.image_threshold, 1e-4)
