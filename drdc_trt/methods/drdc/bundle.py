"""DRDC's bundle manifest: the fields its runtime reads (the registry's ``manifest_check``)."""

from __future__ import annotations

from pathlib import Path

from drdc_trt.export.bundle import NOISE_FILES, PIXEL_STATS_FILES, TensorSpec, check_array_spec, is_int, is_number

_REQUIRED = ("config", "networks", "noise", "rows_per_image", "normalization", "fusion_stats", "fusion",
             "max_batch", "label_seed", "timesteps", "versions")


def _check_settings(m: dict, where: Path, BundleError=ValueError, MANIFEST="manifest.json") -> None:
    """The values the runtimes read: present and of the right type and range."""
    def refuse(field: str, why: str):
        raise BundleError(f"bundle {where}: {MANIFEST}: {field} {why}")

    norm = m["normalization"]
    if not isinstance(norm, list) or len(norm) != 4 or not all(is_number(v) for v in norm):
        refuse("normalization", f"must be [mu_diff, sd_diff, mu_base, sd_base] (finite numbers), got {norm!r}")
    if not (norm[1] > 0 and norm[3] > 0):
        refuse("normalization", f"standard deviations must be positive, got sd_diff={norm[1]}, sd_base={norm[3]}")
    f = m["fusion"]
    if not isinstance(f, dict):
        refuse("fusion", f"must be an object, got {f!r}")
    pools = f.get("pool_factors")
    if not isinstance(pools, list) or not 1 <= len(pools) <= 4 or not all(is_int(p) and p >= 1 for p in pools):
        refuse("fusion.pool_factors", f"must list 1 to 4 positive ints, got {pools!r}")
    mf = f.get("mean_filter")
    if not (is_int(mf) and mf >= 1 and mf % 2 == 1):
        refuse("fusion.mean_filter", f"must be a positive odd int, got {mf!r}")
    lam = f.get("lam")
    if not (is_number(lam) and 0 <= lam <= 1):
        refuse("fusion.lam", f"must be a number in [0, 1], got {lam!r}")
    sw = f.get("score_window")
    if not (is_int(sw) and sw >= 1):
        refuse("fusion.score_window", f"must be a positive int, got {sw!r}")
    stats = m["fusion_stats"]
    for key in ("image_threshold", "pixel_threshold"):
        v = stats.get(key, "missing") if isinstance(stats, dict) else "missing"
        if not (v is None or is_number(v)):  # None: +inf (JSON has no inf)
            refuse(f"fusion_stats.{key}", f"must be a number or null, got {v!r}")
    for key in ("rows_per_image", "max_batch"):
        if not (is_int(m[key]) and m[key] >= 1):
            refuse(key, f"must be a positive int, got {m[key]!r}")
    if not (is_int(m["label_seed"]) and m["label_seed"] >= 0):
        refuse("label_seed", f"must be a non-negative int, got {m['label_seed']!r}")
    ts = m["timesteps"]
    if not isinstance(ts, list) or not ts or not all(is_int(t) and t >= 0 for t in ts):
        refuse("timesteps", f"must list the DDIM timesteps (non-negative ints), got {ts!r}")


def validate_manifest(m: dict, where, files: set[str], error=ValueError, manifest_name: str = "manifest.json",
                      check_tensor=None, check_array=None) -> None:
    """Refuse a DRDC manifest that lacks a field the runtime reads or names a file it does not hold."""
    BundleError, MANIFEST = error, manifest_name
    missing = [k for k in _REQUIRED if k not in m]
    if missing:
        raise BundleError(f"bundle {where}: {MANIFEST} lacks field(s) {missing}")
    _check_settings(m, where, BundleError, MANIFEST)
    for net in ("base", "unet"):
        spec = m["networks"].get(net) if isinstance(m["networks"], dict) else None
        if not isinstance(spec, dict) or "onnx" not in spec:
            raise BundleError(f"bundle {where}: {MANIFEST}: networks.{net}.onnx is missing")
        for role in ("inputs", "outputs"):
            if not isinstance(spec.get(role), list):
                raise BundleError(f"bundle {where}: {MANIFEST}: networks.{net}.{role} must list tensor specs")
            for i, d in enumerate(spec[role]):
                TensorSpec.from_dict(d, f"bundle {where}: {MANIFEST}: networks.{net}.{role}[{i}]")
        if not isinstance(spec["onnx"], str) or spec["onnx"] not in files:
            raise BundleError(f"bundle {where}: {MANIFEST}: networks.{net}.onnx names {spec['onnx']!r}, "
                              "which is not among its files")
    for key in NOISE_FILES:
        spec = m["noise"].get(key) if isinstance(m["noise"], dict) else None
        if not isinstance(spec, dict) or not isinstance(spec.get("file"), str) or spec["file"] not in files:
            raise BundleError(f"bundle {where}: {MANIFEST}: noise.{key} is missing or names a file not in the bundle")
        check_array_spec(spec, f"noise.{key}", where)
    for key in PIXEL_STATS_FILES if m.get("pixel_stats") else ():
        spec = m["pixel_stats"].get(key) if isinstance(m["pixel_stats"], dict) else None
        if not isinstance(spec, dict) or not isinstance(spec.get("file"), str) or spec["file"] not in files:
            raise BundleError(f"bundle {where}: {MANIFEST}: pixel_stats.{key} is missing or names a file not in "
                              "the bundle")
        check_array_spec(spec, f"pixel_stats.{key}", where)
    trt = m.get("tensorrt") or {}
    plans = trt.get("plans") or {} if isinstance(trt, dict) else None
    if not isinstance(plans, dict):
        raise BundleError(f"bundle {where}: {MANIFEST}: tensorrt.plans must be an object")
    for net, plan in plans.items():
        if not isinstance(plan, dict) or not isinstance(plan.get("file"), str) or plan["file"] not in files:
            raise BundleError(f"bundle {where}: {MANIFEST}: tensorrt.plans.{net} names "
                              f"{plan.get('file') if isinstance(plan, dict) else plan!r}, "
                              "which is not among its files")


