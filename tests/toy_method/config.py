"""The toy method's config section (``toy``) and its part of the presets."""

from __future__ import annotations

from dataclasses import dataclass

from drdc_trt.settings import MethodConfig, ModelConfig, register_method_config


@dataclass
class ToyConfig:
    blur: int = 3        # box filter side of the map (odd)
    top_k: int = 16      # image score: mean of the top-k map pixels
    floor: float = 0.05  # std floor (a constant pixel of the training images)


def check(cfg: ModelConfig) -> None:
    t = cfg.toy
    if t.blur < 1 or t.blur % 2 == 0:
        raise ValueError(f"toy.blur={t.blur}: a positive odd number")
    if t.top_k < 1:
        raise ValueError(f"toy.top_k={t.top_k}: a positive integer")
    if not t.floor > 0:
        raise ValueError(f"toy.floor={t.floor} must be positive")


def toy_preset(cfg: ModelConfig) -> ModelConfig:
    cfg = ModelConfig.from_dict(cfg.to_dict())
    cfg.method = "toy"
    return cfg.validate()


CONFIG = register_method_config(MethodConfig(owner="toy", sections={"toy": ToyConfig}, optional_elsewhere=True,
                                             check=check, preset=toy_preset))
