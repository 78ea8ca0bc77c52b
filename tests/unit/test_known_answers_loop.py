"""Known answers of the DDIM inpainting step, worked out by hand from the schedule's ᾱ.

One image of 4×4 pixels, one grid spec of 2-pixel cells split into K = 2 sets: the
left half (set 0) and the right half (set 1), so row k = 0 inpaints the left half and
row k = 1 the right half. Every tensor is constant per (row, channel) and ε̂ is an
arbitrary value, not the true noise, chosen so that x̂0 leaves [-1, 1] on some
channels and not on others. The expected values are scalar float64 arithmetic on
DESIGN §1.3's formulas; every implementation (the PyTorch reference, the compiled
kernel through ``drdc_trt.ops``, the torch-free runtime's numpy and compiled kernels,
the Python loop and the C++ refiner) must give them to float32 rounding.

Non-finite values: the x̂0 clip follows ``torch.clamp`` (NaN stays NaN, ±Inf go to
±1) and the image score's maximum follows ``torch.amax`` over the average-pooled map
(a NaN anywhere makes the score NaN, a +Inf window makes it +Inf, a −Inf window is
just the lowest one), so a broken network output shows up in the score instead of
being silently clipped away or turned into a different value.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from drdc_trt.methods.drdc import ops
from drdc_trt.methods.drdc.inpaint import LoopNoise, inpaint_heat
from drdc_trt.schedule import Schedule
from drdc_trt.methods.drdc.refiner import csrc_inpaint_heat
from drdc_trt.methods.drdc import runtime_kernels as K

SCHED = Schedule.linear(1000, 1e-4, 0.02)
T, T_NEXT = 250, 225
X = (0.25, -0.5, 0.75)                                # the image, per channel
XT = (0.3, -0.2)                                      # x_t of rows 0 and 1
EPS = ((2.0, 0.1, -3.0), (-2.5, 0.4, 1.5))           # ε̂ of rows 0 and 1, per channel
RENOISE = 0.7                                         # ε' of the known-region re-noising
LABELS = torch.tensor([[[0, 0, 1, 1]] * 4], dtype=torch.int32)  # J=1: left half set 0, right half set 1
LEFT, RIGHT = (slice(None), slice(0, 2)), (slice(None), slice(2, 4))


def _by_row_channel(values) -> torch.Tensor:
    """N×3×4×4 float32 from per-(row, channel) constants."""
    return torch.tensor(values, dtype=torch.float32).view(2, 3, 1, 1).expand(2, 3, 4, 4).contiguous()


def _coeffs(t: int) -> tuple[float, float]:
    ab = 1.0 if t < 0 else float(np.prod([1 - b for b in np.linspace(1e-4, 0.02, 1000)[: t + 1]]))
    return math.sqrt(ab), math.sqrt(1 - ab)


def _x0(xt: float, eps: float, t: int, clip: bool) -> float:
    a, s = _coeffs(t)
    v = (xt - s * eps) / a
    return min(max(v, -1.0), 1.0) if clip else v


def _expected_step(clip: bool, pool_terms: int):
    """(xt_next N×3×4×4, heat 1×4×4) of one step T → T_NEXT, scalar by scalar."""
    an, sn = _coeffs(T_NEXT)
    xt_next = torch.empty(2, 3, 4, 4, dtype=torch.float64)
    heat = torch.empty(1, 4, 4, dtype=torch.float64)
    for k, (unknown, known) in enumerate(((LEFT, RIGHT), (RIGHT, LEFT))):
        x0 = [_x0(XT[k], EPS[k][c], T, clip) for c in range(3)]
        for c in range(3):
            xt_next[k, c][unknown] = an * x0[c] + sn * EPS[k][c]   # DDIM update of the inpainted cells
            xt_next[k, c][known] = an * X[c] + sn * RENOISE          # the input, re-noised to T_NEXT
        # the pixels row k inpaints get ‖x − x̂0‖ once per pool factor (constant 2×2 blocks pool to themselves)
        heat[0][unknown] = pool_terms * math.sqrt(sum((X[c] - x0[c]) ** 2 for c in range(3)))
    return xt_next, heat


def _step_inputs():
    x = torch.tensor(X, dtype=torch.float32).view(1, 3, 1, 1).expand(1, 3, 4, 4).contiguous()
    xt = torch.tensor(XT, dtype=torch.float32).view(2, 1, 1, 1).expand(2, 3, 4, 4).contiguous()
    cond = torch.full((2, 3, 4, 4), -0.9)
    return x, xt, _by_row_channel(EPS), torch.full((2, 3, 4, 4), RENOISE), torch.cat([xt, cond], 1)


def _run_step(impl: str, x, xt, eps, noise, unet_in, heat, clip, pool):
    (a, s), (an, sn) = SCHED.coefficients(T), SCHED.coefficients(T_NEXT)
    if impl in ("torch", "csrc"):
        out = ops.step(x, LABELS, 2, xt, eps, noise, unet_in.clone(), heat.clone(), a, s, an, sn, pool, clip,
                       impl=impl)
        return tuple(o.numpy() for o in out)
    k = K.NumpyKernels() if impl == "runtime-numpy" else K.CsrcKernels()
    arrs = [np.ascontiguousarray(t.numpy()) for t in (x, LABELS, xt, eps, noise, unet_in, heat)]
    arrs[5], arrs[6] = arrs[5].copy(), arrs[6].copy()  # the compiled kernel updates these in place
    return k.step(arrs[0], arrs[1], 2, arrs[2], arrs[3], arrs[4], arrs[5], arrs[6], a, s, an, sn, list(pool), clip)


IMPLS = ["torch", "csrc", "runtime-numpy", "runtime-csrc"]


def test_hand_case_exercises_the_clip():
    """The chosen ε̂ sends x̂0 past ±1 on four channels and keeps it inside on two."""
    raw = [(XT[k] - _coeffs(T)[1] * EPS[k][c]) / _coeffs(T)[0] for k in range(2) for c in range(3)]
    assert sum(abs(v) > 1 for v in raw) == 4 and sum(abs(v) < 1 for v in raw) == 2
    # the schedule's own ᾱ is the product written out above
    assert SCHED.coefficients(T) == pytest.approx(_coeffs(T), abs=1e-14)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("clip", [True, False], ids=["clip", "noclip"])
@pytest.mark.parametrize("pool", [(1,), (1, 2)], ids=["pool1", "pool12"])
def test_one_ddim_step_by_hand(impl, clip, pool):
    x, xt, eps, noise, unet_in = _step_inputs()
    heat0 = torch.full((1, 4, 4), 0.5)  # the step adds to the running sum
    xt_next, unet_out, heat = _run_step(impl, x, xt, eps, noise, unet_in, heat0, clip, pool)
    exp_xt, exp_heat = _expected_step(clip, len(pool))
    np.testing.assert_allclose(xt_next, exp_xt.numpy(), rtol=0, atol=2e-6)
    np.testing.assert_allclose(heat, 0.5 + exp_heat.numpy(), rtol=0, atol=4e-6)
    np.testing.assert_array_equal(unet_out[:, :3], xt_next)               # the next network input …
    np.testing.assert_array_equal(unet_out[:, 3:], unet_in[:, 3:].numpy())  # … with the condition kept


@pytest.mark.parametrize("loop", ["python", "refiner"])
@pytest.mark.parametrize("clip", [True, False], ids=["clip", "noclip"])
def test_one_step_loop_by_hand(loop, clip):
    """The whole loop with one step from t0 = T: prepare (condition filled with noise, taken
    forward to T) then the last step, which goes to the clean end (ᾱ = 1): the inpainted cells
    become x̂0, the known cells the input itself."""
    x = torch.tensor(X, dtype=torch.float32).view(1, 3, 1, 1).expand(1, 3, 4, 4).contiguous()
    fill, start = -0.1, -0.4
    noise = LoopNoise(torch.full((2, 3, 4, 4), fill), torch.full((2, 3, 4, 4), start),
                      torch.full((1, 2, 3, 4, 4), 9.0))  # re-noising of the last step: multiplied by √(1−1) = 0
    eps = _by_row_channel(EPS)
    seen = []

    def eps_fn(unet_in, t):
        seen.append((unet_in.clone(), t.clone()))
        return eps

    run = inpaint_heat if loop == "python" else csrc_inpaint_heat
    res = run(x, LABELS, 2, eps_fn, SCHED, T, 1, noise, (1,), clip)
    a, s = _coeffs(T)
    exp_xt = torch.empty(2, 3, 4, 4, dtype=torch.float64)
    exp_heat = torch.empty(1, 4, 4, dtype=torch.float64)
    for k, (unknown, known) in enumerate(((LEFT, RIGHT), (RIGHT, LEFT))):
        xt_unknown = a * fill + s * start  # x_T of a cell filled with noise
        x0 = [_x0(xt_unknown, EPS[k][c], T, clip) for c in range(3)]
        for c in range(3):
            exp_xt[k, c][unknown] = x0[c]
            exp_xt[k, c][known] = X[c]
        exp_heat[0][unknown] = math.sqrt(sum((X[c] - x0[c]) ** 2 for c in range(3)))
    (inp, t), = seen
    assert t.tolist() == [float(T)] * 2
    torch.testing.assert_close(inp[:, 3:][0][(slice(None), *LEFT)], torch.full((3, 4, 2), fill))  # condition
    torch.testing.assert_close(inp[:, 3:][0, :, :, 2:], x[0, :, :, 2:])
    torch.testing.assert_close(inp[:, :3][0, 0][LEFT], torch.full((4, 2), a * fill + s * start), rtol=0, atol=1e-6)
    torch.testing.assert_close(res.xt.double(), exp_xt, rtol=0, atol=2e-6)
    torch.testing.assert_close(res.heat.double(), exp_heat, rtol=0, atol=4e-6)
    assert res.count == 1


# --------------------------------------------------------------------------- non-finite values
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # numpy on NaN/Inf: expected
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("clip", [True, False], ids=["clip", "noclip"])
def test_step_with_nan_and_inf_in_eps_follows_torch(impl, clip):
    """ε̂ = +Inf, −Inf, NaN on row 0's three channels, in the cells that row inpaints. With the
    clip, x̂0 = (x_t − s·ε̂)/a is −Inf → −1, +Inf → +1, NaN → NaN (torch.clamp); without, ∓Inf
    and NaN pass through. The DDIM update a'·x̂0 + s'·ε̂ is then ±Inf, NaN; the heat of those
    pixels is NaN (one channel's x̂0 is NaN). Unclipped, a'·(∓Inf) + s'·(±Inf) is NaN."""
    x, xt, eps, noise, unet_in = _step_inputs()
    bad = torch.tensor([math.inf, -math.inf, math.nan])
    eps[0][(slice(None), *LEFT)] = bad.view(3, 1, 1)
    xt_next, _, heat = _run_step(impl, x, xt, eps, noise, unet_in, torch.zeros(1, 4, 4), clip, (1,))
    (a, s), (an, sn) = SCHED.coefficients(T), SCHED.coefficients(T_NEXT)
    x0 = (torch.tensor(XT[0]) - s * bad) / a  # torch's own semantics, written out
    x0 = torch.clamp(x0, -1, 1) if clip else x0
    assert (x0[:2].tolist() == ([-1.0, 1.0] if clip else [-math.inf, math.inf])) and math.isnan(x0[2])
    exp = an * x0 + sn * bad  # clipped: +Inf, −Inf, NaN; unclipped: Inf − Inf = NaN on every channel
    assert (exp[:2].tolist() == [math.inf, -math.inf]) if clip else bool(exp.isnan().all())
    left = xt_next[0][(slice(None), *LEFT)]
    np.testing.assert_array_equal(left, exp.view(3, 1, 1).expand(3, 4, 2).numpy())  # NaN == NaN here
    # everything else is the finite hand answer of test_one_ddim_step_by_hand
    exp_xt, exp_heat = _expected_step(clip, 1)
    right = (slice(None), *RIGHT)
    np.testing.assert_allclose(xt_next[0][right], exp_xt[0][right].numpy(), atol=2e-6)
    np.testing.assert_allclose(xt_next[1], exp_xt[1].numpy(), atol=2e-6)
    assert np.isnan(heat[0][LEFT]).all()  # NaN in one channel: the norm is NaN
    np.testing.assert_allclose(heat[0][RIGHT], exp_heat[0][RIGHT].numpy(), atol=4e-6)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("clip", [True, False], ids=["clip", "noclip"])
def test_nan_and_inf_in_known_cells_do_not_leak(impl, clip):
    """ε̂ = +Inf, −Inf, NaN in the cells row 0 keeps (re-noises from the input): there x_t' is
    the forward process of the input, which ε̂ does not enter, and those cells add no heat; so
    the whole step equals the finite hand answer (a blend M·a + (1−M)·b would give 0·Inf = NaN)."""
    x, xt, eps, noise, unet_in = _step_inputs()
    eps[0][(slice(None), *RIGHT)] = torch.tensor([math.inf, -math.inf, math.nan]).view(3, 1, 1)
    with np.errstate(invalid="ignore"):  # the unused DDIM update of those cells is Inf − Inf
        xt_next, _, heat = _run_step(impl, x, xt, eps, noise, unet_in, torch.zeros(1, 4, 4), clip, (1,))
    exp_xt, exp_heat = _expected_step(clip, 1)
    np.testing.assert_allclose(xt_next, exp_xt.numpy(), atol=2e-6)
    np.testing.assert_allclose(heat, exp_heat.numpy(), atol=4e-6)


def _score_case(value: float):
    """A 6×6 map of known values with one pixel set to ``value``; score window 2."""
    heat = torch.arange(36, dtype=torch.float32).view(1, 6, 6) / 10
    heat[0, 1, 1] = value  # the window slides past it on its row
    return heat


def _fuse(impl: str, heat: torch.Tensor):
    base = torch.zeros(1, 2, 2)
    if impl in ("torch", "csrc"):
        return [o.numpy() for o in ops.fuse(heat, 1, base, 1, (0.0, 1.0, 0.0, 1.0), 1.0, 2, impl=impl)]
    k = K.NumpyKernels() if impl == "runtime-numpy" else K.CsrcKernels()
    return k.fuse(heat.numpy().copy(), 1, base.numpy(), 1, (0.0, 1.0, 0.0, 1.0), 1.0, 2)


def _expected_score(value: float) -> float:
    """torch.amax over the 2×2 window means (avg_pool2d), i.e. what the score is defined as."""
    pooled = torch.nn.functional.avg_pool2d(_score_case(value).unsqueeze(1), 2, stride=1)
    return float(torch.amax(pooled))


SCORE_CASES = [pytest.param(impl, v, id=f"{impl}-{name}")
               for impl in IMPLS for v, name in ((math.nan, "nan"), (math.inf, "inf"), (-math.inf, "-inf"))]


@pytest.mark.parametrize("impl,value", SCORE_CASES)
def test_image_score_with_nan_and_inf_follows_torch_amax(impl, value):
    heat = _score_case(value)
    final, *_, score = _fuse(impl, heat)
    expected = _expected_score(value)
    # hand: NaN anywhere → NaN; +Inf → +Inf; −Inf only lowers its own windows, the best is the
    # bottom-right 2×2 block (2.8 + 2.9 + 3.4 + 3.5) / 4
    if math.isnan(value):
        assert math.isnan(expected)
    else:
        assert expected == (math.inf if value > 0 else pytest.approx(3.15, rel=1e-6))
    np.testing.assert_array_equal(final, heat.numpy())  # λ = 1, μ = 0, σ = 1: the map itself
    if math.isnan(expected):
        assert math.isnan(float(score[0]))
    else:
        assert float(score[0]) == pytest.approx(expected, rel=1e-6)
