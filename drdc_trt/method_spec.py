"""The record a method gives the engine (``MethodSpec``): what it is called, where its parts live
and what it can do, as data. Entry points are ``"module:attribute"`` strings, imported when first
used, so reading the registry imports no torch and no method code.

The application (CLI, detect and serve predictors, export, runtime, bench) reaches a method only
through ``drdc_trt.methods`` (the registry) and these fields; docs/design.md, "How to add a method".
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class MethodSpec:
    name: str                 # the "method" field of config.json and manifest.json
    title: str                # as tables and reports name it ("DRDC", "GLAD")
    summary: str              # one line for --help
    config: str               # module whose import registers the method's config sections
    # entry points ("module:attribute")
    load_checkpoint: str      # (folder, cfg, backbone_weights) -> model (checkpoint folder → model)
    train: str                # (data_root, out, cfg, categories, device, progress, log) -> TrainReport
    detector: str             # (model, device, seed, loop, backend) -> detector with .predict(images, batch_size)
    export: str               # (model, out, fp16, tensorrt, max_batch, seed, opset, exporter, check_batches,
                              #  tolerance, timing_cache, source, blocker, log) -> ExportResult
    manifest_check: str       # (m, where, files, BundleError, MANIFEST, check_tensor, check_array) -> None
    runtime: str              # class: (bundle, backend, kernels, **engine options) -> .predict(np images)
    bundle_stats: str         # (manifest) -> the method's statistics (thresholds) from a bundle
    batch: str                # dataclass of a batch of results (anomalib fields + the method's own)
    study: str | None = None  # `drdc ablate` on a model of this method (a StudyMethod), if it has one
    # capabilities
    outputs: tuple[str, ...] = ()          # per-image outputs beyond anomalib's four (GLAD: "steps")
    loops: tuple[str, ...] = ("torch",)    # the inference loops of a checkpoint (--loop)
    torch_backends: tuple[str, ...] = ("torch",)  # backends a checkpoint runs on (--backend)
    seed_key: str = "noise_seed"           # the manifest field of the seed whose noise a bundle carries
    image_input: bool = False              # a bundle network takes the plain image (the runtime checks it)
    knn_baseline: bool = False             # its checkpoint carries the backbone the kNN baseline reads
    extras: dict[str, str] = field(default_factory=dict)  # further entry points a method's own commands use

    def entry(self, name: str) -> Any:
        """The object an entry point names, imported now (an unknown name is a KeyError)."""
        ref = getattr(self, name, None) if name in self.__dataclass_fields__ else self.extras[name]
        if ref is None:
            raise KeyError(f"method {self.name!r} has no {name}")
        module, _, attr = ref.partition(":")
        obj = importlib.import_module(module)
        for part in attr.split(".") if attr else ():
            obj = getattr(obj, part)
        return obj

    def has(self, name: str) -> bool:
        return (getattr(self, name, None) if name in self.__dataclass_fields__ else self.extras.get(name)) is not None
