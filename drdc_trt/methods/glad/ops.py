"""GLAD's fused ops of one adaptive step: ``glad_predict`` (the two one-step estimates x0_gen and
x0_in) and ``glad_update`` (the per-row rule: trigger, fall back, SAFF blend, DDIM step), each defined
by a ``reference_*`` function in plain PyTorch and dispatched to ``drdc_trt._C`` (``impl="csrc"``)
after the operand checks of ``drdc_trt.ops``."""

from __future__ import annotations

import numbers

import torch

from drdc_trt.ops import check_tensor, compiled_with, cuda_stream, require_impl


def reference_glad_predict(x_t: torch.Tensor, x: torch.Tensor, noise: torch.Tensor, eps: torch.Tensor, ab: float,
                           clip: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """GLAD's two one-step estimates at ᾱ: (x0_gen, x0_in), x0_gen = x̂0(x_t, ε̂) and
    x0_in = x̂0(q(x, ᾱ, ε), ε̂) (the input re-noised with the loop's noise ε), both clamped to
    [-1, 1] unless ``clip=False``; x̂0 and q are ``drdc_trt.methods.glad.target``'s."""
    from drdc_trt.schedule import predict_x0, q_sample

    x0_gen = predict_x0(x_t, ab, eps)
    x0_in = predict_x0(q_sample(x, ab, noise), ab, eps)
    if clip:
        x0_gen, x0_in = x0_gen.clamp(-1, 1), x0_in.clamp(-1, 1)
    return x0_gen, x0_in


def reference_glad_update(state, x0_gen: torch.Tensor, x0_in: torch.Tensor, eps: torch.Tensor, w: torch.Tensor,
                          score: torch.Tensor, k: int, t: int, ab_next: float, tau: float, min_step: int,
                          last: bool, fallback: str = "continue"):
    """GLAD's per-row rule of one step, once ε̂, x0_gen, x0_in, the SAFF weight w (B×1×H×W) and the
    trigger score (B) are known. ``state``: a ``RowState`` (x_t, recon, done, triggered, steps,
    trigger_step, trigger_kind, max_score); its fields are replaced by the updated tensors.

        active = ¬done, checking = active ∧ ¬triggered ∧ trigger_kind ≠ FALLBACK
        trig = checking ∧ score > τ, fall = checking ∧ ¬trig ∧ t < min_step
        stop = fall ∧ (fallback == "stop")
        x0 = trig ? w⊙x0_gen + (1−w)⊙x0_in : (fall ? x0_in : x0_gen), x_next = ddim_next(x0, ε̂, ᾱ')
        finish = stop ∨ (active ∧ last), moving = active ∧ ¬stop
        x_t ← moving ? x_next : x_t, recon ← stop ? x0_in : (moving ∧ finish ? x0 : recon)
        steps += active, trigger_step ← k where trig ∨ fall, trigger_kind ← 1 / 2 where trig / fall
        max_score ← max(max_score, score) where checking (NaN propagates, as torch.maximum)
        triggered ∨= trig, done ∨= finish

    A NaN score never triggers (NaN > τ is false). Rows that are done keep every value.
    ``fallback`` "continue" is the authors' scheduler (a fallen-back row goes on from x̂0 = x0_in,
    no longer looking for its step); "stop" ends the row there.
    """
    from drdc_trt.methods.glad.row_rule import (FALLBACK, TRIGGERED, check_fallback, ddim_next, decide, looking,
                                                rows, saff_blend)

    stops = check_fallback(fallback)
    active = ~state.done
    checking = looking(state.done, state.triggered, state.trigger_kind)
    trig, fall = decide(score, checking, tau, t, min_step)
    stop = fall if stops else torch.zeros_like(fall)
    x0 = torch.where(rows(trig, x0_gen), saff_blend(x0_gen, x0_in, w), torch.where(rows(fall, x0_in), x0_in, x0_gen))
    state.max_score = torch.where(checking, torch.maximum(state.max_score, score), state.max_score)
    x_next = ddim_next(x0, eps, ab_next)
    finish = stop | (active & torch.tensor(bool(last), device=active.device))
    moving = active & ~stop
    state.x_t = torch.where(rows(moving, x_next), x_next, state.x_t)
    state.recon = torch.where(rows(stop, x0_in), x0_in,
                              torch.where(rows(moving & finish, x0), x0, state.recon))
    state.steps = state.steps + active.long()
    state.trigger_step = torch.where(trig | fall, torch.full_like(state.trigger_step, k), state.trigger_step)
    state.trigger_kind = torch.where(trig, TRIGGERED, torch.where(fall, FALLBACK, state.trigger_kind))
    state.triggered = state.triggered | trig
    state.done = state.done | finish
    return state


def _glad_image(name: str, t) -> tuple[int, int, int, int]:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if t.dim() != 4 or t.numel() < 1:
        raise ValueError(f"{name}: expected a non-empty B×C×H×W tensor, got shape {tuple(t.shape)}")
    return tuple(t.shape)


def _alpha_bar(name: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"{name}: expected a number, got {type(v).__name__} (one alpha-bar for the whole batch)")
    if not 0.0 < float(v) <= 1.0:  # also refuses NaN
        raise ValueError(f"{name} (alpha-bar) must lie in (0, 1], got {v}")
    return float(v)


def glad_predict(x_t, x, noise, eps, ab: float, clip: bool = True, impl: str = "torch"):
    """Dispatching ``glad_predict``; see :func:`reference_glad_predict`. Returns (x0_gen, x0_in).
    The csrc kernel takes float32 operands of one shape and ᾱ as a number in (0, 1] (its √ᾱ and
    √(1 − ᾱ) are formed here by torch, as the reference forms them)."""
    if impl == "torch":
        return reference_glad_predict(x_t, x, noise, eps, ab, clip)
    require_impl(impl)
    shape = _glad_image("x_t", x_t)
    dev = x_t.device
    for name, t in (("x_t", x_t), ("x", x), ("noise", noise), ("eps", eps)):
        check_tensor(name, t, shape, (torch.float32,), dev)
    # √ᾱ and √(1 − ᾱ) by torch on the operands' device, as the reference forms them
    # (target.predict_x0): torch's float32 √ on the CPU is not correctly rounded for every ᾱ
    ab_t = torch.as_tensor(_alpha_bar("ab", ab), dtype=torch.float32, device=dev)
    sqrt_ab, sqrt_1mab = float(ab_t.sqrt()), float((1 - ab_t).sqrt())
    x0_gen, x0_in = torch.empty_like(x_t), torch.empty_like(x_t)
    compiled_with("glad_predict").glad_predict(
        device=dev.type, stream=cuda_stream(dev), x_t=x_t.data_ptr(), x=x.data_ptr(), noise=noise.data_ptr(),
        eps=eps.data_ptr(), x0_gen=x0_gen.data_ptr(), x0_in=x0_in.data_ptr(), count=x_t.numel(),
        sqrt_ab=sqrt_ab, sqrt_1mab=sqrt_1mab, clip=bool(clip))
    return x0_gen, x0_in


def glad_update(state, x0_gen, x0_in, eps, w, score, k: int, t: int, ab_next: float, tau: float, min_step: int,
                last: bool | None = None, impl: str = "torch", fallback: str = "continue"):
    """Dispatching ``glad_update``; see :func:`reference_glad_update`. ``last`` (the step past
    which no timestep follows) defaults to ``ab_next >= 1``. The csrc kernel updates the state's
    tensors in place (x_t, recon float32 B×C×H×W; done, triggered bool B; steps, trigger_step,
    trigger_kind int64 B; max_score float32 B); both return ``state``. ``fallback``: "continue"
    (the authors') or "stop" (row_rule.FALLBACKS)."""
    from drdc_trt.methods.glad.row_rule import check_fallback

    if last is None:
        last = float(ab_next) >= 1.0
    if impl == "torch":  # the reference checks ``fallback`` itself
        return reference_glad_update(state, x0_gen, x0_in, eps, w, score, k, t, ab_next, tau, min_step, last,
                                     fallback)
    stops = check_fallback(fallback)
    require_impl(impl)
    b, c, h, wd = _glad_image("x0_gen", x0_gen)
    dev = x0_gen.device
    for name, v in (("x0_gen", x0_gen), ("x0_in", x0_in), ("eps", eps), ("state.x_t", state.x_t),
                    ("state.recon", state.recon)):
        check_tensor(name, v, (b, c, h, wd), (torch.float32,), dev)
    check_tensor("w", w, (b, 1, h, wd), (torch.float32,), dev)
    check_tensor("score", score, (b,), (torch.float32,), dev)
    check_tensor("state.max_score", state.max_score, (b,), (torch.float32,), dev)
    for name in ("done", "triggered"):
        check_tensor(f"state.{name}", getattr(state, name), (b,), (torch.bool,), dev)
    for name in ("steps", "trigger_step", "trigger_kind"):
        check_tensor(f"state.{name}", getattr(state, name), (b,), (torch.int64,), dev)
    ab_next = _alpha_bar("ab_next", ab_next)
    tau = float(tau)
    if tau != tau:
        raise ValueError("tau: NaN (no score would ever trigger; +inf says that explicitly)")
    for name, v in (("k", k), ("t", t), ("min_step", min_step)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0:
            raise ValueError(f"{name}: expected a non-negative int, got {v!r}")
    compiled_with("glad_update").glad_update(
        device=dev.type, stream=cuda_stream(dev), x0_gen=x0_gen.data_ptr(), x0_in=x0_in.data_ptr(),
        eps=eps.data_ptr(), w=w.data_ptr(), score=score.data_ptr(), x_t=state.x_t.data_ptr(),
        recon=state.recon.data_ptr(), done=state.done.data_ptr(), triggered=state.triggered.data_ptr(),
        steps=state.steps.data_ptr(), trigger_step=state.trigger_step.data_ptr(),
        trigger_kind=state.trigger_kind.data_ptr(), max_score=state.max_score.data_ptr(),
        B=b, C=c, H=h, W=wd, k=int(k), t=int(t), ab_next=ab_next, tau=tau, min_step=int(min_step), last=bool(last),
        fallback_stops=stops)
    return state
