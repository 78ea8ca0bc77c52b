"""One benchmarked engine: a backend × DDIM loop × precision, built on the pipeline.

Engines with ``loop`` ``torch`` or ``csrc`` run :class:`drdc_trt.methods.drdc.pipeline.Detector`
(the same code for every backend; engine backends through
:func:`drdc_trt.backends.as_torch_runner`); ``loop="runtime"`` runs a bundle on
the torch-free :class:`drdc_trt.runtime.BundleDetector` (C++ refiner when the
compiled core is built). Every engine gets the same stage timers: the runner's
``base`` and ``unet`` calls and the whole inpainting loop (``heat``) are timed
spans, so a sample splits into base / U-Net / in-between / fusion.

:func:`unavailable` says why an engine cannot run on this machine (the row is
reported with that reason, never dropped).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field

import torch

from drdc_trt.benchmarking.timing import StageTimer

LOOPS = ("torch", "csrc", "runtime")


@dataclass(frozen=True)
class EngineSpec:
    backend: str            # torch, torch-compiled, onnxruntime, openvino, tensorrt
    loop: str               # torch, csrc, runtime
    precision: str = "float32"
    baseline: bool = False

    @property
    def key(self) -> tuple:
        return (self.backend, self.loop, self.precision)


@dataclass
class Context:
    """What every engine of one run shares."""

    cfg: object                       # ModelConfig
    device: torch.device
    model: object                     # DRDCModel (torch backends, FLOP count)
    stats: object                     # FusionStats
    bundle: object | None = None      # drdc_trt.export.bundle.Bundle
    seed: int = 0
    compile_mode: str = "graph"
    ort_threads: int = 0
    notes: list[str] = field(default_factory=list)


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def csrc_status(device: torch.device) -> str | None:
    """None when the compiled core can run the csrc loop on ``device``, else why not."""
    try:
        from drdc_trt import _C
    except ImportError as e:
        return f"drdc_trt._C is not built ({e}); reinstall with `pip install .` and a C++ compiler"
    if not hasattr(_C, "Refiner") or not hasattr(_C, "step"):
        return "drdc_trt._C was built without the fused kernels / C++ refiner"
    if device.type == "cuda":
        if not dict(_C.build_info).get("cuda"):
            return "drdc_trt._C was built without CUDA kernels (no CUDA compiler at build time)"
        if _C.cuda_device_count() < 1:
            why = _C.cuda_status() if hasattr(_C, "cuda_status") else ""
            return "drdc_trt._C sees no CUDA device" + (f" ({why})" if why else "")
    return None


def engine_precision(spec: EngineSpec, ctx: Context) -> str:
    """The precision an engine computes in (engines take theirs from the bundle)."""
    if spec.backend == "tensorrt" and ctx.bundle is not None:
        return "float16" if ctx.bundle.manifest.get("precision", {}).get("tensorrt_fp16") else "float32"
    if spec.backend == "onnxruntime":
        return "float32"
    return spec.precision  # torch: autocast; openvino: its inference precision hint


def openvino_kwargs(spec: EngineSpec, ctx: Context) -> dict:
    return {"device": "CPU", "precision": spec.precision, "threads": ctx.ort_threads}


def ort_providers(device: torch.device) -> list[str]:
    return ["CUDAExecutionProvider", "CPUExecutionProvider"] if device.type == "cuda" else ["CPUExecutionProvider"]


def unavailable(spec: EngineSpec, ctx: Context) -> str | None:
    """Why ``spec`` cannot run here (None when it can)."""
    dev = ctx.device
    b = spec.backend
    if b == "torch":
        if spec.precision != "float32" and dev.type != "cuda":
            return f"AMP {spec.precision} runs on CUDA only (the torch runner's autocast is CUDA autocast)"
    elif b == "torch-compiled":
        if dev.type != "cuda":
            return ("torch-compiled needs a CUDA device (CUDA graphs, torch.compile for the GPU); on the CPU its "
                    "runner falls back to eager PyTorch with a warning, i.e. exactly the `torch` row")
    elif b == "onnxruntime":
        if not _has("onnxruntime"):
            return "onnxruntime is not installed"
        if dev.type == "cuda":
            import onnxruntime as ort

            if "CUDAExecutionProvider" not in ort.get_available_providers():
                return ("this onnxruntime build has no CUDAExecutionProvider (it comes with onnxruntime-gpu); its "
                        "CPU execution provider is benchmarked with --device cpu")
        if ctx.bundle is None:
            return "needs a bundle: --bundle B (make one with `drdc export --model CKPT --out B`)"
    elif b == "openvino":
        if not _has("openvino"):
            return "openvino is not installed (pip install '.[openvino]')"
        if dev.type != "cpu":
            return "the OpenVINO rows run on the CPU (--device cpu); its Intel GPU/NPU devices are not benchmarked"
        if ctx.bundle is None:
            return "needs a bundle: --bundle B (make one with `drdc export --model CKPT --out B`)"
        from drdc_trt.backends.openvino_backend import resolve_precision

        try:
            resolve_precision(spec.precision, "CPU")
        except ValueError as e:
            return str(e)
        if spec.precision == "int8" and not ctx.bundle.manifest.get("int8"):
            return "the bundle has no int8 networks (write them with `drdc export --int8 --calib DATA`)"
    elif b == "tensorrt":
        try:
            from drdc_trt.export.tensorrt_build import import_tensorrt

            import_tensorrt()
        except Exception as e:  # noqa: BLE001 - TensorRTUnavailable, or a broken install
            return f"{str(e).split(':')[0]} (needs the tensorrt package, TensorRT 10, and an NVIDIA GPU)"
        if dev.type != "cuda":
            return "TensorRT runs on an NVIDIA GPU only (--device cuda)"
        if not _has("cuda") or not (_has("cuda.bindings") or _has("cuda.cudart")):
            return "cuda-python is not installed (the TensorRT runner needs it for device memory and streams)"
        if ctx.bundle is None:
            return "needs a bundle: --bundle B (make one with `drdc export --model CKPT --out B [--tensorrt]`)"
    else:
        return f"unknown backend {b!r}"
    if spec.loop == "csrc":
        why = csrc_status(dev)
        if why:
            return f"loop csrc: {why}"
    if spec.loop == "runtime":
        if b not in ("onnxruntime", "openvino", "tensorrt"):
            return ("loop runtime is the torch-free bundle runtime: it runs the onnxruntime / openvino / tensorrt "
                    "engines only")
    return None


class _TimedRunner:
    """A runner whose ``base`` / ``unet`` calls are stage spans (everything else passes through)."""

    def __init__(self, inner, timer: StageTimer):
        self.inner = inner
        self.name, self.io = inner.name, inner.io
        self.base = timer.wrap("base", inner.base)
        self.unet = timer.wrap("unet", inner.unet)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@dataclass
class Engine:
    spec: EngineSpec
    label: str
    precision: str
    predict: object                 # callable(x torch tensor on the device) -> result
    info: dict = field(default_factory=dict)
    host_input: bool = False        # the runtime takes numpy arrays on the host

    def call(self, x):
        return self.predict(x)


def _torch_runner(spec: EngineSpec, ctx: Context):
    from drdc_trt.backends import make_runner

    info = {}
    if spec.backend == "torch":
        runner = make_runner("torch", model=ctx.model, device=ctx.device, precision=spec.precision)
        label = "torch eager"
    else:
        runner = make_runner("torch-compiled", model=ctx.model, device=ctx.device, precision=spec.precision,
                             mode=ctx.compile_mode)
        label = f"torch-compiled ({ctx.compile_mode})"
        if getattr(runner, "fallback_reason", None):
            info["fallback"] = runner.fallback_reason
    return runner, label, info


def _engine_runner(spec: EngineSpec, ctx: Context):
    from drdc_trt.backends import make_runner

    if spec.backend == "onnxruntime":
        runner = make_runner("onnxruntime", bundle=ctx.bundle, providers=ort_providers(ctx.device),
                             threads=ctx.ort_threads)
        eps = [p.replace("ExecutionProvider", "") for p in runner.providers]
        return runner, f"onnxruntime ({'+'.join(eps)} EP)", {"providers": list(runner.providers)}
    if spec.backend == "openvino":
        runner = make_runner("openvino", bundle=ctx.bundle, **openvino_kwargs(spec, ctx))
        return runner, f"openvino ({runner.label})", {"openvino_device": runner.device,
                                                      "inference_precision": runner.precision}
    runner = make_runner("tensorrt", bundle=ctx.bundle, rebuild=True)
    info = {"rebuilt_plans": dict(getattr(runner, "rebuilt", {}))}
    return runner, f"tensorrt ({engine_precision(spec, ctx).replace('float', 'fp')} plan)", info


def build(spec: EngineSpec, ctx: Context, timer: StageTimer) -> Engine:
    """The engine of ``spec`` with its stage spans on ``timer`` (call :func:`unavailable` first)."""
    prec = engine_precision(spec, ctx)
    if spec.loop == "runtime":
        from drdc_trt.methods.drdc.runtime import BundleDetector

        kwargs = ({"providers": ort_providers(ctx.device), "threads": ctx.ort_threads}
                  if spec.backend == "onnxruntime" else
                  openvino_kwargs(spec, ctx) if spec.backend == "openvino" else {"rebuild": True})
        det = BundleDetector(ctx.bundle, backend=spec.backend, kernels="auto", verify=False, **kwargs)
        det.runner = _TimedRunner(det.runner, timer)
        det.heat = timer.wrap("loop", det.heat)
        label = {"onnxruntime": "onnxruntime", "tensorrt": "tensorrt",
                 "openvino": f"openvino ({getattr(det.runner, 'label', '')})"}[spec.backend] + " (torch-free runtime)"
        info = {"runtime_loop": det.loop}
        return Engine(spec, label, prec, det.predict_batch, info, host_input=True)

    from drdc_trt.backends import as_torch_runner
    from drdc_trt.methods.drdc.pipeline import Detector

    if spec.backend in ("torch", "torch-compiled"):
        runner, label, info = _torch_runner(spec, ctx)
    else:
        inner, label, info = _engine_runner(spec, ctx)
        runner = as_torch_runner(inner, ctx.device)
    net_dtype = torch.float16 if (spec.precision == "float16" and ctx.device.type == "cuda"
                                  and spec.backend in ("torch", "torch-compiled")) else torch.float32
    det = Detector(ctx.cfg, _TimedRunner(runner, timer), ctx.stats, ctx.device, loop=spec.loop, seed=ctx.seed,
                   net_dtype=net_dtype)
    det.heat = timer.wrap("loop", det.heat)
    info["net_buffers"] = str(net_dtype).replace("torch.", "")
    return Engine(spec, label, prec, det.predict_batch, info)


def stage_breakdown(stages: list[dict], latencies_ms: list[float]) -> dict:
    """Median per stage over the samples: base, U-Net (sum of its calls), in-between
    (the loop minus its U-Net calls: prepare, steps, the loop's own overhead) and
    fusion (the rest of the call: fuse, scores, input checks)."""
    from drdc_trt.benchmarking.stats import median

    if not stages:
        return {}
    per = {"base_ms": [], "unet_ms": [], "between_ms": [], "fusion_ms": []}
    calls = 0
    for st, total in zip(stages, latencies_ms):
        base = st.get("base", {}).get("ms", 0.0)
        unet = st.get("unet", {}).get("ms", 0.0)
        loop = st.get("loop", {}).get("ms", 0.0)
        calls = st.get("unet", {}).get("calls", 0)
        per["base_ms"].append(base)
        per["unet_ms"].append(unet)
        per["between_ms"].append(max(loop - unet, 0.0))
        per["fusion_ms"].append(max(total - base - loop, 0.0))
    out = {k: median(v) for k, v in per.items()}
    out["unet_calls"] = calls
    return out
