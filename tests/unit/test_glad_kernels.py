"""GLAD's per-row step as fused ops (drdc_trt.ops.glad_predict / glad_update): hand-computed known
answers; the compiled CPU kernels, the torch-free runtime's numpy transcription and the PyTorch
definitions over mixed row states (NaN scores included): the same decisions and integer fields, the
floats each within the float32 bound of the exact value (drdc_trt.float_bounds: the three are
differently written float32 code, so no bits are promised between them on every CPU); finished rows
left bit-identical in the whole loop (the same code); the real tiny GLAD U-Net through both
implementations; refused arguments naming the culprit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from drdc_trt.methods.glad import ops
from drdc_trt.config import preset
from drdc_trt.schedule import Schedule, ddim_timesteps
from drdc_trt.float_bounds import Bound
from drdc_trt.methods.glad.detector import GLADDetector
from drdc_trt.methods.glad.model import GLADModel, GLADStats
from drdc_trt.methods.glad.adaptive import FALLBACK, NONE, TRIGGERED, RowState, adaptive_loop
from drdc_trt.methods.glad.runtime_kernels import CsrcGladKernels, GladRows, NumpyGladKernels, make_glad_kernels

from drdc_trt import _C  # noqa: F401  (a required part of the package: missing is a failure, not a skip)

AB = torch.from_numpy(Schedule.linear().alphas_cumprod).float()
FIELDS = ("x_t", "recon", "done", "triggered", "steps", "trigger_step", "trigger_kind", "max_score")
IMPLS = ("torch", "csrc", "numpy")
FALLBACKS = ("continue", "stop")


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit-equal, except that any NaN equals any NaN (torch.maximum's scalar and vector paths
    return different NaN payloads; what matters is where the NaNs are)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if not a.is_floating_point():
        return torch.equal(a, b)
    na, nb = a.isnan(), b.isnan()
    if not torch.equal(na, nb):
        return False
    return torch.equal(a.masked_fill(na, 0).view(torch.int32), b.masked_fill(nb, 0).view(torch.int32))


# Whole loops through two implementations: each step's floats keep the float32 bound of the exact
# step (a few u of |x_t| ≤ 4 here, the tests of predict and update below), and the steps compose
# through the ε̂ stub, whose slope is at most 1.5, over at most 10 steps: the differences stay below
# 1e-5 + 1e-5·|value| (measured 0 on an AMD EPYC, 2026-12-07). Decisions and integer fields must be equal: the
# thresholds sit far from every score (asserted where they are chosen).
LOOP_ATOL = LOOP_RTOL = 1e-5


def agree(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Integer and bool fields equal; floats with NaNs in the same places and within LOOP_ATOL +
    LOOP_RTOL·|b| elsewhere (−inf where the other is −inf)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if not a.is_floating_point():
        return torch.equal(a, b)
    na, nb = a.isnan(), b.isnan()
    if not torch.equal(na, nb) or not torch.equal(a.isinf(), b.isinf()):
        return False
    fin = a.isfinite()
    if not torch.equal(a[a.isinf()], b[b.isinf()]):
        return False
    return bool(((a[fin] - b[fin]).abs() <= LOOP_ATOL + LOOP_RTOL * b[fin].abs()).all())


@pytest.fixture
def impls_used(monkeypatch):
    """The ``impl`` of every ops.glad_predict / glad_update call (proof that a loop ran the kernels asked for)."""
    seen = []
    for name in ("glad_predict", "glad_update"):
        real = getattr(ops, name)

        def spy(*a, _real=real, **kw):
            seen.append(kw.get("impl", "torch"))
            return _real(*a, **kw)

        monkeypatch.setattr(ops, name, spy)
    return seen


def clone_state(st) -> RowState:
    return RowState(*(torch.as_tensor(getattr(st, f)).clone() for f in FIELDS))


def as_rows(st: RowState) -> GladRows:
    return GladRows(*(getattr(st, f).clone().numpy() for f in FIELDS))


def as_state(rows: GladRows) -> RowState:
    return RowState(*(torch.from_numpy(getattr(rows, f).copy()) for f in FIELDS))


def predict(impl, x_t, x, noise, eps, ab, clip=True):
    if impl == "numpy":
        return tuple(torch.from_numpy(v) for v in NumpyGladKernels().predict(
            x_t.numpy(), x.numpy(), noise.numpy(), eps.numpy(), ab, clip))
    return ops.glad_predict(x_t, x, noise, eps, ab, clip, impl=impl)


def update(impl, st, x0_gen, x0_in, eps, w, score, k, t, ab_next, tau, min_step, fallback="continue") -> RowState:
    """One glad_update on a copy of ``st`` by one implementation; the updated state."""
    st = clone_state(st)
    if impl == "numpy":
        rows = as_rows(st)
        NumpyGladKernels().update(rows, x0_gen.numpy(), x0_in.numpy(), eps.numpy(), w.numpy(), score.numpy(), k, t,
                                  ab_next, tau, min_step, fallback)
        return as_state(rows)
    return ops.glad_update(st, x0_gen, x0_in, eps, w, score, k, t, ab_next, tau, min_step, impl=impl,
                           fallback=fallback)


# ----------------------------------------------------------------- known answers
@pytest.mark.parametrize("impl", IMPLS)
def test_predict_hand_case(impl):
    # ᾱ = 0.64: √ᾱ = 0.8, √(1 − ᾱ) = 0.6. x0_gen = (x_t − 0.6·ε)/0.8, x0_in = x + 0.75·(noise − ε)
    x_t = torch.tensor([0.5, 0.5, 2.0, -1.0]).view(1, 1, 2, 2)
    eps = torch.tensor([0.5, -0.5, 0.0, 1.0]).view(1, 1, 2, 2)
    x = torch.tensor([0.2, -0.4, 0.9, 0.0]).view(1, 1, 2, 2)
    noise = torch.tensor([0.5, 0.5, 1.0, -1.0]).view(1, 1, 2, 2)
    gen, inp = predict(impl, x_t, x, noise, eps, 0.64)
    np.testing.assert_allclose(gen.flatten().numpy(), [0.25, 1.0, 1.0, -1.0], atol=1e-6)  # 1.0 (clamped), 2.5 → 1
    np.testing.assert_allclose(inp.flatten().numpy(), [0.2, 0.35, 1.0, -1.0], atol=1e-6)   # 1.65 → 1, −1.5 → −1
    gen, inp = predict(impl, x_t, x, noise, eps, 0.64, clip=False)
    np.testing.assert_allclose(gen.flatten().numpy(), [0.25, 1.0, 2.5, -2.0], atol=1e-6)
    np.testing.assert_allclose(inp.flatten().numpy(), [0.2, 0.35, 1.65, -1.5], atol=1e-6)


@pytest.mark.parametrize("impl", IMPLS)
def test_update_hand_case_trigger_blend_fallback_last_step(impl):
    """Three rows of 1×1×2 pixels through three steps: k = 2 at t = 400 (ᾱ' = 0.64), k = 3 at t = 300
    (< min_step 350, ᾱ' = 0.36), the last step k = 4 (ᾱ' = 1). Row 0 triggers at k = 2, row 1
    falls back at k = 3 and stops there (fallback "stop"), row 2 was done before and is never touched."""
    gen, inp, eps, w, st = hand_rows()
    frozen = clone_state(st)

    st = update(impl, st, gen, inp, eps, w, torch.tensor([0.9, 0.4, 0.99]), 2, 400, 0.64, 0.5, 350, "stop")
    # row 0: x0 = w·gen + (1 − w)·in = (0.2, −0.3); x_t' = 0.8·x0 + 0.6·ε = (0.76, −0.84)
    # row 1: 0.4 ≤ τ and t ≥ min_step: x0 = gen; x_t' = (0.8·0.2 + 0.3, 0.8·0.4 + 0.3) = (0.46, 0.62)
    np.testing.assert_allclose(st.x_t[:2].flatten().numpy(), [0.76, -0.84, 0.46, 0.62], atol=1e-6)
    assert st.triggered.tolist() == [True, False, False] and st.done.tolist() == [False, False, True]
    assert st.trigger_step.tolist() == [2, -1, 1] and st.trigger_kind.tolist() == [TRIGGERED, NONE, TRIGGERED]
    assert st.steps.tolist() == [1, 1, 3]
    np.testing.assert_allclose(st.max_score.numpy(), [0.9, 0.4, 0.8], atol=1e-7)
    assert torch.equal(st.recon[:2], torch.zeros(2, 1, 1, 2))

    # k = 3, t = 300 < 350. Row 0 (triggered) runs plain DDIM with x0 = gen although its score is
    # high; row 1 scores NaN: no trigger, falls back (recon = x0_in, x_t kept, done).
    x_t1 = st.x_t.clone()
    st = update(impl, st, gen, inp, eps, w, torch.tensor([0.95, math.nan, 0.99]), 3, 300, 0.36, 0.5, 350, "stop")
    np.testing.assert_allclose(st.x_t[0].flatten().numpy(), [0.6 * 0.5 + 0.8, 0.6 * -0.5 - 0.8], atol=1e-6)
    assert torch.equal(st.x_t[1], x_t1[1]) and torch.equal(st.recon[1], inp[1])
    assert st.done.tolist() == [False, True, True] and st.trigger_kind.tolist() == [TRIGGERED, FALLBACK, TRIGGERED]
    assert st.trigger_step.tolist() == [2, 3, 1] and st.steps.tolist() == [2, 2, 3]
    assert st.max_score[0] == pytest.approx(0.9) and math.isnan(float(st.max_score[1]))  # NaN propagates

    # the last step: ᾱ' = 1, x_t' = x0 = gen, the reconstruction, and every active row is done
    before = clone_state(st)
    st = update(impl, st, gen, inp, eps, w, torch.tensor([0.1, 0.1, 0.1]), 4, 130, 1.0, 0.5, 350, "stop")
    assert torch.equal(st.x_t[0], gen[0]) and torch.equal(st.recon[0], gen[0])
    assert st.done.all() and st.steps.tolist() == [3, 2, 3]
    for f in FIELDS:  # the rows done before the step: bit-identical, row 2 since the start
        assert same_bits(getattr(st, f)[1:], getattr(before, f)[1:]), f
        assert same_bits(getattr(st, f)[2:], getattr(frozen, f)[2:]), f


def hand_rows():
    """The hand case's operands (the same every step) and its start state: row 2 done before."""
    def px(*v):
        return torch.tensor(v, dtype=torch.float32).view(3, 1, 1, 2)

    gen, inp = px(0.5, -0.5, 0.2, 0.4, 1.0, 0.0), px(0.1, 0.3, -0.2, 0.6, 0.0, 0.5)
    eps, w = px(1.0, -1.0, 0.5, 0.5, 0.0, 2.0), px(0.25, 0.75, 0.5, 0.5, 1.0, 0.0)
    st = RowState.start(torch.full((3, 1, 1, 2), 9.0))
    st.done[2] = True
    st.recon[2] = 7.0
    st.steps[2], st.trigger_step[2], st.trigger_kind[2], st.max_score[2] = 3, 1, TRIGGERED, 0.8
    return gen, inp, eps, w, st


@pytest.mark.parametrize("impl", IMPLS)
def test_update_hand_case_fallback_continues_to_the_end(impl):
    """The authors' fallback (the default): the row that falls back at k = 3 takes x̂0 = x0_in at that
    step, moves on by DDIM, no longer looks for its step, and finishes at the last step with x0_gen."""
    gen, inp, eps, w, st = hand_rows()
    frozen = clone_state(st)
    st = update(impl, st, gen, inp, eps, w, torch.tensor([0.9, 0.4, 0.99]), 2, 400, 0.64, 0.5, 350)
    st = update(impl, st, gen, inp, eps, w, torch.tensor([0.95, math.nan, 0.99]), 3, 300, 0.36, 0.5, 350)
    # row 1 falls back: x0 = x0_in = (−0.2, 0.6); x_t' = √0.36·x0 + √0.64·ε = (−0.12 + 0.4, 0.36 + 0.4)
    np.testing.assert_allclose(st.x_t[1].flatten().numpy(), [0.28, 0.76], atol=1e-6)
    np.testing.assert_allclose(st.x_t[0].flatten().numpy(), [0.6 * 0.5 + 0.8, 0.6 * -0.5 - 0.8], atol=1e-6)
    assert st.done.tolist() == [False, False, True] and st.triggered.tolist() == [True, False, False]
    assert st.trigger_kind.tolist() == [TRIGGERED, FALLBACK, TRIGGERED] and st.trigger_step.tolist() == [2, 3, 1]
    assert st.steps.tolist() == [2, 2, 3] and torch.equal(st.recon[1], torch.zeros(1, 1, 2))
    # the last step: row 1's high score is not read (it no longer looks); x0 = x0_gen for rows 0 and 1
    st = update(impl, st, gen, inp, eps, w, torch.tensor([0.1, 0.99, 0.1]), 4, 130, 1.0, 0.5, 350)
    assert torch.equal(st.x_t[:2], gen[:2]) and torch.equal(st.recon[:2], gen[:2])
    assert st.done.all() and st.steps.tolist() == [3, 3, 3] and not bool(st.triggered[1])
    assert st.trigger_kind.tolist() == [TRIGGERED, FALLBACK, TRIGGERED] and math.isnan(float(st.max_score[1]))
    for f in FIELDS:
        assert same_bits(getattr(st, f)[2:], getattr(frozen, f)[2:]), f


@pytest.mark.parametrize("fallback", FALLBACKS)
@pytest.mark.parametrize("impl", IMPLS)
def test_boundaries_strictly_above_tau_strictly_below_min_step(impl, fallback):
    # torch compares a float32 score with τ rounded to float32: 0.1f > 0.1 is false there (true in double)
    one = torch.zeros(2, 1, 1, 1)
    st = update(impl, RowState.start(one), one, one, one, one, torch.tensor([0.1, 0.2]), 0, 600, 0.5, 0.1, 350)
    assert st.triggered.tolist() == [False, True]
    # the fallback comes at the first step with t < min_step, not at t = min_step
    for t, fall in ((350, False), (349, True)):
        st = update(impl, RowState.start(one), one, one, one, one, torch.tensor([0.0, 0.0]), 0, t, 0.5, 0.1, 350,
                    fallback)
        assert st.trigger_kind.tolist() == [FALLBACK if fall else NONE] * 2
        assert st.done.tolist() == [fall and fallback == "stop"] * 2


# ----------------------------------------------------------------- bit-equality, random mixed states
def random_case(seed: int, b: int = 12, c: int = 3, h: int = 5, w: int = 7):
    g = torch.Generator().manual_seed(seed)

    def r(*s, scale=1.0):
        return (torch.randn(*s, generator=g) * scale).contiguous()

    st = RowState.start(r(b, c, h, w))
    st.recon = r(b, c, h, w)
    st.done = torch.rand(b, generator=g) < 0.3
    st.triggered = (torch.rand(b, generator=g) < 0.3) & ~st.done
    st.steps = torch.randint(0, 5, (b,), generator=g)
    st.trigger_step = torch.where(st.triggered, torch.randint(0, 5, (b,), generator=g), -1)
    st.trigger_kind = torch.where(st.triggered, TRIGGERED, NONE)
    st.max_score = torch.where(torch.rand(b, generator=g) < 0.5, torch.rand(b, generator=g), -math.inf)
    score = torch.rand(b, generator=g)
    score[::5] = math.nan
    # rows 0-5 fixed whatever the seed: done, triggered, checking with a NaN / high / low score, and
    # a row that fell back at an earlier step and goes on (fallback "continue") with a high score
    st.done[:6] = torch.tensor([True, False, False, False, False, False])
    st.triggered[:6] = torch.tensor([False, True, False, False, False, False])
    st.trigger_kind[5], st.trigger_step[5] = FALLBACK, 1
    score[2:6] = torch.tensor([math.nan, 0.9, 0.1, 0.95])
    wgt = torch.rand(b, 1, h, w, generator=g)
    return st, r(b, c, h, w, scale=2.0), r(b, c, h, w).clamp(-1, 1), r(b, c, h, w), r(b, c, h, w), wgt, score


def exact_predict(x_t, x, noise, eps, ab: float, clip: bool) -> tuple[Bound, Bound]:
    """x0_gen = (x_t − √(1−ᾱ)·ε̂)/√ᾱ and x0_in = ((√ᾱ·x + √(1−ᾱ)·ε) − √(1−ᾱ)·ε̂)/√ᾱ, exactly, with
    the float32 bound of their op trees (clamped to [−1, 1] with ``clip``)."""
    a = Bound.exact(np.float32(ab))
    sa, sma = a.sqrt(), (1 - a).sqrt()
    e = Bound.exact(eps)
    gen = (Bound.exact(x_t) - sma * e) / sa
    inp = ((sa * Bound.exact(x) + sma * Bound.exact(noise)) - sma * e) / sa
    return (gen.clamp(-1, 1), inp.clamp(-1, 1)) if clip else (gen, inp)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("clip", [True, False])
def test_predict_keeps_the_float32_bound_in_every_implementation(seed, clip):
    _, x_t, x, noise, eps, _, _ = random_case(seed)
    t = [650, 390, 260, 5][seed]  # t = 260: torch's √ is one ulp off on an AVX-512 CPU
    ab = float(AB[t])
    want = exact_predict(x_t, x, noise, eps, ab, clip)
    ref = predict("torch", x_t, x, noise, eps, ab, clip)
    if clip:
        assert bool((ref[0].abs() == 1).any()) and bool((ref[1].abs() == 1).any())  # the clamps act
    arrays = [v.numpy() for v in (x_t, x, noise, eps)]
    for impl, got in (("torch", ref), ("csrc", predict("csrc", x_t, x, noise, eps, ab, clip)),
                      ("numpy", NumpyGladKernels().predict(*arrays, ab, clip)),
                      ("csrc from numpy", CsrcGladKernels().predict(*arrays, ab, clip))):
        for name, b, g in zip(("x0_gen", "x0_in"), want, got):
            b.check(g, f"{impl} {name}")
    # tight: a coefficient off by 1e-5 leaves the bound
    assert want[1].excess(predict("csrc", x_t, x * (1 + 1e-5), noise, eps, ab, clip)[1]) > 0


def exact_update(st, gen, inp, eps, w, score, t: int, ab_next: float, tau: float, min_step: int,
                 fallback: str = "continue"):
    """The updated x_t and recon of glad_update, exactly, with their float32 bound: trig / fall /
    stop / finish / moving from the row state and the score (docs of ops.reference_glad_update),
    x0 = trig ? w·x0_gen + (1 − w)·x0_in : (fall ? x0_in : x0_gen), x_t' = √ᾱ'·x0 + √(1−ᾱ')·ε̂ (x0
    when ᾱ' = 1; the factors rounded from double, as the reference's Python floats)."""
    active = ~st.done
    checking = active & ~st.triggered & (st.trigger_kind != FALLBACK)
    trig = checking & (score > np.float32(tau))
    fall = checking & ~trig & (t < min_step)
    stop = fall & (fallback == "stop")
    last = ab_next >= 1.0
    finish = stop | (active & last)
    moving = active & ~stop

    def rows(m):
        return np.broadcast_to(m.view(-1, *([1] * (gen.dim() - 1))).numpy(), gen.shape)

    g, i, e, wb = Bound.exact(gen), Bound.exact(inp), Bound.exact(eps), Bound.exact(w.expand_as(gen))
    x0 = (wb * g + (1 - wb) * i).where(rows(trig), i.where(rows(fall), g))
    x_next = x0 if last else Bound.f32(ab_next ** 0.5) * x0 + Bound.f32((1 - ab_next) ** 0.5) * e
    x_t = x_next.where(rows(moving), Bound.exact(st.x_t))
    recon = i.where(rows(stop), x0.where(rows(moving & finish), Bound.exact(st.recon)))
    return x_t, recon


@pytest.mark.parametrize("fallback", FALLBACKS)
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("t,t_next", [(520, 390), (390, 260), (260, 130), (130, -1)],
                         ids=["t>min", "t>min-next<min", "t<min", "last"])
def test_update_agrees_across_implementations(seed, t, t_next, fallback):
    st, x_t, x, noise, eps, wgt, score = random_case(seed)
    st.x_t = x_t
    ab = float(AB[t])
    ab_next = 1.0 if t_next < 0 else float(AB[t_next])
    gen, inp = predict("torch", x_t, x, noise, eps, ab)
    k = 3
    want = update("torch", st, gen, inp, eps, wgt, score, k, t, ab_next, 0.5, 350, fallback)
    # the case mixes every kind of row: done, triggered, fallen back, checking above and below τ, NaN scores
    checking = ~st.done & ~st.triggered & (st.trigger_kind != FALLBACK)
    assert not bool(want.triggered[5])  # a row that fell back earlier never triggers
    assert bool(st.done.any()) and bool((st.triggered & ~st.done).any())
    assert bool((checking & (score > 0.5)).any()) and bool((checking & ~(score > 0.5)).any())
    assert bool((checking & score.isnan()).any())
    if t < 350:
        assert bool((want.trigger_kind == FALLBACK).any())
    exact_xt, exact_recon = exact_update(st, gen, inp, eps, wgt, score, t, ab_next, 0.5, 350, fallback)
    for impl in ("torch", "csrc", "numpy"):
        got = want if impl == "torch" else update(impl, st, gen, inp, eps, wgt, score, k, t, ab_next, 0.5, 350,
                                                  fallback)
        exact_xt.check(got.x_t, f"{impl} x_t")
        exact_recon.check(got.recon, f"{impl} recon")
        for f in FIELDS[2:]:  # decisions, counters and the largest score: the same values
            assert same_bits(getattr(got, f), getattr(want, f)), (impl, f)
    done = st.done
    for f in FIELDS:  # rows done before the step keep every bit
        assert same_bits(getattr(want, f)[done], getattr(st, f)[done]), f


def test_csrc_update_writes_the_state_in_place():
    st, x_t, x, noise, eps, wgt, score = random_case(5)
    ptrs = [getattr(st, f).data_ptr() for f in FIELDS]
    gen, inp = predict("torch", st.x_t, x, noise, eps, float(AB[260]))
    out = ops.glad_update(st, gen, inp, eps, wgt, score, 1, 260, float(AB[130]), 0.5, 350, impl="csrc")
    assert out is st and [getattr(st, f).data_ptr() for f in FIELDS] == ptrs


# ----------------------------------------------------------------- the whole loop
def _eps_stub(x, t, image):
    """Elementwise and batch-independent (tests/unit/test_glad.py's stub)."""
    return 1.5 * x / (1 + x.abs()) - 0.5 * x + t / 2000.0 + 0.05 * image


def _dist_stub(x0_in, x0_gen):
    return F.avg_pool2d((x0_in - x0_gen).abs().mean(1, keepdim=True), 4)[:, 0]


@pytest.mark.parametrize("fallback", FALLBACKS)
@pytest.mark.parametrize("compact", [False, True])
def test_loop_csrc_equals_torch_and_finished_rows_stay_frozen(compact, fallback, impls_used):
    ts = ddim_timesteps(650, 10)
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(6, 3, 16, 16, generator=g) * 2 - 1) * torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9, 1.0]).view(-1, 1, 1, 1)
    noise = torch.randn(x.shape, generator=g)
    runs = {}
    for impl in ("torch", "csrc"):
        snaps = []
        st = adaptive_loop(x, noise, ts, AB, _eps_stub, _dist_stub, tau=0.43, min_step=350, top_k=3, compact=compact,
                           impl=impl, on_step=lambda k, s: snaps.append(clone_state(s)), fallback=fallback)
        runs[impl] = (st, snaps)
        assert impls_used == [impl] * 20  # predict and update at each of the 10 steps
        impls_used.clear()
        # a mix: three rows fall back at step 5 (and stop: 6 U-Net steps; or go on), three trigger and run all 10
        assert st.steps.tolist() == [6 if fallback == "stop" else 10] * 3 + [10] * 3, impl
        assert st.trigger_step[:3].tolist() == [5] * 3
        assert st.trigger_kind.tolist() == [FALLBACK] * 3 + [TRIGGERED] * 3
        for k, snap in enumerate(snaps):  # a row that is done never changes again, while others move
            for later in snaps[k + 1:]:
                for f in FIELDS:
                    assert same_bits(getattr(later, f)[snap.done], getattr(snap, f)[snap.done]), (impl, k, f)
                if not bool(later.done.all()):
                    assert not torch.equal(later.x_t[~snap.done], snap.x_t[~snap.done])
    (st_t, snaps_t), (st_c, snaps_c) = runs["torch"], runs["csrc"]
    assert len(snaps_t) == len(snaps_c) == 10
    for a, b in zip(snaps_t + [st_t], snaps_c + [st_c]):
        for f in FIELDS:
            assert agree(getattr(a, f), getattr(b, f)), f


@pytest.mark.parametrize("fallback", FALLBACKS)
def test_numpy_loop_equals_torch_loop(fallback):
    """The torch-free runtime's loop shape (predict → A, score, w → update) on GladRows, with the
    numpy and the compiled kernels, against adaptive_loop (same decisions, floats within the loop
    tolerance; the ᾱ table is the schedule's own, whether torch's √ of it is correctly rounded or not)."""
    from drdc_trt.methods.glad.adaptive import saff_weight, trigger_score

    ts = ddim_timesteps(650, 10)
    table = AB
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(5, 3, 16, 16, generator=g) * 2 - 1) * torch.tensor([0.1, 0.4, 0.6, 0.9, 1.0]).view(-1, 1, 1, 1)
    noise = torch.randn(x.shape, generator=g)
    want = adaptive_loop(x, noise, ts, table, _eps_stub, _dist_stub, tau=0.43, min_step=350, top_k=3,
                         fallback=fallback)
    assert set(want.trigger_kind.tolist()) == {TRIGGERED, FALLBACK}
    for kind in ("numpy", "csrc"):
        kern = make_glad_kernels(kind)
        assert kern.name == kind
        xn, nn = x.numpy(), noise.numpy()
        ab0 = np.float32(table[ts[0]])
        rows = GladRows.start(np.sqrt(ab0) * xn + np.sqrt(np.float32(1) - ab0) * nn)
        for k, t in enumerate(ts):
            if rows.done.all():
                break
            ab = float(table[t])
            ab_next = float(table[ts[k + 1]]) if k + 1 < len(ts) else 1.0
            eps = _eps_stub(torch.from_numpy(rows.x_t), t, x).numpy()
            gen, inp = kern.predict(rows.x_t, xn, nn, eps, ab)
            A = _dist_stub(torch.from_numpy(inp), torch.from_numpy(gen))
            score = trigger_score(A, 3).numpy()
            w = saff_weight(A, (16, 16)).numpy()
            kern.update(rows, gen, inp, eps, w, score, k, t, ab_next, 0.43, 350, fallback)
        got = as_state(rows)
        for f in FIELDS:
            assert agree(getattr(got, f), getattr(want, f)), (kind, f)


def test_detector_with_the_tiny_glad_unet_csrc_equals_torch(perturb_unet, impls_used):
    """The real tiny U-Net and backbone, compacted loop, τ between the images' trigger scores:
    kernels="csrc" gives the decisions of kernels="torch" and its floats within the loop tolerance
    (same U-Net calls, same thread count; the kernels round otherwise than torch's ops)."""
    torch.manual_seed(0)
    model = perturb_unet(GLADModel(preset("tiny", "glad"), GLADStats(tau=math.inf, image_threshold=0.5,
                                                                     pixel_threshold=0.5)), seed=1).eval()
    g = torch.Generator().manual_seed(7)
    x = torch.rand(4, 3, 32, 32, generator=g) * 2 - 1
    x[2:] *= 0.2
    probe = GLADDetector(model, tau=math.inf).predict(x)
    top = probe.max_score.sort().values
    gap = int((top[1:] - top[:-1]).argmax())
    tau = float(top[gap] + top[gap + 1]) / 2  # in the widest gap: some trigger, some fall back
    assert float((probe.max_score - tau).abs().min()) > 1e-3  # far from every score
    impls_used.clear()
    out = {}
    for k in ("torch", "csrc"):
        out[k] = GLADDetector(model, tau=tau, kernels=k).predict(x, batch_size=4)
        assert impls_used and set(impls_used) == {k}
        impls_used.clear()
    kinds = out["torch"].trigger_kind.tolist()
    assert TRIGGERED in kinds and FALLBACK in kinds, kinds
    for f in ("reconstruction", "steps", "trigger_step", "trigger_kind", "max_score", "anomaly_map", "pred_score"):
        assert agree(getattr(out["csrc"], f), getattr(out["torch"], f)), f


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the CUDA kernels are compiled, not run, "
                                                          "on a machine without one)")
@pytest.mark.parametrize("fallback", FALLBACKS)
def test_cuda_kernels_match_the_reference_and_the_cpu_kernels(fallback):
    st, x_t, x, noise, eps, wgt, score = random_case(6, b=16, c=3, h=32, w=32)
    st.x_t = x_t
    ab = float(AB[390])
    cuda = [v.cuda() for v in (x_t, x, noise, eps)]
    want = ops.glad_predict(*cuda, ab)  # torch on the GPU forms the same coefficients as for the kernel
    got = ops.glad_predict(*cuda, ab, impl="csrc")
    torch.cuda.synchronize()
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    gen, inp = (v.cpu() for v in want)
    cpu = update("csrc", st, gen, inp, eps, wgt, score, 3, 260, float(AB[130]), 0.5, 350, fallback)
    gpu = RowState(*(getattr(st, f).clone().cuda() for f in FIELDS))
    ops.glad_update(gpu, gen.cuda(), inp.cuda(), eps.cuda(), wgt.cuda(), score.cuda(), 3, 260, float(AB[130]), 0.5,
                    350, impl="csrc", fallback=fallback)
    torch.cuda.synchronize()
    for f in FIELDS:  # both round every op on its own (kernel_math.h); coefficients on the host
        assert same_bits(getattr(gpu, f).cpu(), getattr(cpu, f)), f


# ----------------------------------------------------------------- arguments
def _update_args(b=2):
    st = RowState.start(torch.zeros(b, 3, 4, 4))
    z = torch.zeros(b, 3, 4, 4)
    return dict(state=st, x0_gen=z, x0_in=z.clone(), eps=z.clone(), w=torch.zeros(b, 1, 4, 4),
                score=torch.zeros(b), k=0, t=400, ab_next=0.5, tau=0.5, min_step=350)


@pytest.mark.parametrize("change,exc,match", [
    (lambda a: {**a, "w": torch.zeros(2, 3, 4, 4)}, ValueError, r"w: shape \(2, 3, 4, 4\), expected \(2, 1, 4, 4\)"),
    (lambda a: {**a, "score": torch.zeros(3)}, ValueError, r"score: shape"),
    (lambda a: {**a, "eps": torch.zeros(2, 3, 4, 4, dtype=torch.float64)}, TypeError, r"eps: dtype"),
    (lambda a: {**a, "x0_in": torch.zeros(2, 3, 4, 4).transpose(2, 3)}, ValueError, r"x0_in: must be contiguous"),
    (lambda a: {**a, "x0_gen": torch.zeros(0, 3, 4, 4)}, ValueError, r"x0_gen: expected a non-empty"),
    (lambda a: {**a, "ab_next": 0.0}, ValueError, r"ab_next .* \(0, 1\]"),
    (lambda a: {**a, "ab_next": math.nan}, ValueError, r"ab_next"),
    (lambda a: {**a, "tau": math.nan}, ValueError, r"tau: NaN"),
    (lambda a: {**a, "min_step": -1}, ValueError, r"min_step: expected a non-negative int"),
    (lambda a: {**a, "k": 1.5}, ValueError, r"k: expected a non-negative int"),
])
def test_update_refuses_bad_arguments_by_name(change, exc, match):
    with pytest.raises(exc, match=match):
        ops.glad_update(**change(_update_args()), impl="csrc")


@pytest.mark.parametrize("field,value,exc,match", [
    ("done", torch.zeros(2, dtype=torch.uint8), TypeError, r"state.done: dtype"),
    ("steps", torch.zeros(2, dtype=torch.int32), TypeError, r"state.steps: dtype"),
    ("max_score", torch.zeros(3), ValueError, r"state.max_score: shape"),
    ("x_t", torch.zeros(2, 3, 4, 5), ValueError, r"state.x_t: shape"),
])
def test_update_refuses_a_bad_state_field_by_name(field, value, exc, match):
    a = _update_args()
    setattr(a["state"], field, value)
    with pytest.raises(exc, match=match):
        ops.glad_update(**a, impl="csrc")


def test_predict_refuses_bad_arguments_by_name():
    z = torch.zeros(1, 3, 4, 4)
    with pytest.raises(ValueError, match=r"noise: shape"):
        ops.glad_predict(z, z, torch.zeros(1, 3, 4, 5), z, 0.5, impl="csrc")
    with pytest.raises(ValueError, match=r"ab .* \(0, 1\]"):
        ops.glad_predict(z, z, z, z, 1.5, impl="csrc")
    with pytest.raises(TypeError, match=r"ab: expected a number"):
        ops.glad_predict(z, z, z, z, torch.tensor(0.5), impl="csrc")
    with pytest.raises(ValueError, match=r"impl='cuda'"):
        ops.glad_predict(z, z, z, z, 0.5, impl="cuda")


@pytest.mark.parametrize("kind", ["numpy", "csrc"])
def test_runtime_kernels_refuse_bad_arrays_by_name(kind):
    kern = make_glad_kernels(kind)
    z = np.zeros((2, 3, 4, 4), np.float32)
    with pytest.raises(TypeError, match=r"eps: expected a float32"):
        kern.predict(z, z, z, z.astype(np.float64), 0.5)
    rows = GladRows.start(z)
    w, score = np.zeros((2, 1, 4, 4), np.float32), np.zeros(2, np.float32)
    with pytest.raises(ValueError, match=r"w: shape"):
        kern.update(rows, z, z, z, z, score, 0, 400, 0.5, 0.5, 350)
    rows.done = rows.done.astype(np.uint8)
    with pytest.raises(TypeError, match=r"rows.done: expected a bool"):
        kern.update(rows, z, z, z, w, score, 0, 400, 0.5, 0.5, 350)
    with pytest.raises(ValueError, match=r"tau: NaN"):
        kern.update(GladRows.start(z), z, z, z, w, score, 0, 400, 0.5, math.nan, 350)
    with pytest.raises(ValueError, match=r"kernels='gpu'"):
        make_glad_kernels("gpu")


def test_compiled_kernels_are_picked_by_auto():
    assert isinstance(make_glad_kernels("auto"), CsrcGladKernels)  # _C is built with them
