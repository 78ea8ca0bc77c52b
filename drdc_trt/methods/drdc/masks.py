"""Grid masks: an image cut into g×g cells, the cells split into K disjoint sets.

Test-time masks come from a portable integer generator (SplitMix64 + Fisher–Yates)
so that the C++ core draws the very same sets from the same seed. Training masks
are drawn per sample from a torch generator.
"""

from __future__ import annotations

from typing import Sequence

import torch

from drdc_trt.methods.drdc import gridsets
from drdc_trt.methods.drdc.gridsets import cell_sets, spec_seed, splitmix64


def grid_labels(size: int, grid_sizes: Sequence[int], num_sets: int, seed: int = 0) -> torch.Tensor:
    """J×S×S int32 label maps: labels[j, y, x] = set of the cell (y // g_j, x // g_j)."""
    return torch.from_numpy(gridsets.grid_labels(size, grid_sizes, num_sets, seed))


def random_known_masks(batch: int, size: int, grid_sizes: Sequence[int], set_counts: Sequence[int],
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Training masks, B×1×S×S float (1 = known): per sample a random spec g, a random
    K and one random set k of that split made unknown."""
    out = torch.empty(batch, 1, size, size)
    gs = torch.randint(len(grid_sizes), (batch,), generator=generator)
    ks = torch.randint(len(set_counts), (batch,), generator=generator)
    for i in range(batch):
        g, k = grid_sizes[int(gs[i])], set_counts[int(ks[i])]
        n = size // g
        order = torch.randperm(n * n, generator=generator)
        sets = torch.empty(n * n, dtype=torch.long)
        sets[order] = torch.arange(n * n) % k
        unknown_set = int(torch.randint(k, (1,), generator=generator))
        known = (sets != unknown_set).float().view(n, n)
        out[i, 0] = known.repeat_interleave(g, 0).repeat_interleave(g, 1)
    return out
