"""What the command groups of ``drdc`` share: option parsing (--set, --factor, --categories), the
config a command starts from, clear failures, output folders, image lists, the kNN options, and the
command line recorded in result files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .config import PRESETS


class MethodChoice(click.Choice):
    """``--method``: the registered methods (and ``extra`` words), read again when a command line is
    parsed, so a method registered after this module was imported is a choice too."""

    def __init__(self, extra: tuple[str, ...] = ()):
        self.extra = tuple(extra)
        super().__init__(self._names())

    def _names(self) -> list[str]:
        from . import methods

        return [*methods.names(), *self.extra]

    def convert(self, value, param, ctx):
        self.choices = self._names()
        return super().convert(value, param, ctx)


def parse_sets(values: tuple[str, ...]) -> dict:
    out = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE, e.g. diffusion.t0=150", param_hint="--set")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def make_config(preset: str, config_file: str | None, sets: tuple[str, ...], method: str | None = None):
    """A preset's config for ``method`` (default drdc), or a config file's (whose method ``method``,
    when given, must be); then the --set overrides."""
    from drdc_trt.settings import ModelConfig
    from drdc_trt.config import preset as make_preset

    cfg = make_preset(preset, method or "drdc")
    if config_file:
        try:
            cfg = ModelConfig.from_dict(json.loads(Path(config_file).read_text()))
        except (OSError, json.JSONDecodeError, ValueError) as e:
            raise click.BadParameter(f"{config_file}: {e}", param_hint="--config") from None
        if method is not None and cfg.method != method:
            raise click.BadParameter(f"{config_file} has method={cfg.method!r}, not {method!r}", param_hint="--method")
    try:
        return cfg.replace(**parse_sets(sets)) if sets else cfg.validate()
    except (KeyError, ValueError, TypeError) as e:
        raise click.BadParameter(str(e), param_hint="--set") from None


def categories_of(value: str | None):
    return [c for c in value.split(",") if c] if value else None


def fail(e: Exception) -> None:
    click.echo(f"error: {e}", err=True)
    sys.exit(2)


def out_folder(out) -> Path:
    """--out as the folder a command writes into, checked before any work: an existing file there,
    or a file where one of its parent folders should be, is refused in one line (exit 2)."""
    path = Path(out)
    for q in (path, *path.parents):
        if q.exists() and not q.is_dir():
            fail(ValueError(f"--out {path}: {q} is a file, not a folder; give a folder to write the results into"))
    return path


def expand_images(paths) -> list[Path]:
    from .data.folder import IMAGE_SUFFIXES

    files = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            files.append(p)
        else:
            raise click.BadParameter(f"{p}: no such file or folder", param_hint="IMAGES")
    if not files:
        raise click.BadParameter("no images found", param_hint="IMAGES")
    return files


def knn_options(f):
    f = click.option("--knn-bank-size", default=16384, show_default=True, type=click.IntRange(min=1),
                     help="kNN: memory-bank patches kept.")(f)
    f = click.option("--knn-sampling", default="greedy", show_default=True,
                     type=click.Choice(["greedy", "random", "all"]),
                     help="kNN: greedy coreset, random subset, or every training patch.")(f)
    f = click.option("--knn-stride", default="8", show_default=True, type=click.Choice(["8", "16"]),
                     help="kNN: patch grid S/stride (stride-8 and -16 stages either way).")(f)
    return f


def knn_config(bank_size, sampling, stride, seed):
    from .models.knn import KNNConfig

    return KNNConfig(stride=int(stride), bank_size=bank_size, sampling=sampling, seed=seed).validate()


def scalar(text: str):
    """A number as a number, any other word as a string (fusion.heat_norm=none,image_std)."""
    text = text.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_factor(values: tuple[str, ...]) -> dict | None:
    if not values:
        return None
    out = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not raw:
            raise click.BadParameter(f"{item!r}: expected KEY=V1,V2,..., e.g. diffusion.t0=150,250,400",
                                     param_hint="--factor")
        try:  # numbers or words, or a JSON list of values for list settings: diffusion.grid_sizes=[[4,8],[8,16]]
            vals = json.loads(raw) if raw.startswith("[") else [scalar(v) for v in raw.split(",")]
        except json.JSONDecodeError:
            vals = None
        if not isinstance(vals, list) or not vals or "" in vals:
            raise click.BadParameter(f"{item!r}: values must be numbers or words (V1,V2,...) or a JSON list of "
                                     "values ([[4,8],[8,16]])", param_hint="--factor")
        out[key] = tuple(vals)
    return out


def command_args(ctx: click.Context, leave_out: tuple[str, ...] = ()) -> list[str]:
    """The command's options and arguments as given, as an argument list: those that differ from
    their defaults (parameters named in ``leave_out`` left out)."""
    parts = []
    for p in ctx.command.params:
        v = ctx.params.get(p.name)
        if p.name in leave_out or v is None or v == p.default or (p.multiple and not v):
            continue
        if isinstance(p, click.Argument):
            parts += [str(item) for item in (v if p.nargs != 1 else (v,))]
            continue
        opt = max(p.opts, key=len)
        if getattr(p, "is_flag", False):
            if v:
                parts.append(opt)
            continue
        for item in (v if p.multiple else (v,)):
            parts += [opt, str(item)]
    return parts


def invocation(ctx: click.Context) -> str:
    """The command as given, for result files: options that differ from their defaults (--note and
    --command-line, which change no result, left out)."""
    import shlex

    return " ".join(["drdc", ctx.info_name, *map(shlex.quote, command_args(ctx, ("notes", "commands")))])
