"""The method registry: one ``MethodSpec`` per method, in one list (the order of tables and
``--method`` choices). Saved artifacts name their method (config.json, manifest.json ``method``);
every loader looks it up here. Importing this module imports each method's spec and config
sections only (no torch).

A new method is one folder under ``drdc_trt/methods/`` with a ``spec.py`` and one line below
(docs/design.md, "How to add a method"); ``register`` adds one from outside the package (a plugin,
a test).
"""

from __future__ import annotations

import importlib

from drdc_trt import settings
from drdc_trt.method_spec import MethodSpec

from .diffusionad.spec import SPEC as _DIFFUSIONAD
from .drdc.spec import SPEC as _DRDC
from .glad.spec import SPEC as _GLAD

_REGISTRY: dict[str, MethodSpec] = {s.name: s for s in (
    _DRDC,
    _DIFFUSIONAD,
    _GLAD,
)}
for _spec in _REGISTRY.values():  # each method's config sections join ModelConfig (torch-free modules)
    importlib.import_module(_spec.config)


def register(spec: MethodSpec) -> MethodSpec:
    """Add a method (its config sections are registered by importing ``spec.config``)."""
    if spec.name in _REGISTRY and _REGISTRY[spec.name] is not spec:
        raise ValueError(f"method {spec.name!r} is already registered")
    importlib.import_module(spec.config)
    _REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a method added with ``register`` (a test's), its config sections with it."""
    if _REGISTRY.pop(name, None) is not None:
        settings.unregister_method_config(name)


def names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def specs() -> tuple[MethodSpec, ...]:
    return tuple(_REGISTRY.values())


def get(name: str, where: str | None = None) -> MethodSpec:
    """The spec of ``name``; a ValueError naming ``where`` (a file and field) and the registered
    methods otherwise."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"{where + ': ' if where else ''}method {name!r} is not one of {list(_REGISTRY)}") from None


__all__ = ["MethodSpec", "get", "names", "register", "specs", "unregister"]
