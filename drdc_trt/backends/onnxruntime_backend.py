"""ONNX Runtime runner: numpy in, numpy out, I/O bound by name (no torch).

Execution providers: the CPU EP everywhere; the CUDA EP (and, when asked for
explicitly, the TensorRT EP) when the installed onnxruntime build has them
(``onnxruntime-gpu``). Inputs are bound by the names the bundle manifest states
(``image``; ``x`` and ``timesteps``) with an IOBinding, and the output is bound
by name on the host.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

# Preference order when the caller names no provider. The TensorRT EP builds its
# own engines on first use (minutes), so it is used only when asked for.
DEFAULT_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def resolve_providers(providers: Sequence[str] | None) -> list[str]:
    have = available_providers()
    if providers is None:
        return [p for p in DEFAULT_PROVIDERS if p in have]
    missing = [p for p in providers if p not in have]
    if missing:
        raise ValueError(f"onnxruntime execution provider(s) {missing} are not in this onnxruntime build "
                         f"(available: {have}); CUDA and TensorRT providers come with onnxruntime-gpu")
    return list(providers)


class OrtNetwork:
    """One ONNX graph in an InferenceSession, inputs and output bound by name."""

    def __init__(self, path: str | Path, input_names: Sequence[str], output_name: str,
                 providers: Sequence[str] | None = None, threads: int = 0):
        import onnxruntime as ort

        self.path = Path(path)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = int(threads)
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(self.path), sess_options=opts,
                                            providers=resolve_providers(providers))
        got_in = [i.name for i in self.session.get_inputs()]
        got_out = [o.name for o in self.session.get_outputs()]
        if got_in != list(input_names) or output_name not in got_out:
            raise ValueError(f"{self.path}: graph has inputs {got_in} and outputs {got_out}; "
                             f"expected inputs {list(input_names)} and output {output_name!r}")
        self.input_names, self.output_name = list(input_names), output_name
        self.providers = self.session.get_providers()

    def run(self, *arrays: np.ndarray) -> np.ndarray:
        binding = self.session.io_binding()
        for name, a in zip(self.input_names, arrays, strict=True):
            binding.bind_cpu_input(name, np.ascontiguousarray(a))
        binding.bind_output(self.output_name, "cpu")
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]


class OnnxRuntimeRunner:
    """The two networks of a bundle on ONNX Runtime. numpy in, numpy out.

    ``base(images B×3×S×S float32) -> B×h×w float32``;
    ``unet(x N×6×S×S, t N float32) -> N×3×S×S float32``. Inputs are checked
    against the manifest (shape, channel count, dtype) before they reach the
    session.
    """

    name = "onnxruntime"
    io = "numpy"

    def __init__(self, bundle, providers: Sequence[str] | None = None, threads: int = 0):
        self.bundle = bundle
        nets = {}
        for net in ("base", "unet"):
            ins, outs = bundle.inputs(net), bundle.outputs(net)
            nets[net] = OrtNetwork(bundle.onnx_path(net), [s.name for s in ins], outs[0].name, providers, threads)
        self._base, self._unet = nets["base"], nets["unet"]
        self.providers = self._unet.providers
        self.unet_dtype = bundle.inputs("unet")[0].dtype

    def base(self, images: np.ndarray) -> np.ndarray:
        self.bundle.check_inputs("base", [images])
        return self._base.run(images)

    def unet(self, x: np.ndarray, t: np.ndarray) -> np.ndarray:
        self.bundle.check_inputs("unet", [x, t])
        return self._unet.run(x, t)
