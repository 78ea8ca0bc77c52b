"""Conditioned ADM-style U-Net (guided-diffusion family).

Predicts ε from concat(x_t, c) (6 channels) and the timestep. Residual blocks
with timestep embedding (scale-shift norm), self-attention at the configured
down-sampling factors, explicit ``channel_mult``. Written with plain conv /
matmul / softmax / group-norm / SiLU / nearest-resize so it exports to ONNX and
parses in TensorRT.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from drdc_trt.settings import UNetConfig


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (float) timesteps, N → N×dim."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


def norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(32, ch), ch)


def zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    def __init__(self, ch_in: int, ch_out: int, emb_dim: int, dropout: float):
        super().__init__()
        self.in_layers = nn.Sequential(norm(ch_in), nn.SiLU(), nn.Conv2d(ch_in, ch_out, 3, padding=1))
        self.emb = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, 2 * ch_out))
        self.out_norm = norm(ch_out)
        self.out_layers = nn.Sequential(nn.SiLU(), nn.Dropout(dropout),
                                        zero(nn.Conv2d(ch_out, ch_out, 3, padding=1)))
        self.skip = nn.Identity() if ch_in == ch_out else nn.Conv2d(ch_in, ch_out, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x)
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.out_norm(h) * (1 + scale) + shift
        return self.skip(x) + self.out_layers(h)


class AttentionBlock(nn.Module):
    def __init__(self, ch: int, head_channels: int):
        super().__init__()
        self.heads = max(1, ch // head_channels)
        self.norm = norm(ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = zero(nn.Conv2d(ch, ch, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        d = c // self.heads
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, d, h * w)
        q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]  # B×heads×d×L
        attn = torch.softmax(torch.matmul(q.transpose(-1, -2), k) * (1.0 / math.sqrt(d)), dim=-1)
        out = torch.matmul(v, attn.transpose(-1, -2)).reshape(b, c, h, w)
        return x + self.proj(out)


class Downsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Level(nn.Module):
    """A resolution level's block: ResBlock [+ attention]."""

    def __init__(self, res: ResBlock, attn: AttentionBlock | None):
        super().__init__()
        self.res, self.attn = res, attn

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        x = self.res(x, emb)
        return self.attn(x) if self.attn is not None else x


class UNet(nn.Module):
    """(x N×6×S×S, t N) → ε̂ N×3×S×S."""

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.cfg = cfg
        mc = cfg.model_channels
        emb_dim = 4 * mc
        self.time_embed = nn.Sequential(nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.input_conv = nn.Conv2d(cfg.in_channels, mc, 3, padding=1)

        def level(ch_in: int, ch_out: int, ds: int) -> _Level:
            attn = AttentionBlock(ch_out, cfg.num_head_channels) if ds in cfg.attention_ds else None
            return _Level(ResBlock(ch_in, ch_out, emb_dim, cfg.dropout), attn)

        self.down = nn.ModuleList()
        self.downsamplers = nn.ModuleList()
        skips = [mc]
        ch, ds = mc, 1
        for li, mult in enumerate(cfg.channel_mult):
            blocks = nn.ModuleList()
            for _ in range(cfg.num_res_blocks):
                blocks.append(level(ch, mult * mc, ds))
                ch = mult * mc
                skips.append(ch)
            self.down.append(blocks)
            last = li == len(cfg.channel_mult) - 1
            self.downsamplers.append(nn.Identity() if last else Downsample(ch))
            if not last:
                skips.append(ch)
                ds *= 2
        self.middle = nn.ModuleList([
            ResBlock(ch, ch, emb_dim, cfg.dropout), AttentionBlock(ch, cfg.num_head_channels),
            ResBlock(ch, ch, emb_dim, cfg.dropout),
        ])
        self.up = nn.ModuleList()
        self.upsamplers = nn.ModuleList()
        for li, mult in reversed(list(enumerate(cfg.channel_mult))):
            blocks = nn.ModuleList()
            for _ in range(cfg.num_res_blocks + 1):
                blocks.append(level(ch + skips.pop(), mult * mc, ds))
                ch = mult * mc
            self.up.append(blocks)
            self.upsamplers.append(Upsample(ch) if li > 0 else nn.Identity())
            if li > 0:
                ds //= 2
        self.out = nn.Sequential(norm(ch), nn.SiLU(), zero(nn.Conv2d(ch, cfg.out_channels, 3, padding=1)))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.time_embed(timestep_embedding(t, self.cfg.model_channels))
        h = self.input_conv(x)
        hs = [h]
        for blocks, down in zip(self.down, self.downsamplers):
            for blk in blocks:
                h = blk(h, emb)
                hs.append(h)
            if not isinstance(down, nn.Identity):
                h = down(h)
                hs.append(h)
        h = self.middle[0](h, emb)
        h = self.middle[1](h)
        h = self.middle[2](h, emb)
        for blocks, up in zip(self.up, self.upsamplers):
            for blk in blocks:
                h = blk(torch.cat([h, hs.pop()], dim=1), emb)
            h = up(h)
        return self.out(h)
