"""Config round trips and validation; checkpoints (safetensors + JSON), atomic and checked."""

import json

import pytest
import torch

from drdc_trt.checkpoint import CheckpointError, save_checkpoint
from drdc_trt.loading import load_checkpoint
from drdc_trt.config import PRESETS, ModelConfig, preset
from drdc_trt.methods.drdc.fusion import FusionStats, PixelStats
from drdc_trt.methods.drdc.model import DRDCModel


@pytest.mark.parametrize("name", PRESETS)
def test_config_json_round_trip(name):
    cfg = preset(name)
    assert ModelConfig.from_dict(json.loads(cfg.to_json())) == cfg


def test_small224_keeps_attention_at_28_squared_tokens():
    """small224: small's U-Net with one more level, so at 224² its one attention level sees 28² tokens
    (small's would see 56²); grid cells scaled from small's (4, 8 at 64²) and dividing both the image
    and the 56² training crop; the U-Net runs on a crop and on the whole image."""
    from drdc_trt.models.unet import UNet

    small, cfg = preset("small"), preset("small224")
    assert cfg.image_size == 224 and cfg.unet.model_channels == small.unet.model_channels == 32
    levels = len(cfg.unet.channel_mult)
    assert [224 // d for d in cfg.unet.attention_ds] == [28] and all(d < 2 ** levels for d in cfg.unet.attention_ds)
    assert [224 // d for d in small.unet.attention_ds] == [56]
    assert [g * 224 // 64 for g in small.diffusion.grid_sizes] == list(cfg.diffusion.grid_sizes)
    crop = cfg.train.crop_size
    assert all(224 % g == 0 for g in cfg.diffusion.grid_sizes)
    assert all(crop % g == 0 for g in cfg.diffusion.train_grid_sizes)
    assert [crop // g for g in cfg.diffusion.train_grid_sizes] == [small.train.crop_size // g
                                                                   for g in small.diffusion.train_grid_sizes]
    for method in ("drdc", "glad", "diffusionad"):
        assert preset("small224", method).image_size == 224
    torch.manual_seed(0)
    net = UNet(cfg.unet).eval()
    with torch.no_grad():
        for side in (crop, 224):
            assert net(torch.randn(1, 6, side, side), torch.tensor([10.0])).shape == (1, 3, side, side)


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="grid_sizes"):
        preset("tiny").replace(**{"diffusion.grid_sizes": [5]})
    with pytest.raises(ValueError, match="mean_filter"):
        preset("tiny").replace(**{"fusion.mean_filter": 4})
    with pytest.raises(KeyError, match="unknown config key"):
        preset("tiny").replace(**{"diffusion.bogus": 1})
    with pytest.raises(ValueError, match="unknown field"):
        ModelConfig.from_dict({"image_size": 32, "nope": 1})


def test_config_without_loss_weight_reads_as_unweighted():
    d = json.loads(preset("small").to_json())
    assert d["diffusion"]["min_snr_gamma"] == 5.0
    del d["diffusion"]["min_snr_gamma"]  # a config written before the weighting existed
    assert ModelConfig.from_dict(d).diffusion.min_snr_gamma == 0.0
    with pytest.raises(ValueError, match="min_snr_gamma"):
        preset("tiny").replace(**{"diffusion.min_snr_gamma": -1.0})


def test_replace_overrides():
    cfg = preset("tiny").replace(**{"diffusion.t0": 150, "fusion.lam": 0.5})
    assert cfg.diffusion.t0 == 150 and cfg.fusion.lam == 0.5


def test_checkpoint_round_trip(tmp_path):
    cfg = preset("tiny")
    m = DRDCModel(cfg, FusionStats(1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8)).eval()
    with pytest.raises(CheckpointError, match="no per-pixel statistics"):
        save_checkpoint(m, tmp_path)  # a config asking for them, none measured: nothing written
    assert list(tmp_path.iterdir()) == []
    m.stats.pixel = PixelStats(torch.rand(32, 32), torch.rand(32, 32) + 0.5)
    save_checkpoint(m, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors", "pixel_stats.safetensors",
                                                          "stats.json"]
    back = load_checkpoint(tmp_path)
    assert back.cfg == cfg and back.stats == m.stats
    assert torch.equal(back.stats.pixel.mean, m.stats.pixel.mean) and torch.equal(back.stats.pixel.std, m.stats.pixel.std)
    (tmp_path / "pixel_stats.safetensors").unlink()
    with pytest.raises(CheckpointError, match="pixel_stats.safetensors: missing"):
        load_checkpoint(tmp_path)
    save_checkpoint(m, tmp_path)
    x = torch.rand(2, 6, 32, 32)
    t = torch.tensor([10.0, 200.0])
    with torch.no_grad():
        assert torch.equal(back.unet(x, t), m.unet(x, t))
        img = torch.rand(2, 3, 32, 32) * 2 - 1
        assert torch.equal(back.base(img), m.base(img))


def _saved_pair(tmp_path):
    """A checkpoint on disk (its files' bytes) and a second, different model to save over it."""
    cfg = preset("tiny").replace(**{"fusion.diff_norm": "global"})
    old = DRDCModel(cfg, FusionStats(1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8)).eval()
    save_checkpoint(old, tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    new = DRDCModel(cfg, FusionStats(9.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8)).eval()
    with torch.no_grad():
        for p in new.unet.parameters():
            p.add_(1.0)
    return old, new, before


def _half_written_tensors(tensors, filename, metadata=None):
    """safetensors' save_file that dies half-way: part of the file on disk, then an error."""
    from safetensors.torch import save as to_bytes

    data = to_bytes(tensors, metadata=metadata)
    with open(filename, "wb") as f:
        f.write(data[: len(data) // 2])
    raise OSError(28, "No space left on device")


def _failing_replace(src, dst):
    raise OSError(5, "Input/output error")


@pytest.mark.parametrize("fail", ["serializer", "rename"])
def test_failed_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch, fail):
    """A write that dies (half-written weights, or the final rename failing) leaves every file of
    the previous checkpoint byte for byte as it was, and that checkpoint still loads."""
    import drdc_trt.checkpoint as ckpt

    old, new, before = _saved_pair(tmp_path)
    if fail == "serializer":
        monkeypatch.setattr(ckpt, "save_file", _half_written_tensors)
    else:
        monkeypatch.setattr(ckpt.os, "replace", _failing_replace)
    with pytest.raises(OSError):
        save_checkpoint(new, tmp_path)
    monkeypatch.undo()
    assert {n: (tmp_path / n).read_bytes() for n in before} == before
    back = load_checkpoint(tmp_path)
    assert back.stats == old.stats
    assert all(torch.equal(a, b) for a, b in zip(back.unet.state_dict().values(), old.unet.state_dict().values()))


@pytest.mark.parametrize("fail", ["serializer", "rename"])
def test_failed_checkpoint_write_leaves_no_temporary_file(tmp_path, monkeypatch, fail):
    import drdc_trt.checkpoint as ckpt

    _, new, before = _saved_pair(tmp_path)
    if fail == "serializer":
        monkeypatch.setattr(ckpt, "save_file", _half_written_tensors)
    else:
        monkeypatch.setattr(ckpt.os, "replace", _failing_replace)
    with pytest.raises(OSError):
        save_checkpoint(new, tmp_path)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before)


def test_checkpoint_errors_name_the_file(tmp_path):
    m = DRDCModel(preset("tiny"))
    m.stats.pixel = PixelStats(torch.zeros(32, 32), torch.ones(32, 32))
    save_checkpoint(m, tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="model.safetensors: unreadable"):
        load_checkpoint(tmp_path)
    save_checkpoint(m, tmp_path)
    (tmp_path / "stats.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="stats.json: not valid JSON"):
        load_checkpoint(tmp_path)
    save_checkpoint(m, tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["unet"]["model_channels"] = 32
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="do not match the config"):
        load_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing")
