"""TensorRT 10 runner: a bundle's plans through the runtime API (no torch).

Per network: ``trt.Runtime.deserialize_cuda_engine`` → ``create_execution_context``;
I/O tensors by name (``num_io_tensors``, ``get_tensor_name``, ``get_tensor_mode``,
``get_tensor_dtype``); each call sets ``set_input_shape`` and
``set_tensor_address`` by name and enqueues ``execute_async_v3`` on a CUDA
stream. Device memory and streams come from cuda-python
(``drdc_trt.backends.cuda_util``).

Two ways in: numpy (``base`` / ``unet``: host arrays are copied to device
buffers owned by the runner, results copied back) and device pointers
(``base_device`` / ``unet_device``: the caller's CUDA buffers and stream, used
by the torch adapter for CUDA tensors).

Before deserializing, each plan's manifest record is compared with this
machine: a plan built with another TensorRT version or for another GPU
compute capability is refused with :class:`PlanMismatchError` — or, with
``rebuild=True``, rebuilt from the bundle's ONNX into a per-machine cache
(``drdc_trt.export.tensorrt_build.rebuild_plan``), leaving the bundle as it is.
"""

from __future__ import annotations

import warnings

import numpy as np

from drdc_trt.export.tensorrt_build import import_tensorrt, plan_mismatch, rebuild_plan

from .cuda_util import DeviceBuffer, Stream, copy_to_device, copy_to_host, device_info


class PlanMismatchError(RuntimeError):
    """A plan that cannot run on this machine (other TensorRT version or GPU architecture)."""


class TrtEngine:
    """One deserialized plan with one execution context (optimisation profile 0)."""

    def __init__(self, plan: bytes, where: str):
        trt = self.trt = import_tensorrt()
        self.where = where
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise PlanMismatchError(f"{where}: deserialize_cuda_engine failed (the plan was built for another GPU or "
                                    "TensorRT version, or is corrupt); rebuild it from the ONNX")
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise RuntimeError(f"{where}: create_execution_context failed (out of device memory?)")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        self.dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        self.limits = {n: tuple(tuple(s) for s in self.engine.get_tensor_profile_shape(n, 0)) for n in self.inputs}
        self.buffers = {n: DeviceBuffer() for n in names}
        self.stream = Stream()

    def max_batch(self) -> int:
        return min(lim[2][0] for lim in self.limits.values())

    def _check_shape(self, name: str, shape: tuple) -> None:
        lo, _, hi = self.limits[name]
        if len(shape) != len(hi) or any(not a <= s <= b for s, a, b in zip(shape, lo, hi)):
            raise ValueError(f"{self.where}: input {name!r} shape {tuple(shape)} is outside the plan's optimisation "
                             f"profile (min {lo}, max {hi}); use a smaller batch or rebuild with a larger --max-batch")

    def run_host(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        keep = []
        for name in self.inputs:
            a = np.ascontiguousarray(arrays[name], dtype=self.dtypes[name])
            self._check_shape(name, a.shape)
            self.context.set_input_shape(name, a.shape)
            ptr = self.buffers[name].ensure(max(a.nbytes, 1))
            copy_to_device(ptr, a, self.stream.handle)
            self.context.set_tensor_address(name, ptr)
            keep.append(a)
        outs = {}
        for name in self.outputs:
            host = np.empty(tuple(self.context.get_tensor_shape(name)), dtype=self.dtypes[name])
            self.context.set_tensor_address(name, self.buffers[name].ensure(max(host.nbytes, 1)))
            outs[name] = host
        if not self.context.execute_async_v3(self.stream.handle):
            raise RuntimeError(f"{self.where}: execute_async_v3 failed")
        for name, host in outs.items():
            copy_to_host(host, self.buffers[name].ptr, self.stream.handle)
        self.stream.synchronize()
        return outs

    def run_device(self, ptrs: dict[str, int], shapes: dict[str, tuple], stream: int) -> None:
        for name in self.inputs:
            self._check_shape(name, shapes[name])
            self.context.set_input_shape(name, tuple(shapes[name]))
        for name in (*self.inputs, *self.outputs):
            if int(ptrs[name]) % 256:
                raise ValueError(f"{self.where}: tensor {name!r} address {int(ptrs[name]):#x} is not 256-byte "
                                 "aligned (TensorRT requires it); copy it to a fresh allocation first")
            self.context.set_tensor_address(name, int(ptrs[name]))
        if not self.context.execute_async_v3(int(stream)):
            raise RuntimeError(f"{self.where}: execute_async_v3 failed")


class BundlePlan:
    """One TensorRT plan of a reconstruction method's bundle (DiffusionAD, GLAD), numpy in and out;
    refused by name when the bundle has none or it was built for another GPU or TensorRT version.
    ``max_batch``: images per call, the plan's rows over ``rows_per_image``; ``run`` returns the
    list of outputs (``as_list``) or the first one."""

    def __init__(self, bundle, net: str, ins: list[str], outs: list[str], rows_per_image: int = 1,
                 rebuild: bool = False, as_list: bool = False):
        trt = import_tensorrt()
        dev = device_info(0)
        meta = bundle.plan(net)
        reason = ("the bundle has no TensorRT plan (exported without --tensorrt)" if meta is None else
                  plan_mismatch(meta, str(trt.__version__), dev["compute_capability"], dev["name"]))
        if reason:
            raise PlanMismatchError(f"bundle {bundle.path}: {net} plan refused: {reason}; re-export on this machine "
                                    "with `drdc export --tensorrt`, or run the ONNX (--backend onnxruntime)"
                                    + ("; rebuilding plans in place is offered for DRDC bundles only" if rebuild
                                       else ""))
        self.engine = TrtEngine(bundle.file(meta["file"]).read_bytes(), str(bundle.file(meta["file"])))
        self.ins, self.outs, self.as_list = list(ins), list(outs), as_list
        self.max_batch = self.engine.max_batch() // rows_per_image

    def run(self, *arrays: np.ndarray):
        got = self.engine.run_host(dict(zip(self.ins, arrays)))
        return [got[o] for o in self.outs] if self.as_list else got[self.outs[0]]


class TensorRTRunner:
    """A bundle's two plans on TensorRT 10. numpy in/out, or device pointers."""

    name = "tensorrt"
    io = "numpy"

    def __init__(self, bundle, rebuild: bool = False, device: int = 0):
        trt = import_tensorrt()
        self.bundle = bundle
        dev = device_info(device)
        self.device = dev
        self.engines: dict[str, TrtEngine] = {}
        self.rebuilt: dict[str, str] = {}
        for net in ("base", "unet"):
            meta = bundle.plan(net)
            reason = ("the bundle has no TensorRT plan (exported without --tensorrt)" if meta is None else
                      plan_mismatch(meta, str(trt.__version__), dev["compute_capability"], dev["name"]))
            if reason is None:
                where = str(bundle.file(meta["file"]))
                plan = bundle.file(meta["file"]).read_bytes()
            elif rebuild:
                path, _ = rebuild_plan(bundle, net, device=device)
                warnings.warn(f"bundle {bundle.path}: {net} plan not usable ({reason}); using {path}, built from "
                              f"{bundle.network(net)['onnx']} for this machine", RuntimeWarning, stacklevel=2)
                self.rebuilt[net], where, plan = reason, str(path), path.read_bytes()
            else:
                raise PlanMismatchError(
                    f"bundle {bundle.path}: {net} plan refused: {reason}. Rebuild it from "
                    f"{bundle.network(net)['onnx']} with rebuild=True (drdc detect --rebuild-plans; cached per "
                    "machine, the bundle is not changed) or re-export on this machine with `drdc export --tensorrt`")
            eng = self.engines[net] = TrtEngine(plan, where)
            want = [s.name for s in bundle.inputs(net)]
            if sorted(eng.inputs) != sorted(want):
                raise PlanMismatchError(f"{where}: plan inputs {eng.inputs}, the manifest says {want}")
        self.rows_per_image = bundle.rows_per_image
        self.max_batch = min(self.engines["base"].max_batch(), self.engines["unet"].max_batch() // self.rows_per_image)
        self.unet_dtype = bundle.inputs("unet")[0].dtype  # numpy entry: as the manifest states (float32)
        self.unet_device_dtype = str(self.engines["unet"].dtypes[bundle.inputs("unet")[0].name])  # pointer entry
        self._base_in, self._base_out = bundle.inputs("base")[0].name, bundle.outputs("base")[0].name
        self._unet_in = [s.name for s in bundle.inputs("unet")]
        self._unet_out = bundle.outputs("unet")[0].name

    # ---- numpy ------------------------------------------------------------------
    def base(self, images: np.ndarray) -> np.ndarray:
        self.bundle.check_inputs("base", [images])
        return self.engines["base"].run_host({self._base_in: images})[self._base_out]

    def unet(self, x: np.ndarray, t: np.ndarray) -> np.ndarray:
        self.bundle.check_inputs("unet", [x, t])  # run_host casts to the plan's I/O dtypes
        return self.engines["unet"].run_host(dict(zip(self._unet_in, (x, t))))[self._unet_out]

    # ---- device pointers -------------------------------------------------------------
    def base_output_shape(self, batch: int) -> tuple:
        return (batch, *self.bundle.outputs("base")[0].shape[1:])

    def base_device(self, images_ptr: int, out_ptr: int, batch: int, stream: int) -> None:
        s = self.bundle.image_size
        self.engines["base"].run_device({self._base_in: images_ptr, self._base_out: out_ptr},
                                        {self._base_in: (batch, 3, s, s)}, stream)

    def unet_device(self, x_ptr: int, t_ptr: int, out_ptr: int, rows: int, stream: int) -> None:
        spec = self.bundle.inputs("unet")[0]
        xname, tname = self._unet_in
        self.engines["unet"].run_device({xname: x_ptr, tname: t_ptr, self._unet_out: out_ptr},
                                        {xname: (rows, *spec.shape[1:]), tname: (rows,)}, stream)
