"""UniAD-style feature reconstruction transformer (the base model of DRDC).

Tokens are the S/16 × S/16 backbone features. The encoder and decoder use
neighbour-masked attention (a token may not look at its n×n neighbourhood, so it
cannot copy itself); each decoder layer has its own learned queries. Feature
jitter perturbs the input tokens during training.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from drdc_trt.methods.drdc.config import TransformerConfig
from drdc_trt.methods.drdc.attention import MultiHeadAttention


def neighbor_mask(side: int, size: int) -> torch.Tensor:
    """L×L additive mask (L = side²): −inf where token j lies in the size×size window of token i."""
    r = size // 2
    idx = torch.arange(side * side)
    y, x = idx // side, idx % side
    near = ((y[:, None] - y[None, :]).abs() <= r) & ((x[:, None] - x[None, :]).abs() <= r)
    mask = torch.zeros(side * side, side * side)
    return mask.masked_fill(near, float("-inf"))


class _FeedForward(nn.Sequential):
    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, dim))


class EncoderLayer(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        d = cfg.hidden_dim
        self.attn = MultiHeadAttention(d, cfg.num_heads, cfg.dropout)
        self.ffn = _FeedForward(d, cfg.dim_feedforward, cfg.dropout)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, src: torch.Tensor, pos: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        qk = src + pos
        src = self.norm1(src + self.drop(self.attn(qk, qk, src, mask)))
        return self.norm2(src + self.drop(self.ffn(src)))


class DecoderLayer(nn.Module):
    """Learned queries attend to themselves, then to the previous layer's output."""

    def __init__(self, cfg: TransformerConfig, num_tokens: int):
        super().__init__()
        d = cfg.hidden_dim
        self.query = nn.Parameter(torch.randn(num_tokens, d) * 0.02)
        self.self_attn = MultiHeadAttention(d, cfg.num_heads, cfg.dropout)
        self.cross_attn = MultiHeadAttention(d, cfg.num_heads, cfg.dropout)
        self.ffn = _FeedForward(d, cfg.dim_feedforward, cfg.dropout)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, prev: torch.Tensor, pos: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        tgt = self.query.unsqueeze(0).expand(prev.shape[0], -1, -1)
        q = tgt + pos
        tgt = self.norm1(tgt + self.drop(self.self_attn(q, q, tgt, mask)))
        tgt = self.norm2(tgt + self.drop(self.cross_attn(tgt + pos, prev + pos, prev, mask)))
        return self.norm3(tgt + self.drop(self.ffn(tgt)))


class ReconstructionTransformer(nn.Module):
    """features B×C×h×w → reconstructed features B×C×h×w."""

    def __init__(self, cfg: TransformerConfig, in_channels: int, side: int):
        super().__init__()
        self.cfg = cfg
        n = side * side
        self.input_proj = nn.Linear(in_channels, cfg.hidden_dim)
        self.output_proj = nn.Linear(cfg.hidden_dim, in_channels)
        self.pos_embed = nn.Parameter(torch.randn(n, cfg.hidden_dim) * 0.02)
        self.encoder = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.num_encoder_layers))
        self.decoder = nn.ModuleList(DecoderLayer(cfg, n) for _ in range(cfg.num_decoder_layers))
        self.register_buffer("mask", neighbor_mask(side, cfg.neighbor_size), persistent=False)

    def jitter(self, tokens: torch.Tensor, rows=None) -> torch.Tensor:
        """UniAD feature jitter: N(0, 1)·scale·‖token‖/C, applied with probability p. ``rows``
        ((CPU generator, device generator), part, n): ``tokens`` are rows ``part`` of a batch of n
        (a rank's, drdc_trt.distributed.shared_generators): the coin and the noise are drawn for all
        n rows from those generators, as the global RNG draws them in one process, and cut to the
        part, so every row gets the noise one process gives it."""
        if rows is None:
            if torch.rand(()) >= self.cfg.jitter_prob:
                return tokens
            noise = torch.randn_like(tokens)
        else:
            (cpu, dev), part, n = rows
            if torch.rand((), generator=cpu) >= self.cfg.jitter_prob:
                return tokens
            _, length, c = tokens.shape
            # randn_like keeps the tokens' layout (B×C×L storage): the same values in the same places
            noise = torch.empty((n, c, length), dtype=tokens.dtype, device=tokens.device).transpose(1, 2)
            noise = noise.normal_(generator=dev)[part]
        scale = tokens.norm(dim=-1, keepdim=True) / tokens.shape[-1] * self.cfg.jitter_scale
        return tokens + noise * scale

    def forward(self, feats: torch.Tensor, jitter_rows=None) -> torch.Tensor:
        """``jitter_rows``: see ``jitter`` (a rank's part of a global batch)."""
        b, c, h, w = feats.shape
        tokens = feats.flatten(2).transpose(1, 2)  # B×L×C
        if self.training and self.cfg.jitter_scale > 0:
            tokens = self.jitter(tokens, jitter_rows)
        pos = self.pos_embed.unsqueeze(0)
        out = self.input_proj(tokens)
        for layer in self.encoder:
            out = layer(out, pos, self.mask)
        for layer in self.decoder:
            out = layer(out, pos, self.mask)
        return self.output_proj(out).transpose(1, 2).reshape(b, c, h, w)
