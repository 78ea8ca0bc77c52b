"""The config of every registered method in one place: the core record and sections
(drdc_trt.settings), each method's sections and constants (found through the registry), and the
named presets (``preset``, ``PRESETS``) with the methods they can be made for (``METHODS``).

Importing this module registers every method's config sections, so ``ModelConfig()`` carries them
all (one config.json layout for every method).
"""

from __future__ import annotations

import importlib
from typing import Any

from drdc_trt import methods as _methods
from drdc_trt.settings import (  # noqa: F401  (re-exported)
    ANOMALY_SOURCES,
    BACKBONE_CHANNELS,
    LEGACY_VALUES,
    PRESETS,
    BackboneConfig,
    DiffusionConfig,
    ModelConfig,
    TrainConfig,
    UNetConfig,
    missing_fields,
    preset,
)


def __getattr__(name: str) -> Any:
    """``METHODS`` (the registered names, in registry order) and any name of a registered
    method's config module (``GLADConfig``, ``HEAT_NORMS``, ``diffusionad_preset``)."""
    if name == "METHODS":
        return _methods.names()
    for spec in _methods.specs():
        module = importlib.import_module(spec.config)
        if hasattr(module, name):
            return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
