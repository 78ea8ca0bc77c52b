"""Data-parallel training on torch.distributed: the process group, each rank's part of a global
batch, the passes shared between ranks, and the ``torchrun`` launch of ``drdc train --nproc N``.

A run is distributed when torchrun started it (``WORLD_SIZE`` > 1 in the environment); otherwise
every function here is the identity of one process, so a single-process run executes exactly the
operations it always did. Under torchrun:

* the backend is NCCL on CUDA (each rank on ``cuda:LOCAL_RANK``), gloo on the CPU; every
  collective has a timeout (``$DRDC_DIST_TIMEOUT_S``, default ``DEFAULT_TIMEOUT_S``), so a rank that
  stops answering ends the job with an error instead of a hang (a rank that dies is reported by
  torchrun's agent at once, naming it);
* every rank draws the whole global batch from the iteration's own generator and keeps its
  contiguous part (``my_rows``), so the global batch is the one a single process draws; each rank's
  mean loss is weighted by its share of the rows (``loss_share``), so DistributedDataParallel's
  average of the ranks' gradients is the gradient of the mean over the global batch, for any
  split (uneven last batches included);
* batch norm inside a data-parallel module is synchronised over the ranks (``data_parallel``), so
  its statistics are the global batch's;
* the model, optimizer and EMA steps are the same on every rank (the averaged gradient is), so
  the ranks stay identical; ``check_identical`` verifies it at the end of training.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, Callable, Iterator

import torch
import torch.distributed as dist
import torch.nn as nn

TIMEOUT_ENV = "DRDC_DIST_TIMEOUT_S"
# The longest a rank may wait in one collective: it covers rank 0 writing a snapshot or the
# checkpoint while the others wait, and the uneven ends of a shared pass.
DEFAULT_TIMEOUT_S = 600


def launched() -> bool:
    """Started by torchrun with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if world() > 1 else 0


def is_main() -> bool:
    """Rank 0: the one that writes files and prints."""
    return rank() == 0


def _timeout() -> timedelta:
    raw = os.environ.get(TIMEOUT_ENV, str(DEFAULT_TIMEOUT_S))
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ValueError(f"${TIMEOUT_ENV}={raw!r}: give the collective timeout in seconds (> 0)")
    return timedelta(seconds=seconds)


def rank_device(device: str | torch.device) -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` for a CUDA run, the CPU otherwise."""
    dev = torch.device(device)
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {device}: distributed training runs on cpu (gloo) or cuda (NCCL)")
    if dev.type == "cpu":
        return dev
    if dev.index is not None:
        raise ValueError(f"--device {device}: each process of a distributed run takes its own GPU "
                         "(cuda:LOCAL_RANK); give --device cuda")
    local, count = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
    if local >= count:
        raise ValueError(f"local rank {local} needs GPU {local}, but {count} are visible on this node; "
                         "start at most one process per GPU")
    return torch.device("cuda", local)


@contextmanager
def session(device: str | torch.device) -> Iterator[str | torch.device]:
    """Join the process group when torchrun started this process (and leave it at the end);
    yields the device this rank trains on. Without torchrun: yields ``device`` and does nothing."""
    if not launched() or dist.is_initialized():
        yield device
        return
    dev = rank_device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    timeout = _timeout()
    store, rank_, world_ = next(dist.rendezvous("env://", timeout=timeout))
    # torchrun keeps one store across restarts (--max-restarts): the ranks of an earlier round left
    # their addresses in it, and a restarted rank could try to connect to a dead one
    store = dist.PrefixStore(f"drdc_trt/round{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)
    dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", store=store, rank=rank_, world_size=world_,
                            timeout=timeout)
    try:
        yield dev
        dist.barrier()  # no rank leaves while another still works (rank 0 writes the checkpoint)
    finally:
        dist.destroy_process_group()


def barrier() -> None:
    if world() > 1:
        dist.barrier()


# ----------------------------------------------------------------- each rank's part of a batch
def _block(n: int, parts: int, index: int) -> tuple[int, int]:
    """The ``index``-th of ``parts`` contiguous blocks of range(n), sizes differing by at most 1."""
    q, m = divmod(n, parts)
    lo = index * q + min(index, m)
    return lo, lo + q + (index < m)


def my_rows(n: int) -> tuple[slice, float]:
    """This rank's rows of a global batch of ``n`` and the factor its mean loss is multiplied by
    (``loss_share``): rows · world / n, 1.0 in one process. A rank left without rows (n < world)
    gets row 0 with factor 0, so it still runs the forward and backward DDP waits for and adds
    zeros."""
    lo, hi = _block(n, world(), rank())
    if hi == lo:
        return slice(0, 1), 0.0
    return slice(lo, hi), loss_share(hi - lo, n)


def loss_share(local: int, total: int) -> float:
    """The weight of a rank's mean over ``local`` of ``total`` counted items: DDP averages the
    ranks' gradients, Σ_r (local_r · world / total) · mean_r / world = the mean over all ``total``.
    1.0 in one process (multiplying by it changes no bit); 0 when nothing is counted."""
    if world() == 1:
        return 1.0
    return local * world() / total if total else 0.0


def take_rows(batch, rows: slice):
    """``batch`` (a tensor, or a dataclass / tuple of tensors with rows first) cut to ``rows``."""
    return _map(batch, lambda t: t[rows])


def reseed(seed: int) -> None:
    """Give each rank its own stream of the global RNG (dropout) from a seed all ranks share: one
    stream on every rank would give different rows the same dropout masks. One process: nothing."""
    if world() > 1:
        digest = hashlib.sha256(f"{seed}/{rank()}".encode()).digest()
        torch.manual_seed(int.from_bytes(digest[:8], "little"))


def shared_generators(device: str | torch.device) -> tuple[torch.Generator, torch.Generator] | None:
    """(CPU, ``device``) generators continuing the global RNG from here (one and the same on the
    CPU): every rank draws from them what one process draws from the global RNG, for the whole
    global batch, and keeps its rows. None in one process."""
    if world() == 1:
        return None
    cpu = torch.Generator()
    cpu.set_state(torch.get_rng_state())
    dev = torch.device(device)
    if dev.type == "cpu":
        return cpu, cpu
    gen = torch.Generator(device=dev)
    gen.set_state(torch.cuda.get_rng_state(dev))
    return cpu, gen


def average(x):
    """The mean over ranks of a float or a tensor (a per-rank weighted loss → the global batch's);
    ``x`` itself in one process."""
    if world() == 1:
        return x
    t = x.detach().clone() if isinstance(x, torch.Tensor) else torch.tensor(float(x), dtype=torch.float64,
                                                                            device=_comm_device())
    dist.all_reduce(t)
    t /= world()
    return t if isinstance(x, torch.Tensor) else float(t)


# ----------------------------------------------------------------- the data-parallel module
class _Forward(nn.Module):
    """``forward`` (a function that runs ``module``) as a module's forward, so DDP syncs the
    gradients of ``module``'s parameters whichever of its methods the loss goes through."""

    def __init__(self, module: nn.Module, forward: Callable):
        super().__init__()
        self.module, self.run = module, forward

    def forward(self, *args, **kwargs):
        return self.run(*args, **kwargs)


def data_parallel(module: nn.Module, forward: Callable | None = None) -> Callable:
    """``forward`` (default: ``module`` itself) with the gradients of ``module``'s parameters averaged
    over the ranks (DistributedDataParallel) and its batch norms synchronised; in one process
    ``forward`` itself."""
    if world() == 1:
        return module if forward is None else forward
    from torch.nn.parallel import DistributedDataParallel

    dev = _comm_device()
    if dev.type == "cuda":
        nn.SyncBatchNorm.convert_sync_batchnorm(module)
    else:
        _sync_batch_norms(module)
    wrapped = module if forward is None else _Forward(module, forward)
    return DistributedDataParallel(wrapped, device_ids=[dev.index] if dev.type == "cuda" else None)


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks; its gradient is the sum of every rank's gradient of the result."""

    @staticmethod
    def forward(ctx, t):
        t = t.clone()
        dist.all_reduce(t)
        return t

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class CPUSyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch on the CPU (torch's
    SyncBatchNorm runs on GPUs only): one all-reduce of the per-channel sums of x and x² in float64
    (no cancellation at float32's precision), differentiable, so each rank's input gradient has
    every rank's share. Outside training it is BatchNorm2d itself."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and world() > 1):
            return super().forward(x)
        self._check_input_dim(x)
        c, dims = x.shape[1], [0, 2, 3]
        xd = x.double()
        local = torch.cat([xd.sum(dims), (xd * xd).sum(dims), xd.new_full((1,), x.numel() / c)])
        total = _AllReduceSum.apply(local)
        n = total[-1]
        mean = total[:c] / n
        var = total[c:2 * c] / n - mean * mean
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                f = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - f).add_(mean.float(), alpha=f)
                self.running_var.mul_(1 - f).add_((var * n / (n - 1)).float(), alpha=f)
        shape = (1, c, 1, 1)
        y = (x - mean.float().view(shape)) * torch.rsqrt(var.float() + self.eps).view(shape)
        return y * self.weight.view(shape) + self.bias.view(shape) if self.affine else y


def _sync_batch_norms(module: nn.Module) -> None:
    """Replace every BatchNorm2d under ``module`` by CPUSyncBatchNorm2d, keeping its parameter
    objects (the optimizer holds them) and buffers."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            sync = CPUSyncBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                      child.track_running_stats)
            sync.weight, sync.bias = child.weight, child.bias
            for b in ("running_mean", "running_var", "num_batches_tracked"):
                setattr(sync, b, getattr(child, b))
            sync.train(child.training)
            setattr(module, name, sync)
        elif isinstance(child, (nn.BatchNorm1d, nn.BatchNorm3d)):
            raise NotImplementedError(f"{type(child).__name__}: only BatchNorm2d is synchronised on the CPU")
        else:
            _sync_batch_norms(child)


# ----------------------------------------------------------------- passes shared between ranks
def _comm_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def _map(obj, fn):
    """``fn`` on every tensor of a tensor, dataclass, tuple or list (other values kept)."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.replace(obj, **{f.name: _map(getattr(obj, f.name), fn)
                                           for f in dataclasses.fields(obj) if f.init})
    if isinstance(obj, (tuple, list)):
        return type(obj)(_map(v, fn) for v in obj)
    return obj


def _concat(parts: list):
    """Parts of one structure joined row-wise (tensors concatenated, other values must agree)."""
    first = parts[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(parts)
    if dataclasses.is_dataclass(first):
        return type(first)(**{f.name: _concat([getattr(p, f.name) for p in parts])
                              for f in dataclasses.fields(first) if f.init})
    if isinstance(first, (tuple, list)):
        return type(first)(_concat(list(column)) for column in zip(*parts))
    if any(p != first for p in parts):
        raise RuntimeError(f"the ranks' parts disagree on a value: {parts}")
    return first


def _gather_objects(obj) -> list:
    out = [None] * world()
    dist.all_gather_object(out, obj)
    return out


def gather_rows(t: torch.Tensor | None) -> torch.Tensor:
    """Every rank's rows (``None``: none) concatenated in rank order, on every rank, on this rank's
    device; one all-gather of the tensors padded to the largest part."""
    metas = _gather_objects(None if t is None else (tuple(t.shape), t.dtype))
    shape, dtype = next(m for m in metas if m is not None)
    dev = _comm_device()
    wire = torch.uint8 if dtype == torch.bool else dtype  # gloo has no bool collectives
    rows = [m[0][0] if m is not None else 0 for m in metas]
    buf = torch.zeros((max(rows), *shape[1:]), dtype=wire, device=dev)
    if t is not None:
        buf[:len(t)] = t.to(dev, wire)
    out = [torch.empty_like(buf) for _ in metas]
    dist.all_gather(out, buf)
    return torch.cat([o[:k] for o, k in zip(out, rows)]).to(dtype)


def split_pass(run: Callable[[Any], Any], items: torch.Tensor, chunk: int):
    """``run(items)`` with the work shared between the ranks: each runs it on its contiguous block of
    whole chunks of ``chunk`` items (the batches one process forms, so every item is computed in
    the batch it would be in alone) and every rank gets the parts joined in order. ``run``
    returns a tensor or a dataclass / tuple of them, rows first. One process: ``run(items)``."""
    if world() == 1:
        return run(items)
    lo, hi = _block(-(-len(items) // chunk), world(), rank())
    lo, hi = lo * chunk, min(hi * chunk, len(items))
    part = run(items[lo:hi]) if hi > lo else None
    kinds = _gather_objects(None if part is None else isinstance(part, torch.Tensor))
    if any(kinds):
        return gather_rows(part)
    on_gpu = None if part is None else any(x.is_cuda for x in _leaves(part))
    parts = _gather_objects(None if part is None else (on_gpu, _map(part, lambda x: x.cpu())))
    present = [p for p in parts if p is not None]
    dev = _comm_device() if present[0][0] else torch.device("cpu")
    return _map(_concat([p for _, p in present]), lambda x: x.to(dev))


def _leaves(obj) -> list[torch.Tensor]:
    found: list[torch.Tensor] = []
    _map(obj, found.append)
    return found


# ----------------------------------------------------------------- agreement between ranks
def same_on_all(value, what: str) -> None:
    """Refuse a run whose ranks see different ``value`` (e.g. an --out folder not shared by every node)."""
    if world() > 1:
        seen = _gather_objects(value)
        if any(v != seen[0] for v in seen):
            raise ValueError(f"the ranks see different {what}: {seen}")


def check_identical(tensors: dict[str, torch.Tensor], what: str) -> None:
    """Every rank holds the same bits of ``tensors`` (one digest per rank compared)."""
    if world() == 1:
        return
    h = hashlib.sha256()
    for k in sorted(tensors):
        t = tensors[k].detach().contiguous().cpu().reshape(-1)
        h.update(k.encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    digests = _gather_objects(h.hexdigest())
    if len(set(digests)) > 1:
        differ = [r for r, d in enumerate(digests) if d != digests[0]]
        raise RuntimeError(f"{what} differ between rank 0 and rank(s) {differ}")


# ----------------------------------------------------------------- drdc train --nproc N
def check_nproc(nproc: int, device: str) -> None:
    """Refuse an ``--nproc`` this machine cannot run: more processes than visible GPUs on CUDA, a
    device other than cpu / cuda, or a process torchrun already started."""
    if launched():
        raise ValueError("--nproc starts torchrun; this process already runs under torchrun (WORLD_SIZE="
                         f"{os.environ['WORLD_SIZE']}): leave --nproc out")
    dev = torch.device(device)
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"--nproc with --device {device}: distributed training runs on cpu (gloo) or cuda (NCCL)")
    if dev.type == "cuda":
        if dev.index is not None:
            raise ValueError(f"--nproc with --device {device}: each process takes its own GPU; give --device cuda")
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if nproc > count:
            raise ValueError(f"--nproc {nproc} with --device cuda needs {nproc} GPUs; {count} visible on this "
                             f"machine (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})")


def launch(nproc: int, module: str, args: list[str]) -> None:
    """Replace this process by ``torchrun --standalone --nproc-per-node nproc -m module args``: its
    exit status, output and signals are the job's. Each process gets its share of the cores as
    OMP_NUM_THREADS unless that is set."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // nproc)))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", module, *args]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, cmd, env)
