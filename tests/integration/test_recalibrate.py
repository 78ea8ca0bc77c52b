"""`drdc calibrate`: new inference settings on a trained model equal training with them; the
λ chosen on synthetic anomalies is stored with the model."""

import json

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from drdc_trt.loading import load_checkpoint
from drdc_trt.cli import main
from drdc_trt.config import HEAT_NORMS, preset
from drdc_trt.methods.drdc.train import recalibrate
from drdc_trt.train import train
from drdc_trt.methods.drdc.tuning import LAMBDA_GRID

NEW = {"diffusion.margin": 4, "fusion.select": "synthetic", "fusion.synthetic_families": ("patches", "small")}


def test_recalibrated_model_equals_one_trained_with_the_settings(synthetic_root, tiny_checkpoint, tmp_path):
    logs = []
    train(synthetic_root, tmp_path / "direct", preset("tiny").replace(**NEW), progress=False, log=logs.append)
    recalibrate(tiny_checkpoint, synthetic_root, tmp_path / "recal", NEW, progress=False, log=lambda *_: None)
    a, b = load_checkpoint(tmp_path / "direct"), load_checkpoint(tmp_path / "recal")
    assert a.cfg.to_dict() == b.cfg.to_dict()
    assert a.cfg.fusion.lam in LAMBDA_GRID and any("chosen on" in line and "heat_norm=" in line for line in logs)
    assert a.stats == b.stats  # the JSON statistics; the per-pixel ones:
    assert torch.equal(a.stats.pixel.mean, b.stats.pixel.mean) and torch.equal(a.stats.pixel.std, b.stats.pixel.std)
    wa, wb = load_file(str(tmp_path / "direct" / "model.safetensors")), load_file(str(tmp_path / "recal" / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    report = json.loads((tmp_path / "direct" / "train_report.json").read_text())
    sel = report["selection"]
    assert "guard" not in sel and not a.cfg.fusion.guard  # the reliability guard is opt-in
    assert (sel["lam"], sel["heat_norm"]) == (a.cfg.fusion.lam, a.cfg.fusion.heat_norm)
    assert len(report["selection"]["rows"]) == len(LAMBDA_GRID) * len(HEAT_NORMS)
    # both synthetic families scored; each row of the table is their mean
    assert sel["families"] == ["patches", "small"]
    fam = sel["family_rows"]
    for i, row in enumerate(sel["rows"]):
        assert row["objective"] == pytest.approx((fam["patches"][i]["objective"] + fam["small"][i]["objective"]) / 2)
        assert row["AUPRO"] == pytest.approx((fam["patches"][i]["AUPRO"] + fam["small"][i]["AUPRO"]) / 2)
    # and the original was calibrated for its own settings: the statistics differ
    assert load_checkpoint(tiny_checkpoint).stats != b.stats


def test_calibrate_refuses_training_settings(tiny_checkpoint, synthetic_root, tmp_path):
    r = CliRunner().invoke(main, ["calibrate", "--model", str(tiny_checkpoint), "--data", str(synthetic_root),
                                  "--out", str(tmp_path / "x"), "--set", "train.unet_iters=10"])
    assert r.exit_code == 2 and "train.unet_iters" in r.output and "not inference settings" in r.output
    assert not (tmp_path / "x").exists()
    with pytest.raises(ValueError, match="diffusion.margin=3"):
        recalibrate(tiny_checkpoint, synthetic_root, tmp_path / "y", {"diffusion.margin": 3}, progress=False)


def test_guard_that_fails_stores_lambda_zero_and_says_why(synthetic_root, tiny_checkpoint, tmp_path, monkeypatch):
    """A diffusion map whose normal images peak on the border: calibration stores λ = 0 (the base
    map), prints one warning line and returns the record; with too few held-out images for the
    cross-fit the guard says it did not run (drdc calibrate keeps that record)."""
    from drdc_trt.data import load_split
    from drdc_trt.methods.drdc import guard
    from drdc_trt.methods.drdc.train import calibrate

    def on_the_border(cfg, images, heat, base, count, heat_norm):
        maps = torch.rand(len(images), cfg.image_size, cfg.image_size, generator=torch.Generator().manual_seed(0))
        maps[:, :, 0] += 5.0
        return maps

    model = load_checkpoint(tiny_checkpoint)
    model.cfg = model.cfg.replace(**{"fusion.select": "fixed", "fusion.lam": 0.5, "fusion.guard": True})
    images = load_split(synthetic_root, "train", model.cfg.image_size, progress=False).images[:8]
    monkeypatch.setattr(guard, "diffusion_only_maps", on_the_border)
    logs = []
    rec = calibrate(model, images, batch_size=4, log=logs.append)["guard"]
    assert model.cfg.fusion.lam == 0.0 and model.stats.num_images == 8
    assert any(line.startswith("warning: the diffusion map failed the reliability guard, λ = 0 stored instead of 0.5")
               for line in logs), logs
    assert rec["passed"] is False and rec["lam_chosen"] == 0.5 and rec["lam"] == 0.0 and rec["images"] == 8
    assert [c["check"] for c in rec["checks"] if not c["passed"]] == ["border"]  # no margin check: λ was fixed
    monkeypatch.undo()
    # off: λ as set, no record
    model.cfg = model.cfg.replace(**{"fusion.lam": 0.5, "fusion.guard": False})
    assert calibrate(model, images, batch_size=4, log=logs.append) is None and model.cfg.fusion.lam == 0.5
    # the tiny checkpoint holds 2 calibration images: too few to cross-fit, the guard says so
    logs.clear()
    recalibrate(tiny_checkpoint, synthetic_root, tmp_path / "g", {"fusion.select": "fixed", "fusion.lam": 0.5,
                                                                   "fusion.guard": True}, progress=False,
                log=logs.append)
    rec = guard.stored_record(tmp_path / "g")
    assert rec["skipped"].startswith("needs at least 4 held-out normal images") and rec["lam"] == 0.5
    assert any(line.startswith("note: the reliability guard did not run") for line in logs), logs
    assert load_checkpoint(tmp_path / "g").cfg.fusion.lam == 0.5


def test_glad_calibrate_switches_the_tau_rule(synthetic_root, tmp_path, perturb_unet):
    """`drdc calibrate` on a GLAD model (one written before the τ rule existed reads as the quantile
    rule): --set glad.tau_rule=fixed stores τ = glad.tau_fixed, the thresholds of the loop with it
    and the same weights; a training setting is refused by name."""
    from drdc_trt.checkpoint import save_checkpoint
    from drdc_trt.methods.glad.detector import GLADDetector
    from drdc_trt.methods.glad.model import GLADModel, GLADStats
    from drdc_trt.training import training_split

    cfg = preset("tiny", "glad").replace(**{"glad.tau_rule": "quantile"})
    model = perturb_unet(GLADModel(cfg), scale=0.05, seed=1).eval()
    model.stats = GLADStats(tau=0.3, image_threshold=0.5, pixel_threshold=0.5, num_images=1, detector_seed=0)
    save_checkpoint(model, tmp_path / "old")
    r = CliRunner().invoke(main, ["calibrate", "--model", str(tmp_path / "old"), "--data", str(synthetic_root),
                                  "--out", str(tmp_path / "new"), "--set", "glad.tau_rule=fixed", "--quiet"])
    assert r.exit_code == 0, r.output
    new = load_checkpoint(tmp_path / "new")
    assert new.cfg.glad.tau_rule == "fixed" and new.stats.tau == 0.0
    _, calib = training_split(synthetic_root, new.cfg, None, progress=False, log=lambda _: None)
    out = GLADDetector(new).predict(calib, batch_size=max(1, new.cfg.train.batch_size // 2))
    assert new.stats.image_threshold == pytest.approx(float(out.pred_score.max()), abs=1e-6)
    wa, wb = load_file(str(tmp_path / "old" / "model.safetensors")), load_file(str(tmp_path / "new" / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    report = json.loads((tmp_path / "new" / "calibration_report.json").read_text())
    assert report["changes"] == {"glad.tau_rule": "fixed"} and report["selection"]["tau"] == 0.0
    r = CliRunner().invoke(main, ["calibrate", "--model", str(tmp_path / "old"), "--data", str(synthetic_root),
                                  "--out", str(tmp_path / "x"), "--set", "glad.lr=0.1"])
    assert r.exit_code == 2 and "glad.lr" in r.output and not (tmp_path / "x").exists()
