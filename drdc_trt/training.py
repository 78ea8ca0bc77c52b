"""What every method's training shares: the resumable snapshot of a run, the progress bars, the
split of the normal training images into training and calibration, Ctrl-C handling.

Plain PyTorch, fixed seeds. Progress is kept in ``<out>/train_state/``
(weights, optimizer state, counters — safetensors + JSON, replaced together as one
snapshot, see TrainState) so an interrupted or killed run resumes where it stopped;
every epoch / iteration is seeded from its index, so a resumed run follows the same
trajectory as an uninterrupted one. Running again with a larger ``train.unet_iters`` or
``train.base_epochs`` extends a run. A method's finished checkpoint is written to ``<out>/``.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from safetensors.torch import load_file, save_file

from drdc_trt import distributed
from drdc_trt.checkpoint import CONFIG, atomic_write_text
from drdc_trt.settings import ModelConfig
from drdc_trt.data import load_split
from drdc_trt.ema import EMA

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

    def load(self, model: torch.nn.Module, opts: dict[str, torch.optim.Optimizer]) -> bool:
        """Resume from the snapshot in ``dir`` if there is one (True). In a distributed run rank 0
        finishes or drops a half-done one first, then every rank reads the same files."""
        if distributed.is_main():
            self.recover()
        distributed.barrier()
        path = self.dir / "state.json"
        info = json.loads(path.read_text()) if path.is_file() else None
        distributed.same_on_all(info, f"snapshots in {self.dir} (--out must be a folder every node sees)")
        if info is None:
            return False
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

    def save(self, model: torch.nn.Module, opts: dict[str, torch.optim.Optimizer]) -> None:
        """Write a snapshot (rank 0 of a distributed run: the ranks hold the same state). The other
        ranks do not wait for it: nothing reads a snapshot during the run."""
        if not distributed.is_main():
            return
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

    def check_ranks_agree(self, model: torch.nn.Module) -> None:
        """A distributed run's ranks end training with the same weights and EMA (the checkpoint is
        rank 0's, the calibration every rank's)."""
        ema = {} if self.ema is None else {f"ema.{k}": v for k, v in self.ema.shadow.items()}
        distributed.check_identical({**model.trainable_state_dict(), **ema}, "the trained weights and EMA")


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


def remove_stale_temps(folder: Path) -> None:
    """Temporary files a killed run left in its output folder (rank 0's job in a distributed run)."""
    if folder.is_dir() and distributed.is_main():
        for f in folder.iterdir():
            if not f.is_dir() and _is_temp(f.name):
                f.unlink()


# ----------------------------------------------------------------- stages
def bar(total: int, desc: str, progress: bool, initial: int = 0):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, disable=not progress, dynamic_ncols=True, leave=True)


LOSS_READ_EVERY = 50  # U-Net iterations between reads of the loss (each read waits for the device)


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


def recalibrate_checkpoint(model_dir: str | Path, data_root: str | Path, out: str | Path, changes: dict,
                           method: str, keys: Sequence[str], calibrate: Callable[..., dict],
                           categories: Sequence[str] | None = None, progress: bool = True,
                           log: Callable[[str], None] = print, device: str | torch.device = "cpu"):
    """A trained ``method`` checkpoint with other inference settings (``changes``, only ``keys``):
    ``calibrate(model, calib_images, batch_size=, progress=, log=) -> dict`` runs again on the held-out
    normal images the training split set aside; the weights are copied unchanged. Writes a
    checkpoint and its calibration_report.json to ``out``; returns the model."""
    from drdc_trt.checkpoint import save_checkpoint
    from drdc_trt.loading import load_checkpoint

    bad = sorted(set(changes) - set(keys))
    if bad:
        raise ValueError(f"{bad}: not inference settings; re-calibration may change only {list(keys)}")
    model = load_checkpoint(model_dir)
    if model.cfg.method != method:
        raise ValueError(f"{model_dir}: re-calibration changes {method}'s inference settings; this is a "
                         f"{model.cfg.method} model")
    model.cfg = model.cfg.replace(**changes)
    _, calib = training_split(data_root, model.cfg, categories, progress, log=lambda _: None)
    model.to(device)
    result = calibrate(model, calib, batch_size=max(1, model.cfg.train.batch_size // 2), progress=progress,
                       log=log)
    out = Path(out)
    save_checkpoint(model, out)
    report = {"source": str(model_dir), "changes": changes, "calibration_images": len(calib), "selection": result}
    atomic_write_text(out / "calibration_report.json", json.dumps(report, indent=2))
    log(f"re-calibrated checkpoint written to {out}")
    return model
