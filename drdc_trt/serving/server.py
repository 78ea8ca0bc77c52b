"""``drdc serve``: the detector behind a real Triton Inference Server, through PyTriton.

PyTriton starts the ``tritonserver`` binary its wheel bundles (HTTP, gRPC, metrics, health
endpoints, dynamic batching) and runs each model instance's Python callable in this process.
Two models: ``drdc`` takes uint8 pixels B×H×W×3, ``drdc_encoded`` encoded image files (B×1
bytes); both answer ``pred_score``, ``pred_label``, ``pred_mask`` and ``anomaly_map`` (float16),
and for GLAD ``steps`` (int32, the U-Net steps each image took).
"""

from __future__ import annotations

import os
import signal
import sys
import sysconfig
import threading
from dataclasses import dataclass

import numpy as np

from . import INPUT_ENCODED, INPUT_RAW, MODEL_ENCODED, MODEL_RAW, OUTPUT_STEPS

_STOP = threading.Event()  # never set: serve() sleeps on it between liveness checks
# Seconds tritonserver waits for in-flight requests on shutdown (SIGTERM/SIGINT).
EXIT_TIMEOUT_S = 30


class ServingUnavailable(RuntimeError):
    """PyTriton (the serve extra) is missing or cannot run here; the message says what to install."""


def require_pytriton():
    try:
        import pytriton  # noqa: F401
        from pytriton.triton import Triton  # noqa: F401
    except ImportError as e:
        raise ServingUnavailable(f"drdc serve needs PyTriton: pip install 'drdc_trt[serve]' ({e})") from None
    return pytriton


def python_library_path() -> None:
    """Put this interpreter's libpython directory first on LD_LIBRARY_PATH (inherited by tritonserver
    and its Python-backend stub). The stub links libpython3.X.so.1.0 and otherwise finds the system's
    copy, whose standard library can differ from this interpreter's (a pyenv build: the stub then
    fails at model load)."""
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        raise ServingUnavailable(
            f"{sys.executable} is built without a shared libpython, which Triton's Python backend stub needs; "
            "serve from a virtual environment of a Python built with --enable-shared (e.g. the system python3)")
    libdir = sysconfig.get_config_var("LIBDIR")
    cur = os.environ.get("LD_LIBRARY_PATH", "")
    if libdir and libdir not in cur.split(":"):
        os.environ["LD_LIBRARY_PATH"] = f"{libdir}:{cur}" if cur else libdir


@dataclass
class ServeOptions:
    max_batch: int = 8                 # images per request and per dynamic batch
    max_queue_delay_us: int = 2000     # how long the batcher waits to fill a batch
    dynamic_batching: bool = True
    instances: int = 1                 # model instances (each its own detector, run in parallel)
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    host: str = "0.0.0.0"              # tritonserver's HTTP/gRPC bind address
    log_verbose: int = 0


def _outputs(image_size: int, steps: bool = False):
    from pytriton.model_config import Tensor

    s = image_size
    return [Tensor(name="pred_score", dtype=np.float32, shape=(1,)),
            Tensor(name="pred_label", dtype=np.bool_, shape=(1,)),
            Tensor(name="pred_mask", dtype=np.bool_, shape=(s, s)),
            Tensor(name="anomaly_map", dtype=np.float16, shape=(s, s))] + (
        [Tensor(name=OUTPUT_STEPS, dtype=np.int32, shape=(1,))] if steps else [])


def _infer_fn(model):
    """PyTriton callable over a list of requests (a dynamic batch): one prediction for all of them."""

    def infer(requests):
        outs = model.infer([dict(r.data) for r in requests])
        for o in outs:
            o["pred_score"] = o["pred_score"].reshape(-1, 1)
            o["pred_label"] = o["pred_label"].reshape(-1, 1)
            if OUTPUT_STEPS in o:
                o[OUTPUT_STEPS] = o[OUTPUT_STEPS].reshape(-1, 1)
        return outs

    return infer


def bind(triton, models: list, opts: ServeOptions) -> None:
    """Bind the two models on ``triton``, ``models`` being one ServingModel per instance."""
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor

    size, steps = models[0].image_size, models[0].steps
    # batching off = no dynamic batcher; the batch dimension stays (a request still carries B images)
    cfg = ModelConfig(max_batch_size=opts.max_batch, batching=True,
                      batcher=DynamicBatcher(max_queue_delay_microseconds=opts.max_queue_delay_us)
                      if opts.dynamic_batching else None)
    fns = [_infer_fn(m) for m in models]
    triton.bind(model_name=MODEL_RAW, infer_func=fns,
                # any channel count: the model's check names a 4-channel image (Triton's shape check would
                # not say which dimension is wrong)
                inputs=[Tensor(name=INPUT_RAW, dtype=np.uint8, shape=(-1, -1, -1))],
                outputs=_outputs(size, steps), config=cfg, strict=True)
    triton.bind(model_name=MODEL_ENCODED, infer_func=fns,
                inputs=[Tensor(name=INPUT_ENCODED, dtype=np.bytes_, shape=(1,))],
                outputs=_outputs(size, steps), config=cfg, strict=True)


def triton_config(opts: ServeOptions):
    from pytriton.triton import TritonConfig

    return TritonConfig(http_address=opts.host, http_port=opts.http_port, grpc_address=opts.host,
                        grpc_port=opts.grpc_port, metrics_port=opts.metrics_port, log_verbose=opts.log_verbose,
                        exit_timeout_secs=EXIT_TIMEOUT_S, strict_readiness=True)


def serve(load_model, opts: ServeOptions, ready: threading.Event | None = None, log=print) -> None:
    """Start Triton with ``opts.instances`` models from ``load_model()`` and block until SIGTERM or
    SIGINT; then Triton stops taking requests, finishes the in-flight ones (up to EXIT_TIMEOUT_S)
    and exits."""
    require_pytriton()
    python_library_path()
    from pytriton.triton import Triton

    models = [load_model() for _ in range(opts.instances)]
    # SIGTERM (docker stop, Kubernetes) ends serve() as Ctrl-C does: Triton's own shutdown path
    # drains in-flight requests before the process exits.
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_interrupt) if main else None
    try:
        with Triton(config=triton_config(opts)) as triton:
            bind(triton, models, opts)
            triton.run()
            log(f"serving {models[0].description}: models {MODEL_RAW!r} (uint8 pixels) and {MODEL_ENCODED!r} "
                f"(encoded images) on http {opts.host}:{opts.http_port}, grpc {opts.grpc_port}, metrics "
                f"{opts.metrics_port}; max batch {opts.max_batch}, dynamic batching "
                f"{'on, ' + str(opts.max_queue_delay_us) + ' us' if opts.dynamic_batching else 'off'}, "
                f"{opts.instances} instance(s)")
            if ready is not None:
                ready.set()
            try:
                while triton.is_alive():
                    _STOP.wait(1.0)
            except KeyboardInterrupt:
                pass
            log("shutting down: finishing in-flight requests")
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
    log("stopped")


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")
