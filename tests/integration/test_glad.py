"""GLAD end to end: resumable training, τ and the thresholds as defined, a pinned run that must beat
chance on the synthetic set, and the command line (train → detect → eval)."""

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
from drdc_trt.methods.glad.detector import GLADDetector
from drdc_trt.methods.glad.model import GLADModel
from drdc_trt.methods.glad.train import calibrate
from drdc_trt.settings import ModelConfig
from drdc_trt.training import TrainState, split_calibration
from drdc_trt.train import train

QUIET = {"progress": False, "log": lambda *_: None}


def test_training_resumes_to_the_same_weights(synthetic_root, tmp_path, monkeypatch):
    cfg = preset("tiny", "glad")  # 4 iterations, a snapshot every 2
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
    assert (state / "unet_optimizer.safetensors").is_file() and (state / "unet_ema.safetensors").is_file()
    monkeypatch.setattr(TrainState, "save", original)
    logs = []
    resumed, report = train(synthetic_root, tmp_path / "resumed", cfg, progress=False, log=logs.append)
    assert any("resuming" in line for line in logs) and len(report.losses) == 2
    a = load_file(str(tmp_path / "full" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert a.keys() == b.keys() and all(k.startswith("unet.") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert resumed.stats == full.stats

    # τ: glad.tau_fixed (0, the default rule); then the largest image score and the 99.9th
    # percentile of the map pixels with that τ
    data = load_split(synthetic_root, "train", cfg.image_size, progress=False)
    _, calib_idx = split_calibration(len(data), cfg.train.calib_fraction, cfg.train.seed)
    model = load_checkpoint(tmp_path / "full")
    assert full.stats.tau == 0.0
    out = GLADDetector(model).predict(data.images[calib_idx])
    assert full.stats.num_images == len(calib_idx) >= 2
    assert full.stats.image_threshold == pytest.approx(float(out.pred_score.max()), abs=1e-6)
    assert full.stats.pixel_threshold == pytest.approx(float(torch.quantile(out.anomaly_map.flatten(), 0.999)),
                                                       abs=1e-6)


@pytest.mark.parametrize("rule, fixed", [("fixed", 0.0), ("fixed", 0.25), ("quantile", 0.0)])
def test_tau_by_its_rule(synthetic_root, perturb_unet, rule, fixed):
    """τ at calibration: glad.tau_fixed under the fixed rule (no probe pass, so no normal scores in
    the report); under the quantile rule the tau_quantile quantile of each image's largest trigger
    score in a loop with τ = +inf, where every row falls back."""
    cfg = preset("tiny", "glad").replace(**{"glad.tau_rule": rule, "glad.tau_fixed": fixed})
    model = perturb_unet(GLADModel(cfg), scale=0.05, seed=1).eval()
    images = load_split(synthetic_root, "train", cfg.image_size, progress=False).images[:6]
    report = calibrate(model, images)
    assert report["tau"] == model.stats.tau and report["tau_rule"] == rule
    if rule == "fixed":
        assert model.stats.tau == fixed and "normal_max_scores" not in report
    else:
        probe = GLADDetector(model, tau=float("inf")).predict(images)
        assert probe.trigger_kind.tolist() == [2] * len(images)  # all fall back with τ = +inf
        want = float(torch.quantile(probe.max_score.double(), 0.9))
        assert model.stats.tau == pytest.approx(want, abs=1e-6) and report["normal_max_scores"] == probe.max_score.tolist()
    out = GLADDetector(model).predict(images)  # the thresholds are those of the loop with this τ
    assert model.stats.image_threshold == pytest.approx(float(out.pred_score.max()), abs=1e-6)


def test_old_config_keeps_the_quantile_rule():
    """A config written before glad.tau_rule existed reads as the quantile rule it was calibrated by."""
    d = preset("tiny", "glad").to_dict()
    del d["glad"]["tau_rule"], d["glad"]["tau_fixed"]
    assert ModelConfig.from_dict(d).glad.tau_rule == "quantile"
    assert preset("tiny", "glad").glad.tau_rule == "fixed" and preset("tiny", "glad").glad.tau_fixed == 0.0
    with pytest.raises(ValueError, match="glad.tau_rule"):
        preset("tiny", "glad").replace(**{"glad.tau_rule": "median"}).validate()


def test_resume_refuses_another_glad_config(synthetic_root, tmp_path):
    train(synthetic_root, tmp_path, preset("tiny", "glad"), **QUIET)
    with pytest.raises(ValueError, match="another config"):
        train(synthetic_root, tmp_path, preset("tiny", "glad").replace(**{"glad.lr": 2e-4}), **QUIET)


# A pinned run: the tiny U-Net trained 300 iterations on 32² crops of the 64² synthetic set and
# scored at 64² (5 DDIM steps from t0 = 650), with the ImageNet lite0 backbone for the feature
# distances, a CPU-budget learning rate and no EMA. Measured at the defaults (τ fixed at 0: every
# image triggers at its second step; one thread, AMD EPYC, 2026-12-07): pixel AUROC 97.1, image
# AUROC 97.2, AUPRO 91.4 (τ = -inf 95.8 / 95.8 / 88.9; τ = +inf 97.8 / 97.2 / 93.8); ~80 s of
# training and evaluation. (Before the authors' fallback and SAFF weight were the defaults the
# same run gave pixel AUROC 69.5.) The floor is 35 points above chance and 12 below the measurement.
# (Not a test of the anomaly-aware target: docs/glad.md.)
PIXEL_AUROC_FLOOR = 0.85


def pinned_config(**changes):
    return preset("tiny", "glad").replace(**{
        "image_size": 64, "train.crop_size": 32, "train.batch_size": 8, "train.unet_iters": 300,
        "train.checkpoint_every": 300, "train.ema_decay": 0.0, "glad.lr": 1e-3, "backbone.weights": "package",
        **changes,
    })


@pytest.mark.slow  # ~100 s alone on one thread; CI runs it in its `pytest -m slow` pass
def test_pinned_run_beats_chance(tmp_path_factory):
    root = make_synthetic_dataset(tmp_path_factory.mktemp("pinned_data"), size=64, train_per_category=24,
                                  test_good_per_category=4, test_defect_per_type=3, seed=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: the run is the same on every machine's thread count
    try:
        model, _ = train(root, tmp_path_factory.mktemp("pinned_model"), pinned_config(), **QUIET)
        res = evaluate(GLADDetector(model), root, progress=False)
    finally:
        torch.set_num_threads(threads)
    assert {r["method"] for r in res.rows} == {"GLAD"}
    report = res.out.step_report(model.cfg.glad.num_steps)
    assert sum(report["steps_histogram"].values()) == len(res.out) and report["unet_rows_saved"] >= 0
    got = res.mean_row("GLAD")["pixel_AUROC"]
    assert got >= PIXEL_AUROC_FLOOR, f"GLAD pixel AUROC {100 * got:.1f}, floor {100 * PIXEL_AUROC_FLOOR:.0f}"


def test_cli_train_detect_eval(synthetic_root, tmp_path):
    runner = CliRunner()
    ck = tmp_path / "ck"
    r = runner.invoke(main, ["train", "--data", str(synthetic_root), "--out", str(ck), "--preset", "tiny",
                             "--method", "glad", "--quiet"])
    assert r.exit_code == 0, r.output
    model = load_checkpoint(ck)
    assert isinstance(model, GLADModel) and json.loads((ck / "config.json").read_text())["method"] == "glad"
    report = json.loads((ck / "train_report.json").read_text())
    assert report["thresholds"]["tau"] == pytest.approx(model.stats.tau)

    images = sorted((synthetic_root / "woven" / "test").rglob("*.png"))[:3]
    r = runner.invoke(main, ["detect", "--model", str(ck), "--out", str(tmp_path / "det"), *map(str, images)])
    assert r.exit_code == 0, r.output
    got = json.loads((tmp_path / "det" / "results.json").read_text())
    assert got["image_threshold"] == pytest.approx(model.stats.image_threshold)
    want = GLADDetector(model).predict(torch.stack([load_image(f, 32) for f in images]))
    for rec, score, label, steps in zip(got["results"], want.pred_score.tolist(), want.pred_label.tolist(),
                                        want.steps.tolist()):
        assert rec["pred_score"] == pytest.approx(score, abs=1e-6) and rec["pred_label"] == int(label)
        assert rec["steps"] == steps
    r = runner.invoke(main, ["detect", "--model", str(ck), "--method", "diffusionad", "--out", str(tmp_path / "d2"),
                             str(images[0])])
    assert r.exit_code != 0 and "holds a glad model" in r.output

    r = runner.invoke(main, ["eval", "--model", str(ck), "--data", str(synthetic_root), "--out", str(tmp_path / "ev")])
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert {row["method"] for row in m["rows"]} == {"GLAD"}
    assert sum(m["glad_steps"]["steps_histogram"].values()) == 18  # the synthetic set's 18 test images
    assert (tmp_path / "ev" / "report.html").is_file()
    r = runner.invoke(main, ["eval", "--model", str(ck), "--data", str(synthetic_root), "--method", "knn",
                             "--out", str(tmp_path / "ev2")])
    assert r.exit_code != 0 and "GLAD model" in r.output


@pytest.mark.parametrize("clip", [1.0, 0.0])
def test_gradient_norm_is_clipped_as_the_authors(synthetic_root, tmp_path, monkeypatch, clip):
    """glad.grad_clip (1.0 by default, as the authors' training): the U-Net's gradient norm at every
    optimizer step is at most the bound; 0 leaves the gradients as they are (here above 1)."""
    norms = []
    real = torch.optim.Adam.step

    def step(self, *a, **kw):
        g = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(x) for x in g]))))
        return real(self, *a, **kw)

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    cfg = preset("tiny", "glad").replace(**{"glad.grad_clip": clip})
    assert preset("tiny", "glad").glad.grad_clip == 1.0
    train(synthetic_root, tmp_path / "m", cfg, **QUIET)
    assert len(norms) == cfg.train.unet_iters
    if clip:
        assert max(norms) <= clip * (1 + 1e-5)
    else:
        assert max(norms) > 1.0  # what the default clips
