"""`drdc train` killed with SIGKILL again and again, then resumed: it ends where an
uninterrupted run ends, bit for bit, and leaves no half-written file behind.

The kills are placed at seeded points of the run's progress (read from the committed
``train_state/state.json``): some a random moment into an epoch or a U-Net iteration,
some the moment a state snapshot starts being written (its first ``.next`` file
appears), one the moment the finished checkpoint's first temporary file appears.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from drdc_trt.config import preset
from drdc_trt.train import train


ARGS = ["--preset", "tiny", "--quiet", "--set", "train.base_epochs=4", "--set", "train.unet_iters=40",
        "--set", "train.checkpoint_every=2", "--set", "train.ema_decay=0.9"]
TOTAL = 4 + 40  # progress = base epochs + U-Net iterations done
# Temporary files of drdc_trt.checkpoint's atomic writers (.<name>.tmp<pid>) and of safetensors'
# save_file (.tmp and six random characters, renamed into place when complete).
TEMP = re.compile(r"^(\..+\.tmp\d+|\.tmp[A-Za-z0-9]{6})$")
POLL_S = 0.0002


def _start(data: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "drdc_trt.cli", "train", "--data", str(data), "--out", str(out),
                             *ARGS], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _progress(out: Path) -> int:
    try:
        info = json.loads((out / "train_state" / "state.json").read_text())
    except FileNotFoundError:
        return 0
    return info["base_epoch"] + info["unet_iter"]


def _leftover(name: str) -> bool:
    return name.endswith(".next") or name == "commit.json" or bool(TEMP.match(name))


def _leftovers(folder: Path) -> list[str]:
    """Files a killed write leaves: uncommitted snapshot files, a snapshot record, temporaries."""
    if not folder.is_dir():
        return []
    return sorted(str(f.relative_to(folder)) for f in folder.rglob("*") if _leftover(f.name))


def _committed_files_load(out: Path) -> int:
    """Every file that is not a leftover loads; returns how many were checked."""
    n = 0
    for f in sorted(out.rglob("*")):
        if not f.is_file() or str(f.relative_to(out)) in _leftovers(out):
            continue
        if f.suffix == ".safetensors":
            load_file(str(f))
        elif f.suffix == ".json":
            json.loads(f.read_text())
        n += 1
    return n


def _wait_for(proc: subprocess.Popen, ready) -> bool:
    """Poll until ready() (True) or until the process exits by itself (False)."""
    while proc.poll() is None:
        if ready():
            return True
        time.sleep(POLL_S)
    return False


def _kill(proc: subprocess.Popen) -> bool:
    """SIGKILL; True if that is what ended the process."""
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return proc.returncode == -signal.SIGKILL


def _kill_when(proc: subprocess.Popen, ready) -> bool:
    return _wait_for(proc, ready) and _kill(proc)


def _writing(folder: Path):
    """True while a file of ``folder`` is being written: a snapshot's files or record, a temporary
    file of checkpoint's atomic writers or of safetensors' save_file."""
    return lambda: any(_leftover(n) for n in _listdir(folder))


def _listdir(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except FileNotFoundError:
        return []


def _safetensors_files(out: Path) -> dict[str, tuple[dict, dict]]:
    res = {}
    for f in sorted(out.rglob("*.safetensors")):
        with safe_open(str(f), "pt") as fh:
            meta = fh.metadata()
        res[str(f.relative_to(out))] = (load_file(str(f)), meta)
    return res


@pytest.mark.slow  # ~1 min; .ci/run runs the slow tests in a second pass
def test_sigkilled_training_resumes_to_the_same_bits(synthetic_root, tmp_path, capsys):
    ref = tmp_path / "uninterrupted"
    r = _start(synthetic_root, ref)
    log, _ = r.communicate(timeout=300)
    assert r.returncode == 0, log

    out, state = tmp_path / "killed", tmp_path / "killed" / "train_state"
    rng = random.Random(20)
    # (kind, progress the run reaches first): "moment" kills a random moment later, inside an
    # epoch or an iteration; "snapshot" the moment the next state snapshot's first file appears;
    # "final" the moment the finished checkpoint's first temporary file appears. A kill of the
    # last two kinds that comes too late to leave the write unfinished is counted and tried again.
    plan = [("moment", 1), ("snapshot", rng.randint(2, 3)), ("moment", rng.randint(6, 18)),
            ("snapshot", rng.randint(20, 26)), ("moment", rng.randint(28, 32)), ("snapshot", rng.randint(34, 38)),
            ("final", TOTAL)]
    kills, tries = [], 0
    for kind, target in plan:
        while True:
            tries += 1
            assert tries <= len(plan) + 12, kills
            before = _progress(out)
            proc = _start(synthetic_root, out)
            if kind == "final":
                # Temporaries of an earlier kill are removed before the checkpoint is written.
                stale = set(_listdir(out))
                ready = lambda: any(_leftover(n) and n not in stale for n in _listdir(out))
            else:
                # Progress past what the run started from: it has loaded (and cleaned) the state.
                goal = max(target, before + 1)
                assert _wait_for(proc, lambda: _progress(out) >= goal), proc.communicate()[0]
                ready = _writing(state)
                if kind == "snapshot":  # let the snapshot that reached the goal finish first
                    assert _wait_for(proc, lambda: not ready()), proc.communicate()[0]
            if kind == "moment":
                time.sleep(rng.uniform(0.0, 0.1))
                killed = _kill(proc)
            else:
                killed = _kill_when(proc, ready)
            text = proc.stdout.read()
            proc.stdout.close()
            if not killed:  # the final write ended before the poll saw it: the run is complete, run it again
                assert kind == "final" and proc.returncode == 0, text
                continue
            assert before == 0 or "resuming from" in text, text
            left = _leftovers(out)
            landed = {"moment": "", "snapshot": "train_state/", "final": ""}[kind]
            hit = kind == "moment" or any(n.startswith(landed) and "/" not in n[len(landed):] for n in left)
            kills.append((kind, _progress(out), bool(left)))
            assert _committed_files_load(out) >= (0 if before == 0 else 6)
            if hit:
                break

    proc = _start(synthetic_root, out)
    text, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, text
    assert "resuming from" in text

    assert _leftovers(out) == []
    for name in ("config.json", "stats.json", "train_state/state.json", "train_state/config.json"):
        assert (out / name).read_text() == (ref / name).read_text(), name
    got, want = _safetensors_files(out), _safetensors_files(ref)
    assert sorted(got) == sorted(want) and len(want) == 6, sorted(got)  # checkpoint (2) + train_state (4)
    for name, (tensors, meta) in want.items():
        assert got[name][1] == meta, name
        assert tensors.keys() == got[name][0].keys(), name
        for k, v in tensors.items():
            assert torch.equal(v, got[name][0][k]), f"{name}: {k}"

    in_state = sum(1 for k, _, hit in kills if k == "snapshot" and hit)
    assert in_state == 3 and kills[-1][0] == "final" and kills[-1][2], kills
    with capsys.disabled():
        print(f"\nkilled training: {len(kills)} SIGKILLs survived: {in_state} inside a state snapshot write, "
              f"1 inside the final checkpoint write, the others during an epoch / iteration or just after a "
              f"write; (kind, progress after the kill, left a write unfinished): {kills}; "
              "final weights equal the uninterrupted run's bit for bit")


@pytest.mark.parametrize("step", [10, 15])  # the tiny preset: 2 base epochs of 6 steps, then the U-Net's
def test_interrupt_inside_an_optimizer_step_keeps_the_last_snapshot(step, synthetic_root, tiny_checkpoint,
                                                                    tmp_path, monkeypatch):
    """Ctrl-C right after an optimizer step, before the step is counted: the weights are then
    ahead of the counters and must not be saved as a snapshot; the resumed run still ends on the
    uninterrupted run's weights (tiny_checkpoint is that run)."""
    original, calls = torch.optim.AdamW.step, {"n": 0}

    def step_then_interrupt(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == step:
            raise KeyboardInterrupt
        return out

    monkeypatch.setattr(torch.optim.AdamW, "step", step_then_interrupt)
    logs = []
    with pytest.raises(KeyboardInterrupt):
        train(synthetic_root, tmp_path, preset("tiny"), progress=False, log=logs.append)
    monkeypatch.setattr(torch.optim.AdamW, "step", original)
    train(synthetic_root, tmp_path, preset("tiny"), progress=False, log=logs.append)
    a, b = load_file(str(tiny_checkpoint / "model.safetensors")), load_file(str(tmp_path / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:3]
    assert any("the last snapshot" in line for line in logs) and any("resuming from" in line for line in logs), logs
