"""ONNX → TensorRT 10 plans (serialized engines), with the facts a runtime checks.

TensorRT 10 Python API, as used here: ``trt.Builder`` → ``create_network(0)``
(explicit batch is the only mode in TensorRT 10) → ``trt.OnnxParser.parse_from_file``
→ ``create_builder_config`` (``set_memory_pool_limit(MemoryPoolType.WORKSPACE)``,
``set_flag(BuilderFlag.FP16)``) → one optimisation profile
(``create_optimization_profile``, ``set_shape(name, min, opt, max)`` over the batch
dimension) → a persistent timing cache (``create_timing_cache(bytes)``,
``set_timing_cache``; saved back after the build) → ``build_serialized_network``
→ ``.plan``. Each plan is recorded with the TensorRT version and the GPU's
compute capability (cuda-python), because a plan only runs on the TensorRT
version and GPU architecture it was built for.

fp16: with ``fp16=True`` TensorRT may pick fp16 kernels; the timestep-embedding
path (everything computed from the ``timesteps`` input up to and including the
first matrix multiply: the sin/cos of t·f are sensitive at t ≈ 250) and the
normalisation layers are pinned to float32 (``layer.precision``,
``set_output_type``, ``BuilderFlag.PREFER_PRECISION_CONSTRAINTS``). Network I/O
stays float32.

This module imports no torch and imports TensorRT only when a plan is built,
so it loads where TensorRT is absent; :func:`import_tensorrt` then raises
:class:`TensorRTUnavailable` with what to install.
"""

from __future__ import annotations

import os
from pathlib import Path

from .bundle import atomic_write_bytes, sha256_file

DEFAULT_WORKSPACE = 4 << 30  # bytes of builder scratch memory
PIN_FP32_INPUTS = ("timesteps",)
SUPPORTED_MAJOR = 10  # TensorRT major version the builder and runner are written for


class TensorRTUnavailable(RuntimeError):
    """TensorRT 10 is not importable here (absent, or another major version)."""


class PlanBuildError(RuntimeError):
    pass


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise TensorRTUnavailable(
            "TensorRT is not installed: building or running TensorRT plans needs the `tensorrt` Python package "
            "(TensorRT 10; `pip install 'tensorrt==10.*'` on a machine with an NVIDIA GPU and driver). The ONNX "
            "files of a bundle run without it (--backend onnxruntime)") from None
    major = int(str(trt.__version__).split(".")[0])
    if major < 10:
        raise TensorRTUnavailable(f"TensorRT {trt.__version__} is installed; drdc_trt needs TensorRT 10 "
                                  "(named I/O tensors, execute_async_v3)")
    if major > SUPPORTED_MAJOR:
        # TensorRT 11 removed what the fp16 build uses (BuilderFlag.FP16, PREFER_PRECISION_CONSTRAINTS,
        # per-layer precision); refuse here rather than fail half-way through a build.
        raise TensorRTUnavailable(f"TensorRT {trt.__version__} is installed; drdc_trt's plan builder and runner "
                                  f"are written for TensorRT {SUPPORTED_MAJOR} (TensorRT 11 removed "
                                  "BuilderFlag.FP16, PREFER_PRECISION_CONSTRAINTS and per-layer precision): install "
                                  f"tensorrt=={SUPPORTED_MAJOR}.*, or run the bundle's ONNX (--backend onnxruntime)")
    return trt


def tensorrt_version() -> str | None:
    try:
        return str(import_tensorrt().__version__)
    except TensorRTUnavailable:
        return None


def cache_dir() -> Path:
    root = os.environ.get("DRDC_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "drdc_trt")
    return Path(root) / "tensorrt"


def default_timing_cache(trt_version: str, compute_capability: str) -> Path:
    """Persistent timing cache per TensorRT version and GPU architecture."""
    return cache_dir() / f"timing-trt{trt_version}-sm{compute_capability.replace('.', '')}.cache"


# --------------------------------------------------------------------------- profiles
def base_profile(config: dict, max_batch: int) -> dict[str, tuple]:
    s = int(config["image_size"])
    return {"image": ((1, 3, s, s), (max_batch, 3, s, s), (max_batch, 3, s, s))}


def unet_profile(config: dict, rows_per_image: int, max_batch: int) -> dict[str, tuple]:
    """The U-Net sees B·R rows for B images; optimised for full batches."""
    # the loop runs on the image with its border margin (configs without one: none)
    s = int(config["image_size"]) + 2 * int(config["diffusion"].get("margin", 0))
    c = int(config["unet"]["in_channels"])
    lo, hi = rows_per_image, rows_per_image * max_batch
    return {"x": ((lo, c, s, s), (hi, c, s, s), (hi, c, s, s)), "timesteps": ((lo,), (hi,), (hi,))}


def plan_mismatch(meta: dict, trt_version: str, compute_capability: str, device_name: str = "") -> str | None:
    """Why a plan (its manifest metadata) cannot run here; None when it can."""
    reasons = []
    if str(meta.get("tensorrt_version")) != str(trt_version):
        reasons.append(f"built with TensorRT {meta.get('tensorrt_version')}, this machine has TensorRT {trt_version}")
    if str(meta.get("compute_capability")) != str(compute_capability):
        here = f"this GPU ({device_name})" if device_name else "this GPU"
        reasons.append(f"built for GPU compute capability {meta.get('compute_capability')} "
                       f"({meta.get('device_name', '?')}), {here} has compute capability {compute_capability}")
    return "; ".join(reasons) or None


# --------------------------------------------------------------------------- build
def _is_float(trt, tensor) -> bool:
    return tensor is not None and tensor.dtype in (trt.float32, trt.float16)


def pin_fp32(trt, network, input_names=PIN_FP32_INPUTS) -> int:
    """Pin the layers fed (transitively) by ``input_names`` up to the first matrix multiply,
    and every normalisation layer, to float32. Returns how many layers were pinned."""
    tainted = {network.get_input(i).name for i in range(network.num_inputs)} & set(input_names)
    stop = {trt.LayerType.MATRIX_MULTIPLY}
    pinned = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        ins = [layer.get_input(k) for k in range(layer.num_inputs)]
        outs = [layer.get_output(k) for k in range(layer.num_outputs)]
        on_path = any(t is not None and t.name in tainted for t in ins)
        is_norm = layer.type == trt.LayerType.NORMALIZATION
        if (on_path or is_norm) and outs and all(_is_float(trt, t) for t in outs):
            layer.precision = trt.float32
            for k in range(layer.num_outputs):
                layer.set_output_type(k, trt.float32)
            if is_norm and hasattr(layer, "compute_precision"):
                layer.compute_precision = trt.float32
            pinned += 1
        if on_path and layer.type not in stop:
            tainted.update(t.name for t in outs)
    return pinned


def build_plan(onnx_path: str | Path, plan_path: str | Path, profile: dict[str, tuple], fp16: bool = False,
               timing_cache: str | Path | None = None, workspace: int = DEFAULT_WORKSPACE, device: int = 0,
               tf32: bool = True) -> dict:
    """Build one plan; return its manifest metadata. The timing cache file (if given) is
    loaded before and saved after the build (atomically). ``tf32=False`` clears TensorRT's
    default TF32 flag (exact float32 matmuls/convolutions, slower)."""
    trt = import_tensorrt()
    from drdc_trt.backends.cuda_util import device_info

    dev = device_info(device)
    onnx_path, plan_path = Path(onnx_path), Path(plan_path)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch always
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise PlanBuildError(f"{onnx_path}: the TensorRT ONNX parser failed: " + "; ".join(errors))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace))
    if not tf32:
        config.clear_flag(trt.BuilderFlag.TF32)
    pinned = 0
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
        pinned = pin_fp32(trt, network)
    prof = builder.create_optimization_profile()
    names = {network.get_input(i).name for i in range(network.num_inputs)}
    if names != set(profile):
        raise PlanBuildError(f"{onnx_path}: network inputs {sorted(names)}, profile for {sorted(profile)}")
    for name, (lo, opt, hi) in profile.items():
        prof.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(prof)
    cache_blob = b""
    if timing_cache is not None and Path(timing_cache).is_file():
        cache_blob = Path(timing_cache).read_bytes()
    cache = config.create_timing_cache(cache_blob)
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise PlanBuildError(f"{onnx_path}: build_serialized_network failed (see the TensorRT log above)")
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(plan_path, bytes(serialized))
    if timing_cache is not None:
        Path(timing_cache).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(Path(timing_cache), bytes(config.get_timing_cache().serialize()))
    return {"file": plan_path.name, "tensorrt_version": str(trt.__version__),
            "compute_capability": dev["compute_capability"], "device_name": dev["name"], "fp16": bool(fp16),
            "tf32": bool(tf32), "fp32_pinned_layers": pinned, "onnx_sha256": sha256_file(onnx_path),
            "profile": {k: {"min": list(v[0]), "opt": list(v[1]), "max": list(v[2])} for k, v in profile.items()}}


def build_plan_set(onnx: dict[str, Path], out_dir: str | Path, profiles: dict[str, dict[str, tuple]],
                   max_batch: int, fp16: bool = False, timing_cache: str | Path | None = None,
                   workspace: int = DEFAULT_WORKSPACE, device: int = 0, copy_cache_as: str | None = "timing.cache"
                   ) -> dict:
    """A plan per network of ``profiles`` (its optimisation profile; ``onnx[net]`` the graph) into
    ``out_dir`` (a bundle's staging folder); returns the manifest's ``tensorrt`` section.
    ``timing_cache`` defaults to the persistent per-version cache."""
    trt = import_tensorrt()
    from drdc_trt.backends.cuda_util import device_info

    dev = device_info(device)
    if timing_cache is None:
        timing_cache = default_timing_cache(str(trt.__version__), dev["compute_capability"])
    out_dir = Path(out_dir)
    plans = {net: build_plan(onnx[net], out_dir / f"{net}.plan", prof, fp16, timing_cache, workspace, device)
             for net, prof in profiles.items()}
    section = {"version": str(trt.__version__), "compute_capability": dev["compute_capability"],
               "device_name": dev["name"], "fp16": bool(fp16), "max_batch": int(max_batch), "plans": plans}
    if copy_cache_as and Path(timing_cache).is_file():
        atomic_write_bytes(out_dir / copy_cache_as, Path(timing_cache).read_bytes())
        section["timing_cache"] = copy_cache_as
    return section


def build_plans(onnx: dict[str, Path], out_dir: str | Path, config: dict, rows_per_image: int, max_batch: int,
                fp16: bool = False, timing_cache: str | Path | None = None, workspace: int = DEFAULT_WORKSPACE,
                device: int = 0, copy_cache_as: str | None = "timing.cache") -> dict:
    """DRDC's plans (base model and U-Net) into ``out_dir``: :func:`build_plan_set` with their profiles."""
    profiles = {"base": base_profile(config, max_batch), "unet": unet_profile(config, rows_per_image, max_batch)}
    return build_plan_set(onnx, out_dir, profiles, max_batch, fp16, timing_cache, workspace, device, copy_cache_as)


def cached_plan_path(bundle, network: str, trt_version: str, compute_capability: str, fp16: bool,
                     max_batch: int) -> Path:
    sha = bundle.sha256(bundle.network(network)["onnx"])[:16]
    return cache_dir() / "plans" / (f"{network}-{sha}-trt{trt_version}-sm{compute_capability.replace('.', '')}"
                                    f"-{'fp16' if fp16 else 'fp32'}-b{max_batch}.plan")


def rebuild_plan(bundle, network: str, fp16: bool | None = None, max_batch: int | None = None,
                 device: int = 0) -> tuple[Path, dict]:
    """Build ``network``'s plan from the bundle's ONNX for this machine, cached under
    ``$DRDC_CACHE/tensorrt/plans`` (keyed by the ONNX hash, TensorRT version, GPU
    architecture, precision and batch); the bundle itself is left untouched."""
    trt = import_tensorrt()
    from drdc_trt.backends.cuda_util import device_info

    dev = device_info(device)
    section = bundle.manifest.get("tensorrt") or {}
    fp16 = bool(section.get("fp16", False)) if fp16 is None else fp16
    max_batch = int(max_batch or section.get("max_batch") or bundle.max_batch)
    path = cached_plan_path(bundle, network, str(trt.__version__), dev["compute_capability"], fp16, max_batch)
    meta_profile = (base_profile(bundle.config, max_batch) if network == "base"
                    else unet_profile(bundle.config, bundle.rows_per_image, max_batch))
    if path.is_file():
        return path, {"file": path.name, "tensorrt_version": str(trt.__version__),
                      "compute_capability": dev["compute_capability"], "fp16": fp16, "cached": True}
    meta = build_plan(bundle.onnx_path(network), path, meta_profile, fp16,
                      default_timing_cache(str(trt.__version__), dev["compute_capability"]), device=device)
    return path, meta
