"""Mean ± std over seeds: hand-computed values, refusals, and the CLI's files."""
import json

import pytest
from click.testing import CliRunner

from drdc_trt import seeds
from drdc_trt.cli import main


def _result(train_seed, det_seed, base, drdc, lam05):
    """A minimal 'drdc ablate' result: the per-category rows are ignored, the 'mean' rows used."""
    def row(cat, method, v):
        return {"category": cat, "method": method, "image_AUROC": v, "pixel_AUROC": v / 2, "AUPRO": v / 4,
                "F1Max": 0.5}
    return {"config": {"train": {"seed": train_seed}}, "seed": det_seed,
            "rows": [row("tile", "base (UniAD)", 0.0), row("mean", "base (UniAD)", base),
                     row("mean", "DRDC", drdc)],
            "lambda_rows": [row("mean", "λ=0.5", lam05)]}


def test_mean_and_sample_std_hand_computed():
    # base: 0.6, 0.8, 1.0 -> mean 0.8, sample std sqrt(((-.2)^2 + 0 + .2^2) / 2) = 0.2
    res = [(f"s{i}.json", _result(i, i, b, 0.5, 0.7)) for i, b in enumerate((0.6, 0.8, 1.0))]
    s = seeds.summarize(res)
    rows = {r["method"]: r for r in s["rows"]}
    assert list(rows) == ["base (UniAD)", "DRDC", "λ=0.5"]
    assert rows["base (UniAD)"]["image_AUROC"]["mean"] == pytest.approx(0.8)
    assert rows["base (UniAD)"]["image_AUROC"]["std"] == pytest.approx(0.2)
    assert rows["base (UniAD)"]["pixel_AUROC"]["std"] == pytest.approx(0.1)
    assert rows["base (UniAD)"]["AUPRO"]["values"] == pytest.approx([0.15, 0.2, 0.25])
    assert rows["DRDC"]["image_AUROC"]["std"] == 0.0
    assert s["seeds"] == [{"train": 0, "detector": 0}, {"train": 1, "detector": 1}, {"train": 2, "detector": 2}]
    md = seeds.markdown(s)
    assert "| base (UniAD) | 80.0 ± 20.0 | 40.0 ± 10.0 | 20.0 ± 5.0 | 50.0 ± 0.0 |" in md
    assert "| base (UniAD) | image_AUROC | 60.0 | 80.0 | 100.0 |" in md


def test_variant_rows_of_a_reconstruction_method_study_are_summarised():
    """A GLAD/DiffusionAD study file: its default row under rows, its variants under ablation."""
    def study(seed, v, tau_v):
        m = {"image_AUROC": v, "pixel_AUROC": v, "AUPRO": v, "F1Max": v}
        return {"config": {"train": {"seed": seed}}, "seed": 0, "method": "glad",
                "rows": [{"category": "mean", "method": "GLAD", **m}],
                "ablation": [{"setting": "default (t0=650)", **m},
                             {"setting": "glad.tau=-inf", "image_AUROC": tau_v, "pixel_AUROC": tau_v,
                              "AUPRO": tau_v, "F1Max": tau_v, "tau": None}]}
    s = seeds.summarize([("a", study(0, 0.5, 0.6)), ("b", study(1, 0.7, 0.8))])
    rows = {r["method"]: r for r in s["rows"]}
    assert list(rows) == ["GLAD", "GLAD (glad.tau=-inf)"]
    assert rows["GLAD (glad.tau=-inf)"]["AUPRO"]["mean"] == pytest.approx(0.7)
    assert rows["GLAD"]["AUPRO"]["values"] == pytest.approx([0.5, 0.7])


def test_methods_missing_in_one_file_are_dropped():
    a, b = _result(0, 0, 0.6, 0.5, 0.7), _result(1, 1, 0.8, 0.5, 0.7)
    b["lambda_rows"] = []
    assert [r["method"] for r in seeds.summarize([("a", a), ("b", b)])["rows"]] == ["base (UniAD)", "DRDC"]


def test_refusals_name_the_file():
    a = _result(0, 0, 0.6, 0.5, 0.7)
    with pytest.raises(seeds.SeedSummaryError, match="at least two"):
        seeds.summarize([("a.json", a)])
    with pytest.raises(seeds.SeedSummaryError, match=r"b\.json: seed pair .* already given by a\.json"):
        seeds.summarize([("a.json", a), ("b.json", _result(0, 0, 0.7, 0.5, 0.7))])
    with pytest.raises(seeds.SeedSummaryError, match=r"c\.json: no config\.train\.seed"):
        seeds.summarize([("a.json", a), ("c.json", {"rows": []})])
    with pytest.raises(seeds.SeedSummaryError, match=r"d\.json: no rows with category 'mean'"):
        seeds.summarize([("a.json", a), ("d.json", {"config": {"train": {"seed": 3}}, "rows": []})])


def test_cli_writes_md_and_json(tmp_path):
    paths = []
    for i, b in enumerate((0.6, 1.0)):
        p = tmp_path / f"r{i}.json"
        p.write_text(json.dumps(_result(i, i, b, 0.5, 0.7)))
        paths.append(str(p))
    out = tmp_path / "sub" / "seeds"
    r = CliRunner().invoke(main, ["seeds", *paths, "--out", str(out), "--note", "two seeds"])
    assert r.exit_code == 0, r.output
    d = json.loads((tmp_path / "sub" / "seeds.json").read_text())
    assert d["rows"][0]["image_AUROC"]["mean"] == pytest.approx(0.8)
    md = (tmp_path / "sub" / "seeds.md").read_text()
    assert "80.0 ± 28.3" in md and "- two seeds" in md and "drdc seeds" in md
    bad = CliRunner().invoke(main, ["seeds", paths[0], str(tmp_path / "nope.json"), "--out", str(out)])
    assert bad.exit_code == 2 and "nope.json: no such file" in bad.output


def test_diagnostics_and_chosen_lambda_are_summarised():
    def with_diag(seed, spear, share, lam):
        d = _result(seed, seed, 0.6, 0.5, 0.7)
        d["diagnostics"] = [{"method": "DRDC", "image_AUROC": 0.5, "brightness_spearman": spear, "border_share": share},
                            {"method": "mean intensity alone (no model)", "image_AUROC": 0.4,
                             "brightness_spearman": 1.0, "border_share": None}]
        d["synthetic_lambda"] = {"chosen": lam, "rows": []}
        return d

    s = seeds.summarize([("a", with_diag(0, 0.1, 0.2, 0.3)), ("b", with_diag(1, 0.3, 0.4, 0.5))])
    diag = {r["method"]: r for r in s["diagnostics"]}
    assert diag["DRDC"]["brightness_spearman"]["mean"] == pytest.approx(0.2)
    assert diag["DRDC"]["border_share"]["std"] == pytest.approx(0.1414213, rel=1e-5)  # sd of 0.2, 0.4
    assert "border_share" not in diag["mean intensity alone (no model)"]
    assert s["synthetic_lambda"] == [0.3, 0.5]
    md = seeds.markdown(s)
    assert "| DRDC | 50.0 ± 0.0 | 0.20 ± 0.14 | 30.0 ± 14.1 |" in md
    assert "per seed: 0.3, 0.5" in md
