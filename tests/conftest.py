"""Shared fixtures: small generated datasets and a trained tiny checkpoint (built once per session)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch


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
    from drdc_trt.models.diffusionad import DiffusionADModel, DiffusionADStats

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
