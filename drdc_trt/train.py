"""Training entry: a config's method trains through its registered entry point (the registry,
drdc_trt.methods); every method writes the same checkpoint folder layout and resumes the same way
(drdc_trt.training).

``drdc train`` is the command below; ``python -m drdc_trt.train`` takes the same options, and is
what torchrun starts on every process of a distributed run (``drdc train --nproc N``, or
``torchrun [node flags] -m drdc_trt.train …``; drdc_trt.distributed, docs/training.md).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import click

from drdc_trt import methods
from drdc_trt.cli_common import MethodChoice, categories_of, command_args, fail, make_config
from drdc_trt.config import PRESETS
from drdc_trt.settings import ModelConfig


def train(data_root: str | Path, out: str | Path, cfg: ModelConfig, categories: Sequence[str] | None = None,
          progress: bool = True, log: Callable[[str], None] = print, device="cpu"):
    """Train ``cfg.method``'s model on ``device``: (model, report); resumable, the checkpoint is written
    to ``out``. Under torchrun (WORLD_SIZE > 1) every process is one rank of a data-parallel run:
    rank 0 prints, shows progress and writes the snapshots and the checkpoint."""
    from drdc_trt import distributed

    cfg.validate()
    with distributed.session(device) as dev:
        if cfg.train.batch_size < distributed.world():
            raise ValueError(f"train.batch_size={cfg.train.batch_size} is the global batch; {distributed.world()} "
                             "processes need at least one row each")
        if not distributed.is_main():
            progress, log = False, lambda *_: None
        return methods.get(cfg.method).entry("train")(data_root, out, cfg, categories, progress, log, dev)


@click.command(name="train", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--data", "data_root", required=True, type=click.Path(), help="MVTec-layout dataset folder.")
@click.option("--out", required=True, type=click.Path(), help="Checkpoint folder (resumes if it holds a run).")
@click.option("--preset", default="fast", show_default=True, type=click.Choice(PRESETS), help="Model size.")
@click.option("--config", "config_file", type=click.Path(), help="config.json to start from instead of a preset.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a setting, e.g. train.unet_iters=500.")
@click.option("--categories", help="Comma-separated categories (default: all found).")
@click.option("--device", default="cpu", show_default=True, help="Torch device to train on (cpu, cuda).")
@click.option("--method", type=MethodChoice(), default=None,
              help="drdc (base model + U-Net) or diffusionad (U-Net + segmentation net, the preset's sizes; "
                   "docs/diffusionad.md) or glad (U-Net with adaptive denoising steps; docs/glad.md) "
                   "[default: drdc, or the --config file's].")
@click.option("--feature-cache", metavar="DIR|off", default=None,
              help="Where the frozen backbone's features of the training images are kept between runs "
                   "(keyed by image, weights and size; drdc_trt/feature_cache.py), or off "
                   "[default: $DRDC_FEATURE_CACHE, else ~/.cache/drdc_trt/features].")
@click.option("--nproc", default=1, show_default=True, type=click.IntRange(min=1),
              help="Data-parallel processes on this machine: starts torchrun --standalone --nproc-per-node N "
                   "(gloo on cpu, NCCL with --device cuda, one GPU each); train.batch_size stays the global "
                   "batch. Several nodes: docs/training.md.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.pass_context
def command(ctx, data_root, out, preset, config_file, sets, categories, device, method, feature_cache, nproc, quiet):
    """Train a model: DRDC (base model, U-Net, fusion statistics), DiffusionAD or GLAD (--method)."""
    from drdc_trt.data import DatasetError
    from drdc_trt.feature_cache import ENV

    cfg = make_config(preset, config_file, sets, method)
    if feature_cache is not None:
        os.environ[ENV] = feature_cache
    try:
        if nproc > 1:
            from drdc_trt import distributed

            distributed.check_nproc(nproc, device)
            distributed.launch(nproc, "drdc_trt.train", command_args(ctx, ("nproc",)))
        train(data_root, out, cfg, categories_of(categories), progress=not quiet, device=device)
    except (DatasetError, ValueError) as e:
        fail(e)


def main() -> None:
    """``python -m drdc_trt.train``: the process's errors go to torchrun's failure report."""
    from torch.distributed.elastic.multiprocessing.errors import record

    record(command)(prog_name="python -m drdc_trt.train")


if __name__ == "__main__":
    main()
