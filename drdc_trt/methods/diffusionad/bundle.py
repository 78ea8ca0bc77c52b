"""The DiffusionAD bundle: what its manifest holds and how the loader checks it (no torch).

A DiffusionAD bundle is a folder like DRDC's (``bundle``: atomic writer, hashes, schema
version) with ``"method": "diffusionad"`` in its manifest and::

    unet.onnx      x N×3×S×S (x_t), timesteps N (float32) → eps N×3×S×S
                   (2 rows per image: row 2b at t_a, row 2b + 1 at t_b)
    seg.onnx       x B×6×S×S (cat(image, x0_g)) → anomaly_map B×1×S×S in [0, 1]
    noise_a.npy    3×S×S float32   the detector's noise of the t_a scale (one for every image)
    noise_b.npy    3×S×S float32   the same for t_b
    unet.plan, seg.plan, timing.cache   optional, TensorRT

Manifest sections read by the runtime (each refused by name when missing or malformed):
``diffusionad`` (t_a, t_b, w, alpha_bar_a, alpha_bar_b, top_k), ``thresholds``
(image_threshold, pixel_threshold: numbers, or null for +inf), ``noise`` (a, b),
``noise_seed``, ``rows_per_image`` (2), ``max_batch``, ``networks`` (unet, seg).
"""

from __future__ import annotations


from drdc_trt.export.bundle import is_int as _is_int, is_number as _is_number

METHOD = "diffusionad"
NETWORKS = ("unet", "seg")
NOISE_FILES = {"a": "noise_a.npy", "b": "noise_b.npy"}
ROWS_PER_IMAGE = 2
UNET_INPUTS, UNET_OUTPUT = ("x", "timesteps"), "eps"
SEG_INPUT, SEG_OUTPUT = "x", "anomaly_map"
REQUIRED = ("config", "networks", "noise", "noise_seed", "diffusionad", "thresholds", "rows_per_image", "max_batch",
            "versions")


def io_specs(image_size: int) -> dict[str, tuple[list[dict], list[dict]]]:
    """(inputs, outputs) of both networks as the manifest states them."""
    s = image_size
    return {
        "unet": ([{"name": UNET_INPUTS[0], "shape": ["batch", 3, s, s], "dtype": "float32"},
                  {"name": UNET_INPUTS[1], "shape": ["batch"], "dtype": "float32"}],
                 [{"name": UNET_OUTPUT, "shape": ["batch", 3, s, s], "dtype": "float32"}]),
        "seg": ([{"name": SEG_INPUT, "shape": ["batch", 6, s, s], "dtype": "float32"}],
                [{"name": SEG_OUTPUT, "shape": ["batch", 1, s, s], "dtype": "float32"}]),
    }


def validate_manifest(m: dict, where, files: set[str], error=ValueError, manifest_name: str = "manifest.json",
                      check_tensor=None, check_array=None) -> None:
    """Refuse a DiffusionAD manifest that lacks a field the runtime reads, naming the field.
    ``check_tensor(d, field)`` / ``check_array(spec, field)`` check a network I/O entry and an
    array spec (bundle.py's own checks)."""
    def refuse(field: str, why: str):
        raise error(f"bundle {where}: {manifest_name}: {field} {why}")

    missing = [k for k in REQUIRED if k not in m]
    if missing:
        raise error(f"bundle {where}: {manifest_name} of a DiffusionAD bundle lacks field(s) {missing}")
    a = m["diffusionad"]
    if not isinstance(a, dict):
        refuse("diffusionad", f"must be an object, got {a!r}")
    for key, lowest, kind in (("t_a", 0, "non-negative"), ("t_b", 0, "non-negative"), ("top_k", 1, "positive")):
        v = a.get(key)
        if not (_is_int(v) and v >= lowest):
            refuse(f"diffusionad.{key}", "is missing" if v is None else f"must be a {kind} int, got {v!r}")
    if not a["t_a"] < a["t_b"]:
        refuse("diffusionad.t_a", f"must be below t_b, got t_a={a['t_a']}, t_b={a['t_b']}")
    if not _is_number(a.get("w")):
        refuse("diffusionad.w", "is missing" if a.get("w") is None else f"must be a finite number, got {a['w']!r}")
    for key in ("alpha_bar_a", "alpha_bar_b"):
        v = a.get(key)
        if not (_is_number(v) and 0 < v <= 1):
            refuse(f"diffusionad.{key}", "is missing" if v is None else f"must be a number in (0, 1], got {v!r}")
    st = m["thresholds"]
    if not isinstance(st, dict):
        refuse("thresholds", f"must be an object, got {st!r}")
    for key in ("image_threshold", "pixel_threshold"):
        if key not in st:
            refuse(f"thresholds.{key}", "is missing")
        if not (st[key] is None or _is_number(st[key])):  # None: +inf (JSON has no inf)
            refuse(f"thresholds.{key}", f"must be a number or null, got {st[key]!r}")
    if m["rows_per_image"] != ROWS_PER_IMAGE:
        refuse("rows_per_image", f"must be {ROWS_PER_IMAGE} (t_a and t_b rows), got {m['rows_per_image']!r}")
    if not (_is_int(m["max_batch"]) and m["max_batch"] >= 1):
        refuse("max_batch", f"must be a positive int, got {m['max_batch']!r}")
    if not (_is_int(m["noise_seed"]) and m["noise_seed"] >= 0):
        refuse("noise_seed", f"must be a non-negative int, got {m['noise_seed']!r}")
    nets = m["networks"]
    for net in NETWORKS:
        spec = nets.get(net) if isinstance(nets, dict) else None
        if not isinstance(spec, dict) or "onnx" not in spec:
            refuse(f"networks.{net}.onnx", "is missing")
        for role in ("inputs", "outputs"):
            if not spec.get(role):
                refuse(f"networks.{net}.{role}", "is missing")
            for i, d in enumerate(spec[role]):
                if check_tensor is not None:
                    check_tensor(d, f"networks.{net}.{role}[{i}]")
        if spec["onnx"] not in files:
            refuse(f"networks.{net}.onnx", f"names {spec['onnx']!r}, which is not among its files")
    noise = m["noise"]
    for key in NOISE_FILES:
        spec = noise.get(key) if isinstance(noise, dict) else None
        if not isinstance(spec, dict) or spec.get("file") not in files:
            refuse(f"noise.{key}", "is missing or names a file not in the bundle")
        if check_array is not None:
            check_array(spec, f"noise.{key}")
    for net, plan in ((m.get("tensorrt") or {}).get("plans") or {}).items():
        if plan.get("file") not in files:
            refuse(f"tensorrt.plans.{net}", f"names {plan.get('file')!r}, which is not among its files")
