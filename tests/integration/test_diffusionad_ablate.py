"""drdc ablate on a DiffusionAD checkpoint: the default pass and the t_a / t_b / w variants against
the norm-guided step written out here in plain PyTorch, the per-defect rows against metrics computed
here, a DRDC model's rows beside them, resuming from the cache, and bad factors refused by name."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from drdc_trt import metrics
from drdc_trt.loading import load_checkpoint
from drdc_trt.cli import main
from drdc_trt.data import load_split
from drdc_trt.evaluate import evaluate
from drdc_trt.methods.drdc.pipeline import Detector

SEED = 0


def reference(model, images: torch.Tensor, t_a: int, t_b: int, w: float, seed: int):
    """(scores, maps) by the formulas of docs/diffusionad.md, one image at a time."""
    s = images.shape[-1]
    gen = torch.Generator().manual_seed(seed)
    n_a, n_b = torch.randn(3, s, s, generator=gen), torch.randn(3, s, s, generator=gen)
    ab = model.alphas_cumprod.double()
    a, b = ab[t_a].item(), ab[t_b].item()
    scores, maps = [], []
    with torch.no_grad():
        for x in images:
            x = x[None]
            x_a = a ** 0.5 * x + (1 - a) ** 0.5 * n_a
            x_b = b ** 0.5 * x + (1 - b) ** 0.5 * n_b
            e_a = model.unet(x_a, torch.tensor([float(t_a)]))
            e_b = model.unet(x_b, torch.tensor([float(t_b)]))
            x0_b = ((x_b - (1 - b) ** 0.5 * e_b) / b ** 0.5).clamp(-1, 1)
            x_tilde = a ** 0.5 * x0_b + (1 - a) ** 0.5 * e_a
            e_hat = e_a - w * (1 - a) ** 0.5 * (x_tilde - x_a)
            x0_g = ((x_a - (1 - a) ** 0.5 * e_hat) / a ** 0.5).clamp(-1, 1)
            m = model.seg(torch.cat([x, x0_g], 1))[0, 0]
            maps.append(m)
            scores.append(m.flatten().topk(model.cfg.top_k).values.mean())
    return torch.stack(scores), torch.stack(maps)


def mean_row(rows, method="DiffusionAD"):
    return next(r for r in rows if r["category"] == "mean" and r["method"] == method)


def as_metrics(data, scores, maps) -> dict:
    per = []
    for cat in sorted({s.category for s in data.samples}):
        idx = [i for i, s in enumerate(data.samples) if s.category == cat]
        per.append(metrics.evaluate(data.labels[idx], scores[idx], data.masks[idx, 0], maps[idx]))
    return {k: sum(p[k] for p in per) / len(per) for k in metrics.METRICS}


@pytest.fixture(scope="module")
def ablated(dad_checkpoint, synthetic_root, tiny_checkpoint, tmp_path_factory):
    work = tmp_path_factory.mktemp("dad_ablate_work")
    args = ["ablate", "--model", str(dad_checkpoint), "--data", str(synthetic_root), "--work", str(work / "w"),
            "--results", str(work / "res"), "--report", str(work / "report.html"), "--seed", str(SEED),
            "--factor", "diffusionad.w=0,1", "--factor", "diffusionad.t_a=150", "--compare-model",
            str(tiny_checkpoint), "--no-knn", "--no-synthetic-lambda", "--lams", "0,1", "--quiet"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    return args, work, json.loads((work / "res.json").read_text()), r.output


def test_default_and_variants_match_the_written_out_step(ablated, dad_checkpoint, synthetic_root):
    _, _, res, _ = ablated
    model = load_checkpoint(dad_checkpoint)
    data = load_split(synthetic_root, "test", model.cfg.image_size, progress=False)
    want = {label: as_metrics(data, *reference(model, data.images, t_a, 400, w, SEED))
            for label, t_a, w in [("default", 200, 1.0), ("w=0", 200, 0.0), ("t_a=150", 150, 1.0)]}
    # the settings change the metrics, so a variant that ignored its setting would fail below
    assert want["w=0"]["pixel_AUROC"] != pytest.approx(want["default"]["pixel_AUROC"], abs=1e-4)
    assert want["t_a=150"]["pixel_AUROC"] != pytest.approx(want["default"]["pixel_AUROC"], abs=1e-4)
    rows = {r["setting"].split(" (")[0].replace("diffusionad.", ""): r for r in res["ablation"]}
    assert set(rows) == {"default", "w=0", "t_a=150"}  # w=1 is the model's own setting: no extra pass
    for label, m in want.items():
        for k, v in m.items():
            assert rows[label][k] == pytest.approx(v, abs=1e-5), (label, k)
    assert mean_row(res["rows"])["image_AUROC"] == pytest.approx(want["default"]["image_AUROC"], abs=1e-5)


def test_per_defect_rows(ablated, dad_checkpoint, synthetic_root):
    _, _, res, _ = ablated
    model = load_checkpoint(dad_checkpoint)
    data = load_split(synthetic_root, "test", model.cfg.image_size, progress=False)
    scores, maps = reference(model, data.images, 200, 400, 1.0, SEED)
    good = [i for i, s in enumerate(data.samples) if s.defect == "good"]
    got = {r["defect"]: r for r in res["per_defect"] if r["method"] == "DiffusionAD"}
    assert set(got) == {s.defect for s in data.samples} - {"good"}
    for defect, r in got.items():
        idx = good + [i for i, s in enumerate(data.samples) if s.defect == defect]
        assert r["images"] == len(idx) - len(good)
        assert r["image_AUROC"] == pytest.approx(metrics.auroc(data.labels[idx], scores[idx]), abs=1e-5)
        assert r["pixel_AUROC"] == pytest.approx(metrics.auroc(data.masks[idx, 0] > 0.5, maps[idx]), abs=1e-5)
    assert {r["method"] for r in res["per_defect"]} == {"DiffusionAD", "base (UniAD)", "DRDC"}


def test_drdc_rows_beside(ablated, tiny_checkpoint, synthetic_root):
    _, work, res, _ = ablated
    drdc = load_checkpoint(tiny_checkpoint)
    ev = evaluate(Detector.from_model(drdc, seed=SEED), synthetic_root, progress=False)
    for method in ("DRDC", "base (UniAD)"):
        for k in metrics.METRICS:
            assert mean_row(res["rows"], method)[k] == pytest.approx(ev.mean_row(method)[k], abs=1e-6), (method, k)
    md = (work / "res.md").read_text()
    assert "| mean | DiffusionAD |" in md and "| mean | DRDC |" in md and "## Per defect type" in md
    assert (work / "report.html").stat().st_size > 1000


def test_rerun_reads_the_cache(ablated):
    args, work, res, _ = ablated
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert "w=0: from cache" in r.output and "DiffusionAD default pass: from cache" in r.output
    again = json.loads((work / "res.json").read_text())
    assert again["ablation"] == res["ablation"] and again["rows"] == res["rows"]


@pytest.mark.parametrize("extra, message", [
    (["--factor", "diffusionad.t_a=500"], "diffusionad.t_a=500"),   # t_a ≥ t_b = 400
    (["--factor", "diffusion.t0=100"], "diffusion.t0"),             # a DRDC setting
    (["--factor", "diffusionad.w=-1"], "diffusionad.w=-1"),
    (["--method", "drdc"], "holds a diffusionad model"),
])
def test_bad_settings_refused_by_name(dad_checkpoint, synthetic_root, tmp_path, extra, message):
    r = CliRunner().invoke(main, ["ablate", "--model", str(dad_checkpoint), "--data", str(synthetic_root),
                                  "--work", str(tmp_path / "w"), "--quiet", *extra])
    assert r.exit_code != 0 and message in r.output, r.output
    assert not (tmp_path / "w").exists()  # refused before any work


def test_compare_model_only_for_diffusionad(tiny_checkpoint, synthetic_root, tmp_path):
    r = CliRunner().invoke(main, ["ablate", "--model", str(tiny_checkpoint), "--data", str(synthetic_root),
                                  "--work", str(tmp_path / "w"), "--compare-model", str(tiny_checkpoint)])
    assert r.exit_code != 0 and "--compare-model" in r.output, r.output


def test_only_runs_the_named_factor(dad_checkpoint, synthetic_root, tmp_path):
    r = CliRunner().invoke(main, ["ablate", "--model", str(dad_checkpoint), "--data", str(synthetic_root),
                                  "--work", str(tmp_path / "w"), "--results", str(tmp_path / "res"), "--quiet",
                                  "--factor", "diffusionad.w=0", "--factor", "diffusionad.t_b=300",
                                  "--only", "diffusionad.w"])
    assert r.exit_code == 0, r.output
    rows = {row["setting"]: row for row in json.loads((tmp_path / "res.json").read_text())["ablation"]}
    assert rows["diffusionad.t_b=300"].get("status") == "not run" and "image_AUROC" not in rows["diffusionad.t_b=300"]
    assert 0.0 <= rows["diffusionad.w=0"]["image_AUROC"] <= 1.0
    assert "| diffusionad.t_b=300 | not run |" in (tmp_path / "res.md").read_text()
