"""DRDC's ``drdc-bench --method`` rows beside other methods (its spec's ``bench_rows``): the engine
suite of ``drdc-bench`` alone (``bench_suite.run``, the spec's ``bench_suite``) at the options' preset, its
engine rows on a bundle of its random-init model (or on ``--bundle`` / ``--model`` as the suite
takes them). The suite's full report comes back too.

``kit`` is the bench's shared machinery (``drdc_trt.benchmarking.rows``), passed in: this module
imports the core and its own folder only.
"""

from __future__ import annotations

from typing import Callable

from .bench_suite import run as _suite
from .spec import SPEC


def bench_rows(kit, opts, size: int | None, argv: list[str] | None, log: Callable[[str], None]) -> dict:
    """DRDC's suite rows (each marked with the method), its model's source, image size and full report."""
    rep = _drdc_report(kit, opts, size, argv, log)
    return {"rows": [{**r, "method": SPEC.name} for r in rep["rows"]], "source": rep["run"]["model_source"],
            "config": None, "image_size": rep["run"]["image_size"], "report": rep}


def _drdc_report(kit, opts, size: int | None, argv, log) -> dict:
    """DRDC's own suite at the options' preset (image side ``size``, else ``--size``, else the preset's),
    its engine rows on a bundle of its random-init model."""
    import tempfile
    from dataclasses import replace
    from pathlib import Path

    import torch

    from drdc_trt.settings import preset

    from .model import DRDCModel

    if opts.bundle or opts.model:
        return _suite(opts, argv, log)
    cfg = preset(opts.config or "small", SPEC.name)
    changes = {"backbone.weights": "none"}  # random init: no ImageNet download
    size = size if size is not None else opts.size
    if size is not None:
        changes["image_size"] = size
    cfg = cfg.replace(**changes)
    torch.manual_seed(opts.seed)
    model = DRDCModel(cfg).eval()
    if cfg.fusion.diff_norm == "pixel":  # neutral per-pixel statistics, as the suite gives a random-init model
        from .fusion import PixelStats

        s = cfg.image_size
        model.stats.pixel = PixelStats(torch.zeros(s, s), torch.ones(s, s))
    if opts.int8_calib:
        _unzero_unet(model, opts.seed)
    with tempfile.TemporaryDirectory(prefix="drdc_bench_drdc_") as tmp:
        log(f"exporting a random-init DRDC model (S={cfg.image_size}) to a temporary bundle")
        bundle = Path(tmp) / "bundle"
        kit.export_bundle(model, bundle, seed=opts.seed, check_batches=(), max_batch=max(opts.batches))
        if opts.int8_calib:
            kit.add_int8_networks(bundle, opts.int8_calib, cfg.image_size, log, opts.int8_calib_images)
        sub = replace(opts, config=None, bundle=str(bundle), size=None, write=False,
                      loops=tuple(dict.fromkeys((*opts.loops, "runtime"))))
        rep = _suite(sub, argv, log)
    rep["run"]["bundle"] = "a temporary bundle exported from the random-init model"  # not a path kept anywhere
    rep["run"]["config_name"] = opts.config or "small"  # the preset names the result files, not the temporary folder
    rep["run"]["model_source"] = (f"preset {opts.config or 'small'!r}, randomly initialised (its engine rows run a "
                                  "bundle exported from it" + (f"; its U-Net's zero-initialised layers given small "
                                  f"random weights and the bundle's U-Net quantized to int8 on {opts.int8_calib_images} "
                                  f"images of {opts.int8_calib}" if opts.int8_calib else "") + ")")
    return rep


def _unzero_unet(model, seed: int) -> None:
    """A random-init U-Net's zero-initialised layers (the output convolution, the residual blocks'
    last convolutions) make ε̂ exactly 0, so the int8 export's check (rms(int8 − f32) ≤ 0.1·rms(f32))
    would compare zeros with zeros; small random weights there give it real activations to compare.
    Latency does not depend on the weights."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.unet.parameters():
            if not p.any():
                p.add_(torch.randn(p.shape, generator=g) * 0.02)
