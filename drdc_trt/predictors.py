"""The predictor ``drdc detect`` runs for its options, shared with ``drdc serve``: a checkpoint
(PyTorch: the method's registered ``detector``) or a bundle (the torch-free runtime's
``load_detector``), for every registered method. Bad combinations of options are refused with
click.UsageError, worded for the command line."""

from __future__ import annotations

import click


def detect_predictor(model_dir, bundle_dir, backend, loop, seed, device, rebuild_plans, method=None,
                     precision=None, log=None):
    """(predict(images, batch_size) -> InferenceBatch, image size, FusionStats) for either source
    (DiffusionAD: DiffusionADBatch and DiffusionADStats; GLAD: GLADBatch, which also carries
    ``steps``, and GLADStats; same field names). A bundle's backend defaults to ``auto``
    (drdc_trt.runtime.choice: the rule and what it passed over are printed with ``log``);
    ``predict.engine`` names the engine that runs."""
    import torch

    from drdc_trt import methods

    if (model_dir is None) == (bundle_dir is None):
        raise click.UsageError("give exactly one of --model CKPT (torch backends) or --bundle B (engine backends)")
    if precision is not None and backend != "openvino":
        raise click.UsageError(f"--precision {precision} is an OpenVINO option (--bundle B --backend openvino); "
                               "--backend auto chooses the precision itself")
    if model_dir is not None:
        backend = backend or "torch"
        if backend not in ("torch", "torch-compiled"):
            raise click.UsageError(f"--backend {backend} runs a bundle's engines: export one with "
                                   "`drdc export --model CKPT --out B`, then use --bundle B")
        if loop == "numpy":
            raise click.UsageError("--loop numpy is the torch-free runtime's loop; use it with --bundle")
        from drdc_trt.loading import load_checkpoint

        model = load_checkpoint(model_dir)
        if method is not None and model.cfg.method != method:
            raise click.UsageError(f"--method {method}: {model_dir} holds a {model.cfg.method} model")
        spec = methods.get(model.cfg.method)
        try:
            det = spec.entry("detector")(model, device, seed=0 if seed is None else seed, loop=loop, backend=backend)
        except ValueError as e:  # the method's own refusal of a loop or backend
            raise click.UsageError(str(e)) from None
        return det.predict, model.cfg.image_size, model.stats
    backend = backend or "auto"
    if backend not in ("auto", "onnxruntime", "openvino", "tensorrt"):
        raise click.UsageError(f"--backend {backend} runs a checkpoint (--model CKPT); a bundle holds ONNX/TensorRT "
                               "engines: use --backend auto, onnxruntime, openvino or tensorrt")
    if loop == "torch":
        raise click.UsageError("a bundle runs without PyTorch: --loop auto, csrc (C++ refiner) or numpy")
    from drdc_trt.runtime import load_bundle, load_detector

    bundle = load_bundle(bundle_dir)
    choice = None
    if backend == "auto":
        from drdc_trt.runtime.choice import choose

        choice = choose(bundle)
        backend, precision = choice.backend, choice.precision
        (log or click.echo)(choice.text())
    if method is not None and bundle.method != method:
        raise click.UsageError(f"--method {method}: {bundle_dir} holds a {bundle.method} bundle")
    spec = methods.get(bundle.method)
    seed_key = spec.seed_key
    if seed is not None and seed != bundle.manifest[seed_key]:
        raise click.UsageError(f"the bundle carries the masks and noise of seed {bundle.manifest[seed_key]} "
                               f"(drdc export --seed); got --seed {seed}")
    kwargs = {"rebuild": True} if rebuild_plans and backend == "tensorrt" else {}
    if backend == "openvino":  # --device: OpenVINO's device name (cpu → CPU)
        kwargs = {"device": device, "precision": precision}
    det = load_detector(bundle, backend=backend, kernels="csrc" if loop == "csrc" else
                        ("numpy" if loop == "numpy" else "auto"), **kwargs)
    batch = spec.entry("batch")  # the method's result dataclass, filled from the runtime's numpy arrays

    def predict(x, batch_size=8, progress=False):
        import numpy as np
        from tqdm.auto import tqdm

        x, parts = x.numpy(), []
        # the runtime runs batch_size images per call either way; one call per chunk lets a bar move
        # a bar where the work is split (eval's test split), cleared when done; one call shows none, so
        # drdc detect on a few parts prints its result lines alone (drdc client prints the same)
        with tqdm(total=len(x), desc=f"inference ({predict.engine})", unit="img", leave=False,
                  disable=not progress or len(x) <= batch_size) as bar:
            for i in range(0, len(x), batch_size):
                parts.append(det.predict(x[i:i + batch_size], batch_size=batch_size))
                bar.update(min(batch_size, len(x) - i))
        return batch(*(torch.from_numpy(np.concatenate([getattr(r, f) for r in parts]))
                       for f in batch.__dataclass_fields__))

    predict.engine = backend + (f" {precision or 'f32'}" if backend == "openvino" else "")
    predict.choice = choice
    return predict, bundle.image_size, spec.entry("bundle_stats")(bundle.manifest)
