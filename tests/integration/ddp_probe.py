"""Run by test_distributed_training.py, alone (``python ddp_probe.py …``) or on every rank under
torchrun: trains the tiny preset of a method through drdc_trt.train.train and writes, per rank,

* ``grads<rank>.safetensors``: the gradients each optimizer steps with on its first step (after
  DistributedDataParallel's all-reduce), keys ``<optimizer index>.<parameter index>``;
* ``final<rank>.safetensors``: the model's state after training (the EMA copied in, calibrated).

With ``DDP_PROBE_REVERSE=1`` (one process) every U-Net batch is taken in reversed row order: the
same loss, summed in another order, the reference for what a change of summation order alone
does to a run.

Usage: ddp_probe.py DATA OUT METHOD [KEY=JSON ...]
"""

from __future__ import annotations

import json
import os
import sys

import torch
from safetensors.torch import save_file

from drdc_trt.config import preset
from drdc_trt.train import train


def main() -> None:
    data, out, method, *sets = sys.argv[1:]
    cfg = preset("tiny", method).replace(**{k: json.loads(v) for k, v in (s.split("=", 1) for s in sets)})
    if os.environ.get("DDP_PROBE_REVERSE"):
        from drdc_trt import distributed

        take = distributed.take_rows
        distributed.take_rows = lambda batch, rows: take(batch, torch.arange(rows.stop - 1, rows.start - 1, -1))
    grads: dict[int, dict[str, torch.Tensor]] = {}
    for cls in (torch.optim.Adam, torch.optim.AdamW):
        def step(self, *args, _step=cls.step, **kwargs):
            if id(self) not in grads:
                params = self.param_groups[0]["params"]
                grads[id(self)] = {f"{len(grads)}.{i}": p.grad.detach().clone() for i, p in enumerate(params)
                                   if p.grad is not None}
            return _step(self, *args, **kwargs)

        cls.step = step
    model, _ = train(data, out, cfg, progress=False, log=lambda *_: None)
    rank = os.environ.get("RANK", "0")
    save_file({k: v for g in grads.values() for k, v in g.items()}, f"{out}/grads{rank}.safetensors")
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, f"{out}/final{rank}.safetensors")


if __name__ == "__main__":
    main()
