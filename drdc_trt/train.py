"""Training: the base model, then the U-Net, then the fusion statistics.

Plain PyTorch, AdamW, fixed seeds. Progress is kept in ``<out>/train_state/``
(weights, optimizer state, counters — safetensors + JSON, replaced together as one
snapshot, see TrainState) so an interrupted or killed run resumes where it stopped;
every epoch / iteration is seeded from its index, so a resumed run follows the same
trajectory as an uninterrupted one. Running again with a larger ``train.unet_iters`` or
``train.base_epochs`` extends a run. The finished checkpoint is written to ``<out>/``.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from . import tuning
from .checkpoint import CONFIG, atomic_write_text, save_checkpoint
from .config import ModelConfig
from .data import load_split
from .diffusion import Schedule, min_snr_weight, random_known_masks
from .ema import EMA
from .models import DRDCModel
from .pipeline import Detector

STATE_DIR = "train_state"
EMA_FILE = "unet_ema.safetensors"  # the U-Net's moving average; weights.safetensors holds the raw weights
# Settings a saved run may be resumed with at another value (see TrainState._check_compatible).
EXTENDABLE = ("base_epochs", "unet_iters", "checkpoint_every")


@dataclass
class TrainReport:
    base_losses: list[float] = field(default_factory=list)
    unet_losses: list[float] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    resumed_from: dict | None = None


# ----------------------------------------------------------------- resumable state
def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], str]:
    sd = opt.state_dict()
    tensors = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            tensors[f"{pid}.{k}"] = v if isinstance(v, torch.Tensor) else torch.tensor(v)
    return tensors, json.dumps(sd["param_groups"])


def _load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: str) -> None:
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": json.loads(groups)})


class TrainState:
    """The resumable state of one training run under ``<out>/train_state``.

    A snapshot is several files (config, weights, optimizer and EMA state, counters) that
    must change together: a run killed between two of them would resume weights of one
    iteration with the optimizer and counters of another. So a save writes every file
    beside its target as ``<name>.next``, then records the snapshot as complete in
    ``commit.json`` (an atomic rename), then moves the files into place and removes the
    record. Loading first finishes a recorded snapshot's moves, or drops the ``.next``
    files of one that was never recorded, so it always reads one whole snapshot.
    """

    COMMIT = "commit.json"
    NEXT = ".next"

    def __init__(self, out: Path, cfg: ModelConfig):
        self.dir = Path(out) / STATE_DIR
        self.cfg = cfg
        self.info = {"stage": "base", "base_epoch": 0, "unet_iter": 0}
        self.ema: EMA | None = None
        # False while the weights hold a partly applied epoch or step that ``info`` does not
        # count: such weights cannot be resumed from and must not be saved.
        self.consistent = True

    def _finish_commit(self) -> None:
        """Move a recorded snapshot's files into place (again, after a kill: moves are idempotent)."""
        commit = self.dir / self.COMMIT
        if commit.is_file():  # every .next file was complete before the record was written
            for name in json.loads(commit.read_text())["files"]:
                nxt = self.dir / (name + self.NEXT)
                if nxt.exists():
                    os.replace(nxt, self.dir / name)
            commit.unlink()

    def recover(self) -> None:
        """Finish or drop a snapshot a killed save left half done; remove stale temporary files."""
        if not self.dir.is_dir():
            return
        self._finish_commit()
        for f in self.dir.iterdir():
            if not f.is_dir() and (f.name.endswith(self.NEXT) or _is_temp(f.name)):
                f.unlink()

    def load(self, model: DRDCModel, opts: dict[str, torch.optim.Optimizer]) -> bool:
        self.recover()
        path = self.dir / "state.json"
        if not path.is_file():
            return False
        info = json.loads(path.read_text())
        saved_cfg = json.loads((self.dir / CONFIG).read_text())
        self._check_compatible(saved_cfg, info)
        model.load_trainable_state_dict(load_file(str(self.dir / "weights.safetensors")),
                                        where=str(self.dir / "weights.safetensors"))
        for name, opt in opts.items():
            f = self.dir / f"{name}_optimizer.safetensors"
            if f.is_file():
                from safetensors import safe_open

                with safe_open(str(f), "pt") as fh:
                    groups = fh.metadata()["param_groups"]
                _load_optimizer(opt, load_file(str(f)), groups)
        ema_file = self.dir / EMA_FILE
        if self.ema is not None and ema_file.is_file():
            self.ema.load(load_file(str(ema_file)), str(ema_file))
        self.info = info
        return True

    def _check_compatible(self, saved_cfg: dict, info: dict) -> None:
        """The saved run must have this config, except for the lengths in ``EXTENDABLE``: the
        learning rates are constant and every epoch / iteration is seeded from its index, so a
        run extended to more epochs or iterations ends where one trained that long from the
        start would."""
        want = json.loads(self.cfg.to_json())
        strip = lambda c: {**c, "train": {k: v for k, v in c["train"].items() if k not in EXTENDABLE}}
        if strip(saved_cfg) != strip(want):
            raise ValueError(f"{self.dir}: holds a run with another config; use a new --out folder "
                             "or delete it to start over")
        for key, done in (("base_epochs", info["base_epoch"]), ("unet_iters", info["unet_iter"])):
            if want["train"][key] < done:
                raise ValueError(f"{self.dir}: holds a run already {done} long, more than "
                                 f"train.{key}={want['train'][key]}; use a new --out folder")

    def count_iteration(self, it: int) -> bool:
        """U-Net iteration ``it`` is applied (optimizer and EMA stepped): count it, so the weights
        and the counters agree again; True when a snapshot is due (every ``train.checkpoint_every``
        iterations and at the last)."""
        self.info["unet_iter"] = it + 1
        self.consistent = True
        tc = self.cfg.train
        return (it + 1) % tc.checkpoint_every == 0 or it + 1 == tc.unet_iters

    def save(self, model: DRDCModel, opts: dict[str, torch.optim.Optimizer]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        # A save interrupted by KeyboardInterrupt after its record: finish it before new
        # .next files are written (a record must only ever describe complete files).
        self._finish_commit()
        files: dict[str, Callable[[Path], None]] = {
            CONFIG: lambda p: p.write_text(self.cfg.to_json()),
            "weights.safetensors": lambda p: _save_tensors(model.trainable_state_dict(), p),
        }
        for name, opt in opts.items():
            tensors, groups = _optimizer_tensors(opt)
            files[f"{name}_optimizer.safetensors"] = (
                lambda p, t=tensors, g=groups: _save_tensors(t, p, {"param_groups": g}))
        if self.ema is not None:
            files[EMA_FILE] = lambda p: _save_tensors(self.ema.shadow, p)
        info = json.dumps(self.info)
        files["state.json"] = lambda p: p.write_text(info)  # the counters the files above belong to
        for name, write in files.items():
            write(self.dir / (name + self.NEXT))
        atomic_write_text(self.dir / self.COMMIT, json.dumps({"files": list(files)}))
        self._finish_commit()


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict | None = None) -> None:
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path), metadata=metadata)


def _is_temp(name: str) -> bool:
    """A temporary file of checkpoint.atomic_write_text / atomic_save_tensors (``.<name>.tmp<pid>``)
    or of safetensors' own save_file (``.tmp`` and six random letters or digits, renamed into
    place when complete)."""
    if name.startswith(".tmp") and len(name) == 10 and name[4:].isalnum():
        return True
    _, sep, pid = name.rpartition(".tmp")
    return name.startswith(".") and bool(sep) and pid.isdigit()


def _remove_stale_temps(folder: Path) -> None:
    """Temporary files a killed run left in its output folder."""
    if folder.is_dir():
        for f in folder.iterdir():
            if not f.is_dir() and _is_temp(f.name):
                f.unlink()


# ----------------------------------------------------------------- stages
def _bar(total: int, desc: str, progress: bool, initial: int = 0):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, disable=not progress, dynamic_ncols=True, leave=True)


@torch.no_grad()
def _backbone_features(model: DRDCModel, images: torch.Tensor, batch: int = 32) -> torch.Tensor:
    dev = next(model.parameters()).device
    return torch.cat([model.base.backbone(images[i:i + batch].to(dev)) for i in range(0, len(images), batch)])


def _train_base(model, feats, cfg, state, opts, report, progress, save) -> None:
    tc = cfg.train
    opt = opts["base"]
    model.base.transformer.train()
    bar = _bar(tc.base_epochs, "base model", progress, state.info["base_epoch"])
    for epoch in range(state.info["base_epoch"], tc.base_epochs):
        torch.manual_seed(tc.seed * 1_000_003 + epoch)
        order = torch.randperm(len(feats))
        total = 0.0
        for i in range(0, len(feats), tc.batch_size):
            f = feats[order[i:i + tc.batch_size]]
            loss = F.mse_loss(model.base.transformer(f), f)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            state.consistent = False  # until the epoch is counted
            opt.step()
            total += float(loss.detach()) * len(f)
        report.base_losses.append(total / len(feats))
        state.info["base_epoch"] = epoch + 1
        state.consistent = True
        save()
        bar.set_postfix(loss=f"{report.base_losses[-1]:.4f}")
        bar.update(1)
    bar.close()
    model.base.transformer.eval()


def unet_batch(images: torch.Tensor, cfg: ModelConfig, schedule_ab: torch.Tensor, gen: torch.Generator):
    """One training batch: (U-Net input N×6×s×s, timesteps N, target N×3×s×s)."""
    d, tc = cfg.diffusion, cfg.train
    n = images.shape[0]
    x = images
    crop = tc.crop_size or cfg.image_size
    if crop < cfg.image_size:
        ys = torch.randint(0, cfg.image_size - crop + 1, (n,), generator=gen)
        xs = torch.randint(0, cfg.image_size - crop + 1, (n,), generator=gen)
        x = torch.stack([img[:, y:y + crop, xx:xx + crop] for img, y, xx in zip(images, ys.tolist(), xs.tolist())])
    grids = [g for g in d.train_grid_sizes if crop % g == 0 and g < crop] or [g for g in d.grid_sizes if crop % g == 0]
    m = random_known_masks(n, crop, grids, d.train_num_sets, gen)
    t = torch.randint(0, d.train_t_max, (n,), generator=gen)
    ab = schedule_ab[t].view(n, 1, 1, 1)
    eps = torch.randn(x.shape, generator=gen)
    fill = torch.randn(x.shape, generator=gen)
    c = m * x + (1 - m) * fill
    if d.objective == "eps":
        xt = ab.sqrt() * x + (1 - ab).sqrt() * eps
        target = eps
    else:  # "aligned": start from the condition, target whose implied x̂0 is the clean image
        xt = ab.sqrt() * c + (1 - ab).sqrt() * eps
        target = (xt - ab.sqrt() * x) / (1 - ab).sqrt()
    return torch.cat([xt, c], 1), t.float(), target


LOSS_READ_EVERY = 50  # U-Net iterations between reads of the loss (each read waits for the device)


def _unet_batch_for(it: int, images: torch.Tensor, cfg: ModelConfig, ab: torch.Tensor, pin: bool):
    """Iteration ``it``'s batch, from its own generator (so batches can be built ahead, in any
    thread, and a resumed run draws the same ones)."""
    gen = torch.Generator().manual_seed(cfg.train.seed * 7_919 + it)
    idx = torch.randint(0, len(images), (cfg.train.batch_size,), generator=gen)
    batch = unet_batch(images[idx], cfg, ab, gen)
    return tuple(v.pin_memory() for v in batch) if pin else batch


def _train_unet(model, images, cfg, state, opts, report, progress, save) -> None:
    """The U-Net loop. The next batch is built on the CPU in a worker thread while the device
    trains on the current one (pinned memory, asynchronous copies on CUDA), and the loss is read
    back every LOSS_READ_EVERY iterations and at snapshots, not at every step."""
    from concurrent.futures import ThreadPoolExecutor

    tc = cfg.train
    opt = opts["unet"]
    schedule_ab = Schedule.from_config(cfg.diffusion).alphas_cumprod
    ab = torch.from_numpy(schedule_ab).float()
    dev = next(model.unet.parameters()).device
    weight = torch.from_numpy(min_snr_weight(schedule_ab, cfg.diffusion.min_snr_gamma)).float().to(dev)
    pin = dev.type == "cuda"
    model.unet.train()
    bar = _bar(tc.unet_iters, "diffusion U-Net", progress, state.info["unet_iter"])
    running, pending = None, []
    start = state.info["unet_iter"]

    def read_losses() -> None:
        nonlocal running
        if not pending:
            return
        for lv in torch.stack(pending).tolist():  # one wait for the device
            running = lv if running is None else 0.98 * running + 0.02 * lv
            report.unet_losses.append(lv)
        bar.set_postfix(loss=f"{running:.4f}")
        pending.clear()

    with ThreadPoolExecutor(max_workers=1) as pool:
        ahead = pool.submit(_unet_batch_for, start, images, cfg, ab, pin) if start < tc.unet_iters else None
        for it in range(start, tc.unet_iters):
            torch.manual_seed(tc.seed * 1_000_003 + 500_000 + it)
            inp, t, target = (v.to(dev, non_blocking=pin) for v in ahead.result())
            if it + 1 < tc.unet_iters:
                ahead = pool.submit(_unet_batch_for, it + 1, images, cfg, ab, pin)
            per_sample = (model.unet(inp, t) - target).pow(2).mean((1, 2, 3))
            loss = (weight[t.long()] * per_sample).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.unet.parameters(), 1.0)
            state.consistent = False  # until the step is counted
            opt.step()
            if state.ema is not None:
                state.ema.update(model.unet, it)
            snapshot = state.count_iteration(it)
            pending.append(loss.detach())
            if snapshot or len(pending) >= LOSS_READ_EVERY:
                read_losses()
            if snapshot:
                save()
            bar.update(1)
    read_losses()
    bar.close()
    model.unet.eval()


@torch.no_grad()
def calibrate(model: DRDCModel, images: torch.Tensor, batch_size: int = 8, progress: bool = False,
              loop: str = "torch", device: str | torch.device | None = None,
              log: Callable[[str], None] = print) -> dict | None:
    """Measure the normalisation statistics on normal images and store them in the model (one
    loop pass: drdc_trt.tuning.statistics). With ``fusion.select = "synthetic"`` first choose λ
    and the heat normalisation on those images with synthetic anomalies pasted in
    (``drdc_trt.tuning.select``), store them in the model's config and return the selection table."""
    device = device if device is not None else next(model.parameters()).device
    f = model.cfg.fusion
    det = Detector.from_model(model, device=device, loop=loop)
    raw = tuning.raw_maps(det, images, batch_size, progress)
    selection = None
    if f.select == "synthetic":
        selection = tuning.select(model.cfg, det, images, batch_size, good_raw=raw)
        f.heat_norm, f.lam = selection["heat_norm"], selection["lam"]
        log(f"chosen on {len(images)} held-out normal images with synthetic anomalies: "
            f"heat_norm={f.heat_norm}, λ={f.lam:g}")
    model.stats, _ = tuning.statistics(model.cfg, images, raw, f.heat_norm, f.lam)
    return selection


# Settings that change inference only: a trained model may be re-calibrated with other values.
INFERENCE_KEYS = ("diffusion.t0", "diffusion.num_steps", "diffusion.num_sets", "diffusion.grid_sizes",
                  "diffusion.margin", "diffusion.clip_x0", "fusion.pool_factors", "fusion.mean_filter",
                  "fusion.lam", "fusion.heat_norm", "fusion.diff_norm", "fusion.select",
                  "fusion.score_window_at_224")


def recalibrate(model_dir: str | Path, data_root: str | Path, out: str | Path, changes: dict,
                categories: Sequence[str] | None = None, progress: bool = True,
                log: Callable[[str], None] = print, device: str | torch.device = "cpu") -> DRDCModel:
    """A trained checkpoint with other inference settings: the statistics (and λ, with
    heat normalisation, with ``fusion.select = "synthetic"``) measured again on the held-out normal images the
    training split set aside; the weights are copied unchanged. Writes a checkpoint to ``out``."""
    from .checkpoint import load_checkpoint

    bad = sorted(set(changes) - set(INFERENCE_KEYS))
    if bad:
        raise ValueError(f"{bad}: not inference settings; re-calibration may change only {list(INFERENCE_KEYS)}")
    model = load_checkpoint(model_dir)
    if model.cfg.method != "drdc":
        raise ValueError(f"{model_dir}: re-calibration changes DRDC's inference settings; this is a "
                         f"{model.cfg.method} model")
    model.cfg = model.cfg.replace(**changes)
    data = load_split(data_root, "train", model.cfg.image_size, categories, progress=progress)
    train_idx, calib_idx = split_calibration(len(data), model.cfg.train.calib_fraction, model.cfg.train.seed)
    calib = data.images[calib_idx] if calib_idx else data.images[train_idx]
    model.to(device)
    selection = calibrate(model, calib, batch_size=max(1, model.cfg.train.batch_size // 2), progress=progress,
                          log=log)
    out = Path(out)
    save_checkpoint(model, out)
    report = {"source": str(model_dir), "changes": changes, "calibration_images": len(calib),
              "selection": selection}
    atomic_write_text(out / "calibration_report.json", json.dumps(report, indent=2))
    log(f"re-calibrated checkpoint written to {out}")
    return model


@contextmanager
def snapshot_on_interrupt(state: TrainState, save: Callable[[], None], log: Callable[[str], None]):
    """Every method's Ctrl-C rule: between steps the progress is saved as a snapshot; inside an
    epoch or an optimizer step (``state.consistent`` False: the weights hold a partly applied
    step) the last snapshot is kept. Re-raises either way."""
    try:
        yield
    except KeyboardInterrupt:
        if state.consistent:
            save()
            log(f"interrupted: progress saved in {state.dir}; run the same command to resume")
        else:
            log(f"interrupted: the last snapshot in {state.dir} is kept; run the same command to resume")
        raise


def training_split(data_root: str | Path, cfg: ModelConfig, categories: Sequence[str] | None, progress: bool,
                   log: Callable[[str], None] = print) -> tuple[torch.Tensor, torch.Tensor]:
    """(training images, held-out calibration images) of ``data_root``'s normal training split,
    as every method's training divides it (``split_calibration``); logs the counts."""
    tc = cfg.train
    data = load_split(data_root, "train", cfg.image_size, categories, progress=progress)
    train_idx, calib_idx = split_calibration(len(data), tc.calib_fraction, tc.seed)
    images = data.images[train_idx]
    log(f"data: {len(data)} normal images from {sorted({s.category for s in data.samples})}, "
        f"{len(train_idx)} for training, {len(calib_idx) or len(images)} for calibration")
    return images, (data.images[calib_idx] if calib_idx else images)


def split_calibration(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train indices, calibration indices); at least one of each when n ≥ 2."""
    k = min(max(1, round(n * fraction)), n - 1) if n >= 2 and fraction > 0 else 0
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(perm[k:]), sorted(perm[:k])


def train(data_root: str | Path, out: str | Path, cfg: ModelConfig, categories: Sequence[str] | None = None,
          progress: bool = True, log: Callable[[str], None] = print,
          device: str | torch.device = "cpu") -> tuple[DRDCModel, TrainReport]:
    """Train on ``device`` (the data stay on the CPU; batches travel); resumable, see the module doc."""
    cfg.validate()
    if cfg.method == "diffusionad":  # the engine's second method, same folder layout and snapshots
        from .models.diffusionad.train import train as train_diffusionad

        return train_diffusionad(data_root, out, cfg, categories, progress, log, device)
    if cfg.method == "glad":
        from .models.glad.train import train as train_glad

        return train_glad(data_root, out, cfg, categories, progress, log, device)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tc = cfg.train
    torch.manual_seed(tc.seed)
    report = TrainReport()
    t_start = time.perf_counter()
    images, calib = training_split(data_root, cfg, categories, progress, log)

    model = DRDCModel(cfg).to(device)
    opts = {
        "base": torch.optim.AdamW(model.base.transformer.parameters(), lr=tc.base_lr, weight_decay=tc.weight_decay),
        "unet": torch.optim.AdamW(model.unet.parameters(), lr=tc.unet_lr, weight_decay=tc.weight_decay),
    }
    state = TrainState(out, cfg)
    if tc.ema_decay > 0:
        state.ema = EMA(model.unet, tc.ema_decay)
    if state.load(model, opts):
        report.resumed_from = dict(state.info)
        log(f"resuming from {state.dir}: base epoch {state.info['base_epoch']}/{tc.base_epochs}, "
            f"U-Net iteration {state.info['unet_iter']}/{tc.unet_iters}")

    def save() -> None:
        state.save(model, opts)

    with snapshot_on_interrupt(state, save, log):
        t0 = time.perf_counter()
        if state.info["base_epoch"] < tc.base_epochs:
            feats = _backbone_features(model, images)
            _train_base(model, feats, cfg, state, opts, report, progress, save)
        report.seconds["base"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        if state.info["unet_iter"] < tc.unet_iters:
            _train_unet(model, images, cfg, state, opts, report, progress, save)
        report.seconds["unet"] = time.perf_counter() - t0
    if state.ema is not None:  # inference and export use the averaged U-Net
        state.ema.copy_to(model.unet)
    t0 = time.perf_counter()
    model.eval()
    _remove_stale_temps(out)
    selection = calibrate(model, calib, batch_size=max(1, tc.batch_size // 2), progress=progress, log=log)
    report.seconds["calibration"] = time.perf_counter() - t0
    report.seconds["total"] = time.perf_counter() - t_start
    save_checkpoint(model, out)
    atomic_write_text(out / "train_report.json", json.dumps({
        "base_losses": report.base_losses, "unet_loss_first": report.unet_losses[:1],
        "unet_loss_last50_mean": (sum(report.unet_losses[-50:]) / max(1, len(report.unet_losses[-50:]))),
        "seconds": report.seconds, "resumed_from": report.resumed_from, "selection": selection,
    }, indent=2))
    log(f"checkpoint written to {out} ({report.seconds['total']:.0f} s)")
    return model, report
