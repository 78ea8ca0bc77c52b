"""DiffusionAD's norm-guided combination as a fused op: the compiled CPU kernel, its PyTorch
reference, the model's own reconstruction and the numpy transcription of the torch-free runtime,
each within the float32 bound of the exact value (drdc_trt.float_bounds: differently written float32
code rounds differently on different CPUs, so no two of them are promised the same bits), the
closed form, and refused arguments naming the culprit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from drdc_trt.methods.diffusionad import ops
from drdc_trt.schedule import Schedule
from drdc_trt.float_bounds import Bound
from drdc_trt.methods.diffusionad.norm_guided import closed_form
from drdc_trt.schedule import predict_x0

AB = Schedule.linear().alphas_cumprod


def operands(shape=(2, 3, 8, 8), seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return tuple((torch.randn(shape, generator=g) * scale).contiguous() for _ in range(4))


def exact_norm_guided(x_a, e_a, x_b, e_b, ab_a: float, ab_b: float, w: float, clamp: bool) -> tuple[Bound, Bound]:
    """(x0_g, x0_b) exactly, with the float32 bound of the kernel's and the reference's op tree:
    x0_b = (x_b − √(1−ᾱ_b)·e_b)/√ᾱ_b; x̃_a = √ᾱ_a·x0_b + √(1−ᾱ_a)·e_a;
    ê = e_a − (w·√(1−ᾱ_a))·(x̃_a − x_a); x0_g = (x_a − √(1−ᾱ_a)·ê)/√ᾱ_a (clamps to [−1, 1])."""
    xa, ea, xb, eb = (Bound.exact(v) for v in (x_a, e_a, x_b, e_b))
    a, b = Bound.exact(np.float32(ab_a)), Bound.exact(np.float32(ab_b))
    sa, sma, sb, smb = a.sqrt(), (1 - a).sqrt(), b.sqrt(), (1 - b).sqrt()
    x0_b = (xb - smb * eb) / sb
    if clamp:
        x0_b = x0_b.clamp(-1, 1)
    e_hat = ea - (Bound.f32(w) * sma) * ((sa * x0_b + sma * ea) - xa)
    x0_g = (xa - sma * e_hat) / sa
    return (x0_g.clamp(-1, 1) if clamp else x0_g), x0_b


@pytest.mark.parametrize("t_a,t_b,w", [(200, 400, 1.0), (50, 700, 0.4), (299, 300, 2.5)])
@pytest.mark.parametrize("clamp", [True, False])
def test_cpu_kernel_and_reference_keep_the_float32_bound(t_a, t_b, w, clamp):
    # scale 2: many x̂0 fall outside [-1, 1], so both clamps act
    x_a, e_a, x_b, e_b = operands((2, 3, 16, 12), seed=t_a, scale=2.0)
    ab_a, ab_b = float(AB[t_a]), float(AB[t_b])
    want_g, want_b = exact_norm_guided(x_a, e_a, x_b, e_b, ab_a, ab_b, w, clamp)
    for impl in ("torch", "csrc"):
        got_g, got_b = ops.norm_guided(x_a, e_a, x_b, e_b, ab_a, ab_b, w, clamp, impl=impl)
        want_g.check(got_g, f"{impl} x0_g")
        want_b.check(got_b, f"{impl} x0_b")
    if clamp:
        assert bool((got_g.abs() == 1).any()) and bool((got_b.abs() == 1).any())  # the clamps were exercised
    # the bound is tight enough to see a coefficient off by 1e-4 or a dropped term
    wrong_w, _ = ops.norm_guided(x_a, e_a, x_b, e_b, ab_a, ab_b, w * (1 + 1e-4), clamp, impl="csrc")
    assert want_g.excess(wrong_w) > 0
    no_guidance, _ = ops.norm_guided(x_a, e_a, x_b, e_b, ab_a, ab_b, 0.0, clamp, impl="csrc")
    assert want_g.excess(no_guidance) > 0


def test_cpu_kernel_is_bit_equal_at_every_thread_count():
    """The same compiled kernel at 1 and 2 threads: the same bits (its work is split by element)."""
    x_a, e_a, x_b, e_b = operands((3, 3, 32, 32), seed=4, scale=2.0)
    old = torch.get_num_threads()
    try:
        got = []
        for n in (1, 2):
            torch.set_num_threads(n)
            got.append(ops.norm_guided(x_a, e_a, x_b, e_b, float(AB[50]), float(AB[700]), 0.4, impl="csrc"))
    finally:
        torch.set_num_threads(old)
    assert torch.equal(got[0][0], got[1][0]) and torch.equal(got[0][1], got[1][1])


def test_cpu_kernel_is_the_closed_form_without_clamps():
    x_a, e_a, x_b, e_b = (t.double() for t in operands(seed=3))
    ab_a, ab_b = float(AB[200]), float(AB[400])
    got, got_b = ops.norm_guided(*(t.float() for t in (x_a, e_a, x_b, e_b)), ab_a, ab_b, 1.0, False, impl="csrc")
    # independent float64 computation: (1 − λ)·x̂0(x_a, e_a) + λ·x̂0(x_b, e_b), λ = 1 − ᾱ_a ≈ 0.344
    x0_a = (x_a - (1 - ab_a) ** 0.5 * e_a) / ab_a ** 0.5
    x0_b = (x_b - (1 - ab_b) ** 0.5 * e_b) / ab_b ** 0.5
    lam = 1 - ab_a
    assert lam == pytest.approx(0.344, abs=5e-4)
    torch.testing.assert_close(got.double(), (1 - lam) * x0_a + lam * x0_b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_b.double(), x0_b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got.double(), closed_form(predict_x0(x_a, ab_a, e_a), x0_b, ab_a), rtol=1e-5,
                               atol=1e-5)


def test_hand_case_clamps():
    # ᾱ_a = ᾱ_b = 1/4: √ᾱ = 1/2, √(1−ᾱ) = √3/2. e = 0 everywhere: x0_b = 2·x_b (clamped),
    # ê = −w·(√3/2)·(x0_b/2 − x_a), x0_g = 2·(x_a − (√3/2)·ê) (clamped).
    x_a = torch.tensor([0.1, 0.9, -0.2, 0.45], dtype=torch.float32)
    x_b = torch.tensor([0.2, 0.8, -0.1, 0.3], dtype=torch.float32)
    zero = torch.zeros(4)
    got_g, got_b = ops.norm_guided(x_a, zero, x_b, zero, 0.25, 0.25, 1.0, True, impl="csrc")
    x0_b = np.clip(2 * x_b.double().numpy(), -1, 1)
    e_hat = -(3 ** 0.5 / 2) * (x0_b / 2 - x_a.double().numpy())
    x0_g = np.clip(2 * (x_a.double().numpy() - 3 ** 0.5 / 2 * e_hat), -1, 1)
    np.testing.assert_allclose(got_b.numpy(), x0_b, atol=1e-6)
    np.testing.assert_allclose(got_g.numpy(), x0_g, atol=1e-6)
    # x0_g = x_a/2 + ¾·x0_b here: index 1 has x0_b = min(1.6, 1) = 1 and x0_g = min(0.45 + 0.75, 1) = 1
    assert got_b[1] == 1 and got_g[1] == 1 and got_g[3] == pytest.approx(0.225 + 0.45, abs=1e-6)


def test_model_reconstruction_and_the_fused_op_keep_the_bound():
    """The detector's per-image ᾱ path (torch ops) and the kernel's one-ᾱ call: both within the
    float32 bound of the exact value."""
    from drdc_trt.config import preset
    from drdc_trt.methods.diffusionad.model import DiffusionADModel

    torch.manual_seed(0)
    model = DiffusionADModel(preset("tiny", "diffusionad")).eval()
    s, a = model.cfg.image_size, model.cfg.diffusionad
    g = torch.Generator().manual_seed(5)
    x = torch.rand(2, 3, s, s, generator=g) * 2 - 1
    n_a, n_b = torch.randn(2, 3, s, s, generator=g), torch.randn(2, 3, s, s, generator=g)
    t_a, t_b = torch.full((2,), a.t_a), torch.full((2,), a.t_b)
    with torch.no_grad():
        want = model.reconstruct(x, t_a, t_b, n_a, n_b)
        x_a, e_a, x_b, e_b = (v.contiguous() for v in model.two_scales(x, t_a, t_b, n_a, n_b))
    ab_a, ab_b = float(model.alphas_cumprod[a.t_a]), float(model.alphas_cumprod[a.t_b])
    got, _ = ops.norm_guided(x_a, e_a, x_b, e_b, ab_a, ab_b, a.w, impl="csrc")
    exact, _ = exact_norm_guided(x_a, e_a, x_b, e_b, ab_a, ab_b, a.w, True)
    exact.check(got, "kernel")
    exact.check(want, "model.reconstruct")


def test_numpy_transcription_keeps_the_bound():
    from drdc_trt.methods.diffusionad.runtime import numpy_norm_guided

    x_a, e_a, x_b, e_b = operands((1, 3, 8, 8), seed=9, scale=2.0)
    ab_a, ab_b = float(AB[200]), float(AB[400])
    got = numpy_norm_guided(*(t.numpy() for t in (x_a, e_a, x_b, e_b)), ab_a, ab_b, 0.7, True)
    assert got.dtype == np.float32
    exact, _ = exact_norm_guided(x_a, e_a, x_b, e_b, ab_a, ab_b, 0.7, True)
    exact.check(got, "numpy")


@pytest.mark.parametrize("change,exc,match", [
    (lambda o: {**o, "e_b": o["e_b"][:, :2]}, ValueError, r"e_b: shape"),
    (lambda o: {**o, "e_a": o["e_a"].double()}, TypeError, r"e_a: dtype"),
    (lambda o: {**o, "x_b": o["x_b"].transpose(2, 3)}, ValueError, r"x_b: must be contiguous"),
    (lambda o: {**o, "ab_a": 0.0}, ValueError, r"ab_a .* \(0, 1\]"),
    (lambda o: {**o, "ab_b": 1.5}, ValueError, r"ab_b .* \(0, 1\]"),
    (lambda o: {**o, "ab_a": float("nan")}, ValueError, r"ab_a"),
    (lambda o: {**o, "w": float("inf")}, ValueError, r"w must be finite"),
    (lambda o: {**o, "ab_a": torch.tensor([0.5, 0.5])}, TypeError, r"ab_a: expected a number"),
    (lambda o: {**o, "x_a": o["x_a"][:0], "e_a": o["e_a"][:0], "x_b": o["x_b"][:0], "e_b": o["e_b"][:0]},
     ValueError, r"x_a: empty"),
])
def test_bad_arguments_are_refused_by_name(change, exc, match):
    x_a, e_a, x_b, e_b = operands(seed=1)
    args = change({"x_a": x_a, "e_a": e_a, "x_b": x_b, "e_b": e_b, "ab_a": 0.5, "ab_b": 0.25, "w": 1.0})
    with pytest.raises(exc, match=match):
        ops.norm_guided(**args, impl="csrc")


def test_compiled_entry_point_checks_its_own_arguments():
    """A C++ host calls drdc::norm_guided without the Python checks: the core refuses by name."""
    from drdc_trt import _C

    x = np.zeros(4, np.float32)
    out = np.empty(4, np.float32)
    p = int(x.ctypes.data)
    with pytest.raises(ValueError, match="e_b is a null pointer"):
        _C.norm_guided(device="cpu", x_a=p, e_a=p, x_b=p, e_b=0, x0_g=int(out.ctypes.data), count=4, ab_a=0.5,
                       ab_b=0.5)
    with pytest.raises(ValueError, match="count must be >= 1"):
        _C.norm_guided(device="cpu", x_a=p, e_a=p, x_b=p, e_b=p, x0_g=int(out.ctypes.data), count=0, ab_a=0.5,
                       ab_b=0.5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the CUDA kernel is compiled, not run, "
                                                          "on a machine without one)")
def test_cuda_kernel_matches_the_cpu_kernel():
    x_a, e_a, x_b, e_b = operands((2, 3, 32, 32), seed=4, scale=2.0)
    ab_a, ab_b = float(AB[200]), float(AB[400])
    cpu = ops.norm_guided(x_a, e_a, x_b, e_b, ab_a, ab_b, 1.0, impl="csrc")
    gpu = ops.norm_guided(*(t.cuda() for t in (x_a, e_a, x_b, e_b)), ab_a, ab_b, 1.0, impl="csrc")
    torch.cuda.synchronize()
    for c, g in zip(cpu, gpu):
        assert torch.equal(c, g.cpu())  # both round every op on its own (kernel_math.h)
