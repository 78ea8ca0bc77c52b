"""The toy method's ``drdc-bench --method toy`` rows: eager PyTorch and its bundle on ONNX Runtime."""

from __future__ import annotations

from .spec import SPEC


def bench_rows(kit, opts, size, argv, log) -> dict:
    from .detector import ToyDetector
    from .model import ToyModel
    from .runtime import ToyBundleDetector

    model, source = kit.method_model(opts, SPEC, ToyModel, size)
    engines = [("torch eager", "torch", "torch", lambda _: ToyDetector(model), False),
               ("onnxruntime (torch-free runtime)", "onnxruntime", "runtime",
                lambda b: ToyBundleDetector(b, "onnxruntime"), True)]
    return {"rows": kit.engine_rows(SPEC, model, opts, engines, log), "source": source, "config": model.cfg.to_dict(),
            "image_size": model.cfg.image_size, "report": None}
