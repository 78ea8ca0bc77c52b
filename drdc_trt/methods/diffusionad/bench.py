"""DiffusionAD's ``drdc-bench --method`` rows (its spec's ``bench_rows``), each measured against
eager fp32 PyTorch of the same model in the same run:

* ``torch eager`` (the baseline): ``DiffusionADDetector.predict_batch`` (U-Net on 2 rows per image,
  the norm-guided combination in PyTorch, segmentation net, top-k score);
* ``onnxruntime (numpy combination)``: the torch-free ``DiffusionADBundleDetector`` on ONNX
  Runtime with the numpy transcription of the combination;
* ``onnxruntime (torch-free runtime)``: the same with the compiled kernel (``_C.norm_guided``);
* ``openvino (torch-free runtime)`` when ``--backends`` names openvino.

The model is a randomly initialised model of the preset (``--config``) or ``--model CKPT``; the
engine rows run a bundle exported from it into a temporary folder.
"""

from __future__ import annotations

from typing import Callable

from .spec import SPEC


def bench_rows(kit, opts, size: int | None, argv: list[str] | None, log: Callable[[str], None]) -> dict:
    """The method's rows at image side ``size`` (None: the options'), with its model's source and config;
    ``kit``: the bench's shared machinery (``drdc_trt.benchmarking.rows``)."""
    from .model import DiffusionADModel

    model, source = kit.method_model(opts, SPEC, DiffusionADModel, size)
    cfg = model.cfg
    return {"rows": diffusionad_rows(kit, opts, model, log), "source": source, "config": cfg.to_dict(),
            "image_size": cfg.image_size, "report": None}


def diffusionad_rows(kit, opts, model, log: Callable[[str], None]) -> list[dict]:
    """The DiffusionAD rows at every batch size of ``opts``, speed-ups against its eager baseline."""
    from .detector import DiffusionADDetector
    from .runtime import DiffusionADBundleDetector
    from drdc_trt.backends.openvino_backend import supports_bf16

    threads = opts.threads or 0
    engines = [("torch eager", "torch", "torch", lambda _: DiffusionADDetector(model, "cpu", opts.seed), False),
               ("onnxruntime (numpy combination)", "onnxruntime", "numpy",
                lambda b: DiffusionADBundleDetector(b, "onnxruntime", "numpy", threads=threads), True),
               ("onnxruntime (torch-free runtime)", "onnxruntime", "runtime",
                lambda b: DiffusionADBundleDetector(b, "onnxruntime", "csrc", threads=threads), True)]
    if "openvino" in opts.backends:
        engines.append(("openvino (torch-free runtime)", "openvino", "runtime",
                        lambda b: DiffusionADBundleDetector(b, "openvino", "csrc", threads=threads), True))
        if supports_bf16():  # OpenVINO runs bf16 where the CPU has it (AVX-512 BF16, AMX)
            engines.append(("openvino bf16 (torch-free runtime)", "openvino", "runtime",
                            lambda b: DiffusionADBundleDetector(b, "openvino", "csrc", threads=threads, precision="bf16"),
                            True, "bfloat16"))
    if opts.int8_calib:  # the temporary bundle's denoisers quantized (rows.add_int8_networks)
        engines.append(("openvino int8 (torch-free runtime)", "openvino", "runtime",
                        lambda b: DiffusionADBundleDetector(b, "openvino", "csrc", threads=threads, precision="int8"),
                        True, "int8"))
    return kit.engine_rows(SPEC, model, opts, engines, log)
