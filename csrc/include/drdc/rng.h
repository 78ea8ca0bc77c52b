// Portable randomness: the test-time grid labels (SplitMix64 + Fisher–Yates,
// identical to drdc_trt/diffusion/masks.py) and a counter-based Gaussian
// generator (Philox4x32-10 + Box–Muller) for hosts that pass no noise.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "drdc/types.h"

namespace drdc {

// One SplitMix64 step: advances state, returns the 64-bit output.
uint64_t splitmix64_next(uint64_t& state) noexcept;

// Set index (0..num_sets-1) of every cell: seeded Fisher–Yates, then position mod K.
std::vector<int32_t> cell_sets(int num_cells, int num_sets, uint64_t seed);

// Seed of grid spec j, derived from the user seed (masks.py spec_seed).
uint64_t spec_seed(uint64_t seed, int spec_index) noexcept;

// J×H×W label maps (row-major, int32).
struct LabelMaps {
  int J = 0, H = 0, W = 0;
  std::vector<int32_t> data;
};

// labels[j, y, x] = set of the cell (y / g_j, x / g_j); throws if g_j does not divide size.
LabelMaps grid_labels(int size, const std::vector<int>& grid_sizes, int num_sets, uint64_t seed);

// Philox4x32-10 block (Salmon et al. 2011): out = philox(counter, key).
void philox4x32(const uint32_t counter[4], const uint32_t key[2], uint32_t out[4]) noexcept;

// Standard normal numbers, counter-based: element i of stream `offset` depends
// only on (seed, offset, i), so CPU and CUDA produce the same sequence (to the
// last float bit, up to the device's log/sin/cos rounding) and any slice can
// be drawn independently. out has `count` floats on `device`.
void gaussian(Device device, float* out, std::size_t count, uint64_t seed, uint64_t offset,
              void* stream = nullptr);

}  // namespace drdc
