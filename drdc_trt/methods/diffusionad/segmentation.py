"""DiffusionAD's segmentation sub-network: DRAEM's discriminative encoder–decoder.

Input: cat(x, x0_g), 6 channels (the image and its norm-guided reconstruction). Six encoder
stages of 2×(conv3-BN-ReLU), widths base·(1, 2, 4, 8, 8, 8), max-pooling between them; the
decoder up-samples bilinearly (conv3-BN-ReLU), concatenates the encoder stage of that size and
applies 2×(conv3-BN-ReLU); a 3×3 conv and a sigmoid give the anomaly map in [0, 1]. Five
poolings: the side must be a multiple of 32.
"""

from __future__ import annotations

import torch
import torch.nn as nn

WIDTH_MULT = (1, 2, 4, 8, 8, 8)  # encoder stages
DECODER_MULT = (8, 4, 2, 1, 1)   # decoder stages, deepest first (DRAEM's DecoderDiscriminative)


def _convs(ch_in: int, ch_out: int, n: int = 2) -> nn.Sequential:
    layers = []
    for i in range(n):
        layers += [nn.Conv2d(ch_in if i == 0 else ch_out, ch_out, 3, padding=1), nn.BatchNorm2d(ch_out),
                   nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def _up(ch_in: int, ch_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
                         *_convs(ch_in, ch_out, 1))


class SegmentationNet(nn.Module):
    """(B×6×S×S) → anomaly map B×1×S×S in [0, 1]."""

    def __init__(self, base_width: int = 64, in_channels: int = 6, out_channels: int = 1):
        super().__init__()
        self.widths = tuple(base_width * m for m in WIDTH_MULT)
        w = self.widths
        self.encoder = nn.ModuleList([_convs(in_channels if i == 0 else w[i - 1], w[i]) for i in range(len(w))])
        self.pool = nn.MaxPool2d(2)
        # decoder stage j: up to the size of encoder stage 4 − j, concat it, convolve to out[j] channels
        out = tuple(base_width * m for m in DECODER_MULT)
        ins = (w[-1],) + out[:-1]
        self.ups = nn.ModuleList([_up(ins[j], out[j]) for j in range(5)])
        self.decoder = nn.ModuleList([_convs(out[j] + w[4 - j], out[j]) for j in range(5)])
        self.head = nn.Conv2d(out[-1], out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 32 or x.shape[-2] % 32:
            raise ValueError(f"segmentation input {tuple(x.shape)}: sides must be multiples of 32")
        skips = []
        h = x
        for i, stage in enumerate(self.encoder):
            h = stage(self.pool(h) if i else h)
            skips.append(h)
        for up, dec, skip in zip(self.ups, self.decoder, reversed(skips[:-1])):
            h = dec(torch.cat([up(h), skip], 1))
        return torch.sigmoid(self.head(h))
