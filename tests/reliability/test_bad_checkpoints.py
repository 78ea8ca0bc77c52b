"""Bad checkpoints (weights, statistics, config) are refused clearly.

Rows of the bad-input table (bad_inputs.py: the contract, the row type, the table's test):
damaged copies of the session's tiny checkpoint fed to ``load_checkpoint``.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Callable

from bad_inputs import Case, refusal_test, registrar
from drdc_trt.checkpoint import CheckpointError
from drdc_trt.loading import load_checkpoint

CASES: list[Case] = []
case = registrar(CASES)


# --------------------------------------------------------------------------- builders
def _edit_json(path: Path, edit: Callable[[dict], None]) -> Path:
    d = json.loads(path.read_text())
    edit(d)
    path.write_text(json.dumps(d))
    return path.parent


# --------------------------------------------------------------------------- checkpoints
@case("checkpoint-missing-folder", CheckpointError, "no_ckpt", "does not exist")
def _(env):
    load_checkpoint(env.path("no_ckpt"))


@case("checkpoint-corrupt-weights", CheckpointError, "model.safetensors", "unreadable")
def _(env):
    ck = env.checkpoint()
    data = bytearray((ck / "model.safetensors").read_bytes())
    data[8:40] = b"\xff" * 32  # the JSON header
    (ck / "model.safetensors").write_bytes(bytes(data))
    load_checkpoint(ck)


@case("checkpoint-truncated-weights", CheckpointError, "model.safetensors", "unreadable")
def _(env):
    ck = env.checkpoint()
    data = (ck / "model.safetensors").read_bytes()
    (ck / "model.safetensors").write_bytes(data[: len(data) // 2])
    load_checkpoint(ck)


@case("checkpoint-header-length-lies", CheckpointError, "model.safetensors", "unreadable")
def _(env):
    ck = env.checkpoint()
    data = (ck / "model.safetensors").read_bytes()
    (ck / "model.safetensors").write_bytes(struct.pack("<Q", 1 << 40) + data[8:])
    load_checkpoint(ck)


@case("checkpoint-truncated-pixel-stats", CheckpointError, "pixel_stats.safetensors")
def _(env):
    ck = env.checkpoint()
    data = (ck / "pixel_stats.safetensors").read_bytes()
    (ck / "pixel_stats.safetensors").write_bytes(data[:-7])
    load_checkpoint(ck)


@case("checkpoint-config-missing-field", CheckpointError, "config.json", "fusion.lam")
def _(env):
    ck = env.checkpoint()
    load_checkpoint(_edit_json(ck / "config.json", lambda c: c["fusion"].pop("lam")))


@case("checkpoint-config-lam-out-of-range", CheckpointError, "config.json", "fusion.lam")
def _(env):
    ck = env.checkpoint()
    load_checkpoint(_edit_json(ck / "config.json", lambda c: c["fusion"].__setitem__("lam", 1.5)))


@case("checkpoint-config-wrong-type", CheckpointError, "config.json", "config.image_size", "'32'")
def _(env):
    ck = env.checkpoint()
    load_checkpoint(_edit_json(ck / "config.json", lambda c: c.__setitem__("image_size", "32")))


@case("checkpoint-stats-missing-field", CheckpointError, "stats.json", "diff_std")
def _(env):
    ck = env.checkpoint()
    load_checkpoint(_edit_json(ck / "stats.json", lambda s: s.pop("diff_std")))


@case("checkpoint-stats-zero-std", CheckpointError, "stats.json", "base_std")
def _(env):
    ck = env.checkpoint()
    load_checkpoint(_edit_json(ck / "stats.json", lambda s: s.__setitem__("base_std", 0.0)))


# --------------------------------------------------------------------------- the table
test_bad_input_is_refused_clearly = refusal_test(CASES)
