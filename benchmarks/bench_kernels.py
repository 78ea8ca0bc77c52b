"""Fused kernels vs the eager PyTorch op sequence (drdc_trt.ops reference_*).

The hot loop's shape (DESIGN §2): N = B·J·K rows of 3×S×S, by default
B=16 images, J=2 grid specs, K=2 sets → N=64 rows of 224². For each op
(step first — it runs once per DDIM step — then prepare and fuse) the script
times the compiled kernel (impl="csrc") and the PyTorch reference on the same
inputs, checks that they agree, and reports the speed-up and the memory
traffic the fused kernel achieves (the minimal bytes it must move / time),
against the GPU's nominal bandwidth and a measured device copy.

CUDA timings use CUDA events on the current stream; CPU timings
time.perf_counter. Results go to <out-dir>/bench_kernels_<device>_<date>.json
and .md.

    python benchmarks/bench_kernels.py --device cuda
    python benchmarks/bench_kernels.py --device cpu --iters 5
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from drdc_trt.methods.drdc import ops
from drdc_trt.schedule import Schedule
from drdc_trt.methods.drdc.masks import grid_labels

# Nominal DRAM bandwidth (GB/s, vendor data sheets) by device-name fragment.
NOMINAL_GBPS = [
    ("H200", 4800.0), ("H100 NVL", 3900.0), ("H100 PCIe", 2000.0), ("H100", 3350.0),
    ("A100-SXM4-80GB", 2039.0), ("A100 80GB PCIe", 1935.0), ("A100", 1555.0), ("L40S", 864.0), ("L4", 300.0),
]


def nominal_bandwidth(name: str) -> float | None:
    for key, gbps in NOMINAL_GBPS:
        if key in name:
            return gbps
    return None


class Timer:
    """Milliseconds per call. CUDA: CUDA events around `batch` back-to-back calls
    (so launch overhead overlaps execution, as in the real loop), one sample per
    batch. CPU: time.perf_counter around each call."""

    def __init__(self, device: torch.device, batch: int = 20):
        self.cuda = device.type == "cuda"
        self.batch = batch if self.cuda else 1

    def __call__(self, fn, warmup: int, iters: int) -> list[float]:
        for _ in range(warmup):
            fn()
        if self.cuda:
            torch.cuda.synchronize()
        times = []
        for _ in range(iters):
            if self.cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                for _ in range(self.batch):
                    fn()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end) / self.batch)
            else:
                t = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t) * 1e3)
        return times


def measured_copy_bandwidth(device: torch.device, timer: Timer, mib: int = 1024) -> float:
    """GB/s of a large device copy (read + write), the practical ceiling of a streaming kernel."""
    src = torch.empty(mib * 2**20 // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    ms = statistics.median(timer(lambda: dst.copy_(src), 2, 5))
    return 2 * src.numel() * 4 / (ms * 1e-3) / 1e9


REPO = Path(__file__).resolve().parents[1]


def _command() -> str:
    """The command line, with paths inside the repository made relative to it."""
    args = [Path(sys.executable).name, *sys.argv]
    root = str(REPO) + os.sep
    return " ".join(shlex.quote(a[len(root):] if a.startswith(root) else a) for a in args)


def environment(device: torch.device) -> dict:
    from drdc_trt import _C

    env = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": _command(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "drdc_trt._C": dict(_C.build_info),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "drdc_cpu_threads": _C.num_threads(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                   compute_capability=f"{props.major}.{props.minor}", cuda=torch.version.cuda)
        try:
            env["driver"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                text=True, timeout=20).stdout.strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            env["driver"] = "unknown (nvidia-smi unavailable)"
    return env


def make_inputs(args, device: torch.device, net_dtype: torch.dtype) -> dict:
    g = torch.Generator().manual_seed(0)
    b, s, k = args.batch, args.size, args.sets
    grids = tuple(args.grids[: args.specs])
    n = b * len(grids) * k

    def randn(*shape):
        return torch.randn(*shape, generator=g).to(device)

    sched = Schedule.linear()
    return {
        "x": (torch.rand(b, 3, s, s, generator=g) * 2 - 1).to(device),
        "labels": grid_labels(s, grids, k, seed=0).to(device), "k": k, "n": n,
        "fill": randn(n, 3, s, s), "eps0": randn(n, 3, s, s), "xt": randn(n, 3, s, s),
        "eps": randn(n, 3, s, s).to(net_dtype), "noise": randn(n, 3, s, s),
        "heat": torch.zeros(b, s, s, device=device), "base": torch.rand(b, s // 16, s // 16, generator=g).to(device),
        "t": sched.coefficients(250), "t_next": sched.coefficients(225),
    }


def bench(args) -> dict:
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA GPU visible to torch")
    net_dtype = {"float32": torch.float32, "float16": torch.float16}[args.net_dtype]
    timer = Timer(device)
    d = make_inputs(args, device, net_dtype)
    (a, s), (an, sn) = d["t"], d["t_next"]
    pool = args.pool_factors
    _, unet_in = ops.reference_prepare(d["x"], d["labels"], d["k"], d["fill"], d["eps0"], a, s, net_dtype)
    e = net_dtype.itemsize
    b, hw, n = args.batch, args.size * args.size, d["n"]
    j = args.specs

    def step(impl):
        return lambda: ops.step(d["x"], d["labels"], d["k"], d["xt"], d["eps"], d["noise"], unet_in, d["heat"],
                                a, s, an, sn, pool, impl=impl)

    def prepare(impl):
        return lambda: ops.prepare(d["x"], d["labels"], d["k"], d["fill"], d["eps0"], a, s, net_dtype, impl=impl)

    stats = (0.1, 0.5, 0.2, 0.7)
    window = max(1, round(16 * args.size / 224))

    heat_sum = d["heat"] + 1.0  # a non-trivial accumulated heat for fuse

    def fuse(impl):
        return lambda: ops.fuse(heat_sum, 40, d["base"], 5, stats, 0.9, window, impl=impl)

    # The bare kernels: _C calls on preallocated buffers (no Python-side checks,
    # no allocation), i.e. what the C++ refiner launches between network calls.
    from drdc_trt import _C

    dev, stream = device.type, (torch.cuda.current_stream(device).cuda_stream if device.type == "cuda" else 0)
    dims = dict(B=b, J=j, K=d["k"], H=args.size, W=args.size)
    xt_out = torch.empty_like(d["xt"])
    unet_raw = unet_in.clone()
    heat_raw = d["heat"].clone()
    fused_out = [torch.empty(b, args.size, args.size, device=device) for _ in range(3)]
    score = torch.empty(b, device=device)
    net_name = args.net_dtype

    def raw(name):
        if name == "step":
            return lambda: _C.step(device=dev, stream=stream, x=d["x"].data_ptr(), labels=d["labels"].data_ptr(),
                                   xt_in=d["xt"].data_ptr(), eps=d["eps"].data_ptr(), noise=d["noise"].data_ptr(),
                                   xt_out=xt_out.data_ptr(), unet_in=unet_raw.data_ptr(), heat=heat_raw.data_ptr(),
                                   sqrt_ab=a, sqrt_1mab=s, sqrt_ab_next=an, sqrt_1mab_next=sn, pool_factors=pool,
                                   clip_x0=True, net_dtype=net_name, **dims)
        if name == "prepare":
            return lambda: _C.prepare(device=dev, stream=stream, x=d["x"].data_ptr(), labels=d["labels"].data_ptr(),
                                      fill_noise=d["fill"].data_ptr(), eps0=d["eps0"].data_ptr(),
                                      xt=xt_out.data_ptr(), unet_in=unet_raw.data_ptr(), sqrt_ab=a, sqrt_1mab=s,
                                      net_dtype=net_name, **dims)
        return lambda: _C.fuse(device=dev, stream=stream, heat=heat_sum.data_ptr(), base=d["base"].data_ptr(),
                               final=fused_out[0].data_ptr(), diff_map=fused_out[1].data_ptr(),
                               base_up=fused_out[2].data_ptr(), score=score.data_ptr(), B=b, H=args.size,
                               W=args.size, h=d["base"].shape[1], w=d["base"].shape[2], inv_count=1 / 40,
                               mean_filter=5, mu_d=stats[0], sd_d=stats[1], mu_b=stats[2], sd_b=stats[3], lam=0.9,
                               score_window=window)

    # Minimal bytes each fused kernel must move (inputs read once, outputs written once).
    plane = n * 3 * hw
    bytes_moved = {
        "step": plane * (4 + e + 4 + 4 + e) + b * 3 * hw * 4 + j * hw * 4 + 2 * b * hw * 4,
        "prepare": plane * (4 + 4 + 4 + 2 * e) + b * 3 * hw * 4 + j * hw * 4,
        "fuse": b * hw * 4 * 4 + b * (args.size // 16) ** 2 * 4,
    }
    results = {}
    for name, make in (("step", step), ("prepare", prepare), ("fuse", fuse)):
        if name not in args.ops:
            continue
        ref_out = make("torch")()
        got_out = make("csrc")()
        max_diff = max((g.float() - r.float()).abs().max().item() for g, r in zip(got_out, ref_out))
        t_ref = timer(make("torch"), args.warmup, args.iters)
        t_op = timer(make("csrc"), args.warmup, args.iters)
        t_c = timer(raw(name), args.warmup, args.iters)
        ms_ref, ms_op, ms_c = statistics.median(t_ref), statistics.median(t_op), statistics.median(t_c)
        gbps = bytes_moved[name] / (ms_c * 1e-3) / 1e9
        results[name] = {
            "reference_ms": round(ms_ref, 4), "fused_ms": round(ms_c, 4), "speedup": round(ms_ref / ms_c, 2),
            "fused_via_ops_ms": round(ms_op, 4),
            "reference_ms_all": [round(t, 4) for t in t_ref], "fused_ms_all": [round(t, 4) for t in t_c],
            "fused_bytes": bytes_moved[name], "fused_GBps": round(gbps, 1), "max_abs_diff_vs_reference": max_diff,
        }
        print(f"{name:8s} reference {ms_ref:9.3f} ms   fused {ms_c:9.3f} ms (via ops.{name}: {ms_op:.3f})   "
              f"x{ms_ref / ms_c:6.2f}   {gbps:8.1f} GB/s   max|diff| {max_diff:.2e}", flush=True)

    env = environment(device)
    copy_gbps = measured_copy_bandwidth(device, timer, mib=1024 if device.type == "cuda" else 256)
    nominal = nominal_bandwidth(env.get("gpu", "")) if device.type == "cuda" else None
    for r in results.values():
        r["fraction_of_copy_bandwidth"] = round(r["fused_GBps"] / copy_gbps, 3)
        if nominal:
            r["fraction_of_nominal_bandwidth"] = round(r["fused_GBps"] / nominal, 3)
    return {
        "benchmark": "bench_kernels", "device": args.device, "environment": env,
        "shape": {"B": b, "J": j, "K": args.sets, "N": n, "size": args.size, "grids": args.grids[: args.specs],
                  "pool_factors": pool, "net_dtype": args.net_dtype},
        "iters": args.iters, "warmup": args.warmup,
        "bandwidth_GBps": {"measured_copy": round(copy_gbps, 1), "nominal": nominal},
        "results": results,
    }


def markdown(rep: dict) -> str:
    env, sh, bw = rep["environment"], rep["shape"], rep["bandwidth_GBps"]
    where = (f"{env['gpu']} (CC {env['compute_capability']}, driver {env['driver']}, CUDA {env['cuda']})"
             if rep["device"] == "cuda" else f"CPU {env['cpu']}, {env['cpu_count']} cores, "
             f"torch threads {env['torch_threads']}, drdc threads {env['drdc_cpu_threads']}")
    lines = [
        f"# Fused kernels vs eager PyTorch — {rep['device']}", "",
        f"- date: {env['date']}", f"- command: `{env['command']}`", f"- device: {where}",
        f"- versions: python {env['python']}, torch {env['torch']}, drdc_trt._C {env['drdc_trt._C']}",
        f"- shape: N = {sh['N']} rows (B={sh['B']}, J={sh['J']}, K={sh['K']}) of {sh['size']}², grids "
        f"{sh['grids']}, pool factors {sh['pool_factors']}, network buffers {sh['net_dtype']}",
        f"- timing: median of {rep['iters']} runs after {rep['warmup']} warm-up runs "
        f"({'CUDA events' if rep['device'] == 'cuda' else 'perf_counter'})",
        f"- memory bandwidth: measured device copy {bw['measured_copy']} GB/s"
        + (f", nominal {bw['nominal']} GB/s" if bw["nominal"] else ""), "",
        "| op | eager PyTorch (ms) | fused kernel (ms) | via ops.* (ms) | speed-up | fused GB/s | of copy bw | "
        + ("of nominal bw | " if bw["nominal"] else "") + "max abs diff |",
        "|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if bw["nominal"] else "") + "---:|",
    ]
    for name, r in rep["results"].items():
        lines.append(
            f"| {name} | {r['reference_ms']:.3f} | {r['fused_ms']:.3f} | {r['fused_via_ops_ms']:.3f} | "
            f"{r['speedup']:.2f}× | {r['fused_GBps']:.1f} | "
            f"{100 * r['fraction_of_copy_bandwidth']:.0f}% | "
            + (f"{100 * r['fraction_of_nominal_bandwidth']:.0f}% | " if bw["nominal"] else "")
            + f"{r['max_abs_diff_vs_reference']:.2e} |")
    lines += ["", "Fused kernel = the bare `drdc_trt._C` call on preallocated buffers (what the C++ refiner "
              "launches); via ops.* adds the Python-side checks and the output allocation. Speed-up = eager / fused "
              "kernel. Fused GB/s = the minimal bytes the kernel must move (each input read once, each output "
              "written once) divided by its time; the eager sequence moves several times more."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--specs", type=int, default=2, help="J, grid specs (taken from --grids)")
    p.add_argument("--sets", type=int, default=2, help="K, sets per grid")
    p.add_argument("--grids", type=int, nargs="+", default=[8, 16, 32, 4])
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--pool-factors", type=int, nargs="+", default=[1, 2])
    p.add_argument("--net-dtype", choices=["float32", "float16"], default="float32")
    p.add_argument("--ops", nargs="+", default=["step", "prepare", "fuse"], choices=["step", "prepare", "fuse"])
    p.add_argument("--iters", type=int, default=None, help="timed runs (default 50 on CUDA, 5 on CPU)")
    p.add_argument("--warmup", type=int, default=None, help="untimed runs first (default 10 on CUDA, 1 on CPU)")
    p.add_argument("--out-dir", type=Path, default=Path(__file__).resolve().parent / "results")
    p.add_argument("--date", default=dt.date.today().isoformat(), help="date in the result file names")
    p.add_argument("--tag", default="", help="suffix of the result file names (e.g. fp16)")
    args = p.parse_args(argv)
    cuda = args.device == "cuda"
    args.iters = args.iters or (50 if cuda else 5)
    args.warmup = args.warmup if args.warmup is not None else (10 if cuda else 1)
    rep = bench(args)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = args.out_dir / f"bench_kernels_{args.device}_{args.date}{'_' + args.tag if args.tag else ''}"
    stem.with_suffix(".json").write_text(json.dumps(rep, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(rep))
    print(f"wrote {stem}.json and {stem}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
