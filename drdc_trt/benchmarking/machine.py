"""What a result was measured on: machine, libraries, date and the exact command."""

from __future__ import annotations

import datetime as dt
import importlib
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

import torch


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (``model name``), else platform's guess."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith(("model name", "hardware", "processor\t: arm")):
                    name = line.split(":", 1)[1].strip()
                    if name:
                        return name
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages (other work on the machine skews CPU timings)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _version(module: str) -> str:
    try:
        mod = importlib.import_module(module)
    except Exception as e:  # noqa: BLE001 - any import failure means "not usable here"
        return f"not installed ({type(e).__name__})"
    return str(getattr(mod, "__version__", "unknown"))


def gpu_info(device: torch.device) -> dict:
    props = torch.cuda.get_device_properties(device)
    info = {"gpu": props.name, "gpu_memory_gib": round(props.total_memory / 2**30, 1),
            "compute_capability": f"{props.major}.{props.minor}", "sm_count": props.multi_processor_count,
            "cuda_runtime": torch.version.cuda, "cudnn": torch.backends.cudnn.version()}
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20).stdout.strip().splitlines()
        info["driver"] = out[0] if out else "unknown"
    except (OSError, subprocess.SubprocessError):
        info["driver"] = "unknown (nvidia-smi unavailable)"
    return info


def command_line(argv: list[str] | None) -> str:
    """The command as typed: the console script's name and its arguments."""
    prog = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "drdc-bench"
    if prog in ("__main__.py", "bench.py", "-c", ""):
        prog = f"{Path(sys.executable).name} -m drdc_trt.bench"
    args = sys.argv[1:] if argv is None else list(argv)
    return " ".join([prog, *(shlex.quote(a) for a in args)])


def environment(device: torch.device, argv: list[str] | None = None) -> dict:
    import drdc_trt

    device = torch.device(device)
    env = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command_line(argv),
        "hostname": platform.node(),
        "os": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_at_start": load_average(),
        "device": str(device),
        "versions": {
            "python": platform.python_version(),
            "drdc_trt": drdc_trt.__version__,
            "drdc_trt._C": drdc_trt.build_info(),
            "torch": torch.__version__,
            "numpy": _version("numpy"),
            "onnx": _version("onnx"),
            "onnxruntime": _version("onnxruntime"),
            "tensorrt": _version("tensorrt"),
            "timm": _version("timm"),
        },
        "torch_flags": {
            "cudnn.benchmark": torch.backends.cudnn.benchmark,
            "cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
            "cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
        },
    }
    try:
        import onnxruntime as ort

        env["onnxruntime_providers"] = list(ort.get_available_providers())
    except Exception:  # noqa: BLE001
        env["onnxruntime_providers"] = []
    if device.type == "cuda":
        env.update(gpu_info(device))
    return env
