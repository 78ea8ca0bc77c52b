"""Load test of ``drdc serve`` on 127.0.0.1: 1, 4 and 16 concurrent clients, dynamic batching on
and off in the same run.

For each batching mode a server is started on free loopback ports (never another address); each
client thread sends one uint8 camera frame per request to the ``drdc`` model until the level's
request count or time limit is reached. Reported per level: requests, errors (must be 0), latency
p50/p95/p99, throughput, and the server's resident memory (its whole process tree: the Python
process, tritonserver, the Python-backend stub) after warm-up and after every level.

    python benchmarks/serving_load.py --bundle B --out benchmarks/results

Without ``--bundle`` a tiny model (preset ``tiny``, trained for a few seconds on the synthetic set)
is exported to a temporary bundle first: the numbers then measure the serving path more than the
network. Needs the serve extra (docs/serving.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

LEVELS = (1, 4, 16)


def make_tiny_bundle(folder: Path) -> Path:
    import torch

    from drdc_trt.loading import load_checkpoint
    from drdc_trt.config import preset
    from drdc_trt.data import make_synthetic_dataset
    from drdc_trt.export import export_bundle
    from drdc_trt.train import train

    torch.manual_seed(0)
    root = make_synthetic_dataset(folder / "synthetic", size=64, train_per_category=12, test_good_per_category=3,
                                  test_defect_per_type=2, seed=0)
    train(root, folder / "ckpt", preset("tiny"), progress=False, log=lambda *_: None)
    return export_bundle(load_checkpoint(folder / "ckpt").eval(), folder / "bundle", max_batch=16,
                         check_batches=()).path


def run_level(address: str, clients: int, requests: int, time_limit_s: float, frame: np.ndarray,
              timeout_s: float) -> dict:
    import tritonclient.http as http

    lock = threading.Lock()
    state = {"sent": 0}
    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.monotonic() + time_limit_s

    def worker():
        c = http.InferenceServerClient(address, connection_timeout=timeout_s, network_timeout=timeout_s)
        inp = http.InferInput("images", [1, *frame.shape], "UINT8")
        inp.set_data_from_numpy(frame[None])
        outs = [http.InferRequestedOutput(n) for n in ("pred_score", "pred_label")]
        try:
            while True:
                with lock:
                    if state["sent"] >= requests or time.monotonic() > deadline:
                        return
                    state["sent"] += 1
                t0 = time.perf_counter()
                try:
                    r = c.infer("drdc", [inp], outputs=outs)
                    if not np.isfinite(r.as_numpy("pred_score")).all():
                        raise ValueError("non-finite score")
                    dt_s = time.perf_counter() - t0
                    with lock:
                        latencies.append(dt_s)
                except Exception as e:  # noqa: BLE001 - counted and reported
                    with lock:
                        errors.append(repr(e)[:300])
        finally:
            c.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat = np.array(latencies) * 1e3
    pct = np.percentile(lat, [50, 95, 99]) if lat.size else [float("nan")] * 3
    return {"clients": clients, "requests": len(latencies) + len(errors), "errors": len(errors),
            "first_errors": errors[:3], "wall_s": round(wall, 3),
            "p50_ms": round(float(pct[0]), 2), "p95_ms": round(float(pct[1]), 2), "p99_ms": round(float(pct[2]), 2),
            "throughput_rps": round(len(latencies) / wall, 2), "hit_time_limit": time.monotonic() > deadline}


def run_mode(bundle: Path, batching: bool, args, frame: np.ndarray, log_dir: Path) -> dict:
    from drdc_trt.serving.process import ServerProcess

    flags = ["--bundle", bundle, "--backend", "onnxruntime", "--max-batch", args.max_batch,
             "--max-queue-delay-us", args.max_queue_delay_us, "--instances", args.instances]
    if not batching:
        flags.append("--no-dynamic-batching")
    log = log_dir / f"serve_{'batching' if batching else 'no_batching'}.log"
    with ServerProcess(flags, log) as srv:
        address = srv.http_url.removeprefix("http://")
        # warm-up at the highest concurrency: every batch size the batcher forms is allocated before
        # the memory baseline
        warm = run_level(address, max(LEVELS), args.warmup, 120.0, frame, args.timeout_s)
        rss = [srv.rss_bytes()]
        levels = []
        for rnd, c in [(r + 1, c) for r in range(args.rounds) for c in LEVELS]:
            lv = run_level(address, c, args.requests, args.time_limit_s, frame, args.timeout_s)
            lv["round"] = rnd
            lv["rss_after_mib"] = round(srv.rss_bytes() / 2**20, 1)
            rss.append(srv.rss_bytes())
            levels.append(lv)
            print(f"  batching {'on ' if batching else 'off'} round {rnd} clients {c:2d}: {lv['requests']} requests, "
                  f"{lv['errors']} errors, p50 {lv['p50_ms']} ms, p99 {lv['p99_ms']} ms, "
                  f"{lv['throughput_rps']} req/s, RSS {lv['rss_after_mib']} MiB", flush=True)
        code = srv.stop()
    return {"dynamic_batching": batching, "warmup_errors": warm["errors"], "rss_after_warmup_mib":
            round(rss[0] / 2**20, 1), "rss_end_mib": round(rss[-1] / 2**20, 1),
            "rss_growth_mib": round((rss[-1] - rss[0]) / 2**20, 1), "levels": levels,
            # growth over the last round alone: every batch size and code path has been through once
            "rss_last_round_growth_mib": round((rss[-1] - rss[-1 - len(LEVELS)]) / 2**20, 1),
            "requests_after_warmup": sum(lv["requests"] for lv in levels), "exit_code": code}


def markdown(res: dict) -> str:
    env = res["environment"]
    lines = [f"# drdc serve load test on 127.0.0.1, {res['date'][:10]}", "",
             f"- date: {res['date']}",
             f"- command: `{res['command']}`",
             f"- machine: {env['cpu']}, {env['cpu_count']} cores (clients and server on the same cores); load "
             f"average at start {env['load_average_at_start']}, at end {res['load_average_at_end']}",
             f"- versions: python {env['versions']['python']}, numpy {env['versions']['numpy']}, onnxruntime "
             f"{env['versions']['onnxruntime']}, nvidia-pytriton {res['pytriton']}, tritonserver (bundled) "
             f"{res['tritonserver']}",
             f"- model: {res['model']}",
             f"- server: `drdc serve --backend onnxruntime --max-batch {res['max_batch']} --max-queue-delay-us "
             f"{res['max_queue_delay_us']} --instances {res['instances']}` (and `--no-dynamic-batching`)",
             f"- requests: one {res['frame']} uint8 frame each to model `drdc` (HTTP), outputs pred_score and "
             f"pred_label; {res['warmup']} warm-up requests (16 clients), then up to {res['requests_per_level']} requests "
             f"or {res['time_limit_s']} s per level, the 1/4/16-client levels {res['rounds']} times in a row",
             "", "| dynamic batching | round | clients | requests | errors | p50 ms | p95 ms | p99 ms | "
             "throughput req/s | server RSS after, MiB |", "|---|---|---|---|---|---|---|---|---|---|"]
    for m in res["modes"]:
        for lv in m["levels"]:
            lines.append(f"| {'on' if m['dynamic_batching'] else 'off'} | {lv['round']} | {lv['clients']} | "
                         f"{lv['requests']} | "
                         f"{lv['errors']} | {lv['p50_ms']} | {lv['p95_ms']} | {lv['p99_ms']} | "
                         f"{lv['throughput_rps']} | {lv['rss_after_mib']} |")
    lines += ["", "Server memory (whole process tree) over each mode's run:", ""]
    for m in res["modes"]:
        lines.append(f"- batching {'on' if m['dynamic_batching'] else 'off'}: {m['requests_after_warmup']} requests, "
                     f"RSS {m['rss_after_warmup_mib']} MiB after warm-up → {m['rss_end_mib']} MiB at the end "
                     f"({m['rss_growth_mib']:+} MiB; {m['rss_last_round_growth_mib']:+} MiB over the last round); "
                     f"server exit code {m['exit_code']}")
    def total(m, c):  # throughput over every round of a level: requests / summed wall time
        lvs = [lv for lv in m["levels"] if lv["clients"] == c]
        return sum(lv["requests"] - lv["errors"] for lv in lvs) / max(sum(lv["wall_s"] for lv in lvs), 1e-9)

    on, off = sorted(res["modes"], key=lambda m: not m["dynamic_batching"])
    lines += ["", "Dynamic batching, throughput on / off (all rounds): " + ", ".join(
        f"{c} client{'s' if c > 1 else ''} {total(on, c):.2f} / {total(off, c):.2f} req/s = "
        f"{total(on, c) / max(total(off, c), 1e-9):.2f}×" for c in LEVELS), ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", type=Path, help="Bundle to serve [default: a tiny model exported to a temp folder].")
    p.add_argument("--requests", type=int, default=400, help="Requests per concurrency level (default 400).")
    p.add_argument("--rounds", type=int, default=2,
                   help="Times the 1/4/16-client levels are run in a row (default 2: memory over the second "
                        "round shows growth after every batch size was seen once).")
    p.add_argument("--time-limit-s", type=float, default=180.0, help="Time limit per level (default 180 s).")
    p.add_argument("--warmup", type=int, default=160, help="Warm-up requests before the memory baseline.")
    p.add_argument("--frame", type=int, nargs=2, default=(64, 64), metavar=("H", "W"), help="Frame size in px.")
    p.add_argument("--max-batch", type=int, default=16)
    p.add_argument("--max-queue-delay-us", type=int, default=2000)
    p.add_argument("--instances", type=int, default=1)
    p.add_argument("--timeout-s", type=float, default=60.0, help="Per-request timeout.")
    p.add_argument("--out", type=Path, help="Folder for serving_load_cpu_<date>.json and .md.")
    p.add_argument("--date", default=dt.date.today().isoformat())
    args = p.parse_args(argv)

    import torch
    from importlib.metadata import version

    from drdc_trt.benchmarking.machine import environment, load_average

    argv = sys.argv[1:] if argv is None else list(argv)
    env = environment(torch.device("cpu"), argv)
    import os

    threads = [f"{k}={os.environ[k]}" for k in ("OMP_NUM_THREADS",) if k in os.environ]  # the server inherits it
    command = " ".join([*threads, "python", "benchmarks/serving_load.py", *(shlex.quote(a) for a in argv)])
    frame = np.random.default_rng(0).integers(0, 256, (*args.frame, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory(prefix="drdc_load_") as tmp:
        tmp = Path(tmp)
        if args.bundle is None:
            bundle, model = make_tiny_bundle(tmp), "preset tiny (32×32 px, made by this script)"
        else:
            bundle, model = args.bundle, f"bundle {args.bundle}"
        manifest = json.loads((Path(bundle) / "manifest.json").read_text())
        size = manifest.get("config", {}).get("image_size", "?")
        model += f", image size {size}, method {manifest.get('method', 'drdc')}"
        modes = []
        for batching in (True, False):
            modes.append(run_mode(Path(bundle), batching, args, frame, tmp))
    res = {"date": env["date"], "command": command, "environment": env, "load_average_at_end": load_average(),
           "pytriton": version("nvidia-pytriton"), "tritonserver": "2.51.0", "model": model,
           "max_batch": args.max_batch, "max_queue_delay_us": args.max_queue_delay_us, "instances": args.instances,
           "frame": f"{args.frame[0]}×{args.frame[1]}×3", "warmup": args.warmup,
           "requests_per_level": args.requests, "rounds": args.rounds, "time_limit_s": args.time_limit_s,
           "modes": modes}
    md = markdown(res)
    print(md)
    if args.out is not None:
        from drdc_trt.checkpoint import atomic_write_text

        args.out.mkdir(parents=True, exist_ok=True)
        stem = args.out / f"serving_load_cpu_{args.date}"
        atomic_write_text(stem.with_suffix(".json"), json.dumps(res, indent=2))
        atomic_write_text(stem.with_suffix(".md"), md)
        print(f"wrote {stem}.json and .md")
    errors = sum(lv["errors"] for m in modes for lv in m["levels"])
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
