"""``drdc serve`` and ``drdc client`` (registered by drdc_trt.cli)."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import click

SERVE_BACKENDS = ("auto", "onnxruntime", "openvino", "tensorrt", "torch")


@click.command(name="serve")
@click.option("--bundle", "bundle_dir", type=click.Path(),
              help="Bundle folder from `drdc export` (backends onnxruntime, openvino, tensorrt).")
@click.option("--model", "model_dir", type=click.Path(),
              help="Checkpoint folder instead of a bundle (backend torch: PyTorch on the CPU or --device cuda).")
@click.option("--backend", type=click.Choice(SERVE_BACKENDS), default=None,
              help="Network engine [default: auto with --bundle (the rule of `drdc detect --help`), torch with "
                   "--model].")
@click.option("--max-batch", default=8, show_default=True, type=click.IntRange(1, 256),
              help="Most images per request and per dynamic batch (a bigger request is refused).")
@click.option("--max-queue-delay-us", default=2000, show_default=True, type=click.IntRange(min=0),
              help="How long Triton's dynamic batcher waits for more requests to fill a batch.")
@click.option("--no-dynamic-batching", is_flag=True,
              help="Run each request alone (for comparison; dynamic batching is on by default).")
@click.option("--instances", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Model instances, each with its own detector, run in parallel.")
@click.option("--http-port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="HTTP port.")
@click.option("--grpc-port", default=8001, show_default=True, type=click.IntRange(1, 65535), help="gRPC port.")
@click.option("--metrics-port", default=8002, show_default=True, type=click.IntRange(1, 65535),
              help="Prometheus metrics port (/metrics).")
@click.option("--host", default="0.0.0.0", show_default=True,
              help="Address the HTTP and gRPC endpoints bind to (127.0.0.1: this machine only).")
@click.option("--loop", default="auto", show_default=True, type=click.Choice(["auto", "torch", "csrc", "numpy"]),
              help="DDIM loop, as for drdc detect.")
@click.option("--device", default="cpu", show_default=True,
              help="Torch device with --model (cpu, cuda); OpenVINO device with --backend openvino.")
@click.option("--verbose", is_flag=True, help="Triton's verbose log.")
def serve_cmd(bundle_dir, model_dir, backend, max_batch, max_queue_delay_us, no_dynamic_batching, instances,
              http_port, grpc_port, metrics_port, host, loop, device, verbose):
    """Serve a bundle (or a checkpoint) on Triton Inference Server until SIGTERM / Ctrl-C.

    Models `drdc` (uint8 pixels, B×H×W×3) and `drdc_encoded` (image files, B×1 bytes); outputs
    pred_score, pred_label, pred_mask, anomaly_map (float16). Health: /v2/health/ready and
    /v2/health/live on the HTTP port. See docs/serving.md.
    """
    from .model import ServingModel
    from .server import ServeOptions, ServingUnavailable, require_pytriton, serve

    if backend == "tensorrt":
        from drdc_trt.backends import available_backends

        if "tensorrt" not in available_backends():
            raise click.UsageError("--backend tensorrt: TensorRT (or a CUDA GPU) is not available here")
    try:
        require_pytriton()
    except ServingUnavailable as e:
        raise click.ClickException(str(e)) from None
    opts = ServeOptions(max_batch=max_batch, max_queue_delay_us=max_queue_delay_us,
                        dynamic_batching=not no_dynamic_batching, instances=instances, http_port=http_port,
                        grpc_port=grpc_port, metrics_port=metrics_port, host=host, log_verbose=1 if verbose else 0)

    def load():
        return ServingModel.load(bundle=bundle_dir, model=model_dir, backend=backend, loop=loop, device=device,
                                 max_batch=max_batch)

    try:
        pool = [load()]  # fail here, before Triton starts, on a bad bundle or option
    except (ValueError, RuntimeError, OSError) as e:
        raise click.ClickException(str(e)) from None
    try:
        serve(lambda: pool.pop() if pool else load(), opts, log=lambda m: click.echo(m, err=True))
    except ServingUnavailable as e:
        raise click.ClickException(str(e)) from None


@click.command(name="client")
@click.argument("url")
@click.argument("images", nargs=-1, required=True)
@click.option("--batch", default=None, type=click.IntRange(min=1),
              help="Images per request [default: the server's max batch].")
@click.option("--out", type=click.Path(),
              help="Also write results.json and the anomaly maps (maps/*.npy, float16) here.")
@click.option("--timeout", "timeout_s", default=120.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds to wait for the server.")
def client_cmd(url, images, batch, out, timeout_s):
    """Send IMAGES (files or folders) to a `drdc serve` server at URL (http://HOST:8000 or
    grpc://HOST:8001) and print one line per image, as `drdc detect` does."""
    import numpy as np

    from drdc_trt.cli_common import expand_images as _expand_images

    from .client import DetectorClient, result_line

    files = _expand_images(images)
    try:
        with DetectorClient(url, timeout_s=timeout_s) as c:
            results = c.detect_files(files, anomaly_map=out is not None, batch=batch)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    except Exception as e:  # noqa: BLE001 - tritonclient's errors: connection, per-request refusals
        raise click.ClickException(f"{url}: {e}") from None
    records = []
    for i, r in enumerate(results):
        click.echo(result_line(r))
        rec = {"image": r["image"], "pred_score": r["pred_score"], "pred_label": r["pred_label"]}
        if "steps" in r:  # GLAD, as drdc detect's results.json
            rec["steps"] = r["steps"]
        if out is not None:  # the file names drdc detect writes
            from drdc_trt.export.bundle import atomic_write_bytes

            name = f"maps/{i:04d}_{Path(r['image']).stem}_anomaly_map.npy"
            (Path(out) / "maps").mkdir(parents=True, exist_ok=True)
            buf = io.BytesIO()
            np.save(buf, r["anomaly_map"], allow_pickle=False)
            atomic_write_bytes(Path(out) / name, buf.getvalue())
            rec["anomaly_map"] = name
        records.append(rec)
    if out is not None:
        from drdc_trt.checkpoint import atomic_write_text

        atomic_write_text(Path(out) / "results.json", json.dumps({"url": url, "results": records}, indent=2))
        click.echo(f"wrote {len(records)} results to {out}/results.json", err=True)
    sys.stdout.flush()


def triton_repo_option(export_cmd):
    """``drdc export`` options --triton-repo / --triton-instances / --triton-backend: after the bundle
    is written, a Triton model repository of it (drdc_trt.serving.repository)."""
    import functools

    @functools.wraps(export_cmd)
    def wrapper(*args, triton_repo=None, triton_instances=1, triton_backend=None, **kwargs):
        if triton_repo is not None and Path(triton_repo).resolve() == Path(kwargs["out"]).resolve():
            raise click.BadParameter("the repository needs its own folder, not the bundle's", param_hint="--triton-repo")
        export_cmd(*args, **kwargs)
        if triton_repo is None:
            return
        from .repository import write_repository

        backend = triton_backend or ("tensorrt" if kwargs.get("tensorrt") else "onnxruntime")
        try:
            path = write_repository(kwargs["out"], triton_repo, backend=backend, instances=triton_instances)
        except (ValueError, OSError) as e:
            raise click.ClickException(str(e)) from None
        click.echo(f"wrote Triton model repository {path} (models drdc, drdc_encoded; {backend}, "
                   f"{triton_instances} instance(s) each); run it with `tritonserver --model-repository {path}` "
                   "(docs/serving.md)")

    wrapper = click.option("--triton-backend", type=click.Choice(["onnxruntime", "openvino", "tensorrt"]),
                           default=None, help="Engine the repository's models run [default: tensorrt with "
                                              "--tensorrt, else onnxruntime].")(wrapper)
    wrapper = click.option("--triton-instances", default=1, show_default=True, type=click.IntRange(1, 64),
                           help="Model instances per model in the repository's instance_group.")(wrapper)
    wrapper = click.option("--triton-repo", type=click.Path(),
                           help="Also write a Triton model repository of the bundle here (config.pbtxt with dynamic "
                                "batching and instance groups, Python-backend models); see docs/serving.md.")(wrapper)
    return wrapper
