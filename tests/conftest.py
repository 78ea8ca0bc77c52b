"""Shared fixtures: small generated datasets and a trained tiny checkpoint (built once per session)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _feature_cache(tmp_path_factory):
    """Training's backbone-feature cache in a folder of this session, never the user's."""
    old = os.environ.get("DRDC_FEATURE_CACHE")
    os.environ["DRDC_FEATURE_CACHE"] = str(tmp_path_factory.mktemp("feature_cache"))
    yield
    if old is None:
        os.environ.pop("DRDC_FEATURE_CACHE", None)
    else:
        os.environ["DRDC_FEATURE_CACHE"] = old


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    from drdc_trt.data import make_synthetic_dataset

    root = tmp_path_factory.mktemp("synthetic")
    return make_synthetic_dataset(root, size=64, train_per_category=12, test_good_per_category=3,
                                  test_defect_per_type=2, seed=0)


@pytest.fixture(scope="session")
def tiny_checkpoint(synthetic_root, tmp_path_factory) -> Path:
    from drdc_trt.config import preset
    from drdc_trt.train import train

    out = tmp_path_factory.mktemp("tiny_ckpt")
    train(synthetic_root, out, preset("tiny"), progress=False, log=lambda *_: None)
    return out


@pytest.fixture(scope="session")
def dad_checkpoint(tmp_path_factory) -> Path:
    """A DiffusionAD checkpoint: the tiny preset with every weight perturbed (a barely trained U-Net
    predicts ε ≈ 0, and a map that hardly moves with t_a or w would let a variant that ignores its
    setting pass); detector seed 0."""
    from drdc_trt.checkpoint import save_checkpoint
    from drdc_trt.config import preset
    from drdc_trt.methods.diffusionad.model import DiffusionADModel, DiffusionADStats

    torch.manual_seed(0)
    model = DiffusionADModel(preset("tiny", "diffusionad"))
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.1)
    model.stats = DiffusionADStats(0.5, 0.5, 1, 0)
    out = tmp_path_factory.mktemp("dad_ckpt") / "ckpt"
    save_checkpoint(model.eval(), out)
    return out


def _perturb_unet(model, scale: float = 0.05, seed: int = 3):
    """The U-Net's zero-initialised output layers make a barely trained model's ε̂ tiny
    (~0.05 everywhere, whatever the timestep); perturb every weight so comparisons of
    exported networks measure real, timestep-dependent activations."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.unet.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return model


@pytest.fixture(scope="session")
def perturb_unet():
    """perturb(model, scale=0.05, seed=3) -> model, its U-Net weights perturbed in place."""
    return _perturb_unet


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def shared_data_root() -> Path | None:
    """The real dataset: $DRDC_MAGNETIC_TILE or ../shared/data/magnetic_tile_defects beside the checkout."""
    env = os.environ.get("DRDC_MAGNETIC_TILE")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parents[1]
    cand = here.parent / "shared" / "data" / "magnetic_tile_defects"
    return cand if cand.is_dir() else None


# --------------------------------------------------------------------------- GPU tests
# The GPU check (scripts/gpu_check.sh) selects its tests with `-m gpu`: a test that skips
# for want of a GPU but lacks the marker would run nowhere, so collecting one is an error.
_NEEDS_GPU = re.compile(r"\bneeds?\b.*\bGPU\b")


def _gpu_skip_reasons(item) -> list[str]:
    return [str(m.kwargs.get("reason", "")) for m in item.iter_markers("skipif")
            if _NEEDS_GPU.search(str(m.kwargs.get("reason", "")))]


def pytest_collection_modifyitems(config, items):
    unmarked = [it.nodeid for it in items if _gpu_skip_reasons(it) and it.get_closest_marker("gpu") is None]
    if unmarked:
        raise pytest.UsageError("these tests skip without a GPU but are not marked `gpu`, so the GPU check "
                                "would never run them: " + ", ".join(unmarked))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under DRDC_REQUIRE_CUDA=1 (the GPU check) a `gpu` test that skips is a failure: a driver
    too old for the runtime or a _C built without CUDA must not read as "no GPU here". TensorRT
    tests may still skip (TensorRT is not on every GPU machine); they say why."""
    outcome = yield
    rep = outcome.get_result()
    if (rep.skipped and os.environ.get("DRDC_REQUIRE_CUDA") == "1" and item.get_closest_marker("gpu")
            and not item.get_closest_marker("tensorrt") and not hasattr(rep, "wasxfail")):
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        rep.outcome = "failed"
        rep.longrepr = f"DRDC_REQUIRE_CUDA=1 but this GPU test skipped: {reason}"
