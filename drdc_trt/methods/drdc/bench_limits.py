"""Distance to the limit: work counted, device ceilings measured in the same run.

* FLOPs with ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add is 2
  FLOPs; convolutions, matmuls and attention are counted, element-wise ops and
  normalisation are not): U-Net per row on the meta device (no weights, no
  compute), base model per image on the real model. One image costs
  ``unet_per_row × rows_per_image × steps + base``.
* Compute ceiling: the rate of a large dense GEMM (``torch.matmul``) per
  precision, measured here — fp32 on the CPU; fp32, TF32, bf16 and fp16 on CUDA.
* Memory ceiling: the bandwidth of a large device copy (bytes read + written).
* The fused ``step`` op: the minimal bytes it must move (each input read once,
  each output written once) over its time, against that copy bandwidth.
"""

from __future__ import annotations

import contextlib

import torch
from torch.utils.flop_counter import FlopCounterMode

from drdc_trt.benchmarking.stats import median
from drdc_trt.benchmarking.timing import Clock, measure

MIB = 2**20


# --------------------------------------------------------------------------- FLOPs
def count_flops(fn, *args) -> int:
    """FLOPs of one call ``fn(*args)`` as ``torch.utils.flop_counter`` counts them.

    Grad mode stays as it is: FlopCounterMode's module tracker asserts on views of
    parameters made under ``no_grad`` (the transformer's position embedding)."""
    with FlopCounterMode(display=False) as fc:
        fn(*args)
    return int(fc.get_total_flops())


def unet_flops_per_row(cfg) -> int:
    """U-Net FLOPs of one row (in_channels × S × S) of ``cfg`` (a ModelConfig), on the meta device."""
    from drdc_trt.models.unet import UNet

    with torch.device("meta"):
        unet = UNet(cfg.unet).eval()
    s = cfg.loop_size
    x = torch.zeros(1, cfg.unet.in_channels, s, s, device="meta")
    t = torch.zeros(1, device="meta")
    return count_flops(unet, x, t)


def base_flops_per_image(base_model, image_size: int, device) -> int:
    x = torch.zeros(1, 3, image_size, image_size, device=device)
    return count_flops(base_model, x)


def pipeline_flops(cfg, base_model, device) -> dict:
    """FLOPs of one image through the pipeline (see module docstring)."""
    row = unet_flops_per_row(cfg)
    base = base_flops_per_image(base_model, cfg.image_size, device)
    rows, steps = cfg.rows_per_image, cfg.diffusion.num_steps
    return {
        "method": "torch.utils.flop_counter.FlopCounterMode (multiply-add = 2 FLOPs; conv/matmul/attention only)",
        "unet_per_row": row, "rows_per_image": rows, "steps": steps,
        "unet_per_image": row * rows * steps, "base_per_image": base,
        "per_image": row * rows * steps + base,
    }


# --------------------------------------------------------------------------- ceilings
@contextlib.contextmanager
def _tf32_matmul(enabled: bool):
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old


def gemm_rate(device, dtype: torch.dtype, n: int | None = None, seconds: float = 0.5) -> dict:
    """Best TFLOP/s of an n×n×n ``torch.matmul`` (2n³ FLOPs) over a short time-bounded run."""
    device = torch.device(device)
    cuda = device.type == "cuda"
    n = n or (8192 if cuda else 2048)
    g = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, generator=g, device=device).to(dtype)
    b = torch.randn(n, n, generator=g, device=device).to(dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    m = measure(lambda: torch.matmul(a, b, out=out), Clock(device), warmup_s=0.2 if cuda else 0.0,
                min_iters=3, max_seconds=seconds, max_iters=50)
    best = min(m.latencies_ms)
    return {"n": n, "dtype": str(dtype).replace("torch.", ""), "best_ms": round(best, 4),
            "tflops": 2 * n**3 / (best * 1e-3) / 1e12, "iterations": len(m.latencies_ms)}


def openvino_matmul_rate(precision: str, n: int = 1024, seconds: float = 0.5) -> dict | None:
    """Best TOPS of an n×n×n matmul compiled by OpenVINO's CPU plugin in ``precision``: ``int8`` (the
    activation through a 256-level FakeQuantize, int8 weights: the pattern NNCF writes, run as a u8×i8
    FullyConnected), ``bfloat16`` (the f32 graph with the bf16 inference hint). None where OpenVINO
    is missing or the CPU lacks the precision."""
    import numpy as np

    try:
        import openvino as ov
        import openvino.opset13 as ops

        from drdc_trt.backends.openvino_backend import core, supports_bf16
    except ImportError:
        return None
    if precision == "bfloat16" and not supports_bf16("CPU"):
        return None
    rng = np.random.default_rng(0)
    a = ops.parameter([n, n], ov.Type.f32, name="a")
    if precision == "int8":
        lo, hi = ops.constant(np.float32(-4)), ops.constant(np.float32(4))
        w = ops.constant(rng.integers(-127, 128, (n, n)).astype(np.int8))
        mm = ops.matmul(ops.fake_quantize(a, lo, hi, lo, hi, 256),
                        ops.multiply(ops.convert(w, ov.Type.f32), ops.constant(np.float32(0.01))), False, True)
    else:
        mm = ops.matmul(a, ops.constant(rng.standard_normal((n, n)).astype(np.float32)), False, True)
    hint = "bf16" if precision == "bfloat16" else "f32"
    compiled = core().compile_model(ov.Model([mm], [a]), "CPU", {"INFERENCE_PRECISION_HINT": hint,
                                                                 "PERFORMANCE_HINT": "LATENCY"})
    req, x = compiled.create_infer_request(), rng.uniform(-3, 3, (n, n)).astype(np.float32)
    req.infer({"a": x})
    m = measure(lambda: req.infer({"a": x}), Clock(torch.device("cpu")), warmup_s=0.0, min_iters=3,
                max_seconds=seconds, max_iters=50)
    best = min(m.latencies_ms)
    return {"n": n, "dtype": f"{precision} (OpenVINO matmul)", "best_ms": round(best, 4),
            "tflops": 2 * n**3 / (best * 1e-3) / 1e12, "iterations": len(m.latencies_ms)}


def gemm_peaks(device) -> dict:
    """Measured dense GEMM rates by precision name (the reference peaks of this run); on the CPU also
    OpenVINO's int8 and bf16 matmuls, the ceilings of its rows in those precisions."""
    device = torch.device(device)
    if device.type != "cuda":
        out = {"float32": gemm_rate(device, torch.float32)}
        for p in ("int8", "bfloat16"):
            rate = openvino_matmul_rate(p)
            if rate is not None:
                out[p] = rate
        return out
    out = {}
    with _tf32_matmul(False):
        out["float32"] = gemm_rate(device, torch.float32)
    with _tf32_matmul(True):
        out["tf32"] = gemm_rate(device, torch.float32)
        out["tf32"]["dtype"] = "float32 (TF32 tensor cores)"
    out["bfloat16"] = gemm_rate(device, torch.bfloat16)
    out["float16"] = gemm_rate(device, torch.float16)
    return out


def peak_key(device, precision: str) -> str:
    """Which measured GEMM rate is the ceiling of a row computing in ``precision``.

    On CUDA, fp32 work is dominated by convolutions that cuDNN runs on TF32 tensor
    cores unless ``torch.backends.cudnn.allow_tf32`` is off (TensorRT and ONNX Runtime's
    CUDA EP allow TF32 by default too), so its ceiling is the TF32 rate."""
    if torch.device(device).type != "cuda":
        return precision if precision in ("int8", "bfloat16") else "float32"
    if precision in ("float16", "bfloat16"):
        return precision
    return "tf32" if torch.backends.cudnn.allow_tf32 else "float32"


def copy_bandwidth(device, mib: int | None = None, seconds: float = 0.5) -> dict:
    """GB/s of a large device copy, read + write bytes (the ceiling of a streaming kernel)."""
    device = torch.device(device)
    cuda = device.type == "cuda"
    mib = mib or (1024 if cuda else 256)
    src = torch.ones(mib * MIB // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    m = measure(lambda: dst.copy_(src), Clock(device), warmup_s=0.1 if cuda else 0.0, min_iters=3,
                max_seconds=seconds, max_iters=50)
    best = min(m.latencies_ms)
    return {"mib": mib, "best_ms": round(best, 4), "GBps": 2 * src.numel() * 4 / (best * 1e-3) / 1e9}


# --------------------------------------------------------------------------- fused step op
def step_bytes(batch: int, specs: int, sets: int, size: int, net_itemsize: int) -> int:
    """Minimal bytes of one ``step``: read x_t, ε̂, ε' and write x_t', the x_t' half of the
    U-Net input (per row), read x (per image) and the labels, read + write the heat sum."""
    hw = size * size
    plane = batch * specs * sets * 3 * hw
    e = net_itemsize
    return plane * (4 + e + 4 + 4 + e) + batch * 3 * hw * 4 + specs * hw * 4 + 2 * batch * hw * 4


def step_op(cfg, batch: int, device, net_dtype: torch.dtype, have_csrc: bool, seconds: float = 0.5) -> dict:
    """Time the per-step work between two U-Net calls at the pipeline's shape.

    ``torch``: ``ops.reference_step`` (what ``loop=torch`` runs); ``csrc``: the bare
    ``drdc_trt._C.step`` kernel on preallocated buffers (what the C++ refiner of
    ``loop=csrc`` launches). Returns median ms, GB/s of the minimal bytes, per impl.
    """
    from drdc_trt.methods.drdc import ops
    from drdc_trt.schedule import Schedule
    from drdc_trt.methods.drdc.masks import grid_labels

    device = torch.device(device)
    d = cfg.diffusion
    s, k, grids = cfg.image_size, d.num_sets, tuple(d.grid_sizes)
    j = len(grids)
    n = batch * j * k
    g = torch.Generator().manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=g).to(device)

    x = (torch.rand(batch, 3, s, s, generator=g) * 2 - 1).to(device)
    labels = grid_labels(s, grids, k, seed=0).to(device)
    xt, noise = randn(n, 3, s, s), randn(n, 3, s, s)
    eps = randn(n, 3, s, s).to(net_dtype)
    unet_in = randn(n, 6, s, s).to(net_dtype)
    heat = torch.zeros(batch, s, s, device=device)
    sched = Schedule.from_config(d)
    (a, sa), (an, sn) = sched.coefficients(d.t0), sched.coefficients(max(d.t0 // 2, 1))
    pool = list(cfg.fusion.pool_factors)
    nbytes = step_bytes(batch, j, k, s, torch.empty((), dtype=net_dtype).element_size())
    clock = Clock(device)
    fns = {"torch": lambda: ops.reference_step(x, labels, k, xt, eps, noise, unet_in, heat, a, sa, an, sn, pool,
                                               d.clip_x0)}
    if have_csrc:
        from drdc_trt import _C

        xt_out = torch.empty_like(xt)
        unet_raw, heat_raw = unet_in.clone(), heat.clone()
        stream = torch.cuda.current_stream(device).cuda_stream if device.type == "cuda" else 0
        name = "float16" if net_dtype == torch.float16 else "float32"
        fns["csrc"] = lambda: _C.step(
            device=device.type, stream=stream, x=x.data_ptr(), labels=labels.data_ptr(), xt_in=xt.data_ptr(),
            eps=eps.data_ptr(), noise=noise.data_ptr(), xt_out=xt_out.data_ptr(), unet_in=unet_raw.data_ptr(),
            heat=heat_raw.data_ptr(), B=batch, J=j, K=k, H=s, W=s, sqrt_ab=a, sqrt_1mab=sa, sqrt_ab_next=an,
            sqrt_1mab_next=sn, pool_factors=pool, clip_x0=bool(d.clip_x0), net_dtype=name)
    out = {"shape": {"B": batch, "J": j, "K": k, "N": n, "size": s, "net_dtype": str(net_dtype).replace("torch.", "")},
           "bytes": nbytes}
    for impl, fn in fns.items():
        m = measure(fn, clock, warmup_s=0.0, min_iters=3, max_seconds=seconds, max_iters=100)
        ms = median(m.latencies_ms)
        out[impl] = {"median_ms": ms, "GBps": nbytes / (ms * 1e-3) / 1e9, "iterations": len(m.latencies_ms)}
    return out
