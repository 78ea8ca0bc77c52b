"""GLAD's adaptive denoising ("global" adaptation): a batched DDIM loop in which every row picks
its own step, as named PyTorch functions (the reference a compiled kernel has to match bit for bit).

Each row starts at x_T = q(x, t0, ε), keeping ε. At DDIM step k (timestep t, the next t', ᾱ, ᾱ'):

    ε̂       = U(x_t, t)
    x0_gen  = clamp(x̂0(x_t, ε̂))
    x0_in   = clamp(x̂0(q(x, t, ε), ε̂))            the input re-noised with the same ε
    A       = nearest-patch distance of x0_in to x0_gen in a frozen feature space (h×w)
    score   = mean of the top-k of A

and, for a row still looking for its step (active, neither triggered nor fallen back):
    score > τ                 trigger: x0 = w⊙x0_gen + (1 − w)⊙x0_in, w = saff_weight(A) = σ(A)
    else t < min_step         fallback: x0 = x0_in ("continue", the authors' scheduler); with
                              fallback="stop" the row is done instead, its reconstruction x0_in
    else                      x0 = x0_gen
A row that triggered or fell back runs plain DDIM (x0 = x0_gen, no features) to the end. Every
active row that is not done moves to x_t' = √ᾱ'·x0 + √(1 − ᾱ')·ε̂ (η = 0; t' = −1: ᾱ' = 1, x0
itself, and the row is done).

All tensors keep their B rows (fixed shapes): rows that are done are left as they are (torch.where
on the row masks), so a finished row stays bit-identical while the others continue. The step's
element-wise part and its per-row rule are the fused ops ``drdc_trt.ops.glad_predict`` and
``glad_update`` (defined with the functions below; compiled in drdc_trt._C, CPU and CUDA). With
``compact=True`` the U-Net and the feature network run on the rows that need them only
(index_select / index_copy); the per-row rule is the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from drdc_trt.methods.glad import ops
from drdc_trt.methods.glad.features import top_k_score
from drdc_trt.methods.glad.row_rule import FALLBACK, NONE, TRIGGERED, ddim_next, decide, looking, rows, saff_blend  # noqa: F401
from drdc_trt.schedule import q_sample


@dataclass
class RowState:
    """The loop's per-row state: B rows, fixed shapes."""

    x_t: torch.Tensor          # B×C×H×W, the current sample (frozen once done)
    recon: torch.Tensor        # B×C×H×W, the reconstruction (set when a row is done)
    done: torch.Tensor         # B bool
    triggered: torch.Tensor    # B bool: triggered (plain DDIM from then on)
    steps: torch.Tensor        # B long: U-Net evaluations taken
    trigger_step: torch.Tensor  # B long: step index of the trigger or the fallback, −1 if neither
    trigger_kind: torch.Tensor  # B long: NONE, TRIGGERED or FALLBACK
    max_score: torch.Tensor    # B float: largest trigger score seen (−inf if none was measured)

    @classmethod
    def start(cls, x_T: torch.Tensor) -> "RowState":
        b, dev = x_T.shape[0], x_T.device
        return cls(x_T.clone(), torch.zeros_like(x_T), torch.zeros(b, dtype=torch.bool, device=dev),
                   torch.zeros(b, dtype=torch.bool, device=dev), torch.zeros(b, dtype=torch.long, device=dev),
                   torch.full((b,), -1, dtype=torch.long, device=dev), torch.zeros(b, dtype=torch.long, device=dev),
                   torch.full((b,), float("-inf"), device=dev))


def trigger_score(A: torch.Tensor, k: int) -> torch.Tensor:
    """B×h×w → B: the mean of the k largest patch distances (k capped at h·w)."""
    return top_k_score(A, k)


SAFF_WEIGHTS = ("sigmoid", "minmax")


def saff_weight(A: torch.Tensor, size: tuple[int, int], kind: str = "sigmoid") -> torch.Tensor:
    """The spatial-adaptive fusion weight w of x0_gen, up-sampled bilinearly to ``size``: B×1×H×W.

    "sigmoid" (the authors' code: ``mask = torch.sigmoid(anomaly_map)``): w = σ(A) per patch, in
    [0.5, 0.73] for A ∈ [0, 1]; a smooth function of A, so a tiny change of A (another batch's
    rounding) moves w by at most a quarter of it. "minmax": A min–max normalised per row to
    [0, 1] (a constant A: 0, keep the input); it rescales whatever spread A has, noise included,
    to the full range, so it amplifies rounding differences."""
    if kind == "sigmoid":
        w = torch.sigmoid(A)
    elif kind == "minmax":
        lo = A.flatten(1).amin(1).view(-1, 1, 1)
        hi = A.flatten(1).amax(1).view(-1, 1, 1)
        w = torch.where(hi > lo, (A - lo) / (hi - lo).clamp_min(1e-12), torch.zeros_like(A))
    else:
        raise ValueError(f"saff weight {kind!r}: choose one of {SAFF_WEIGHTS}")
    return F.interpolate(w.unsqueeze(1), size=size, mode="bilinear", align_corners=False)


EpsFn = Callable[[torch.Tensor, int, torch.Tensor], torch.Tensor]  # (x_t rows, t, input rows) → ε̂ rows
DistFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x0_in rows, x0_gen rows) → A rows, h×w


def _on_rows(fn, idx: torch.Tensor | None, b: int, *args: torch.Tensor) -> torch.Tensor:
    """fn on the rows ``idx`` only (compacted), scattered back into a B-row zero tensor; idx None: all rows."""
    if idx is None:
        return fn(*args)
    sub = fn(*(a.index_select(0, idx) for a in args))
    out = sub.new_zeros((b, *sub.shape[1:]))
    return out.index_copy(0, idx, sub)


def adaptive_step(state: RowState, x: torch.Tensor, noise: torch.Tensor, k: int, timesteps: list[int],
                  alphas_cumprod: torch.Tensor, eps_fn: EpsFn, dist_fn: DistFn, tau: float, min_step: int,
                  top_k: int, clip: bool = True, compact: bool = False, impl: str = "torch",
                  saff: str = "sigmoid", fallback: str = "continue") -> RowState:
    """One DDIM step of every row that is not done (module doc). ``alphas_cumprod``: the T-vector ᾱ.
    The element-wise and per-row parts are the fused ops ``drdc_trt.ops.glad_predict`` and
    ``glad_update`` (``impl`` "torch": their PyTorch definitions; "csrc": the compiled kernels,
    which update ``state``'s tensors in place)."""
    b = x.shape[0]
    t = timesteps[k]
    t_next = timesteps[k + 1] if k + 1 < len(timesteps) else -1
    ab = float(alphas_cumprod[t])
    ab_next = 1.0 if t_next < 0 else float(alphas_cumprod[t_next])
    active = ~state.done
    checking = looking(state.done, state.triggered, state.trigger_kind)
    act_idx = active.nonzero()[:, 0] if compact else None
    eps = _on_rows(lambda xt, xx: eps_fn(xt, t, xx), act_idx, b, state.x_t, x)
    x0_gen, x0_in = ops.glad_predict(state.x_t, x, noise, eps, ab, clip, impl=impl)
    if bool(checking.any()):
        chk_idx = checking.nonzero()[:, 0] if compact else None
        A = _on_rows(dist_fn, chk_idx, b, x0_in, x0_gen)
        score = trigger_score(A, top_k)
        w = saff_weight(A, tuple(x.shape[-2:]), saff)
    else:  # no row looks for its step: nothing triggers, the score and the weight are not read
        score = torch.zeros(b, dtype=x0_gen.dtype, device=x0_gen.device)
        w = torch.zeros(b, 1, *x.shape[-2:], dtype=x0_gen.dtype, device=x0_gen.device)
    return ops.glad_update(state, x0_gen, x0_in, eps.contiguous(), w.contiguous(), score.contiguous(), k, t,
                           ab_next, tau, min_step, last=t_next < 0, impl=impl, fallback=fallback)


def adaptive_loop(x: torch.Tensor, noise: torch.Tensor, timesteps: list[int], alphas_cumprod: torch.Tensor,
                  eps_fn: EpsFn, dist_fn: DistFn, tau: float, min_step: int, top_k: int, clip: bool = True,
                  compact: bool = False, on_step: Callable[[int, RowState], None] | None = None,
                  impl: str = "torch", saff: str = "sigmoid", fallback: str = "continue") -> RowState:
    """The whole loop for images x (B×C×H×W) and their noise ε; returns the final RowState
    (``recon`` the reconstructions, ``steps`` the U-Net evaluations each row took). ``impl``: the
    fused ops' implementation (adaptive_step); ``saff``: the SAFF weight (saff_weight);
    ``fallback``: what a row that falls back does (row_rule.FALLBACKS)."""
    if x.shape != noise.shape:
        raise ValueError(f"noise: shape {tuple(noise.shape)} differs from the images' {tuple(x.shape)}")
    state = RowState.start(q_sample(x, float(alphas_cumprod[timesteps[0]]), noise))
    for k in range(len(timesteps)):
        if bool(state.done.all()):
            break
        state = adaptive_step(state, x, noise, k, timesteps, alphas_cumprod, eps_fn, dist_fn, tau, min_step,
                              top_k, clip, compact, impl, saff, fallback)
        if on_step is not None:
            on_step(k, state)
    return state


def steps_histogram(steps: torch.Tensor) -> dict[int, int]:
    """{steps taken: number of rows}."""
    values, counts = torch.unique(steps.cpu(), return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts)}
