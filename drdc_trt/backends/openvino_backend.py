"""OpenVINO runner: numpy in, numpy out, I/O bound by name (no torch).

OpenVINO reads the bundle's ONNX files directly and compiles them for a device:
``CPU`` by default; ``GPU``, ``NPU`` and the virtual ``AUTO`` (``AUTO:GPU,CPU``)
where the installed OpenVINO sees them. A device that is not there is refused
with the list of those that are.

Precision: OpenVINO's CPU plugin computes in bf16 by default on CPUs with
AVX-512 BF16 / AMX (a small conv net then differs from PyTorch by ~1e-2), so
the precision is always asked for explicitly (``INFERENCE_PRECISION_HINT``):
``f32`` (default) or ``bf16`` (refused on a device without it). ``int8`` runs
the bundle's int8 networks (``drdc export --int8``: NNCF post-training
quantization, OpenVINO IR files the manifest lists under ``int8``); their layers
NNCF kept in float, and networks without an int8 file, compute in f32.

Batch: dynamic by default (the bundle's ONNX has a dynamic batch dimension).
``static_batch=B`` reshapes both networks to B images (B × rows-per-image U-Net
rows), which lets the CPU plugin pick kernels for one shape; calls of another
size run in chunks of that size, the last one padded.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Sequence

import numpy as np

PRECISIONS = ("f32", "bf16", "int8")
DEFAULT_DEVICE = "CPU"
# The names drdc-bench and the PyTorch precision options use, mapped to OpenVINO's.
PRECISION_ALIASES = {"float32": "f32", "fp32": "f32", "bfloat16": "bf16"}
_VIRTUAL = ("AUTO", "MULTI", "HETERO")


def core():
    """One OpenVINO Core per process (it loads the device plugins on first use)."""
    global _CORE
    if _CORE is None:
        import openvino as ov

        _CORE = ov.Core()
    return _CORE


_CORE = None


def available_devices() -> list[str]:
    return list(core().available_devices)


def _physical(device: str) -> list[str]:
    """The physical devices a device string names: ``GPU.1`` → [GPU.1]; ``AUTO:GPU,CPU`` → [GPU, CPU];
    plain ``AUTO`` → [] (it picks among what is there)."""
    head, _, tail = device.partition(":")
    if head in _VIRTUAL:
        return [d.strip() for d in tail.split(",") if d.strip()]
    return [device]


def resolve_device(device: str | None) -> str:
    """``device`` in OpenVINO's spelling (upper case), checked against what this machine has."""
    device = (device or DEFAULT_DEVICE).strip().upper()
    have = available_devices()
    for d in _physical(device):
        # "GPU" matches "GPU.0" / "GPU.1" when OpenVINO numbers several of one kind
        if d not in have and not any(h.split(".")[0] == d for h in have):
            raise ValueError(f"OpenVINO device {device!r}: {d} is not available on this machine (OpenVINO sees "
                             f"{have}); GPU needs the Intel GPU driver (OpenCL), NPU the Intel NPU driver")
    return device


def supports_bf16(device: str = DEFAULT_DEVICE) -> bool:
    """Whether every physical device of ``device`` computes in bf16 (OpenVINO's CPU plugin: CPUs with
    AVX-512 BF16 or AMX; an AVX2-only CPU does not)."""
    return all("BF16" in core().get_property(d, "OPTIMIZATION_CAPABILITIES")
               for d in _physical(device.upper()) or ["CPU"])


def resolve_precision(precision: str | None, device: str) -> str:
    p = PRECISION_ALIASES.get(precision or "f32", precision or "f32")
    if p not in PRECISIONS:
        raise ValueError(f"OpenVINO precision {precision!r}: choose one of {list(PRECISIONS)}")
    if p == "bf16":
        for d in _physical(device) or ["CPU"]:
            caps = core().get_property(d, "OPTIMIZATION_CAPABILITIES")
            if "BF16" not in caps:
                raise ValueError(f"OpenVINO precision bf16: device {d} does not support it (its capabilities: "
                                 f"{list(caps)})")
    return p


def network_model(bundle, network: str, precision: str) -> tuple[Path, str]:
    """The model file OpenVINO reads for ``network`` at ``precision`` and the inference precision
    to compile it with: int8 → the network's int8 IR (compiled with f32 for the layers NNCF kept in
    float) or, for a network the bundle did not quantize, its ONNX in f32."""
    if precision != "int8":
        return bundle.onnx_path(network), precision
    section = bundle.manifest.get("int8")
    if not section:
        raise ValueError(f"bundle {bundle.path} holds no int8 networks; write them with `drdc export --int8 "
                         "--calib DATA`, or choose --precision f32 / bf16")
    entry = section["networks"].get(network)
    return (bundle.file(entry["xml"]) if entry else bundle.onnx_path(network)), "f32"


# The inputs every OvNetwork call receives while :func:`recording` is active (int8 calibration).
_RECORDED: dict | None = None


@contextlib.contextmanager
def recording():
    """``with recording() as calls:`` every OvNetwork run inside appends its inputs to
    ``calls[network file stem]`` (one list of arrays per call)."""
    global _RECORDED
    prev, _RECORDED = _RECORDED, {}
    try:
        yield _RECORDED
    finally:
        _RECORDED = prev


def _shape_text(shape) -> str:
    return "×".join("batch" if s == "batch" else str(s) for s in shape)


class OvNetwork:
    """One ONNX graph (or int8 IR) compiled by OpenVINO, inputs and outputs bound by name.

    ``specs_in`` / ``spec_out``: the manifest's TensorSpecs; the graph's names,
    ranks and static dimensions must match them. ``outputs``: the output names :meth:`infer`
    returns (default: ``spec_out``'s).

    ``streams``: calls of two rows or more run split over OpenVINO CPU streams (the THROUGHPUT
    hint: several infer requests at once, each on its own cores) — ``None`` lets OpenVINO choose
    the count (2 on a 2-core CPU), 0 or 1 keeps every call on the one latency-mode request. A
    one-row call always takes the latency request. On 2 cores (AMD EPYC) the three methods' whole
    pipelines took 0.65–0.96× (f32) and 0.84–1.02× (int8) the latency mode's time with 2 streams
    (benchmarks/results/int8_cpu_2026-12-07.md), and 32 U-Net rows gave the same bits; every row is
    computed by the same compiled kernels either way, only the batch a kernel sees changes, so the
    engines' f32 contract (1e-5 of the largest value) is the bound that holds. Static batches
    (``static_rows``) and other devices keep the latency mode.
    """

    def __init__(self, path: str | Path, specs_in: Sequence, spec_out, device: str = DEFAULT_DEVICE,
                 precision: str = "f32", threads: int = 0, static_rows: int | None = None,
                 outputs: Sequence[str] | None = None, streams: int | None = 0):
        import openvino as ov

        self.path = Path(path)
        model = core().read_model(str(self.path))
        got_in = [p.get_any_name() for p in model.inputs]
        got_out = [p.get_any_name() for p in model.outputs]
        want_in = [s.name for s in specs_in]
        if got_in != want_in or spec_out.name not in got_out:
            raise ValueError(f"{self.path}: graph has inputs {got_in} and outputs {got_out}; manifest.json "
                             f"says inputs {want_in} and output {spec_out.name!r}")
        for spec, port in [*zip(specs_in, model.inputs), (spec_out, model.output(spec_out.name))]:
            ps = port.get_partial_shape()
            ok = ps.rank.is_static and ps.rank.get_length() == len(spec.shape) and all(
                e == "batch" or (d.is_static and d.get_length() == e) for d, e in zip(ps, spec.shape))
            if not ok:
                raise ValueError(f"{self.path}: tensor {spec.name!r} has shape {ps} in the graph, manifest.json "
                                 f"says {_shape_text(spec.shape)}")
        self.static_rows = static_rows
        if static_rows is not None:
            model.reshape({p.get_any_name(): ov.PartialShape([static_rows, *list(p.get_partial_shape())[1:]])
                           for p in model.inputs})
        config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
        if threads and not device.startswith(_VIRTUAL):
            config["INFERENCE_NUM_THREADS"] = int(threads)
        self.compiled = core().compile_model(model, device, config)
        self.request = self.compiled.create_infer_request()
        self.input_names, self.output_name = want_in, spec_out.name
        self.output_names = list(outputs or [spec_out.name])
        self.device, self.precision = device, precision
        self.streams, self._stream_requests = 1, []
        if streams != 0 and streams != 1 and static_rows is None and device == "CPU":
            tp = {**config, "PERFORMANCE_HINT": "THROUGHPUT", **({"NUM_STREAMS": int(streams)} if streams else {})}
            tput = core().compile_model(model, device, tp)
            n = int(tput.get_property("NUM_STREAMS"))
            if n > 1:
                self.streams, self._stream_requests = n, [tput.create_infer_request() for _ in range(n)]

    def infer(self, arrays) -> list[np.ndarray]:
        """One call: the outputs named by ``outputs``, float32 copies; recorded while :func:`recording`
        is on. Two rows or more go over the streams (class doc)."""
        if _RECORDED is not None:
            _RECORDED.setdefault(self.path.name.split(".")[0], []).append([np.array(a) for a in arrays])
        n = arrays[0].shape[0]
        if self.streams < 2 or n < 2:
            res = self.request.infer(dict(zip(self.input_names, arrays)))
            return [np.array(res[name], dtype=np.float32, copy=True) for name in self.output_names]
        k = min(self.streams, n)
        bounds = np.linspace(0, n, k + 1).round().astype(int)
        reqs = self._stream_requests[:k]
        for req, lo, hi in zip(reqs, bounds[:-1], bounds[1:]):
            req.start_async({name: a[lo:hi] for name, a in zip(self.input_names, arrays)})
        parts = []
        for req in reqs:
            req.wait()
            parts.append([np.array(req.get_tensor(name).data, dtype=np.float32, copy=True)
                          for name in self.output_names])
        return [np.concatenate([p[i] for p in parts]) for i in range(len(self.output_names))]

    def _infer(self, arrays) -> np.ndarray:
        return self.infer(arrays)[self.output_names.index(self.output_name)]

    def run(self, *arrays: np.ndarray) -> np.ndarray:
        arrays = [np.ascontiguousarray(a) for a in arrays]
        k = self.static_rows
        if k is None:
            return self._infer(arrays)
        n = arrays[0].shape[0]
        parts = []
        for i in range(0, n, k):
            chunk = [a[i:i + k] for a in arrays]
            m = chunk[0].shape[0]
            if m < k:  # pad the last chunk to the compiled batch (repeat its last row)
                chunk = [np.concatenate([c, np.repeat(c[-1:], k - m, axis=0)]) for c in chunk]
            parts.append(self._infer(chunk)[:m])
        return np.concatenate(parts) if len(parts) > 1 else parts[0]


class OpenVINORunner:
    """The two networks of a bundle on OpenVINO. numpy in, numpy out.

    ``base(images B×3×S×S float32) -> B×h×w float32``;
    ``unet(x N×6×S×S, t N float32) -> N×3×S×S float32``. Inputs are checked
    against the manifest (shape, channel count, dtype) before they reach OpenVINO.
    """

    name = "openvino"
    io = "numpy"

    def __init__(self, bundle, device: str | None = None, precision: str | None = None, threads: int = 0,
                 static_batch: int | None = None, streams: int | None = None):
        if static_batch is not None and int(static_batch) < 1:
            raise ValueError(f"OpenVINO static_batch must be >= 1, got {static_batch}")
        self.bundle = bundle
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.static_batch = None if static_batch is None else int(static_batch)
        rows = {"base": self.static_batch,
                "unet": None if static_batch is None else self.static_batch * bundle.rows_per_image}
        nets = {}
        for net in ("base", "unet"):
            path, hint = network_model(bundle, net, self.precision)
            nets[net] = OvNetwork(path, bundle.inputs(net), bundle.outputs(net)[0], self.device, hint, threads,
                                  rows[net], streams=streams)
        self._base, self._unet = nets["base"], nets["unet"]
        self.unet_dtype = bundle.inputs("unet")[0].dtype

    @property
    def label(self) -> str:
        streams = f", {self._unet.streams} streams" if self._unet.streams > 1 else ""
        return (f"{self.device}, {self.precision}" + streams +
                (f", static batch {self.static_batch}" if self.static_batch else ""))

    def base(self, images: np.ndarray) -> np.ndarray:
        self.bundle.check_inputs("base", [images])
        return self._base.run(images)

    def unet(self, x: np.ndarray, t: np.ndarray) -> np.ndarray:
        self.bundle.check_inputs("unet", [x, t])
        return self._unet.run(x, t)
