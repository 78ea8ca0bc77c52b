"""A model with the border margin and a contrast-normalised heat, exported: the U-Net graph
runs at the loop size, and the torch-free runtime (numpy and compiled kernels, the C++
refiner included) computes what the PyTorch Detector computes."""

import numpy as np
import pytest
import torch

from drdc_trt.backends.torch_backend import TorchRunner
from drdc_trt.loading import load_checkpoint
from drdc_trt.export.exporter import export_bundle
from drdc_trt.export.numerics import sample_images
from drdc_trt.methods.drdc.pipeline import Detector
from drdc_trt.methods.drdc.runtime import BundleDetector

ATOL = RTOL = 1e-4


@pytest.fixture(scope="module")
def model(tiny_checkpoint):
    m = load_checkpoint(tiny_checkpoint)
    m.cfg = m.cfg.replace(**{"diffusion.margin": 4, "fusion.heat_norm": "local_std"})
    torch.manual_seed(0)
    with torch.no_grad():  # a U-Net that is far from the zero-initialised no-op
        for p in m.unet.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m


@pytest.fixture(scope="module")
def bundle_dir(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("margin_bundle") / "bundle"
    export_bundle(model, out, max_batch=2, check_batches=(1,))
    return out


def test_unet_graph_runs_at_the_loop_size(bundle_dir, model):
    bd = BundleDetector(bundle_dir, backend="onnxruntime", kernels="numpy")
    assert bd.loop_size == 40 and bd.labels.shape == (2, 40, 40)
    assert tuple(bd.bundle.inputs("unet")[0].shape[2:]) == (40, 40)


@pytest.mark.parametrize("kernels", ["numpy", "csrc"])
def test_runtime_agrees_with_the_detector(bundle_dir, model, kernels):
    images = sample_images(32, 2, seed=4)
    ref = Detector(model.cfg, TorchRunner(model), model.stats, seed=0).predict(images, batch_size=2)
    got = BundleDetector(bundle_dir, backend="onnxruntime", kernels=kernels).predict(images.numpy(), batch_size=2)
    for f in ("anomaly_map", "diff_map", "pred_score"):
        r, g = getattr(ref, f).numpy().astype(np.float64), getattr(got, f).astype(np.float64)
        err = float(np.abs(r - g).max())
        assert err <= ATOL + RTOL * float(np.abs(r).max()), f"{kernels}: {f} max abs error {err:.3g}"
    # the margin changes the map: the comparison is not between two plain runs
    plain = Detector(model.cfg.replace(**{"diffusion.margin": 0}), TorchRunner(model), model.stats, seed=0)
    assert float((plain.predict(images, batch_size=2).diff_map - ref.diff_map).abs().max()) > 1e-3
