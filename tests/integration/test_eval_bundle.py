"""`drdc eval --bundle`: the deployed artifact scored on its own engines gives the metrics of
`drdc eval --model` on the same checkpoint (ONNX Runtime float32; the maps differ by the engines'
float rounding only, so the rank metrics agree to 1e-4)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from drdc_trt.cli import main


def run(*args: str) -> str:
    r = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r.output


def rows(folder) -> dict:
    return {(r["category"], r["method"]): r for r in json.loads((folder / "metrics.json").read_text())["rows"]}


@pytest.mark.parametrize("checkpoint", ["tiny_checkpoint", "dad_checkpoint"])
def test_bundle_on_onnxruntime_scores_as_the_checkpoint(checkpoint, synthetic_root, tmp_path, request):
    ckpt = request.getfixturevalue(checkpoint)
    bundle = tmp_path / "bundle"
    run("export", "--model", str(ckpt), "--out", str(bundle))
    run("eval", "--model", str(ckpt), "--data", str(synthetic_root), "--out", str(tmp_path / "m"))
    out = run("eval", "--bundle", str(bundle), "--backend", "onnxruntime", "--data", str(synthetic_root),
              "--out", str(tmp_path / "b"))
    want, got = rows(tmp_path / "m"), rows(tmp_path / "b")
    assert want.keys() == got.keys() and len(want) >= 3
    for key, r in want.items():
        for metric in ("image_AUROC", "pixel_AUROC", "AUPRO", "F1Max"):
            assert got[key][metric] == pytest.approx(r[metric], abs=1e-4), (key, metric)
    meta = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert meta["bundle"] == str(bundle) and meta["engine"] == "onnxruntime" and meta["model"] is None
    assert "(bundle, onnxruntime)" in (tmp_path / "b" / "report.html").read_text() and "| mean |" in out


def test_bundle_eval_refuses_what_needs_a_checkpoint(tiny_checkpoint, synthetic_root, tmp_path):
    r = CliRunner().invoke(main, ["eval", "--model", str(tiny_checkpoint), "--bundle", str(tmp_path),
                                  "--data", str(synthetic_root)])
    assert r.exit_code == 2 and "exactly one of --model CKPT or --bundle B" in r.output
    r = CliRunner().invoke(main, ["eval", "--model", str(tiny_checkpoint), "--backend", "openvino",
                                  "--data", str(synthetic_root)])
    assert r.exit_code == 2 and "use them with --bundle B" in r.output
