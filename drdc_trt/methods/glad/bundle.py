"""The GLAD bundle: what its manifest holds and how the loader checks it (no torch).

A GLAD bundle is a folder like DRDC's (``bundle``: atomic writer, hashes, schema version) with
``"method": "glad"`` in its manifest and::

    unet.onnx       x N×C×S×S (x_t; C = 6 with glad.conditioned: concat(x_t, image)),
                    timesteps N (float32) → eps N×3×S×S; N varies per step (the runtime
                    runs the rows still denoising only)
    features.onnx   image N×3×S×S in [-1, 1] → stage{s} N×C_s×S/2^(s+1)×S/2^(s+1), one output
                    per stage in ``glad.feature_stages`` = sorted(set(map_stages) | {trigger_stage})
                    (the frozen backbone, its ImageNet normalisation folded in)
    noise.npy       3×S×S float32   the detector's ε (one for every image)
    unet.plan, features.plan, timing.cache   optional, TensorRT

Manifest sections read by the runtime (each refused by name when missing or malformed):
``glad`` (t0, num_steps, timesteps, alpha_bar, min_step, trigger_top_k, trigger_stage,
map_stages, feature_stages, blur_sigma, top_k, clip, conditioned), ``thresholds``
(image_threshold, pixel_threshold, tau: numbers, or null for +inf), ``noise`` (eps),
``noise_seed``, ``max_batch``, ``networks`` (unet, features), ``outputs``.
"""

from __future__ import annotations


from drdc_trt.export.bundle import is_int as _is_int, is_number as _is_number

METHOD = "glad"
NETWORKS = ("unet", "features")
NOISE_FILES = {"eps": "noise.npy"}
UNET_INPUTS, UNET_OUTPUT = ("x", "timesteps"), "eps"
FEATURES_INPUT = "image"
# What the runtime returns per image (drdc_trt.methods.glad.runtime.GLADResult; GLADBatch's names)
OUTPUTS = ("pred_score", "pred_label", "anomaly_map", "pred_mask", "reconstruction", "steps", "trigger_step",
           "trigger_kind", "max_score")
REQUIRED = ("config", "networks", "noise", "noise_seed", "glad", "thresholds", "max_batch", "outputs", "versions")
STAGE_STRIDES = (2, 4, 8, 16)  # backbone stages 0..3


def stage_output(stage: int) -> str:
    """The features network's output name of backbone stage ``stage``."""
    return f"stage{stage}"


def feature_stages(map_stages, trigger_stage: int) -> list[int]:
    """The backbone stages the bundle's features network returns, in output order."""
    return sorted(set(int(s) for s in map_stages) | {int(trigger_stage)})


def io_specs(image_size: int, in_channels: int, stage_channels: dict[int, int]) -> dict[str, tuple[list, list]]:
    """(inputs, outputs) of both networks as the manifest states them; ``stage_channels``:
    {stage: channels} of the stages the features network returns."""
    s = image_size
    feats = [{"name": stage_output(st), "shape": ["batch", c, s // STAGE_STRIDES[st], s // STAGE_STRIDES[st]],
              "dtype": "float32"} for st, c in sorted(stage_channels.items())]
    return {
        "unet": ([{"name": UNET_INPUTS[0], "shape": ["batch", in_channels, s, s], "dtype": "float32"},
                  {"name": UNET_INPUTS[1], "shape": ["batch"], "dtype": "float32"}],
                 [{"name": UNET_OUTPUT, "shape": ["batch", 3, s, s], "dtype": "float32"}]),
        "features": ([{"name": FEATURES_INPUT, "shape": ["batch", 3, s, s], "dtype": "float32",
                       "value_range": [-1.0, 1.0]}], feats),
    }


def validate_manifest(m: dict, where, files: set[str], error=ValueError, manifest_name: str = "manifest.json",
                      check_tensor=None, check_array=None) -> None:
    """Refuse a GLAD manifest that lacks a field the runtime reads, naming the field.
    ``check_tensor(d, field)`` / ``check_array(spec, field)`` check a network I/O entry and an
    array spec (bundle.py's own checks)."""
    def refuse(field: str, why: str):
        raise error(f"bundle {where}: {manifest_name}: {field} {why}")

    def missing_or(v, why: str) -> str:
        return "is missing" if v is None else why

    missing = [k for k in REQUIRED if k not in m]
    if missing:
        raise error(f"bundle {where}: {manifest_name} of a GLAD bundle lacks field(s) {missing}")
    g = m["glad"]
    if not isinstance(g, dict):
        refuse("glad", f"must be an object, got {g!r}")
    for key, lowest, kind in (("t0", 1, "positive"), ("num_steps", 1, "positive"), ("min_step", 0, "non-negative"),
                              ("trigger_top_k", 1, "positive"), ("top_k", 1, "positive")):
        v = g.get(key)
        if not (_is_int(v) and v >= lowest):
            refuse(f"glad.{key}", missing_or(v, f"must be a {kind} int, got {v!r}"))
    v = g.get("trigger_stage")
    if not (_is_int(v) and 0 <= v < len(STAGE_STRIDES)):
        refuse("glad.trigger_stage", missing_or(v, f"must be a backbone stage 0..3, got {v!r}"))
    for key in ("map_stages", "feature_stages"):
        v = g.get(key)
        if not (isinstance(v, list) and v and all(_is_int(s) and 0 <= s < len(STAGE_STRIDES) for s in v)):
            refuse(f"glad.{key}", missing_or(v, f"must list backbone stages 0..3, got {v!r}"))
    want = feature_stages(g["map_stages"], g["trigger_stage"])
    if g["feature_stages"] != want:
        refuse("glad.feature_stages", f"must be sorted(set(map_stages) | {{trigger_stage}}) = {want}, "
                                      f"got {g['feature_stages']!r}")
    ts, ab = g.get("timesteps"), g.get("alpha_bar")
    if not (isinstance(ts, list) and len(ts) == g["num_steps"] and all(_is_int(t) and t >= 0 for t in ts)
            and all(a > b for a, b in zip(ts, ts[1:]))):
        refuse("glad.timesteps", missing_or(ts, f"must list num_steps = {g['num_steps']} decreasing non-negative "
                                                f"ints, got {ts!r}"))
    if not (isinstance(ab, list) and len(ab) == len(ts) and all(_is_number(a) and 0 < a <= 1 for a in ab)):
        refuse("glad.alpha_bar", missing_or(ab, f"must list one number in (0, 1] per timestep, got {ab!r}"))
    v = g.get("blur_sigma")
    if not (_is_number(v) and v >= 0):
        refuse("glad.blur_sigma", missing_or(v, f"must be a non-negative number, got {v!r}"))
    for key in ("clip", "conditioned"):
        if not isinstance(g.get(key), bool):
            refuse(f"glad.{key}", missing_or(g.get(key), f"must be true or false, got {g.get(key)!r}"))
    # absent in bundles written before the field: they used "minmax" (config.LEGACY_VALUES)
    if g.get("saff_weight", "minmax") not in ("sigmoid", "minmax"):
        refuse("glad.saff_weight", f"must be \"sigmoid\" or \"minmax\", got {g.get('saff_weight')!r}")
    # absent in bundles written before the field: a fallen-back row stopped there
    if g.get("fallback", "stop") not in ("continue", "stop"):
        refuse("glad.fallback", f"must be \"continue\" or \"stop\", got {g.get('fallback')!r}")
    st = m["thresholds"]
    if not isinstance(st, dict):
        refuse("thresholds", f"must be an object, got {st!r}")
    for key in ("image_threshold", "pixel_threshold", "tau"):
        if key not in st:
            refuse(f"thresholds.{key}", "is missing")
        if not (st[key] is None or _is_number(st[key])):  # None: +inf (JSON has no inf)
            refuse(f"thresholds.{key}", f"must be a number or null, got {st[key]!r}")
    if not (_is_int(m["max_batch"]) and m["max_batch"] >= 1):
        refuse("max_batch", f"must be a positive int, got {m['max_batch']!r}")
    if not (_is_int(m["noise_seed"]) and m["noise_seed"] >= 0):
        refuse("noise_seed", f"must be a non-negative int, got {m['noise_seed']!r}")
    if not (isinstance(m["outputs"], list) and all(isinstance(o, str) for o in m["outputs"])):
        refuse("outputs", f"must list the result field names, got {m['outputs']!r}")
    nets = m["networks"]
    for net in NETWORKS:
        spec = nets.get(net) if isinstance(nets, dict) else None
        if not isinstance(spec, dict) or "onnx" not in spec:
            refuse(f"networks.{net}.onnx", "is missing")
        for role in ("inputs", "outputs"):
            if not isinstance(spec.get(role), list) or not spec[role]:
                refuse(f"networks.{net}.{role}", "is missing")
            for i, d in enumerate(spec[role]):
                if check_tensor is not None:
                    check_tensor(d, f"networks.{net}.{role}[{i}]")
        if not isinstance(spec["onnx"], str) or spec["onnx"] not in files:
            refuse(f"networks.{net}.onnx", f"names {spec['onnx']!r}, which is not among its files")
    names = [d.get("name") if isinstance(d, dict) else None for d in nets["features"]["outputs"]]
    if names != [stage_output(s) for s in g["feature_stages"]]:
        refuse("networks.features.outputs", f"must be {[stage_output(s) for s in g['feature_stages']]} "
                                            f"(glad.feature_stages), got {names}")
    noise = m["noise"]
    for key in NOISE_FILES:
        spec = noise.get(key) if isinstance(noise, dict) else None
        if not isinstance(spec, dict) or spec.get("file") not in files:
            refuse(f"noise.{key}", "is missing or names a file not in the bundle")
        if check_array is not None:
            check_array(spec, f"noise.{key}")
    trt = m.get("tensorrt") or {}
    plans = (trt.get("plans") or {}) if isinstance(trt, dict) else None
    if not isinstance(plans, dict):
        refuse("tensorrt.plans", "must be an object")
    for net, plan in plans.items():
        if not isinstance(plan, dict) or plan.get("file") not in files:
            refuse(f"tensorrt.plans.{net}", f"names {plan.get('file') if isinstance(plan, dict) else plan!r}, "
                                            "which is not among its files")
