"""Frozen-backbone features on disk, so training computes each image's features once across runs.

The base model trains on the features of a frozen backbone: they depend only on the image, the
backbone's weights and the size they are pooled to. At 224² the backbone is most of an epoch's cost
on a CPU, and every run (seeds, ablations, a resumed run) would compute the same tensors again.
Each image's features are stored as one safetensors file named by a key over everything that
determines them:

* the module: its class, every parameter and buffer (name, dtype, shape, bytes), its
  ``feature_size``, the torch version and the device type (other kernels round differently);
* the image: the float32 tensor the backbone sees (so its size and any preprocessing are in it).

A changed image, weight or size is another key: an entry is never stale, only unused. Entries are
written atomically (checkpoint.atomic_save_tensors), so a killed run leaves whole files or none;
one that cannot be read is computed again and rewritten. Features read from the cache are the bits
computed when the entry was written: a run on a cold cache and a rerun on the warm one train the
same weights bit for bit.

Where: ``$DRDC_FEATURE_CACHE`` (a folder; ``off`` turns the cache off), else
``$XDG_CACHE_HOME/drdc_trt/features`` (``~/.cache/drdc_trt/features``). ``drdc train
--feature-cache DIR|off`` sets it for one run.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file

from drdc_trt.checkpoint import atomic_save_tensors

ENV = "DRDC_FEATURE_CACHE"
OFF = ("off", "none", "0", "")


def cache_root() -> Path | None:
    """The cache folder (module doc), or None when the cache is off."""
    v = os.environ.get(ENV)
    if v is not None:
        return None if v.strip().lower() in OFF else Path(v)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "drdc_trt" / "features"


def _update_tensor(h, name: str, t: torch.Tensor) -> None:
    t = t.detach().cpu().contiguous().reshape(-1)  # 0-d tensors (BN counters) too
    h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
    h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def module_key(module: torch.nn.Module, device: torch.device | str) -> str:
    """The part of the key that names the feature function (module doc)."""
    h = hashlib.sha256()
    h.update(f"{type(module).__module__}.{type(module).__qualname__}|{getattr(module, 'feature_size', None)}|"
             f"{torch.__version__}|{torch.device(device).type}|".encode())
    for name, t in sorted(module.named_parameters()) + sorted(module.named_buffers()):
        _update_tensor(h, name, t)
    return h.hexdigest()


def image_key(image: torch.Tensor) -> str:
    h = hashlib.sha256()
    _update_tensor(h, "image", image.float())
    return h.hexdigest()


@torch.no_grad()
def cached_features(module: torch.nn.Module, images: torch.Tensor, batch: int = 32, root: Path | None = None,
                    log: Callable[[str], None] | None = None) -> torch.Tensor:
    """``module(images)`` (B×… on the module's device, computed in batches of ``batch``), each
    image's row read from the cache when present there and written to it when not (module doc).
    ``root``: the cache folder (``cache_root()`` when None; off when that is None)."""
    dev = next(module.parameters()).device
    root = cache_root() if root is None else root

    def compute(idx: list[int]) -> list[torch.Tensor]:
        out = []
        for i in range(0, len(idx), batch):
            out += list(module(images[idx[i:i + batch]].to(dev)).cpu().unbind(0))
        return out

    if root is None:
        return torch.stack(compute(list(range(len(images))))).to(dev)
    folder = root / module_key(module, dev)[:32]
    paths = [folder / f"{image_key(im)}.safetensors" for im in images]
    rows: list[torch.Tensor | None] = []
    for p in paths:
        try:
            rows.append(load_file(str(p))["features"] if p.is_file() else None)
        except Exception:  # a damaged entry: computed again and rewritten below
            rows.append(None)
    missing = [i for i, r in enumerate(rows) if r is None]
    if missing:
        folder.mkdir(parents=True, exist_ok=True)
        for i, f in zip(missing, compute(missing)):
            rows[i] = f
            atomic_save_tensors({"features": f}, paths[i])
    if log is not None:
        log(f"backbone features: {len(images) - len(missing)} of {len(images)} from the cache in {folder}")
    return torch.stack(rows).to(dev)
