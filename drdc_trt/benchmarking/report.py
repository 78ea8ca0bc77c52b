"""The result document (JSON) and its Markdown rendering."""

from __future__ import annotations

import json
import math
from pathlib import Path


def _ms(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    v = float(v)
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    if v >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def _num(v, digits: int = 2, suffix: str = "") -> str:
    if v is None or (isinstance(v, float) and (math.isnan(v) or math.isinf(v))):
        return "—"
    return f"{v:.{digits}f}{suffix}"


def _gbps(v) -> str:
    if v is None:
        return "—"
    return f"{v:.1f}" if v >= 10 else (f"{v:.2f}" if v >= 0.1 else f"{v:.2g}")


def _pct(v) -> str:
    if v is None:
        return "—"
    if v < 0.001:
        return f"{100 * v:.2g}%"
    return f"{100 * v:.1f}%" if v < 0.1 else f"{100 * v:.0f}%"


def _tflops(v) -> str:
    if v is None:
        return "—"
    return f"{v:.3f}" if v < 1 else f"{v:.1f}"


def _ok(row: dict) -> bool:
    return row.get("status") == "ok"


def _merged(rows: list[dict]) -> list[dict]:
    """Rows for display: rows that did not run for the same reason (same engine, precision,
    batch, status) become one row listing their loops."""
    out: list[dict] = []
    for r in rows:
        prev = out[-1] if out else None
        if (prev is not None and not _ok(r) and not _ok(prev)
                and all(prev[k] == r[k] for k in ("engine", "precision", "batch", "status"))):
            prev["loop"] = f"{prev['loop']}, {r['loop']}"
            continue
        out.append(dict(r))
    return out


def main_table(rep: dict) -> list[str]:
    lines = [
        "| engine | loop | precision | batch | p50 ms | p90 ms | p99 ms | mean ms | p50 ms / image | images/s "
        "| speed-up vs eager | TFLOP/s | of peak | peak mem MiB | iters |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in _merged(rep["rows"]):
        name = r["engine"] + (" **(baseline)**" if r.get("baseline") else "")
        if not _ok(r):
            batch = "—" if r.get("batch") is None else str(r["batch"])
            lines.append(f"| {name} | {r['loop']} | {r['precision']} | {batch} | {r['status']} "
                         "| — | — | — | — | — | — | — | — | — | — |")
            continue
        lat, per = r["latency_ms"], r["latency_ms"]["per_image"]
        lines.append(
            f"| {name} | {r['loop']} | {r['precision']} | {r['batch']} | {_ms(lat['p50_ms'])} | {_ms(lat['p90_ms'])} "
            f"| {_ms(lat['p99_ms'])} | {_ms(lat['mean_ms'])} | {_ms(per['p50_ms'])} | {_num(r['throughput_ips'])} "
            f"| {_num(r.get('speedup_vs_baseline'), 2, '×')} | {_tflops(r.get('achieved_tflops'))} "
            f"| {_pct(r.get('fraction_of_peak'))} | {_num(r['memory'].get('peak_mib'), 0)} "
            f"| {lat['iterations']} |")
    return lines


def stage_table(rep: dict) -> list[str]:
    lines = [
        "| engine | loop | batch | base ms | U-Net ms (calls) | in-between ms | fusion ms | U-Net share "
        "| U-Net TFLOP/s | U-Net of peak |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rep["rows"]:
        st = r.get("stages") if _ok(r) else None
        if not st:
            continue
        total = r["latency_ms"]["p50_ms"]
        share = st["unet_ms"] / total if total else None
        lines.append(
            f"| {r['engine']} | {r['loop']} | {r['batch']} | {_ms(st['base_ms'])} | {_ms(st['unet_ms'])} "
            f"({st['unet_calls']}) | {_ms(st['between_ms'])} | {_ms(st['fusion_ms'])} | {_pct(share)} "
            f"| {_tflops(r.get('unet_tflops'))} | {_pct(r.get('unet_fraction_of_peak'))} |")
    return lines


def step_table(rep: dict) -> list[str]:
    ops = rep.get("step_op") or []
    if not ops:
        return []
    copy = rep["limits"]["copy_bandwidth"]["GBps"]
    lines = [
        "| batch | rows N | net buffers | bytes / step | torch reference ms | GB/s | csrc kernel ms | GB/s "
        "| of copy bw | speed-up |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for op in ops:
        sh, t, c = op["shape"], op["torch"], op.get("csrc")
        if c:
            fused = f"{_ms(c['median_ms'])} | {_gbps(c['GBps'])} | {_pct(c['GBps'] / copy)} " \
                    f"| {_num(t['median_ms'] / c['median_ms'], 1, '×')}"
        else:
            fused = "not built | — | — | —"
        lines.append(f"| {sh['B']} | {sh['N']} | {sh['net_dtype']} | {op['bytes'] / 2**20:.1f} MiB "
                     f"| {_ms(t['median_ms'])} | {_gbps(t['GBps'])} | {fused} |")
    return lines


def markdown(rep: dict) -> str:
    env, run, lim = rep["environment"], rep["run"], rep["limits"]
    fl = lim["flops"]
    cuda = env["device"].startswith("cuda")
    where = (f"{env['gpu']} (CC {env['compute_capability']}, {env['gpu_memory_gib']} GiB, driver {env['driver']}, "
             f"CUDA {env['cuda_runtime']}); host CPU {env['cpu']}" if cuda else
             f"CPU {env['cpu']}, {env['cpu_count']} cores, torch threads {env['torch_threads']}")
    v = env["versions"]
    peaks = ", ".join(f"{k} {p['tflops']:.3g} TFLOP/s" for k, p in lim["gemm_peaks"].items())
    lines = [
        f"# drdc-bench — {run['config_name']} on {env['device']}", "",
        f"- date: {env['date']}",
        f"- command: `{env['command']}`",
        f"- machine: {where}; load average (1/5/15 min) at start {env.get('load_average_at_start')}, at end "
        f"{env.get('load_average_at_end')}",
        f"- versions: python {v['python']}, drdc_trt {v['drdc_trt']}, torch {v['torch']}, onnxruntime "
        f"{v['onnxruntime']}, onnx {v['onnx']}, tensorrt {v['tensorrt']}, numpy {v['numpy']}, timm {v['timm']}",
        f"- model: {run['model_source']}; S = {run['image_size']}, {run['rows_per_image']} rows per image, "
        f"{run['steps']} DDIM steps (t0 = {run['t0']}), U-Net width {run['unet_width']} "
        f"mult {tuple(run['unet_channel_mult'])}",
        f"- timing: {run['clock']}; warm-up ≥ {run['warmup_s']} s (at least one call), then ≥ {run['min_iters']} "
        f"calls and ≥ {run['max_seconds']} s (at most {run['max_iters']} calls) per row; latency = one "
        "`predict_batch` call (base map, DDIM loop, fusion), random inputs",
        f"- work: {fl['per_image'] / 1e9:.2f} GFLOP per image = U-Net {fl['unet_per_row'] / 1e9:.3f} GFLOP/row × "
        f"{fl['rows_per_image']} rows × {fl['steps']} steps + base {fl['base_per_image'] / 1e9:.3f} GFLOP "
        "(torch.utils.flop_counter)",
        f"- ceilings measured in this run (best of its start and end): dense GEMM {peaks}; memory copy "
        f"{lim['copy_bandwidth']['GBps']:.1f} GB/s",
        "",
        "## Latency, throughput, memory", "",
        *main_table(rep), "",
        f"Speed-up = p50 latency of the baseline (PyTorch eager fp32, loop torch) at the same batch / p50 latency "
        f"of the row. TFLOP/s = FLOPs per image × images/s; of peak = against the measured dense GEMM rate of "
        f"the row's precision ({'TF32 for fp32 work on CUDA, as cuDNN runs fp32 convolutions on TF32' if cuda else 'fp32: torch.matmul; int8 and bf16: OpenVINO matmul in that precision'}). "
        f"Peak mem = {'torch.cuda.max_memory_allocated during the row (engines with their own allocators: see cuda_device_used_mib in the JSON)' if cuda else 'peak RSS of the process during the row (getrusage, reset per row)'}.",
        "",
        "## Where the time goes (median per batch call)", "",
        *stage_table(rep), "",
        "base = backbone + transformer (runner.base); U-Net = the sum of the network calls of the DDIM loop; "
        "in-between = the rest of the loop (prepare, the per-step update: fused C++/CUDA kernels for loop csrc, "
        "the PyTorch reference ops for loop torch, and the loop's own overhead); fusion = the remainder of the call "
        "(fuse, scores, input checks).", "",
    ]
    st = step_table(rep)
    if st:
        lines += ["## The fused step op at the pipeline's shape (per DDIM step)", "", *st, "",
                  "bytes = the minimal traffic of one step (each input read once, each output written once); GB/s = "
                  "bytes / median time; of copy bw = the csrc kernel's GB/s against the measured copy bandwidth. "
                  "csrc = the bare `drdc_trt._C.step` call on preallocated buffers (what the C++ refiner launches).",
                  ""]
    notes = rep.get("notes") or []
    if notes:
        lines += ["## Notes", "", *(f"- {n}" for n in notes), ""]
    return "\n".join(lines)


def write(rep: dict, out_dir: Path, stem: str) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    jp, mp = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    jp.write_text(json.dumps(rep, indent=2, default=_json_default) + "\n")
    mp.write_text(markdown(rep))
    return jp, mp


def _json_default(o):
    if isinstance(o, float) and (math.isnan(o) or math.isinf(o)):
        return None
    if isinstance(o, Path):
        return str(o)
    return str(o)
