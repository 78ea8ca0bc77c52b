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

NEW = {"diffusion.margin": 4, "fusion.select": "synthetic"}


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
    assert (report["selection"]["lam"], report["selection"]["heat_norm"]) == (a.cfg.fusion.lam, a.cfg.fusion.heat_norm)
    assert len(report["selection"]["rows"]) == len(LAMBDA_GRID) * len(HEAT_NORMS)
    # and the original was calibrated for its own settings: the statistics differ
    assert load_checkpoint(tiny_checkpoint).stats != b.stats


def test_calibrate_refuses_training_settings(tiny_checkpoint, synthetic_root, tmp_path):
    r = CliRunner().invoke(main, ["calibrate", "--model", str(tiny_checkpoint), "--data", str(synthetic_root),
                                  "--out", str(tmp_path / "x"), "--set", "train.unet_iters=10"])
    assert r.exit_code == 2 and "train.unet_iters" in r.output and "not inference settings" in r.output
    assert not (tmp_path / "x").exists()
    with pytest.raises(ValueError, match="diffusion.margin=3"):
        recalibrate(tiny_checkpoint, synthetic_root, tmp_path / "y", {"diffusion.margin": 3}, progress=False)
