"""drdc_trt.distributed: one process runs exactly what it ran before (no process group, the batch
whole, no weights); two processes (torchrun, gloo) share batches and passes as one process would
(ddp_checks.py); the feature jitter of a rank's rows is what one process draws for them; `drdc
train --nproc` starts torchrun with the same options, and refuses what this machine cannot run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from click.testing import CliRunner

from drdc_trt import distributed
from drdc_trt.cli import main
from drdc_trt.config import preset

CHECKS = Path(__file__).with_name("ddp_checks.py")


def test_one_process_is_left_as_it_was(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with distributed.session("cpu") as dev:
        assert dev == "cpu" and not torch.distributed.is_initialized()
        assert (distributed.world(), distributed.rank(), distributed.is_main()) == (1, 0, True)
        assert distributed.my_rows(5) == (slice(0, 5), 1.0) and distributed.loss_share(3, 7) == 1.0
        x, t = 0.1 + 0.2, torch.randn(3)
        assert distributed.average(x) is x and distributed.average(t) is t
        net = nn.Linear(2, 2)
        forward = lambda v: net(v)  # noqa: E731
        assert distributed.data_parallel(net) is net and distributed.data_parallel(net, forward) is forward
        calls = []
        assert distributed.split_pass(lambda v: calls.append(v) or v, t, 1) is t and len(calls) == 1
        assert distributed.shared_generators("cpu") is None
        torch.manual_seed(4)
        distributed.reseed(99)  # one process: the global RNG is not touched
        assert torch.equal(torch.rand(2), torch.rand(2, generator=torch.Generator().manual_seed(4)))
        distributed.check_identical({"a": t}, "weights")
        distributed.same_on_all(1, "anything")


def test_the_parts_on_two_processes(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                           str(CHECKS), str(tmp_path)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and (tmp_path / "ok").is_file(), proc.stdout + proc.stderr


def test_a_ranks_jitter_is_its_rows_of_one_process_jitter():
    """Two ranks holding rows 0–1 and 2–4 of a batch of 5 add, to each row, the jitter one
    process adds to it (the same bits): the coin and the noise are drawn for the whole batch from
    a copy of the global RNG and cut to the rank's rows."""
    from drdc_trt.methods.drdc.transformer import ReconstructionTransformer

    cfg = preset("tiny")
    net = ReconstructionTransformer(cfg.transformer, 8, 2).train()
    feats = torch.randn(5, 8, 2, 2)
    tokens = feats.flatten(2).transpose(1, 2)  # the layout forward gives jitter
    torch.manual_seed(11)
    whole = net.jitter(tokens)
    assert not torch.equal(whole, tokens)
    parts = []
    for part in (slice(0, 2), slice(2, 5)):
        gen = torch.Generator()
        gen.set_state(torch.Generator().manual_seed(11).get_state())
        parts.append(net.jitter(tokens[part], ((gen, gen), part, 5)))
    assert torch.equal(torch.cat(parts), whole)


def _train_args(tmp_path, *extra):
    return ["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "out"), "--preset", "tiny",
            "--set", "train.unet_iters=3", "--quiet", *extra]


def test_nproc_starts_torchrun_with_the_same_options(tmp_path, monkeypatch):
    seen = {}

    def launch(nproc, module, args):
        seen.update(nproc=nproc, module=module, args=args)
        raise SystemExit(0)

    monkeypatch.setattr(distributed, "launch", launch)
    res = CliRunner().invoke(main, _train_args(tmp_path, "--nproc", "3", "--method", "glad"))
    assert res.exit_code == 0, res.output
    assert seen == {"nproc": 3, "module": "drdc_trt.train", "args": [
        "--data", str(tmp_path / "data"), "--out", str(tmp_path / "out"), "--preset", "tiny",
        "--set", "train.unet_iters=3", "--method", "glad", "--quiet"]}


TOO_MANY = max(2, torch.cuda.device_count() + 1)


@pytest.mark.parametrize("extra, env, message", [
    (("--device", "cuda", "--nproc", str(TOO_MANY)), {},
     f"needs {TOO_MANY} GPUs; {torch.cuda.device_count()} visible"),
    (("--device", "cuda:0", "--nproc", "2"), {}, "each process takes its own GPU; give --device cuda"),
    (("--device", "meta", "--nproc", "2"), {}, "runs on cpu (gloo) or cuda (NCCL)"),
    (("--nproc", "2"), {"WORLD_SIZE": "2"}, "already runs under torchrun"),
])
def test_nproc_this_machine_cannot_run_is_refused(extra, env, message, tmp_path, monkeypatch):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(distributed, "launch", lambda *a: pytest.fail("launched"))
    res = CliRunner().invoke(main, _train_args(tmp_path, *extra))
    assert res.exit_code == 2 and message in res.output, res.output


def test_a_bad_timeout_is_refused(monkeypatch):
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "soon")
    with pytest.raises(ValueError, match="DRDC_DIST_TIMEOUT_S='soon'"):
        distributed._timeout()
