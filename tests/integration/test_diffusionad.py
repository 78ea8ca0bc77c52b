"""DiffusionAD end to end: resumable training, calibration, a pinned run that must beat chance on
the synthetic set, and the command line (train → detect → eval)."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from drdc_trt.loading import load_checkpoint
from drdc_trt.cli import main
from drdc_trt.config import preset
from drdc_trt.data import load_image, load_split, make_synthetic_dataset
from drdc_trt.evaluate import evaluate
from drdc_trt.methods.diffusionad.detector import DiffusionADDetector
from drdc_trt.methods.diffusionad.model import DiffusionADModel
from drdc_trt.training import TrainState, split_calibration
from drdc_trt.train import train

QUIET = {"progress": False, "log": lambda *_: None}


def test_training_resumes_to_the_same_weights(synthetic_root, tmp_path, monkeypatch):
    cfg = preset("tiny", "diffusionad")  # 4 iterations, a snapshot every 2
    full, _ = train(synthetic_root, tmp_path / "full", cfg, **QUIET)

    original = TrainState.save

    def crash_after_first_snapshot(self, model, opts):
        original(self, model, opts)
        if self.info["unet_iter"] >= 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(TrainState, "save", crash_after_first_snapshot)
    with pytest.raises(KeyboardInterrupt):
        train(synthetic_root, tmp_path / "resumed", cfg, **QUIET)
    state = tmp_path / "resumed" / "train_state"
    assert json.loads((state / "state.json").read_text())["unet_iter"] == 2
    assert {"unet_optimizer.safetensors", "seg_optimizer.safetensors"} <= {f.name for f in state.iterdir()}
    monkeypatch.setattr(TrainState, "save", original)
    logs = []
    resumed, report = train(synthetic_root, tmp_path / "resumed", cfg, progress=False, log=logs.append)
    assert any("resuming" in line for line in logs) and len(report.losses) == 2
    a = load_file(str(tmp_path / "full" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert a.keys() == b.keys() and any(k.startswith("seg.") for k in a) and any(k.startswith("unet.") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert resumed.stats == full.stats

    # the thresholds: largest image score and 99.9th percentile of the map pixels on the held-out images
    data = load_split(synthetic_root, "train", cfg.image_size, progress=False)
    _, calib_idx = split_calibration(len(data), cfg.train.calib_fraction, cfg.train.seed)
    out = DiffusionADDetector(load_checkpoint(tmp_path / "full"), seed=0).predict(data.images[calib_idx])
    assert full.stats.num_images == len(calib_idx) >= 2
    assert full.stats.image_threshold == pytest.approx(float(out.pred_score.max()), abs=1e-6)
    assert full.stats.pixel_threshold == pytest.approx(float(torch.quantile(out.anomaly_map.flatten(), 0.999)), abs=1e-6)


def test_resume_refuses_another_diffusionad_config(synthetic_root, tmp_path):
    train(synthetic_root, tmp_path, preset("tiny", "diffusionad"), **QUIET)
    with pytest.raises(ValueError, match="another config"):
        train(synthetic_root, tmp_path, preset("tiny", "diffusionad").replace(**{"diffusionad.seg_lr": 2e-5}), **QUIET)


# A pinned run: the tiny networks trained 300 iterations on 32² crops of the 64² synthetic set
# and scored at 64², with CPU-budget learning rates (the official 1e-4 / 1e-5 barely move in 300
# steps) and no EMA. Measured when pinned (2-core CPU shared with other jobs, one thread): pixel
# AUROC 73.1 (brushed 77.1, woven 69.1), image AUROC 68.1, AUPRO 55.1; ~95 s of training. The
# floor is 10 points above chance and 13 below the measurement. (Checked: with no synthetic
# anomalies in training, diffusionad.anomaly_prob = 0, the run falls below it.)
PIXEL_AUROC_FLOOR = 0.60


def pinned_config(**changes):
    return preset("tiny", "diffusionad").replace(**{
        "image_size": 64, "train.crop_size": 32, "train.batch_size": 8, "train.unet_iters": 300,
        "train.checkpoint_every": 300, "train.ema_decay": 0.0, "diffusionad.seg_lr_t_max": 300,
        "diffusionad.unet_lr": 1e-3, "diffusionad.seg_lr": 3e-3, **changes,
    })


def test_pinned_run_beats_chance(tmp_path_factory):
    root = make_synthetic_dataset(tmp_path_factory.mktemp("pinned_data"), size=64, train_per_category=24,
                                  test_good_per_category=4, test_defect_per_type=3, seed=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: the run is the same on every machine's thread count
    try:
        model, _ = train(root, tmp_path_factory.mktemp("pinned_model"), pinned_config(), **QUIET)
        res = evaluate(DiffusionADDetector(model), root, progress=False)
    finally:
        torch.set_num_threads(threads)
    assert {r["method"] for r in res.rows} == {"DiffusionAD"}
    got = res.mean_row("DiffusionAD")["pixel_AUROC"]
    assert got >= PIXEL_AUROC_FLOOR, f"DiffusionAD pixel AUROC {100 * got:.1f}, floor {100 * PIXEL_AUROC_FLOOR:.0f}"


def test_cli_train_detect_eval(synthetic_root, tmp_path):
    runner = CliRunner()
    ck = tmp_path / "ck"
    r = runner.invoke(main, ["train", "--data", str(synthetic_root), "--out", str(ck), "--preset", "tiny",
                             "--method", "diffusionad", "--quiet"])
    assert r.exit_code == 0, r.output
    model = load_checkpoint(ck)
    assert isinstance(model, DiffusionADModel) and json.loads((ck / "config.json").read_text())["method"] == "diffusionad"

    images = sorted((synthetic_root / "woven" / "test").rglob("*.png"))[:3]
    r = runner.invoke(main, ["detect", "--model", str(ck), "--out", str(tmp_path / "det"), *map(str, images)])
    assert r.exit_code == 0, r.output
    got = json.loads((tmp_path / "det" / "results.json").read_text())
    assert got["image_threshold"] == pytest.approx(model.stats.image_threshold)
    want = DiffusionADDetector(model).predict(torch.stack([load_image(f, 32) for f in images]))
    for rec, score, label in zip(got["results"], want.pred_score.tolist(), want.pred_label.tolist()):
        assert rec["pred_score"] == pytest.approx(score, abs=1e-6) and rec["pred_label"] == int(label)
    r = runner.invoke(main, ["detect", "--model", str(ck), "--method", "drdc", "--out", str(tmp_path / "d2"),
                             str(images[0])])
    assert r.exit_code != 0 and "holds a diffusionad model" in r.output

    r = runner.invoke(main, ["eval", "--model", str(ck), "--data", str(synthetic_root), "--out", str(tmp_path / "ev")])
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert {row["method"] for row in m["rows"]} == {"DiffusionAD"}
    assert (tmp_path / "ev" / "report.html").is_file()
    r = runner.invoke(main, ["eval", "--model", str(ck), "--data", str(synthetic_root), "--method", "knn",
                             "--out", str(tmp_path / "ev2")])
    assert r.exit_code != 0 and "DiffusionAD model" in r.output
