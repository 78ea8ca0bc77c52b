"""The backbone-feature cache of training (drdc_trt/feature_cache.py): a cold, a warm and no cache
train the same base weights bit for bit and the warm run sends no training image through the
backbone; a changed image, weight or pooled size is another entry; a damaged entry is computed
again; "off" writes nothing."""

from __future__ import annotations

import torch
from safetensors.torch import load_file

from drdc_trt import feature_cache
from drdc_trt.config import preset
from drdc_trt.models.backbone import Backbone
from drdc_trt.train import train

QUIET = {"progress": False, "log": lambda *_: None}


def entries(root):
    return sorted(root.rglob("*.safetensors"))


def base_weights(folder):
    return {k: v for k, v in load_file(str(folder / "model.safetensors")).items() if k.startswith("transformer.")}


def test_cold_warm_and_off_train_the_same_base_weights(synthetic_root, tmp_path, monkeypatch):
    cfg = preset("tiny")
    seen = []
    real = Backbone.forward

    def counting(self, x):
        seen.append(x.shape[0])
        return real(self, x)

    monkeypatch.setattr(Backbone, "forward", counting)
    cache = tmp_path / "cache"
    runs = {}
    for name, env in (("off", "off"), ("cold", str(cache)), ("warm", str(cache))):
        monkeypatch.setenv(feature_cache.ENV, env)
        seen.clear()
        train(synthetic_root, tmp_path / name, cfg, **QUIET)
        runs[name] = sum(seen)
        if name == "off":
            assert not cache.exists()
    n = len(entries(cache))
    assert n > 0
    # the cold run sent every training image through the backbone once for the base model; the
    # warm run read them all (the rest is calibration, the same in both)
    assert runs["off"] == runs["cold"] == runs["warm"] + n
    a, b, c = (base_weights(tmp_path / k) for k in ("off", "cold", "warm"))
    assert a.keys() == b.keys() == c.keys() and a
    for k in a:
        assert torch.equal(a[k], b[k]) and torch.equal(b[k], c[k]), k


def small_backbone(size=32):
    cfg = preset("tiny")
    return Backbone(cfg.backbone, size // 16).eval()


def test_keys_follow_image_weights_and_size(tmp_path):
    torch.manual_seed(1)
    images = torch.rand(3, 3, 32, 32) * 2 - 1
    bb = small_backbone()
    want = bb(images)  # the batches of a cold cache are those of no cache: the same bits
    got = feature_cache.cached_features(bb, images, root=tmp_path)
    assert torch.equal(got, want) and len(entries(tmp_path)) == 3
    again = feature_cache.cached_features(bb, images, root=tmp_path)
    assert torch.equal(again, want) and len(entries(tmp_path)) == 3  # read, not written again
    changed = images.clone()
    changed[1, 0, 0, 0] += 1e-3  # one pixel of one image: one new entry
    feature_cache.cached_features(bb, changed, root=tmp_path)
    assert len(entries(tmp_path)) == 4
    with torch.no_grad():
        next(bb.parameters()).view(-1)[0] += 1e-3  # another weight: every image is new
    moved = feature_cache.cached_features(bb, images, root=tmp_path)
    assert len(entries(tmp_path)) == 7 and torch.equal(moved, bb(images)) and not torch.equal(moved, want)
    other = small_backbone()
    other.feature_size = 1  # another pooled size: another key
    assert feature_cache.module_key(other, "cpu") != feature_cache.module_key(small_backbone(), "cpu")
    assert feature_cache.module_key(small_backbone(), "cpu") == feature_cache.module_key(small_backbone(), "cpu")


def test_damaged_entry_is_computed_again(tmp_path):
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    bb = small_backbone()
    feature_cache.cached_features(bb, images, root=tmp_path)
    bad = tmp_path.rglob(f"{feature_cache.image_key(images[1])}.safetensors").__next__()
    bad.write_bytes(b"not a safetensors file")
    got = feature_cache.cached_features(bb, images, root=tmp_path)
    # image 0 read back; image 1 computed again (alone, so in a batch of one) and rewritten
    assert torch.equal(got[0], bb(images)[0]) and torch.equal(got[1], bb(images[1:])[0])
    assert torch.equal(load_file(str(bad))["features"], got[1])


def test_where_the_cache_lives(monkeypatch, tmp_path):
    monkeypatch.setenv(feature_cache.ENV, "off")
    assert feature_cache.cache_root() is None
    monkeypatch.setenv(feature_cache.ENV, str(tmp_path))
    assert feature_cache.cache_root() == tmp_path
    monkeypatch.delenv(feature_cache.ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert feature_cache.cache_root() == tmp_path / "xdg" / "drdc_trt" / "features"
