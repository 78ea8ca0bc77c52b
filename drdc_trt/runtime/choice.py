"""``--backend auto``: the fastest engine a bundle can run on this machine, by a written rule.

The rule, first match wins (docs/deploy.md says the same):

1. ``tensorrt``: TensorRT 10 and a CUDA GPU are here (plans are built from the bundle's ONNX when
   it carries none for this GPU).
2. ``openvino`` in ``int8``: the bundle carries int8 networks (``drdc export --int8``: the user asked for
   them, and each passed its check against f32 on the loop's own inputs at export), OpenVINO is
   installed, and the CPU has no native bf16 or has AMX (or AMX cannot be read). On an AMD EPYC
   (Zen 3, AVX2, no VNNI) OpenVINO int8 took 0.72-1.00× ONNX Runtime f32's time per batch for the
   three methods at batch 1 and 8 (benchmarks/results/int8_cpu_2026-12-07.md). On a CPU with native
   bf16 and no AMX (AVX-512 BF16 + VNNI: AMD Zen 4/5) bf16 comes first: on an AMD EPYC (Zen 5) the
   same DRDC bundle ran 2.0-2.2× slower in int8 than in bf16 (benchmarks/results/bf16_int8_cpu_2026-12-08.md),
   so int8 runs there only when bf16 fails its check (after rule 3).
3. ``openvino`` in ``bf16``: OpenVINO is installed, this CPU computes bf16 natively (OpenVINO's
   ``OPTIMIZATION_CAPABILITIES`` lists BF16: AVX-512 BF16 or AMX), and every network of the bundle
   passes the bf16 check here: on fixed inputs (the manifest's shapes, two rows, values in the
   inputs' ranges) its bf16 output lies within ``BF16_RTOL`` · max|f32 output| of OpenVINO's f32
   output. 5e-2 is the bound tests/integration/test_openvino_backend.py states for the U-Net (measured
   ~1e-2); bf16 keeps 8 significant bits, so each rounding is within 2^-8 ≈ 4e-3 relative and a few
   dozen layers of them stay inside the bound, a broken conversion (wrong layout, an op left in
   garbage precision) does not.
4. ``onnxruntime`` (f32): the engine ``drdc export`` checks against PyTorch. Neither f32 engine is
   faster everywhere: in the torch-free runtime at the small preset OpenVINO f32 took 359 ms against
   ONNX Runtime's 582 ms per batch of 1 on an Intel Xeon (benchmarks/results/openvino_cpu_2026-12-01.md),
   while on an AMD EPYC (Zen 3) ONNX Runtime took 0.71× OpenVINO's time at batch 1 and 0.81× at batch 8
   (benchmarks/results/backend_auto_cpu_2026-12-07.md).
5. ``openvino`` in ``f32`` where ONNX Runtime is not installed.

A backend the user names is used as named: the rule only fills in ``auto``. Nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

AUTO = "auto"
BF16_RTOL = 5e-2
CHECK_ROWS = 2


@dataclass
class Choice:
    backend: str
    precision: str | None     # OpenVINO's inference precision; None for the other engines
    reason: str
    considered: list[str] = field(default_factory=list)   # why each faster engine was passed over
    bf16_check: dict | None = None

    def to_dict(self) -> dict:
        return {"backend": self.backend, "precision": self.precision, "reason": self.reason,
                "considered": self.considered, "bf16_check": self.bf16_check}

    def text(self) -> str:
        p = f" ({self.precision})" if self.precision else ""
        lines = [f"--backend auto picks {self.backend}{p}: {self.reason}"]
        lines += [f"  not {c}" for c in self.considered]
        return "\n".join(lines)


def _installed(backend: str) -> bool:
    from drdc_trt.backends import available_backends

    return backend in available_backends()


def tensorrt_blocker() -> str | None:
    """Why TensorRT cannot run here (None: it can)."""
    from drdc_trt.backends.cuda_util import CudaUnavailable, device_info
    from drdc_trt.export.tensorrt_build import TensorRTUnavailable, import_tensorrt

    try:
        import_tensorrt()
        device_info(0)
    except (TensorRTUnavailable, CudaUnavailable) as e:
        return str(e).splitlines()[0]
    return None


def cpu_bf16() -> bool:
    from drdc_trt.backends.openvino_backend import supports_bf16

    return supports_bf16("CPU")


def cpu_amx() -> bool | None:
    """Whether this CPU has AMX tiles for int8 (Linux: the ``amx_int8`` flag of /proc/cpuinfo); None
    where that cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return "amx_int8" in line.split()
    except OSError:
        return None
    return None


def check_inputs(bundle, network: str, rows: int = CHECK_ROWS, seed: int = 0) -> list[np.ndarray]:
    """Fixed inputs of a network from its manifest specs: images uniform in their value range, time
    steps spread over the training schedule, anything else standard normal."""
    rng = np.random.default_rng(seed)
    steps = int((bundle.config.get("diffusion") or {}).get("num_train_timesteps", 1000))
    out = []
    ranges = {d.get("name"): d.get("value_range") for d in bundle.network(network).get("inputs", [])}
    for spec in bundle.inputs(network):
        shape = [rows if d == "batch" else int(d) for d in spec.shape]
        rng_range = ranges.get(spec.name)
        if spec.name in ("timesteps", "t") and len(shape) == 1:
            a = np.linspace(0.1, 0.9, shape[0]) * (steps - 1)
        elif rng_range:
            a = rng.uniform(rng_range[0], rng_range[1], shape)
        else:
            a = rng.standard_normal(shape)
        out.append(np.asarray(a, dtype=spec.dtype))
    return out


def bf16_check(bundle, rtol: float = BF16_RTOL) -> dict:
    """Every network of the bundle on OpenVINO f32 and bf16 (CPU) on ``check_inputs``: max |bf16 − f32|
    against rtol · max|f32|. Returns {"ok", "rtol", "networks": {name: {max_abs, ref_max, limit, ok}}}."""
    from drdc_trt.backends.openvino_backend import OvNetwork

    nets = {}
    for name in bundle.manifest["networks"]:
        arrays = check_inputs(bundle, name)
        spec_out = bundle.outputs(name)[0]
        ref = OvNetwork(bundle.onnx_path(name), bundle.inputs(name), spec_out, "CPU", "f32").run(*arrays)
        got = OvNetwork(bundle.onnx_path(name), bundle.inputs(name), spec_out, "CPU", "bf16").run(*arrays)
        ref_max = float(np.abs(ref).max())
        max_abs = float(np.abs(got.astype(np.float64) - ref).max())
        limit = rtol * ref_max
        nets[name] = {"max_abs": max_abs, "ref_max": ref_max, "limit": limit,
                      "ok": bool(np.isfinite(max_abs) and max_abs <= limit)}
    return {"ok": all(n["ok"] for n in nets.values()), "rtol": rtol, "networks": nets}


@dataclass
class Probe:
    """What this machine has; each a callable so that tests can stand in for a machine they are not."""

    tensorrt_blocker: Callable[[], str | None] = tensorrt_blocker
    openvino: Callable[[], bool] = lambda: _installed("openvino")
    onnxruntime: Callable[[], bool] = lambda: _installed("onnxruntime")
    cpu_bf16: Callable[[], bool] = cpu_bf16
    cpu_amx: Callable[[], bool | None] = cpu_amx
    bf16_check: Callable[..., dict] = bf16_check


def choose(bundle, probe: Probe | None = None) -> Choice:
    """The engine ``--backend auto`` runs ``bundle`` on here (module doc)."""
    probe = probe or Probe()
    considered, check = [], None
    why_not_trt = probe.tensorrt_blocker()
    if why_not_trt is None:
        return Choice("tensorrt", None, "TensorRT and a CUDA GPU are here", considered)
    considered.append(f"tensorrt: {why_not_trt}")
    int8 = sorted((bundle.manifest.get("int8") or {}).get("networks", {}))
    ov = probe.openvino()
    bf16 = ov and probe.cpu_bf16()
    amx = probe.cpu_amx() if bf16 else None
    int8_reason = (f"the bundle carries int8 networks ({', '.join(int8)}: checked against f32 at export) and "
                   "OpenVINO is here")
    if int8 and ov and not (bf16 and amx is False):
        return Choice("openvino", "int8", int8_reason + ("" if not bf16 else "; this CPU has AMX" if amx else
                                                          "; AMX unknown here"), considered)
    considered.append("openvino int8: " + ("the bundle has no int8 networks (drdc export --int8)" if not int8
                                           else "OpenVINO is not installed" if not ov else
                                           "this CPU has native bf16 but no AMX, where OpenVINO bf16 is the "
                                           "faster of the two (rule 2)"))
    if not ov:
        considered.append("openvino: not installed (pip install openvino)")
    elif not bf16:
        considered.append("openvino bf16: this CPU has no native bf16 (AVX-512 BF16 / AMX)")
    else:
        check = probe.bf16_check(bundle)
        if check["ok"]:
            return Choice("openvino", "bf16", "OpenVINO with native bf16 on this CPU; every network within "
                          f"{check['rtol']:g}·max|f32| of f32 here", considered, check)
        name, worst = max(check["networks"].items(), key=lambda kv: kv[1]["max_abs"] / max(kv[1]["limit"], 1e-30))
        considered.append(f"openvino bf16: network {name} differs from f32 by {worst['max_abs']:.3g} "
                          f"> {worst['limit']:.3g} ({check['rtol']:g}·max|f32|) on this CPU")
        if int8:
            return Choice("openvino", "int8", int8_reason + "; bf16 failed its check here", considered, check)
    if probe.onnxruntime():
        return Choice("onnxruntime", None, "f32 on ONNX Runtime, the engine drdc export checks against PyTorch "
                      "(OpenVINO f32 is not faster on every CPU)", considered, check)
    if probe.openvino():
        return Choice("openvino", "f32", "OpenVINO f32 (ONNX Runtime is not installed)", considered, check)
    raise ValueError("no engine to run a bundle is installed: pip install openvino or onnxruntime "
                     "(or TensorRT with a CUDA GPU); " + "; ".join(considered))
