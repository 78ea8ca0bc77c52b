"""Test-time grid labels: a portable integer generator (SplitMix64 + Fisher–Yates).

numpy only, so that the torch-free deploy runtime and the PyTorch method share it;
the C++ core implements the same algorithm and draws the very same sets from the
same seed.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

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


def grid_labels(size: int, grid_sizes: Sequence[int], num_sets: int, seed: int = 0) -> np.ndarray:
    """J×S×S int32 label maps: labels[j, y, x] = set of the cell (y // g_j, x // g_j)."""
    out = np.empty((len(grid_sizes), size, size), dtype=np.int32)
    for j, g in enumerate(grid_sizes):
        if size % g:
            raise ValueError(f"grid cell size {g} does not divide image size {size}")
        n = size // g
        sets = np.asarray(cell_sets(n * n, num_sets, spec_seed(seed, j)), dtype=np.int32).reshape(n, n)
        out[j] = np.repeat(np.repeat(sets, g, axis=0), g, axis=1)
    return out


def symmetric_index(size: int, margin: int) -> np.ndarray:
    """Source index of every position of a side of ``size`` padded by ``margin`` on both ends
    with its mirror image, edge pixel repeated (numpy's ``mode="symmetric"``): a g-px cell
    at the edge is mirrored onto a whole g-px cell of the margin."""
    if margin < 0 or margin > size:
        raise ValueError(f"margin {margin} must lie in [0, image size {size}]")
    inner = np.arange(size)
    return np.concatenate([inner[:margin][::-1], inner, inner[size - margin:][::-1]])


def pad_labels(labels: np.ndarray, margin: int) -> np.ndarray:
    """J×S×S labels → J×(S+2m)×(S+2m), mirrored like the image: a margin pixel belongs to
    the set of the pixel it mirrors, so the mirror of an unknown cell is unknown too and the
    network never sees a copy of the pixels it must fill in."""
    if margin == 0:
        return labels
    iy = symmetric_index(labels.shape[1], margin)
    ix = symmetric_index(labels.shape[2], margin)
    return np.ascontiguousarray(labels[:, iy][:, :, ix])
