"""How much an image's answer moves with its batch and the thread count, on trained models and real
images: each model's checkpoint through PyTorch and its bundle through the torch-free runtime (ONNX
Runtime and OpenVINO f32), the test images scored as one batch of --batch on one thread (the
reference), one at a time, in batches of --batch in a shuffled order, and on two threads.

    python scripts/batch_independence.py --data ../shared/data/magnetic_tile_defects \\
        --model runs/mt_drdc --model runs/mt_dad --model runs/mt_glad --images 48 \\
        --out benchmarks/results/batch_independence_cpu_$(date -u +%F)

Writes OUT.json and OUT.md: per method, engine and arrangement the largest relative score
difference, the largest map difference over the map's largest value, and how many labels and mask
pixels changed (with the contract of README "Numerical contract": 1e-4)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from drdc_trt.benchmarking.machine import cpu_model
from drdc_trt.checkpoint import atomic_write_text
from drdc_trt.loading import load_checkpoint
from drdc_trt.data import load_split
from drdc_trt.export.exporter import export_bundle
from drdc_trt.predictors import detect_predictor
from drdc_trt.runtime import load_detector

FIELDS = ("pred_score", "pred_label", "anomaly_map", "pred_mask")


def numpy_fields(batch) -> dict[str, np.ndarray]:
    return {f: np.asarray(getattr(batch, f)) for f in FIELDS}


def compare(ref: dict, got: dict) -> dict:
    s_ref, s_got = ref["pred_score"].astype(np.float64), got["pred_score"].astype(np.float64)
    m_ref, m_got = ref["anomaly_map"].astype(np.float64), got["anomaly_map"].astype(np.float64)
    return {"score_rel": float((np.abs(s_got - s_ref) / np.maximum(np.abs(s_ref), 1e-6)).max()),
            "map_rel": float(np.abs(m_got - m_ref).max() / max(np.abs(m_ref).max(), 1e-12)),
            "labels_changed": int((got["pred_label"] != ref["pred_label"]).sum()),
            "mask_pixels_changed": int((got["pred_mask"] != ref["pred_mask"]).sum())}


def arrangements(predict, x: torch.Tensor, batch: int, order: np.ndarray) -> dict[str, dict]:
    inv = np.argsort(order)
    shuffled = numpy_fields(predict(x[torch.from_numpy(order)], batch))
    return {"single images": numpy_fields(predict(x, 1)),
            f"shuffled, batches of {batch}": {f: v[inv] for f, v in shuffled.items()}}


def measure(name: str, make_predict, x: torch.Tensor, batch: int, order: np.ndarray) -> list[dict]:
    """make_predict(threads) → predict(x, batch_size) → a batch with the anomalib fields."""
    torch.set_num_threads(1)
    p1 = make_predict(1)
    t0 = time.perf_counter()
    ref = numpy_fields(p1(x, batch))
    rows = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        p = p1 if threads == 1 else make_predict(2)
        cases = arrangements(p, x, batch, order)
        if threads == 2:
            cases[f"batches of {batch}"] = numpy_fields(p(x, batch))
        for arr, got in cases.items():
            rows.append({"engine": name, "arrangement": arr, "threads": threads, **compare(ref, got)})
    print(f"{name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return rows


def torch_maker(ckpt: Path):
    predict, _, _ = detect_predictor(ckpt, None, "torch", "auto", None, "cpu", False)
    return lambda threads: (lambda x, b: predict(x, batch_size=b))


def runtime_maker(bundle: Path, backend: str):
    kwargs = {"precision": "f32"} if backend == "openvino" else {}

    def make(threads):
        det = load_detector(bundle, backend=backend, threads=threads, **kwargs)
        return lambda x, b: det.predict(x.numpy(), batch_size=b)
    return make


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="MVTec-layout dataset folder (its test split is used)")
    ap.add_argument("--model", action="append", required=True, help="checkpoint folder (repeat for several)")
    ap.add_argument("--images", type=int, default=48, help="test images to score (every k-th, defects included)")
    ap.add_argument("--batch", type=int, default=16, help="the reference batch size")
    ap.add_argument("--out", required=True, help="result files prefix (OUT.json, OUT.md)")
    a = ap.parse_args(argv)
    rows, meta = [], []
    for ckpt in map(Path, a.model):
        model = load_checkpoint(ckpt)
        method, size = model.cfg.method, model.cfg.image_size
        test = load_split(a.data, "test", size)
        step = max(1, len(test.images) // a.images)
        x = test.images[::step][: a.images].contiguous()
        order = np.random.default_rng(0).permutation(len(x))
        meta.append({"model": str(ckpt), "method": method, "image_size": size, "images": len(x)})
        rows += [{"method": method, **r} for r in measure("PyTorch", torch_maker(ckpt), x, a.batch, order)]
        with tempfile.TemporaryDirectory() as tmp:
            bundle = export_bundle(model, Path(tmp) / "b", max_batch=a.batch, check_batches=()).path
            for backend in ("onnxruntime", "openvino"):
                rows += [{"method": method, **r}
                         for r in measure(f"{backend} f32", runtime_maker(bundle, backend), x, a.batch, order)]
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    out = Path(a.out)
    atomic_write_text(out.with_suffix(".json"), json.dumps(
        {"date": when, "cpu": cpu_model(), "command": " ".join(["python", *sys.argv]), "models": meta,
         "rows": rows}, indent=2))
    lines = [f"# One image's answer by batch, order and thread count (CPU, {when[:10]})", "",
             f"- machine: {cpu_model()}, 2 cores; date {when}",
             f"- command: `python {' '.join(sys.argv)}`",
             "- reference: the images as one batch of "
             f"{a.batch} on one thread; contract (README, Numerical contract): score 1e-4 relative, map 1e-4 of "
             "its largest value, labels and masks equal except at a value within that of its threshold", ""]
    for m in meta:
        lines.append(f"- {m['method']}: `{m['model']}`, {m['images']} test images at {m['image_size']}²")
    lines += ["", "| method | engine | arrangement | threads | max score diff (rel) | max map diff (rel) | "
              "labels changed | mask pixels changed |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['engine']} | {r['arrangement']} | {r['threads']} | {r['score_rel']:.2g} | "
                     f"{r['map_rel']:.2g} | {r['labels_changed']} | {r['mask_pixels_changed']} |")
    atomic_write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
