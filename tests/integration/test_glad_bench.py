"""drdc-bench --method glad / all: the GLAD rows at each batch with the steps their images took (known
for a model that never triggers: the tiny preset's schedule 650, 520, 390, 260, 130 falls back at
t = 260, the 4th step, and goes on to the end: 5 steps, the authors' rule), each speed-up the eager
p50 over its own, and the cross-method table."""

from __future__ import annotations

import json
import re

import pytest

from drdc_trt.bench import main as bench

ENGINES = ("torch eager", "torch eager, every row all K steps", "torch, csrc kernels",
           "onnxruntime (numpy kernels)", "onnxruntime (torch-free runtime)")


def run_bench(tmp_path, *extra) -> tuple[dict, str, str]:
    rc = bench(["--config", "tiny", "--max-seconds", "0", "--min-iters", "2", "--threads", "1",
                "--out", str(tmp_path), "--date", "2026-01-01", *extra])
    assert rc == 0
    (jp,) = tmp_path.glob("*.json")
    return json.loads(jp.read_text()), jp.with_suffix(".md").read_text(), jp.name


def test_glad_rows_steps_and_speedups(tmp_path, synthetic_root):
    rep, md, name = run_bench(tmp_path, "--method", "glad", "--batch", "1,3",
                              "--images", str(synthetic_root / "woven" / "test"))
    assert name == "drdc_bench_cpu_glad_32px_2026-01-01.json"
    rows = rep["rows"]
    assert [(r["engine"], r["batch"]) for r in rows] == [(e, b) for e in ENGINES for b in (1, 3)]
    for r in rows:
        assert r["status"] == "ok" and r["latency_ms"]["iterations"] == 2
        base = next(x for x in rows if x["engine"] == "torch eager" and x["batch"] == r["batch"])
        assert r["speedup_vs_baseline"] == pytest.approx(base["latency_ms"]["p50_ms"] / r["latency_ms"]["p50_ms"])
        b, st = r["batch"], r["steps"]
        if r["loop"] == "torch-full":  # no early exit: every image runs all 5 steps
            assert st["steps_histogram"] == {"5": b} and st["unet_rows_run"] == 5 * b
        else:  # a random-init model has τ = +∞: every image falls back at the 4th step and goes on
            assert st["steps_histogram"] == {"5": b} and st["unet_rows_run"] == 5 * b and st["fallback"] == b
        assert st["unet_rows_full"] == 5 * b
    eager = [r for r in rows if r["engine"] == "torch eager"]
    for r in eager:
        full = next(x for x in rows if x["loop"] == "torch-full" and x["batch"] == r["batch"])
        assert r["full_k_over_row"] == pytest.approx(full["latency_ms"]["p50_ms"] / r["latency_ms"]["p50_ms"])
    assert all("full_k_over_row" not in r for r in rows if r["engine"] != "torch eager")
    assert rep["run"]["images"].endswith("test")
    assert "| GLAD | onnxruntime (torch-free runtime) | 3 |" in md and "| torch eager | 3 | 5: 3 | 5.00 | 15 / 15 |" in md
    assert "a row that falls back goes on to the end" in md


@pytest.mark.slow  # the DRDC suite runs too (~25 s); .ci/run's slow pass
def test_all_methods_side_by_side(tmp_path):
    rep, md, name = run_bench(tmp_path, "--method", "all", "--batch", "1")
    assert name == "drdc_bench_cpu_drdc_vs_diffusionad_vs_glad_32px_2026-01-01.json"
    assert {r["method"] for r in rep["rows"]} == {"drdc", "diffusionad", "glad"}
    assert all(r["status"] == "ok" for r in rep["rows"] if r["method"] != "drdc")
    assert all(r["status"] == "ok" or r["status"].startswith("not available") for r in rep["rows"])  # no TensorRT
    p50 = {(r["method"], r["loop"]): r["latency_ms"]["p50_ms"] for r in rep["rows"] if r["status"] == "ok"
           and (r["backend"], r["loop"]) in (("torch", "torch"), ("onnxruntime", "runtime"))}
    want = f"| 1 | {p50['drdc', 'torch'] / p50['diffusionad', 'torch']:.1f}× | " \
           f"{p50['drdc', 'runtime'] / p50['diffusionad', 'runtime']:.1f}× | " \
           f"{p50['drdc', 'torch'] / p50['glad', 'torch']:.1f}× | {p50['drdc', 'runtime'] / p50['glad', 'runtime']:.1f}× |"
    assert want in md


def test_model_of_another_method_refused(tmp_path, dad_checkpoint, capsys):
    assert bench(["--method", "glad", "--model", str(dad_checkpoint), "--no-write"]) == 2
    assert "holds a diffusionad model" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["glad", "diffusionad"])
def test_int8_row_runs_the_quantized_denoiser(tmp_path, synthetic_root, method):
    """--int8-calib: the temporary bundle's denoiser quantized on the data's normal images, and an OpenVINO
    int8 row that runs it (the runtime refuses precision int8 on a bundle without int8 networks)."""
    rep, md, _ = run_bench(tmp_path, "--method", method, "--batch", "2", "--backends", "torch,onnxruntime,openvino",
                           "--int8-calib", str(synthetic_root))
    rows = {r["engine"]: r for r in rep["rows"]}
    q = rows["openvino int8 (torch-free runtime)"]
    assert q["status"] == "ok" and q["precision"] == "int8" and q["speedup_vs_baseline"] > 0
    assert rows["openvino (torch-free runtime)"]["precision"] == "float32"
    assert "openvino int8 (torch-free runtime)" in md
    # a bf16 row exactly where the CPU runs OpenVINO bf16
    from drdc_trt.backends.openvino_backend import supports_bf16

    bf = rows.get("openvino bf16 (torch-free runtime)")
    if supports_bf16():
        assert bf is not None and bf["status"] == "ok" and bf["precision"] == "bfloat16", bf
    else:
        assert bf is None


def test_int8_calib_refused_for_a_drdc_bundle(tmp_path, synthetic_root, capsys):
    assert bench(["--method", "drdc", "--bundle", str(tmp_path), "--int8-calib", str(synthetic_root),
                  "--no-write"]) == 2
    assert "takes an int8 bundle: drdc export --int8" in capsys.readouterr().err


def test_int8_calib_quantizes_a_random_drdc_model(tmp_path, synthetic_root, capsys):
    """The DRDC suite on a random-init preset: its temporary bundle's U-Net quantized on 2 images, the
    int8 check run on real activations (the zero-initialised layers given weights: else ε̂ = 0 and the
    check compares zeros), an OpenVINO int8 row that runs."""
    rep, md, name = run_bench(tmp_path, "--method", "drdc", "--batch", "1", "--backends",
                           "openvino", "--loop", "runtime", "--int8-calib", str(synthetic_root),
                           "--int8-calib-images", "2")
    q = [r for r in rep["rows"] if r["precision"] == "int8"]
    assert len(q) == 1 and q[0]["status"] == "ok" and q[0]["loop"] == "runtime", q
    assert "quantized to int8 on 2 images" in rep["run"]["model_source"]
    assert name == "drdc_bench_cpu_tiny_2026-01-01.json"  # the preset names the files, not the temporary bundle
    ratio = float(re.search(r"int8: unet: rms\(int8 - f32\) = ([\d.e-]+) of rms\(f32\)", capsys.readouterr().err)[1])
    assert 0 < ratio <= 0.1
