"""drdc ablate on a GLAD checkpoint: τ re-calibrated on the held-out normal training images for each
variant (checked against a calibration done here), the two τ bounds and the min_step fallback
against the step counts of the DDIM schedule worked out by hand, the metrics of each row against
the detector run here, and a DRDC and a DiffusionAD model beside it."""

from __future__ import annotations

import json
import math

import pytest
import torch
from click.testing import CliRunner

from drdc_trt import metrics
from drdc_trt.loading import load_checkpoint
from drdc_trt.checkpoint import save_checkpoint
from drdc_trt.cli import main
from drdc_trt.config import preset
from drdc_trt.data import load_split
from drdc_trt.methods.glad.detector import GLADDetector
from drdc_trt.methods.glad.model import GLADModel
from drdc_trt.methods.glad.model import GLADStats
from drdc_trt.training import split_calibration

SEED = 0
# tiny preset: t0 = 650, K = 5 → timesteps 650, 520, 390, 260, 130
#   min_step 350: the first t below it is 260, step index 3 → a row that falls back there goes on to
#   the end (the authors' rule: 5 U-Net steps) or, with glad.fallback = "stop", takes 4
#   min_step 450: 390, index 2 → 5 steps (or 3 when it stops); a row that triggers runs all 5


@pytest.fixture(scope="module")
def glad_checkpoint(tmp_path_factory, perturb_unet):
    torch.manual_seed(0)
    # the quantile rule, so that every variant below re-calibrates τ from the held-out images
    model = perturb_unet(GLADModel(preset("tiny", "glad").replace(**{"glad.tau_rule": "quantile"})), scale=0.05, seed=1)
    model.stats = GLADStats(tau=0.3, image_threshold=0.5, pixel_threshold=0.5, num_images=1, detector_seed=SEED)
    out = tmp_path_factory.mktemp("glad_ablate") / "ckpt"
    save_checkpoint(model.eval(), out)
    return out


@pytest.fixture(scope="module")
def ablated(glad_checkpoint, dad_checkpoint, tiny_checkpoint, synthetic_root, tmp_path_factory):
    work = tmp_path_factory.mktemp("glad_ablate_work")
    args = ["ablate", "--model", str(glad_checkpoint), "--data", str(synthetic_root), "--work", str(work / "w"),
            "--results", str(work / "res"), "--report", str(work / "report.html"), "--seed", str(SEED),
            "--factor", "glad.tau=inf,-inf", "--factor", "glad.tau_quantile=0.5", "--factor", "glad.min_step=450",
            "--factor", "glad.fallback=stop", "--factor", "glad.tau_rule=fixed", "--compare-model", str(tiny_checkpoint), "--compare-model", str(dad_checkpoint),
            "--no-knn", "--no-synthetic-lambda", "--lams", "0,1", "--quiet"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    return args, work, json.loads((work / "res.json").read_text()), r.output


def as_metrics(data, scores, maps) -> dict:
    per = []
    for cat in sorted({s.category for s in data.samples}):
        idx = [i for i, s in enumerate(data.samples) if s.category == cat]
        per.append(metrics.evaluate(data.labels[idx], scores[idx], data.masks[idx, 0], maps[idx]))
    return {k: sum(p[k] for p in per) / len(per) for k in metrics.METRICS}


def calibrate_here(model, synthetic_root, **glad) -> float:
    """τ as the docs define it: the tau_quantile quantile of each held-out normal training image's
    largest trigger score, the loop run with τ = +∞."""
    model.cfg = model.cfg.replace(**{f"glad.{k}": v for k, v in glad.items()})
    train = load_split(synthetic_root, "train", model.cfg.image_size, progress=False)
    _, calib_idx = split_calibration(len(train), model.cfg.train.calib_fraction, model.cfg.train.seed)
    probe = GLADDetector(model, "cpu", SEED, tau=math.inf).predict(train.images[calib_idx], batch_size=8)
    return float(torch.quantile(probe.max_score.double(), model.cfg.glad.tau_quantile))


def rows_by_setting(res) -> dict:
    return {r["setting"].split(" (")[0]: r for r in res["ablation"]}


def test_tau_bounds_and_fallback_step_counts(ablated):
    rows = rows_by_setting(ablated[2])
    assert set(rows) == {"default", "glad.tau=inf", "glad.tau=-inf", "glad.tau_quantile=0.5", "glad.min_step=450",
                         "glad.fallback=stop", "glad.tau_rule=fixed"}
    never, always = rows["glad.tau=inf"], rows["glad.tau=-inf"]
    # the authors' fallback: a row that falls back goes on, so every row takes all 5 steps
    assert never["tau"] == math.inf and never["triggered_pct"] == 0 and never["mean_steps"] == 5
    assert always["tau"] == -math.inf and always["triggered_pct"] == 100 and always["mean_steps"] == 5
    assert rows["glad.min_step=450"]["mean_steps"] == 5
    stop = rows["glad.fallback=stop"]  # a row falls back and stops after 4 steps, or triggers and runs 5
    assert 0 < stop["triggered_pct"] < 100
    assert stop["mean_steps"] == pytest.approx(4 + stop["triggered_pct"] / 100)


def test_each_variant_recalibrates_tau_on_held_out_normal_images(ablated, glad_checkpoint, synthetic_root):
    rows = rows_by_setting(ablated[2])
    model = load_checkpoint(glad_checkpoint)
    assert rows["default"]["tau"] == pytest.approx(0.3)  # the checkpoint's own τ
    want_q = calibrate_here(load_checkpoint(glad_checkpoint), synthetic_root, tau_quantile=0.5)
    want_m = calibrate_here(model, synthetic_root, min_step=450)
    assert rows["glad.tau_quantile=0.5"]["tau"] == pytest.approx(want_q, rel=1e-6)
    assert rows["glad.min_step=450"]["tau"] == pytest.approx(want_m, rel=1e-6)
    assert want_q != pytest.approx(want_m, rel=1e-3)  # min_step changes which steps a row checks
    # the fallback rule changes nothing a row checks before it falls back: the same τ either way
    want_s = calibrate_here(load_checkpoint(glad_checkpoint), synthetic_root, fallback="stop")
    assert rows["glad.fallback=stop"]["tau"] == pytest.approx(want_s, rel=1e-6)
    assert want_s == calibrate_here(load_checkpoint(glad_checkpoint), synthetic_root)
    # the fixed rule (the default of a new model): τ = glad.tau_fixed, 0, with no probe pass
    assert rows["glad.tau_rule=fixed"]["tau"] == 0.0


@pytest.mark.parametrize("setting, tau, changes", [
    ("default", 0.3, {}), ("glad.tau=-inf", -math.inf, {}), ("glad.tau_quantile=0.5", None, {"tau_quantile": 0.5}),
    ("glad.fallback=stop", None, {"fallback": "stop"}), ("glad.tau_rule=fixed", 0.0, {})])
def test_rows_equal_the_detector_run_here(ablated, glad_checkpoint, synthetic_root, setting, tau, changes):
    model = load_checkpoint(glad_checkpoint)
    if tau is None:
        tau = calibrate_here(model, synthetic_root, **changes)
    data = load_split(synthetic_root, "test", model.cfg.image_size, progress=False)
    out = GLADDetector(model, "cpu", SEED, tau=tau).predict(data.images, batch_size=8)
    want = as_metrics(data, out.pred_score, out.anomaly_map)
    got = rows_by_setting(ablated[2])[setting]
    for k, v in want.items():
        assert got[k] == pytest.approx(v, abs=1e-6), (setting, k)
    assert got["mean_steps"] == pytest.approx(out.steps.double().mean().item())


def test_drdc_and_diffusionad_beside(ablated):
    _, work, res, _ = ablated
    assert {r["method"] for r in res["rows"] if r["category"] == "mean"} == {"GLAD", "DRDC", "base (UniAD)",
                                                                               "DiffusionAD"}
    assert {r["method"] for r in res["per_defect"]} == {"GLAD", "DRDC", "base (UniAD)", "DiffusionAD"}
    md = (work / "res.md").read_text()
    assert "| mean | GLAD |" in md and "| mean | DiffusionAD |" in md and "mean_steps" in md
    assert (work / "report.html").stat().st_size > 1000


def test_rerun_reads_the_cache(ablated):
    args, work, res, _ = ablated
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert "glad.tau=inf: from cache" in r.output and "GLAD default pass: from cache" in r.output
    assert json.loads((work / "res.json").read_text())["ablation"] == res["ablation"]


@pytest.mark.parametrize("extra, message", [
    (["--factor", "diffusion.t0=100"], "diffusion.t0"),            # a DRDC setting
    (["--factor", "glad.t0=1200"], "glad.t0=1200"),                 # beyond the schedule
    (["--factor", "glad.tau_quantile=1.5"], "glad.tau_quantile=1.5"),
    (["--method", "diffusionad"], "holds a glad model"),
])
def test_bad_settings_refused_by_name(glad_checkpoint, synthetic_root, tmp_path, extra, message):
    r = CliRunner().invoke(main, ["ablate", "--model", str(glad_checkpoint), "--data", str(synthetic_root),
                                  "--work", str(tmp_path / "w"), "--quiet", *extra])
    assert r.exit_code != 0 and message in r.output, r.output
    assert not (tmp_path / "w").exists()  # refused before any work
