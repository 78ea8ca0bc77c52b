"""Grid masks: an image cut into g×g cells, the cells split into K disjoint sets.

Test-time masks come from a portable integer generator (SplitMix64 + Fisher–Yates)
so that the C++ core draws the very same sets from the same seed. Training masks
are drawn per sample from a torch generator.
"""

from __future__ import annotations

from typing import Sequence

import torch

_M64 = (1 << 64) - 1


def splitmix64(state: int) -> tuple[int, int]:
    """One SplitMix64 step: (new state, 64-bit output)."""
    state = (state + 0x9E3779B97F4A7C15) & _M64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return state, z ^ (z >> 31)


def cell_sets(num_cells: int, num_sets: int, seed: int) -> list[int]:
    """Set index of every cell: a seeded Fisher–Yates shuffle, then position mod K.

    Sets are as equal in size as the cell count allows (uniform random partition).
    """
    perm = list(range(num_cells))
    state = seed & _M64
    for i in range(num_cells - 1, 0, -1):
        state, r = splitmix64(state)
        j = r % (i + 1)
        perm[i], perm[j] = perm[j], perm[i]
    sets = [0] * num_cells
    for pos, cell in enumerate(perm):
        sets[cell] = pos % num_sets
    return sets


def spec_seed(seed: int, spec_index: int) -> int:
    return (seed ^ (0x632BE59BD9B4E019 * (spec_index + 1))) & _M64


def grid_labels(size: int, grid_sizes: Sequence[int], num_sets: int, seed: int = 0) -> torch.Tensor:
    """J×S×S int32 label maps: labels[j, y, x] = set of the cell (y // g_j, x // g_j)."""
    out = torch.empty(len(grid_sizes), size, size, dtype=torch.int32)
    for j, g in enumerate(grid_sizes):
        if size % g:
            raise ValueError(f"grid cell size {g} does not divide image size {size}")
        n = size // g
        sets = torch.tensor(cell_sets(n * n, num_sets, spec_seed(seed, j)), dtype=torch.int32)
        out[j] = sets.view(n, n).repeat_interleave(g, 0).repeat_interleave(g, 1)
    return out


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
