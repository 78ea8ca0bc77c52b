"""GLAD's ``drdc-bench --method`` rows (its spec's ``bench_rows``) and the markdown section of the
steps they took (``bench_markdown``). The adaptive loop: every image decides its own number of U-Net
steps. Each row is measured against eager fp32 PyTorch of the same model in the same run:

* ``torch eager`` (the baseline): ``GLADDetector.predict_batch``, finished rows compacted out of
  the U-Net batch, the per-row step in PyTorch;
* ``torch eager, every row all K steps``: the same loop with no early exit (τ = +∞, min_step 0: no
  row triggers or falls back, every row checks every step): what the adaptive steps save;
* ``torch, csrc kernels``: the per-row step by ``drdc_trt._C`` (``glad_predict`` / ``glad_update``);
* ``onnxruntime (numpy kernels)`` / ``onnxruntime (torch-free runtime)``: ``GLADBundleDetector``
  with the numpy transcription / the compiled kernels; ``openvino (torch-free runtime)`` on request.

Each row records the steps its images took (``steps_histogram``, ``mean_steps``); they depend on
the images, so ``--images`` gives real ones (random images otherwise). The model is a randomly
initialised model of the preset (``--config``; latency does not depend on the weights, but the
steps do: give ``--model CKPT`` and ``--images`` for a trained model's steps) or ``--model CKPT``;
the engine rows run a bundle exported from it into a temporary folder.
"""

from __future__ import annotations

from typing import Callable

from .spec import SPEC


def bench_rows(kit, opts, size: int | None, argv: list[str] | None, log: Callable[[str], None]) -> dict:
    """The method's rows at image side ``size`` (None: the options'), with its model's source and config;
    ``kit``: the bench's shared machinery (``drdc_trt.benchmarking.rows``)."""
    from .model import GLADModel

    model, source = kit.method_model(opts, SPEC, GLADModel, size)
    cfg = model.cfg
    return {"rows": glad_rows(kit, opts, model, log), "source": source, "config": cfg.to_dict(),
            "image_size": cfg.image_size, "report": None}


def glad_rows(kit, opts, model, log: Callable[[str], None]) -> list[dict]:
    """The GLAD rows at every batch size of ``opts`` (module doc), each with the steps its images took."""
    import math

    from .detector import GLADDetector
    from .runtime import GLADBundleDetector
    from drdc_trt.backends.openvino_backend import supports_bf16

    full_cfg = model.cfg.replace(**{"glad.min_step": 0})  # no fallback: with τ = +∞ every row runs all K steps
    threads = opts.threads or 0
    engines = [("torch eager", "torch", "torch", lambda _: GLADDetector(model, "cpu", opts.seed), False),
               ("torch eager, every row all K steps", "torch", "torch-full",
                lambda _: _WithConfig(GLADDetector, model, full_cfg, "cpu", opts.seed, tau=math.inf), False),
               ("torch, csrc kernels", "torch", "csrc",
                lambda _: GLADDetector(model, "cpu", opts.seed, kernels="csrc"), False),
               ("onnxruntime (numpy kernels)", "onnxruntime", "numpy",
                lambda b: GLADBundleDetector(b, "onnxruntime", "numpy", threads=threads), True),
               ("onnxruntime (torch-free runtime)", "onnxruntime", "runtime",
                lambda b: GLADBundleDetector(b, "onnxruntime", "csrc", threads=threads), True)]
    if "openvino" in opts.backends:
        engines.append(("openvino (torch-free runtime)", "openvino", "runtime",
                        lambda b: GLADBundleDetector(b, "openvino", "csrc", threads=threads), True))
        if supports_bf16():  # OpenVINO runs bf16 where the CPU has it (AVX-512 BF16, AMX)
            engines.append(("openvino bf16 (torch-free runtime)", "openvino", "runtime",
                            lambda b: GLADBundleDetector(b, "openvino", "csrc", threads=threads, precision="bf16"),
                            True, "bfloat16"))
    if opts.int8_calib:  # the temporary bundle's denoisers quantized (rows.add_int8_networks)
        engines.append(("openvino int8 (torch-free runtime)", "openvino", "runtime",
                        lambda b: GLADBundleDetector(b, "openvino", "csrc", threads=threads, precision="int8"),
                        True, "int8"))
    k = model.cfg.glad.num_steps
    rows = kit.engine_rows(SPEC, model, opts, engines, log,
                           steps_of=lambda out: {"steps": _plain_steps(out.step_report(k))})
    _steps_saved(rows)
    return rows


class _WithConfig:
    """A detector built and run with ``cfg`` in place of its model's config (restored after each call)."""

    def __init__(self, cls, model, cfg, *args, **kwargs):
        from drdc_trt.study import carrying_config

        self.carrying = lambda: carrying_config(model, cfg)
        with self.carrying():
            self.det = cls(model, *args, **kwargs)

    def predict_batch(self, x):
        with self.carrying():
            return self.det.predict_batch(x)


def _plain_steps(rep: dict) -> dict:
    return {k: ({str(a): b for a, b in v.items()} if isinstance(v, dict) else v) for k, v in rep.items()}


def _steps_saved(rows: list[dict]) -> None:
    """full_k_over_row: for GLAD's adaptive eager row, the p50 of the every-row-all-K-steps row (the
    same engine) at the same batch over its own (> 1: the early exits saved time)."""
    full = {r["batch"]: r["latency_ms"]["p50_ms"] for r in rows
            if r.get("loop") == "torch-full" and r["status"] == "ok"}
    for r in rows:
        if r["status"] == "ok" and r["method"] == SPEC.name and r["loop"] == "torch" and r["batch"] in full:
            r["full_k_over_row"] = full[r["batch"]] / r["latency_ms"]["p50_ms"]


def markdown_section(rep: dict) -> str | None:
    """GLAD's steps per row: the distribution over the batch's images and the time the early exits save."""
    k = rep["run"]["configs"][SPEC.name]["glad"]["num_steps"]
    fb = rep["run"]["configs"][SPEC.name]["glad"].get("fallback", "stop")
    rule = "stops at its fallback" if fb == "stop" else "that falls back goes on to the end (glad.fallback)"
    out = [f"GLAD's adaptive steps ({k} DDIM steps at most; a row {rule}, and runs to the end "
           "once it triggers). `all-K / row`: p50 of `torch eager, every row all K steps` at the same batch over "
           "the adaptive eager row's p50 (the same engine).", "",
           "| engine | batch | steps taken: images | mean steps | U-Net rows run / all K | all-K / row |",
           "|---|---:|---|---:|---:|---:|"]
    for r in rep["rows"]:
        if r["method"] != SPEC.name or r["status"] != "ok":
            continue
        st = r["steps"]
        hist = ", ".join(f"{a}: {b}" for a, b in sorted(st["steps_histogram"].items(), key=lambda kv: int(kv[0])))
        ratio = r.get("full_k_over_row")
        out.append(f"| {r['engine']} | {r['batch']} | {hist} | {st['mean_steps']:.2f} | {st['unet_rows_run']} / "
                   f"{st['unet_rows_full']} | {'—' if ratio is None else f'{ratio:.2f}×'} |")
    return "\n".join(out)
