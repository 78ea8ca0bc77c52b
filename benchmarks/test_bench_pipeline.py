"""End to end on the tiny config, per backend: ``Detector.predict_batch`` of 2 images.

One group; a case per backend × DDIM loop: ``torch`` (eager), ``torch-compiled``
(CUDA graphs on a GPU; on a CPU its runner falls back to eager and says so),
``onnxruntime`` (a bundle exported once from the same random-init model; CPU
execution provider) and ``tensorrt`` (needs TensorRT, a GPU and cuda-python,
else skipped with the reason). Latency does not depend on the weights, so the
model is randomly initialised.

    pytest benchmarks/test_bench_pipeline.py --benchmark-only -p no:cacheprovider -o addopts=""
"""

from __future__ import annotations

import importlib.util
import warnings

import pytest
import torch

from drdc_trt.backends import as_torch_runner, make_runner
from drdc_trt.config import preset
from drdc_trt.methods.drdc.fusion import PixelStats
from drdc_trt.methods.drdc.model import DRDCModel
from drdc_trt.methods.drdc.pipeline import Detector

BATCH = 2
CASES = [(b, loop) for b in ("torch", "torch-compiled", "onnxruntime", "tensorrt") for loop in ("torch", "csrc")]


@pytest.fixture(scope="module")
def model():
    """Random init; the tiny preset normalises the diffusion map per pixel, so the model gets
    neutral per-pixel statistics (mean 0, std 1) in place of measured ones."""
    torch.manual_seed(0)
    m = DRDCModel(preset("tiny")).eval()
    s = m.cfg.image_size
    m.stats.pixel = PixelStats(torch.zeros(s, s), torch.ones(s, s))
    return m


@pytest.fixture(scope="module")
def bundle(model, tmp_path_factory):
    """The tiny model as a bundle. A freshly initialised ADM U-Net has all-zero output
    convolutions, which the ONNX export check rejects (the exporter does not keep them
    as initializers); they get small random values first — latency is unaffected."""
    from drdc_trt.export import export_bundle

    with torch.no_grad():
        for p in model.unet.parameters():
            if p.dim() > 1 and not p.any():
                p.normal_(0.0, 1e-3)
    out = tmp_path_factory.mktemp("bench_bundle") / "tiny"
    export_bundle(model, out, check_batches=())
    return out


def _runner(backend: str, model, request, device: str):
    if backend == "torch":
        return make_runner("torch", model=model, device=device), device
    if backend == "torch-compiled":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore" if device == "cpu" else "default", RuntimeWarning)
            return make_runner("torch-compiled", model=model, device=device), device
    if backend == "onnxruntime":  # a dependency of the package: missing fails on import
        bundle = request.getfixturevalue("bundle")
        return as_torch_runner(make_runner("onnxruntime", bundle=bundle, providers=["CPUExecutionProvider"]),
                               "cpu"), "cpu"
    if importlib.util.find_spec("tensorrt") is None:
        pytest.skip("TensorRT is not installed")
    if device != "cuda":
        pytest.skip("TensorRT needs a CUDA GPU")
    bundle = request.getfixturevalue("bundle")
    return as_torch_runner(make_runner("tensorrt", bundle=bundle, rebuild=True), "cuda"), "cuda"


@pytest.mark.parametrize("backend,loop", CASES, ids=[f"{b}-{loop}" for b, loop in CASES])
def test_pipeline_tiny(benchmark, model, request, device, backend, loop):
    if loop == "csrc":
        request.getfixturevalue("need_csrc")
    runner, dev = _runner(backend, model, request, device)
    cfg = model.cfg
    det = Detector(cfg, runner, model.stats, dev, loop=loop)
    x = torch.rand(BATCH, 3, cfg.image_size, cfg.image_size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    x = x.to(dev)

    def run():
        out = det.predict_batch(x)
        if dev == "cuda":
            torch.cuda.synchronize()
        return out

    res = run()  # warm-up (CUDA graph capture, ORT session init) and a sanity check
    assert res.anomaly_map.shape == (BATCH, cfg.image_size, cfg.image_size)
    assert torch.isfinite(res.pred_score).all()
    benchmark.group = f"pipeline tiny batch {BATCH} ({device})"
    benchmark.extra_info.update(backend=backend, loop=loop, device=dev)
    benchmark.pedantic(run, rounds=5, warmup_rounds=1)
