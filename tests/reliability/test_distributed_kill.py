"""A rank of a 2-process `drdc train --nproc 2` SIGKILLed mid-run: torchrun ends the job at once,
non-zero, naming the rank; the same command again resumes from the last committed snapshot and
ends bit-identical to an uninterrupted 2-process run. Under `torchrun --max-restarts 1` the same
kill is survived: the restarted ranks resume by themselves and end on the same bits."""

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
from safetensors.torch import load_file

STEPS = dict(base_epochs=3, unet_iters=24)
TRAIN = ["--preset", "tiny", "--quiet", "--set", f"train.base_epochs={STEPS['base_epochs']}", "--set",
         f"train.unet_iters={STEPS['unet_iters']}", "--set", "train.checkpoint_every=3", "--set", "train.ema_decay=0.9"]
TIMEOUT_S = 60  # DRDC_DIST_TIMEOUT_S of these runs: the job must end well within it
ENV = {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "DRDC_DIST_TIMEOUT_S": str(TIMEOUT_S)}


def _drdc_train(data: Path, out: Path) -> subprocess.Popen:
    return _start([sys.executable, "-m", "drdc_trt.cli", "train", "--data", str(data), "--out", str(out), *TRAIN,
                   "--nproc", "2"])


def _torchrun(data: Path, out: Path, *flags: str) -> subprocess.Popen:
    return _start([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", *flags,
                   "-m", "drdc_trt.train", "--data", str(data), "--out", str(out), *TRAIN])


def _start(cmd: list[str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, env={**os.environ, **ENV}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _progress(out: Path) -> int:
    try:
        info = json.loads((out / "train_state" / "state.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return 0
    return info["base_epoch"] + info["unet_iter"]


def _children(pid: int) -> list[int]:
    kids = []
    for p in Path("/proc").iterdir():
        try:
            if p.name.isdigit() and int((p / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(p.name))
        except (OSError, IndexError, ValueError):
            pass
    return kids


def _ranks(launcher: int) -> dict[int, int]:
    """rank → pid of the workers torchrun (``launcher``) started."""
    found = {}
    for pid in _children(launcher):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for item in env:
            if item.startswith(b"RANK="):
                found[int(item[5:])] = pid
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _kill_rank_when(proc: subprocess.Popen, out: Path, goal: int, rank: int, rng: random.Random) -> tuple[int, list[int]]:
    """SIGKILL ``rank`` a random moment after the run's committed progress reaches ``goal``; returns
    (its pid, every worker's pid)."""
    while _progress(out) < goal:
        assert proc.poll() is None, proc.communicate()[0]
        time.sleep(0.005)
    time.sleep(rng.uniform(0.0, 0.2))
    ranks = _ranks(proc.pid)
    assert sorted(ranks) == [0, 1], ranks
    os.kill(ranks[rank], signal.SIGKILL)
    return ranks[rank], list(ranks.values())


def _same_bits(out: Path, ref: Path) -> None:
    for name in ("config.json", "stats.json", "train_state/state.json", "train_state/config.json"):
        assert (out / name).read_text() == (ref / name).read_text(), name
    want = sorted(str(f.relative_to(ref)) for f in ref.rglob("*.safetensors"))
    assert sorted(str(f.relative_to(out)) for f in out.rglob("*.safetensors")) == want and len(want) >= 6, want
    for name in want:
        a, b = load_file(str(ref / name)), load_file(str(out / name))
        assert a.keys() == b.keys() and [k for k in a if not torch.equal(a[k], b[k])] == [], name


@pytest.fixture(scope="module")
def uninterrupted(synthetic_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp_uninterrupted")
    proc = _drdc_train(synthetic_root, out)
    text, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0 and "checkpoint written" in text, text
    return out


@pytest.mark.slow  # ~1 min: three 2-process runs
def test_a_killed_rank_ends_the_job_and_the_rerun_resumes_to_the_same_bits(synthetic_root, uninterrupted, tmp_path,
                                                                          capsys):
    out, rng = tmp_path / "killed", random.Random(31)
    proc = _drdc_train(synthetic_root, out)
    goal = STEPS["base_epochs"] + rng.randint(4, 12)
    pid, workers = _kill_rank_when(proc, out, goal, 1, rng)
    t0 = time.monotonic()
    text, _ = proc.communicate(timeout=2 * TIMEOUT_S)
    waited = time.monotonic() - t0
    assert proc.returncode != 0 and waited < TIMEOUT_S, (proc.returncode, waited, text)
    cause = text.split("Root Cause", 1)
    assert len(cause) == 2 and re.search(rf"rank\s*:\s*1 \(local_rank: 1\)\s+exitcode\s*:\s*-9 \(pid: {pid}\)",
                                         cause[1]), text
    assert [w for w in workers if _alive(w)] == []  # the other rank did not stay behind
    killed_at = _progress(out)
    assert STEPS["base_epochs"] <= killed_at < sum(STEPS.values()), killed_at

    again = _drdc_train(synthetic_root, out)
    text, _ = again.communicate(timeout=600)
    assert again.returncode == 0 and "resuming from" in text, text
    _same_bits(out, uninterrupted)
    with capsys.disabled():
        print(f"\nrank 1 SIGKILLed at progress {killed_at}/{sum(STEPS.values())}: the job ended {waited:.1f} s later "
              f"(exit {proc.returncode}), rank 1 named; the rerun resumed and ended on the uninterrupted run's bits")


@pytest.mark.slow  # ~1 min
def test_torchrun_restarts_a_killed_rank_and_ends_on_the_same_bits(synthetic_root, uninterrupted, tmp_path):
    out, rng = tmp_path / "restarted", random.Random(7)
    proc = _torchrun(synthetic_root, out, "--max-restarts=1")
    _kill_rank_when(proc, out, STEPS["base_epochs"] + rng.randint(4, 12), 1, rng)
    text, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0 and "resuming from" in text and "checkpoint written" in text, text
    _same_bits(out, uninterrupted)
