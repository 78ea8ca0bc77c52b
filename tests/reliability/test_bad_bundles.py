"""Bad bundles (files, manifest, the config inside it) are refused clearly.

Rows of the bad-input table (bad_inputs.py: the contract, the row type, the table's test):
damaged copies of a hand-built bundle fed to ``load_bundle`` and its noise loader. (A bundle's
``check_images`` on bad arrays: test_bad_images.py.)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

import numpy as np

from bad_inputs import Case, _MakesFolder, refusal_test, registrar
from drdc_trt.export.bundle import MANIFEST, NOISE_FILES, BundleError, load_bundle

CASES: list[Case] = []
case = registrar(CASES)


# --------------------------------------------------------------------------- builders
def _edit_manifest(bundle: Path, edit: Callable[[dict], None]) -> Path:
    m = json.loads((bundle / MANIFEST).read_text())
    edit(m)
    (bundle / MANIFEST).write_text(json.dumps(m))
    return bundle


def _rehash(bundle: Path, name: str) -> None:
    """Record file ``name``'s current SHA-256 and size in the manifest, as if it had been exported so."""
    data = (bundle / name).read_bytes()
    _edit_manifest(bundle, lambda m: m["files"].__setitem__(
        name, {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}))


# --------------------------------------------------------------------------- bundles
@case("bundle-pickled-npy-matching-hash", BundleError, "noise_fill.npy", "allow_pickle")
def _(env):
    b = env.bundle()
    marker = env.path("unpickled")
    with open(b / NOISE_FILES["fill"], "wb") as fh:
        np.save(fh, np.array([_MakesFolder(str(marker))], dtype=object), allow_pickle=True)
    _rehash(b, NOISE_FILES["fill"])
    try:
        load_bundle(b).load_noise()  # the hash check passes: only allow_pickle=False stands in the way
    finally:
        assert not marker.exists(), "the loader unpickled the file"


@case("bundle-truncated-npy-matching-hash", BundleError, "noise_steps.npy", "unreadable .npy")
def _(env):
    b = env.bundle()
    p = b / NOISE_FILES["steps"]
    p.write_bytes(p.read_bytes()[:100])
    _rehash(b, NOISE_FILES["steps"])
    load_bundle(b).load_noise()


@case("bundle-corrupted-byte", BundleError, "unet.onnx", "SHA-256")
def _(env):
    b = env.bundle()
    data = bytearray((b / "unet.onnx").read_bytes())
    data[500] ^= 0x10
    (b / "unet.onnx").write_bytes(bytes(data))
    load_bundle(b)


@case("bundle-truncated-file", BundleError, "unet.onnx", "bytes")
def _(env):
    b = env.bundle()
    (b / "unet.onnx").write_bytes((b / "unet.onnx").read_bytes()[:77])
    load_bundle(b)


@case("bundle-manifest-not-json", BundleError, "manifest.json", "not valid JSON")
def _(env):
    b = env.bundle()
    (b / MANIFEST).write_text((b / MANIFEST).read_text()[:-40])
    load_bundle(b)


@case("bundle-manifest-missing-field", BundleError, "manifest.json", "fusion_stats")
def _(env):
    load_bundle(_edit_manifest(env.bundle(), lambda m: m.pop("fusion_stats")))


@case("bundle-manifest-missing-fusion-field", BundleError, "manifest.json", "fusion.lam")
def _(env):
    load_bundle(_edit_manifest(env.bundle(), lambda m: m["fusion"].pop("lam")))


@case("bundle-manifest-missing-threshold", BundleError, "manifest.json", "fusion_stats.image_threshold")
def _(env):
    # read as +inf before: every image "normal", silently
    load_bundle(_edit_manifest(env.bundle(), lambda m: m["fusion_stats"].pop("image_threshold")))


@case("bundle-manifest-zero-std", BundleError, "manifest.json", "normalization", "sd_diff=0")
def _(env):
    load_bundle(_edit_manifest(env.bundle(), lambda m: m.__setitem__("normalization", [0.5, 0, 3.0, 1.5])))


@case("bundle-manifest-noise-without-shape", BundleError, "manifest.json", "noise.start", "shape")
def _(env):
    load_bundle(_edit_manifest(env.bundle(), lambda m: m["noise"]["start"].pop("shape")))


@case("bundle-manifest-negative-max-batch", BundleError, "manifest.json", "max_batch", "-1")
def _(env):
    load_bundle(_edit_manifest(env.bundle(), lambda m: m.__setitem__("max_batch", -1)))


@case("bundle-wrong-format", BundleError, "manifest.json", "format")
def _(env):
    load_bundle(_edit_manifest(env.bundle(), lambda m: m.__setitem__("format", "onnx.bundle")))


@case("bundle-wrong-version-string", BundleError, "manifest.json", "schema_version '1'")
def _(env):
    load_bundle(_edit_manifest(env.bundle(), lambda m: m.__setitem__("schema_version", "1")))


@case("bundle-config-invalid-value", BundleError, "manifest.json", "config", "fusion.lam")
def _(env):
    load_bundle(_edit_manifest(env.bundle(), lambda m: m["config"]["fusion"].__setitem__("lam", 3)))


@case("bundle-config-wrong-type", BundleError, "manifest.json", "config.diffusion.num_steps", "'3'")
def _(env):
    load_bundle(_edit_manifest(env.bundle(), lambda m: m["config"]["diffusion"].__setitem__("num_steps", "3")))


@case("bundle-config-missing-field", BundleError, "manifest.json", "config lacks", "diffusion.t0")
def _(env):
    load_bundle(_edit_manifest(env.bundle(), lambda m: m["config"]["diffusion"].pop("t0")))


@case("bundle-config-not-an-object", BundleError, "manifest.json", "config", "expected an object")
def _(env):
    load_bundle(_edit_manifest(env.bundle(), lambda m: m.__setitem__("config", [1, 2])))


# --------------------------------------------------------------------------- the table
test_bad_input_is_refused_clearly = refusal_test(CASES)
