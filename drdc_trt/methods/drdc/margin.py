"""The border margin of the inpainting loop (``diffusion.margin``).

A U-Net pads every convolution with zeros, so the cells at the image's own edge are
reconstructed next to an artificial black frame, and a cell cut off by the edge
has context on fewer sides. With a margin m the loop runs on the image padded by
its mirror image (edge pixel repeated, ``gridsets.symmetric_index``), the labels
mirrored the same way (the mirror of an unknown cell is unknown: no pixel the
network must fill in is visible anywhere), and the heat is cropped back to S×S.
The interior of the image is treated exactly as without a margin, up to the
network's receptive field.
"""

from __future__ import annotations

import torch

from drdc_trt.methods.drdc.gridsets import symmetric_index


def pad_image(x: torch.Tensor, margin: int) -> torch.Tensor:
    """B×C×S×S → B×C×(S+2m)×(S+2m), mirrored at the edges."""
    if margin == 0:
        return x
    iy = torch.from_numpy(symmetric_index(x.shape[-2], margin)).to(x.device)
    ix = torch.from_numpy(symmetric_index(x.shape[-1], margin)).to(x.device)
    return x.index_select(-2, iy).index_select(-1, ix).contiguous()


def crop(maps: torch.Tensor, margin: int) -> torch.Tensor:
    """…×(S+2m)×(S+2m) → …×S×S, the image's own pixels."""
    if margin == 0:
        return maps
    return maps[..., margin:maps.shape[-2] - margin, margin:maps.shape[-1] - margin].contiguous()
