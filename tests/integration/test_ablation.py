"""The ablation driver (drdc_trt.ablation, `drdc ablate`) on the tiny preset and the
synthetic data; `drdc eval --method`; and a smoke run on the real magnetic-tile
data when it is present (skipped with a reason when it is not)."""

import json
import shutil

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from drdc_trt.methods.drdc import ops
from drdc_trt.methods.drdc.ablation import FACTORS, ablation_rows, run_ablation, write_results
from drdc_trt.study_parts import label, machine_info, variant_changes
from drdc_trt.loading import load_checkpoint
from drdc_trt.cli import main
from drdc_trt.config import preset
from drdc_trt.data import scan
from drdc_trt.evaluate import KNN, evaluate, fit_knn
from drdc_trt.methods.drdc.fusion import normalised_blend
from drdc_trt.models.knn import KNNConfig
from drdc_trt.methods.drdc.pipeline import Detector


def _shared_data_root():
    """conftest.shared_data_root() (tests are not a package: load the file by path)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("_drdc_conftest", Path(__file__).resolve().parents[1] / "conftest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.shared_data_root()

SMALL_FACTORS = {"diffusion.num_sets": (2, 3), "diffusion.t0": (150, 250)}
KNN_CFG = KNNConfig(bank_size=64)


def test_variant_changes_one_at_a_time_and_grid():
    cfg = preset("tiny")  # K=2, steps=3, t0=250
    one = variant_changes(cfg, FACTORS)
    assert one == [{"diffusion.num_sets": 4}, {"diffusion.num_steps": 5}, {"diffusion.num_steps": 10},
                   {"diffusion.num_steps": 20}, {"diffusion.t0": 150}, {"diffusion.t0": 400}]
    grid = variant_changes(cfg, FACTORS, grid=True)
    assert len(grid) == 2 * 3 * 3  # steps=3 is not in the list, so no combination is the default
    small = preset("small")  # steps=5: the default combination is left out
    assert len(variant_changes(small, FACTORS, grid=True)) == 2 * 3 * 3 - 1
    assert {"diffusion.num_sets": 4, "diffusion.t0": 150} in variant_changes(small, FACTORS, grid=True)
    assert label({"diffusion.num_sets": 4, "diffusion.t0": 150}) == "K=4, t0=150"
    for changes in one:
        cfg.replace(**changes)  # every variant is a valid config


def test_list_setting_as_a_factor():
    from drdc_trt.study_parts import slug as _slug

    cfg = preset("small")  # grid sizes (4, 8), a tuple in the config
    got = variant_changes(cfg, {"diffusion.grid_sizes": ([4, 8], [8, 16]), "diffusion.t0": (150, 250)})
    assert got == [{"diffusion.grid_sizes": [8, 16]}, {"diffusion.t0": 150}]  # [4, 8] is the default
    assert [_slug(c) for c in got] == ["diffusion-grid_sizes=8+16", "diffusion-t0=150"]
    assert label(got[0]) == "g=[8, 16]"
    assert cfg.replace(**got[0]).diffusion.grid_sizes == (8, 16)


@pytest.fixture(scope="module")
def ablation(tiny_checkpoint, synthetic_root, tmp_path_factory):
    work = tmp_path_factory.mktemp("ablation")
    logs = []
    lam = load_checkpoint(tiny_checkpoint).cfg.fusion.lam  # chosen at calibration (fusion.select)
    res = run_ablation(tiny_checkpoint, synthetic_root, work, lams=sorted({0.0, 0.5, lam, 1.0}),
                       factors=SMALL_FACTORS, knn_cfg=KNN_CFG, log=logs.append)
    return res, work, logs


def _mean(rows, method):
    return next(r for r in rows if r["category"] == "mean" and r["method"] == method)


def test_ablation_main_table_and_lambda_rows(ablation, tiny_checkpoint):
    res, _, _ = ablation
    assert {r["method"] for r in res.eval.rows} == {"base (UniAD)", "DRDC", KNN}
    # λ = 0 is the base model, λ = model's λ is DRDC (same maps; scores from the fused kernel vs the blend)
    lam = res.cfg.fusion.lam
    base, drdc = _mean(res.eval.rows, "base (UniAD)"), _mean(res.eval.rows, "DRDC")
    lam0, lam_model = _mean(res.lam_rows, "λ=0"), _mean(res.lam_rows, f"λ={lam:g}")
    for k in ("image_AUROC", "pixel_AUROC", "AUPRO", "F1Max"):
        assert lam0[k] == pytest.approx(base[k], abs=1e-6)
        assert lam_model[k] == pytest.approx(drdc[k], abs=1e-6)
    # the λ ablate chooses on synthetic anomalies is the one calibration chose (same images, same anomalies)
    assert res.synthetic["chosen"] == lam
    out, st = res.eval.out, load_checkpoint(tiny_checkpoint).stats
    torch.testing.assert_close(normalised_blend(out.diff_map, out.base_map, st, lam), out.anomaly_map,
                               atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ops.image_score(out.anomaly_map, res.cfg.score_window), out.pred_score,
                               atol=1e-4, rtol=1e-4)


def test_ablation_variants_recalibrated_and_timed(ablation):
    res, _, logs = ablation
    assert [v["label"] for v in res.variants] == ["K=3", "t0=150"]
    for v in res.variants:
        assert {r["method"] for r in v["rows"]} == {"DRDC", "diffusion only (λ=1)"}
        assert v["stats"]["num_images"] >= 1 and v["stats"]["diff_std"] > 0
        assert v["per_image_ms"] > 0
        for r in v["rows"]:
            assert 0.0 <= r["pixel_AUROC"] <= 1.0
    rows = ablation_rows(res)
    settings = [r["setting"] for r in rows]
    assert settings[0].startswith("default (K=2, steps=3, t0=250")
    assert "λ=0.5 (post hoc)" in settings and "K=3" in settings and "t0=150" in settings
    assert any("default pass" in line for line in logs)


def test_variant_with_the_default_setting_reproduces_the_default_pass(tiny_checkpoint, synthetic_root, tmp_path):
    # re-calibration of a variant measures the same statistics the training run stored
    model = load_checkpoint(tiny_checkpoint)
    res = run_ablation(tiny_checkpoint, synthetic_root, tmp_path, factors={"fusion.mean_filter": (3, 5)},
                       with_knn=False, log=lambda *_: None)
    (v,) = res.variants
    assert v["changes"] == {"fusion.mean_filter": 5}
    assert v["stats"]["base_mean"] == pytest.approx(model.stats.base_mean, rel=1e-5)


def test_ablation_resumes_from_cache_and_only_limits_the_work(ablation, tiny_checkpoint, synthetic_root, tmp_path):
    res, work, _ = ablation
    logs = []
    again = run_ablation(tiny_checkpoint, synthetic_root, work, factors=SMALL_FACTORS, knn_cfg=KNN_CFG,
                         log=logs.append)
    assert sum("from cache" in line for line in logs) == 4  # default pass, kNN, 2 variants
    assert again.eval.rows == res.eval.rows
    assert [v["rows"] for v in again.variants] == [v["rows"] for v in res.variants]
    # a fresh folder, one factor only: the other is reported as not run
    part = run_ablation(tiny_checkpoint, synthetic_root, tmp_path, factors=SMALL_FACTORS, with_knn=False,
                        only=["diffusion.t0"], log=lambda *_: None)
    status = {v["label"]: v.get("status", "done") for v in part.variants}
    assert status == {"K=3": "not run", "t0=150": "done"}
    assert any(r["method"] == "not run" for r in ablation_rows(part))


def test_write_results_files(ablation, tmp_path):
    res, _, _ = ablation
    meta = {"date": "2026-11-23", "machine": machine_info(), "model": "m", "data": "d",
            "commands": ["drdc train ...", "drdc ablate ..."], "notes": ["a note"]}
    files = write_results(res, tmp_path / "res" / "synthetic_cpu", meta, tmp_path / "report.html",
                          png_defects=("crack", "nonexistent"), png_per_type=2)
    names = sorted(f.name for f in files)
    assert names == ["report.html", "synthetic_cpu.json", "synthetic_cpu.md", "synthetic_cpu_examples_crack.png"]
    md = (tmp_path / "res" / "synthetic_cpu.md").read_text()
    assert "## Base vs DRDC vs kNN" in md and "## Ablation" in md and "drdc ablate ..." in md
    assert "K=3" in md and "λ=0.5 (post hoc)" in md and "machine: cpu" in md
    assert "## Per defect type" in md
    data = json.loads((tmp_path / "res" / "synthetic_cpu.json").read_text())
    assert {"rows", "lambda_rows", "ablation", "per_defect", "variants", "config", "knn_config", "machine"} <= set(data)
    # per defect type: every type × method, each type against all good images
    types = {s.defect for s in res.eval.data.samples} - {"good"}
    assert {(r["defect"], r["method"]) for r in data["per_defect"]} == {(t, m) for t in types
                                                                        for m in ("base (UniAD)", "DRDC", KNN)}
    with Image.open(tmp_path / "res" / "synthetic_cpu_examples_crack.png") as im:
        assert im.width > 6 * 32 and im.height > 2 * 32
    html = (tmp_path / "report.html").read_text()
    assert "kNN map" in html and "Ablation" in html and "data:image/png;base64," in html


def test_evaluate_with_knn_and_knn_only(tiny_checkpoint, synthetic_root):
    model = load_checkpoint(tiny_checkpoint)
    knn = fit_knn(model, synthetic_root, knn_cfg=KNN_CFG)
    both = evaluate(Detector.from_model(model), synthetic_root, progress=False, knn=knn)
    assert {r["method"] for r in both.rows} == {"base (UniAD)", "DRDC", KNN}
    alone = evaluate(None, synthetic_root, progress=False, knn=knn)
    assert alone.out is None and {r["method"] for r in alone.rows} == {KNN}
    assert _mean(alone.rows, KNN) == _mean(both.rows, KNN)
    with pytest.raises(ValueError, match="detector"):
        evaluate(None, synthetic_root)


def test_cli_eval_method_and_ablate(tiny_checkpoint, synthetic_root, tmp_path):
    runner = CliRunner()
    r = runner.invoke(main, ["eval", "--model", str(tiny_checkpoint), "--data", str(synthetic_root),
                             "--out", str(tmp_path / "ev"), "--method", "knn", "--knn-bank-size", "32"])
    assert r.exit_code == 0, r.output
    assert "kNN" in (tmp_path / "ev" / "metrics.md").read_text()
    assert "kNN map" in (tmp_path / "ev" / "report.html").read_text()
    r = runner.invoke(main, ["ablate", "--model", str(tiny_checkpoint), "--data", str(synthetic_root),
                             "--work", str(tmp_path / "w"), "--results", str(tmp_path / "r" / "x_cpu"),
                             "--factor", "diffusion.t0=150,250", "--lams", "0,1", "--knn-bank-size", "32",
                             "--command-line", "drdc train --preset tiny", "--quiet"])
    assert r.exit_code == 0, r.output
    md = (tmp_path / "r" / "x_cpu.md").read_text()
    assert "t0=150" in md and "λ=1 (post hoc)" in md and "drdc train --preset tiny" in md
    assert "drdc ablate" in md and (tmp_path / "w" / "report.html").is_file()
    assert json.loads((tmp_path / "r" / "x_cpu.json").read_text())["seed"] == 0
    # a second detector seed, then the headline rows over both: drdc seeds reads what ablate wrote
    r = runner.invoke(main, ["ablate", "--model", str(tiny_checkpoint), "--data", str(synthetic_root),
                             "--work", str(tmp_path / "w1"), "--results", str(tmp_path / "r" / "x_cpu_s1"),
                             "--only", "none", "--no-knn", "--seed", "1", "--lams", "0,1", "--quiet"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["seeds", str(tmp_path / "r" / "x_cpu.json"), str(tmp_path / "r" / "x_cpu_s1.json"),
                             "--out", str(tmp_path / "r" / "x_seeds")])
    assert r.exit_code == 0, r.output
    # another detector seed, another mask layout: its statistics are measured for it
    assert json.loads((tmp_path / "r" / "x_cpu_s1.json").read_text())["stats"]["detector_seed"] == 1
    assert json.loads((tmp_path / "r" / "x_cpu.json").read_text())["stats"]["detector_seed"] == 0
    summary = json.loads((tmp_path / "r" / "x_seeds.json").read_text())
    assert summary["seeds"] == [{"train": 0, "detector": 0}, {"train": 0, "detector": 1}]
    by = {row["method"]: row for row in summary["rows"]}
    assert "kNN (PatchCore-style)" not in by  # only in the first file
    # the base model does not depend on the detector seed: zero spread
    assert by["base (UniAD)"]["pixel_AUROC"]["std"] == pytest.approx(0.0, abs=1e-12)
    r = runner.invoke(main, ["ablate", "--model", str(tiny_checkpoint), "--data", str(synthetic_root),
                             "--work", str(tmp_path / "w"), "--factor", "diffusion.nope=1,2"])
    assert r.exit_code == 2 and "nope" in r.output
    for bad in ("diffusion.grid_sizes=[[4,8]", "diffusion.grid_sizes=[]", "diffusion.t0=150,"):
        r = runner.invoke(main, ["ablate", "--model", str(tiny_checkpoint), "--data", str(synthetic_root),
                                 "--work", str(tmp_path / "w"), "--factor", bad])
        assert r.exit_code == 2 and "JSON list" in r.output, bad
    # words are values too (fusion.heat_norm=none,image_std), checked against the config before any work
    r = runner.invoke(main, ["ablate", "--model", str(tiny_checkpoint), "--data", str(synthetic_root),
                             "--work", str(tmp_path / "w"), "--factor", "diffusion.t0=a,b"])
    assert r.exit_code == 2 and "factor t0=a" in r.output, r.output


# ----------------------------------------------------------------- real data
REAL = _shared_data_root()
real_data = pytest.mark.skipif(
    REAL is None or not (REAL / "magnetic_tile" / "test").is_dir(),
    reason="real dataset absent: set DRDC_MAGNETIC_TILE or put magnetic_tile_defects in ../shared/data "
           "beside the checkout (see benchmarks/results/magnetic_tile_cpu_2026-11-23.md)")


@real_data
def test_real_magnetic_tile_layout_and_driver_smoke(tiny_checkpoint, tmp_path):
    """The real data set as SOURCE.md describes it, and the driver end to end on a
    small subset of it (the tiny model trained on synthetic images: plumbing, not quality)."""
    train_s = scan(REAL, "train")
    test_s = scan(REAL, "test")
    assert len(train_s) == 761 and len(test_s) == 577
    assert sum(s.mask_path is not None for s in test_s) == 386
    assert {s.defect for s in test_s} == {"good", "blowhole", "break", "crack", "fray", "uneven"}
    # a subset in the same layout: 8 train/good, 2 test/good, 1 image per defect type
    sub = tmp_path / "mt"
    picks = train_s[:8] + [s for s in test_s if s.defect == "good"][:2]
    picks += [next(s for s in test_s if s.defect == d) for d in ("blowhole", "break", "crack", "fray", "uneven")]
    for s in picks:
        split = "train" if s in train_s else "test"
        dst = sub / s.category / split / s.defect / s.path.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(s.path, dst)
        if s.mask_path is not None:
            m = sub / s.category / "ground_truth" / s.defect / s.mask_path.name
            m.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(s.mask_path, m)
    res = run_ablation(tiny_checkpoint, sub, tmp_path / "work", factors={"diffusion.t0": (150,)},
                       knn_cfg=KNNConfig(bank_size=32), log=lambda *_: None)
    assert len(res.eval.data) == 7 and res.eval.data.masks[2:].sum() > 0
    assert {r["method"] for r in res.eval.rows} == {"base (UniAD)", "DRDC", KNN}


def test_grid_png_scales_tiles_up_and_down():
    import io

    import numpy as np

    from drdc_trt.viz import grid_png

    tile = np.zeros((200, 200, 3), np.uint8)
    with Image.open(io.BytesIO(grid_png([[tile, tile]], ["a", "b"], ["cap"], max_side=100))) as im:
        assert im.width == 2 * (100 + 4) + 4
    small = np.zeros((32, 32, 3), np.uint8)
    with Image.open(io.BytesIO(grid_png([[small]], ["a"], scale=4, title="t"))) as im:
        assert im.width == 128 + 8 and im.height > 128


def test_interrupted_pass_resumes_from_cached_chunks(tiny_checkpoint, tmp_path):
    from drdc_trt.methods.drdc.ablation import _parts_seconds, _predict_cached
    from drdc_trt.study_parts import ResultCache as _Cache

    det = Detector.from_model(load_checkpoint(tiny_checkpoint))
    x = torch.rand(10, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    full = det.predict(x, batch_size=3)
    cache = _Cache(tmp_path, "fp")
    calls = {"n": 0}
    original = det.predict

    def crash_on_second_chunk(images, batch_size=8, progress=False):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(images, batch_size=batch_size, progress=progress)

    det.predict = crash_on_second_chunk
    with pytest.raises(KeyboardInterrupt):
        _predict_cached(det, x, cache, "p", batch_size=3, progress=False, chunk=4)
    det.predict = original
    out, _, computed = _predict_cached(det, x, cache, "p", batch_size=3, progress=False, chunk=4)
    assert computed == 6  # chunks 2 and 3 (4 + 2 images); chunk 1 came from the cache
    torch.testing.assert_close(out.anomaly_map, full.anomaly_map, atol=1e-5, rtol=1e-5)
    assert _parts_seconds(cache, "p")[1] == 10
    cache.drop_parts("p")
    assert not list(tmp_path.glob("p.part*"))
