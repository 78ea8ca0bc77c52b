"""Latency statistics of one measured row (standard library only)."""

from __future__ import annotations

import math
from typing import Sequence

PERCENTILES = (50, 90, 99)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0 ≤ q ≤ 100) with linear interpolation between the closest
    ranks — the definition of ``numpy.percentile``'s default ("linear") method.

    For sorted values v_0..v_{n-1} the position is h = (n − 1)·q/100 and the result
    v_⌊h⌋ + (h − ⌊h⌋)·(v_⌊h⌋+1 − v_⌊h⌋).
    """
    if not values:
        raise ValueError("percentile of an empty list")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q={q} must lie in [0, 100]")
    v = sorted(float(x) for x in values)
    h = (len(v) - 1) * q / 100.0
    lo = math.floor(h)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (h - lo) * (v[hi] - v[lo])


def summarize(latencies_ms: Sequence[float], batch: int) -> dict:
    """Latency per batch and per image, and throughput, from per-iteration times (ms).

    ``throughput_ips`` = images per second of back-to-back batches = batch / mean latency.
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    xs = [float(x) for x in latencies_ms]
    if not xs:
        raise ValueError("no latency samples")
    n = len(xs)
    mean = sum(xs) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else 0.0
    out = {"iterations": n, "mean_ms": mean, "std_ms": std, "min_ms": min(xs), "max_ms": max(xs)}
    for q in PERCENTILES:
        out[f"p{q}_ms"] = percentile(xs, q)
    out["per_image"] = {k: out[k] / batch for k in ("mean_ms", *(f"p{q}_ms" for q in PERCENTILES))}
    out["throughput_ips"] = batch / (mean * 1e-3) if mean > 0 else math.inf
    return out


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)
