"""A fourth method that lives in tests/toy_method/ (one folder, registered here only) goes through
every path of the engine: train, eval, export, detect from a checkpoint and from a bundle (ONNX
Runtime and OpenVINO), drdc-bench, drdc ablate and the serving model loader. Nothing outside its
folder names it: the engine reaches it through the registry alone."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from drdc_trt import methods

TESTS = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def toy():
    sys.path.insert(0, str(TESTS))  # the toy method's package, tests/toy_method
    try:
        from toy_method.spec import SPEC

        methods.register(SPEC)
        yield SPEC
    finally:
        methods.unregister("toy")
        sys.path.remove(str(TESTS))


def run(*args: str) -> str:
    from drdc_trt.cli import main

    r = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r.output


@pytest.fixture(scope="module")
def toy_checkpoint(toy, synthetic_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("toy") / "ckpt"
    run("train", "--data", str(synthetic_root), "--out", str(out), "--preset", "tiny", "--method", "toy", "--quiet")
    return out


def test_registered_for_this_test_only(toy):
    assert methods.names()[:3] == ("drdc", "diffusionad", "glad") and methods.names()[-1] == "toy"
    from drdc_trt.config import ModelConfig

    assert ModelConfig().toy.blur == 3  # its config section joined every config


def test_train_writes_a_checkpoint_of_the_toy_method(toy_checkpoint):
    from drdc_trt.loading import load_checkpoint

    cfg = json.loads((toy_checkpoint / "config.json").read_text())
    assert cfg["method"] == "toy" and cfg["toy"] == {"blur": 3, "top_k": 16, "floor": 0.05}
    model = load_checkpoint(toy_checkpoint)
    assert type(model).__name__ == "ToyModel" and model.stats.image_threshold > 0


def test_eval_rows_and_report(toy_checkpoint, synthetic_root, tmp_path):
    out = run("eval", "--model", str(toy_checkpoint), "--data", str(synthetic_root), "--out", str(tmp_path / "ev"))
    rows = json.loads((tmp_path / "ev" / "metrics.json").read_text())["rows"]
    assert {r["method"] for r in rows} == {"Toy"} and "| mean | Toy |" in out
    assert "<title>Toy evaluation</title>" in (tmp_path / "ev" / "report.html").read_text()


def test_detect_from_checkpoint_and_from_bundle_agree(toy_checkpoint, synthetic_root, tmp_path):
    bundle = tmp_path / "bundle"
    run("export", "--model", str(toy_checkpoint), "--out", str(bundle))
    assert json.loads((bundle / "manifest.json").read_text())["method"] == "toy"
    images = synthetic_root / "woven" / "test"
    results = {}
    for name, opts in (("ckpt", ["--model", str(toy_checkpoint)]),
                       ("ort", ["--bundle", str(bundle), "--backend", "onnxruntime"]),
                       ("ov", ["--bundle", str(bundle), "--backend", "openvino"])):
        run("detect", *opts, "--out", str(tmp_path / name), str(images))
        results[name] = {r["image"]: r for r in json.loads((tmp_path / name / "results.json").read_text())["results"]}
    assert results["ckpt"].keys() == results["ort"].keys() == results["ov"].keys() and results["ckpt"]
    for img, r in results["ckpt"].items():  # one network, float32: engines agree to rounding
        for eng in ("ort", "ov"):
            assert results[eng][img]["pred_score"] == pytest.approx(r["pred_score"], rel=1e-4, abs=1e-5)


def test_runtime_refuses_a_bad_toy_manifest(toy_checkpoint, tmp_path):
    from drdc_trt.export import export_bundle
    from drdc_trt.export.bundle import BundleError, load_bundle

    bundle = tmp_path / "b"
    export_bundle(toy_checkpoint, bundle, check_batches=())
    m = json.loads((bundle / "manifest.json").read_text())
    m["toy"]["top_k"] = 0
    (bundle / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="toy.top_k must be a positive int"):
        load_bundle(bundle, verify=False)


def test_ablate_varies_its_settings(toy_checkpoint, synthetic_root, tmp_path):
    run("ablate", "--model", str(toy_checkpoint), "--data", str(synthetic_root), "--work", str(tmp_path / "w"),
        "--quiet")
    res = json.loads((tmp_path / "w" / "results.json").read_text())
    labels = [r["setting"] for r in res["ablation"]]
    assert "blur=3, top_k=16" in labels[0] and any("toy.blur=5" in x or "blur=5" in x for x in labels), labels


def test_serving_model_loader(toy_checkpoint, synthetic_root):
    from drdc_trt.data import load_split
    from drdc_trt.serving.model import ServingModel

    sm = ServingModel.load(model=str(toy_checkpoint))
    x = load_split(synthetic_root, "test", 32, ["woven"]).images[:2].numpy()
    p = sm.predict(x)
    assert p.pred_score.shape == (2,) and p.anomaly_map.shape == (2, 32, 32) and not sm.steps
    from drdc_trt.loading import load_checkpoint

    model = load_checkpoint(toy_checkpoint)
    want = methods.get("toy").entry("detector")(model).predict(torch.from_numpy(x)).pred_score.numpy()
    np.testing.assert_allclose(p.pred_score, want, rtol=1e-6)


def test_drdc_bench_rows_and_beside_drdc(toy, tmp_path):
    from drdc_trt.bench import main as bench

    rc = bench(["--method", "toy", "--config", "tiny", "--batch", "1", "--max-seconds", "0", "--min-iters", "2",
                "--threads", "1", "--out", str(tmp_path), "--date", "2026-01-01"])
    assert rc == 0
    (jp,) = tmp_path.glob("*.json")
    rep = json.loads(jp.read_text())
    assert jp.name == "drdc_bench_cpu_toy_32px_2026-01-01.json"
    assert [(r["method"], r["engine"], r["status"]) for r in rep["rows"]] == [
        ("toy", "torch eager", "ok"), ("toy", "onnxruntime (torch-free runtime)", "ok")]
    assert "| Toy | onnxruntime (torch-free runtime) | 1 |" in jp.with_suffix(".md").read_text()
