"""U-Net batches built ahead in a worker thread are the batches of their iteration, whatever
the order they are built in; the loss is still recorded for every iteration."""

from concurrent.futures import ThreadPoolExecutor

import torch

from drdc_trt.config import preset
from drdc_trt.schedule import Schedule
from drdc_trt.training import LOSS_READ_EVERY
from drdc_trt.methods.drdc.train import _unet_batch_for


def test_batches_depend_on_their_iteration_only():
    cfg = preset("tiny")
    images = torch.rand(10, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    ab = torch.from_numpy(Schedule.from_config(cfg.diffusion).alphas_cumprod).float()
    in_order = [_unet_batch_for(i, images, cfg, ab, False) for i in range(4)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        reversed_in_threads = [f.result() for f in [pool.submit(_unet_batch_for, i, images, cfg, ab, False)
                                                    for i in reversed(range(4))]][::-1]
    for a, b in zip(in_order, reversed_in_threads):
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(in_order[0][0], in_order[1][0])  # iterations differ
    assert LOSS_READ_EVERY > 1


def test_every_iteration_loss_is_reported(synthetic_root, tmp_path):
    import json

    from drdc_trt.train import train

    cfg = preset("tiny")
    cfg.train.unet_iters = 7  # fewer than LOSS_READ_EVERY, not a multiple of checkpoint_every
    _, report = train(synthetic_root, tmp_path, cfg, progress=False, log=lambda *_: None)
    assert len(report.unet_losses) == 7 and all(v > 0 for v in report.unet_losses)
    saved = json.loads((tmp_path / "train_report.json").read_text())
    assert saved["unet_loss_last50_mean"] == sum(report.unet_losses) / 7
