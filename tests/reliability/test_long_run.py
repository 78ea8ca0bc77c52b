"""Long runs: 10,000 images through the PyTorch Detector and through the torch-free runtime on
an exported bundle, with the process's resident memory sampled along the way.

Memory must stay flat: after a warm-up (the first WARMUP_CALLS calls: allocator pools, ONNX
Runtime's arenas, the refiner's buffers settle), the median RSS of the last quarter of the
samples may exceed the median of the first quarter by at most GROWTH_BOUND_MIB. Over the
calls between those quarters that bound catches any leak of more than about
GROWTH_BOUND_MIB / (calls/2) per call — a fraction of one batch's result maps. The run also
must not drift: the first batch, predicted again at the end, gives the same answer bit for bit.

Tiny preset at its image size (32, the smallest valid), with the cheapest inference settings
(one DDIM step, one grid of one mask set): an image then costs one U-Net row, so the run
counts images, BATCH to a call.
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np
import pytest
import torch

from drdc_trt.loading import load_checkpoint
from drdc_trt.methods.drdc.pipeline import Detector

pytestmark = pytest.mark.slow  # ~1 min each on two cores; .ci/run runs the slow tests in a second pass

IMAGES = 10_000
BATCH = 20
SAMPLE_EVERY = 5  # calls
WARMUP_CALLS = 50
GROWTH_BOUND_MIB = 8.0
CHEAP = {"diffusion.num_steps": 1, "diffusion.num_sets": 1, "diffusion.grid_sizes": [8]}


def _rss_mib() -> float:
    """Resident memory after glibc hands its free heap back (malloc_trim): what stays is memory still
    in use, not free blocks the allocator happens to keep — those made a one-off step of ~13 MiB late
    in one run, after the earlier tests of the same process had shaped the heap."""
    _malloc_trim()
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _malloc_trim() -> None:
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name:
        libc = ctypes.CDLL(name)
        if hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)


def _batch(i: int, size: int) -> np.ndarray:
    """Call i's images: seeded noise in [-1, 1] (every call a new batch)."""
    return np.random.default_rng(i).uniform(-1, 1, (BATCH, 3, size, size)).astype(np.float32)


def _long_run(predict, size: int, label: str, capsys) -> None:
    """predict(images B×3×S×S float32 numpy) -> (scores B, anomaly maps B×S×S) as numpy."""
    calls = IMAGES // BATCH
    first = predict(_batch(0, size))
    samples, t0 = [], time.perf_counter()
    for i in range(calls):
        scores, maps = predict(_batch(i, size))
        assert scores.shape == (BATCH,) and maps.shape == (BATCH, size, size)
        assert np.isfinite(scores).all() and np.isfinite(maps).all(), f"{label}: call {i}"
        if i >= WARMUP_CALLS and (i + 1) % SAMPLE_EVERY == 0:
            samples.append(_rss_mib())
    seconds = time.perf_counter() - t0
    again = predict(_batch(0, size))
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1]), f"{label}: drifted"

    q = len(samples) // 4
    early, late = statistics.median(samples[:q]), statistics.median(samples[-q:])
    with capsys.disabled():
        print(f"\nlong run, {label}: {calls * BATCH} images in {calls} calls of {BATCH} ({seconds:.0f} s); "
              f"RSS after {WARMUP_CALLS} warm-up calls: median {early:.1f} MiB (first quarter) → "
              f"{late:.1f} MiB (last quarter), growth {late - early:+.1f} MiB (bound {GROWTH_BOUND_MIB} MiB), "
              f"range {min(samples):.1f}–{max(samples):.1f} MiB over {len(samples)} samples")
    assert calls * BATCH >= 10_000
    assert late - early <= GROWTH_BOUND_MIB, samples


@pytest.fixture(scope="module")
def cheap_model(tiny_checkpoint):
    model = load_checkpoint(tiny_checkpoint)
    model.cfg = model.cfg.replace(**CHEAP)
    return model


def test_detector_long_run_memory_is_flat(cheap_model, capsys):
    det = Detector.from_model(cheap_model)
    size = cheap_model.cfg.image_size

    def predict(x):
        r = det.predict(torch.from_numpy(x), batch_size=BATCH)
        return r.pred_score.numpy(), r.anomaly_map.numpy()

    _long_run(predict, size, "PyTorch Detector", capsys)


def test_runtime_long_run_memory_is_flat(cheap_model, tmp_path, capsys):
    from drdc_trt.export.exporter import export_bundle
    from drdc_trt.methods.drdc.runtime import BundleDetector

    export_bundle(cheap_model, tmp_path / "bundle", check_batches=())
    det = BundleDetector(tmp_path / "bundle", backend="onnxruntime")
    size = cheap_model.cfg.image_size

    def predict(x):
        r = det.predict(x, batch_size=BATCH)
        return r.pred_score, r.anomaly_map

    _long_run(predict, size, f"torch-free runtime (ONNX Runtime, {det.loop} loop)", capsys)
