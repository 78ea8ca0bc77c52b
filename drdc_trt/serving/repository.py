"""``drdc export --triton-repo DIR``: a Triton model repository for a stock ``tritonserver`` (the
NGC container, or the one the PyTriton wheel bundles), for fleets of servers behind a load balancer.

    DIR/drdc/config.pbtxt           uint8 pixels B×H×W×3 (input "images")
    DIR/drdc/1/model.py             Python backend: the whole detector (networks + DDIM loop + fusion)
    DIR/drdc/1/bundle/              the bundle (ONNX, TensorRT plans, noise, manifest), copied
    DIR/drdc_encoded/config.pbtxt   encoded image files B×1 (input "image_bytes")
    DIR/drdc_encoded/1/model.py     same model, reading ../../drdc/1/bundle

Both answer what ``drdc serve`` answers (``drdc client`` and DetectorClient work with either) with
dynamic batching and ``instances`` model instances each, for bundles of every method (a GLAD
bundle's models also answer ``steps``). The model imports ``drdc_trt``: the Python
that runs Triton's Python backend must have the package installed (docs/serving.md). Unlike the
PyTriton server, a bad request here fails alone: the others of its dynamic batch get their results.
"""

from __future__ import annotations

from drdc_trt import methods

import shutil
from pathlib import Path

from . import INPUT_ENCODED, INPUT_RAW, MODEL_ENCODED, MODEL_RAW, OUTPUT_STEPS

MODEL_PY = Path(__file__).with_name("triton_model.py")
KINDS = {"onnxruntime": "KIND_CPU", "openvino": "KIND_CPU", "tensorrt": "KIND_GPU"}


def config_pbtxt(name: str, input_name: str, image_size: int, max_batch: int, instances: int, backend: str,
                 bundle: str, max_queue_delay_us: int, steps: bool = False) -> str:
    """``steps``: also the output ``steps`` (GLAD: the U-Net steps each image took)."""
    s = int(image_size)
    extra = f',\n  {{ name: "{OUTPUT_STEPS}" data_type: TYPE_INT32 dims: [ 1 ] }}' if steps else ""
    if input_name == INPUT_RAW:
        inp = f'  {{ name: "{INPUT_RAW}" data_type: TYPE_UINT8 dims: [ -1, -1, -1 ] }}'
    else:
        inp = f'  {{ name: "{INPUT_ENCODED}" data_type: TYPE_STRING dims: [ 1 ] }}'
    return f"""name: "{name}"
backend: "python"
max_batch_size: {int(max_batch)}
input [
{inp}
]
output [
  {{ name: "pred_score" data_type: TYPE_FP32 dims: [ 1 ] }},
  {{ name: "pred_label" data_type: TYPE_BOOL dims: [ 1 ] }},
  {{ name: "pred_mask" data_type: TYPE_BOOL dims: [ {s}, {s} ] }},
  {{ name: "anomaly_map" data_type: TYPE_FP16 dims: [ {s}, {s} ] }}{extra}
]
dynamic_batching {{ max_queue_delay_microseconds: {int(max_queue_delay_us)} }}
instance_group [ {{ count: {int(instances)} kind: {KINDS[backend]} }} ]
parameters: {{ key: "backend" value: {{ string_value: "{backend}" }} }}
parameters: {{ key: "bundle" value: {{ string_value: "{bundle}" }} }}
"""


def write_repository(bundle_dir: str | Path, out: str | Path, backend: str = "onnxruntime", instances: int = 1,
                     max_batch: int | None = None, max_queue_delay_us: int = 2000) -> Path:
    """Write the repository for ``bundle_dir`` to ``out`` (replaced as a whole, atomically: written
    beside it, then renamed)."""
    from drdc_trt.export.bundle import load_bundle

    if backend not in KINDS:
        raise ValueError(f"backend {backend!r}: a repository runs {sorted(KINDS)}")
    if instances < 1:
        raise ValueError(f"instances {instances}: at least 1")
    bundle = load_bundle(bundle_dir)  # verified: hashes and manifest checked before copying
    max_batch = int(max_batch or bundle.max_batch)
    if max_batch < 1:
        raise ValueError(f"max batch {max_batch}: at least 1")
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        raw, enc = tmp / MODEL_RAW / "1", tmp / MODEL_ENCODED / "1"
        raw.mkdir(parents=True)
        enc.mkdir(parents=True)
        shutil.copytree(bundle.path, raw / "bundle")
        for folder in (raw, enc):
            shutil.copyfile(MODEL_PY, folder / "model.py")
        common = dict(image_size=bundle.image_size, max_batch=max_batch, instances=instances, backend=backend,
                      max_queue_delay_us=max_queue_delay_us, steps="steps" in methods.get(bundle.method).outputs)
        (tmp / MODEL_RAW / "config.pbtxt").write_text(config_pbtxt(MODEL_RAW, INPUT_RAW, bundle="bundle", **common))
        (tmp / MODEL_ENCODED / "config.pbtxt").write_text(
            config_pbtxt(MODEL_ENCODED, INPUT_ENCODED, bundle=f"../../{MODEL_RAW}/1/bundle", **common))
        old = out.with_name(f".{out.name}.old")
        if out.exists():
            if old.exists():
                shutil.rmtree(old)
            out.rename(old)
        tmp.rename(out)
        if old.exists():
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
