"""What one U-Net row costs at 224² for each preset's U-Net: parameters, GFLOP per row (multiply-add = 2)
and the time of one row and of 8 rows, eager PyTorch fp32 and OpenVINO f32 (random weights, the same
threads), in one run. Prints a markdown table.

    python3 benchmarks/preset_cost.py [--size 224] [--presets small,small224,fast] [--reps 5]

Why: small's attention sits at ds 4, which is 56² = 3,136 tokens at 224²; small224 adds a level,
so its attention sits at ds 8 (28² tokens), as the fast preset's first attention level does.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from drdc_trt.benchmarking.machine import cpu_model
from drdc_trt.config import preset
from drdc_trt.methods.drdc.bench_limits import count_flops
from drdc_trt.models.unet import UNet


def timed(fn, reps: int) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--presets", default="small,small224,fast")
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    import openvino as ov

    core = ov.Core()
    print(f"- machine: {cpu_model()}, {torch.get_num_threads()} threads; torch {torch.__version__}, "
          f"openvino {ov.__version__}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"- one U-Net row = (x 1×6×{a.size}², t); 8 rows = one call of batch 8; random weights; ms per call, "
          f"mean of {a.reps} after one warm-up\n")
    print("| preset | U-Net | attention tokens | params | GFLOP / row | eager 1 row | OV f32 1 row | eager 8 rows "
          "| OV f32 8 rows |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in a.presets.split(","):
        u = preset(name).unet
        torch.manual_seed(0)
        net = UNet(u).eval()
        params = sum(p.numel() for p in net.parameters())
        tokens = ", ".join(f"{a.size // d}²" for d in u.attention_ds if a.size % d == 0 and d < a.size)
        cells = {}
        flops = count_flops(net, torch.zeros(1, u.in_channels, a.size, a.size), torch.zeros(1))
        with torch.no_grad():
            for b in (1, 8):
                x = torch.randn(b, u.in_channels, a.size, a.size)
                t = torch.full((b,), 100.0)
                cells[f"eager{b}"] = timed(lambda: net(x, t), a.reps)
                m = ov.convert_model(net, example_input=(x, t))
                c = core.compile_model(m, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
                feed = [x.numpy(), t.numpy().astype(np.float32)]
                cells[f"ov{b}"] = timed(lambda: c(feed), a.reps)
        print(f"| {name} | width {u.model_channels}, mult {tuple(u.channel_mult)} | {tokens or '–'} | "
              f"{params / 1e6:.2f} M | {flops / 1e9:.1f} | {cells['eager1']:.0f} | {cells['ov1']:.0f} | "
              f"{cells['eager8']:.0f} | {cells['ov8']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
