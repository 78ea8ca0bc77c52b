"""An image gets the same answer whatever batch it came in, its place in that batch and the thread
count: every method (DRDC, DiffusionAD, GLAD), through PyTorch and through the torch-free runtime
on ONNX Runtime and OpenVINO (f32), the predictor ``drdc detect`` runs.

The contract (README, "Numerical contract"), image by image against the same images predicted as
one batch on one thread:
- ``pred_score`` within ``SCORE_RTOL`` = 1e-4 relative;
- ``anomaly_map`` within ``MAP_RTOL`` = 1e-4 of the map's largest magnitude;
- ``pred_label`` / ``pred_mask`` equal, except where the reference's score / map value lies within
  that tolerance of its threshold (a value on the threshold may go either way);
- GLAD: the same steps and trigger decision, except for a row whose largest trigger score lies
  within SCORE_RTOL of τ.

The rounding of a network's output depends on its batch (oneDNN and the engines pick kernels by
shape) by a few float32 ulps, and differently on each CPU. A method must not amplify that, so
``test_rounding_noise_is_not_amplified`` perturbs every convolution's and linear layer's output by a
batch-dependent relative 2⁻²⁰ (8 ulps, more than the batch-1 vs batch-N differences measured on the
CPUs of this kind) and asks for the same contract: it holds by construction, not by the rounding
of the CPU at hand.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from drdc_trt.loading import load_checkpoint
from drdc_trt.checkpoint import save_checkpoint
from drdc_trt.config import preset
from drdc_trt.export.exporter import export_bundle
from drdc_trt.export.numerics import sample_images
from drdc_trt.methods.glad.detector import GLADDetector
from drdc_trt.methods.glad.model import GLADModel, GLADStats
from drdc_trt.predictors import detect_predictor

SCORE_RTOL = 1e-4
MAP_RTOL = 1e-4
N_IMAGES = 5
ORDER = [3, 0, 4, 2, 1]  # a shuffled order of the 5 images


@pytest.fixture(scope="module")
def glad_checkpoint(tmp_path_factory, perturb_unet):
    """The tiny GLAD preset with perturbed U-Net weights; τ in the widest gap between the test
    images' largest trigger scores, so some rows trigger and some fall back, none near τ."""
    torch.manual_seed(0)
    model = perturb_unet(GLADModel(preset("tiny", "glad")), scale=0.05, seed=1).eval()
    model.stats = GLADStats(tau=math.inf, image_threshold=0.5, pixel_threshold=0.5, num_images=1, detector_seed=0)
    x = sample_images(model.cfg.image_size, N_IMAGES, seed=11)
    with torch.no_grad():
        top = GLADDetector(model, tau=math.inf, compact=False).predict(x).max_score.sort().values
    gap = int((top[1:] - top[:-1]).argmax())
    tau = float(top[gap] + top[gap + 1]) / 2
    maps_top = GLADDetector(model, tau=tau).predict(x).anomaly_map.flatten()
    model.stats = GLADStats(tau=tau, image_threshold=float(maps_top.quantile(0.5)),
                            pixel_threshold=float(maps_top.quantile(0.9)), num_images=1, detector_seed=0)
    out = tmp_path_factory.mktemp("batch_glad") / "ckpt"
    save_checkpoint(model, out)
    return out


@pytest.fixture(scope="module")
def drdc_checkpoint(tiny_checkpoint, perturb_unet, tmp_path_factory):
    """The trained tiny DRDC checkpoint with its U-Net perturbed (real, timestep-dependent ε̂)."""
    model = perturb_unet(load_checkpoint(tiny_checkpoint).eval())
    out = tmp_path_factory.mktemp("batch_drdc") / "ckpt"
    save_checkpoint(model, out)
    return out


@pytest.fixture(scope="module")
def checkpoints(drdc_checkpoint, dad_checkpoint, glad_checkpoint):
    return {"drdc": drdc_checkpoint, "diffusionad": dad_checkpoint, "glad": glad_checkpoint}


@pytest.fixture(scope="module")
def bundles(checkpoints, tmp_path_factory):
    root = tmp_path_factory.mktemp("batch_bundles")
    return {m: export_bundle(load_checkpoint(c), root / m, max_batch=N_IMAGES, check_batches=()).path
            for m, c in checkpoints.items()}


@pytest.fixture
def threads():
    """torch.set_num_threads for the test, restored after it."""
    old = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(old)


def images_for(size: int) -> torch.Tensor:
    return sample_images(size, N_IMAGES, seed=11)


def as_numpy(batch) -> dict[str, np.ndarray]:
    """Every field of a result (PyTorch's tensors or the runtime's arrays) as numpy."""
    return {f.name: np.asarray(getattr(batch, f.name)) for f in dataclasses.fields(batch)}


def assert_same_answer(ref: dict, got: dict, stats, what: str) -> None:
    """``got`` (one image per row, the reference's order) against ``ref`` under the contract above."""
    s_ref, s_got = ref["pred_score"].astype(np.float64), got["pred_score"].astype(np.float64)
    err = np.abs(s_got - s_ref) / np.maximum(np.abs(s_ref), 1e-6)
    assert float(err.max()) <= SCORE_RTOL, f"{what}: pred_score differs by {err.max():.3g} relative ({s_ref} vs {s_got})"
    m_ref, m_got = ref["anomaly_map"].astype(np.float64), got["anomaly_map"].astype(np.float64)
    tol = MAP_RTOL * float(np.abs(m_ref).max())
    merr = float(np.abs(m_got - m_ref).max())
    assert merr <= tol, f"{what}: anomaly_map differs by {merr:.3g} (allowed {tol:.3g})"
    near = np.abs(s_ref - stats.image_threshold) <= SCORE_RTOL * np.maximum(np.abs(s_ref), 1e-6)
    assert np.array_equal(got["pred_label"][~near], ref["pred_label"][~near]), f"{what}: pred_label"
    near = np.abs(m_ref - stats.pixel_threshold) <= tol
    assert np.array_equal(got["pred_mask"][~near], ref["pred_mask"][~near]), f"{what}: pred_mask"
    if "steps" in ref:  # GLAD: the loop's decisions
        mx = ref["max_score"].astype(np.float64)
        far = np.abs(mx - stats.tau) > SCORE_RTOL * np.abs(mx)
        for f in ("steps", "trigger_kind", "trigger_step"):
            assert np.array_equal(got[f][far], ref[f][far]), f"{what}: {f} {ref[f]} vs {got[f]}"


def answers(predict, x: torch.Tensor) -> dict[str, dict]:
    """The images as one batch, one at a time, and in a shuffled order (put back in order)."""
    inv = np.argsort(ORDER)
    shuffled = as_numpy(predict(x[ORDER], batch_size=N_IMAGES))
    return {"one batch": as_numpy(predict(x, batch_size=N_IMAGES)),
            "single images": as_numpy(predict(x, batch_size=1)),
            "batches of 2": as_numpy(predict(x, batch_size=2)),
            "shuffled": {f: v[inv] for f, v in shuffled.items()}}


def check_all(predict_at, x, stats, what: str) -> None:
    """predict_at(threads) → predict; every arrangement on 1 and 2 threads against one batch on 1."""
    ref = None
    for n in (1, 2):
        for name, got in answers(predict_at(n), x).items():
            if ref is None:
                ref = got
            assert_same_answer(ref, got, stats, f"{what}, {name}, {n} thread(s)")


@pytest.mark.parametrize("method", ["drdc", "diffusionad", "glad"])
def test_pytorch_answer_does_not_depend_on_batch_order_or_threads(method, checkpoints, threads):
    predict, size, stats = detect_predictor(checkpoints[method], None, "torch", "auto", None, "cpu", False)

    def at(n):
        threads(n)
        return predict

    check_all(at, images_for(size), stats, f"{method} PyTorch")


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("method", ["drdc", "diffusionad", "glad"])
def test_runtime_answer_does_not_depend_on_batch_order_or_threads(method, backend, bundles):
    from drdc_trt.runtime import load_detector

    _, size, stats = detect_predictor(None, bundles[method], backend, "auto", None, "cpu", False)
    kwargs = {"precision": "f32"} if backend == "openvino" else {}

    def at(n):
        det = load_detector(bundles[method], backend=backend, threads=n, **kwargs)
        return lambda x, batch_size: det.predict(x.numpy(), batch_size=batch_size)

    check_all(at, images_for(size), stats, f"{method} {backend} f32")


def batch_dependent_rounding(rel: float = 2.0 ** -20):
    """A global forward hook: every Conv2d / Linear output times (1 + rel·r), r ∈ [−1, 1] drawn from
    the output's shape, so the same image in another batch (or another place in it) gets another
    perturbation, as another kernel's rounding would. Returns the hook's handle."""

    def hook(module, args, out):
        if not isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)) or not isinstance(out, torch.Tensor):
            return None
        g = torch.Generator().manual_seed(hash(tuple(out.shape)) % (2 ** 31))
        return out * (1 + rel * (torch.rand(out.shape, generator=g, dtype=out.dtype) * 2 - 1))

    return torch.nn.modules.module.register_module_forward_hook(hook)


@pytest.mark.parametrize("method", ["drdc", "diffusionad", "glad"])
def test_rounding_noise_is_not_amplified(method, checkpoints, threads):
    predict, size, stats = detect_predictor(checkpoints[method], None, "torch", "auto", None, "cpu", False)
    x = images_for(size)
    threads(1)
    ref = as_numpy(predict(x, batch_size=N_IMAGES))
    handle = batch_dependent_rounding()
    try:
        for name, got in answers(predict, x).items():
            assert_same_answer(ref, got, stats, f"{method} PyTorch with 8-ulp batch-dependent rounding, {name}")
    finally:
        handle.remove()


def test_glad_first_step_distance_is_exactly_zero(glad_checkpoint, threads):
    """At GLAD's first step x0_in = x0_gen (both are x̂0 of the same x_t and ε̂), so A = 0 exactly,
    whatever the rounding: with τ = 0 no row triggers there on any CPU or batch (before the distance
    floor, the rounding noise of A, ±3e-7, decided it and one image's score moved by 10 %)."""
    model = load_checkpoint(glad_checkpoint)
    x = images_for(model.cfg.image_size)
    threads(1)
    handle = batch_dependent_rounding()
    try:
        for bs in (1, 2, N_IMAGES):
            out = GLADDetector(model, tau=0.0, compact=False).predict(x, batch_size=bs)
            assert bool((out.trigger_step >= 1).all()), (bs, out.trigger_step)
    finally:
        handle.remove()
