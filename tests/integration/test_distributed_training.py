"""Data-parallel training (drdc_trt.distributed) on two CPU processes (gloo) against one process:
for every method, the gradients of the first step and the trained weights of a 2-process run
with per-rank batch B/2 against a 1-process run with batch B, within bounds derived from the
order of the float32 sums; the ranks identical bit for bit (weights, EMA, batch-norm buffers);
the calibration shared by the ranks equal to one process's, bit for bit."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file

from drdc_trt.config import preset
from drdc_trt.settings import ModelConfig
from drdc_trt.training import training_split

PROBE = Path(__file__).with_name("ddp_probe.py")
ITERS = 6
# The tiny preset; transformer dropout off: dropout masks are each rank's own (a single process
# draws them for the whole batch from one stream, which no split of the batch can reproduce).
# Enough held-out images that the calibration's batches split between the ranks (5 of 2 rows).
SETS = {"train.unet_iters": ITERS, "train.ema_decay": 0.9, "transformer.dropout": 0.0, "train.calib_fraction": 0.4}
U = 2.0 ** -24  # float32 unit roundoff
LAMBDA = 6.0    # probabilistic rounding-error bound (Higham & Mary 2019): fails with probability < 3e-8


def _run(nproc: int, data: Path, out: Path, method: str, reverse: bool = False) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "DDP_PROBE_REVERSE": "1" if reverse else ""}
    sets = [f"{k}={json.dumps(v)}" for k, v in SETS.items()]
    cmd = [sys.executable, str(PROBE)] if nproc == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", str(PROBE)]
    proc = subprocess.run([*cmd, str(data), str(out), method, *sets], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def _make(method: str, cfg: ModelConfig):
    if method == "drdc":
        from drdc_trt.methods.drdc.model import DRDCModel

        return DRDCModel(cfg)
    if method == "glad":
        from drdc_trt.methods.glad.model import GLADModel

        return GLADModel(cfg)
    from drdc_trt.methods.diffusionad.model import DiffusionADModel

    return DiffusionADModel(cfg)


def _layers(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _stages(method: str, cfg: ModelConfig, model, n_train: int) -> list[dict]:
    """Per optimizer, in the order of its first step: the trained network, the rows × positions its
    weight gradients sum over per step, its learning rate and step count, and the prefixes of its
    weights in the checkpoint (model.safetensors) and the snapshot (weights.safetensors)."""
    tc, s = cfg.train, cfg.image_size
    if method == "drdc":
        steps = tc.base_epochs * math.ceil(n_train / tc.batch_size)
        return [dict(net=model.base.transformer, rows=tc.batch_size * cfg.feature_size ** 2, lr=tc.base_lr,
                     steps=steps, prefix="transformer."),
                dict(net=model.unet, rows=tc.batch_size * s * s, lr=tc.unet_lr, steps=ITERS, prefix="unet.")]
    if method == "glad":
        return [dict(net=model.unet, rows=tc.batch_size * s * s, lr=cfg.glad.lr, steps=ITERS, prefix="unet.")]
    a = cfg.diffusionad  # one U-Net call on 2 rows per image; the segmentation loss reaches the U-Net
    return [dict(net=model, rows=2 * tc.batch_size * s * s, lr=a.unet_lr, steps=ITERS, prefix="unet."),
            dict(net=model, rows=2 * tc.batch_size * s * s, lr=a.seg_lr, steps=ITERS, prefix="seg.")]


def _grad_bound(stage: dict) -> float:
    """ε = 2·λ·√n·u·L: each gradient element is a float32 sum; the two runs sum the same terms in
    another order (a rank's half of the rows, then the all-reduce's addition of the halves; kernels
    that block batch B and B/2 differently). With rounding errors of random sign, a sum of n terms
    is off by at most λ·√n·u of its terms' magnitude (Higham & Mary, probabilistic bound), n the
    longest reduction (rows × positions of a weight gradient, or the widest layer's fan-in); the
    error of each of the L weight layers the gradient passes through adds, relative to the
    gradient's norm; both runs err (2)."""
    layers = _layers(stage["net"])
    fan = max(max(m.weight[0].numel(), m.weight.shape[0] * m.weight[0, 0].numel()) for m in layers)
    return 2 * LAMBDA * math.sqrt(max(stage["rows"], fan)) * U * len(layers)


def _far(a: dict, b: dict, stage: dict) -> tuple[float, float]:
    """(fraction of the stage's weights that differ by more than 1 % of K·lr, largest difference in
    K·lr) between two runs' weights (batch-norm buffers, not Adam's, left out)."""
    keys = [k for k in a if k.startswith(stage["prefix"]) and "running_" not in k and "num_batches" not in k]
    assert keys, stage["prefix"]
    scale = stage["lr"] * stage["steps"]
    d = torch.cat([(a[k].double() - b[k].double()).abs().flatten() for k in keys])
    return float((d > 0.01 * scale).double().mean()), float(d.max()) / scale


def _weights_close(one: dict, two: dict, twin: dict, stages: list[dict]) -> list[str]:
    """Adam's step m̂/(√v̂ + ε) does not depend on the gradient's scale: a weight whose gradient is
    well above its rounding error moves the same to a relative δ ≤ ε_grad per step, but one whose
    gradient is at rounding level (an exact 0: a bias before batch norm, the first steps behind
    the U-Net's zero-initialised output convolutions) takes a ±lr step whose sign the rounding
    picks, and the weights downstream of it follow. So a change of summation order alone moves a
    share of the weights by up to lr per step: that share is measured on ``twin``, one process
    summing the same batches in reversed row order. The two-process run, which differs from one
    process by summation order only, must stay within twice that share plus 0.5 % of the weights,
    and every weight within Adam's 2·K·lr."""
    bad = []
    for st in stages:
        (far, top), (ref, _) = _far(one, two, st), _far(one, twin, st)
        if far > 2 * ref + 0.005 or top > 2:
            bad.append(f"{st['prefix']}: {100 * far:.2f} % of the weights differ by more than 1 % of K·lr "
                       f"(summation order alone: {100 * ref:.2f} %), the largest by {top:.3g} K·lr")
    return bad


@pytest.mark.slow  # ~1 min: three methods, one and two processes each
@pytest.mark.parametrize("method", ["drdc", "diffusionad", "glad"])
def test_two_processes_train_what_one_process_trains(method, synthetic_root, tmp_path, capsys):
    one, twin, two = tmp_path / "one", tmp_path / "reversed", tmp_path / "two"
    _run(1, synthetic_root, one, method)
    _run(1, synthetic_root, twin, method, reverse=True)
    _run(2, synthetic_root, two, method)

    # the ranks hold the same bits: gradients after the all-reduce, weights with the EMA copied in,
    # batch-norm buffers (a rank whose EMA or statistics went their own way differs here)
    g0, g1 = load_file(str(two / "grads0.safetensors")), load_file(str(two / "grads1.safetensors"))
    f0, f1 = load_file(str(two / "final0.safetensors")), load_file(str(two / "final1.safetensors"))
    assert g0.keys() == g1.keys() and all(torch.equal(g0[k], g1[k]) for k in g0)
    assert f0.keys() == f1.keys() and [k for k in f0 if not torch.equal(f0[k], f1[k])] == []

    cfg = preset("tiny", method).replace(**SETS)
    n_train = len(training_split(synthetic_root, cfg, None, False, log=lambda *_: None)[0])
    stages = _stages(method, cfg, _make(method, cfg), n_train)
    ref = load_file(str(one / "grads0.safetensors"))
    seen = []
    assert sorted({k.split(".")[0] for k in ref}) == [str(i) for i in range(len(stages))]
    for i, st in enumerate(stages):
        keys = [k for k in ref if k.split(".")[0] == str(i)]
        a = torch.cat([ref[k].double().flatten() for k in keys])
        b = torch.cat([g0[k].double().flatten() for k in keys])
        rel, bound = float((a - b).norm() / a.norm()), _grad_bound(st)
        seen.append(f"optimizer {i} first-step gradient {rel:.2g} of its norm (bound {bound:.2g})")
        assert rel <= bound, f"optimizer {i}: first-step gradients differ by {rel:.3g} of their norm, bound {bound:.3g}"

    # the trained weights: raw (the snapshot) and averaged (the checkpoint)
    bad = []
    for f in ("train_state/weights.safetensors", "model.safetensors"):
        runs = [load_file(str(run / f)) for run in (one, two, twin)]
        bad += _weights_close(*runs, stages)
        seen += [f"{f} {st['prefix']} {100 * _far(runs[0], runs[1], st)[0]:.2f} % far "
                 f"(reversed rows {100 * _far(runs[0], runs[2], st)[0]:.2f} %)" for st in stages]
    assert bad == [], bad

    # the calibration the two ranks shared equals one process's on the same weights, bit for bit
    # (each rank scored whole batches of the held-out images, the batches one process forms)
    _one_process_calibration_matches(method, synthetic_root, two, tmp_path / "recal")
    with capsys.disabled():
        print(f"\n{method}, 2 processes against 1: " + "; ".join(seen))


def _one_process_calibration_matches(method: str, data: Path, run: Path, out: Path) -> None:
    import importlib

    from drdc_trt.checkpoint import save_checkpoint
    from drdc_trt.loading import load_checkpoint

    model = load_checkpoint(run)
    model.cfg = ModelConfig.from_dict(json.loads((run / "train_state" / "config.json").read_text()))
    _, calib = training_split(data, model.cfg, None, False, log=lambda *_: None)
    assert len(calib) > model.cfg.train.batch_size // 2  # more than one batch: the ranks shared them
    calibrate = importlib.import_module(f"drdc_trt.methods.{method}.train").calibrate
    # The ranks ran one thread each; bit equality holds for the same code on the same thread count
    # only (ATen and oneDNN split a convolution's sums by thread), so this process uses one too.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # DRDC says which λ it chose
            calibrate(model.eval(), calib, batch_size=max(1, model.cfg.train.batch_size // 2))
    finally:
        torch.set_num_threads(threads)
    save_checkpoint(model, out)
    for f in sorted(p.name for p in run.iterdir() if p.name.startswith(("stats", "pixel"))):
        assert (out / f).read_bytes() == (run / f).read_bytes(), f
