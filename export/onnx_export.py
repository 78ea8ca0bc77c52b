"""Base model and U-Net → ONNX, then the checks a TensorRT 10 build relies on.

Graphs (batch dimension dynamic, everything else fixed by the config):

* base:  ``image`` B×3×S×S float32 in [-1, 1] → ``base_map`` B×h×w float32
  (h = w = S/16; the ImageNet normalisation is folded into the network)
* U-Net: ``x`` N×6×S×S float32 (concat(x_t, c)), ``timesteps`` N float32 → ``eps`` N×3×S×S float32

Exporter: the TorchScript-based ``torch.onnx.export(..., dynamo=False)`` by
default (fast, and its graphs hold only plain ops: Conv, MatMul, Softmax,
InstanceNormalization for GroupNorm, Resize); ``exporter="dynamo"`` uses the
torch.export-based one (opset ≥ 18).

Precision: the ONNX files are always float32. fp16 is left to TensorRT
(``BuilderFlag.FP16`` with the timestep embedding and normalisation pinned to
float32, see ``tensorrt_build``): a fully fp16 graph would compute the
sinusoidal timestep embedding cos(t·f) in fp16, whose spacing at t ≈ 250 is
0.125 rad, and the GroupNorm statistics in fp16.

Checks (:func:`check_onnx`): ``onnx.checker`` (full), opset within what
TensorRT 10 parses, every op on an allowlist of ops the TensorRT 10 ONNX
parser supports, TensorRT's restrictions on Resize and Conv, and I/O names,
shapes and dtypes as the bundle manifest states them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch

from drdc_trt.settings import ModelConfig

DEFAULT_OPSET = 17
# TensorRT 10.0's ONNX parser: opsets 9..20 (onnx-tensorrt docs/operators.md).
TENSORRT_OPSETS = (9, 20)
EXPORTERS = ("torchscript", "dynamo")

BASE_INPUT, BASE_OUTPUT = "image", "base_map"
UNET_INPUTS, UNET_OUTPUT = ("x", "timesteps"), "eps"

# Ops the TensorRT 10 ONNX parser supports (a subset of its support matrix: the
# plain tensor ops an exported CNN / transformer uses). Anything else fails the check.
TENSORRT_OPS = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast Ceil Celu Clip
Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace Div Dropout Einsum Elu Equal
Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalMaxPool
Greater GreaterOrEqual HardSigmoid HardSwish Identity InstanceNormalization LayerNormalization LeakyRelu Less
LessOrEqual Log LogSoftmax MatMul Max MaxPool Mean Min Mul Neg Not Or Pad Pow PRelu Range Reciprocal
ReduceL1 ReduceL2 ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu
Reshape Resize Round Selu Shape Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth
Split Sqrt Squeeze Sub Sum Tan Tanh Tile TopK Transpose Unsqueeze Where Xor
""".split())
_RESIZE_MODES = {"nearest", "linear"}
_RESIZE_COORDS = {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"}
_RESIZE_NEAREST = {"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"}
_ONNX_DTYPES = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16",
                onnx.TensorProto.INT32: "int32", onnx.TensorProto.INT64: "int64"}


class OnnxCheckError(ValueError):
    """An exported graph that TensorRT 10 (or the bundle contract) would not accept."""


@dataclass
class OnnxInfo:
    path: Path
    opset: int
    ops: list[str]
    inputs: list[dict]
    outputs: list[dict]


def base_io(cfg: ModelConfig) -> tuple[list[dict], list[dict]]:
    s, f = cfg.image_size, cfg.feature_size
    return ([{"name": BASE_INPUT, "shape": ["batch", 3, s, s], "dtype": "float32", "value_range": [-1.0, 1.0]}],
            [{"name": BASE_OUTPUT, "shape": ["batch", f, f], "dtype": "float32"}])


def unet_io(cfg: ModelConfig) -> tuple[list[dict], list[dict]]:
    s, u = cfg.loop_size, cfg.unet  # the loop runs on the image with its border margin
    return ([{"name": UNET_INPUTS[0], "shape": ["batch", u.in_channels, s, s], "dtype": "float32"},
             {"name": UNET_INPUTS[1], "shape": ["batch"], "dtype": "float32"}],
            [{"name": UNET_OUTPUT, "shape": ["batch", u.out_channels, s, s], "dtype": "float32"}])


def _torch_export(module: torch.nn.Module, args: tuple, path: Path, input_names, output_names,
                  opset: int, exporter: str) -> None:
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter={exporter!r}; choose one of {EXPORTERS}")
    module = module.float().eval()
    with torch.no_grad(), warnings.catch_warnings():
        # The legacy exporter announces its deprecation, and tracing warns about the
        # backbone's static-shape checks (the spatial size is fixed by the config).
        warnings.filterwarnings("ignore", message=r".*TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message=r".*will be removed.*", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r".*will be removed.*", category=FutureWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=r".*axis name: batch will not be used.*")
        if exporter == "torchscript":
            torch.onnx.export(module, args, str(path), input_names=list(input_names),
                              output_names=list(output_names), opset_version=opset, do_constant_folding=True,
                              dynamic_axes={n: {0: "batch"} for n in (*input_names, *output_names)},
                              dynamo=False)
        else:
            batch = torch.export.Dim("batch", min=1, max=65536)
            torch.onnx.export(module, args, str(path), input_names=list(input_names),
                              output_names=list(output_names), opset_version=max(opset, 18),
                              dynamic_shapes=tuple({0: batch} for _ in args), dynamo=True,
                              external_data=False, verbose=False)


def _stamp(path: Path, network: str, inputs: list[dict], outputs: list[dict]) -> None:
    """Name the dynamic dimension 'batch', write the contract's fixed sizes where the
    exporter left a symbol (the TorchScript exporter loses the base map's h×w behind
    dynamic reshapes; :func:`check_onnx` runs the graph to confirm them), and record
    what the graph is."""
    import drdc_trt

    m = onnx.load(str(path))
    specs = {d["name"]: d["shape"] for d in (*inputs, *outputs)}
    for vi in (*m.graph.input, *m.graph.output):
        dims = vi.type.tensor_type.shape.dim
        want = specs.get(vi.name)
        for i, d in enumerate(dims):
            if d.HasField("dim_value"):
                continue
            if i == 0:
                d.dim_param = "batch"
            elif want is not None and i < len(want) and isinstance(want[i], int):
                d.dim_value = want[i]
    del m.metadata_props[:]
    for k, v in {"drdc_trt.network": network, "drdc_trt.version": drdc_trt.__version__}.items():
        m.metadata_props.add(key=k, value=v)
    onnx.save(m, str(path))


def export_network(module: torch.nn.Module, args: tuple, path: str | Path, network: str, inputs: list[dict],
                   outputs: list[dict], opset: int = DEFAULT_OPSET, exporter: str = "torchscript") -> OnnxInfo:
    """``module`` traced on the example ``args`` → ONNX at ``path``, its tensors named and shaped as
    the ``inputs`` / ``outputs`` specs say, stamped as ``network``, and checked (:func:`check_onnx`)."""
    path = Path(path)
    _torch_export(module, args, path, [d["name"] for d in inputs], [d["name"] for d in outputs], opset, exporter)
    _stamp(path, network, inputs, outputs)
    return check_onnx(path, inputs, outputs)


def export_base(model, path: str | Path, opset: int = DEFAULT_OPSET, exporter: str = "torchscript",
                example_batch: int = 2) -> OnnxInfo:
    """Export ``model.base`` (a DRDCModel's base model) to ``path`` and check it."""
    cfg: ModelConfig = model.cfg
    s = cfg.image_size
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(example_batch, 3, s, s, generator=gen) * 2 - 1
    ins, outs = base_io(cfg)
    return export_network(model.base, (image,), path, "base", ins, outs, opset, exporter)


def export_unet(model, path: str | Path, opset: int = DEFAULT_OPSET, exporter: str = "torchscript",
                example_batch: int = 2) -> OnnxInfo:
    """Export ``model.unet`` to ``path`` and check it."""
    cfg: ModelConfig = model.cfg
    s = cfg.loop_size
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(example_batch, cfg.unet.in_channels, s, s, generator=gen)
    t = torch.full((example_batch,), float(cfg.diffusion.t0))
    ins, outs = unet_io(cfg)
    return export_network(model.unet, (x, t), path, "unet", ins, outs, opset, exporter)


# --------------------------------------------------------------------------- checks
def _dims(vi) -> list:
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in vi.type.tensor_type.shape.dim]


def _constant_names(graph) -> set[str]:
    names = {i.name for i in graph.initializer}
    names |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    # The exporter shares identical initializers (e.g. the zero-initialised output
    # convolutions of a fresh U-Net) through Identity nodes; TensorRT folds those.
    for n in graph.node:  # nodes are topologically sorted
        if n.op_type == "Identity" and n.input and n.input[0] in names:
            names.update(n.output)
    return names


def tensorrt_problems(model: onnx.ModelProto) -> list[str]:
    """Why TensorRT 10's ONNX parser would reject this graph (empty list: none found)."""
    problems = []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    lo, hi = TENSORRT_OPSETS
    if opset is None or not lo <= opset <= hi:
        problems.append(f"opset {opset} outside the range TensorRT 10 parses ({lo}..{hi})")
    consts = _constant_names(model.graph)
    for node in model.graph.node:
        where = f"node {node.name or '?'} ({node.op_type})"
        if node.domain not in ("", "ai.onnx"):
            problems.append(f"{where}: custom domain {node.domain!r} needs a TensorRT plugin")
        elif node.op_type not in TENSORRT_OPS:
            problems.append(f"{where}: op not on the TensorRT 10 allowlist")
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in attrs.items()}
        if node.op_type == "Resize":
            if attrs.get("mode", "nearest") not in _RESIZE_MODES:
                problems.append(f"{where}: mode {attrs['mode']!r} (TensorRT: nearest, linear)")
            if attrs.get("coordinate_transformation_mode", "half_pixel") not in _RESIZE_COORDS:
                problems.append(f"{where}: coordinate_transformation_mode {attrs['coordinate_transformation_mode']!r}")
            if attrs.get("mode", "nearest") == "nearest" and \
                    attrs.get("nearest_mode", "round_prefer_floor") not in _RESIZE_NEAREST:
                problems.append(f"{where}: nearest_mode {attrs['nearest_mode']!r}")
        if node.op_type in ("Conv", "ConvTranspose") and len(node.input) > 1 and node.input[1] not in consts:
            problems.append(f"{where}: weights {node.input[1]!r} are not an initializer")
    return problems


def _run_shapes(path: Path, inputs: list[dict], outputs: list[dict], batch: int = 2) -> list[str]:
    """Run the graph once on zeros (ONNX Runtime, CPU) and compare the real output shapes
    with the contract: shape inference cannot resolve every dimension (Resize by scale)."""
    import numpy as np
    import onnxruntime as ort

    def concrete(shape):
        return tuple(batch if d == "batch" else d for d in shape)

    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # the mismatch is reported below, not in ORT's log
    sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    feeds = {w["name"]: np.zeros(concrete(w["shape"]), dtype=w["dtype"]) for w in inputs}
    got = sess.run([w["name"] for w in outputs], feeds)
    return [f"output {w['name']!r}: a batch of {batch} gives shape {tuple(g.shape)}, expected {concrete(w['shape'])}"
            for w, g in zip(outputs, got) if tuple(g.shape) != concrete(w["shape"])]


def check_onnx(path: str | Path, inputs: list[dict], outputs: list[dict], tensorrt: bool = True,
               execute: bool = True) -> OnnxInfo:
    """Validate an exported graph; raise :class:`OnnxCheckError` listing every problem.
    ``execute``: also run it once on zeros to check the real output shapes."""
    path = Path(path)
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise OnnxCheckError(f"{path}: onnx.checker: {e}") from None
    m = onnx.load(str(path))
    try:
        onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True)
    except onnx.shape_inference.InferenceError as e:
        raise OnnxCheckError(f"{path}: shape inference: {e}") from None
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), 0)
    problems = tensorrt_problems(m) if tensorrt else []
    got_in = [vi for vi in m.graph.input if vi.name not in {i.name for i in m.graph.initializer}]
    for role, want, got in (("input", inputs, got_in), ("output", outputs, list(m.graph.output))):
        if [w["name"] for w in want] != [g.name for g in got]:
            problems.append(f"{role} names {[g.name for g in got]}, expected {[w['name'] for w in want]}")
            continue
        for w, g in zip(want, got):
            dims = _dims(g)
            if len(dims) != len(w["shape"]) or any(e != "batch" and d != e for d, e in zip(dims, w["shape"])):
                problems.append(f"{role} {g.name!r}: shape {dims}, expected {w['shape']}")
            elif dims and isinstance(dims[0], int):
                problems.append(f"{role} {g.name!r}: batch dimension is fixed to {dims[0]}, expected dynamic")
            dtype = _ONNX_DTYPES.get(g.type.tensor_type.elem_type, str(g.type.tensor_type.elem_type))
            if dtype != w["dtype"]:
                problems.append(f"{role} {g.name!r}: dtype {dtype}, expected {w['dtype']}")
    if not problems and execute:
        problems += _run_shapes(path, inputs, outputs)
    if problems:
        raise OnnxCheckError(f"{path}: " + "; ".join(problems))
    return OnnxInfo(path=path, opset=opset, ops=sorted({n.op_type for n in m.graph.node}),
                    inputs=inputs, outputs=outputs)
