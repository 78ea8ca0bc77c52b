"""int8 networks for a bundle (``drdc export --int8 --calib DATA``): NNCF post-training quantization
for OpenVINO, calibrated on what the deployed loop feeds each network.

0. **Which networks.** The denoisers (networks with a time-step input: rows × steps calls per image)
   by default; the others on request (:func:`default_networks` says why).
1. **Calibration inputs.** The bundle's own torch-free detector runs on OpenVINO f32 over normal
   images (the training data's ``train/good``, never test images) while every network call is
   recorded (``openvino_backend.recording``): the U-Net sees the loop's real states x_t at the
   schedule's time steps, not random inputs. A seeded reservoir keeps ``CALIB_ROWS`` rows per
   network for NNCF and ``CHECK_ROWS`` other rows for the check.
2. **What stays in float** (``benchmarks/int8_scope.py`` on the small preset's U-Net of a
   magnetic-tile model, 64 held-out loop rows; rms of int8 − f32 over rms of f32): everything
   quantized 0.31; the timestep path kept (every node that depends on the time-step input alone:
   its sinusoid turns a quantized t, one level in 256 of the schedule, into another step's
   embedding) 0.16; with NNCF's transformer scheme (only matmul and convolution inputs quantized;
   residual adds, norms and SiLU stay float) 0.063; plus the first and the last weighted layer kept
   0.047. That last setting is the default here (1.40× OpenVINO f32's speed on 32 rows on an AVX2
   CPU, against 1.59× with everything quantized).
3. **Check** per network on the held-out rows: rms(int8 − f32) ≤ ``INT8_RMS_RTOL`` · rms(f32),
   and int8 really applied: the IR holds FakeQuantize nodes and OpenVINO's compiled graph runs
   layers in u8/i8. 0.1 is twice what the small U-Net measured; one int8 rounding is 2^-8 of a
   tensor's range, a wrong scale (a clipped or a constant activation) is far outside. A network
   that fails stays f32 and the manifest says why. Accuracy on labelled data is measured by
   ``drdc eval --bundle B --backend openvino --precision int8``.

The result is written into the bundle atomically: every file is staged beside the old ones, the
manifest gains ``int8`` (files, calibration set hash, what was kept in float, the checks, NNCF and
OpenVINO versions) and the folder is swapped in one rename.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .bundle import BundleWriter, load_bundle

INT8_RMS_RTOL = 0.1
CALIB_ROWS = 300
CHECK_ROWS = 64
CHECK_BATCH = 4  # held-out rows per call of the check (memory: see check)
CALIB_IMAGES = 64
TIMESTEP_INPUTS = ("timesteps", "t")
_WEIGHTED = ("Convolution", "MatMul", "GroupConvolution", "ConvolutionBackpropData")


class Int8Error(ValueError):
    """int8 export refused (bad calibration data, NNCF missing)."""


def import_nncf():
    try:
        import nncf
    except ImportError:
        raise Int8Error("--int8 needs NNCF: pip install nncf (the dev extra has it)") from None
    import logging

    nncf.set_log_level(logging.WARNING)  # its INFO lists every node it leaves unquantized
    return nncf


# --------------------------------------------------------------------------- calibration images
def calibration_images(source: str | Path, size: int, count: int = CALIB_IMAGES) -> tuple[np.ndarray, list[str]]:
    """``count`` normal images, evenly spaced over the sorted list, as B×3×S×S float32 in [-1, 1].
    ``source``: an MVTec-layout dataset root (every category's train/good) or a folder of images.
    A test split is refused: calibration must never see the images the bundle is scored on."""
    from drdc_trt.data.folder import IMAGE_SUFFIXES, image_array, scan

    from drdc_trt.data.folder import DatasetError

    root = Path(source)
    if not root.is_dir():
        raise Int8Error(f"--calib {root}: no such folder")
    here = root.absolute()
    if {here.name, here.parent.name} & {"test", "ground_truth"}:  # MVTec's <category>/test[/<defect>]
        raise Int8Error(f"--calib {root}: a test split; calibrate on normal training images (the dataset root, "
                        "whose train/good folders are used, or a folder of normal images)")
    files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        try:
            files = [s.path for s in scan(root, "train")]
        except DatasetError as e:
            raise Int8Error(f"--calib {root}: neither a folder of images nor an MVTec-layout dataset ({e})") from None
    if not files:
        raise Int8Error(f"--calib {root}: no images")
    pick = np.unique(np.linspace(0, len(files) - 1, min(count, len(files))).round().astype(int))
    chosen = [files[i] for i in pick]
    arrays = np.stack([image_array(p, size).transpose(2, 0, 1) for p in chosen])
    return np.ascontiguousarray(arrays, dtype=np.float32), [str(p) for p in chosen]


# --------------------------------------------------------------------------- recorded rows
class Reservoir:
    """A seeded uniform sample of at most ``cap`` rows out of every call's inputs (rows = first dim)."""

    def __init__(self, cap: int, seed: int):
        self.cap, self.rng, self.seen, self.rows = cap, np.random.default_rng(seed), 0, []

    def add(self, arrays: Sequence[np.ndarray]) -> None:
        for i in range(arrays[0].shape[0]):
            row = [np.array(a[i:i + 1]) for a in arrays]
            if len(self.rows) < self.cap:
                self.rows.append(row)
            else:
                j = int(self.rng.integers(0, self.seen + 1))
                if j < self.cap:
                    self.rows[j] = row
            self.seen += 1


def record_rows(bundle, images: np.ndarray, rows: int, seed: int, batch_size: int = 8,
                log: Callable[[str], None] = lambda s: None) -> dict[str, Reservoir]:
    """Run the bundle's detector on OpenVINO f32 over ``images``, sampling ``rows`` input rows of
    every network call."""
    from drdc_trt.backends.openvino_backend import recording
    from drdc_trt.runtime import load_detector

    det = load_detector(bundle, backend="openvino", precision="f32")
    pools: dict[str, Reservoir] = {}
    for i in range(0, len(images), batch_size):
        with recording() as calls:
            det.predict(images[i:i + batch_size], batch_size=batch_size)
        for name, inputs in calls.items():
            pool = pools.setdefault(name, Reservoir(rows, seed + len(pools)))
            for arrays in inputs:
                pool.add(arrays)
        log(f"  calibration: {min(i + batch_size, len(images))}/{len(images)} images through the loop")
    return pools


# --------------------------------------------------------------------------- what stays float
def float_scope(model, timestep_inputs: Sequence[str] = TIMESTEP_INPUTS) -> dict[str, list[str]]:
    """Node names NNCF must leave in float: ``timestep`` every node whose inputs reach back to the
    time-step input alone; ``first``/``last`` the weighted layers that read a network input and that
    feed its output (through unweighted nodes only)."""
    params = {p.get_friendly_name() for p in model.get_parameters()}
    t_params = params & set(timestep_inputs)
    deps: dict[str, set[str]] = {}
    timestep, first = [], []
    for op in model.get_ordered_ops():
        name = op.get_friendly_name()
        if op.get_type_name() == "Parameter":
            deps[name] = {name}
            continue
        d = set().union(*(deps.get(v.get_node().get_friendly_name(), set()) for v in op.input_values())) \
            if op.get_input_size() else set()
        deps[name] = d
        if d and d <= t_params:
            timestep.append(name)
        elif op.get_type_name() in _WEIGHTED and _reads_parameter(op.input_value(0).get_node()):
            first.append(name)
    last, seen = [], set()
    stack = [r.input_value(0).get_node() for r in model.get_results()]
    while stack:
        node = stack.pop()
        if node.get_friendly_name() in seen or node.get_type_name() in ("Parameter", "Constant"):
            continue
        seen.add(node.get_friendly_name())
        if node.get_type_name() in _WEIGHTED:
            last.append(node.get_friendly_name())
        else:
            stack += [v.get_node() for v in node.input_values()]
    return {"timestep": timestep, "first": first, "last": last}


def _reads_parameter(node) -> bool:
    """A network input, possibly behind a type conversion."""
    while node.get_type_name() == "Convert":
        node = node.input_value(0).get_node()
    return node.get_type_name() == "Parameter"


# --------------------------------------------------------------------------- quantize and check
def quantize(model, rows: list, input_names: list[str], scope: dict, seed: int):
    nncf = import_nncf()
    names = sorted({n for part in scope.values() for n in part})
    return nncf.quantize(model, nncf.Dataset(rows, lambda r: dict(zip(input_names, r))), subset_size=len(rows),
                         model_type=nncf.ModelType.TRANSFORMER,
                         ignored_scope=nncf.IgnoredScope(names=names, validate=False))


def int8_layers(compiled) -> int:
    """Layers OpenVINO's compiled graph runs in u8/i8."""
    n = 0
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        if "runtimePrecision" in info and str(info["runtimePrecision"].astype(str)) in ("u8", "i8"):
            n += 1
    return n


def check(f32_model, int8_model, rows: list, input_names: list[str], output: str,
          rtol: float = INT8_RMS_RTOL) -> dict:
    """int8 against f32 on held-out rows (module doc, 3)."""
    from drdc_trt.backends.openvino_backend import core

    cf = core().compile_model(f32_model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    cq = core().compile_model(int8_model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    ref, got = [], []
    # A few rows per call: all 64 held-out rows in one call of a 224² U-Net need activations of
    # ~1 GB per tensor (the fast preset's width 64), twice (two compiled models): out of memory.
    for i in range(0, len(rows), CHECK_BATCH):
        feed = {n: np.concatenate([r[j] for r in rows[i:i + CHECK_BATCH]]) for j, n in enumerate(input_names)}
        ref.append(np.asarray(cf(feed)[cf.output(output)], dtype=np.float64))
        got.append(np.asarray(cq(feed)[cq.output(output)], dtype=np.float64))
    ref, got = np.concatenate(ref), np.concatenate(got)
    rms_ref = float(np.sqrt((ref ** 2).mean()))
    rms_err = float(np.sqrt(((got - ref) ** 2).mean()))
    fq = sum(op.get_type_name() == "FakeQuantize" for op in int8_model.get_ops())
    layers = int8_layers(cq)
    ok = bool(np.isfinite(rms_err) and rms_err <= rtol * rms_ref and fq > 0 and layers > 0)
    return {"rows": len(rows), "rms_f32": rms_ref, "rms_err": rms_err, "rel_rms": rms_err / max(rms_ref, 1e-30),
            "max_abs": float(np.abs(got - ref).max()), "rtol": rtol, "fake_quantize": fq, "int8_layers": layers,
            "ok": ok}


def default_networks(bundle) -> list[str]:
    """The denoisers: the networks that take a time-step input. They run rows × steps times per image
    and carry most of the work; a network run once per image (DRDC's base model, GLAD's features,
    DiffusionAD's segmentation) stays f32 unless named: int8 in DRDC's base network took the base
    model's image AUROC on magnetic tiles from 83.7 to 75.0 and its AUPRO from 52.3 to 44.2 with an
    rms error of 0.061, inside the per-network bound."""
    return [net for net in bundle.manifest["networks"]
            if any(s.name in TIMESTEP_INPUTS for s in bundle.inputs(net))]


def _calib_hash(images: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(images, dtype=np.float32).tobytes()).hexdigest()


def add_int8(bundle_dir: str | Path, images: np.ndarray, source: str, networks: Sequence[str] | None = None,
             rows: int = CALIB_ROWS, check_rows: int = CHECK_ROWS, seed: int = 0, rtol: float = INT8_RMS_RTOL,
             log: Callable[[str], None] = lambda s: None) -> dict:
    """Quantize the bundle's networks (``networks``, default :func:`default_networks`) and write them
    into the bundle; returns the manifest's ``int8`` section."""
    nncf = import_nncf()
    import openvino as ov

    from drdc_trt.backends.openvino_backend import core

    bundle = load_bundle(bundle_dir)
    names = list(networks) if networks else default_networks(bundle)
    unknown = sorted(set(names) - set(bundle.manifest["networks"]))
    if unknown:
        raise Int8Error(f"--int8-networks {','.join(unknown)}: bundle {bundle.path} has networks "
                        f"{list(bundle.manifest['networks'])}")
    log(f"int8: recording {len(images)} calibration images through the loop (OpenVINO f32)")
    pools = record_rows(bundle, images, rows + check_rows, seed, log=log)
    section = {"networks": {}, "kept_f32": {}, "rtol": rtol,
               "calibration": {"images": len(images), "sha256": _calib_hash(images), "source": source,
                               "rows": rows, "check_rows": check_rows, "seed": seed},
               "scheme": "NNCF post-training quantization, model_type transformer; the timestep path and the "
                         "first and last weighted layers kept in float",
               "versions": {"nncf": nncf.__version__, "openvino": ov.__version__}}
    staged = {}
    for net in names:
        stem = Path(bundle.network(net)["onnx"]).stem
        pool = pools.get(stem)
        if pool is None or len(pool.rows) < 2:
            section["kept_f32"][net] = "the loop did not call it on the calibration images"
            continue
        order = np.random.default_rng(seed).permutation(len(pool.rows))
        n_check = min(check_rows, len(order) // 4 or 1)
        held, calib = [pool.rows[i] for i in order[:n_check]], [pool.rows[i] for i in order[n_check:]]
        inputs = [s.name for s in bundle.inputs(net)]
        model = core().read_model(str(bundle.onnx_path(net)))
        scope = float_scope(model)
        log(f"int8: {net}: NNCF on {len(calib)} rows (float: {len(scope['timestep'])} timestep-path nodes, "
            f"first {scope['first']}, last {scope['last']})")
        q = quantize(model, calib, inputs, scope, seed)
        res = check(core().read_model(str(bundle.onnx_path(net))), q, held, inputs, bundle.outputs(net)[0].name, rtol)
        log(f"int8: {net}: rms(int8 - f32) = {res['rel_rms']:.4f} of rms(f32) on {res['rows']} held-out rows "
            f"(bound {rtol:g}); {res['int8_layers']} layers run in int8")
        if not res["ok"]:
            section["kept_f32"][net] = (f"check failed: rms(int8 - f32) = {res['rel_rms']:.4g} of rms(f32) "
                                        f"(bound {rtol:g}), {res['int8_layers']} int8 layers")
            continue
        staged[net] = q
        section["networks"][net] = {"xml": f"{stem}.int8.xml", "bin": f"{stem}.int8.bin", "check": res,
                                    "float_layers": {"first": scope["first"], "last": scope["last"],
                                                     "timestep_nodes": len(scope["timestep"])}}
    if not staged:
        raise Int8Error(f"bundle {bundle.path}: no network passed the int8 check ({section['kept_f32']}); "
                        "the bundle is unchanged")
    _rewrite(bundle, staged, section)
    return section


def _rewrite(bundle, staged: dict, section: dict) -> None:
    """The bundle with its int8 files and manifest section, swapped in atomically (BundleWriter)."""
    import openvino as ov

    manifest = {k: v for k, v in bundle.manifest.items() if k not in ("files", "format", "schema_version", "int8")}
    old_int8 = (bundle.manifest.get("int8") or {}).get("networks", {})
    stale = {f for e in old_int8.values() for f in (e["xml"], e["bin"])}
    with BundleWriter(bundle.path) as w:
        for name in bundle.manifest["files"]:
            if name not in stale:
                shutil.copy2(bundle.path / name, w.path(name))
        for net, model in staged.items():
            entry = section["networks"][net]
            ov.save_model(model, str(w.path(entry["xml"])), compress_to_fp16=False)
            if not w.path(entry["bin"]).is_file():
                raise Int8Error(f"OpenVINO wrote no {entry['bin']} beside {entry['xml']}")
        manifest["int8"] = section
        w.commit(manifest)
