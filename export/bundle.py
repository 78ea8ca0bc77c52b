"""The bundle: what ``drdc export`` writes and the runtimes load.

A bundle is a folder::

    manifest.json      schema version, config, I/O shapes and dtypes, normalisation
                       statistics, fusion settings, tool versions, TensorRT plan
                       metadata (TensorRT version, GPU compute capability) and the
                       SHA-256 and size of every other file
    base.onnx          image B×3×S×S float32 in [-1, 1] → base map B×h×w float32
    unet.onnx          x N×6×S×S, timesteps N (float32) → eps N×3×S×S
    noise_fill.npy     R×3×S×S float32   the Detector's loop noise for its seed
    noise_start.npy    R×3×S×S float32   (R = rows per image = specs × sets)
    noise_steps.npy    T×R×3×S×S float32
    diff_pixel_mean.npy, diff_pixel_std.npy   S×S float32, per-pixel statistics (fusion.diff_norm = "pixel")
    base.plan, unet.plan, timing.cache   optional, TensorRT
    unet.int8.xml, unet.int8.bin   optional, int8 OpenVINO IR (``drdc export --int8``, manifest ``int8``)

Another method's bundle names it in the manifest's ``method`` field and holds other networks and
fields; that method's registered ``manifest_check`` checks them (no field: DRDC's).

This module imports no torch (the deploy runtime uses it). The writer stages
every file in a hidden sibling folder and renames the finished folder into
place, so a crash never leaves a half-written bundle where a good one was. The
loader checks the schema version and every file's hash and refuses a bundle
with a missing file, a changed byte or another schema version; its messages
say which file or field is at fault.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

SCHEMA_VERSION = 1
FORMAT = "drdc_trt.bundle"
MANIFEST = "manifest.json"
NOISE_FILES = {"fill": "noise_fill.npy", "start": "noise_start.npy", "steps": "noise_steps.npy"}
# fusion.diff_norm = "pixel": the diffusion map's per-pixel mean and std (S×S float32)
PIXEL_STATS_FILES = {"mean": "diff_pixel_mean.npy", "std": "diff_pixel_std.npy"}

# Slack of the [-1, 1] image range check (as drdc_trt.methods.drdc.pipeline.RANGE_SLACK): float rounding,
# far below the error of passing 0..255 pixels.
RANGE_SLACK = 1e-3
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_DTYPES = ("float32", "float16", "int32", "int64")


class BundleError(ValueError):
    """A bundle that cannot be written or loaded; the message names the file or field at fault."""


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or name == MANIFEST:
        raise BundleError(f"bundle file name {name!r}: use a plain file name (letters, digits, '_', '-', '.'), "
                          f"not {MANIFEST!r}, no folders")
    return name


def _json_safe(value: Any) -> Any:
    """inf/nan → None (JSON has neither); tuples → lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return value


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


# --------------------------------------------------------------------------- writer
class BundleWriter:
    """Stage a bundle's files, then :meth:`commit` hashes them, writes manifest.json
    and renames the folder into place.

    ``out`` may not exist yet, be an empty folder, or hold an earlier bundle (it
    is replaced as a whole on commit); any other existing folder is refused.
    Used as a context manager, an exception discards the staged files.
    """

    def __init__(self, out: str | Path):
        self.out = Path(out).absolute()
        if self.out.exists():
            if not self.out.is_dir():
                raise BundleError(f"{self.out}: exists and is not a folder; choose another output path")
            if any(self.out.iterdir()) and not (self.out / MANIFEST).is_file():
                raise BundleError(f"{self.out}: folder exists, is not empty and holds no {MANIFEST} "
                                  "(not a bundle); choose another output path")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.staging = self.out.with_name(f".{self.out.name}.staging-{os.getpid()}")
        if self.staging.exists():
            shutil.rmtree(self.staging)
        self.staging.mkdir()
        self._committed = False

    def path(self, name: str) -> Path:
        """Where a tool should write file ``name`` (inside the staging folder)."""
        return self.staging / _check_name(name)

    def write_bytes(self, name: str, data: bytes) -> Path:
        p = self.path(name)
        p.write_bytes(data)
        return p

    def save_array(self, name: str, array: np.ndarray) -> Path:
        """An .npy file (no pickle: plain numeric dtypes only)."""
        array = np.ascontiguousarray(array)
        if array.dtype.name not in _DTYPES:
            raise BundleError(f"{name}: dtype {array.dtype} is not one of {_DTYPES}")
        p = self.path(name)
        with open(p, "wb") as fh:
            np.save(fh, array, allow_pickle=False)
        return p

    def commit(self, manifest: dict) -> Path:
        """Hash every staged file, write manifest.json, move the bundle into place."""
        if self._committed:
            raise BundleError(f"{self.out}: bundle already committed")
        files = {}
        for p in sorted(self.staging.iterdir()):
            if p.name == MANIFEST:
                continue
            _check_name(p.name)
            if not p.is_file():
                raise BundleError(f"{p}: bundles hold plain files only")
            files[p.name] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        body = dict(_json_safe(manifest))
        body.update(format=FORMAT, schema_version=SCHEMA_VERSION, files=files)
        _validate_references(body, self.out, set(files))
        atomic_write_bytes(self.staging / MANIFEST, (json.dumps(body, indent=2, sort_keys=True) + "\n").encode())
        old = None
        if self.out.exists():
            old = self.out.with_name(f".{self.out.name}.old-{os.getpid()}")
            if old.exists():
                shutil.rmtree(old)
            os.replace(self.out, old)
        os.replace(self.staging, self.out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        self._committed = True
        return self.out

    def abort(self) -> None:
        if not self._committed and self.staging.exists():
            shutil.rmtree(self.staging, ignore_errors=True)

    def __enter__(self) -> "BundleWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.abort()


# --------------------------------------------------------------------------- loader
@dataclass(frozen=True)
class TensorSpec:
    """One network input or output as the manifest states it: ``shape`` holds ints and
    the symbol ``"batch"`` for the dynamic first dimension."""

    name: str
    shape: tuple
    dtype: str

    @staticmethod
    def from_dict(d: dict, where: str) -> "TensorSpec":
        try:
            name, shape, dtype = d["name"], tuple(d["shape"]), d["dtype"]
        except (KeyError, TypeError):
            raise BundleError(f"{where}: expected an object with name, shape and dtype") from None
        if dtype not in _DTYPES:
            raise BundleError(f"{where}: dtype {dtype!r} is not one of {_DTYPES}")
        if not all(isinstance(s, int) and s > 0 or s == "batch" for s in shape):
            raise BundleError(f"{where}: shape {list(shape)} must hold positive ints and 'batch'")
        return TensorSpec(name, shape, dtype)

    def text(self) -> str:
        return "×".join(str(s) for s in self.shape) + f" {self.dtype}"

    def check(self, array, network: str) -> None:
        """Raise ValueError naming the tensor when ``array`` does not fit this spec."""
        shape = tuple(getattr(array, "shape", ()))
        dtype = str(getattr(array, "dtype", type(array).__name__)).replace("torch.", "")
        where = f"input {self.name!r} of the {network} network"
        if len(shape) != len(self.shape) or any(s != e for s, e in zip(shape, self.shape) if e != "batch"):
            hint = ""
            if len(shape) == len(self.shape) and len(shape) >= 2 and shape[1] != self.shape[1]:
                hint = f" ({self.shape[1]} channels expected, got {shape[1]})"
            raise ValueError(f"{where}: expected shape {self.text()}, got {shape}{hint}")
        if len(shape) and shape[0] < 1:
            raise ValueError(f"{where}: empty batch, got shape {shape}")
        if dtype != self.dtype:
            raise ValueError(f"{where}: expected dtype {self.dtype}, got {dtype}")


@dataclass
class Bundle:
    """A verified bundle (see :func:`load_bundle`)."""

    path: Path
    manifest: dict

    # ---- files ----------------------------------------------------------------
    def file(self, name: str) -> Path:
        if name not in self.manifest["files"]:
            raise BundleError(f"bundle {self.path}: no file {name!r} in {MANIFEST}")
        return self.path / name

    def has_file(self, name: str | None) -> bool:
        return bool(name) and name in self.manifest["files"]

    def sha256(self, name: str) -> str:
        return self.manifest["files"][name]["sha256"]

    # ---- settings -------------------------------------------------------------
    @property
    def method(self) -> str:
        """``drdc``, ``diffusionad`` (export.diffusionad_bundle) or ``glad`` (export.glad_bundle)."""
        return str(self.manifest.get("method", "drdc"))

    @property
    def config(self) -> dict:
        return self.manifest["config"]

    def model_config(self):
        """The ModelConfig the bundle was exported with (drdc_trt.config is torch-free)."""
        from drdc_trt.settings import ModelConfig

        return ModelConfig.from_dict(self.config).validate()

    @property
    def image_size(self) -> int:
        return int(self.config["image_size"])

    @property
    def rows_per_image(self) -> int:
        return int(self.manifest["rows_per_image"])

    @property
    def fusion(self) -> dict:
        return self.manifest["fusion"]

    @property
    def normalization(self) -> tuple[float, float, float, float]:
        """(μ_diff, σ_diff, μ_base, σ_base)."""
        return tuple(float(v) for v in self.manifest["normalization"])

    def threshold(self, name: str) -> float:
        v = self.manifest["fusion_stats"].get(name)
        return math.inf if v is None else float(v)

    @property
    def max_batch(self) -> int:
        return int(self.manifest["max_batch"])

    # ---- networks -------------------------------------------------------------
    def network(self, name: str) -> dict:
        try:
            return self.manifest["networks"][name]
        except KeyError:
            raise BundleError(f"bundle {self.path}: {MANIFEST} has no network {name!r}") from None

    def inputs(self, network: str) -> list[TensorSpec]:
        return [TensorSpec.from_dict(d, f"networks.{network}.inputs") for d in self.network(network)["inputs"]]

    def outputs(self, network: str) -> list[TensorSpec]:
        return [TensorSpec.from_dict(d, f"networks.{network}.outputs") for d in self.network(network)["outputs"]]

    def check_inputs(self, network: str, arrays: Iterable) -> None:
        specs = self.inputs(network)
        arrays = list(arrays)
        if len(arrays) != len(specs):
            raise ValueError(f"the {network} network takes {len(specs)} inputs "
                             f"({', '.join(s.name for s in specs)}), got {len(arrays)}")
        batch = None
        for spec, a in zip(specs, arrays):
            spec.check(a, network)
            if batch is not None and a.shape[0] != batch:
                raise ValueError(f"input {spec.name!r} of the {network} network: batch {a.shape[0]} "
                                 f"differs from the first input's {batch}")
            batch = a.shape[0]

    def check_images(self, images) -> None:
        """Images for the whole pipeline: B×3×S×S float32, finite, in [-1, 1] (8-bit pixels v:
        v / 127.5 − 1; a slack of RANGE_SLACK covers float rounding)."""
        if not importlib.import_module("drdc_trt.methods").get(self.method).image_input:  # no network takes it alone
            s = self.image_size
            TensorSpec("image", ("batch", 3, s, s), "float32").check(images, self.method)
        else:
            self.check_inputs("base", [images])
        finite = np.isfinite(images)
        if not finite.all():
            first = tuple(int(i) for i in np.argwhere(~finite)[0])
            raise ValueError(f"images: {int((~finite).sum())} non-finite value(s) (NaN or Inf), the first at index "
                             f"{first}")
        lo, hi = float(images.min()), float(images.max())
        if lo < -1 - RANGE_SLACK or hi > 1 + RANGE_SLACK:
            hint = " (0..255 pixels? use v / 127.5 - 1)" if hi > 2 else ""
            raise ValueError(f"images: values span [{lo:.4g}, {hi:.4g}], expected [-1, 1]{hint}")

    def onnx_path(self, network: str) -> Path:
        return self.file(self.network(network)["onnx"])

    def plan(self, network: str) -> dict | None:
        """TensorRT plan metadata of a network (None when the bundle has no plan)."""
        return (self.manifest.get("tensorrt") or {}).get("plans", {}).get(network)

    # ---- noise ----------------------------------------------------------------
    def load_noise(self) -> dict[str, np.ndarray]:
        """The loop noise (fill, start R×3×S×S; steps T×R×3×S×S), float32, never unpickled."""
        return self._load_arrays("noise", NOISE_FILES)

    def load_pixel_stats(self) -> dict[str, np.ndarray] | None:
        """The diffusion map's per-pixel mean and std (S×S) of ``fusion.diff_norm = "pixel"``; None
        for a bundle without them (refused when its config asks for them)."""
        wants = (self.config.get("fusion") or {}).get("diff_norm", "global") == "pixel"
        if not self.manifest.get("pixel_stats"):
            if wants:
                raise BundleError(f"bundle {self.path}: {MANIFEST}: config has fusion.diff_norm='pixel' but "
                                  "pixel_stats is missing")
            return None
        arrays = self._load_arrays("pixel_stats", PIXEL_STATS_FILES)
        if not (np.isfinite(arrays["mean"]).all() and (arrays["std"] > 0).all()):
            raise BundleError(f"bundle {self.path}: pixel_stats: mean must be finite and std positive")
        return arrays

    def _load_arrays(self, section: str, names: dict[str, str]) -> dict[str, np.ndarray]:
        out = {}
        for key in names:
            spec = self.manifest[section][key]
            p = self.file(spec["file"])
            try:
                arr = np.load(p, allow_pickle=False)
            except (ValueError, OSError) as e:
                raise BundleError(f"bundle {self.path}: {spec['file']}: unreadable .npy ({e})") from None
            if list(arr.shape) != list(spec["shape"]) or arr.dtype.name != spec["dtype"]:
                raise BundleError(f"bundle {self.path}: {spec['file']}: holds {arr.shape} {arr.dtype}, "
                                  f"{MANIFEST} says {tuple(spec['shape'])} {spec['dtype']}")
            out[key] = arr
        return out


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v) -> bool:
    try:
        return (is_int(v) or isinstance(v, float)) and math.isfinite(v)
    except OverflowError:  # an int beyond the float range
        return False


def check_array_spec(spec: dict, field: str, where: Path) -> None:
    shape, dtype = spec.get("shape"), spec.get("dtype")
    if not isinstance(shape, list) or not all(is_int(s) and s > 0 for s in shape) or dtype not in _DTYPES:
        raise BundleError(f"bundle {where}: {MANIFEST}: {field} needs a shape (positive ints) and a dtype "
                          f"among {_DTYPES}, got shape {shape!r}, dtype {dtype!r}")


def _validate_references(m: dict, where: Path, files: set[str]) -> None:
    """The manifest's method checks its own fields (its registered ``manifest_check``). The method is
    looked up by the name the manifest carries, at run time (importlib), as a saved artifact names
    its own class: this format module does not import any method."""
    methods = importlib.import_module("drdc_trt.methods")
    method = m.get("method", "drdc")  # bundles written before the second method have no field: DRDC's
    try:
        spec = methods.get(method)
    except ValueError:
        raise BundleError(f"bundle {where}: {MANIFEST}: method {method!r} is not one of "
                          f"{list(methods.names())}") from None
    spec.entry("manifest_check")(
        m, where, files, BundleError, MANIFEST,
        check_tensor=lambda d, field: TensorSpec.from_dict(d, f"bundle {where}: {MANIFEST}: {field}"),
        check_array=lambda spec, field: check_array_spec(spec, field, where))
    _validate_int8(m, where, files)


def _validate_int8(m: dict, where: Path, files: set[str]) -> None:
    """``int8`` (``drdc export --int8``): per network an OpenVINO IR pair the manifest lists."""
    section = m.get("int8")
    if section is None:
        return
    nets = section.get("networks") if isinstance(section, dict) else None
    if not isinstance(nets, dict) or not nets:
        raise BundleError(f"bundle {where}: {MANIFEST}: int8.networks must map network names to their files")
    for net, entry in nets.items():
        if net not in m.get("networks", {}):
            raise BundleError(f"bundle {where}: {MANIFEST}: int8.networks.{net} is not one of the bundle's networks")
        for key in ("xml", "bin"):
            name = entry.get(key) if isinstance(entry, dict) else None
            if name not in files:
                raise BundleError(f"bundle {where}: {MANIFEST}: int8.networks.{net}.{key} names {name!r}, "
                                  "which is not among its files")


def read_manifest(path: str | Path) -> dict:
    """manifest.json of a bundle folder, schema version checked (files not verified)."""
    path = Path(path)
    if not path.is_dir():
        raise BundleError(f"bundle {path}: no such folder")
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise BundleError(f"bundle {path}: missing {MANIFEST} (not a bundle; write one with `drdc export`)")
    try:
        m = json.loads(mpath.read_text())
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError, too deep, > 4300 digits
        raise BundleError(f"bundle {path}: {MANIFEST} is not valid JSON ({str(e)[:200]})") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise BundleError(f"bundle {path}: {MANIFEST} is not a drdc_trt bundle manifest (format != {FORMAT!r})")
    version = m.get("schema_version")
    if version != SCHEMA_VERSION:
        raise BundleError(f"bundle {path}: {MANIFEST} has schema_version {version!r}, this drdc_trt reads "
                          f"schema_version {SCHEMA_VERSION}; re-export the bundle with `drdc export`")
    if not isinstance(m.get("files"), dict):
        raise BundleError(f"bundle {path}: {MANIFEST}: files must map file names to their sha256 and bytes")
    return m


def load_bundle(path: str | Path, verify: bool = True) -> Bundle:
    """Load and verify a bundle folder.

    Refuses (BundleError): a missing folder or manifest, another schema version,
    a manifest that lacks a field or names a file it does not list, a listed file
    that is missing, and (``verify=True``) a file whose size or SHA-256 differs
    from the manifest's.
    """
    importlib.import_module("drdc_trt.methods")  # the registry: every method's config sections are known
    path = Path(path)
    m = read_manifest(path)
    files = m["files"]
    for name, meta in files.items():
        _check_name(name)
        p = path / name
        if not p.is_file():
            raise BundleError(f"bundle {path}: missing file {name!r} (listed in {MANIFEST})")
        if not isinstance(meta, dict) or "sha256" not in meta or "bytes" not in meta:
            raise BundleError(f"bundle {path}: {MANIFEST}: files.{name} needs sha256 and bytes")
        if verify:
            size = p.stat().st_size
            if size != meta["bytes"]:
                raise BundleError(f"bundle {path}: file {name!r} has {size} bytes, {MANIFEST} says {meta['bytes']}: "
                                  "it changed after export; re-export the bundle")
            digest = sha256_file(p)
            if digest != meta["sha256"]:
                raise BundleError(f"bundle {path}: file {name!r} has SHA-256 {digest[:16]}…, {MANIFEST} says "
                                  f"{meta['sha256'][:16]}…: it changed after export; re-export the bundle")
    _validate_references(m, path, set(files))
    try:
        from drdc_trt.settings import ModelConfig, missing_fields

        ModelConfig.from_dict(m["config"]).validate()
    except (TypeError, ValueError, KeyError) as e:
        raise BundleError(f"bundle {path}: {MANIFEST}: config: {e}") from None
    missing = missing_fields(m["config"])
    if missing:  # the runtime reads the config as written: a default would be a silent guess
        raise BundleError(f"bundle {path}: {MANIFEST}: config lacks field(s) {', '.join(missing)}")
    return Bundle(path=path, manifest=m)
