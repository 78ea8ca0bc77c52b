"""The torch-free runtime's pieces against the PyTorch definitions they copy.

Labels and the schedule must be identical (integer / float64 math); the numpy
kernels must match ``drdc_trt.ops.reference_*`` to float32 rounding (atol 2e-6
on values of order 1: the two differ only in summation order); the compiled
``_C`` kernels on numpy buffers must match the numpy ones likewise.
"""

import numpy as np
import pytest
import torch

from drdc_trt.methods.drdc import ops
from drdc_trt.schedule import Schedule, ddim_timesteps
from drdc_trt.methods.drdc.masks import grid_labels
from drdc_trt.methods.drdc import runtime_kernels as K
from drdc_trt.methods.drdc.gridsets import grid_labels as np_grid_labels
from drdc_trt.runtime.schedule import alphas_cumprod, coefficients
from drdc_trt.runtime.schedule import ddim_timesteps as np_ddim_timesteps

ATOL = 2e-6


def test_labels_known_answer():
    from drdc_trt.methods.drdc.gridsets import cell_sets, splitmix64

    # SplitMix64's published first output for seed 0
    assert splitmix64(0) == (0x9E3779B97F4A7C15, 0xE220A8397B1DCDAF)
    assert cell_sets(8, 3, 42) == [2, 1, 0, 0, 1, 1, 2, 0]
    assert np_grid_labels(4, (2,), 2, 0)[0].tolist() == [[1, 1, 0, 0]] * 4


def test_schedule_and_timesteps_are_identical():
    s = Schedule.linear(1000, 1e-4, 0.02)
    ab = alphas_cumprod(1000, 1e-4, 0.02)
    np.testing.assert_array_equal(ab, s.alphas_cumprod)
    for t in (-1, 0, 83, 250, 999):
        assert coefficients(ab, t) == s.coefficients(t)
    assert np_ddim_timesteps(250, 3) == ddim_timesteps(250, 3) == [250, 166, 83]


def _case(seed=0, b=2, size=16, grids=(4, 8), sets=2):
    g = torch.Generator().manual_seed(seed)
    labels = grid_labels(size, grids, sets, seed)
    n = b * len(grids) * sets
    x = torch.rand(b, 3, size, size, generator=g) * 2 - 1
    noise = [torch.randn(n, 3, size, size, generator=g) for _ in range(3)]
    eps = torch.randn(n, 3, size, size, generator=g)
    return x, labels, sets, noise, eps


def _np(t):
    return np.ascontiguousarray(t.numpy())


@pytest.mark.parametrize("kernels", ["numpy", "csrc"])
def test_prepare_step_fuse_match_the_torch_reference(kernels):
    k = K.make_kernels(kernels)  # "csrc" raises when _C lacks its CPU kernels: a failure, not a skip
    x, labels, sets, (fill, eps0, renoise), eps = _case()
    s = Schedule.linear()
    a, b_ = s.coefficients(250)
    an, bn = s.coefficients(166)
    xt_r, in_r = ops.reference_prepare(x, labels, sets, fill, eps0, a, b_)
    xt_n, in_n = k.prepare(_np(x), _np(labels), sets, _np(fill), _np(eps0), a, b_)
    np.testing.assert_allclose(xt_n, xt_r.numpy(), atol=ATOL, rtol=0)
    np.testing.assert_allclose(in_n, in_r.numpy(), atol=ATOL, rtol=0)

    heat_r = torch.full((2, 16, 16), 0.25)
    xt2_r, in2_r, heat2_r = ops.reference_step(x, labels, sets, xt_r, eps, renoise, in_r, heat_r.clone(),
                                               a, b_, an, bn, (1, 2))
    xt2_n, in2_n, heat2_n = k.step(_np(x), _np(labels), sets, xt_n, _np(eps), _np(renoise), in_n,
                                   np.full((2, 16, 16), 0.25, np.float32), a, b_, an, bn, [1, 2])
    np.testing.assert_allclose(xt2_n, xt2_r.numpy(), atol=ATOL, rtol=0)
    np.testing.assert_allclose(in2_n, in2_r.numpy(), atol=ATOL, rtol=0)
    np.testing.assert_allclose(heat2_n, heat2_r.numpy(), atol=4 * ATOL, rtol=0)
    assert float(heat2_r.max()) > 1.0  # a real heat term was added

    base = torch.rand(2, 2, 3) * 4  # non-square base map: exercises both interpolation axes
    stats = (0.7, 0.3, 1.5, 0.8)
    ref = ops.reference_fuse(heat2_r, 6, base, 3, stats, 0.9, 4)
    got = k.fuse(heat2_n, 6, _np(base), 3, stats, 0.9, 4)
    for r, g, name in zip(ref, got, ("final", "diff_map", "base_up", "score")):
        np.testing.assert_allclose(g, r.numpy(), atol=10 * ATOL, rtol=1e-6, err_msg=name)


def test_fuse_pieces_known_answers():
    # mean filter with excluded padding: a corner averages its 2×2 valid neighbours
    m = np.arange(9, dtype=np.float32).reshape(1, 3, 3)
    f = K.mean_filter(m, 3)
    assert f[0, 0, 0] == pytest.approx((0 + 1 + 3 + 4) / 4) and f[0, 1, 1] == pytest.approx(4.0)
    # bilinear 1×2 → 2×4, align_corners=False (PyTorch: [0, .25, .75, 1] of the way)
    up = K.upsample_base(np.array([[[0.0, 4.0]]], np.float32), 4)[0]
    np.testing.assert_allclose(up[0], [0.0, 1.0, 3.0, 4.0])
    np.testing.assert_allclose(up, torch.nn.functional.interpolate(torch.tensor([[[[0.0, 4.0]]]]), size=(4, 4),
                                                                   mode="bilinear", align_corners=False)[0, 0].numpy())
    # image score: max of the 2×2 average pool
    assert K.image_score(m, 2)[0] == pytest.approx((4 + 5 + 7 + 8) / 4)


def test_auto_kernels_are_the_compiled_ones():
    """A CPU build of _C always has the CPU kernels: "auto" must not fall back to numpy."""
    assert K.csrc_available()
    assert isinstance(K.make_kernels("auto"), K.CsrcKernels)


def test_csrc_kernels_check_their_arguments():
    k = K.CsrcKernels()  # raises when _C lacks its CPU kernels: a failure, not a skip
    x = np.zeros((1, 3, 16, 16), np.float32)
    labels = np_grid_labels(16, (4, 8), 2)
    noise = np.zeros((4, 3, 16, 16), np.float32)
    with pytest.raises(TypeError, match="labels: dtype int64"):
        k.prepare(x, labels.astype(np.int64), 2, noise, noise, 1.0, 0.0)
    with pytest.raises(ValueError, match=r"fill_noise: shape \(3, 3, 16, 16\), expected \(4, 3, 16, 16\)"):
        k.prepare(x, labels, 2, noise[:3], noise, 1.0, 0.0)
    with pytest.raises(ValueError, match="eps0: must be C-contiguous"):
        k.prepare(x, labels, 2, noise, np.asfortranarray(noise), 1.0, 0.0)


def test_runtime_modules_import_no_torch(tmp_path):
    import subprocess
    import sys

    code = ("import sys\n"
            "class B:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'torch' or name.startswith('torch.'): raise ImportError('blocked')\n"
            "sys.meta_path.insert(0, B())\n"
            "import drdc_trt.runtime, drdc_trt.methods.drdc.runtime_kernels, drdc_trt.methods.drdc.runtime, drdc_trt.methods.glad.runtime, drdc_trt.methods.diffusionad.runtime, drdc_trt.backends, drdc_trt.backends.onnxruntime_backend\n"
            "import drdc_trt.backends.tensorrt_backend, drdc_trt.export, drdc_trt.export.tensorrt_build\n"
            "assert 'torch' not in sys.modules\n"
            "print('ok')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=tmp_path)  # not the checkout: the installed package
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
